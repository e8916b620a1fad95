"""Process hygiene (issue 24, item 5): no process outlives a killed comparison, a data-parallel run resumes only
with the world size it was run with, a launcher says where the runs execute, and a setting the chosen
method would ignore is refused at the door."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
LINUX = Path("/proc/self/task").is_dir()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper is dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not LINUX, reason="needs Linux's /proc to find the pool's processes")
def test_no_process_of_a_sigkilled_compare_jobs_2_survives_it(tmp_path):
    cmd = [sys.executable, "-m", "clnp", "compare", "--benchmark", "split-digits", "--methods", "finetune,ewc",
           "--seeds", "2", "--epochs", "20", "--jobs", "2", "--device", "cpu", "--out", str(tmp_path / "cmp")]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((tmp_path / "cmp").glob("*/s*/log.csv"))) >= 2:  # both workers are training
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the comparison ended before it could be killed"
        children = _children(proc.pid)
        assert len(children) >= 3, children  # two workers and the resource tracker
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(c) for c in children):
            time.sleep(0.1)
        survivors = [c for c in children if _alive(c)]
        assert not survivors, f"processes {survivors} outlived their killed parent"
    finally:  # nothing this test started is left behind, whatever it found
        if proc.poll() is None:
            proc.kill()
        for c in children:
            if _alive(c):
                os.kill(c, signal.SIGKILL)


def test_launcher_slurm_without_slurm_is_refused_with_one_line_instead_of_running_here(tmp_path, capsys,
                                                                                       monkeypatch):
    from clnp.cli import main

    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sbatch to be found
    out = tmp_path / "cmp"
    assert main(["compare", "--methods", "finetune", "--tasks", "2", "--epochs", "1", "--model", "mlp:8",
                 "--device", "cpu", "--launcher", "slurm", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clnp compare: error: --launcher slurm: no Slurm on this machine") and \
        "--launcher local" in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("args, named", [
    (["--method", "ewc", "--grow"], "--grow"),
    (["--method", "ewc", "--l1", "0.01"], "--l1"),
    (["--method", "si", "--margin", "2"], "--margin"),
    (["--method", "ewc", "--finetune-epochs", "3"], "--finetune-epochs"),
    (["--method", "finetune", "--finetune-lr", "1e-4"], "--finetune-lr"),
], ids=["ewc_grow", "ewc_l1", "si_margin", "ewc_finetune_epochs", "finetune_finetune_lr"])
def test_a_setting_the_method_would_ignore_is_refused_at_the_door(tmp_path, capsys, args, named):
    from clnp.cli import main

    out = tmp_path / "run"
    assert main(["run", "--benchmark", "split-digits", *args, "--epochs", "1", "--out", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clnp run: error:") and err.count("\n") == 1 and named in err, err
    assert "would ignore it" in err and not out.exists()


def test_a_yaml_config_giving_a_baseline_grow_is_refused_but_a_baselines_own_config_yaml_reruns(tmp_path):
    from clnp.experiments.config import ConfigError, RunConfig, combine, dump_config

    path = tmp_path / "c.yaml"
    path.write_text("method: ewc\ngrow: true\n")
    with pytest.raises(ConfigError, match="would ignore it"):
        combine(config_file=path)
    recorded = RunConfig(method="ewc").resolved()  # what a baseline run's config.yaml holds (l1, margin filled in)
    path.write_text(dump_config(recorded))
    assert combine(config_file=path)[0].l1 == recorded.l1


def test_compare_refuses_a_setting_no_compared_method_reads():
    from clnp.experiments.compare import CompareConfig

    with pytest.raises(ValueError, match="--l1 is read by clnp only"):
        CompareConfig(methods=["ewc", "si"], l1=0.01)
    with pytest.raises(ValueError, match="--finetune-epochs is read by clnp and packnet only"):
        CompareConfig(methods=["finetune"], finetune_epochs=2)
    CompareConfig(methods=["clnp", "ewc"], l1=0.01, finetune_epochs=2)  # clnp reads them
