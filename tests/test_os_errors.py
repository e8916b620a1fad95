"""The file system refusing a write is one line naming the path, exit code 2, nothing damaged (issue 15, item 7)."""

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from clnp.cli import main
from clnp.experiments.checkpoint import load_checkpoint

QUICK = ["--tasks", "2", "--model", "mlp:32", "--epochs", "8", "--finetune-epochs", "0", "--l1", "0", "--no-progress"]


def _one_line(err: str, *expected: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err


def test_out_that_is_a_file_or_lies_below_one_is_one_line_exit_2(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for out, expected in ((afile, "is a file, not a directory"), (afile / "run", f"{afile} is a file")):
        assert main(["run", *QUICK, "--out", str(out)]) == 2
        _one_line(capsys.readouterr().err, "clnp run: error:", expected)
        assert main(["compare", "--methods", "finetune", "--tasks", "1", "--epochs", "1", "--model", "mlp:8",
                     "--out", str(out)]) == 2
        _one_line(capsys.readouterr().err, "clnp compare: error:")
    assert afile.read_text() == "mine"


def test_export_output_below_a_file_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *QUICK, "--out", str(out)]) == 0
    afile = tmp_path / "afile"
    afile.write_text("mine")
    capsys.readouterr()
    assert main(["export", str(out), "--task", "0", "--output", str(afile / "task.pt")]) == 2
    _one_line(capsys.readouterr().err, "clnp export: error:", str(afile))
    assert afile.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_a_read_only_directory_is_one_line_exit_2(tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        assert main(["run", *QUICK, "--out", str(parent / "run")]) == 2
        _one_line(capsys.readouterr().err, "clnp run: error:", str(parent))
    finally:
        parent.chmod(0o755)


def _limited_run(out: Path, limit: int) -> subprocess.CompletedProcess:
    """`clnp run` in a child whose files may not grow beyond ``limit`` bytes: a write past it fails with
    EFBIG, as a full disk fails with ENOSPC (SIGXFSZ ignored, so the write returns the error)."""
    def limit_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "clnp.cli", "run", *QUICK, "--model", "mlp:64", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300, preexec_fn=limit_files)


def test_a_write_that_fails_for_lack_of_space_is_one_line_exit_2_and_the_last_checkpoint_survives(tmp_path, capsys):
    reference = tmp_path / "reference"
    assert main(["run", *QUICK, "--model", "mlp:64", "--out", str(reference)]) == 0
    meta = json.loads((reference / "checkpoint" / "meta.json").read_text())
    final = (reference / "checkpoint" / meta["tensor_file"]).stat().st_size
    out = tmp_path / "full"
    proc = _limited_run(out, final - 1)  # the first checkpoint fits, the second (one head more) does not
    assert proc.returncode == 2, proc.stderr
    _one_line(proc.stderr, "clnp run: error: cannot write or read", "File too large", "--resume")
    _, kept, _ = load_checkpoint(out / "checkpoint")
    assert kept["step"] == 1
    assert not (out / "results.json").exists()
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    got = json.loads((out / "results.json").read_text())
    want = json.loads((reference / "results.json").read_text())
    assert got["accuracy_matrix"] == want["accuracy_matrix"] and got["resumed_at_tasks"] == [1]
