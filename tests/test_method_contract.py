"""Every registered method keeps the engine's contract (scikit-learn's ``check_estimator`` idea): it learns two
tasks through the one loop, its accuracies lie in [0, 1], its saved state gives back the same logits, every
option refuses a value out of its range in one line, and a dataset-backed task's transform reaches its batches.
A method from outside the package is one file: it registers itself and runs through ``clnp compare``."""

from __future__ import annotations

import json
import sys

import pytest
import torch

import clnp.engine.learner as learner_module
from clnp.cli import main
from clnp.data.tasks import Task
from clnp.engine.learner import Learner
from clnp.engine.loop import fit
from clnp.engine.options import Option
from clnp.methods import METHODS, PLUGINS_ENV, build_method, check_options, get, unregister

from .conftest import quick_config
from .test_dataset_route import Items

SHAPE = (1, 8, 8)
NAMES = list(METHODS)


def _learned(name: str, tasks: list[Task]) -> Learner:
    torch.manual_seed(0)
    learner = build_method(name, "mlp:16", SHAPE, quick_config(epochs=1, finetune_epochs=1))
    for task in tasks:
        learner.learn(task)
    return learner


@pytest.mark.parametrize("name", NAMES)
def test_a_method_learns_two_tasks_through_the_one_loop_and_its_accuracies_lie_in_0_1(name, digit_tasks,
                                                                                     monkeypatch):
    phases: list[int] = []

    def counted(hooks, *args, **kwargs):
        phases.append(kwargs["task"])
        return fit(hooks, *args, **kwargs)

    monkeypatch.setattr(learner_module, "fit", counted)
    learner = _learned(name, digit_tasks[:2])
    assert isinstance(learner, Learner) and learner.method == name
    assert {0, 1} <= set(phases), f"{name} did not learn both tasks through the one loop"
    for j, task in enumerate(digit_tasks[:2]):
        assert 0.0 <= learner.accuracy(j, task.test.x, task.test.y) <= 1.0
    assert len(learner.reports) == 2


@pytest.mark.parametrize("name", NAMES)
def test_a_state_round_trip_gives_the_same_logits(name, digit_tasks):
    tasks = digit_tasks[:2]
    learner = _learned(name, tasks)
    tensors, meta = learner.learner_state()
    fresh = build_method(name, "mlp:16", SHAPE, quick_config(epochs=1, finetune_epochs=1))
    fresh.load_learner_state(tensors, json.loads(json.dumps(meta)))  # the metadata as a checkpoint holds it
    fresh.restore_tasks(list(tasks))
    for j, task in enumerate(tasks):
        assert torch.equal(learner.logits(j, task.test.x), fresh.logits(j, task.test.x)), f"{name}: task {j}"


def _out_of_range(option: Option) -> object:
    if option.kind == "choice":
        return "no-such-choice"
    if option.kind == "bool":
        return "maybe"
    if option.low is not None:
        return option.low - 1
    if option.high is not None:
        return option.high + 1
    return float("nan")


OPTIONS = [(name, option) for name in NAMES for option in get(name).options]


@pytest.mark.parametrize(("name", "option"), OPTIONS, ids=[f"{n}.{o}" for n, o in OPTIONS])
def test_every_option_refuses_a_value_out_of_its_range_in_one_line(name, option):
    declared = get(name).options[option]
    assert declared.help, f"{name}.{option} has no help"
    assert check_options(name, {option: declared.default}) == {option: declared.default}
    with pytest.raises(ValueError) as refused:
        check_options(name, {option: _out_of_range(declared)})
    message = str(refused.value)
    assert "\n" not in message and f"option {name}.{option} must be" in message, message


class Marking:
    """A train-only transform that marks its output: the first pixel becomes 7."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x.view(-1)[0] = 7.0
        return x


@pytest.mark.parametrize("name", NAMES)
def test_a_dataset_backed_tasks_transform_reaches_its_training_batches(name, digit_tasks):
    tasks = [Task.from_datasets(t.name, t.n_classes, Items(t.train), Items(t.val), Items(t.test), transform=Marking())
             for t in digit_tasks[:2]]
    torch.manual_seed(0)
    learner = build_method(name, "mlp:16", SHAPE, quick_config(epochs=1, finetune_epochs=1))
    seen: list[bool] = []
    real = learner.batch_loss

    def batch_loss(batch, *args):
        seen.append(bool((batch[0].reshape(batch[0].shape[0], -1)[:, 0] == 7.0).all()))
        return real(batch, *args)

    learner.batch_loss = batch_loss  # type: ignore[method-assign]
    for task in tasks:
        learner.learn(task)
    assert seen and all(seen), f"{name}: {seen.count(False)} of {len(seen)} training batches were not transformed"


TOY_METHOD = '''"""A toy method from outside clnp: sequential training under its own name, declared in this one file."""
from clnp.engine.method import Method
from clnp.engine.options import Option
from clnp.methods import register
from clnp.methods.common.plain_net import PlainNet
from clnp.methods.common.sequential import SequentialLearner


class Toy(SequentialLearner):
    method = "toy"


def build(model, input_shape, config, options):
    return Toy(PlainNet(model, input_shape), config)


METHOD = register(Method(name="toy", build=build, summary="sequential training, from a plugin",
                         options={"scale": Option("number", 1.0, low=0, help="an option nobody reads")},
                         tuning={"scale": (0.5, 1.0)}))
'''


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    """A package ``toy_methods`` in a temporary folder on ``sys.path``, whose module ``toy`` registers a method."""
    package = tmp_path / "plugins" / "toy_methods"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "toy.py").write_text(TOY_METHOD)
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    monkeypatch.setenv(PLUGINS_ENV, "")  # --plugin names it there; unset again after the test
    yield "toy_methods.toy"
    unregister("toy")
    for module in ("toy_methods.toy", "toy_methods"):
        sys.modules.pop(module, None)


def test_a_method_registered_from_a_file_of_another_package_runs_through_clnp_compare(toy_plugin, tmp_path, capsys):
    assert "toy" not in METHODS
    out = tmp_path / "compare"
    code = main(["compare", "--plugin", toy_plugin, "--methods", "toy,finetune", "--benchmark", "split-digits",
                 "--tasks", "2", "--model", "mlp:16", "--epochs", "1", "--seeds", "1",
                 "--option", "toy.scale=2", "--out", str(out)])
    assert code == 0
    assert "toy" in METHODS and get("toy").summary == "sequential training, from a plugin"
    results = json.loads((out / "toy" / "s0" / "results.json").read_text())
    assert results["method"] == "toy" and len(results["accuracy_matrix"]) == 2
    assert all(0.0 <= a <= 1.0 for row in results["accuracy_matrix"] for a in row if a is not None)
    assert "toy" in (out / "comparison.md").read_text()
    with pytest.raises(ValueError, match=r"option toy\.scale must be a finite number >= 0, got -1"):
        check_options("toy", {"scale": -1})
