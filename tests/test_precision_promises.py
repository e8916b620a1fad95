"""Reduced precision keeps every promise of 32 bits: no evaluation or search region is served a stale cast of a
weight edited in place, every method that prunes keeps what it measured, and a finished run loads back (and a
tuning trial is scored) in the precision it ran in."""

from __future__ import annotations

import ast
import statistics
from pathlib import Path

import pytest
import torch
from torch import nn

import clnp
from clnp.engine.precision import autocast
from clnp.experiments.runner import RunConfig, load_learner, run
from clnp.experiments.tuning import validation_accuracy
from clnp.methods import build_method

from .conftest import quick_config

SHAPE = (1, 8, 8)
SRC = Path(__file__).resolve().parent.parent / "src" / "clnp"
MIXED = ["bf16-mixed", "16-mixed"]


@pytest.mark.parametrize("precision", MIXED)
def test_an_in_place_edit_of_a_weight_inside_an_autocast_region_is_seen_by_the_next_forward_pass(precision):
    """The search tries its reuse cuts in place on a head's weight inside one region: each try must be seen."""
    torch.manual_seed(0)
    layer, x = nn.Linear(8, 4), torch.randn(16, 8)
    with torch.no_grad(), autocast(precision, torch.device("cpu")):
        before = layer(x)
        layer.weight[:, :4] = 0.0  # a cut, in place, as the search tries it
        during = layer(x)
    with torch.no_grad(), autocast(precision, torch.device("cpu")):
        fresh = layer(x)  # a region that never saw the weight before the cut
    assert not torch.equal(before, fresh)
    assert torch.equal(during, fresh)


def test_every_autocast_region_clnp_opens_goes_through_devices_autocast():
    """One place decides how a region casts (``engine/precision.py``), so no method opens one that caches casts."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.relative_to(SRC).as_posix() == "engine/precision.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "autocast":
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize("finetune_epochs", [0, 2])
@pytest.mark.parametrize("precision", MIXED)
def test_every_task_keeps_the_margin_and_freezes_what_the_search_scored_under_mixed_precision(precision,
                                                                                             finetune_epochs):
    """Batch norm, margin 5: the search's reuse cuts into the head must be scored as they will be frozen."""
    torch.manual_seed(0)
    net = clnp.mlp(64, (64, 64), batch_norm=True, input_shape=SHAPE)
    learner = clnp.CLNP(net, quick_config(margin=5.0, finetune_epochs=finetune_epochs, precision=precision))
    reports = [learner.learn(task) for task in clnp.split_digits(seed=0)]
    for r in reports:
        assert r.val_accuracy_pruned >= r.val_accuracy_dense - 0.05 - 1e-12, r
        assert r.val_accuracy_final >= r.val_accuracy_dense - 0.05 - 1e-12, r
        assert r.val_accuracy_final >= r.val_accuracy_pruned, r
        if finetune_epochs == 0:
            assert r.val_accuracy_final == r.val_accuracy_pruned, r  # the network scored is the one frozen


@pytest.mark.parametrize("precision", MIXED)
@pytest.mark.parametrize("name", ["packnet", "hat"])
def test_packnet_and_hat_keep_what_their_last_epoch_measured_under_mixed_precision(name, precision, digit_tasks):
    """What the last epoch validated (PackNet: after pruning and retraining; HAT: under the task's binary mask)
    is the task's accuracy when it is done and after every later task, in the run's precision."""
    torch.manual_seed(0)
    learner = build_method(name, "mlp:32,32", SHAPE, quick_config(epochs=3, finetune_epochs=1, precision=precision),
                           {})
    measured: list[float] = []
    learner.on_epoch = lambda row: measured.append(row["val_accuracy"])
    last = []
    for task in digit_tasks:
        measured.clear()
        report = learner.learn(task)
        assert report["val_accuracy_final"] == measured[-1]
        last.append(measured[-1])
    assert [learner.accuracy(j, t.val.x, t.val.y) for j, t in enumerate(digit_tasks)] == last


def _outputs(learner, task_id: int, x: torch.Tensor) -> torch.Tensor:
    """A task's logits as the learner computes them when it evaluates."""
    if isinstance(learner, clnp.CLNP):
        learner.net.eval()
        with torch.no_grad(), learner._precision():
            return learner.net(x, task_id).float()
    return learner.logits(task_id, x)


@pytest.mark.parametrize("method", ["clnp", "packnet"])
def test_a_finished_run_loads_back_and_is_tuned_in_the_precision_it_ran_in(method, tmp_path):
    """``load_learner`` (and so ``--tune``'s criterion) computes as the bf16 run did: in bf16, with the run's
    accuracies."""
    results = run(RunConfig(method=method, tasks=3, model="mlp:64,64", epochs=4, finetune_epochs=1,
                            precision="bf16-mixed", progress=False), tmp_path)
    learner, stream = load_learner(tmp_path)
    for j, task in enumerate(stream):
        logits = _outputs(learner, j, task.test.x)
        assert torch.equal(logits, logits.bfloat16().float())  # computed in bf16, as the run evaluated
    assert [learner.accuracy(j, task.test.x, task.test.y) for j, task in enumerate(stream)] == \
        results["accuracy_matrix"][-1]
    assert validation_accuracy(tmp_path) == statistics.fmean(learner.accuracy(j, task.val.x, task.val.y)
                                                             for j, task in enumerate(stream))
    if method == "clnp":  # zero forgetting: each task's validation accuracy is the one reported when it was learned
        assert validation_accuracy(tmp_path) == statistics.fmean(t["val_accuracy_final"] for t in results["tasks"])
