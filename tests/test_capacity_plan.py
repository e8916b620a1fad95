"""The capacity plan: each task's unit budget, and a search that spends the margin only to meet it."""

import pytest
import torch

import clnp
from clnp.core.capacity import (
    MIN_TRAINED,
    OPEN_HORIZON,
    SLACK_PULL,
    allotments,
    pull_scale,
    reserve_units,
    tasks_to_plan_for,
    unit_budget,
    units_to_train,
)
from clnp.core.partition import trainable_units
from clnp.core.pruning import CONFIDENCE_SLACK, FREE_CONFIDENCE_SLACK, FREE_SHARE, Score, choose_pruning
from clnp.engine.loop import steps_per_epoch
from clnp.methods.clnp.cycle import ANNEAL_AFTER_STEPS

from .conftest import quick_config


def test_each_task_may_keep_an_equal_share_of_the_free_units_among_the_tasks_still_to_come():
    assert tasks_to_plan_for(10, 0) == 10
    assert tasks_to_plan_for(10, 9) == 1
    assert tasks_to_plan_for(10, 12) == 1  # a stream longer than announced still plans
    assert tasks_to_plan_for(None, 0) == OPEN_HORIZON  # open-ended: as many again as learned, at least a few
    assert tasks_to_plan_for(None, 30) == 31
    assert unit_budget([100, 7, 0], 10, reserve=[2, 1, 0]) == [10, 1, 0]  # at least one unit where any is free
    with pytest.raises(ValueError, match="tasks_left must be >= 1"):
        unit_budget([10], 0)


def test_a_stream_of_known_length_keeps_a_few_units_in_reserve_and_spends_the_rest():
    assert reserve_units(100, expected=10) == 2 and reserve_units(10, expected=3) == 1
    assert reserve_units(100, expected=None) == 0  # open-ended: the doubling rule leaves most units to come
    free, budgets = 100, []
    for done in range(10):  # every task keeps its budget
        budgets.append(unit_budget([free], tasks_to_plan_for(10, done), reserve=[reserve_units(100, 10)])[0])
        free -= budgets[-1]
    assert budgets == [10] * 8 + [9, 9] and free == 2  # not 9 each and a tenth of the layer unused


def test_a_declining_share_gives_the_coming_task_about_twice_the_equal_share_and_the_last_the_least():
    assert allotments(110, 10, "equal") == [11] * 10
    assert allotments(23, 4, "equal") == [6, 6, 6, 5]  # the remainder to the first tasks
    assert allotments(110, 10, "declining") == [20, 18, 16, 14, 12, 10, 8, 6, 4, 2]
    assert sum(allotments(1000, 11, "declining")) <= 1000
    assert unit_budget([1000, 3], 11, "declining") == [166, 1]  # 2 / 12 of the free units
    with pytest.raises(ValueError, match="share must be one of"):
        allotments(10, 2, "front")


def test_a_task_trains_only_a_few_times_its_budget_of_free_units_and_leaves_the_others_free():
    owner = torch.tensor([0, -1, -1, 1, -1, -1, -1, -1, -1, -1, -1, -1])
    chosen = units_to_train([owner], [1], tasks_left=2)[0]
    assert int(chosen.sum()) == 8 and not chosen[owner != -1].any()  # MIN_TRAINED free units, none owned
    chosen = units_to_train([owner], [100], tasks_left=1)[0]
    assert torch.equal(chosen, owner == -1)  # never more than are free
    # never so many that a later task would find fewer than half a budget: 10 free, budget 2, 4 tasks to come
    assert int(units_to_train([owner], [2], tasks_left=5)[0].sum()) == 6
    # a declining share: 10 free among 4 tasks are allotted 4, 3, 2, 1; the 3 to come keep at least 1 each
    assert int(units_to_train([owner], [4], tasks_left=4, share="declining")[0].sum()) == 7
    assert int(units_to_train([owner], [1], tasks_left=50)[0].sum()) == 1  # but always one


def test_an_annealed_task_trains_on_every_free_unit_where_annealing_reaches_its_budget():
    owner = torch.tensor([0] * 4 + [-1] * 28)
    wide, narrow = units_to_train([owner, owner], [MIN_TRAINED, MIN_TRAINED - 1], tasks_left=4, annealed=True)
    assert torch.equal(wide, owner == -1)  # what annealing drops is free again for the tasks to come
    # under annealing's floor the search has the last word: the capped share, as without annealing
    assert torch.equal(narrow, units_to_train([owner], [MIN_TRAINED - 1], tasks_left=4)[0])
    assert int(narrow.sum()) < 28


