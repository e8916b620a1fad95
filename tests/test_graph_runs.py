"""Graph models through the command line: ``clnp run --model resnet18:NF`` (its report, a crash and resume),
``clnp compare`` of CLNP and PackNet on one network, and the one-line refusals (growth, export)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clnp.cli import main
from clnp.experiments.runner import load_learner

from .conftest import DETERMINISTIC_TASK_KEYS, interrupt_runs, read_results

ARGS = ["--benchmark", "split-digits", "--model", "resnet18:4", "--tasks", "2", "--epochs", "6",
        "--finetune-epochs", "1", "--seed", "1", "--no-progress"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resnet") / "run"
    assert main(["run", *ARGS, "--out", str(out)]) == 0
    return out


def test_a_resnet_run_learns_every_task_with_backward_transfer_exactly_zero_and_reports_its_unit_sets(reference,
                                                                                                      capsys):
    results = read_results(reference)
    assert results["model"] == "resnet18:4" and len(results["accuracy_matrix"]) == 2
    assert results["backward_transfer"] == 0.0
    assert [row["layer"] for row in results["capacity"]][:2] == ["0:Conv2d(conv1+2->4)", "1:Conv2d(layer1.0.conv1->4)"]
    capsys.readouterr()
    assert main(["report", str(reference)]) == 0
    assert "conv1+2" in capsys.readouterr().out


def test_a_resnet_run_that_crashed_mid_task_resumes_to_the_same_results(tmp_path, reference, monkeypatch):
    out = tmp_path / "crashed"
    interrupt_runs(monkeypatch, after=lambda row: row["task"] == 1 and row["epoch"] == 2)
    assert main(["run", *ARGS, "--out", str(out)]) == 130
    monkeypatch.undo()
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    got, want = read_results(out), read_results(reference)
    assert got["accuracy_matrix"] == want["accuracy_matrix"] and got["capacity"] == want["capacity"]
    for a, b in zip(got["tasks"], want["tasks"], strict=True):
        assert {k: a[k] for k in DETERMINISTIC_TASK_KEYS} == {k: b[k] for k in DETERMINISTIC_TASK_KEYS}


def test_a_grown_resnet_run_forgets_nothing_and_resumes_grown(tmp_path, monkeypatch):
    """--grow with grow_min above every layer's free units: every unit set of the resnet grows (up to twice its
    width), and the run, interrupted in task 1, resumes into the grown network."""
    out = tmp_path / "grow"
    args = [*ARGS, "--grow", "--option", "grow_min=40", "--option", "max_growth=2"]
    interrupt_runs(monkeypatch, after=lambda row: row["task"] == 1 and row["epoch"] == 2)
    assert main(["run", *args, "--out", str(out)]) == 130
    monkeypatch.undo()
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    results = read_results(out)
    assert results["backward_transfer"] == 0.0
    grown = [sum(row["grown_by_task"]) for row in results["capacity"]]
    assert all(g > 0 for g in grown), grown


def test_a_resnet_task_exports_as_torchscript_or_an_exported_program_with_the_run_logits(tmp_path, reference, capsys):
    path = tmp_path / "task-0.pt"
    assert main(["export", str(reference), "--task", "0", "--format", "torchscript", "--out", str(path)]) == 0
    learner, tasks = load_learner(reference)
    x = tasks[0].test.x[:20]
    with torch.no_grad():
        exported = torch.jit.load(str(path))(x)
        assert torch.allclose(exported, learner.net.eval()(x, 0), atol=1e-5)
    program = tmp_path / "task-0.pt2"
    assert main(["export", str(reference), "--task", "0", "--format", "exported_program", "--out", str(program)]) == 0
    with torch.no_grad():
        assert torch.equal(torch.export.load(str(program)).module()(x), exported)
    assert main(["export", str(reference), "--task", "0", "--format", "state_dict",
                 "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert "torchscript" in err and len(err.splitlines()) == 1


def test_clnp_and_packnet_compare_on_one_resnet(tmp_path):
    out = tmp_path / "cmp"
    args = [a for a in ARGS if a != "--no-progress"]
    assert main(["compare", *args, "--methods", "clnp,packnet", "--seeds", "1", "--out", str(out)]) == 0
    table = json.loads((out / "comparison.json").read_text())
    assert set(table["methods"]) == {"clnp", "packnet"} and table["model"] == "resnet18:4"
    assert table["methods"]["clnp"]["backward_transfer"]["mean"] == 0.0


def test_a_comparison_with_a_method_that_cannot_learn_on_the_model_is_refused_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = [a for a in ARGS if a != "--no-progress"]
    assert main(["compare", *args, "--methods", "clnp,hat", "--seeds", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "hat cannot run on --model resnet18:4" in err and "batch norm" in err
    assert not (out / "clnp").exists()


def test_a_comparison_without_a_model_builds_each_method_on_the_benchmarks_own(tmp_path):
    """The door builds every method's learner before running: on the benchmark's model where none is given."""
    out = tmp_path / "cmp"
    assert main(["compare", "--benchmark", "split-digits", "--tasks", "2", "--epochs", "1", "--methods",
                 "finetune,hat", "--seeds", "1", "--out", str(out)]) == 0
    assert json.loads((out / "comparison.json").read_text())["model"] == "mlp:256,256"
