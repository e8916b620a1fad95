"""Data sets as tensors: images ``[N, C, H, W]`` scaled to ``[0, 1]`` and integer labels.

Each loader returns a :class:`Dataset` with the official train/test division where one exists.
Files are read in their official formats (IDX for MNIST and Fashion-MNIST, the Python pickle
batches for CIFAR, the folder of JPEGs of Tiny ImageNet, decoded once and cached); ``download=True``
fetches the official archives (not Tiny ImageNet's), checks each against its published MD5 and
refuses any that does not match. Anything missing or damaged raises one
:class:`DataError` naming the file, what was wrong with it and how to get it. The files themselves are
read, fetched and checked in :mod:`clnp.data.files` (its names are reached from here too).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .files import DataError, download, extract_tar, file_md5, read_cifar_batch, read_idx, read_rgb_image

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the four gzipped IDX files."""

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
"""The four official IDX files of MNIST and Fashion-MNIST (stored gzipped as ``NAME.gz``)."""

MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
CIFAR10_ARCHIVE = ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")
CIFAR100_ARCHIVE = ("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85")
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR100_FILES = ("train", "test")


@dataclass
class Dataset:
    """A labelled image data set with its train and test parts."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def default_data_dir() -> Path:
    """``$CLNP_DATA_DIR`` if set, else ``./data``: where downloads go and loaders look."""
    return Path(os.environ.get("CLNP_DATA_DIR") or "data")


def load_digits(test_fraction: float = 0.3, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images; no download).

    The data set has no official test set: a stratified, seeded ``test_fraction`` is held out.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return Dataset("digits", torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_te),
                   torch.from_numpy(y_te), 10)


# ------------------------------------------------------------------------------------------- IDX
def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def idx_files_present(directory: str | Path) -> bool:
    """Whether ``directory`` holds all four IDX files (gzipped or raw)."""
    return all(_find_idx(Path(directory), stem) is not None for stem in IDX_FILES)


def load_idx_dataset(directory: str | Path, name: str, remedy: str = "") -> Dataset:
    """The four official IDX files of an MNIST-like data set in ``directory`` as a :class:`Dataset`."""
    directory = Path(directory)
    arrays = []
    for stem in IDX_FILES:
        path = _find_idx(directory, stem)
        if path is None:
            raise DataError(directory / (stem + ".gz"), f"missing (looked for {stem}.gz and {stem})", remedy)
        array = read_idx(path, remedy)
        want_ndim = 3 if "images" in stem else 1
        if array.ndim != want_ndim or array.dtype != np.uint8:
            raise DataError(path, f"holds {array.dtype} data of {array.ndim} dimensions; expected unsigned bytes "
                            f"of {want_ndim} dimensions", remedy)
        arrays.append((path, array))
    (px_tr, x_tr), (py_tr, y_tr), (px_te, x_te), (py_te, y_te) = arrays
    for (px, x), (py, y) in (((px_tr, x_tr), (py_tr, y_tr)), ((px_te, x_te), (py_te, y_te))):
        if x.shape[0] != y.shape[0]:
            raise DataError(py, f"wrong count: {y.shape[0]} labels for the {x.shape[0]} images of {px.name}", remedy)
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(px_te, f"images of {x_te.shape[1:]} pixels; the training images have {x_tr.shape[1:]}",
                        remedy)
    n_classes = int(max(y_tr.max(initial=0), y_te.max(initial=0))) + 1
    return Dataset(name, _images(x_tr[:, None]), torch.from_numpy(y_tr.astype(np.int64)),
                   _images(x_te[:, None]), torch.from_numpy(y_te.astype(np.int64)), max(n_classes, 10))


def _images(x: np.ndarray) -> Tensor:
    """Unsigned-byte images ``[N, C, H, W]`` as float32 in ``[0, 1]``."""
    return torch.from_numpy(x.astype(np.float32)).div_(255.0)


# -------------------------------------------------------------------------------- MNIST family
def _idx_remedy(label: str, directory: Path, base_url: str, apt: str | None = None) -> str:
    alternative = f", or install {apt}" if apt else ""
    return (f"Put the four official {label} IDX files (gzipped or raw) in {directory}{alternative}, or run "
            f"'clnp benchmarks --download BENCHMARK' (download=True in Python) to fetch them from {base_url}")


def _fetch_idx(directory: Path, base_url: str, checksums: dict[str, str]) -> None:
    for stem in IDX_FILES:
        if _find_idx(directory, stem) is None:
            name = stem + ".gz"
            download(base_url.rstrip("/") + "/" + name, directory / name, checksums[name])


def load_mnist(data_dir: str | Path | None = None, download: bool = False, base_url: str = MNIST_URL) -> Dataset:
    """MNIST from ``DATA_DIR/mnist`` (the four official IDX files); ``download=True`` fetches them."""
    directory = Path(data_dir or default_data_dir()) / "mnist"
    if download:
        _fetch_idx(directory, base_url, MNIST_MD5)
    return load_idx_dataset(directory, "mnist", _idx_remedy("MNIST", directory, base_url))


def fashion_mnist_dir(data_dir: str | Path | None = None) -> Path | None:
    """The first of ``DATA_DIR/fashion-mnist`` (when ``data_dir`` is given), Debian's directory and
    ``default_data_dir()/fashion-mnist`` that holds all four files; None if none does."""
    candidates = [Path(data_dir) / "fashion-mnist"] if data_dir else []
    candidates += [DEBIAN_FASHION_MNIST_DIR, default_data_dir() / "fashion-mnist"]
    return next((c for c in candidates if idx_files_present(c)), None)


def load_fashion_mnist(data_dir: str | Path | None = None, download: bool = False,
                       base_url: str = FASHION_MNIST_URL) -> Dataset:
    """Fashion-MNIST from the first directory :func:`fashion_mnist_dir` finds; ``download=True``
    fetches the files into ``DATA_DIR/fashion-mnist`` when none has them."""
    target = Path(data_dir or default_data_dir()) / "fashion-mnist"
    directory = fashion_mnist_dir(data_dir)
    if directory is None and download:
        _fetch_idx(target, base_url, FASHION_MNIST_MD5)
        directory = target
    remedy = _idx_remedy("Fashion-MNIST", target, base_url,
                         apt=f"the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist, "
                             f"files in {DEBIAN_FASHION_MNIST_DIR})")
    return load_idx_dataset(directory or target, "fashion-mnist", remedy)


# ------------------------------------------------------------------------------------- CIFAR
def _cifar_remedy(directory: Path, archive: str, base_url: str) -> str:
    return (f"Extract the official {archive} (the Python version) into {directory.parent}, or run 'clnp "
            f"benchmarks --download BENCHMARK' (download=True in Python) to fetch it from "
            f"{base_url.rstrip('/')}/{archive}")


def _fetch_cifar(root: Path, folder: str, archive: tuple[str, str], base_url: str) -> None:
    name, md5 = archive
    path = root / name
    if not (path.is_file() and file_md5(path) == md5):
        download(base_url.rstrip("/") + "/" + name, path, md5)
    extract_tar(path, root)
    if not (root / folder).is_dir():
        raise DataError(path, f"the archive has no {folder}/ directory", "Download it again from the official site")


def _load_cifar(name: str, data_dir: str | Path | None, download: bool, base_url: str, folder: str,
                archive: tuple[str, str], train_files: tuple[str, ...], test_file: str, label_key: str,
                n_classes: int) -> Dataset:
    root = Path(data_dir or default_data_dir())
    directory = root / folder
    needed = (*train_files, test_file)
    if download and not all((directory / f).is_file() for f in needed):
        _fetch_cifar(root, folder, archive, base_url)
    remedy = _cifar_remedy(directory, archive[0], base_url)
    parts = [read_cifar_batch(directory / f, label_key, remedy) for f in needed]
    x_tr = np.concatenate([p[0] for p in parts[:-1]])
    y_tr = np.concatenate([p[1] for p in parts[:-1]])
    x_te, y_te = parts[-1]
    for f, (_, y) in zip(needed, parts, strict=True):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise DataError(directory / f, f"labels range over {y.min()}..{y.max()}; expected 0..{n_classes - 1}",
                            remedy)
    return Dataset(name, _images(x_tr), torch.from_numpy(y_tr), _images(x_te), torch.from_numpy(y_te), n_classes)


def load_cifar10(data_dir: str | Path | None = None, download: bool = False, base_url: str = CIFAR_URL) -> Dataset:
    """CIFAR-10 from ``DATA_DIR/cifar-10-batches-py`` (the official Python release)."""
    return _load_cifar("cifar10", data_dir, download, base_url, CIFAR10_DIR, CIFAR10_ARCHIVE, CIFAR10_FILES[:-1],
                       CIFAR10_FILES[-1], "labels", 10)


def load_cifar100(data_dir: str | Path | None = None, download: bool = False, base_url: str = CIFAR_URL) -> Dataset:
    """CIFAR-100 (fine labels) from ``DATA_DIR/cifar-100-python`` (the official Python release)."""
    return _load_cifar("cifar100", data_dir, download, base_url, CIFAR100_DIR, CIFAR100_ARCHIVE, ("train",), "test",
                       "fine_labels", 100)


# ----------------------------------------------------------------------------- Tiny ImageNet
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_DIR = "tiny-imagenet-200"
TINY_IMAGENET_CLASSES = 200
TINY_IMAGENET_SIDE = 64
TINY_IMAGENET_CACHE = "clnp-decoded.npz"
"""The decoded images (uint8, about 1.3 GB), written into the ``tiny-imagenet-200`` folder on the first load:
decoding takes about 0.13 ms of CPU an image (measured on 64x64 JPEGs), 15 s for the 110,000, plus opening as many
small files (much slower on network file systems); the cache is one file, read back in a few seconds."""


def _tiny_imagenet_remedy(directory: Path) -> str:
    return (f"Unzip the official {TINY_IMAGENET_URL} into {directory.parent}, so that {directory}/wnids.txt, "
            "train/ and val/ exist (clnp does not download Tiny ImageNet)")


@dataclass(frozen=True)
class TinyImageNetFiles:
    """The images of a ``tiny-imagenet-200`` folder with their labels (indices into ``wnids``), and ``key``: a
    digest of the class ids and of every image's name and size, which a cache of the decoded images must match."""

    wnids: list[str]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]]
    key: str


