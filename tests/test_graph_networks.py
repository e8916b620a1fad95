"""CLNP on traced graph models (clnp.core.graph_net): residual additions, concatenation, batch norm, global pooling.

The central promise, bit for bit, on resnet18, alexnet, a user's torchvision-style residual module and random small
residual graphs: after later tasks, after a save and load, in eval and in train mode.
"""

from __future__ import annotations

import io
import random

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import clnp
from clnp.core.graph import UnsupportedNodeError
from clnp.core.graph_net import GraphNet
from clnp.data.tasks import Split, Task
from clnp.models import build_network

from .conftest import quick_config


class BasicBlock(nn.Module):
    """torchvision's BasicBlock, written out (no torchvision here): in-place ReLU, ``out += identity``."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class UserResNet(nn.Module):
    """A user's own small residual network with batch norm."""

    def __init__(self, width: int = 6):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(BasicBlock(width, width), BasicBlock(width, 2 * width, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.pool(self.blocks(self.stem(x))), 1)


def image_tasks(shape: tuple[int, ...], n_tasks: int = 3, n: int = 48, seed: int = 0) -> list[Task]:
    """Small learnable tasks on random images: class 1 brightens a random pattern of pixels, its own per task."""
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(n_tasks):
        y = torch.randint(0, 2, (3 * n,), generator=g)
        pattern = (torch.rand(*shape, generator=g) < 0.5).float()
        x = 0.5 * torch.rand(3 * n, *shape, generator=g) + 0.5 * y.view(-1, *[1] * len(shape)) * pattern
        tasks.append(Task(f"t{t}", 2, Split(x[:n], y[:n]), Split(x[n:2 * n], y[n:2 * n]),
                          Split(x[2 * n:], y[2 * n:])))
    return tasks


def learn_and_check(net: clnp.CLNPNet, tasks: list[Task], probe: Tensor, train_mode: bool = True,
                    **config) -> clnp.CLNP:
    """Learn ``tasks`` one by one; after each, every earlier task's logits (in eval mode and, for a model without
    dropout, in train mode) are torch.equal to those right after it was learned."""
    settings = {"epochs": 6, "finetune_epochs": 1, "margin": 2.0, "lr": 1e-2, "expected_tasks": len(tasks), **config}
    learner = clnp.CLNP(net, quick_config(**settings))
    recorded: list[Tensor] = []
    for t, task in enumerate(tasks):
        learner.learn(task)
        with torch.no_grad():
            net.eval()
            recorded.append(net(probe, t).clone())
            for earlier in range(t + 1):
                assert torch.equal(net(probe, earlier), recorded[earlier]), f"task {earlier} changed after task {t}"
            net.train(train_mode)
            for earlier in range(t + 1):
                assert torch.equal(net(probe, earlier), recorded[earlier]), f"task {earlier} (train mode) after {t}"
    assert sum(learner.reports[0].owned) > 0, "the first task kept no unit: the check would be empty"
    return learner


def reloaded(net: clnp.CLNPNet, fresh: clnp.CLNPNet) -> clnp.CLNPNet:
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    for head in net.heads:
        fresh.add_head(head.n_units)
    fresh.load_state_dict(torch.load(buffer))
    return fresh.eval()


def test_a_model_that_is_not_a_stack_makes_a_graph_network_with_one_unit_set_per_add_joined_family():
    net = clnp.CLNPNet(UserResNet(4), (1, 8, 8))
    assert isinstance(net, GraphNet) and isinstance(net, clnp.CLNPNet)
    # stem + block 0's conv2 are joined by block 0's identity; block 1's conv2 and its downsample by block 1's add
    assert net.layer_names == ["0:Conv2d(stem.0+1->4)", "1:Conv2d(blocks.0.conv1->4)", "2:Conv2d(blocks.1.conv1->8)",
                               "3:Conv2d(blocks.1.conv2+1->8)"]
    assert net.widths == [4, 4, 8, 8] and net.feature_dim == 8
    assert isinstance(clnp.CLNPNet(nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU()), (1, 8, 8)).blocks[0],
                      nn.Module)  # a plain stack stays a stack


