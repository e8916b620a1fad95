"""split-cifar100 and split-tinyimagenet built from small files in the official formats: tasks, class order,
splits, the decoded-image cache of Tiny ImageNet, and one clear error for a missing or broken folder."""

import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from clnp.cli import main
from clnp.data import datasets as D
from clnp.data.benchmarks import BENCHMARKS, get_benchmark

CIFAR_TRAIN_PER_CLASS, CIFAR_TEST_PER_CLASS = 5, 2
TINY_TRAIN_PER_CLASS = 3


# ----------------------------------------------------------------------------------------- CIFAR-100
def write_cifar100(root):
    """``cifar-100-python/{train,test,meta}``: each image's first pixel is its class, the next two its id."""
    folder = root / D.CIFAR100_DIR
    folder.mkdir(parents=True)
    next_id = 0
    for name, per_class in (("train", CIFAR_TRAIN_PER_CLASS), ("test", CIFAR_TEST_PER_CLASS)):
        labels = [c for _ in range(per_class) for c in range(100)]
        x = np.zeros((len(labels), 3072), dtype=np.uint8)
        x[:, 0] = labels
        ids = np.arange(next_id, next_id + len(labels))
        x[:, 1], x[:, 2] = ids % 256, ids // 256
        next_id += len(labels)
        batch = {b"filenames": [b"x.png"] * len(labels), b"batch_label": name.encode(), b"fine_labels": labels,
                 b"coarse_labels": [c // 5 for c in labels], b"data": x}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"fine_label_names": [f"c{c}".encode() for c in range(100)],
            b"coarse_label_names": [f"s{c}".encode() for c in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return next_id - CIFAR_TEST_PER_CLASS * 100  # the first test id


def classes_and_ids(x: torch.Tensor) -> tuple[list[int], set[int]]:
    pixels = (x.reshape(x.shape[0], -1)[:, :3] * 255).round().long()
    return pixels[:, 0].tolist(), set((pixels[:, 1] + 256 * pixels[:, 2]).tolist())


def test_split_cifar100_is_ten_tasks_of_ten_classes_in_natural_order(tmp_path):
    first_test_id = write_cifar100(tmp_path)
    tasks = get_benchmark("split-cifar100", data_dir=str(tmp_path))
    assert len(tasks) == 10 == BENCHMARKS["split-cifar100"].max_tasks
    assert [t.name for t in tasks] == [f"split-cifar100:{lo}-{lo + 9}" for lo in range(0, 100, 10)]
    for t, task in enumerate(tasks):
        task.validate((3, 32, 32))
        assert task.n_classes == 10
        for split in (task.train, task.val, task.test):
            classes, _ = classes_and_ids(split.x)
            assert split.y.tolist() == [c - 10 * t for c in classes]  # classes 10t..10t+9 renumbered 0..9
            assert set(split.y.tolist()) <= set(range(10))
        # a seeded 10 % of the task's 50 training images is its validation split
        (_, train), (_, val), (_, test) = (classes_and_ids(s.x) for s in (task.train, task.val, task.test))
        assert (len(train), len(val)) == (45, 5) and not train & val
        assert len(test) == 10 * CIFAR_TEST_PER_CLASS and min(test) >= first_test_id  # the official test file
        assert max(train | val) < first_test_id
    again = get_benchmark("split-cifar100", n_tasks=3, data_dir=str(tmp_path))
    assert len(again) == 3 and torch.equal(again[2].val.x, tasks[2].val.x)
    other_seed = get_benchmark("split-cifar100", n_tasks=1, seed=1, data_dir=str(tmp_path))
    assert classes_and_ids(other_seed[0].val.x)[1] != classes_and_ids(tasks[0].val.x)[1]
    with pytest.raises(ValueError, match="has 10 tasks; --tasks 11"):
        get_benchmark("split-cifar100", n_tasks=11, data_dir=str(tmp_path))


def test_split_cifar100_defaults_are_gpms_network_and_batch_size():
    import clnp.models

    spec = BENCHMARKS["split-cifar100"]
    assert spec.defaults == {"model": "alexnet", "epochs": 50, "batch_size": 64}
    assert spec.data == ("cifar100",) and spec.input_shape == (3, 32, 32)
    assert "200 epochs with early stopping" in spec.description
    clnp.models.build(spec.defaults["model"], spec.input_shape)  # the default network takes these inputs
    assert "cifar-100-python.tar.gz" in spec.how_to_get() and "--download split-cifar100" in spec.how_to_get()


def test_split_cifar100_without_its_data_names_the_folder_and_the_archive(tmp_path):
    with pytest.raises(D.DataError) as caught:
        get_benchmark("split-cifar100", data_dir=str(tmp_path))
    message = str(caught.value)
    assert str(tmp_path / D.CIFAR100_DIR) in message and "cifar-100-python.tar.gz" in message
    assert "\n" not in message


# ------------------------------------------------------------------------------------- Tiny ImageNet
def write_tiny_imagenet(root, train_per_class=TINY_TRAIN_PER_CLASS):
    """A ``tiny-imagenet-200`` tree of 200 classes (listed out of alphabetical order), random 64x64 JPEGs.
    Returns decoded image bytes -> (class, "train" or "val"), as the loader decodes them."""
    rng = np.random.default_rng(0)
    directory = root / D.TINY_IMAGENET_DIR
    wnids = [f"n{i:08d}" for i in rng.permutation(10_000)[:200]]
    assert wnids != sorted(wnids)
    directory.mkdir(parents=True)
    (directory / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (directory / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in wnids))
    origin: dict[bytes, tuple[int, str]] = {}

    def image(path, label, part):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, "JPEG")
        with Image.open(path) as im:
            origin[np.asarray(im.convert("RGB")).transpose(2, 0, 1).tobytes()] = (label, part)

    for label, wnid in enumerate(wnids):
        folder = directory / "train" / wnid / "images"
        folder.mkdir(parents=True)
        (directory / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(train_per_class):
            image(folder / f"{wnid}_{i}.JPEG", label, "train")
    (directory / "val" / "images").mkdir(parents=True)
    lines = []
    for i, label in enumerate(rng.permutation(200)):  # one validation image per class, classes shuffled
        image(directory / "val" / "images" / f"val_{i}.JPEG", int(label), "val")
        lines.append(f"val_{i}.JPEG\t{wnids[label]}\t0\t0\t63\t63\n")
    (directory / "val" / "val_annotations.txt").write_text("".join(lines))
    (directory / "test" / "images").mkdir(parents=True)  # the official test images: no labels, never read
    return origin


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return root, write_tiny_imagenet(root)


@pytest.fixture
def tiny(pristine, tmp_path):
    """A fresh copy of the pristine tree (no cache yet) and its images' origins."""
    root, origin = pristine
    shutil.copytree(root / D.TINY_IMAGENET_DIR, tmp_path / D.TINY_IMAGENET_DIR)
    return tmp_path, origin


def origins(x: torch.Tensor, origin: dict) -> list[tuple[int, str]]:
    pixels = (x * 255).round().to(torch.uint8).numpy()
    return [origin[p.tobytes()] for p in pixels]


def test_split_tinyimagenet_is_forty_tasks_of_five_classes_in_wnids_order(tiny):
    root, origin = tiny
    tasks = get_benchmark("split-tinyimagenet", data_dir=str(root))
    assert len(tasks) == 40 == BENCHMARKS["split-tinyimagenet"].max_tasks
    assert [t.name for t in tasks] == [f"split-tinyimagenet:{lo}-{lo + 4}" for lo in range(0, 200, 5)]
    for t, task in enumerate(tasks):
        task.validate((3, 64, 64))
        assert task.n_classes == 5
        for split, part in ((task.train, "train"), (task.val, "train"), (task.test, "val")):
            found = origins(split.x, origin)
            assert [p for _, p in found] == [part] * len(split)  # validation carved from train; test = val/
            assert split.y.tolist() == [label - 5 * t for label, _ in found]  # wnids.txt order, renumbered 0..4
        assert (len(task.train), len(task.val), len(task.test)) == (13, 2, 5)  # 10 % of 15 images, rounded
        assert not {x.numpy().tobytes() for x in task.train.x} & {x.numpy().tobytes() for x in task.val.x}
    spec = BENCHMARKS["split-tinyimagenet"]
    assert spec.input_shape == (3, 64, 64) and spec.data_present(str(root))
    assert spec.defaults == {"model": "cnn:160,160,160,160/640,640", "epochs": 50, "batch_size": 64}


def test_tiny_imagenet_is_decoded_once_then_read_from_its_cache(tiny, monkeypatch):
    root, _ = tiny
    cache = root / D.TINY_IMAGENET_DIR / D.TINY_IMAGENET_CACHE
    first = D.load_tiny_imagenet(root)
    assert cache.is_file() and first.x_train.shape == (600, 3, 64, 64) and first.x_test.shape == (200, 3, 64, 64)
    assert not list(cache.parent.glob("*.part"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a JPEG although the cache matches")

    monkeypatch.setattr(D, "read_rgb_image", no_decoding)
    second = D.load_tiny_imagenet(root)
    for a, b in ((first.x_train, second.x_train), (first.y_train, second.y_train), (first.x_test, second.x_test),
                 (first.y_test, second.y_test)):
        assert torch.equal(a, b)


def counting_decoder(monkeypatch) -> list[int]:
    calls = [0]
    decode = D.read_rgb_image

    def counted(*args, **kwargs):
        calls[0] += 1
        return decode(*args, **kwargs)

    monkeypatch.setattr(D, "read_rgb_image", counted)
    return calls


def test_a_cache_of_other_files_or_a_damaged_one_is_rebuilt(tiny, monkeypatch):
    root, _ = tiny
    directory = root / D.TINY_IMAGENET_DIR
    D.load_tiny_imagenet(root)
    calls = counting_decoder(monkeypatch)
    wnid = (directory / "wnids.txt").read_text().split()[7]
    shutil.copy(directory / "train" / wnid / "images" / f"{wnid}_0.JPEG",
                directory / "train" / wnid / "images" / f"{wnid}_extra.JPEG")
    grown = D.load_tiny_imagenet(root)  # one image more than the cache holds: decoded again
    assert calls[0] == 801 and grown.x_train.shape[0] == 601 and (grown.y_train == 7).sum() == 4
    D.load_tiny_imagenet(root)
    assert calls[0] == 801  # the rebuilt cache is used
    cache = directory / D.TINY_IMAGENET_CACHE
    cache.write_bytes(cache.read_bytes()[:1000])  # truncated
    again = D.load_tiny_imagenet(root)
    assert calls[0] == 1602 and torch.equal(again.x_train, grown.x_train)
    D.load_tiny_imagenet(root)
    assert calls[0] == 1602


def test_a_cache_that_cannot_be_written_is_a_warning_not_an_error(tiny, monkeypatch):
    root, _ = tiny

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(D.np, "savez", refuse)
    with pytest.warns(RuntimeWarning, match="not cached .Permission denied.*decoded again"):
        data = D.load_tiny_imagenet(root)
    assert data.x_train.shape[0] == 600
    assert not list((root / D.TINY_IMAGENET_DIR).glob("clnp-decoded*"))


def _drop_class_folder(d):
    wnid = (d / "wnids.txt").read_text().split()[3]
    shutil.rmtree(d / "train" / wnid)
    return d / "train" / wnid / "images", "missing"


def _short_wnids(d):
    (d / "wnids.txt").write_text("\n".join((d / "wnids.txt").read_text().split()[:199]))
    return d / "wnids.txt", "lists 199 class ids (199 distinct); expected 200 distinct ids"


def _unknown_class(d):
    path = d / "val" / "val_annotations.txt"
    lines = path.read_text().splitlines()
    lines[4] = "val_4.JPEG\tn99999999\t0\t0\t63\t63"
    path.write_text("\n".join(lines) + "\n")
    return path, "line 5 reads 'val_4.JPEG\\tn99999999"


def _missing_val_image(d):
    (d / "val" / "images" / "val_9.JPEG").unlink()
    return d / "val" / "images" / "val_9.JPEG", "missing (line 10 of val_annotations.txt names it)"


def _truncated_jpeg(d):
    path = sorted((d / "train").glob("*/images/*.JPEG"))[5]
    path.write_bytes(path.read_bytes()[:300])
    return path, "not a readable image"


def _small_image(d):
    path = d / "val" / "images" / "val_0.JPEG"
    Image.new("RGB", (32, 32)).save(path, "JPEG")
    return path, "an image of 32x32 pixels; expected 64x64"


def _no_folder(d):
    shutil.rmtree(d)
    return d, "missing"


@pytest.mark.parametrize("breakage", [_no_folder, _drop_class_folder, _short_wnids, _unknown_class,
                                      _missing_val_image, _truncated_jpeg, _small_image],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_missing_or_broken_tiny_imagenet_folder_is_one_error_naming_the_path_and_the_remedy(tiny, breakage):
    root, _ = tiny
    path, problem = breakage(root / D.TINY_IMAGENET_DIR)
    with pytest.raises(D.DataError) as caught:
        get_benchmark("split-tinyimagenet", n_tasks=1, data_dir=str(root))
    assert caught.value.path == str(path)
    assert problem in caught.value.problem
    message = str(caught.value)
    assert "\n" not in message and "tiny-imagenet-200.zip" in message and "does not download" in message


def test_clnp_benchmarks_says_where_both_data_sets_come_from(tiny, capsys):
    root, _ = tiny
    write_cifar100(root)
    assert main(["benchmarks", "--data-dir", str(root)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:] if line[:1].strip()}
    assert rows["split-cifar100"].split()[1] == "yes" and rows["split-tinyimagenet"].split()[1] == "yes"
    assert main(["benchmarks", "--data-dir", str(root / "empty")]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line[:1].strip()}
    assert rows["split-cifar100"].split()[1] == "no" and rows["split-tinyimagenet"].split()[1] == "no"
    assert "cifar-100-python.tar.gz" in out
    assert "unzip http://cs231n.stanford.edu/tiny-imagenet-200.zip in DATA_DIR (--data-dir; not downloaded " \
           "automatically)" in out
    assert main(["benchmarks", "--download", "split-tinyimagenet", "--data-dir", str(root / "empty")]) == 2
    err = capsys.readouterr().err
    assert "tiny-imagenet-200" in err and "does not download Tiny ImageNet" in err
