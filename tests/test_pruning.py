"""Pruning under the graceful-forgetting margin, and capacity running out."""

import pytest
import torch

import clnp

from .conftest import quick_config


def _learn_first(task, margin, **overrides):
    torch.manual_seed(0)
    net = clnp.mlp(64, (64, 64), input_shape=(1, 8, 8))
    learner = clnp.CLNP(net, quick_config(margin=margin, l1=1e-4, **overrides))
    return learner.learn(task)


def test_a_larger_margin_frees_more_units(digit_tasks):
    """The paper's greedy search spends the margin it is given (with the plan, an annealed task meets its budget
    before the search, and the margin matters only where the budget still binds)."""
    task = clnp.permuted_digits(1, seed=0)[0]
    tight = _learn_first(task, margin=0.0, plan=False)
    loose = _learn_first(task, margin=20.0, plan=False)
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
    # the greedy search: the plan would leave every task a free unit (tests/test_capacity_plan.py)
    learner = clnp.CLNP(net, quick_config(epochs=3, l1=0.0, margin=0.0, finetune_epochs=0, plan=False))
    with pytest.raises(clnp.CapacityError, match="no free unit left"):
        for task in tasks:
            learner.learn(task)
    assert 1 <= net.n_tasks < len(tasks)


def test_the_contribution_measure_is_activity_times_the_weights_out_of_each_unit():
    from clnp.core.activity import unit_activity

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
        assert torch.allclose(contribution[layer], activity[layer] * net.outgoing_weight(layer, 0))
    expected = activity[1][4] * net.heads[0].weight[:, 4].abs().sum()
    assert torch.allclose(contribution[1][4], expected)


def test_a_task_learned_with_the_contribution_measure_prunes_within_the_margin():
    task = clnp.permuted_digits(1, seed=1)[0]
    torch.manual_seed(0)
    net = clnp.mlp(64, (64, 64), input_shape=(1, 8, 8))
    report = clnp.CLNP(net, quick_config(margin=2.0, l1=1e-4, activity="contribution")).learn(task)
    assert report.val_accuracy_pruned >= report.val_accuracy_dense - 0.02 - 1e-12
    assert sum(report.pruned) > 0


@pytest.mark.parametrize("weighted", [False, True])
def test_old_units_are_disconnected_in_order_of_activity_times_their_weights_into_the_task(weighted):
    """The reuse rounds try the old unit that matters least first: activity times its weights into the
    task, or the activity alone when it already counts those weights (the ``contribution`` measure)."""
    from clnp.core.partition import live_units, trainable_units
    from clnp.core.pruning import Score, choose_pruning

    torch.manual_seed(0)
    net = clnp.mlp(64, (8, 8), input_shape=(1, 8, 8))
    learner = clnp.CLNP(net, quick_config(epochs=1, finetune_epochs=0))
    learner.learn(clnp.split_digits()[0])
    for block in net.blocks:  # task 0 owns units 0-3 of each layer; 4-7 are free for task 1
        block.layer.owner[:4], block.layer.owner[4:] = 0, -1
    net.refresh_masks()
    net.reset_free_units_()
    net.add_head(2)
    old = live_units(net.blocks[0].layer.owner, 0)
    weight = net.outgoing_weight(0, 1)
    activity = [weight.clamp_min(1e-6) ** -0.5, torch.rand(8)]  # least active = most weighted, and back
    proposals = []

    def evaluate(keep, cut):
        if cut is not None and cut[0].any():
            proposals.append(torch.nonzero(cut[0]).flatten().tolist())
        pruned = any((~k & trainable_units(o)).any() for k, o in zip(keep, net.owners, strict=True))
        return Score(0.0 if pruned else 1.0)  # no unit may go; every old unit may be disconnected

    choose_pruning(net, 1, activity, evaluate, margin=1.0, weighted=weighted)
    idx = torch.nonzero(old).flatten()
    by_activity, by_both = activity[0][idx], (activity[0] * weight)[idx]
    assert torch.argmin(by_activity) != torch.argmin(by_both)  # the two orders differ here: the test can tell
    assert proposals[0] == [int(idx[torch.argmin(by_activity if weighted else by_both)])]