def test_the_users_module_is_not_changed_by_wrapping_or_training():
    model = UserResNet(4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = clnp.CLNPNet(model, (1, 8, 8))
    learn_and_check(net, image_tasks((1, 8, 8), 1), torch.rand(8, 1, 8, 8))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.blocks[0].relu.inplace  # the network's copy runs out of place; the user's module is as it was


@pytest.mark.parametrize("task_batch_norm", [False, True], ids=["owners_statistics", "per_task_statistics"])
def test_a_users_residual_module_with_batch_norm_keeps_every_earlier_task_bit_identical(task_batch_norm, digit_tasks):
    torch.manual_seed(0)
    net = clnp.CLNPNet(UserResNet(6), (1, 8, 8), task_batch_norm=task_batch_norm)
    probe = torch.rand(20, 1, 8, 8)
    learner = learn_and_check(net, digit_tasks, probe)
    assert any(sum(r.reused) for r in learner.reports[1:]), "no task reused an old unit: nothing tested"
    twin = reloaded(net, clnp.CLNPNet(UserResNet(6), (1, 8, 8), task_batch_norm=task_batch_norm))
    net.eval()
    with torch.no_grad():
        for t in range(3):
            assert torch.equal(twin(probe, t), net(probe, t))
    if task_batch_norm:  # each learned task froze its own statistics, of every channel
        bn = net.trunk.get_submodule("blocks.0.bn1")
        assert bn.task_mean.shape == (3, 6) and not torch.equal(bn.task_mean[0], bn.task_mean[1])


def test_resnet18_with_8_filters_keeps_every_earlier_task_bit_identical_after_later_tasks_and_a_reload(digit_tasks):
    torch.manual_seed(0)
    net = build_network("resnet18:8", (1, 8, 8))
    probe = torch.rand(16, 1, 8, 8)
    learner = learn_and_check(net, digit_tasks, probe)
    assert learner.reports[0].val_accuracy_final > 0.8
    twin = reloaded(net, build_network("resnet18:8", (1, 8, 8)))
    net.eval()
    with torch.no_grad():
        assert all(torch.equal(twin(probe, t), net(probe, t)) for t in range(3))


def test_alexnet_keeps_the_first_task_bit_identical_after_the_second():
    """In eval mode: alexnet has dropout, whose train-mode outputs are random by design."""
    torch.manual_seed(0)
    net = build_network("alexnet", (3, 32, 32))
    learn_and_check(net, image_tasks((3, 32, 32), 2, n=24), torch.rand(6, 3, 32, 32), train_mode=False, epochs=2)


def test_a_graph_network_under_bf16_autocast_keeps_earlier_tasks_bit_identical():
    torch.manual_seed(0)
    net = clnp.CLNPNet(UserResNet(4), (1, 8, 8))
    learner = clnp.CLNP(net, quick_config(epochs=2, finetune_epochs=1, margin=2.0, precision="bf16-mixed"))
    tasks, probe = image_tasks((1, 8, 8), 2), torch.rand(10, 1, 8, 8)
    learner.learn(tasks[0])
    before = learner.logits(0, probe)
    learner.learn(tasks[1])
    assert torch.equal(learner.logits(0, probe), before)


def test_cut_weights_of_a_graph_network_are_exactly_zero_and_frozen_rows_never_move():
    torch.manual_seed(0)
    net = clnp.CLNPNet(UserResNet(4), (1, 8, 8))
    learner = clnp.CLNP(net, quick_config(epochs=2, finetune_epochs=1, margin=2.0, optimizer="sgd", lr=0.05,
                                          weight_decay=1e-2))
    tasks = image_tasks((1, 8, 8), 2)
    learner.learn(tasks[0])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rows = net.owned_rows(before)
    learner.learn(tasks[1])
    after = net.state_dict()
    assert net.weight_cut_problems(after) == []
    for key, owned in rows.items():
        assert torch.equal(after[key][owned], before[key][owned]), key


def test_pruned_units_are_silenced_by_cutting_their_columns_not_by_zeroing_a_tap():
    """A constant added after a unit's activity (``x + 1``) must not reach the next layer once the unit is pruned:
    the search evaluates exactly the network freezing will make."""

    class PlusOne(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(6, 5), nn.Linear(5, 4)

        def forward(self, x: Tensor) -> Tensor:
            return F.relu(self.b(F.relu(self.a(x)) + 1.0))

    torch.manual_seed(0)
    net = clnp.CLNPNet(PlusOne(), (6,))
    net.add_head(3)
    x = torch.randn(7, 6)
    keep = [torch.tensor([True, False, True, False, True]), torch.ones(4, dtype=torch.bool)]
    with torch.no_grad():
        got = net(x, 0, keep)
        hidden = F.relu(net.trunk.a(x)) + 1.0
        hidden = hidden * keep[0].float()  # what the next layer reads once the pruned units' columns are cut
        expected = net.heads[0](F.relu(net.trunk.b(hidden)))
    assert torch.allclose(got, expected)
    net.assign_units_(0, keep)
    with torch.no_grad():
        assert torch.equal(net(x, 0), got)


def test_weight_sparsity_is_refused_for_a_graph_network_in_one_line():
    net = clnp.CLNPNet(UserResNet(4), (1, 8, 8))
    with pytest.raises(ValueError, match="sparsity='activations'"):
        clnp.CLNP(net, clnp.CLNPConfig(sparsity="weights"))


def test_a_graph_network_grows_every_unit_set_between_tasks_and_old_tasks_stay_bit_identical(digit_tasks):
    torch.manual_seed(0)
    net = clnp.CLNPNet(UserResNet(4), (1, 8, 8))
    learner = clnp.CLNP(net, quick_config(epochs=6, lr=1e-2, margin=2.0, expected_tasks=3))
    probe, recorded = torch.rand(10, 1, 8, 8), []
    for t, task in enumerate(digit_tasks):
        learner.learn(task)
        net.eval()
        with torch.no_grad():
            recorded.append(net(probe, t).clone())
        for s in range(net.n_layers):
            net.grow_(s, 2)  # the residual stream's three layers, a block's inner conv, the heads' columns
        for mode in (False, True):
            net.train(mode)
            with torch.no_grad():
                assert all(torch.equal(net(probe, e), recorded[e]) for e in range(t + 1))
    assert net.widths == [10, 10, 14, 14] and net.feature_dim == 14
    from clnp.exporting.graph import export_graph

    with torch.no_grad():
        assert all(torch.equal(export_graph(net, e)(probe), recorded[e]) for e in range(3))
    twin = reloaded(net, clnp.CLNPNet(UserResNet(4), (1, 8, 8)))
    with torch.no_grad():
        assert all(torch.equal(twin(probe, e), recorded[e]) for e in range(3))


def test_a_unit_set_a_concatenation_puts_other_channels_after_is_refused_growth_and_left_unchanged():
    class Cat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(1, 3, 1), nn.Conv2d(1, 4, 1), nn.Conv2d(7, 5, 1)

        def forward(self, x: Tensor) -> Tensor:
            return self.c(torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], 1)).mean((2, 3))

    net = clnp.CLNPNet(Cat(), (1, 4, 4))
    with pytest.raises(ValueError, match=r"^unit set 0:Conv2d\(a->3\) cannot grow: layer c reads other channels"):
        net.grow_(0, 2)
    assert net.widths == [3, 4, 5]
    net.grow_(1, 2)  # b's channels come last in the concatenation: c gains two columns at the end
    assert net.widths == [3, 6, 5] and net.trunk.c.weight.shape[1] == 9


