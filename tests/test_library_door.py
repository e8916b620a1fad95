"""The library's door (issue 24, item 6): what a user hands the library is checked (or converted) where it
enters, with one clear line, never a raw error from deep inside torch."""

import io
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import clnp
from clnp.cli import main
from clnp.data.tasks import DatasetSplit, Task
from clnp.engine.config import TrainConfig
from clnp.methods import build_method

from .conftest import quick_config


def _task(n=40, shape=(1, 8, 8), seed=0, name="t", dtype=torch.float32) -> Task:
    g = torch.Generator().manual_seed(seed)

    def split(k):
        return clnp.Split(torch.rand(k, *shape, generator=g).to(dtype), torch.arange(k) % 2)

    return Task(name, 2, split(n), split(n // 2), split(n // 2))


def _net() -> clnp.CLNPNet:
    torch.manual_seed(0)
    return clnp.mlp(64, (16,), input_shape=(1, 8, 8))


class Items(Dataset):
    """A user's map-style dataset of ``(image, label)`` items (module-level: the loader's workers pickle it)."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _items(split: clnp.Split) -> Items:
    return Items([(x.clone(), int(y)) for x, y in zip(split.x, split.y, strict=True)])


def _dataset_task(spoil, workers: int = 0) -> Task:
    base = _task()
    train = _items(base.train)
    spoil(train.items)
    return Task.from_datasets("d", 2, train, _items(base.val), _items(base.test), workers=workers)


def _other_shape(items):
    items[5] = (torch.rand(1, 9, 9), 1)


def _nan_image(items):
    items[7][0][0, 3, 3] = float("nan")


@pytest.mark.parametrize("spoil, expected", [
    (_other_shape, "task 'd': train item 5 has shape (1, 9, 9); expected (1, 8, 8)"),
    (_nan_image, "task 'd': train item 7 contains NaN or infinite values"),
])
def test_a_bad_dataset_item_is_refused_naming_the_item_and_earlier_tasks_are_unchanged(spoil, expected):
    learner = clnp.CLNP(_net(), quick_config(epochs=2, finetune_epochs=1))
    first = _task(seed=3, name="first")
    learner.learn(first)
    before = learner.net(first.test.x, 0)
    with pytest.raises(ValueError) as caught:
        learner.learn(_dataset_task(spoil))
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value), str(caught.value)
    assert learner.net.n_tasks == 1 and len(learner.reports) == 1
    assert torch.equal(before, learner.net(first.test.x, 0))


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("spoil, expected", [
    (_other_shape, "task 'd': train item 5 has shape (1, 9, 9); expected (1, 8, 8)"),
    (_nan_image, "task 'd': train item 7 contains NaN or infinite values"),
])
def test_a_bad_dataset_item_is_refused_in_one_line_as_the_loader_draws_its_batch(spoil, expected, workers):
    """The route through the DataLoader (per batch, in the loader's workers too): one line, no worker traceback."""
    split = _dataset_task(spoil, workers=workers).train
    assert isinstance(split, DatasetSplit)
    chunks = list(torch.arange(len(split)).split(8))
    with pytest.raises(ValueError) as caught:
        for _ in split.batches(chunks, pin_memory=False, seed=0):
            pass
    message = str(caught.value)
    assert message.startswith(expected) and "\n" not in message, message


@pytest.mark.parametrize("seed", [2**70, 2**32, -1])
def test_a_seed_outside_0_to_2_to_the_32_is_refused_by_the_config(seed):
    for config in (TrainConfig, clnp.CLNPConfig):
        with pytest.raises(ValueError, match=f"seed must be >= 0 and <= 4294967295, got {seed}"):
            config(seed=seed)
    clnp.CLNP(_net(), quick_config(seed=2**32 - 1, epochs=1, finetune_epochs=0)).learn(_task())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_float64_and_float16_inputs_are_converted_to_the_networks_dtype(dtype):
    """The same values in another float dtype learn exactly what float32 inputs learn, and evaluate alike."""
    as_float32 = _task(dtype=dtype)  # the values as the other dtype holds them
    as_float32 = Task("t", 2, *(clnp.Split(s.x.float(), s.y) for s in (as_float32.train, as_float32.val,
                                                                       as_float32.test)))
    other = _task(dtype=dtype)
    reports, logits = [], []
    for task in (as_float32, other):
        learner = clnp.CLNP(_net(), quick_config(epochs=2, finetune_epochs=1))
        reports.append(learner.learn(task).owned)
        logits.append(learner.net(task.test.x, 0))
        assert learner.accuracy(0, task.test.x, task.test.y) == learner.accuracy(0, as_float32.test.x,
                                                                                  as_float32.test.y)
        assert torch.equal(learner.predict(task.test.x, 0), learner.predict(as_float32.test.x, 0))
    assert reports[0] == reports[1] and torch.equal(logits[0], logits[1])


def test_a_baseline_converts_float64_inputs_too():
    learner = build_method("finetune", "mlp:16", (1, 8, 8), TrainConfig(epochs=1))
    task = _task(dtype=torch.float64)
    learner.learn(task)
    assert 0 <= learner.accuracy(0, task.test.x, task.test.y) <= 1


def test_accuracy_of_no_inputs_is_refused_not_reported_as_zero():
    task = _task()
    learner = clnp.CLNP(_net(), quick_config(epochs=1, finetune_epochs=0))
    learner.learn(task)
    baseline = build_method("finetune", "mlp:16", (1, 8, 8), TrainConfig(epochs=1))
    baseline.learn(task)
    for method in (learner, baseline):
        with pytest.raises(ValueError, match="accuracy of no inputs is undefined; expected at least one input"):
            method.accuracy(0, task.test.x[:0], task.test.y[:0])


def test_an_absurd_class_count_is_refused_at_once_naming_the_bound():
    task = _task()
    huge = Task("huge", 10**7, task.train, task.val, task.test)
    learner = clnp.CLNP(_net(), quick_config(epochs=1, finetune_epochs=0))
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"task 'huge' has 10000000 classes; at most 100000"):
        learner.learn(huge)
    assert time.perf_counter() - started < 5 and learner.net.n_tasks == 0


def test_max_pool_with_return_indices_is_refused_with_what_to_use_instead():
    trunk = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, return_indices=True),
                          nn.Flatten(), nn.Linear(64, 8))
    with pytest.raises(ValueError, match=r"MaxPool2d\(return_indices=True\).*return_indices=False"):
        clnp.CLNPNet(trunk, (1, 8, 8))