def _search_scores(monkeypatch, task, margin, plan=True):
    """Every score the search saw learning ``task`` (the dense network's first), then the accepted one's."""
    from clnp.methods.clnp import cycle as method

    scores = []
    real = method.choose_pruning

    def spy(net, task_id, activity, evaluate, margin, **options):
        def recorded(keep, cut):
            scores.append(evaluate(keep, cut))
            return scores[-1]
        decision = real(net, task_id, activity, recorded, margin, **options)
        scores.append(evaluate(decision.keep, decision.reuse_cut))
        return decision

    monkeypatch.setattr(method, "choose_pruning", spy)
    torch.manual_seed(0)
    clnp.CLNP(clnp.mlp(64, (64, 64), input_shape=(1, 8, 8)), quick_config(margin=margin, plan=plan)).learn(task)
    return scores


def test_where_the_margin_is_worth_few_validation_inputs_the_search_holds_agreement_and_confidence(monkeypatch):
    """However large the validation split, a margin worth a handful of its inputs is too coarse for
    accuracy alone (a nearly perfect task gets pruned to its first error): every evaluation also reports
    the agreement with the dense network on the validation inputs and the mean true-class probability,
    and the accepted configuration holds both within the margin."""
    from clnp.core.pruning import CONFIDENCE_SLACK
    from clnp.methods.clnp import RESOLVED_INPUTS, SEARCH_INPUTS

    task = clnp.permuted_digits(1, seed=0, val_fraction=0.8)[0]
    margin = 0.5
    assert len(task.val) >= SEARCH_INPUTS and margin / 100 * len(task.val) < RESOLVED_INPUTS
    scores = _search_scores(monkeypatch, task, margin)
    dense, accepted = scores[0], scores[-1]
    assert dense.agreement == 1.0 and 0 < dense.confidence <= 1
    assert all(s.confidence is not None for s in scores)
    assert any(0 < s.agreement < 1 for s in scores)  # predictions are compared one by one ...
    assert {round(s.agreement * len(task.val), 6) % 1 for s in scores} == {0.0}  # ... on the validation inputs
    assert accepted.agreement >= 1 - margin / 100 - 1e-9
    assert accepted.confidence >= dense.confidence - CONFIDENCE_SLACK * margin / 100 - 1e-9


def test_where_the_margin_is_worth_many_validation_inputs_accuracy_alone_judges_the_greedy_search(monkeypatch):
    from clnp.methods.clnp import RESOLVED_INPUTS

    task = clnp.permuted_digits(1, seed=0, val_fraction=0.8)[0]
    margin = 2.0
    assert margin / 100 * len(task.val) >= RESOLVED_INPUTS
    scores = _search_scores(monkeypatch, task, margin, plan=False)
    assert all(s.confidence is None and s.agreement == 1.0 for s in scores)


def test_with_a_plan_accuracy_alone_judges_where_it_resolves_the_free_loss(monkeypatch):
    """The plan prunes first within a tenth of the margin: that, not the margin, decides the finer measures."""
    from clnp.core.pruning import FREE_SHARE
    from clnp.methods.clnp import RESOLVED_INPUTS

    task = clnp.permuted_digits(1, seed=0, val_fraction=0.8)[0]
    margin = 10.0
    assert FREE_SHARE * margin / 100 * len(task.val) >= RESOLVED_INPUTS
    assert all(s.confidence is None for s in _search_scores(monkeypatch, task, margin))
    margin = 2.0  # a free loss of 0.2 points: under 10 of these inputs
    assert any(s.confidence is not None for s in _search_scores(monkeypatch, task, margin))


def _silent_search(activity, free_per_layer=2, silent_is_free=True):
    """A search on a toy network whose score ignores silent units (activity 0) and lets ``free_per_layer`` active
    units of each layer go for nothing; the proposals it evaluated (units pruned per layer) and its decision."""
    from clnp.core.partition import trainable_units
    from clnp.core.pruning import Score, choose_pruning

    torch.manual_seed(0)
    net = clnp.mlp(64, (16, 16), input_shape=(1, 8, 8))
    net.add_head(2)
    proposals = []

    def evaluate(keep, cut):
        pruned = [(~k & trainable_units(o)) for k, o in zip(keep, net.owners, strict=True)]
        proposals.append([int(p.sum()) for p in pruned])
        active = [int((p & (a > 0)).sum()) for p, a in zip(pruned, activity, strict=True)]
        return Score(1.0 - 0.003 * sum(max(0, n - free_per_layer) for n in active))

    decision = choose_pruning(net, 0, activity, evaluate, margin=1.0, budget=[16, 16], silent_is_free=silent_is_free)
    return proposals, decision


