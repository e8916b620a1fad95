"""``clnp run --resume``: a killed run continues from its last finished task and ends exactly as if left alone."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clnp.cli import main
from clnp.engine.method import Method
from clnp.experiments import runner
from clnp.experiments.checkpoint import CheckpointError, read_meta
from clnp.experiments.config import RunConfig
from clnp.experiments.environment import machine_label
from clnp.methods import build_method, register, unregister

from .conftest import DETERMINISTIC_TASK_KEYS, interrupt_runs, read_results, reference_run

ARGS = ["--benchmark", "split-digits", "--tasks", "3", "--epochs", "15", "--finetune-epochs", "2", "--seed", "3",
        "--no-progress"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The run left alone."""
    return reference_run(tmp_path_factory, ARGS)


def _log_rows(out: Path) -> list[str]:
    """The epoch log without its timing column."""
    return [line.rsplit(",", 1)[0] for line in (out / "log.csv").read_text().splitlines()]


def _assert_same_run(resumed: Path, reference: Path) -> None:
    got, want = read_results(resumed), read_results(reference)
    assert got["accuracy_matrix"] == want["accuracy_matrix"]
    assert got["capacity"] == want["capacity"]
    assert got["average_accuracy"] == want["average_accuracy"]
    assert got["backward_transfer"] == want["backward_transfer"] == 0.0
    for a, b in zip(got["tasks"], want["tasks"], strict=True):
        assert {k: a[k] for k in DETERMINISTIC_TASK_KEYS} == {k: b[k] for k in DETERMINISTIC_TASK_KEYS}
    assert _log_rows(resumed) == _log_rows(reference)


def test_run_killed_after_its_first_checkpoint_resumes_to_the_same_results(tmp_path, reference):
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "clnp.cli", "run", *ARGS, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    meta = out / "checkpoint" / "meta.json"
    deadline = time.monotonic() + 120
    try:
        while not meta.exists():
            assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "results.json").exists(), "the run finished before it was killed: the test proves nothing"
    finished = read_meta(out / "checkpoint")["step"]
    assert 1 <= finished < 3

    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    _assert_same_run(out, reference)
    assert read_results(out)["resumed_at_tasks"] == [finished]


@pytest.mark.parametrize("crash_in_task", [0, 2])
def test_run_that_crashed_mid_task_resumes_to_the_same_results(tmp_path, reference, monkeypatch, crash_in_task):
    """A crash during a task (before any checkpoint, or after two) loses only that task's unfinished work."""
    out = tmp_path / "crashed"
    interrupt_runs(monkeypatch, after=lambda row: row["task"] == crash_in_task and row["epoch"] == 3)
    assert main(["run", *ARGS, "--out", str(out)]) == 130  # the CLI's exit code for an interrupt
    monkeypatch.undo()
    assert not (out / "results.json").exists()
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    _assert_same_run(out, reference)
    assert read_results(out)["resumed_at_tasks"] == [crash_in_task]


def _stopped_run(tmp_path: Path) -> Path:
    """A run directory whose run stopped after its first task."""
    out = tmp_path / "stopped"
    cfg = RunConfig(tasks=2, epochs=2, finetune_epochs=0, progress=False)
    runner.run(cfg, out)
    (out / "results.json").unlink()  # as if killed right after the last checkpoint
    return out


def test_resume_refuses_extra_flags_and_a_fresh_run_refuses_an_unfinished_directory(tmp_path, capsys):
    out = _stopped_run(tmp_path)
    assert main(["run", "--resume", str(out), "--epochs", "3"]) == 2
    assert "drop --epochs" in capsys.readouterr().err
    assert main(["run", "--out", str(out), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path / "nothing")]) == 2
    assert "a run directory written by" in capsys.readouterr().err


def test_resume_refuses_a_damaged_checkpoint_or_an_edited_config(tmp_path, capsys):
    out = _stopped_run(tmp_path)
    meta = read_meta(out / "checkpoint")
    tensor_file = out / "checkpoint" / meta["tensor_file"]
    good = tensor_file.read_bytes()
    tensor_file.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    assert main(["run", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and str(tensor_file) in err and "Traceback" not in err

    tensor_file.write_bytes(good)
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0  # every task was finished: results only
    assert read_results(out)["resumed_at_tasks"] == [2] and len(read_results(out)["accuracy_matrix"]) == 2
    (out / "results.json").unlink()
    config = out / "config.yaml"
    config.write_text(config.read_text().replace("margin: 1.0", "margin: 3.0"))
    with pytest.raises(CheckpointError, match="another configuration"):
        runner.resume(out)


class _NoState:
    """A learner without learner_state(): it cannot be checkpointed."""

    def __init__(self, inner):
        self.inner = inner

    def learn(self, task):
        return self.inner.learn(task)

    def accuracy(self, task_id, x, y):
        return self.inner.accuracy(task_id, x, y)

    def capacity(self):
        return self.inner.capacity()


@pytest.fixture
def nostate_method():
    """A method registered for one test whose learner has no saved state."""
    register(Method(name="nostate", build=lambda m, s, c, o: _NoState(build_method("clnp", m, s, c, o)),
                    summary="a learner without a saved state"))
    yield "nostate"
    unregister("nostate")


def test_methods_without_saved_state_run_but_refuse_resume(tmp_path, nostate_method, capsys):
    out = tmp_path / "nostate"
    results = runner.run(RunConfig(method="nostate", tasks=1, epochs=1, finetune_epochs=0, progress=False), out)
    assert len(results["accuracy_matrix"]) == 1
    assert not (out / "checkpoint" / "meta.json").exists()
    assert main(["run", "--resume", str(out)]) == 2
    assert "cannot be resumed" in capsys.readouterr().err


def test_a_run_resumed_on_another_machine_records_which_tasks_it_learned_there(tmp_path, monkeypatch):
    """Results differ between processors, so each task records the machine that learned it: a run stopped on one
    and resumed on another says which (and ``results.json``'s ``environment`` is the one that finished it)."""
    out = tmp_path / "moved"
    args = ["--benchmark", "split-digits", "--tasks", "2", "--epochs", "5", "--finetune-epochs", "1", "--no-progress"]
    interrupt_runs(monkeypatch, after=lambda row: row["task"] == 1)
    assert main(["run", *args, "--out", str(out)]) == 130
    monkeypatch.undo()
    real = runner.describe_environment

    def elsewhere(device, world_size=1):
        return {**real(device, world_size), "processor": "Another CPU"}

    monkeypatch.setattr(runner, "describe_environment", elsewhere)
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    results = read_results(out)
    assert [task["machine"] for task in results["tasks"]] == [machine_label(real("cpu")),
                                                               machine_label(elsewhere("cpu"))]
    assert results["environment"]["processor"] == "Another CPU" and results["resumed_at_tasks"] == [1]