def test_a_model_with_an_operation_clnp_cannot_follow_is_refused_naming_the_node():
    class Sorts(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x: Tensor) -> Tensor:
            return torch.cumsum(self.a(x), 1)

    with pytest.raises(UnsupportedNodeError) as info:
        clnp.CLNPNet(Sorts(), (4,))
    message = str(info.value)
    assert "\n" not in message and "'cumsum'" in message


# ------------------------------------------------------------------------------- random residual graphs
class RandomGraph(nn.Module):
    """A random small network of conv layers with residual additions, concatenations and batch norm."""

    def __init__(self, rng: random.Random):
        super().__init__()
        width = rng.choice((8, 12))
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(width) if rng.random() < 0.5 else nn.Identity()
        self.kinds: list[str] = []
        self.parts = nn.ModuleList()
        for _ in range(rng.randint(2, 4)):
            kind = rng.choice(("add", "cat", "conv"))
            self.kinds.append(kind)
            if kind == "add":
                part = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)])
            elif kind == "cat":
                a, b = rng.randint(4, 6), rng.randint(4, 6)
                part = nn.ModuleList([nn.Conv2d(width, a, 1), nn.Conv2d(width, b, 3, padding=1)])
                width = a + b
            else:
                new = rng.randint(6, 10)
                part = nn.ModuleList([nn.Conv2d(width, new, 3, padding=1), nn.BatchNorm2d(new)])
                width = new
            self.parts.append(part)
        self.fc = nn.Linear(width, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))
        for kind, part in zip(self.kinds, self.parts, strict=True):
            if kind == "add":
                x = F.relu(x + part[1](part[0](x)))
            elif kind == "cat":
                x = torch.cat([F.relu(part[0](x)), F.relu(part[1](x))], 1)
            else:
                x = F.relu(part[1](part[0](x)))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("seed", range(4))
