"""Checkpoints that are data only: tensors in safetensors, everything else in JSON.

A checkpoint is a directory holding

* ``tensors-NNN.safetensors``: the learner's tensors (for CLNP the network's ``state_dict``, owner
  vectors included) plus the global random-number generator state, after ``NNN`` finished tasks;
* ``meta.json``: the format version, the name and SHA-256 checksum of that tensor file, and any
  JSON-able metadata the caller passes (config, task list, learner reports, accuracy rows so far).

Loading parses JSON and the safetensors header only: nothing is unpickled or executed. Writing is
atomic: each file goes to a temporary name in the same directory, is fsync'ed and renamed over its
final name, and the directory is fsync'ed. ``meta.json`` is written last and is the commit point:
until it is replaced it names the previous tensor file, which is deleted only afterwards. A kill
at any moment therefore leaves either the previous checkpoint or the new one, never a mix.

Any problem while loading (missing or truncated file, checksum mismatch, a newer format version,
malformed metadata) raises :class:`CheckpointError`, naming the file and what was wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

FORMAT_VERSION = 1
"""Bumped whenever the layout changes incompatibly; loaders refuse versions newer than theirs."""
META_NAME = "meta.json"
RNG_KEY = "__rng_state__"
"""Key of the global CPU RNG state (a uint8 tensor) in the tensor file."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted or read: the message names the file and the problem."""


@runtime_checkable
class Resumable(Protocol):
    """A learner whose state can be checkpointed (``clnp run --resume`` needs it).

    ``learner_state()`` returns the tensors and JSON-able metadata of everything learned so far;
    ``load_learner_state(tensors, meta)`` restores them into a learner freshly built with the same
    model spec and config, so that it continues exactly as the original would have.
    """

    def learner_state(self) -> tuple[dict[str, Tensor], dict]: ...

    def load_learner_state(self, tensors: Mapping[str, Tensor], meta: dict) -> None: ...


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same directory, fsync, rename, fsync dir."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(directory: str | Path, tensors: Mapping[str, Tensor], meta: dict, step: int,
                    rng_state: Tensor | None = None) -> Path:
    """Write a checkpoint of ``tensors`` and JSON-able ``meta`` into ``directory`` atomically.

    ``step`` (e.g. the number of finished tasks) names the tensor file. ``rng_state`` (default:
    the current global CPU RNG state) is stored alongside, for :func:`restore_rng`. Returns the
    path of ``meta.json``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if RNG_KEY in tensors:
        raise ValueError(f"the tensor name {RNG_KEY!r} is reserved for the RNG state")
    payload = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    payload[RNG_KEY] = (torch.get_rng_state() if rng_state is None else rng_state).clone()
    data = st_save(payload)
    tensor_name = f"tensors-{step:04d}.safetensors"
    atomic_write_bytes(directory / tensor_name, data)
    record = {
        "format_version": FORMAT_VERSION,
        "tensor_file": tensor_name,
        "tensor_bytes": len(data),
        "tensor_sha256": hashlib.sha256(data).hexdigest(),
        "step": step,
        **meta,
    }
    text = json.dumps(record, indent=1) + "\n"
    atomic_write_text(directory / META_NAME, text)
    # Only now is the previous tensor file unreferenced: remove it and any leftover temp files.
    for old in directory.iterdir():
        stale_tensor = old.name.startswith("tensors-") and old.name != tensor_name
        if stale_tensor or ".tmp-" in old.name:
            old.unlink(missing_ok=True)
    return directory / META_NAME


def read_meta(directory: str | Path) -> dict:
    """The metadata of the checkpoint in ``directory``, checked for format and version."""
    path = Path(directory) / META_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint metadata (file missing)")
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON (truncated or damaged): {exc}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: missing or malformed 'format_version' (expected an integer)")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is newer than this clnp reads "
            f"(up to {FORMAT_VERSION}); upgrade clnp to load it")
    for key, kind in (("tensor_file", str), ("tensor_bytes", int), ("tensor_sha256", str)):
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(f"{path}: missing or malformed {key!r} (expected {kind.__name__})")
    name = meta["tensor_file"]
    if "/" in name or "\\" in name or name.startswith("."):
        raise CheckpointError(f"{path}: tensor_file {name!r} must be a plain file name inside the checkpoint")
    return meta


def load_checkpoint(directory: str | Path) -> tuple[dict[str, Tensor], dict, Tensor]:
    """Read the checkpoint in ``directory``: ``(tensors, meta, rng_state)``, all verified.

    Raises :class:`CheckpointError` for a missing, truncated, tampered or newer-version checkpoint.
    """
    directory = Path(directory)
    meta = read_meta(directory)
    path = directory / meta["tensor_file"]
    if not path.is_file():
        raise CheckpointError(f"{path}: tensor file missing (named by {directory / META_NAME})")
    data = path.read_bytes()
    if len(data) != meta["tensor_bytes"]:
        raise CheckpointError(
            f"{path}: {len(data)} bytes, expected {meta['tensor_bytes']} (truncated or overwritten)")
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["tensor_sha256"]:
        raise CheckpointError(
            f"{path}: SHA-256 checksum mismatch (file {digest[:16]}..., expected {meta['tensor_sha256'][:16]}...): "
            "the file was modified or damaged")
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file: {exc}") from None
    rng = tensors.pop(RNG_KEY, None)
    if rng is None or rng.dtype != torch.uint8:
        raise CheckpointError(f"{path}: the RNG state {RNG_KEY!r} is missing or not uint8")
    return tensors, meta, rng


def has_checkpoint(directory: str | Path) -> bool:
    """Whether ``directory`` holds checkpoint metadata (it may still fail verification)."""
    return (Path(directory) / META_NAME).is_file()