def _search(budget, margin=1.0, dead=4):
    """A search on a toy network where the first ``dead`` free units of each layer cost nothing to prune and
    every further one costs 0.3 validation points."""
    torch.manual_seed(0)
    net = clnp.mlp(64, (12, 12), input_shape=(1, 8, 8))
    net.add_head(2)
    activity = [torch.arange(12, dtype=torch.float) for _ in range(2)]  # unit u is the u-th least active

    def evaluate(keep, cut):
        cost = sum(max(0, int((~k & trainable_units(o)).sum()) - dead) for k, o in zip(keep, net.owners,
                                                                                     strict=True))
        return Score(1.0 - 0.003 * cost)

    return choose_pruning(net, 0, activity, evaluate, margin=margin, budget=budget)


def test_where_the_budget_allows_the_search_prunes_only_what_costs_nothing():
    decision = _search(budget=[10, 10])
    assert decision.pruned == [4, 4] and decision.val_accuracy_after == decision.val_accuracy_before
    assert decision.over_budget == [0, 0] and decision.given_up == [0.0, 0.0]


def test_where_it_does_not_the_search_spends_the_margin_to_meet_the_budget_and_no_more():
    decision = _search(budget=[7, 12])
    assert [12 - p for p in decision.pruned] == [7, 8]  # layer 0 pruned to its budget, layer 1 only what is free
    assert decision.over_budget == [0, 0]
    assert decision.given_up[0] == pytest.approx(0.3) and decision.given_up[1] == 0.0


def test_where_even_the_margin_cannot_meet_the_budget_the_task_keeps_what_it_must_and_says_so():
    decision = _search(budget=[1, 1])
    assert decision.val_accuracy_after >= decision.val_accuracy_before - 0.01 - 1e-9  # never past the margin
    assert sum(decision.over_budget) > 0
    kept = [12 - p for p in decision.pruned]
    assert [k - b for k, b in zip(kept, [1, 1], strict=True)] == decision.over_budget


def test_the_free_loss_is_a_tenth_of_the_margin():
    assert FREE_SHARE == 0.1
    decision = _search(budget=[10, 10], margin=10.0)  # 1 free point: three more units per layer go for nothing
    assert decision.val_accuracy_after >= decision.val_accuracy_before - FREE_SHARE * 10.0 / 100 - 1e-9
    assert decision.budget == [10, 10] and decision.over_budget == [0, 0]


@pytest.mark.parametrize(("slack", "pruned"), [(None, [5, 5]), (1.0, [4, 4])])
def test_within_the_free_loss_the_true_class_confidence_may_fall_by_free_confidence_slack_times_it(
        slack, pruned, monkeypatch):
    """No answer changes, but each unit past the first four costs 0.15 points of confidence. With a margin of 1 the
    free loss is 0.1 points: at the default, 3 times that (0.3 points) lets units go for free; held to the loss itself
    (the variant measured and not kept), none of them is free."""
    import clnp.core.pruning as pruning

    assert FREE_CONFIDENCE_SLACK == CONFIDENCE_SLACK == 3.0
    if slack is not None:
        monkeypatch.setattr(pruning, "FREE_CONFIDENCE_SLACK", slack)
    torch.manual_seed(0)
    net = clnp.mlp(64, (12, 12), input_shape=(1, 8, 8))
    net.add_head(2)
    activity = [torch.arange(12, dtype=torch.float) for _ in range(2)]

    def evaluate(keep, cut):
        cost = sum(max(0, int((~k & trainable_units(o)).sum()) - 4) for k, o in zip(keep, net.owners, strict=True))
        return Score(1.0, 1.0, 0.9 - 0.0015 * cost)

    decision = choose_pruning(net, 0, activity, evaluate, margin=1.0, budget=[12, 12])
    assert decision.pruned == pruned and decision.over_budget == [0, 0]
    # where the budget binds, the search spends the margin, the confidence held to CONFIDENCE_SLACK margins
    decision = choose_pruning(net, 0, activity, evaluate, margin=1.0, budget=[7, 12])
    assert [12 - p for p in decision.pruned] == [7, 12 - pruned[1]]


