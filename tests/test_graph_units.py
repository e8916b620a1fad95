"""clnp.core.graph: any traceable module read as CLNP units, unit groups and input maps, or refused by node."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clnp.core.graph import UnitGraph, UnsupportedNodeError, trace_units
from clnp.models import alexnet, resnet18


def conv3x3(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock, written out (no torchvision here): in-place ReLU, ``out += identity``."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


def stem_and_block(downsample: bool) -> nn.Module:
    block = BasicBlock(4, 8, 2, nn.Sequential(nn.Conv2d(4, 8, 1, 2, bias=False), nn.BatchNorm2d(8))) \
        if downsample else BasicBlock(4, 4)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), block)


def assert_partition(graph: UnitGraph) -> None:
    """Every unit of every layer is in exactly one group, and group_of agrees with groups."""
    seen = [unit for group in graph.groups for unit in group]
    assert len(seen) == len(set(seen)) == sum(layer.n_units for layer in graph.layers.values())
    for gid, group in enumerate(graph.groups):
        for layer, channel in group:
            assert graph.group_of[layer][channel].item() == gid


def test_a_torchvision_style_basic_block_with_identity_shortcut_joins_its_output_conv_with_the_stem_conv():
    graph = trace_units(stem_and_block(downsample=False), torch.randn(1, 3, 8, 8))
    assert list(graph.layers) == ["0", "3.conv1", "3.conv2"]
    assert_partition(graph)
    assert torch.equal(graph.group_of["0"], graph.group_of["3.conv2"])
    assert all(len(graph.groups[g]) == 2 for g in graph.group_of["0"].tolist())
    assert len(set(graph.group_of["3.conv1"].tolist()) & set(graph.group_of["0"].tolist())) == 0
    assert graph.output == tuple(graph.group_of["0"].tolist())
    assert graph.inputs["3.conv1"] == tuple(graph.group_of["0"].tolist())
    assert graph.inputs["0"] == (None, None, None)
    assert sorted(graph.norms_of("3.conv2")) == ["1", "3.bn2"]


def test_a_torchvision_style_basic_block_with_downsample_joins_its_output_conv_with_the_shortcut_conv():
    graph = trace_units(stem_and_block(downsample=True), torch.randn(1, 3, 8, 8))
    assert list(graph.layers) == ["0", "3.conv1", "3.conv2", "3.downsample.0"]
    assert_partition(graph)
    assert torch.equal(graph.group_of["3.conv2"], graph.group_of["3.downsample.0"])
    assert all(len(graph.groups[g]) == 1 for g in graph.group_of["0"].tolist())
    assert graph.inputs["3.downsample.0"] == graph.inputs["3.conv1"] == tuple(graph.group_of["0"].tolist())
    assert sorted(graph.norms_of("3.downsample.0")) == ["3.bn2", "3.downsample.1"]


def test_resnet18_with_8_filters_traces_into_20_layers_with_one_residual_group_per_channel_of_each_stage():
    model = resnet18(8)
    graph = trace_units(model, torch.randn(1, 3, 32, 32))
    assert len(graph.layers) == 20
    assert all(layer.kind == "conv" for layer in graph.layers.values())
    assert_partition(graph)
    for stage, width in zip((1, 2, 3, 4), (8, 16, 32, 64), strict=True):
        first = "conv1" if stage == 1 else f"layer{stage}.0.shortcut.0"
        joined = (first, f"layer{stage}.0.conv2", f"layer{stage}.1.conv2")
        for layer in joined:
            assert torch.equal(graph.group_of[layer], graph.group_of[joined[0]])
        for gid in graph.group_of[joined[0]].tolist():
            assert {layer for layer, _ in graph.groups[gid]} == set(joined)
        assert len(set(graph.group_of[joined[0]].tolist())) == width
        for block in (0, 1):
            assert all(len(graph.groups[g]) == 1 for g in graph.group_of[f"layer{stage}.{block}.conv1"].tolist())
    assert len(graph.groups) == 2 * 120 + 120
    assert len(graph.output) == 64
    assert graph.output == tuple(graph.group_of["layer4.1.conv2"].tolist())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 64)


def test_tracing_runs_the_model_without_moving_batch_norm_statistics_or_its_training_flag():
    model = resnet18(4).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trace_units(model, torch.randn(1, 3, 16, 16))
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_sequential_networks_clnp_takes_today_trace_as_plain_chains_of_single_unit_groups():
    seq = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.1),
                        nn.Flatten(), nn.Linear(4 * 13 * 13, 10), nn.ReLU(), nn.Linear(10, 5))
    graph = trace_units(seq, torch.randn(1, 1, 28, 28))
    assert list(graph.layers) == ["0", "6", "8"] and len(graph.groups) == 4 + 10 + 5
    assert graph.inputs["6"] == tuple(graph.group_of["0"].tolist()[j // 169] for j in range(4 * 169))


def test_a_model_that_fails_on_the_example_input_is_refused_in_one_line_naming_the_node_and_cause():
    with pytest.raises(ValueError, match=r"^ResNet18 fails on an example input of shape \(2, 1, 32, 32\) at node "
                                         r"'conv1': .*3 channels, but got 1"):
        trace_units(resnet18(4), torch.randn(1, 1, 32, 32))


def test_alexnet_first_fc_reads_256_channels_channel_major_over_their_positions():
    graph = trace_units(alexnet(), torch.randn(1, 3, 32, 32))
    assert [(layer.name, layer.kind) for layer in graph.layers.values()] == [
        ("features.0", "conv"), ("features.5", "conv"), ("features.10", "conv"),
        ("classifier.0", "linear"), ("classifier.4", "linear"),
    ]
    assert_partition(graph)
    assert len(graph.groups) == 64 + 128 + 256 + 2048 + 2048
    conv3 = graph.group_of["features.10"].tolist()
    assert graph.inputs["classifier.0"] == tuple(conv3[j // 4] for j in range(256 * 4))
    assert graph.norms_of("classifier.0") == ["classifier.1"]


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 5, 1), nn.Conv2d(11, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.c(torch.cat([x, self.a(x), self.b(x)], dim=1))


def test_concatenation_along_channels_maps_each_part_at_its_offset():
    graph = trace_units(Concat(), torch.randn(2, 3, 4, 4))
    expected = (None,) * 3 + tuple(graph.group_of["a"].tolist()) + tuple(graph.group_of["b"].tolist())
    assert graph.inputs["c"] == expected
    assert graph.columns("c", graph.group_of["b"][2].item()).tolist() == [8]


class Flat(nn.Module):
    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4 * 9, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.conv(x))
        if self.how == "flatten":
            h = torch.flatten(h, 1)
        elif self.how == "view":
            h = h.view(h.size(0), -1)
        else:
            h = h.reshape(h.shape[0], 4, 9).reshape(-1, 36)
        return self.fc(h)


@pytest.mark.parametrize("how", ["flatten", "view", "reshape"])
def test_flatten_view_and_reshape_give_each_channel_its_positions_columns(how: str):
    graph = trace_units(Flat(how), torch.randn(2, 3, 5, 5))
    conv = graph.group_of["conv"].tolist()
    assert graph.inputs["fc"] == tuple(conv[j // 9] for j in range(36))


class GlobalPool(nn.Module):
    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.conv, self.fc = nn.Conv2d(3, 6, 3), nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        h = h.mean((2, 3)) if self.how == "mean" else F.adaptive_avg_pool2d(h, 1).flatten(1)
        return self.fc(h)


@pytest.mark.parametrize("how", ["mean", "adaptive"])
def test_global_average_pooling_by_mean_or_adaptive_pool_maps_one_column_per_channel(how: str):
    graph = trace_units(GlobalPool(how), torch.randn(2, 3, 6, 6))
    assert graph.inputs["fc"] == tuple(graph.group_of["conv"].tolist())


class Shapes(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.fc = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1), nn.Linear(4, 8)
        self.unflatten = nn.Unflatten(1, (8, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.b(self.a(x).transpose(2, 3).permute(0, 1, 3, 2).contiguous())
        h = F.adaptive_avg_pool2d(h, 1).squeeze(-1).squeeze(-1)
        return self.unflatten(self.fc(h))


def test_squeeze_spatial_transpose_and_unflatten_keep_or_regroup_channels_exactly():
    graph = trace_units(Shapes(), torch.randn(2, 3, 4, 4))
    assert graph.inputs["b"] == tuple(graph.group_of["a"].tolist())
    assert graph.inputs["fc"] == tuple(graph.group_of["b"].tolist())
    assert graph.output == tuple(graph.group_of["fc"].tolist())


class GroupedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 6, 1, groups=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.b(self.a(x))


def test_weight_inputs_resolve_which_input_channel_each_grouped_conv_weight_reads():
    graph = trace_units(GroupedConv(), torch.randn(2, 3, 4, 4))
    a = graph.group_of["a"]
    expected = torch.stack([a[:2]] * 3 + [a[2:]] * 3)
    assert torch.equal(graph.weight_inputs("b"), expected)
    assert torch.equal(graph.weight_inputs("a"), torch.full((4, 3), -1))


class ScalarOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.b(torch.tanh(self.a(x) * 0.5 + 1.0))


class Activations(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1)
        self.mods = nn.Sequential(nn.ReLU(inplace=True), nn.GELU(), nn.Sigmoid(), nn.Tanh(), nn.LeakyReLU(),
                                  nn.Dropout(), nn.Dropout2d(), nn.Identity(), nn.MaxPool2d(2), nn.AvgPool2d(1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.mods(self.a(x))
        h = F.relu(F.gelu(torch.sigmoid(torch.tanh(F.leaky_relu(h, 0.2)))))
        h = F.dropout(h.relu().sigmoid().tanh(), 0.1, self.training)
        return self.b(F.adaptive_max_pool2d(F.max_pool2d(F.avg_pool2d(h, 1), 1), 2))


def test_element_wise_activations_dropout_and_pooling_in_module_functional_and_method_form_are_followed():
    graph = trace_units(Activations(), torch.randn(2, 3, 8, 8))
    assert graph.inputs["b"] == tuple(graph.group_of["a"].tolist())


def test_scalar_arithmetic_on_one_activation_keeps_its_channel_map():
    graph = trace_units(ScalarOps(), torch.randn(2, 3))
    assert graph.inputs["b"] == tuple(graph.group_of["a"].tolist())


class Product(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.a(x) * self.b(x)


class Slice(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.a(x)[:, :3]


class InputResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.a(x) + x


class Unknown(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.norm = nn.Linear(3, 4), nn.LayerNorm(4)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.a(x))


class Reshaped(nn.Module):
    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.a = nn.Conv2d(3, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.a(x)
        if self.how == "cat-spatial":
            return torch.cat([h, h], 2)
        if self.how == "mean-channels":
            return h.mean(1, keepdim=True)
        if self.how == "swap-channels":
            return h.permute(0, 2, 1, 3)
        return h.reshape(h.shape[0], 2, 32)  # a channel of 32 values: two units' 4x4 maps


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.a(x) if x.sum() > 0 else -self.a(x)


@pytest.mark.parametrize("model, shape, words", [
    (Product(), (2, 3), ["node 'mul'", "(call_function operator.mul)", "'a', 'b'"]),
    (Slice(), (2, 3, 4, 4), ["node 'getitem'", "(call_function operator.getitem)"]),
    (InputResidual(), (2, 3, 4, 4), ["node 'add'", "network input"]),
    (Unknown(), (2, 3), ["node 'norm'", "(call_module norm: LayerNorm)"]),
    (Branchy(), (2, 3), ["cannot trace Branchy with torch.fx"]),
    (Reshaped("cat-spatial"), (2, 3, 4, 4), ["node 'cat'", "along dim 2"]),
    (Reshaped("mean-channels"), (2, 3, 4, 4), ["node 'mean'", "(call_method mean)"]),
    (Reshaped("swap-channels"), (2, 3, 4, 4), ["node 'permute'", "moves the batch or channel dimension"]),
    (Reshaped("mix-channels"), (2, 3, 4, 4), ["node 'reshape'", "mixing channels"]),
], ids=["product-of-activations", "channel-slice", "input-residual", "unknown-module", "control-flow",
        "cat-spatial", "mean-over-channels", "permute-channels", "reshape-mixing-channels"])
def test_an_operation_clnp_cannot_follow_is_refused_in_one_line_naming_the_node(model, shape, words):
    with pytest.raises(UnsupportedNodeError) as info:
        trace_units(model, torch.randn(*shape))
    message = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in message
    for word in words:
        assert word in message, message


# -- the input map, checked numerically on random residual graphs ----------------------------------------------


class RandomGraph(nn.Module):
    """A seeded random residual graph: convs (with or without batch norm), additions of equal-width unit
    tensors (with or without batch norm over the sum), concatenations (the input included), pooling,
    activations that map only 0 to 0; then flatten + Linear, a global-pool branch, a concatenation and
    an addition of two Linears."""

    ACTS = ("tanh", "elu", "leaky", "half", "none")  # map 0 to 0 and nothing else to 0 (GELU underflows)

    def __init__(self, seed: int):
        super().__init__()
        rng = random.Random(seed)
        self.layers, self.norms, self.program = nn.ModuleDict(), nn.ModuleDict(), []
        values = [(3, 8, True)]  # (channels, side, carries network input)

        def conv(src: int, width: int) -> None:
            name = f"conv{len(self.layers)}"
            k = rng.choice((1, 3))
            modules: list[nn.Module] = [nn.Conv2d(values[src][0], width, k, padding=k // 2)]
            if rng.random() < 0.5:
                modules.append(nn.BatchNorm2d(width))
            self.layers[name] = nn.Sequential(*modules)
            self.program.append(("layer", name, src, rng.choice(self.ACTS)))
            values.append((width, values[src][1], False))

        conv(0, rng.choice((2, 3, 4)))
        for _ in range(rng.randint(5, 10)):
            op = rng.choice(("conv", "conv", "add", "add", "add", "cat", "pool", "act"))
            if op == "conv":
                conv(rng.randrange(len(values)), rng.choice((2, 3, 4)))
            elif op == "add":
                a = rng.choice([i for i, v in enumerate(values) if not v[2]])
                same_side = [i for i, v in enumerate(values) if v[1] == values[a][1]]
                partners = [i for i, v in enumerate(values) if not v[2] and v[:2] == values[a][:2] and i != a]
                if not partners or rng.random() < 0.3:
                    conv(rng.choice(same_side), values[a][0])
                    partners = [len(values) - 1]
                b = rng.choice(partners)
                norm = ""
                if rng.random() < 0.5:  # a batch norm over the sum: its channels belong to the joined group
                    norm = f"norm{len(self.norms)}"
                    self.norms[norm] = nn.BatchNorm2d(values[a][0])
                self.program.append(("add", a, b, norm))
                values.append(values[a])
            elif op == "cat":
                a = rng.randrange(len(values))
                b = rng.choice([i for i, v in enumerate(values) if v[1] == values[a][1]])
                self.program.append(("cat", a, b))
                values.append((values[a][0] + values[b][0], values[a][1], values[a][2] or values[b][2]))
            elif op == "pool":
                a = rng.choice([i for i, v in enumerate(values) if v[1] >= 2])
                self.program.append(("pool", a, rng.choice(("max", "avg"))))
                values.append((values[a][0], values[a][1] // 2, values[a][2]))
            else:
                a = rng.randrange(len(values))
                self.program.append(("act", a, rng.choice(self.ACTS)))
                values.append(values[a])
        last, other = len(values) - 1, rng.randrange(len(values))
        hidden, out = rng.choice((3, 4, 5)), rng.choice((2, 3))
        self.fc1 = nn.Linear(values[last][0] * values[last][1] ** 2, hidden)
        self.fc2 = nn.Linear(hidden + values[other][0], out)
        self.fc3 = nn.Linear(hidden, out)
        self.bn = nn.BatchNorm1d(out) if rng.random() < 0.5 else nn.Identity()
        self.last, self.other, self.global_pool = last, other, rng.choice(("mean", "adaptive"))

    @staticmethod
    def act(x: Tensor, kind: str) -> Tensor:
        if kind == "tanh":
            return torch.tanh(x)
        if kind == "elu":
            return F.elu(x)
        if kind == "leaky":
            return F.leaky_relu(x, 0.1)
        if kind == "half":
            return x * 0.5
        return x

    def forward(self, x: Tensor) -> Tensor:
        values = [x]
        for step in self.program:
            if step[0] == "layer":
                values.append(self.act(self.layers[step[1]](values[step[2]]), step[3]))
            elif step[0] == "add":
                total = values[step[1]] + values[step[2]]
                values.append(self.norms[step[3]](total) if step[3] else total)
            elif step[0] == "cat":
                values.append(torch.cat([values[step[1]], values[step[2]]], 1))
            elif step[0] == "pool":
                pool = F.max_pool2d if step[2] == "max" else F.avg_pool2d
                values.append(pool(values[step[1]], 2))
            else:
                values.append(self.act(values[step[1]], step[2]))
        h = torch.tanh(self.fc1(torch.flatten(values[self.last], 1)))
        o = values[self.other]
        g = o.mean((2, 3)) if self.global_pool == "mean" else F.adaptive_avg_pool2d(o, 1).flatten(1)
        return self.bn(self.fc2(torch.cat([h, g], 1)) + self.fc3(h))


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random weights, biases and batch-norm statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


def zero_channels(channels: Tensor):
    def hook(_module, _inputs, output: Tensor) -> Tensor:
        output = output.clone()
        output[:, channels] = 0
        return output
    return hook


@pytest.mark.parametrize("seed", range(20))
def test_silencing_a_group_zeroes_exactly_the_input_columns_the_map_attributes_to_it(seed: int):
    model = randomise(RandomGraph(seed), seed)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1000 + seed))
    graph = trace_units(model, x)
    assert_partition(graph)
    modules = dict(model.named_modules())
    for gid in range(len(graph.groups)):
        handles, seen = [], {}
        for layer, channels in graph.members(gid).items():
            handles.append(modules[layer].register_forward_hook(zero_channels(channels)))
        for bn, groups in graph.norms.items():
            channels = torch.tensor([c for c, g in enumerate(groups) if g == gid], dtype=torch.long)
            if len(channels):
                handles.append(modules[bn].register_forward_hook(zero_channels(channels)))
        for layer in graph.layers:
            handles.append(modules[layer].register_forward_pre_hook(
                lambda _m, args, layer=layer, seen=seen: seen.__setitem__(layer, args[0].detach())))
        try:
            with torch.no_grad():
                out = model(x)
        finally:
            for h in handles:
                h.remove()
        for layer, columns in graph.inputs.items():
            for c, g in enumerate(columns):
                silent = torch.equal(seen[layer][:, c], torch.zeros_like(seen[layer][:, c]))
                assert silent == (g == gid), (seed, gid, layer, c, g)
        for c, g in enumerate(graph.output):
            assert torch.equal(out[:, c], torch.zeros_like(out[:, c])) == (g == gid), (seed, gid, "output", c)