def _text_lines(path: Path, remedy: str) -> list[str]:
    """The non-blank lines of a text file, without their line ends."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "missing", remedy) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not a readable text file ({exc})", remedy) from None
    return [line for line in text.splitlines() if line.strip()]


def _jpeg_sizes(folder: Path, remedy: str) -> dict[str, int]:
    """File name -> size in bytes of each JPEG in ``folder``."""
    if not folder.is_dir():
        raise DataError(folder, "missing", remedy)
    with os.scandir(folder) as entries:
        return {e.name: e.stat().st_size for e in entries
                if e.is_file() and e.name.lower().endswith((".jpeg", ".jpg"))}


def list_tiny_imagenet(directory: Path, remedy: str = "") -> TinyImageNetFiles:
    """The official layout, checked: ``wnids.txt`` (200 distinct class ids, one a line, in label order),
    ``train/WNID/images/*.JPEG`` (training images of each class, in name order) and ``val/images/*.JPEG``
    labelled by ``val/val_annotations.txt`` (tab-separated: file name, class id, box), in that file's order."""
    if not directory.is_dir():
        raise DataError(directory, "missing", remedy)
    wnids_path = directory / "wnids.txt"
    wnids = [line.strip() for line in _text_lines(wnids_path, remedy)]
    if len(wnids) != TINY_IMAGENET_CLASSES or len(set(wnids)) != len(wnids):
        raise DataError(wnids_path, f"lists {len(wnids)} class ids ({len(set(wnids))} distinct); expected "
                        f"{TINY_IMAGENET_CLASSES} distinct ids, one a line", remedy)
    digest = hashlib.sha256("\n".join(wnids).encode())
    train: list[tuple[Path, int]] = []
    for label, wnid in enumerate(wnids):
        folder = directory / "train" / wnid / "images"
        sizes = _jpeg_sizes(folder, remedy)
        if not sizes:
            raise DataError(folder, f"holds no .JPEG image; expected the training images of class {wnid}", remedy)
        for name in sorted(sizes):
            train.append((folder / name, label))
            digest.update(f"train/{wnid}/{name}\t{sizes[name]}\n".encode())
    images, annotations = directory / "val" / "images", directory / "val" / "val_annotations.txt"
    sizes = _jpeg_sizes(images, remedy)
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    test: list[tuple[Path, int]] = []
    for n, line in enumerate(_text_lines(annotations, remedy), 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label_of:
            raise DataError(annotations, f"line {n} reads {line[:80]!r}; expected a file name, a class id of "
                            "wnids.txt and the box, separated by tabs", remedy)
        if fields[0] not in sizes:
            raise DataError(images / fields[0], f"missing (line {n} of val_annotations.txt names it)", remedy)
        test.append((images / fields[0], label_of[fields[1]]))
        digest.update(f"val/{fields[0]}\t{fields[1]}\t{sizes[fields[0]]}\n".encode())
    if not test:
        raise DataError(annotations, "names no image; expected one line per validation image", remedy)
    return TinyImageNetFiles(wnids, train, test, digest.hexdigest())


def _decode(files: list[tuple[Path, int]], remedy: str) -> tuple[np.ndarray, np.ndarray]:
    side = TINY_IMAGENET_SIDE
    x = np.empty((len(files), 3, side, side), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        x[i] = read_rgb_image(path, side, remedy)
    return x, np.array([label for _, label in files], dtype=np.int64)


_CACHED = ("x_train", "y_train", "x_test", "y_test")


def _read_cache(path: Path, files: TinyImageNetFiles) -> tuple[np.ndarray, ...] | None:
    """The decoded images cached at ``path`` when they are those of ``files``; None when there is no cache, or one
    of other files (its key, shapes or labels differ), or a damaged one: the images are then decoded again."""
    try:
        with np.load(path, allow_pickle=False) as cached:
            if str(cached["key"]) != files.key:
                return None
            arrays = tuple(cached[name] for name in _CACHED)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    side = TINY_IMAGENET_SIDE
    for x, y, part in ((arrays[0], arrays[1], files.train), (arrays[2], arrays[3], files.test)):
        if x.dtype != np.uint8 or x.shape != (len(part), 3, side, side) or y.dtype != np.int64:
            return None
        if not np.array_equal(y, [label for _, label in part]):
            return None
    return arrays


def _write_cache(path: Path, files: TinyImageNetFiles, arrays: tuple[np.ndarray, ...]) -> None:
    """Write the cache atomically (a concurrent reader sees the old file or the new, never half of one); where the
    folder cannot be written, warn and go on without a cache."""
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        with open(part, "wb") as fh:
            # Any: numpy's stubs type **kwds as ArrayLike but would also match an ndarray to `allow_pickle: bool`
            by_name: dict[str, Any] = dict(zip(_CACHED, arrays, strict=True))
            np.savez(fh, key=np.array(files.key), **by_name)
        os.replace(part, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
        warnings.warn(f"{path}: the decoded images were not cached ({exc.strerror or exc}); Tiny ImageNet's JPEGs "
                      "will be decoded again on the next load", RuntimeWarning, stacklevel=3)


def load_tiny_imagenet(data_dir: str | Path | None = None, download: bool = False) -> Dataset:
    """Tiny ImageNet from ``DATA_DIR/tiny-imagenet-200`` (the official zip, unzipped): 64x64 RGB images of 200
    classes labelled in ``wnids.txt`` order, the training images as training set and the labelled validation
    images as test set (the official test images have no labels).

    The JPEGs are decoded once into ``tiny-imagenet-200/clnp-decoded.npz`` (:data:`TINY_IMAGENET_CACHE`), read
    from there while every image's name and size still match it. In memory the training images take about 5 GB
    (float32). ``download`` is taken for the loaders' common signature: clnp does not download Tiny ImageNet.
    """
    directory = Path(data_dir or default_data_dir()) / TINY_IMAGENET_DIR
    remedy = _tiny_imagenet_remedy(directory)
    files = list_tiny_imagenet(directory, remedy)
    cache = directory / TINY_IMAGENET_CACHE
    arrays = _read_cache(cache, files)
    if arrays is None:
        arrays = (*_decode(files.train, remedy), *_decode(files.test, remedy))
        _write_cache(cache, files, arrays)
    x_tr, y_tr, x_te, y_te = arrays
    return Dataset("tiny-imagenet", _images(x_tr), torch.from_numpy(y_tr), _images(x_te), torch.from_numpy(y_te),
                   TINY_IMAGENET_CLASSES)


def tiny_imagenet_present(data_dir: str | Path | None = None) -> bool:
    """Whether ``DATA_DIR/tiny-imagenet-200`` has the official layout's list of classes, training folder and
    validation labels (the images themselves are checked when they are loaded)."""
    directory = Path(data_dir or default_data_dir()) / TINY_IMAGENET_DIR
    return ((directory / "wnids.txt").is_file() and (directory / "train").is_dir()
            and (directory / "val" / "val_annotations.txt").is_file())


# ----------------------------------------------------------------------------- what is present
@dataclass(frozen=True)
class DataSource:
    """A data set clnp can load: how to tell whether it is present, and how to get it."""

    name: str
    load: Callable[..., Dataset]
    present: Callable[[str | Path | None], bool]
    how_to_get: str
    """How to get it; ``{download}`` stands for the download command of the benchmark at hand."""


def _cifar_present(folder: str, files: tuple[str, ...]) -> Callable[[str | Path | None], bool]:
    def present(data_dir: str | Path | None) -> bool:
        directory = Path(data_dir or default_data_dir()) / folder
        return all((directory / f).is_file() for f in files)
    return present


DATA_SOURCES: dict[str, DataSource] = {
    "digits": DataSource("digits", lambda data_dir=None, download=False: load_digits(), lambda d: True,
                         "bundled with scikit-learn"),
    "mnist": DataSource(
        "mnist", load_mnist, lambda d: idx_files_present(Path(d or default_data_dir()) / "mnist"),
        f"{{download}}, or the four IDX files from {MNIST_URL} in DATA_DIR/mnist"),
    "fashion-mnist": DataSource(
        "fashion-mnist", load_fashion_mnist, lambda d: fashion_mnist_dir(d) is not None,
        "apt-get install dataset-fashion-mnist (as root), or {download} (into DATA_DIR/fashion-mnist)"),
    "cifar10": DataSource(
        "cifar10", load_cifar10, _cifar_present(CIFAR10_DIR, CIFAR10_FILES),
        f"{{download}}, or extract {CIFAR_URL}{CIFAR10_ARCHIVE[0]} in DATA_DIR"),
    "cifar100": DataSource(
        "cifar100", load_cifar100, _cifar_present(CIFAR100_DIR, CIFAR100_FILES),
        f"{{download}}, or extract {CIFAR_URL}{CIFAR100_ARCHIVE[0]} in DATA_DIR"),
    "tiny-imagenet": DataSource(
        "tiny-imagenet", load_tiny_imagenet, tiny_imagenet_present,
        f"unzip {TINY_IMAGENET_URL} in DATA_DIR (--data-dir; not downloaded automatically)"),
}
