"""Benchmark streams built from small data files in the official formats: tasks, classes, splits."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from clnp.cli import main
from clnp.data import datasets as D
from clnp.data.benchmarks import BENCHMARKS, PermutedTasks, get_benchmark, permuted_tasks


def ids(x: torch.Tensor) -> set[int]:
    """The image ids the fake data sets write into their first two pixels."""
    flat = (x.reshape(x.shape[0], -1)[:, :2] * 255).round().long()
    return set((flat[:, 0] + 256 * flat[:, 1]).tolist())


def write_mnist(root, n_train=400, n_test=100):
    directory = root / "mnist"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        offset = 0 if stem == "train" else n_train
        images[:, 0, 0] = (np.arange(n) + offset) % 256
        images[:, 0, 1] = (np.arange(n) + offset) // 256
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            (directory / f"{stem}-{kind}-ubyte.gz").write_bytes(gzip.compress(header + array.tobytes()))


def write_cifar(root, folder, files, label_key, n, n_classes):
    (root / folder).mkdir(parents=True)
    for f, name in enumerate(files):
        x = np.zeros((n, 3072), dtype=np.uint8)
        x[:, 0] = (np.arange(n) + f * n) % 256
        x[:, 1] = (np.arange(n) + f * n) // 256
        batch = {label_key: [i % n_classes for i in range(n)], b"data": x}
        (root / folder / name).write_bytes(pickle.dumps(batch, protocol=2))


@pytest.fixture
def data_dir(tmp_path):
    write_mnist(tmp_path)
    write_cifar(tmp_path, D.CIFAR10_DIR, D.CIFAR10_FILES, b"labels", 40, 10)
    write_cifar(tmp_path, D.CIFAR100_DIR, D.CIFAR100_FILES, b"fine_labels", 600, 100)
    return tmp_path


def test_split_mnist_has_five_tasks_of_class_pairs(data_dir):
    tasks = get_benchmark("split-mnist", data_dir=str(data_dir))
    assert len(tasks) == 5
    assert [t.name for t in tasks] == [f"split-mnist:{c}/{c + 1}" for c in range(0, 10, 2)]
    for task in tasks:
        task.validate((1, 28, 28))
        assert task.n_classes == 2
        for split in (task.train, task.val, task.test):
            assert set(split.y.tolist()) == {0, 1}
    assert len(tasks[0].test) == 20  # classes 0 and 1 of the 100 test images


def test_permuted_mnist_defaults_to_ten_tasks_with_distinct_permutations(data_dir):
    tasks = get_benchmark("permuted-mnist", data_dir=str(data_dir))
    assert len(tasks) == 10 and BENCHMARKS["permuted-mnist"].default_tasks == 10
    base = tasks[0]
    assert base.n_classes == 10 and set(base.test.y.tolist()) == set(range(10))
    perms = [tasks.permutation(t) for t in range(10)]
    assert torch.equal(perms[0], torch.arange(784))
    assert len({tuple(p.tolist()) for p in perms}) == 10
    t3 = tasks[3]
    assert torch.equal(t3.test.x.reshape(100, -1), base.test.x.reshape(100, -1)[:, perms[3]])
    assert torch.equal(t3.train.y, base.train.y)


def test_lazy_permuted_stream_equals_the_eager_list(data_dir):
    dataset = D.load_mnist(data_dir)
    lazy = PermutedTasks(dataset, 4, 0.1, seed=3)
    eager = permuted_tasks(dataset, 4, 0.1, seed=3)
    assert len(lazy[1:3]) == 2 and lazy[-1].name == eager[-1].name
    for t in (2, 0, 3, 2, 1):
        assert torch.equal(lazy[t].train.x, eager[t].train.x) and torch.equal(lazy[t].val.x, eager[t].val.x)
    with pytest.raises(IndexError):
        lazy[4]


@pytest.mark.parametrize("name", ["split-mnist", "permuted-mnist", "split-cifar10-100"])
def test_validation_is_disjoint_from_training_and_seeded(data_dir, name):
    a = get_benchmark(name, n_tasks=2, seed=0, data_dir=str(data_dir))
    b = get_benchmark(name, n_tasks=2, seed=0, data_dir=str(data_dir))
    c = get_benchmark(name, n_tasks=2, seed=1, data_dir=str(data_dir))
    for t in [0] if name.startswith("permuted") else [0, 1]:  # permuted tasks share one split
        train, val = ids(a[t].train.x), ids(a[t].val.x)
        assert not train & val
        assert len(val) == len(a[t].val) and len(train) == len(a[t].train)
        assert 0.08 <= len(val) / (len(val) + len(train)) <= 0.12
        assert torch.equal(a[t].val.x, b[t].val.x)
        assert ids(c[t].val.x) != val


def test_split_cifar10_100_is_cifar10_then_cifar100_in_tens(data_dir):
    tasks = get_benchmark("split-cifar10-100", data_dir=str(data_dir))
    assert len(tasks) == 6
    assert tasks[0].name == "split-cifar10-100:cifar10:0-9"
    assert [t.name.rsplit(":", 1)[1] for t in tasks[1:]] == ["0-9", "10-19", "20-29", "30-39", "40-49"]
    for task in tasks:
        task.validate((3, 32, 32))
        assert task.n_classes == 10 and set(task.test.y.tolist()) == set(range(10))
    assert len(tasks[0].test) == 40 and len(tasks[1].test) == 60  # CIFAR-100: 6 test images per class
    first_ids = ids(tasks[2].test.x)  # CIFAR-100 classes 10..19: ids i with i % 100 in 10..19
    assert all(10 <= i % 100 < 20 for i in first_ids)


def test_split_cifar10_100_first_task_needs_no_cifar100(tmp_path):
    write_cifar(tmp_path, D.CIFAR10_DIR, D.CIFAR10_FILES, b"labels", 40, 10)
    assert len(get_benchmark("split-cifar10-100", n_tasks=1, data_dir=str(tmp_path))) == 1
    with pytest.raises(D.DataError, match="cifar-100-python"):
        get_benchmark("split-cifar10-100", n_tasks=2, data_dir=str(tmp_path))


def test_asking_for_more_tasks_than_a_split_stream_has_is_an_error(data_dir):
    with pytest.raises(ValueError, match="has 5 tasks; --tasks 6"):
        get_benchmark("split-mnist", n_tasks=6, data_dir=str(data_dir))


def test_every_benchmark_sets_only_its_model_epochs_and_batch_size_and_says_how_to_get_its_data():
    from clnp.experiments.config import RunConfig

    for spec in BENCHMARKS.values():
        assert set(spec.defaults) == {"model", "epochs", "batch_size"}, spec.name
        resolved = RunConfig(benchmark=spec.name).resolved()
        # CLNP's and the training settings' defaults are the same for every benchmark
        assert (resolved.l1, resolved.margin, resolved.finetune_epochs, resolved.lr, resolved.optimizer) == (
            3e-3, 1.0, 10, 1e-3, "adam"), spec.name
        assert spec.data and spec.how_to_get()
    assert BENCHMARKS["split-digits"].data_present()
    assert "dataset-fashion-mnist" in BENCHMARKS["permuted-fashion-mnist"].how_to_get()
    assert BENCHMARKS["split-cifar10-100"].defaults["model"] == "cnn:32,32,64,64/512"


def test_clnp_benchmarks_lists_names_data_presence_and_how_to_get_it(data_dir, tmp_path, capsys):
    def table() -> dict[str, str]:
        """Benchmark name -> its row and the 'get:' line under it."""
        rows: dict[str, str] = {}
        name = ""
        for line in capsys.readouterr().out.splitlines()[1:]:
            if not line:  # the table ends; the defaults every benchmark shares follow
                break
            if line.startswith(" "):
                rows[name] += "\n" + line
            else:
                name = line.split()[0]
                rows[name] = line
        return rows

    assert main(["benchmarks", "--data-dir", str(data_dir)]) == 0
    rows = table()
    assert set(rows) == set(BENCHMARKS)
    assert rows["permuted-mnist"].split()[1] == "yes" and rows["split-cifar10-100"].split()[1] == "yes"
    assert "get:" in rows["split-mnist"] and "ossci-datasets" in rows["split-mnist"]
    assert main(["benchmarks", "--data-dir", str(tmp_path / "empty")]) == 0
    rows = table()
    assert rows["permuted-mnist"].split()[1] == "no" and rows["split-digits"].split()[1] == "yes"


def test_clnp_benchmarks_download_reports_an_unreachable_server_as_one_line(tmp_path, capsys, monkeypatch):
    load = D.DATA_SOURCES["mnist"].load
    monkeypatch.setitem(D.DATA_SOURCES, "mnist", D.DataSource(
        "mnist", lambda d, download: load(d, download=download, base_url="http://127.0.0.1:9/"),  # port 9: closed
        D.DATA_SOURCES["mnist"].present, ""))
    assert main(["benchmarks", "--download", "split-mnist", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and "download from http://127.0.0.1:9/" in err