def test_clnp_reports_the_plan_of_every_task_and_keeps_within_budget_or_says_why(digit_tasks):
    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.mlp(64, (48, 48), input_shape=(1, 8, 8)),
                        quick_config(epochs=6, l1=3e-3, margin=1.0, expected_tasks=3))
    for task in digit_tasks[:3]:
        report = learner.learn(task)
        assert report.budget is not None and len(report.budget) == 2
        for owned, budget, over in zip(report.owned, report.budget, report.over_budget, strict=True):
            assert owned == budget + over if over else owned <= budget
        assert report.val_accuracy_lossless is not None
        assert report.val_accuracy_pruned >= report.val_accuracy_dense - 0.01 - 1e-9
    first = learner.reports[0]
    assert first.budget == [allotments(48 - reserve_units(48, 3), 3)[0]] * 2 == [16, 16]
    rows = learner.capacity()
    assert [row["budget_by_task"] for row in rows] == [[r.budget[i] for r in learner.reports] for i in range(2)]


def test_a_declining_share_lets_the_first_task_keep_more_than_an_equal_share_and_is_checked(digit_tasks):
    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.mlp(64, (48, 48), input_shape=(1, 8, 8)),
                        quick_config(epochs=2, expected_tasks=3, share="declining"))
    assert learner.learn(digit_tasks[0]).budget == [47 * 3 // 6] * 2  # weights 3, 2, 1; 1 unit of 48 in reserve
    with pytest.raises(ValueError, match="share must be one of 'equal', 'declining'"):
        quick_config(share="front")
    with pytest.raises(ValueError, match="option clnp.share must be one of 'equal', 'declining'"):
        clnp.methods.check_options("clnp", {"share": "front"})


def test_without_a_plan_the_greedy_search_reports_no_budget(digit_tasks):
    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.mlp(64, (32, 32), input_shape=(1, 8, 8)), quick_config(epochs=2, plan=False))
    report = learner.learn(digit_tasks[0])
    assert report.budget is None and report.over_budget == [0, 0]


def test_the_l1_penalty_on_weights_pulls_only_on_the_task_s_free_units_and_keeps_old_tasks_bit_identical(digit_tasks):
    from clnp.core.sparsity import l1_weight_penalty

    torch.manual_seed(0)
    net = clnp.mlp(64, (32, 32), input_shape=(1, 8, 8))
    learner = clnp.CLNP(net, quick_config(epochs=4, l1=3e-3, sparsity="weights", expected_tasks=2))
    learner.learn(digit_tasks[0])
    x = digit_tasks[0].test.x
    with torch.no_grad():
        before = net(x, 0)
    layers = [block.layer for block in net.blocks]
    trainable = [layer.train_rows for layer in layers]
    net.reset_free_units_()  # as before the next task: the free units' weights are fresh, not silenced zeros
    penalty = l1_weight_penalty([layer.weight for layer in layers], [1.0, 1.0], trainable)
    penalty.backward()
    for layer, rows in zip(layers, trainable, strict=True):
        assert not layer.weight.grad[~rows].any() and layer.weight.grad[rows].abs().sum() > 0
    net.zero_grad(set_to_none=True)
    learner.learn(digit_tasks[1])
    with torch.no_grad():
        assert torch.equal(net(x, 0), before)
    with pytest.raises(ValueError, match="sparsity must be one of 'activations', 'weights'"):
        clnp.CLNPConfig(sparsity="bias")


def test_the_search_cache_predicts_exactly_what_a_full_pass_predicts_under_any_masks_and_cuts(digit_tasks):
    from clnp.core.activity import SearchCache, predict_with_loss

    torch.manual_seed(0)
    net = clnp.mlp(64, (24, 24, 24), input_shape=(1, 8, 8))
    learner = clnp.CLNP(net, quick_config(epochs=2, plan=False))
    learner.learn(digit_tasks[0])
    net.reset_free_units_()
    net.add_head(2)
    x, y = digit_tasks[1].val.x, digit_tasks[1].val.y
    cache = SearchCache(net, 1, [(x[:20], y[:20]), (x[20:], None)], batch_size=8)
    generator = torch.Generator().manual_seed(1)
    head = net.heads[1]
    saved = head.weight.detach().clone()
    keep = [torch.ones(24, dtype=torch.bool) for _ in range(3)]
    for _ in range(12):  # as the search proposes: one layer's mask changes at a time
        layer = int(torch.randint(3, (1,), generator=generator))
        keep = [k.clone() for k in keep]
        keep[layer] = torch.rand(24, generator=generator) > 0.3
        cut = [torch.zeros(24, dtype=torch.bool) for _ in range(3)]
        with torch.no_grad():
            head.weight.copy_(saved)
            if torch.rand(1, generator=generator) > 0.5:  # a reuse cut into the head, made in place
                cut[2] = torch.rand(24, generator=generator) > 0.5
                head.weight[:, cut[2]] = 0.0
        predicted, total = cache.predict(keep, cut)
        a, _, confidence = predict_with_loss(net, 1, x[:20], y[:20], keep, 8)
        b, _, _ = predict_with_loss(net, 1, x[20:], None, keep, 8)
        assert torch.equal(predicted, torch.cat([a, b])) and total / 20 == confidence
    assert cache.recomputed_layers < 12 * 4 * len(cache.batches)  # some calls started above the first layer


