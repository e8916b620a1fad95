"""Every baseline has a data-only learner state: ``--resume`` and ``compare`` continue any method
(issue 15, item 10), to the same results as the run left alone."""

import json

import pytest

from clnp.cli import main
from clnp.experiments.checkpoint import load_checkpoint
from clnp.experiments.compare import CompareConfig, compare
from clnp.methods import METHODS

from .conftest import interrupt_runs

BASELINES = sorted(m for m in METHODS if m != "clnp")
ARGS = ["--tasks", "3", "--model", "mlp:12,10", "--epochs", "2", "--no-progress"]


def _args(method: str) -> list[str]:
    """The shared settings, and one fine-tuning epoch for the methods that read it (others refuse it)."""
    return [*ARGS, "--finetune-epochs", "1"] if method == "packnet" else ARGS


def _crash_in(monkeypatch, task: int) -> None:
    interrupt_runs(monkeypatch, after=lambda row: row["task"] == task)


def _rows(out):
    return [line.rsplit(",", 1)[0] for line in (out / "log.csv").read_text().splitlines()]


@pytest.mark.parametrize("method", BASELINES)
def test_a_baseline_run_interrupted_in_its_last_task_resumes_to_the_same_results(method, tmp_path, monkeypatch):
    reference, out = tmp_path / "alone", tmp_path / "crashed"
    assert main(["run", "--method", method, *_args(method), "--out", str(reference)]) == 0
    _crash_in(monkeypatch, task=2)
    assert main(["run", "--method", method, *_args(method), "--out", str(out)]) == 130
    monkeypatch.undo()
    _, meta, _ = load_checkpoint(out / "checkpoint")
    assert meta["step"] == 2 and meta["learner"]["method"] == method
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    got, want = (json.loads((d / "results.json").read_text()) for d in (out, reference))
    assert got["accuracy_matrix"] == want["accuracy_matrix"]
    assert got["capacity"] == want["capacity"] and got["resumed_at_tasks"] == [2]
    assert _rows(out) == _rows(reference)


def test_compare_resumes_an_interrupted_baseline_run(tmp_path, monkeypatch):
    config = CompareConfig(methods=["ewc"], seeds=1, tasks=3, epochs=1, model="mlp:8")
    _crash_in(monkeypatch, task=1)
    with pytest.raises(KeyboardInterrupt):
        compare(config, tmp_path)
    monkeypatch.undo()
    messages = []
    summary = compare(config, tmp_path, log=messages.append)
    assert any("resuming the unfinished run" in m for m in messages)
    assert summary["finished"] == 1
    assert json.loads((tmp_path / "ewc" / "s0" / "results.json").read_text())["resumed_at_tasks"] == [1]
