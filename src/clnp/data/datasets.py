"""Data sets as tensors: images ``[N, C, H, W]`` scaled to ``[0, 1]`` and integer labels.

Each loader returns a :class:`Dataset` with the official train/test division where one exists.
Files are read in their official formats (IDX for MNIST and Fashion-MNIST, the Python pickle
batches for CIFAR); ``download=True`` fetches the official archives, checks each against its
published MD5 and refuses any that does not match. Anything missing or damaged raises one
:class:`DataError` naming the file, what was wrong with it and how to get it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

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


class DataError(ValueError):
    """A data file is missing or damaged. The message names the file, the fault and the remedy."""

    def __init__(self, path: str | Path, problem: str, remedy: str) -> None:
        self.path = str(path)
        self.problem = problem
        self.remedy = remedy
        super().__init__(f"{self.path}: {problem}. {remedy}")


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
_IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_bytes(path: Path, remedy: str) -> bytes:
    """The file's bytes, gunzipped when the file is gzip (recognised by content, not by name)."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(path, f"the gzip stream is damaged or truncated ({exc})", remedy) from None


def read_idx(path: str | Path, remedy: str = "") -> np.ndarray:
    """Parse one IDX file (raw or gzipped): check its magic number, dimensions and size."""
    path = Path(path)
    data = _read_bytes(path, remedy)
    if len(data) < 4:
        raise DataError(path, f"truncated: {len(data)} bytes, shorter than the 4-byte IDX magic number", remedy)
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or not 1 <= data[3] <= 4:
        raise DataError(path, f"bad magic number 0x{data[:4].hex()}; an IDX file starts with 00 00, a type "
                        "code (08 for unsigned bytes) and the number of dimensions", remedy)
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(path, f"truncated: {len(data)} bytes, shorter than its {header}-byte header", remedy)
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        fault = "truncated" if len(data) < expected else "too long"
        raise DataError(path, f"{fault}: {len(data)} bytes, but the header's dimensions {dims} need {expected}",
                        remedy)
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


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


# -------------------------------------------------------------------------------------- download
def file_md5(path: str | Path) -> str:
    """Hex MD5 digest of a file's contents (read in chunks)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: str | Path, md5: str, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` and check its MD5; a mismatching file is deleted and refused."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as fh:
            shutil.copyfileobj(response, fh, 1 << 20)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise DataError(dest, f"download from {url} failed ({exc})",
                        "Check the network, or fetch the file by hand into this directory") from None
    actual = file_md5(part)
    if actual != md5:
        part.unlink(missing_ok=True)
        raise DataError(dest, f"checksum mismatch for {dest.name} downloaded from {url}: expected MD5 {md5}, "
                        f"got {actual}; the file was deleted",
                        "Try again later or from another mirror (pass a different base URL)")
    os.replace(part, dest)
    return dest


def extract_tar(archive: str | Path, dest: str | Path) -> None:
    """Extract a tar archive under ``dest``, refusing links, devices and paths that leave ``dest``."""
    archive, dest = Path(archive), Path(dest)
    root = dest.resolve()
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for m in members:
            target = (root / m.name).resolve()
            if os.path.isabs(m.name) or (target != root and root not in target.parents):
                raise DataError(archive, f"unsafe member {m.name!r} would be written outside {dest}",
                                "Delete the archive and download it again from the official site")
            if not (m.isfile() or m.isdir()):
                raise DataError(archive, f"member {m.name!r} is a link or special file; expected files only",
                                "Delete the archive and download it again from the official site")
        for m in members:
            target = root / m.name
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(m)
            assert source is not None
            with source, open(target, "wb") as fh:
                shutil.copyfileobj(source, fh, 1 << 20)


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
class _CifarUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches: builtin containers and numpy arrays, nothing else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only a dict of "
                                         "numpy arrays and lists")
        return super().find_class(module, name)


def read_cifar_batch(path: str | Path, label_key: str, remedy: str = "") -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR pickle batch as ``(images uint8 [N, 3, 32, 32], labels int64 [N])``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing", remedy)
    try:
        batch = _CifarUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(path, f"not a readable CIFAR batch (truncated or damaged: {exc})", remedy) from None
    if not isinstance(batch, dict):
        raise DataError(path, f"holds a {type(batch).__name__}; expected the dict of a CIFAR batch", remedy)
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise DataError(path, f"has keys {sorted(batch)}; expected 'data' and '{label_key}'", remedy)
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(path, f"'data' is {data.dtype} of shape {data.shape}; expected uint8 of shape [N, 3072]",
                        remedy)
    if labels.shape != (data.shape[0],):
        raise DataError(path, f"wrong count: {labels.size} labels for {data.shape[0]} images", remedy)
    return data.reshape(-1, 3, 32, 32), labels


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
}
