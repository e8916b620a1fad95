"""Devices, mixed precision and dataset-backed tasks: zero forgetting holds on each path (``torch.equal``)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.utils.data import Dataset

import clnp
from clnp.data.benchmarks import split_digits
from clnp.data.tasks import DatasetSplit, Task
from clnp.engine.devices import DeviceUnavailableError, resolve_device


def _net(hidden: tuple[int, ...]) -> clnp.CLNPNet:
    return clnp.mlp(64, hidden, input_shape=(1, 8, 8))


def _logits(learner: clnp.CLNP, tasks: list[Task]) -> list[torch.Tensor]:
    out = []
    net = learner.net
    net.eval()
    with learner._precision(), torch.no_grad():
        for t, task in enumerate(tasks):
            out.append(net(task.test.x, t).clone())
    return out


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_old_tasks_stay_bit_identical_under_mixed_precision(precision):
    tasks = split_digits(seed=0)[:3]
    learner = clnp.CLNP(_net((64, 64)), clnp.CLNPConfig(epochs=8, finetune_epochs=1, batch_size=32,
                                                                 lr=3e-3, l1=3e-3, precision=precision))
    learner.learn(tasks[0])
    before = _logits(learner, tasks[:1])
    assert before[0].dtype == (torch.bfloat16 if precision == "bf16-mixed" else torch.float16)
    learner.learn(tasks[1])
    learner.learn(tasks[2])
    after = _logits(learner, tasks[:1])
    assert torch.equal(before[0], after[0])
    assert learner.accuracy(0, tasks[0].test.x, tasks[0].test.y) > 0.9


def test_an_unknown_precision_is_refused_at_the_door():
    with pytest.raises(ValueError, match="precision must be one of"):
        clnp.CLNPConfig(precision="fp8")


def test_a_device_name_clnp_does_not_know_is_refused():
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error_in_the_library():
    with pytest.raises(DeviceUnavailableError, match="no CUDA device"):
        clnp.CLNP(_net((16,)), clnp.CLNPConfig(device="cuda"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_run_with_device_cuda_on_a_machine_without_cuda_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "clnp", "run", "--device", "cuda", "--epochs", "1",
                           "--out", str(tmp_path / "run"), "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0], proc.stderr
    assert not (tmp_path / "run").exists()


def test_device_cpu_places_the_network_and_evaluation_takes_tensors_from_anywhere():
    tasks = split_digits(seed=0)[:1]
    learner = clnp.CLNP(_net((32,)), clnp.CLNPConfig(epochs=3, finetune_epochs=0, device="cpu"))
    assert learner.device == torch.device("cpu")
    learner.learn(tasks[0])
    assert learner.predict(tasks[0].test.x, 0).device == torch.device("cpu")


class FolderLike(Dataset):
    """A user's own map-style dataset: items built on the fly, as a folder of images read with PIL would be."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i].clone(), int(self.y[i])


def add_noise(x: torch.Tensor) -> torch.Tensor:
    """A train-only augmentation (module-level: the loader's workers pickle it)."""
    return x + 0.05 * torch.randn_like(x)


def _dataset_task(task: Task, workers: int) -> Task:
    return Task.from_datasets(task.name, task.n_classes, FolderLike(task.train.x, task.train.y),
                              FolderLike(task.val.x, task.val.y), FolderLike(task.test.x, task.test.y),
                              transform=add_noise, workers=workers)


def test_a_dataset_backed_task_with_a_transform_and_two_workers_learns_and_old_tasks_stay_bit_identical():
    tasks = [_dataset_task(t, workers=2) for t in split_digits(seed=0)[:2]]
    assert isinstance(tasks[0].train, DatasetSplit)
    learner = clnp.CLNP(_net((64, 64)), clnp.CLNPConfig(epochs=6, finetune_epochs=1, batch_size=32,
                                                                 lr=3e-3))
    learner.learn(tasks[0])
    assert learner.accuracy(0, tasks[0].test.x, tasks[0].test.y) > 0.9
    before = _logits(learner, tasks[:1])
    learner.learn(tasks[1])
    assert learner.accuracy(1, tasks[1].test.x, tasks[1].test.y) > 0.9
    assert torch.equal(before[0], _logits(learner, tasks[:1])[0])


def test_a_dataset_backed_task_reads_the_same_batches_when_learned_again():
    """Seeded shuffling (and seeded workers) that a resume reproduces: two learners, the same network."""
    task = _dataset_task(split_digits(seed=0)[0], workers=2)
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        learner = clnp.CLNP(_net((32,)), clnp.CLNPConfig(epochs=2, finetune_epochs=1, batch_size=32))
        learner.learn(task)
        states.append(learner.net.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_a_dataset_with_labels_out_of_range_is_refused_at_the_door():
    task = split_digits(seed=0)[0]
    bad = Task.from_datasets("bad", 2, FolderLike(task.train.x, task.train.y + 5), FolderLike(task.val.x, task.val.y),
                             FolderLike(task.test.x, task.test.y))
    with pytest.raises(ValueError, match="train labels range over"):
        bad.validate((64,))
