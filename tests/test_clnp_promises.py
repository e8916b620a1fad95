"""CLNP keeps its promises on every path a user takes: the six cases an expert review broke, reuse
that is measured, an L1 pull that does not depend on width or fill, and no task frozen at chance."""

import pytest
import torch
from torch import nn

import clnp
from clnp.core.sparsity import l1_activity_penalty, l1_unit_weights
from clnp.data.tasks import Split, Task
from clnp.methods.clnp import TrainingFailedError

from .conftest import quick_config

SHAPE = (1, 8, 8)


def _logits(learner: clnp.CLNP, task: int, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return learner.net(x, task).clone()


def test_what_the_search_accepted_is_what_gets_frozen_even_after_a_tail_that_maps_zero_elsewhere(digit_tasks):
    """Linear -> Dropout -> Sigmoid: sigmoid(0) = 0.5, so silencing before the tail is not what freezing cuts."""
    torch.manual_seed(0)
    net = clnp.CLNPNet([nn.Flatten(), nn.Linear(64, 48), nn.Dropout(0.1), nn.Sigmoid(),
                        nn.Linear(48, 32), nn.Dropout(0.1), nn.Sigmoid()], input_shape=SHAPE)
    learner = clnp.CLNP(net, quick_config(epochs=20, finetune_epochs=0, margin=5.0, l1=1e-4, lr=1e-2))
    for task in digit_tasks[:2]:
        report = learner.learn(task)
        assert sum(report.pruned) > 0  # the case bites only where units were pruned
        assert report.val_accuracy_final == report.val_accuracy_pruned


def test_a_users_own_adamw_loop_cannot_reach_old_tasks_through_state_dict_learn_or_export(digit_tasks):
    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.mlp(64, (32, 32), input_shape=SHAPE), quick_config(epochs=3, finetune_epochs=1))
    learner.learn(digit_tasks[0])
    x = digit_tasks[0].test.x
    before = _logits(learner, 0, x)
    exported_before = clnp.export(learner.net, 0)(x).detach()

    optimizer = torch.optim.AdamW(learner.net.parameters(), lr=1e-2, weight_decay=0.5)
    for _ in range(5):  # the user's loop: weight decay moves every parameter, frozen rows included
        optimizer.zero_grad()
        loss = learner.net(x, 0).logsumexp(1).mean() + sum(p.pow(2).sum() for p in learner.net.parameters())
        loss.backward()
        optimizer.step()

    assert torch.equal(clnp.export(learner.net, 0)(x).detach(), exported_before)  # export consolidates first
    for p in learner.net.parameters():  # and state_dict() too
        p.data.add_(0.5)
    fresh = clnp.mlp(64, (32, 32), input_shape=SHAPE)
    fresh.add_head(2)
    fresh.load_state_dict(learner.net.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(x, 0), before)
    learner.learn(digit_tasks[1])
    assert torch.equal(_logits(learner, 0, x), before)


def test_an_overflow_in_free_units_never_reaches_an_old_task(digit_tasks):
    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.mlp(64, (32, 32), input_shape=SHAPE), quick_config(epochs=2, finetune_epochs=1))
    learner.learn(digit_tasks[0])
    x = digit_tasks[0].test.x
    before = _logits(learner, 0, x)
    accuracy = learner.accuracy(0, x, digit_tasks[0].test.y)
    learner.config = quick_config(epochs=2, finetune_epochs=1, optimizer="sgd", lr=1e38)
    with pytest.raises(FloatingPointError):
        learner.learn(digit_tasks[1])
    assert learner.net.n_tasks == 1
    assert torch.equal(_logits(learner, 0, x), before)
    assert learner.accuracy(0, x, digit_tasks[0].test.y) == accuracy
    # Not even an overflow left in the free units' weights leaks in through the cut (zero) weights.
    with torch.no_grad():
        for block in learner.net.blocks:
            block.layer.weight[block.layer.train_rows] = float("inf")
    assert torch.equal(_logits(learner, 0, x), before)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_learn_leaves_the_network_in_the_mode_it_found_it_in(mode, digit_tasks):
    torch.manual_seed(0)
    net = clnp.mlp(64, (32, 32), dropout=0.3, input_shape=SHAPE)
    learner = clnp.CLNP(net, quick_config(epochs=2, finetune_epochs=1))
    net.train(mode == "train")
    learner.learn(digit_tasks[0])
    assert net.training is (mode == "train")
    if mode == "eval":  # dropout off: two calls agree
        x = digit_tasks[0].test.x
        assert torch.equal(_logits(learner, 0, x), _logits(learner, 0, x))