def test_a_search_with_its_cache_decides_exactly_as_one_without(digit_tasks, monkeypatch):
    import clnp.core.activity as activity

    def learn():
        torch.manual_seed(0)
        learner = clnp.CLNP(clnp.mlp(64, (32, 32), input_shape=(1, 8, 8)),
                            quick_config(epochs=3, expected_tasks=3, margin=2.0))
        reports = [learner.learn(task) for task in digit_tasks[:3]]
        return [(r.owned, r.reused, r.thresholds, r.val_accuracy_pruned) for r in reports], learner.net.state_dict()

    cached, cached_state = learn()
    # max_bytes=0: the cache keeps nothing, so every evaluation is a full pass
    monkeypatch.setattr(activity.SearchCache.__init__, "__defaults__", (1024, 0))
    full, full_state = learn()
    assert cached == full
    assert all(torch.equal(cached_state[k], full_state[k]) for k in cached_state)


def test_the_anneal_schedule_prunes_towards_the_budget_cubically_and_reaches_it_before_the_last_epoch():
    from clnp.methods.clnp.cycle import _Anneal

    anneal = _Anneal(task=0, budget=[10, 50, 2], start=[90, 40, 30], trained=[])
    steps = [anneal.targets(e, 5) for e in range(4)]
    assert [s[0] for s in steps] == [44, 20, 12, 10]  # 10 + ceil(80 * (3/4)^3), ...: most of it early
    assert all(s[1] == 40 for s in steps)  # a layer trained within its budget is left alone
    assert steps[-1][2] == MIN_TRAINED  # a budget of a unit or two is left to the search, within the margin
    assert anneal.targets(0, 2) == [10, 40, MIN_TRAINED]  # two epochs: the second trains on the budget


def test_with_the_plan_a_task_learns_within_its_budget_and_the_search_starts_there(digit_tasks):
    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.mlp(64, (48, 48), input_shape=(1, 8, 8)),
                        quick_config(epochs=4, batch_size=8, l1=3e-3, margin=1.0, expected_tasks=5))
    seen = []
    original = learner.after_epoch

    def spy(head, epoch, epochs):
        original(head, epoch, epochs)
        if learner._phase is not None and learner._phase.anneal is not None:
            seen.append([int(t.sum()) for t in learner._phase.anneal.trained])

    learner.after_epoch = spy
    report = learner.learn(digit_tasks[0])
    budget = 10  # 47 units beyond the reserve of 1 among 5 tasks: 10, 10, 9, 9, 9
    # annealed, it trains on every free unit (those annealed away are free again for the tasks to come)
    assert report.budget == [budget, budget] and report.trained == [48, 48]
    # 37 steps an epoch: annealing waits for ANNEAL_AFTER_STEPS (40), then 10 + ceil(38 / 27), then the budget
    assert seen == [[48, 48], [12, 12], [budget, budget], [budget, budget]]
    assert report.over_budget == [0, 0] and all(o <= budget for o in report.owned)
    assert [row["trained_by_task"] for row in learner.capacity()] == [[48], [48]]
    assert all(int(f) >= 48 - budget for f in learner.net.free_units())  # what annealing dropped is free again


