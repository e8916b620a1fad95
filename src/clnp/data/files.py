"""Data files read and fetched with checks: IDX and CIFAR pickle batches parsed strictly, JPEG images decoded
with their size checked, downloads checked against their published MD5, archives extracted without links or
paths that leave the target. Anything missing or damaged is one :class:`DataError` naming the file, the fault
and the remedy."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import urllib.request
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """A data file is missing or damaged. The message names the file, the fault and the remedy."""

    def __init__(self, path: str | Path, problem: str, remedy: str) -> None:
        self.path = str(path)
        self.problem = problem
        self.remedy = remedy
        super().__init__(f"{self.path}: {problem}. {remedy}")


# ------------------------------------------------------------------------------------------- IDX
_IDX_DTYPES: dict[int, np.dtype] = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
                                     0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


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


# ------------------------------------------------------------------------------------- images
def read_rgb_image(path: str | Path, side: int, remedy: str = "") -> np.ndarray:
    """One image file (JPEG, PNG: what Pillow reads) as uint8 ``[3, side, side]``; a grayscale image (Tiny
    ImageNet has some) is repeated over the three channels. Any other size is refused, not resized."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(path, "missing", remedy) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(path, f"not a readable image (truncated or damaged: {exc})", remedy) from None
    if pixels.shape != (side, side, 3):
        raise DataError(path, f"an image of {pixels.shape[1]}x{pixels.shape[0]} pixels; expected {side}x{side}",
                        remedy)
    return pixels.transpose(2, 0, 1)


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
