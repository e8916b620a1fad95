"""Pruning under the graceful-forgetting margin, and capacity running out."""

import pytest
import torch

import clnp

from .conftest import quick_config


def _learn_first(task, margin):
    torch.manual_seed(0)
    net = clnp.mlp(64, (64, 64), input_shape=(1, 8, 8))
    learner = clnp.CLNP(net, quick_config(margin=margin, l1=1e-4))
    return learner.learn(task)


def test_a_larger_margin_frees_more_units(digit_tasks):
    task = clnp.permuted_digits(1, seed=0)[0]
    tight = _learn_first(task, margin=0.0)
    loose = _learn_first(task, margin=20.0)
    assert sum(loose.owned) < sum(tight.owned)
    assert sum(loose.free_after) > sum(tight.free_after)


@pytest.mark.parametrize("margin", [0.0, 2.0, 10.0])
def test_validation_drop_after_pruning_stays_within_the_margin(margin):
    task = clnp.permuted_digits(1, seed=1)[0]
    report = _learn_first(task, margin)
    assert report.val_accuracy_pruned >= report.val_accuracy_dense - margin / 100 - 1e-12
    assert report.val_accuracy_final >= report.val_accuracy_pruned


def test_full_layer_stops_with_an_error_that_names_it(digit_tasks):
    net = clnp.mlp(64, (16, 16), input_shape=(1, 8, 8))
    learner = clnp.CLNP(net, quick_config(epochs=2))
    learner.learn(digit_tasks[0])
    net.blocks[1].layer.owner.fill_(0)  # pretend task 0 kept every unit of layer 1
    net.refresh_masks()
    with pytest.raises(clnp.CapacityError, match=r"layer 1:Linear\(16->16\).*wider layer.*larger margin"):
        learner.learn(digit_tasks[1])
    assert net.n_tasks == 1  # nothing was trained into old units


def test_capacity_runs_out_in_the_middle_of_a_sequence_with_a_named_error():
    tasks = clnp.permuted_digits(8, seed=0)
    net = clnp.mlp(64, (12, 12), input_shape=(1, 8, 8))
    learner = clnp.CLNP(net, quick_config(epochs=3, l1=0.0, margin=0.0, finetune_epochs=0))
    with pytest.raises(clnp.CapacityError, match="no free unit left"):
        for task in tasks:
            learner.learn(task)
    assert 1 <= net.n_tasks < len(tasks)


def test_the_contribution_measure_is_activity_times_the_weights_out_of_each_unit():
    from clnp.core.activity import outgoing_weight, unit_activity

    torch.manual_seed(0)
    net = clnp.mlp(64, (8, 6), input_shape=(1, 8, 8))
    net.add_head(3)
    with torch.no_grad():
        net.blocks[1].layer.weight[:, 2] = 0.0  # unit 2 of layer 0 passes nothing on
        net.heads[0].weight[:, 4] *= 10.0       # unit 4 of layer 1 passes on ten times as much
    x = torch.randn(50, 1, 8, 8)
    activity = unit_activity(net, 0, x, "mean_abs")
    contribution = unit_activity(net, 0, x, "contribution")
    assert contribution[0][2] == 0.0 and activity[0][2] > 0
    for layer in (0, 1):
        assert torch.allclose(contribution[layer], activity[layer] * outgoing_weight(net, layer, 0))
    expected = activity[1][4] * net.heads[0].weight[:, 4].abs().sum()
    assert torch.allclose(contribution[1][4], expected)


def test_a_task_learned_with_the_contribution_measure_prunes_within_the_margin():
    task = clnp.permuted_digits(1, seed=1)[0]
    torch.manual_seed(0)
    net = clnp.mlp(64, (64, 64), input_shape=(1, 8, 8))
    report = clnp.CLNP(net, quick_config(margin=2.0, l1=1e-4, activity="contribution")).learn(task)
    assert report.val_accuracy_pruned >= report.val_accuracy_dense - 0.02 - 1e-12
    assert sum(report.pruned) > 0