def test_a_double_network_adds_heads_of_its_dtype_and_keeps_old_tasks_bit_identical():
    net = _net().double()
    learner = clnp.CLNP(net, quick_config(epochs=2, finetune_epochs=1))
    first, second = _task(seed=0), _task(seed=1, name="u")
    learner.learn(first)
    assert net.heads[0].weight.dtype == torch.float64
    before = net(first.test.x, 0)
    assert before.dtype == torch.float64
    learner.learn(second)
    assert torch.equal(before, net(first.test.x, 0))


def test_a_learner_and_its_network_pickle_and_torch_save_whole_with_equal_outputs():
    task = _task()
    learner = clnp.CLNP(_net(), quick_config(epochs=2, finetune_epochs=1))
    learner.learn(task)
    expected = learner.net(task.test.x, 0)
    copy = pickle.loads(pickle.dumps(learner))
    assert torch.equal(copy.net(task.test.x, 0), expected)
    assert copy.accuracy(0, task.test.x, task.test.y) == learner.accuracy(0, task.test.x, task.test.y)
    copy.learn(_task(seed=1, name="u"))  # the copy goes on learning, its first task unchanged
    assert torch.equal(copy.net(task.test.x, 0), expected)
    buffer = io.BytesIO()
    torch.save(learner.net, buffer)
    buffer.seek(0)
    net = torch.load(buffer, weights_only=False)
    assert torch.equal(net(task.test.x, 0), expected)
    net.load_state_dict(learner.net.state_dict())  # the load hook still refreshes the masks
    assert torch.equal(net(task.test.x, 0), expected)


@pytest.mark.parametrize("argv, expected", [
    (["run", "--epochs", "x"], "clnp run: error: argument --epochs: invalid int value: 'x'"),
    (["run", "--seed", "1.5"], "clnp run: error: argument --seed: invalid int value: '1.5'"),
    (["run", "--lr", "fast"], "clnp run: error: argument --lr: invalid float value: 'fast'"),
    (["run", "--optimizer", "adamw"], "clnp run: error: argument --optimizer: invalid choice: 'adamw'"),
    (["compare", "--seeds", "two"], "clnp compare: error: argument --seeds: invalid int value: 'two'"),
    (["run", "--bogus"], "clnp run: error: unrecognized arguments: --bogus"),
    (["fly"], "clnp: error: argument command: invalid choice: 'fly'"),
])
def test_an_argument_of_the_wrong_type_is_one_line_with_a_hint_and_exit_code_2(capsys, argv, expected):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    command = "clnp run" if argv[0] == "run" else "clnp compare" if argv[0] == "compare" else "clnp"
    assert err.startswith(expected) and err.count("\n") == 1, err
    assert err.rstrip().endswith(f"(see '{command} --help')"), err


def test_an_argument_error_in_a_real_process_is_one_line_and_exit_code_2():
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "clnp", "run", "--epochs", "x"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert proc.stderr == "clnp run: error: argument --epochs: invalid int value: 'x' (see 'clnp run --help')\n"