def test_evaluation_of_an_old_task_does_not_depend_on_grad_mode_even_after_a_param_data_edit(digit_tasks):
    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.mlp(64, (32, 32), input_shape=SHAPE), quick_config(epochs=2, finetune_epochs=1))
    learner.learn(digit_tasks[0])
    learner.net.eval()
    x = digit_tasks[0].test.x
    before = _logits(learner, 0, x)
    for p in learner.net.parameters():
        p.data.add_(1.0)  # invisible to autograd's version counter
    with torch.enable_grad():
        with_grad = learner.net(x, 0).detach()
    assert torch.equal(with_grad, before)
    assert torch.equal(_logits(learner, 0, x), before)


def test_batch_norm_learns_a_task_whose_last_training_batch_holds_one_input(digit_tasks):
    task = digit_tasks[0]
    n = 32 * 3 + 1
    one_over = Task(task.name, task.n_classes, Split(task.train.x[:n], task.train.y[:n]), task.val, task.test)
    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.mlp(64, (16, 16), batch_norm=True, input_shape=SHAPE),
                        quick_config(epochs=6, finetune_epochs=1, batch_size=32, lr=1e-2))
    report = learner.learn(one_over)
    assert report.val_accuracy_final > 0.5


def test_reused_counts_only_old_units_the_task_depends_on_and_silencing_the_rest_changes_nothing(digit_tasks):
    torch.manual_seed(0)
    # The greedy search (no plan) spends the margin on cutting old features too, which gives this check cuts to
    # count; with the plan the search cuts only what costs next to nothing.
    learner = clnp.CLNP(clnp.mlp(64, (64, 64), input_shape=SHAPE),
                        quick_config(epochs=8, l1=1e-3, margin=2.0, plan=False))
    for task in digit_tasks:
        learner.learn(task)
    net = learner.net
    fewer = False
    for t in range(1, net.n_tasks):
        report = learner.reports[t]
        used = net.units_used_by(t)
        old = [(o != clnp.FREE) & (o < t) for o in net.owners]
        assert report.reused == [int((u & o).sum()) for u, o in zip(used, old, strict=True)]
        fewer = fewer or any(r < int(o.sum()) for r, o in zip(report.reused, old, strict=True))
        keep = [~(o & ~u) for o, u in zip(old, used, strict=True)]  # silence the old units counted as not reused
        x = digit_tasks[t].val.x
        with torch.no_grad():
            assert torch.equal(net(x, t, keep), net(x, t))
    assert fewer, "no task did without any old unit: the reuse pruning did nothing"


def test_the_l1_pull_on_a_unit_does_not_change_with_the_layers_width_or_fill():
    grads = []
    for width, n_free in ((16, 16), (64, 64), (64, 4)):
        a = torch.rand(8, width, requires_grad=True)
        trainable = torch.zeros(width, dtype=torch.bool)
        trainable[:n_free] = True
        l1_activity_penalty([a], [1e-3], [trainable]).backward()
        grads.append(a.grad[:, 0].clone())
        weights = l1_unit_weights([1e-3], [trainable])[0]
        assert torch.equal(weights[trainable], torch.full((n_free,), 1e-3))
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[1], grads[2])


def test_a_task_trained_to_chance_is_an_error_that_names_the_likely_cause_and_freezes_nothing(digit_tasks):
    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.mlp(64, (32, 32), input_shape=SHAPE), quick_config(epochs=2, l1=1e4, min_gain=0.1))
    with pytest.raises(TrainingFailedError,
                       match=r"about chance .* no better than guessing .* L1 penalty too strong .*l1=10000"):
        learner.learn(digit_tasks[0])
    assert learner.net.n_tasks == 0
    assert learner.net.free_units() == [32, 32]


def test_the_reuse_cut_is_frozen_and_survives_a_save_and_load(digit_tasks):
    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.mlp(64, (64, 64), input_shape=SHAPE), quick_config(epochs=8, l1=1e-3, margin=2.0))
    for task in digit_tasks:
        learner.learn(task)
    tensors, meta = learner.learner_state()
    again = clnp.CLNP(clnp.mlp(64, (64, 64), input_shape=SHAPE), quick_config(epochs=8, l1=1e-3, margin=2.0))
    again.load_learner_state(tensors, meta)
    for t in range(learner.net.n_tasks):
        x = digit_tasks[t].test.x
        assert torch.equal(_logits(again, t, x), _logits(learner, t, x))
        used = [int(u.sum()) for u in learner.net.units_used_by(t)]
        assert [int(u.sum()) for u in again.net.units_used_by(t)] == used