def test_an_open_ended_stream_s_task_is_annealed_to_the_doubling_rule_s_budget_too(digit_tasks):
    """Cut only after training, an open-ended stream's first task kept far more than its budget and the last tasks
    got a unit or none (permuted-digits); annealed, each task learns within its share and later tasks find room."""
    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.mlp(64, (48, 48), input_shape=(1, 8, 8)),
                        quick_config(epochs=4, batch_size=8, l1=3e-3, margin=1.0))  # no expected_tasks
    annealed = []
    original = learner.after_epoch

    def spy(head, epoch, epochs):
        original(head, epoch, epochs)
        annealed.append(learner._phase is not None and learner._phase.anneal is not None)

    learner.after_epoch = spy
    first = learner.learn(digit_tasks[0])
    assert first.budget == [48 // OPEN_HORIZON] * 2 and first.trained == [48, 48]
    assert annealed[:4] == [True] * 4  # every training epoch (the fine-tuning's come after)
    assert first.over_budget == [0, 0] and all(o <= b for o, b in zip(first.owned, first.budget, strict=True))
    second = learner.learn(digit_tasks[1])
    assert second.trained == [48 - o for o in first.owned]  # every unit the first task left free
    assert all(o <= b for o, b in zip(second.owned, second.budget, strict=True))


def test_without_annealing_the_task_trains_on_its_units_to_the_end_and_the_search_cuts_it_to_the_budget(digit_tasks):
    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.mlp(64, (48, 48), input_shape=(1, 8, 8)),
                        quick_config(epochs=3, expected_tasks=5, anneal=False))
    report = learner.learn(digit_tasks[0])
    assert report.trained == [30, 30]
    assert all(o <= b + over for o, b, over in zip(report.owned, report.budget, report.over_budget, strict=True))


def test_a_task_too_short_to_anneal_trains_on_its_capped_share_and_the_search_cuts_it(digit_tasks):
    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.mlp(64, (48, 48), input_shape=(1, 8, 8)),
                        quick_config(epochs=2, batch_size=64, expected_tasks=5))
    assert (2 - 1) * steps_per_epoch(len(digit_tasks[0].train), 64) < ANNEAL_AFTER_STEPS  # could never start
    report = learner.learn(digit_tasks[0])
    assert report.trained == [30, 30]  # as without annealing: not every free unit, so later tasks find room


def test_units_annealed_away_behind_a_batch_norm_stay_out_of_the_task_s_check_and_search(digit_tasks):
    """Zeroing an annealed unit's weights would not silence it behind a batch norm (its shift stays): the chance
    check and the search's reference evaluate the trained units only, as training computed them (the README's
    residual network was refused as 'nothing learned' at 97 % validation accuracy before)."""
    from torch import nn

    from clnp.core.activity import accuracy

    class Block(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
            self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)

        def forward(self, x):
            return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + x)

    class Residual(nn.Module):
        def __init__(self, width: int = 16) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
            self.blocks = nn.Sequential(Block(width), Block(width))

        def forward(self, x):
            return self.blocks(self.stem(x)).mean((2, 3))

    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.CLNPNet(Residual(), input_shape=(1, 8, 8)),
                        clnp.CLNPConfig(epochs=10, batch_size=32, finetune_epochs=1, expected_tasks=2))
    report = learner.learn(digit_tasks[0])
    assert report.trained[0] > MIN_TRAINED >= report.owned[0]  # annealed to 8 units, the search went on
    assert report.val_accuracy_dense > 0.9 and report.val_accuracy_final > 0.9
    assert accuracy(learner.net, 0, digit_tasks[0].val.x, digit_tasks[0].val.y) == report.val_accuracy_final


def _record_l1_pulls(learner) -> dict[int, list[list[float]]]:
    """Per task (head), the L1 pull per layer at each training step with the penalty on, as the loop's batch hook
    sees it."""
    pulls: dict[int, list[list[float]]] = {}
    original = learner.batch_loss

    def record(batch, head, step, n_steps):
        if learner._phase.l1:
            pulls.setdefault(head, []).append(list(learner._phase.l1_coefficients))
        return original(batch, head, step, n_steps)

    learner.batch_loss = record
    return pulls


def test_the_l1_pull_on_a_layer_falls_with_the_share_of_it_still_free(digit_tasks, monkeypatch):
    """As a layer fills, a task's units are a smaller part of what the next layer reads and the same pull idled
    them while the task leaned on old units; the pull per unit is the coefficient times the free share (and the
    budget's slack, here held at 1)."""
    from clnp.methods.clnp import cycle

    monkeypatch.setattr(cycle, "L1_FOLLOWS_BUDGET", False)
    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.mlp(64, (48, 48), input_shape=(1, 8, 8)),
                        quick_config(epochs=2, l1=3e-3, expected_tasks=3))
    pulls = _record_l1_pulls(learner)
    learner.learn(digit_tasks[0])
    free = learner.net.free_units()
    learner.learn(digit_tasks[1])
    assert pulls[0] and all(p == [3e-3, 3e-3] for p in pulls[0])  # a layer all free: the coefficient itself
    assert all(f < 48 for f in free) and pulls[1] and all(p == pytest.approx([3e-3 * f / 48 for f in free])
                                                          for p in pulls[1])


