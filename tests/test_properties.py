"""Properties that must hold for any feed-forward network and any task sequence (hypothesis).

For random architectures (dense or conv, 1-3 prunable layers, any widths, with or without batch
norm, dropout and pooling) and random short task sequences under random hyper-parameters:

* after every later task, every earlier task's outputs are bit-identical (``torch.equal``);
* every cut weight is exactly zero, in the trunk and in every head;
* the parameters and batch-norm statistics of every owned unit never move;
* ``state_dict()`` loaded into a fresh network of the same shape gives the same outputs, bit for bit;
* when a layer has no free unit left, ``learn`` raises ``CapacityError`` naming that layer and
  changes nothing.

``CLNP_PROPERTY_EXAMPLES`` raises the number of examples for a longer search (default: a few, so
the file runs in well under a minute).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re

import pytest
import torch
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from torch import nn

import clnp
import clnp.methods.clnp.cycle as clnp_method
from clnp.core.partition import FREE, cut_mask, expand_owner

from .conftest import quick_config

EXAMPLES = int(os.environ.get("CLNP_PROPERTY_EXAMPLES", "25"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize="CLNP_PROPERTY_EXAMPLES" not in
                    os.environ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
INPUT_SHAPE = (1, 8, 8)
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU,
               "sigmoid": nn.Sigmoid, "softplus": nn.Softplus, "relu6": nn.ReLU6, "none": None}


@pytest.fixture(autouse=True)
def _threads():
    """One thread: these networks are tiny, and thread hand-offs dominate on a busy machine."""
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------- architectures
@dataclasses.dataclass(frozen=True)
class LayerSpec:
    kind: str  # "conv" or "dense"
    width: int
    kernel: int = 3
    batch_norm: bool = False
    affine: bool = True
    activation: str = "relu"
    pool: str | None = None  # "max" / "avg" (conv only)
    dropout: float = 0.0
    dropout_first: bool = False  # dropout between the layer and its activation (activity read before it)


def _activation(spec: LayerSpec, dropout: nn.Module) -> list[nn.Module]:
    act = [] if ACTIVATIONS[spec.activation] is None else [ACTIVATIONS[spec.activation]()]
    if not spec.dropout:
        return act
    return [dropout, *act] if spec.dropout_first else [*act, dropout]


def build_trunk(layers: tuple[LayerSpec, ...], stem: str | None = None) -> list[nn.Module]:
    """An ``nn.Sequential``-style list of plain PyTorch modules for the spec (``stem``: input dropout/pool)."""
    c, h, w = INPUT_SHAPE
    modules: list[nn.Module] = []
    if stem == "dropout":
        modules.append(nn.Dropout(0.1))
    elif stem == "pool":
        modules.append(nn.AvgPool2d(2))
        h, w = h // 2, w // 2
    flat: int | None = None
    for spec in layers:
        if spec.kind == "conv":
            modules.append(nn.Conv2d(c, spec.width, spec.kernel, padding=spec.kernel // 2))
            if spec.batch_norm:
                modules.append(nn.BatchNorm2d(spec.width, affine=spec.affine))
            if spec.dropout_first or not spec.pool:
                modules.extend(_activation(spec, nn.Dropout2d(spec.dropout)))
            else:
                modules.extend(_activation(dataclasses.replace(spec, dropout=0.0), nn.Identity()))
            c = spec.width
            if spec.pool:
                modules.append(nn.MaxPool2d(2) if spec.pool == "max" else nn.AvgPool2d(2))
                h, w = h // 2, w // 2
                if spec.dropout and not spec.dropout_first:
                    modules.append(nn.Dropout2d(spec.dropout))
        else:
            if flat is None:
                modules.append(nn.Flatten())
                flat = c * h * w
            modules.append(nn.Linear(flat, spec.width))
            if spec.batch_norm:
                modules.append(nn.BatchNorm1d(spec.width, affine=spec.affine))
            modules.extend(_activation(spec, nn.Dropout(spec.dropout)))
            flat = spec.width
    if flat is None:
        modules.append(nn.Flatten())
    return modules


@st.composite
def architectures(draw) -> tuple[tuple[LayerSpec, ...], str | None]:
    """A layer list and a stem (``None``, input ``dropout`` or an input ``pool``)."""
    n_conv = draw(st.integers(0, 2))
    n_dense = draw(st.integers(1 if n_conv == 0 else 0, 3 - n_conv))
    stem = draw(st.sampled_from([None, "dropout", "pool"]))
    layers = []
    size = INPUT_SHAPE[1] // (2 if stem == "pool" else 1)
    for _ in range(n_conv):
        pool = draw(st.sampled_from([None, "max", "avg"])) if size >= 4 else None
        size = size // 2 if pool else size
        layers.append(LayerSpec(
            "conv", draw(st.integers(2, 12)), kernel=draw(st.sampled_from([1, 3])),
            batch_norm=draw(st.booleans()), affine=draw(st.booleans()),
            activation=draw(st.sampled_from(sorted(ACTIVATIONS))), pool=pool,
            dropout=draw(st.sampled_from([0.0, 0.2])), dropout_first=draw(st.booleans()),
        ))
    for _ in range(n_dense):
        layers.append(LayerSpec(
            "dense", draw(st.integers(2, 40)), batch_norm=draw(st.booleans()), affine=draw(st.booleans()),
            activation=draw(st.sampled_from(sorted(ACTIVATIONS))), dropout=draw(st.sampled_from([0.0, 0.2])),
            dropout_first=draw(st.booleans()),
        ))
    return tuple(layers), stem


@st.composite
def configs(draw) -> clnp.CLNPConfig:
    optimizer = draw(st.sampled_from(["sgd", "adam"]))
    return quick_config(
        epochs=draw(st.integers(2, 3)), finetune_epochs=draw(st.integers(0, 1)),
        batch_size=draw(st.sampled_from([16, 32])), optimizer=optimizer,
        lr=0.1 if optimizer == "sgd" else draw(st.sampled_from([3e-3, 1e-2])),
        momentum=draw(st.sampled_from([0.0, 0.9])), weight_decay=draw(st.sampled_from([0.0, 1e-3, 1e-1])),
        l1=draw(st.sampled_from([0.0, 3e-5, 3e-4])), margin=draw(st.sampled_from([0.0, 1.0, 5.0])),
        activity=draw(st.sampled_from(["mean_abs", "firing_rate", "contribution"])), seed=draw(st.integers(0, 3)),
    )


# ---------------------------------------------------------------------------------------- tasks
@functools.lru_cache(maxsize=1)
def _digit_pool() -> tuple[clnp.Task, ...]:
    """Small slices of split- and permuted-digits tasks (fast to train, learnable in an epoch or two)."""
    def shrink(task: clnp.Task) -> clnp.Task:
        def cut(split: clnp.Split, n: int) -> clnp.Split:
            return clnp.Split(split.x[:n].clone(), split.y[:n].clone())
        return dataclasses.replace(task, train=cut(task.train, 128), val=cut(task.val, 48), test=cut(task.test, 32))

    return tuple(shrink(t) for t in [*clnp.split_digits(seed=0), *clnp.permuted_digits(3, seed=0)[1:]])


task_sequences = st.lists(st.integers(0, 6), min_size=2, max_size=3)


# ------------------------------------------------------------------------------------- checks
PROBE = torch.rand(24, *INPUT_SHAPE, generator=torch.Generator().manual_seed(123))


@torch.no_grad()
def outputs(net: clnp.CLNPNet, task: int) -> torch.Tensor:
    net.eval()
    return net(PROBE, task).clone()


def assert_cut_weights_are_zero(net: clnp.CLNPNet) -> None:
    owner_in = None
    for i, block in enumerate(net.blocks):
        layer = block.layer
        oin = None if owner_in is None else expand_owner(owner_in, layer.in_features_count())
        cut = cut_mask(oin, layer.owner)
        w = layer.weight if layer.weight.dim() == 2 else layer.weight.abs().flatten(2).sum(2)
        assert not w[cut.expand_as(w)].any(), f"a cut weight into layer {i} is not zero"
        owner_in = layer.owner
    for k, head in enumerate(net.heads):
        cut = cut_mask(expand_owner(owner_in, net.feature_dim), head.owner)
        assert not head.weight[cut.expand_as(head.weight)].any(), f"a cut weight into head {k} is not zero"


def assert_owned_units_unchanged(net: clnp.CLNPNet, before: dict[str, torch.Tensor]) -> None:
    """Every tensor of a block, restricted to units owned when ``before`` was taken, is unchanged."""
    after = net.state_dict()
    for i, _ in enumerate(net.blocks):
        owned = before[f"blocks.{i}.layer.owner"] != FREE
        assert torch.equal(after[f"blocks.{i}.layer.owner"][owned], before[f"blocks.{i}.layer.owner"][owned])
        for key, value in before.items():
            if key.startswith(f"blocks.{i}.") and value.dim() >= 1 and value.shape[0] == owned.numel():
                assert torch.equal(after[key][owned], value[owned]), f"{key} moved in an owned unit"
    for key, value in before.items():
        if key.startswith("heads."):
            assert torch.equal(after[key], value), f"{key} of a learned head moved"


def assert_reloads_bit_for_bit(arch: tuple[tuple[LayerSpec, ...], str | None], net: clnp.CLNPNet) -> None:
    fresh = clnp.CLNPNet(build_trunk(*arch), INPUT_SHAPE)
    for head in net.heads:
        fresh.add_head(head.out_features)
    fresh.load_state_dict(net.state_dict())
    for t in range(net.n_tasks):
        assert torch.equal(outputs(fresh, t), outputs(net, t)), f"task {t} differs after load_state_dict"


# ----------------------------------------------------------------------------------- properties
@pytest.mark.filterwarnings("ignore::UserWarning")
@PROPERTY
@given(arch=architectures(), config=configs(), sequence=task_sequences)
def test_any_network_and_task_sequence_keeps_earlier_tasks_bit_identical(arch, config, sequence):
    torch.manual_seed(config.seed)
    net = clnp.CLNPNet(build_trunk(*arch), INPUT_SHAPE)
    learner = clnp.CLNP(net, config)
    pool = _digit_pool()
    recorded: list[torch.Tensor] = []
    for t, index in enumerate(sequence):
        before = {k: v.clone() for k, v in net.state_dict().items()}
        try:
            learner.learn(pool[index])
        except clnp.CapacityError as exc:
            assert_capacity_error_is_defined(exc, net, before, t)
            event("a layer ran out of free units")
            break
        note(f"after task {t}: owned {learner.reports[-1].owned}, free {learner.reports[-1].free_after}")
        recorded.append(outputs(net, t))
        for earlier in range(t):
            assert torch.equal(outputs(net, earlier), recorded[earlier]), f"task {earlier} changed after task {t}"
        assert_cut_weights_are_zero(net)
        assert_owned_units_unchanged(net, before)
    assert_reloads_bit_for_bit(arch, net)
    frozen = any(bool((o != FREE).any()) for o in net.owners)
    event(f"{net.n_tasks} tasks learned, {'some' if frozen else 'no'} units frozen")


def assert_capacity_error_is_defined(exc: clnp.CapacityError, net: clnp.CLNPNet, before: dict, t: int) -> None:
    """The error names a layer that really is full; the network is exactly as before the call."""
    match = re.search(r"layer (\d+:\w+\(\d+->\d+\)) has no free unit left for task (\d+)", str(exc))
    assert match, str(exc)
    full = [name for name, free in zip(net.layer_names, net.free_units(), strict=True) if free == 0]
    assert match.group(1) in full and int(match.group(2)) == t
    after = net.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert net.n_tasks == t


# ------------------------------------------------------------------------------ capacity exhaustion
def _narrow_learner(widths: tuple[int, ...]) -> clnp.CLNP:
    torch.manual_seed(0)
    net = clnp.mlp(64, widths, input_shape=INPUT_SHAPE)
    return clnp.CLNP(net, quick_config(epochs=1, finetune_epochs=1, l1=0.0, margin=0.0))


def _greedy_in_layer(monkeypatch, layer: int, tasks: set[int], needs: int | None = None) -> None:
    """Make the listed tasks keep ``needs`` free units of ``layer`` (all of them if None or too few)."""
    real = clnp_method.choose_pruning

    def choose(net, task, activity, evaluate, margin, **options):
        decision = real(net, task, activity, evaluate, margin, **options)
        if task in tasks:
            free = torch.nonzero(net.blocks[layer].layer.owner == FREE).flatten()
            decision.keep[layer][free[:needs]] = True
            decision.val_accuracy_after = evaluate(decision.keep, decision.reuse_cut).accuracy
        return decision

    monkeypatch.setattr(clnp_method, "choose_pruning", choose)


def test_a_layer_that_fills_up_mid_sequence_stops_the_next_task_with_a_named_error_and_changes_nothing(monkeypatch):
    pool = _digit_pool()
    learner = _narrow_learner((24, 6, 24))
    net = learner.net
    _greedy_in_layer(monkeypatch, layer=1, tasks={1})
    learned = []
    for t in range(2):
        learner.learn(pool[t])
        learned.append(outputs(net, t))
    assert net.free_units()[1] == 0 and net.free_units()[0] > 0 and net.free_units()[2] > 0
    before = {k: v.clone() for k, v in net.state_dict().items()}
    reports = [r.to_dict() for r in learner.reports]
    with pytest.raises(clnp.CapacityError, match=r"layer 1:Linear\(24->6\) has no free unit left for task 2") as info:
        learner.learn(pool[2])
    assert "Use a wider layer, growth (--grow, CLNPConfig(grow=True)), or a larger margin" in str(info.value)
    assert_capacity_error_is_defined(info.value, net, before, 2)
    assert [r.to_dict() for r in learner.reports] == reports
    for k in range(2):
        assert torch.equal(outputs(net, k), learned[k])
    # The error is stable: asking again gives the same answer and still changes nothing.
    with pytest.raises(clnp.CapacityError, match="layer 1:"):
        learner.learn(pool[3])
    assert_capacity_error_is_defined(info.value, net, before, 2)


def test_a_task_may_take_the_last_free_units_and_later_tasks_still_see_it_unchanged(monkeypatch):
    """Filling a layer is allowed; only the next task is refused (nothing is trained into old units)."""
    pool = _digit_pool()
    learner = _narrow_learner((8,))
    _greedy_in_layer(monkeypatch, layer=0, tasks={0})
    report = learner.learn(pool[0])
    assert report.owned == [8] and report.free_after == [0]
    assert [row["free_after_task"] for row in learner.capacity()] == [[0]]
    first = outputs(learner.net, 0)
    with pytest.raises(clnp.CapacityError, match=r"layer 0:Linear\(64->8\) has no free unit left for task 1"):
        learner.learn(pool[1])
    assert torch.equal(outputs(learner.net, 0), first) and learner.net.n_tasks == 1


def test_after_a_capacity_error_a_wider_network_learns_the_same_sequence(monkeypatch):
    """The remedy the error suggests works: the same tasks, the same greedy task, a wider layer."""
    pool = _digit_pool()[:3]
    _greedy_in_layer(monkeypatch, layer=0, tasks={0}, needs=8)
    narrow = _narrow_learner((6,))
    with pytest.raises(clnp.CapacityError):
        for task in pool:
            narrow.learn(task)
    wide = _narrow_learner((64,))  # task 0 takes its 8 units and leaves the rest free
    for task in pool:
        wide.learn(task)
    assert wide.net.n_tasks == len(pool) and wide.reports[0].owned[0] >= 8


def test_cli_stops_with_exit_code_3_naming_the_full_layer_and_keeps_the_finished_tasks(monkeypatch, tmp_path,
                                                                                       capsys):
    from clnp.cli import main

    _greedy_in_layer(monkeypatch, layer=0, tasks={0})
    out = tmp_path / "full"
    # lr 0.01: one epoch at 1e-3 learns nothing, which is refused before any capacity question arises.
    args = ["run", "--tasks", "3", "--model", "mlp:8", "--epochs", "2", "--lr", "0.01", "--finetune-epochs", "0",
            "--no-progress", "--out", str(out)]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert err.startswith("clnp run: stopped: layer 0:Linear(64->8) has no free unit left for task 1")
    assert "Traceback" not in err and err.count("\n") == 1
    assert json.loads((out / "checkpoint" / "meta.json").read_text())["step"] == 1  # task 0 is kept


def test_batch_norm_with_a_cumulative_average_tracks_the_statistics_of_later_tasks(monkeypatch):
    pool = _digit_pool()
    torch.manual_seed(0)
    trunk = [nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16, momentum=None), nn.ReLU()]
    learner = clnp.CLNP(clnp.CLNPNet(trunk, INPUT_SHAPE), quick_config(epochs=2, finetune_epochs=0))
    _greedy_in_layer(monkeypatch, layer=0, tasks={0, 1}, needs=4)
    learner.learn(pool[0])
    learner.learn(pool[1])
    bn = learner.net.blocks[0].batch_norms()[0]
    second = learner.net.blocks[0].layer.owner == 1
    assert second.any()
    assert bn.running_mean[second].abs().sum() > 0 and not torch.all(bn.running_var[second] == 1)


def _own_loop(step) -> tuple[torch.Tensor, torch.Tensor]:
    """Learn task 0 with CLNP, then train a new head with the user's own loop; task 0's outputs before/after."""
    pool = _digit_pool()
    torch.manual_seed(0)
    net = clnp.mlp(64, (32, 16), batch_norm=True, input_shape=INPUT_SHAPE)
    clnp.CLNP(net, quick_config(epochs=2, finetune_epochs=0, margin=5.0)).learn(pool[0])
    before = outputs(net, 0)
    net.reset_free_units_()
    head = net.add_head(2)
    net.train()
    params = list(net.parameters())
    task = pool[1]
    for i in range(0, 96, 32):
        loss = torch.nn.functional.cross_entropy(net(task.train.x[i:i + 32], head), task.train.y[i:i + 32])
        net.zero_grad()
        loss.backward()
        step(params)
    return before, outputs(net, 0)


@pytest.mark.parametrize("make", [
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1, foreach=True),
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1, foreach=False),
    lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=0.1, amsgrad=True),
], ids=["sgd_foreach", "sgd_loop", "adamw", "adam_amsgrad"])
def test_a_users_own_training_loop_with_any_torch_optimiser_cannot_move_frozen_units(make):
    optimisers = {}

    def step(params):
        optimisers.setdefault("opt", make(params)).step()

    before, after = _own_loop(step)
    assert torch.equal(before, after)


def test_a_users_own_loop_that_edits_parameters_through_data_cannot_move_frozen_units():
    def step(params):
        for p in params:
            if p.grad is not None:
                p.data.add_(-0.1 * p.grad - 0.1 * p.data)

    before, after = _own_loop(step)
    assert torch.equal(before, after)
