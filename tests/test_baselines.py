"""Each baseline does what defines it, and every method writes the same results keys."""

import pytest
import torch

import clnp
from clnp.experiments.runner import RunConfig, run
from clnp.methods import METHODS, build_method
from clnp.methods.common.plain_net import PlainNet
from clnp.methods.ewc import EWC

from .conftest import quick_config

SHAPE = (1, 8, 8)


def _learn(name: str, tasks, epochs: int = 3, model: str = "mlp:32,32", **options):
    learner = build_method(name, model, SHAPE, quick_config(epochs=epochs, finetune_epochs=1), options)
    for task in tasks:
        learner.learn(task)
    return learner


def test_every_baseline_is_registered_as_a_method():
    assert {"finetune", "independent", "joint", "ewc", "online-ewc", "si", "mas", "packnet", "hat"} <= set(METHODS)


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_quadratically_away_from_it(digit_tasks):
    torch.manual_seed(0)
    learner = EWC(PlainNet("mlp:32,32", SHAPE), quick_config(epochs=2), strength=100.0)
    assert learner.penalty() == 0.0  # nothing consolidated yet
    learner.learn(digit_tasks[0])
    assert learner.penalty() == 0.0  # exactly at the anchor weights
    fisher = learner.terms[0][0]
    assert all((f >= 0).all() for f in fisher) and sum(float(f.sum()) for f in fisher) > 0
    params = learner.net.trunk_parameters()
    direction = [torch.randn_like(p) for p in params]
    values = []
    for step in (1e-2, 2e-2):
        with torch.no_grad():
            for p, a, d in zip(params, learner.terms[0][1], direction, strict=True):
                p.copy_(a + step * d)
        values.append(learner.penalty())
    assert 0 < values[0] < values[1]
    assert values[1] == pytest.approx(4 * values[0], rel=1e-3)  # quadratic in the distance


@pytest.mark.parametrize("model", ["mlp:32,32", "cnn:4,8/16"])
@pytest.mark.parametrize("name", ["packnet", "hat"])
def test_masking_baselines_keep_earlier_tasks_outputs_bit_identical(name, model, digit_tasks):
    torch.manual_seed(0)
    learner = build_method(name, model, SHAPE, quick_config(epochs=3, finetune_epochs=1, weight_decay=1e-3), {})
    learner.learn(digit_tasks[0])
    x = digit_tasks[0].test.x
    before = learner.logits(0, x)
    learner.learn(digit_tasks[1])
    learner.learn(digit_tasks[2])
    assert torch.equal(learner.logits(0, x), before)


def test_hat_and_packnet_do_change_the_shared_weights_for_later_tasks(digit_tasks):
    """The zero-forgetting test above would pass trivially if nothing trained after task 0."""
    for name in ("packnet", "hat"):
        torch.manual_seed(0)
        learner = build_method(name, "mlp:32,32", SHAPE, quick_config(epochs=3, finetune_epochs=1), {})
        learner.learn(digit_tasks[0])
        w0 = learner.net.layers[0].weight.detach().clone()
        learner.learn(digit_tasks[1])
        assert not torch.equal(learner.net.layers[0].weight, w0), name


def test_finetune_forgets_on_permuted_tasks():
    tasks = clnp.permuted_digits(n_tasks=4, seed=0)
    torch.manual_seed(0)
    learner = build_method("finetune", "mlp:32", SHAPE, quick_config(epochs=10), {})
    learner.learn(tasks[0])
    right_after = learner.accuracy(0, tasks[0].test.x, tasks[0].test.y)
    for task in tasks[1:]:
        learner.learn(task)
    after_all = learner.accuracy(0, tasks[0].test.x, tasks[0].test.y)
    assert right_after > 0.8
    assert after_all < right_after - 0.05  # more than five points lost


def test_independent_trains_a_separate_network_per_task(digit_tasks):
    torch.manual_seed(0)
    learner = build_method("independent", "mlp:32,32", SHAPE, quick_config(epochs=2), {})
    learner.learn(digit_tasks[0])
    x = digit_tasks[0].test.x
    before = learner.logits(0, x)
    learner.learn(digit_tasks[1])
    first, second = learner.nets
    assert first is not second
    storage = {p.data_ptr() for p in first.parameters()}
    assert not storage & {p.data_ptr() for p in second.parameters()}
    assert first.n_tasks == second.n_tasks == 1
    assert torch.equal(learner.logits(0, x), before)
    assert learner.footprint()["parameters"] == 2 * sum(p.numel() for p in first.parameters())


def test_joint_trains_on_the_union_of_the_tasks_seen(digit_tasks):
    torch.manual_seed(0)
    learner = build_method("joint", "mlp:32,32", SHAPE, quick_config(epochs=2), {})
    r0 = learner.learn(digit_tasks[0])
    r1 = learner.learn(digit_tasks[1])
    assert r0["union_examples"] == len(digit_tasks[0].train)
    assert r1["union_examples"] == len(digit_tasks[0].train) + len(digit_tasks[1].train)
    assert learner.net.n_tasks == 2


def test_hat_refuses_batch_norm_models():
    with pytest.raises(ValueError, match="without batch norm"):
        build_method("hat", "mlp:16:bn", SHAPE, quick_config(), {})


def test_packnet_keeps_earlier_tasks_outputs_bit_identical_with_the_first_tasks_batch_norm(digit_tasks):
    """Batch norm is trained with the first task and frozen after it (statistics included), like the biases."""
    torch.manual_seed(0)
    learner = build_method("packnet", "cnn:4,8/16:bn", SHAPE, quick_config(epochs=2, finetune_epochs=1,
                                                                           weight_decay=1e-3), {})
    learner.learn(digit_tasks[0])
    x = digit_tasks[0].test.x
    before = learner.logits(0, x)
    batch_norm = {k: v.clone() for k, v in learner.net.state_dict().items() if "post" in k}
    assert batch_norm and any(k.endswith("running_mean") for k in batch_norm)
    learner.learn(digit_tasks[1])
    assert torch.equal(learner.logits(0, x), before)
    assert all(torch.equal(learner.net.state_dict()[k], v) for k, v in batch_norm.items())


def test_every_method_writes_the_same_results_keys(tmp_path):
    keys = {}
    for name in sorted(METHODS):
        config = RunConfig(benchmark="split-digits", method=name, tasks=2, model="mlp:16,16", epochs=2, lr=0.01,
                           finetune_epochs=1, progress=False)
        results = run(config, tmp_path / name)
        keys[name] = set(results)
        assert 0.0 <= results["average_accuracy"] <= 1.0
        if name in ("clnp", "packnet", "hat", "independent"):
            assert results["backward_transfer"] == 0.0, name
    assert len({frozenset(k) for k in keys.values()}) == 1