def test_the_l1_pull_relaxes_only_in_a_layer_where_every_earlier_task_left_most_of_its_budget_unused():
    assert pull_scale([], [], 2) == [1.0, 1.0]  # the first task: the full pull
    assert pull_scale([[10, 50]], [[100, 100]], 2) == [SLACK_PULL, 1.0]  # a tenth: a third; half: exactly full
    # the most any earlier task needed: a quarter of its budget gives half the pull, a fifth 0.4
    assert pull_scale([[10, 20], [30, 5]], [[100, 100], [120, 100]], 2) == pytest.approx([0.5, 0.4])
    assert pull_scale([[3, 3]], [None], 2) == [1.0, 1.0]  # tasks learned without a plan say nothing
    assert pull_scale([[0, 8]], [[0, 5]], 2) == [1.0, 1.0]  # a full layer's task counts for nothing; over: full


def test_a_task_trains_under_the_pull_its_report_records_relaxed_where_the_budget_did_not_bind(digit_tasks,
                                                                                                   monkeypatch):
    """``L1_FOLLOWS_BUDGET``: the pull idles units to free them for later tasks; where the tasks so far kept under
    half their budgets the next one trains under less of it. Each report says what share of the coefficient its
    units felt, and that is the pull the loop applied."""
    from clnp.methods.clnp import cycle

    monkeypatch.setattr(cycle, "L1_FOLLOWS_BUDGET", True)
    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.mlp(64, (48, 48), input_shape=(1, 8, 8)),  # planned for one task: a loose budget
                        quick_config(epochs=2, l1=3e-3, expected_tasks=1, margin=1.0))
    pulls = _record_l1_pulls(learner)
    first = learner.learn(digit_tasks[0])
    free = learner.net.free_units()
    second = learner.learn(digit_tasks[1])
    slack = pull_scale([first.owned], [first.budget], 2)
    assert first.l1_pull == [1.0, 1.0] and min(slack) < 1.0  # the first task kept under half its budget somewhere
    assert second.l1_pull == pytest.approx([f / 48 * s for f, s in zip(free, slack, strict=True)])
    assert pulls[1] and all(p == pytest.approx([3e-3 * s for s in second.l1_pull]) for p in pulls[1])


def test_the_greedy_search_of_the_paper_keeps_the_flat_l1_pull(digit_tasks):
    torch.manual_seed(0)
    learner = clnp.CLNP(clnp.mlp(64, (48, 48), input_shape=(1, 8, 8)), quick_config(epochs=2, l1=3e-3, plan=False))
    pulls = _record_l1_pulls(learner)
    learner.learn(digit_tasks[0])
    learner.learn(digit_tasks[1])
    assert pulls[1] and all(p == [3e-3, 3e-3] for p in pulls[1]) and any(f < 48 for f in learner.net.free_units())


@pytest.mark.parametrize("warmup", [0.0, 2.0])
def test_with_an_l1_warm_up_the_pull_rises_from_zero_to_full_over_its_epochs(digit_tasks, monkeypatch, warmup):
    """``L1_WARMUP_EPOCHS`` (0 by default: the full pull from the first step) lets a task's units learn features before
    the pull idles the weak ones; the pull each training step feels is the coefficient times the ramp."""
    from clnp.methods.clnp import cycle

    monkeypatch.setattr(cycle, "L1_WARMUP_EPOCHS", warmup)
    torch.manual_seed(0)
    config = quick_config(epochs=3, l1=3e-3, plan=False)
    learner = clnp.CLNP(clnp.mlp(64, (48, 48), input_shape=(1, 8, 8)), config)
    felt: list[list[float]] = []
    forward = learner.net.forward_with_activity

    def record(x, head, keep=None, weights=None):
        if weights is not None:
            felt.append([float(w.max()) for w in weights if w is not None])
        return forward(x, head, keep, weights)

    learner.net.forward_with_activity = record
    learner.learn(digit_tasks[0])
    n = steps_per_epoch(len(digit_tasks[0].train), config.batch_size, 1)
    assert len(felt) == 3 * n
    expected = [3e-3 * (min(1.0, step / (warmup * n)) if warmup else 1.0) for step in range(1, 3 * n + 1)]
    assert [pull[0] for pull in felt] == pytest.approx(expected) and all(p[0] == p[1] for p in felt)
    assert (felt[0][0] < 3e-3) == bool(warmup) and felt[-1] == pytest.approx([3e-3, 3e-3])