def test_random_residual_graphs_keep_every_earlier_task_bit_identical(seed: int, digit_tasks):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    net = clnp.CLNPNet(RandomGraph(rng), (1, 8, 8))
    learn_and_check(net, digit_tasks, torch.rand(12, 1, 8, 8))


def test_an_exported_task_of_a_graph_network_gives_its_logits_compact_or_bit_for_bit_at_full_width(digit_tasks):
    from clnp.exporting.graph import export_graph

    torch.manual_seed(0)
    net = clnp.CLNPNet(UserResNet(6), (1, 8, 8))
    probe = torch.rand(20, 1, 8, 8)
    learn_and_check(net, digit_tasks, probe)
    net.eval()
    for t in range(len(digit_tasks)):
        full, compact = export_graph(net, t), clnp.export(net, t)
        with torch.no_grad():
            assert torch.equal(full(probe), net(probe, t))
            assert torch.allclose(compact(probe), net(probe, t), atol=1e-5)
        # compact: the units the task reads, smaller wherever it does not read every unit (a later task may)
        size = sum(p.numel() for p in compact.parameters()), sum(p.numel() for p in full.parameters())
        reads_every_unit = all(bool(used.all()) for used in net.units_used_by(t))
        if t == 0:
            assert not reads_every_unit  # the first task reads only its own units, and some stay free
        assert size[0] == size[1] if reads_every_unit else size[0] < size[1]
        assert not any(isinstance(m, (GraphNet,)) for m in compact.modules())


def test_the_search_cache_of_a_graph_restarts_mid_graph_and_predicts_exactly_what_a_full_pass_predicts(digit_tasks):
    from clnp.core.activity import SearchCache, predict_with_loss

    torch.manual_seed(0)
    net = clnp.CLNPNet(UserResNet(6), (1, 8, 8))
    learner = clnp.CLNP(net, quick_config(epochs=6, lr=1e-2, margin=2.0, expected_tasks=3))
    learner.learn(digit_tasks[0])
    net.reset_free_units_()
    net.add_head(2)
    x, y = digit_tasks[1].val.x, digit_tasks[1].val.y
    cache = SearchCache(net, 1, [(x[:20], y[:20]), (x[20:], None)], batch_size=16)
    generator = torch.Generator().manual_seed(1)
    keep = [torch.ones(w, dtype=torch.bool) for w in net.widths]
    old = [o == 0 for o in net.owners]
    assert any(o.any() for o in old)
    for _ in range(12):  # as the search proposes: one unit set's mask or reuse cut changes at a time
        s = int(torch.randint(net.n_layers, (1,), generator=generator))
        keep = [k.clone() for k in keep]
        keep[s] = torch.rand(net.widths[s], generator=generator) > 0.3
        cut = [torch.zeros(w, dtype=torch.bool) for w in net.widths]
        cut[s] = old[s] & (torch.rand(net.widths[s], generator=generator) > 0.5)
        pairs = net.reuse_cut_pairs(1, cut)
        saved = [w.detach().clone() for w, _ in pairs]
        with torch.no_grad():
            for weight, mask in pairs:
                weight.masked_fill_(mask, 0.0)
            predicted, total = cache.predict(keep, cut)
            a, _, confidence = predict_with_loss(net, 1, x[:20], y[:20], keep, 16)
            b, _, _ = predict_with_loss(net, 1, x[20:], None, keep, 16)
            for (weight, _), value in zip(pairs, saved, strict=True):
                weight.copy_(value)
        assert torch.equal(predicted, torch.cat([a, b])) and total / 20 == confidence
    assert cache.recomputed_layers < 12 * net.n_search_points * len(cache.batches)  # some started mid-graph


def test_a_graph_search_with_its_cache_decides_exactly_as_one_without(digit_tasks, monkeypatch):
    import clnp.core.activity as activity

    def learn():
        torch.manual_seed(0)
        learner = clnp.CLNP(clnp.CLNPNet(UserResNet(6), (1, 8, 8)),
                            quick_config(epochs=6, lr=1e-2, margin=2.0, expected_tasks=3))
        reports = [learner.learn(task) for task in digit_tasks[:3]]
        assert sum(reports[0].owned) and any(sum(r.reused) for r in reports[1:])
        return [(r.owned, r.reused, r.thresholds, r.val_accuracy_pruned) for r in reports], learner.net.state_dict()

    cached, cached_state = learn()
    monkeypatch.setattr(activity.SearchCache.__init__, "__defaults__", (1024, 0))  # keeps nothing: full passes
    full, full_state = learn()
    assert cached == full
    assert all(torch.equal(cached_state[k], full_state[k]) for k in cached_state)
