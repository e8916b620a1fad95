"""Every baseline runs on the built-in graph models (``resnet18:NF``, ``alexnet``), so that one comparison uses one
network for every method: built through the registry as the runner builds them, each learns a two-task stream,
its accuracies lie in [0, 1] and its saved state gives back the same logits. PackNet stays free of forgetting on
them, batch norm included (trained with the first task, frozen after it); HAT refuses them in one line."""

from __future__ import annotations

import json

import pytest
import torch

from clnp import models
from clnp.data.tasks import Split, Task
from clnp.engine.learner import Learner
from clnp.methods import build_method, builtin_names
from clnp.methods.common.plain_net import PlainNet

from .conftest import quick_config

RESNET = "resnet18:4"
SHAPE = (3, 8, 8)
BASELINES = ["finetune", "independent", "joint", "ewc", "online-ewc", "si", "mas", "packnet"]
"""Every built-in method but ``clnp`` (not a baseline) and ``hat`` (refuses graph models)."""


def _task(name: str, seed: int, shape: tuple[int, ...] = SHAPE, n: int = 24) -> Task:
    """Two classes of random images, the class shifting their brightness (something to learn)."""
    g = torch.Generator().manual_seed(seed)

    def split(k: int) -> Split:
        y = torch.arange(k) % 2
        return Split(torch.rand(k, *shape, generator=g) + 0.5 * y.view(-1, 1, 1, 1).float(), y)

    return Task(name, 2, split(n), split(n // 2), split(n // 2))


@pytest.fixture(scope="module")
def tasks() -> list[Task]:
    return [_task("a", 0), _task("b", 1)]


def _build(name: str, model: str = RESNET, shape: tuple[int, ...] = SHAPE) -> Learner:
    return build_method(name, model, shape, quick_config(epochs=1, finetune_epochs=1))


def test_the_baselines_here_are_every_built_in_method_but_clnp_and_hat():
    assert set(BASELINES) | {"clnp", "hat"} == set(builtin_names())


def test_a_graph_plain_net_is_the_built_in_model_with_its_feature_width_found_by_one_probe():
    torch.manual_seed(0)
    net = PlainNet(RESNET, SHAPE)
    torch.manual_seed(0)
    model = models.build(RESNET, SHAPE)
    assert net.graph and net.feature_dim == 8 * 4 and net.training
    # Under one seed the same initial weights as the model itself; the probe moved no batch-norm statistic.
    assert net.trunk.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in net.trunk.state_dict().items())
    assert net.has_batch_norm
    assert net.layers == [m for m in net.trunk.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert len(net.layers) == 20  # the stem, 16 convolutions in 8 blocks, 3 shortcut convolutions
    net.add_head(2)
    head = {id(p) for p in net.heads.parameters()}
    assert {id(p) for p in net.trunk_parameters()} == {id(p) for p in net.parameters()} - head
    x = torch.rand(3, *SHAPE)
    assert net.features(x).shape == (3, 32) and net(x, 0).shape == (3, 2)
    with pytest.raises(ValueError, match="unit gates act on a chain of layers"):
        net.features(x, [None] * len(net.layers))


@pytest.mark.parametrize("name", BASELINES)
def test_a_baseline_learns_two_tasks_on_a_resnet_and_its_state_round_trip_gives_the_same_logits(name, tasks):
    torch.manual_seed(0)
    learner = _build(name)
    for task in tasks:
        learner.learn(task)
    assert len(learner.reports) == 2
    for j, task in enumerate(tasks):
        assert 0.0 <= learner.accuracy(j, task.test.x, task.test.y) <= 1.0
    tensors, meta = learner.learner_state()
    fresh = _build(name)
    fresh.load_learner_state(tensors, json.loads(json.dumps(meta)))  # the metadata as a checkpoint holds it
    fresh.restore_tasks(list(tasks))
    for j, task in enumerate(tasks):
        assert torch.equal(learner.logits(j, task.test.x), fresh.logits(j, task.test.x)), f"{name}: task {j}"


def _batch_norm_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{m}.{k}": v.clone() for m, bn in net.named_modules()
            if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm) for k, v in bn.state_dict().items()}


def _packnet_keeps_the_first_task(tasks: list[Task], model: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    learner = _build("packnet", model, shape)
    learner.learn(tasks[0])
    x = tasks[0].test.x
    right_after = learner.logits(0, x)
    batch_norm = _batch_norm_state(learner.net)
    weights = [layer.weight.detach().clone() for layer in learner.net.layers]
    learner.learn(tasks[1])
    assert torch.equal(learner.logits(0, x), right_after)  # exactly: no forgetting, batch norm included
    assert all(torch.equal(v, _batch_norm_state(learner.net)[k]) for k, v in batch_norm.items())
    # Not trivially: task 1 trained weights of every layer.
    assert all(not torch.equal(layer.weight, w) for layer, w in zip(learner.net.layers, weights, strict=True))
    assert all(0.0 <= learner.accuracy(j, t.test.x, t.test.y) <= 1.0 for j, t in enumerate(tasks))


def test_packnet_on_a_resnet_keeps_the_first_tasks_outputs_bit_identical(tasks):
    torch.manual_seed(0)
    net = PlainNet(RESNET, SHAPE)
    learner = _build("packnet")
    assert learner.weight_names == [n for n, p in net.named_parameters() if any(p is m.weight for m in net.layers)]
    assert learner.weight_names[0] == "trunk.conv1.weight"
    _packnet_keeps_the_first_task(tasks, RESNET, SHAPE)


def test_packnet_on_alexnet_keeps_the_first_tasks_outputs_bit_identical():
    shape = (3, 32, 32)
    _packnet_keeps_the_first_task([_task("a", 0, shape, n=12), _task("b", 1, shape, n=12)], "alexnet", shape)


@pytest.mark.parametrize(("model", "shape"), [(RESNET, SHAPE), ("alexnet", (3, 32, 32))])
def test_hat_refuses_a_graph_model_in_one_line_saying_why(model, shape):
    with pytest.raises(ValueError) as refused:
        _build("hat", model, shape)
    message = str(refused.value)
    assert "\n" not in message
    assert message == (f"hat gates the units of a stack of layers and needs a model without batch norm; {model} "
                       "has batch norm: use packnet, or clnp")