def test_proposals_of_silent_units_alone_are_taken_without_evaluating_them_and_decide_the_same():
    """A unit of activity 0 computes 0 on every input the search judges: pruning it changes no score."""
    activity = [torch.cat([torch.zeros(6), torch.arange(1.0, 11.0)]) for _ in range(2)]  # 6 silent units a layer
    skipped, decision = _silent_search(activity)
    evaluated, reference = _silent_search(activity, silent_is_free=False)
    assert [k.tolist() for k in decision.keep] == [k.tolist() for k in reference.keep]
    assert decision.pruned == [8, 8]  # the 6 silent units and the 2 free ones, in each layer
    assert len(skipped) < len(evaluated)
    assert all(p[0] > 6 or p[1] > 6 for p in skipped[1:])  # past the dense network, no proposal of silent units alone


def test_a_silent_unit_downstream_of_a_pruned_active_unit_is_evaluated_as_it_may_wake():
    """Pruning an active unit of one layer can wake a unit of the next that was silent in the dense network."""
    activity = [torch.arange(1.0, 17.0), torch.cat([torch.zeros(6), torch.arange(1.0, 11.0)])]
    proposals, _ = _silent_search(activity)
    assert proposals[1] == [1, 0]  # layer 0 first: an active unit, evaluated and taken (free)
    assert proposals[2] == [1, 1]  # so layer 1's silent unit is evaluated, not assumed silent


def test_skipping_silent_proposals_leaves_every_decision_of_a_real_search_as_it_was(monkeypatch, digit_tasks):
    from clnp.methods.clnp.cycle import CycleMixin
    from clnp.methods.clnp.search import SearchMixin

    monkeypatch.setattr(SearchMixin, "_search_inputs", staticmethod(lambda task, margin: None))  # validation only
    real_score = SearchMixin._score

    def learn(skip):
        monkeypatch.setattr(CycleMixin, "_silent_is_free", lambda self, task, probe: skip)
        calls = []

        def counted(self, *args):
            calls.append(1)
            return real_score(self, *args)

        monkeypatch.setattr(SearchMixin, "_score", counted)
        torch.manual_seed(0)
        learner = clnp.CLNP(clnp.mlp(64, (64, 64), input_shape=(1, 8, 8)), quick_config(l1=3e-2, expected_tasks=3))
        reports = [learner.learn(task).to_dict() for task in digit_tasks[:2]]
        return reports, learner.net.state_dict(), len(calls)

    (skipped, skipped_state, fewer), (evaluated, state, more) = learn(True), learn(False)
    assert fewer < more  # silent proposals were there to skip
    for a, b in zip(skipped, evaluated, strict=True):
        assert [a[k] for k in ("owned", "reused", "thresholds", "val_accuracy_final")] == \
               [b[k] for k in ("owned", "reused", "thresholds", "val_accuracy_final")]
    assert all(torch.equal(skipped_state[k], state[k]) for k in state)


def test_pruning_downstream_leaves_silent_units_upstream_silent_in_a_stack_but_not_in_a_traced_network():
    from torch import nn

    stack = clnp.mlp(64, (16, 16), input_shape=(1, 8, 8))
    assert stack.stays_silent(0, {1}) and stack.stays_silent(1, {1}) and not stack.stays_silent(1, {0})

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.inner, self.outer = nn.Linear(64, 16), nn.Linear(16, 16), nn.Linear(16, 16)

        def forward(self, x):
            h = torch.relu(self.stem(x.flatten(1)))
            return torch.relu(h + self.outer(torch.relu(self.inner(h))))

    traced = clnp.CLNPNet(Residual(), (1, 8, 8))
    assert traced.stays_silent(0, set()) and not traced.stays_silent(0, {1}) and not traced.stays_silent(1, {1})


def test_pruning_a_later_layer_s_active_units_does_not_stop_an_earlier_layer_s_silent_proposals(monkeypatch):
    from clnp.core.network import CLNPNet

    activity = [torch.cat([torch.zeros(12), torch.arange(1.0, 5.0)]), torch.arange(1.0, 17.0)]
    proposals, decision = _silent_search(activity)
    assert decision.pruned == [14, 2]
    assert [3, 1] not in proposals and [7, 1] not in proposals  # layer 0's silent steps after layer 1's first unit
    monkeypatch.setattr(CLNPNet, "stays_silent", lambda self, layer, changed: not changed)  # as in a traced network
    cautious, same = _silent_search(activity)
    assert [3, 1] in cautious and len(cautious) > len(proposals) and same.pruned == decision.pruned
