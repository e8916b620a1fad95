"""Run directories never lose a user's file (issue 15, items 1-4).

clnp deletes or replaces only files it wrote itself; a directory holding foreign files, a finished run,
an unfinished run or a run being written is refused with one line; ``--overwrite`` replaces a run,
removing exactly its own files; ``compare`` keeps runs of other settings apart and never rewrites a
table with fewer runs.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from clnp.cli import main

QUICK = ["--tasks", "2", "--model", "mlp:32", "--epochs", "8", "--finetune-epochs", "0", "--l1", "0", "--no-progress"]


def _snapshot(root: Path) -> dict:
    return {p: (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _one_line_error(err: str) -> None:
    assert err.startswith("clnp ") and "error:" in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_fresh_run_refuses_a_directory_holding_files_clnp_did_not_write_and_deletes_nothing(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "checkpoint" / "sub").mkdir(parents=True)
    (out / "checkpoint" / "my_model.ckpt").write_bytes(b"precious weights")
    (out / "checkpoint" / "notes.txt").write_text("notes")
    (out / "checkpoint" / "sub" / "more.txt").write_text("more")
    (out / "results.json").write_text('{"my": "own results"}')
    before = _snapshot(out)
    for extra in ([], ["--overwrite"]):  # not a clnp run: --overwrite does not make it one
        assert main(["run", *QUICK, "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        _one_line_error(err)
        assert "holds no clnp run" in err and "checkpoint" in err
        assert _snapshot(out) == before


def test_a_foreign_file_in_a_run_directory_is_refused_and_overwrite_keeps_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *QUICK, "--out", str(out)]) == 0
    (out / "results.json").unlink()  # as if stopped: an unfinished run
    (out / "checkpoint" / "my_model.ckpt").write_bytes(b"precious")
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["run", *QUICK, "--out", str(out)]) == 2
    assert "unfinished run" in capsys.readouterr().err
    assert main(["run", *QUICK, "--out", str(out), "--overwrite"]) == 0
    assert (out / "checkpoint" / "my_model.ckpt").read_bytes() == b"precious"
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "results.json").is_file()


def test_a_fresh_run_refuses_a_finished_run_and_overwrite_removes_exactly_its_own_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *QUICK, "--out", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    assert main(["export", str(out), "--task", "1"]) == 0
    assert (out / "export" / "task-1.pt2").is_file()  # the default format's file
    (out / "notes.txt").write_text("my notes on this run")
    (out / "export" / "README.txt").write_text("how I use task-1.pt2")
    capsys.readouterr()
    before = _snapshot(out)
    assert main(["run", *QUICK, "--seed", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "holds a finished run" in err and "--overwrite" in err
    assert _snapshot(out) == before

    assert main(["run", "--tasks", "1", *QUICK[2:], "--seed", "1", "--out", str(out), "--overwrite"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["seed"] == 1 and results["n_tasks"] == 1
    assert not (out / "accuracy_matrix.png").exists() and not (out / "export" / "task-1.pt2").exists()
    assert (out / "notes.txt").read_text() == "my notes on this run"
    assert (out / "export" / "README.txt").read_text() == "how I use task-1.pt2"
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == ["meta.json", "tensors-0001.safetensors"]


def _compare(out: Path, *extra: str) -> int:
    return main(["compare", "--methods", "clnp,finetune", "--tasks", "2", "--model", "mlp:32", "--epochs", "10",
                 "--finetune-epochs", "0", "--l1", "0", "--out", str(out), *extra])


def test_compare_with_other_settings_refuses_to_overwrite_the_earlier_runs(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert _compare(out) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert _compare(out, "--epochs", "11") == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "holds a run with other settings (epochs 10 there, 11 here)" in err
    assert _snapshot(out) == before  # nothing ran, nothing was rewritten
    assert _compare(out, "--epochs", "11", "--no-run") == 2
    assert _snapshot(out) == before
    assert _compare(out, "--epochs", "11", "--overwrite") == 0
    assert json.loads((out / "clnp" / "s0" / "results.json").read_text())["config"]["epochs"] == 11


def test_compare_never_rewrites_a_table_with_fewer_runs_silently(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert _compare(out, "--seeds", "2") == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert _compare(out, "--no-run", "--seeds", "1") == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "tabulates runs this comparison leaves out (clnp seed 1, finetune seed 1)" in err
    assert _snapshot(out) == before
    assert _compare(out, "--seeds", "1") == 2  # the same before running anything
    assert _snapshot(out) == before
    assert _compare(out, "--no-run", "--seeds", "1", "--overwrite") == 0
    assert json.loads((out / "comparison.json").read_text())["finished"] == 2


def _start_run(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "clnp.cli", "run", "--tasks", "3", "--epochs", "400",
                             "--finetune-epochs", "0", "--no-progress", "--out", str(out), *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, f"the run ended early: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"no {path.name} within {seconds} s"
        time.sleep(0.01)


def test_a_second_writer_is_refused_while_a_run_holds_the_lock_and_a_killed_runs_lock_is_stale(tmp_path, capsys):
    out = tmp_path / "busy"
    proc = _start_run(out)
    try:
        _wait_for(out / "config.yaml", proc)
        holder = json.loads((out / ".clnp.lock").read_text())
        assert holder["pid"] == proc.pid
        before = (out / "config.yaml").read_bytes()
        for argv in (["run", *QUICK, "--out", str(out)], ["run", *QUICK, "--out", str(out), "--overwrite"],
                     ["run", "--resume", str(out)]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            _one_line_error(err)
            assert f"being written by another clnp run (pid {proc.pid}" in err
        assert (out / "config.yaml").read_bytes() == before
        _wait_for(out / "checkpoint" / "meta.json", proc)
        proc.send_signal(signal.SIGKILL)  # no handler runs: the lock file stays behind
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (out / ".clnp.lock").exists()
    # The kernel dropped the dead run's lock: a resume takes it over (it would run for long, so a fresh run with
    # --overwrite shows the same: the stale lock does not block, and the lock is gone when the run ends).
    assert main(["run", *QUICK, "--out", str(out), "--overwrite"]) == 0
    assert not (out / ".clnp.lock").exists()


def test_two_runs_started_together_into_one_directory_one_is_refused(tmp_path):
    out = tmp_path / "race"
    procs = [_start_run(out, "--epochs", "3") for _ in range(2)]
    codes = sorted(p.wait(timeout=300) for p in procs)
    errs = [p.stderr.read() for p in procs]
    assert codes == [0, 2], errs
    refused = next(e for e in errs if e.strip())
    assert "clnp run: error:" in refused and "Traceback" not in refused
    results = json.loads((out / "results.json").read_text())
    config = (out / "config.yaml").read_text()
    assert f"epochs: {results['config']['epochs']}" in config and len(results["accuracy_matrix"]) == 3
