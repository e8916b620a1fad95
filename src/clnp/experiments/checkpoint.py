"""Checkpoints that are data only: tensors in safetensors, everything else in JSON.

A checkpoint is a directory holding

* ``tensors-NNN.safetensors``: the learner's tensors (for CLNP the network's ``state_dict``, owner
  vectors included) plus the global random-number generator state, after ``NNN`` finished tasks;
* ``meta.json``: the format version, the name and SHA-256 checksum of that tensor file, and any
  JSON-able metadata the caller passes (config, task list, learner reports, accuracy rows so far).

The two files check each other: ``meta.json`` holds the tensor file's size and SHA-256, and the tensor
file's header holds the SHA-256 of the rest of ``meta.json`` (config, tasks, learner reports,
accuracy rows), so an edit of either file is refused.

Loading parses JSON and the safetensors header only: nothing is unpickled or executed. Writing is
atomic: each file goes to a temporary name in the same directory, is fsync'ed and renamed over its
final name, and the directory is fsync'ed. ``meta.json`` is written last and is the commit point:
until it is replaced it names the previous tensor file, which is deleted only afterwards. A kill
at any moment therefore leaves either the previous checkpoint or the new one, never a mix.

Any problem while loading (missing or truncated file, checksum mismatch, a newer format version,
malformed metadata) raises :class:`CheckpointError`, naming the file and what was wrong.
"""

from __future__ import annotations

import errno
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

from .links import link_error, refuse_link
from .run_files import CHECKPOINT_META, checkpoint_tensor_name

FORMAT_VERSION = 2
"""Bumped whenever the layout changes incompatibly; loaders refuse versions newer than theirs.
Version 2: the tensor file's header holds the SHA-256 of the metadata (version 1 had none)."""
META_HASH_KEY = "clnp_meta_sha256"
"""Key, in the tensor file's safetensors header, of the SHA-256 of ``meta.json``'s content."""
_FILE_KEYS = ("tensor_file", "tensor_bytes", "tensor_sha256")
"""``meta.json`` keys that describe the tensor file (checked against it, so outside the metadata hash)."""
META_NAME = CHECKPOINT_META
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
    """Write ``data`` to ``path`` atomically: temp file in the same directory, fsync, rename, fsync dir.

    Never through a link: a link at ``path`` or at the temporary name is refused (``RunDirError``); the
    temporary file is created anew (a leftover regular file of that name, from a killed process, is removed).
    """
    path = refuse_link(Path(path))
    tmp = refuse_link(path.with_name(f".{path.name}.tmp-{os.getpid()}"))
    if tmp.is_file():
        tmp.unlink()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    except FileExistsError:  # something else appeared there since: a link, or another writer's file
        raise link_error(tmp) if tmp.is_symlink() else FileExistsError(errno.EEXIST, "exists", str(tmp)) from None
    with open(fd, "wb") as fh:
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
    directory = refuse_link(Path(directory))  # a link would lead the writes and deletions below outside
    directory.mkdir(parents=True, exist_ok=True)
    if RNG_KEY in tensors:
        raise ValueError(f"the tensor name {RNG_KEY!r} is reserved for the RNG state")
    payload = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    payload[RNG_KEY] = (torch.get_rng_state() if rng_state is None else rng_state).clone()
    body = json.loads(json.dumps({"format_version": FORMAT_VERSION, "step": step, **meta}))
    data = st_save(payload, metadata={META_HASH_KEY: meta_digest(body)})
    tensor_name = checkpoint_tensor_name(step)
    atomic_write_bytes(directory / tensor_name, data)
    record = {
        "format_version": FORMAT_VERSION,
        "tensor_file": tensor_name,
        "tensor_bytes": len(data),
        "tensor_sha256": hashlib.sha256(data).hexdigest(),
        **body,
    }
    text = json.dumps(record, indent=1) + "\n"
    atomic_write_text(directory / META_NAME, text)
    # Only now is the previous tensor file unreferenced: remove it and any leftover temp files.
    for old in directory.iterdir():
        stale_tensor = old.name.startswith("tensors-") and old.name != tensor_name
        if (stale_tensor or ".tmp-" in old.name) and not old.is_symlink():
            old.unlink(missing_ok=True)
    return directory / META_NAME


def meta_digest(body: dict) -> str:
    """SHA-256 of a checkpoint's metadata (``meta.json`` less the tensor-file keys), canonical JSON."""
    text = json.dumps({k: v for k, v in body.items() if k not in _FILE_KEYS}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _header_metadata(data: bytes, path: Path) -> dict:
    """The ``__metadata__`` of a safetensors file's JSON header (8-byte length, then the header)."""
    try:
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: not a valid safetensors file (unreadable header)") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def read_meta(directory: str | Path) -> dict:
    """The metadata of the checkpoint in ``directory``, checked for format and version."""
    path = Path(directory) / META_NAME
    if Path(directory).exists() and not Path(directory).is_dir():
        raise CheckpointError(f"{directory}: expected the checkpoint directory, found a file")
    if path.exists() and not path.is_file():
        raise CheckpointError(f"{path}: expected the checkpoint's metadata file, found a directory")
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
    stored = _header_metadata(data, path).get(META_HASH_KEY)
    if stored is None and meta["format_version"] >= 2:
        raise CheckpointError(f"{path}: no metadata checksum in the tensor file (expected for format version "
                              f"{meta['format_version']}): the file was replaced or damaged")
    if stored is not None and stored != meta_digest(meta):
        raise CheckpointError(
            f"{directory / META_NAME}: the metadata does not match its SHA-256 checksum (kept in {path.name}): "
            "meta.json was modified or damaged")
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file: {exc}") from None
    rng = tensors.pop(RNG_KEY, None)
    if rng is None or rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape:
        raise CheckpointError(f"{path}: the RNG state {RNG_KEY!r} is missing, not uint8 or of the wrong size "
                              f"(expected {torch.get_rng_state().numel()} bytes)")
    return tensors, meta, rng


def has_checkpoint(directory: str | Path) -> bool:
    """Whether ``directory`` holds checkpoint metadata (it may still fail verification).

    Something in the checkpoint's place that is not one (``checkpoint`` a file, ``meta.json`` a
    directory) counts as a checkpoint here, so that loading refuses it instead of starting afresh.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        return True
    return (directory / META_NAME).exists()
