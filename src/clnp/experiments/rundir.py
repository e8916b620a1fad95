"""Run directories that never lose a user's file: what clnp owns in one, the lock while a run writes it.

A run directory (``clnp run --out OUT``) is recognised by its marker file ``OUT/.clnp-run`` (or, for
directories written before the marker existed, by a ``results.json`` or checkpoint that clnp wrote).
clnp deletes or replaces only the files whose names it writes itself (:data:`OWN_TOP`,
:data:`OWN_CHECKPOINT`, :data:`OWN_EXPORT`), and only inside a directory it recognises as a run:

* a fresh run into a directory that holds files but no clnp run is refused (a ``config.yaml`` there
  may be the user's own);
* a directory holding a finished or an unfinished run, or files clnp did not write, is refused
  unless ``overwrite``; with it, exactly clnp's own files are removed and every other file is kept;
* a symbolic link at a name clnp writes (its lock, marker, results, plots, ``checkpoint/``, ``export/``, their
  files and the temporary names of its atomic writes) is refused with one line, never written through,
  replaced or removed (:func:`links`), so no file outside the directory is ever changed;
* while a run writes the directory it holds ``OUT/.clnp.lock`` (an exclusive ``flock``, with the
  process id in it for the message). A second writer is refused; a lock file left by a killed run
  is not locked any more (the kernel drops the lock with the process), and is taken over.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

MARKER_NAME = ".clnp-run"
LOCK_NAME = ".clnp.lock"
CHECKPOINT_DIR = "checkpoint"
EXPORT_DIR = "export"
OWN_TOP = frozenset({"config.yaml", "log.csv", "results.json", MARKER_NAME, LOCK_NAME, "accuracy_matrix.png",
                     "task_accuracy.png", "capacity.png", "training.png", "capacity_forecast.png"})
"""File names clnp writes at the top of a run directory (``clnp run``, ``clnp report``)."""
_TMP = re.compile(r"^\..+\.tmp-\d+$")
"""Temporary files of an atomic write (``.results.json.tmp-PID``)."""
OWN_CHECKPOINT = re.compile(r"^(meta\.json|tensors-\d+\.safetensors)$")
OWN_EXPORT = re.compile(r"^task-\d+\.(pt|onnx|onnx\.data|safetensors|json)$")


class RunDirError(ValueError):
    """A run directory clnp must not write: it holds another run, files clnp did not write, or is locked."""


def link_error(link: Path) -> RunDirError:
    """The one-line refusal of a symbolic link where clnp writes a file or folder of its own."""
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    return RunDirError(f"{link} is a symbolic link (to {target}): clnp never writes through a link it did not make; "
                       "move the link away (what it points to is left as it is)")


def refuse_link(path: Path) -> Path:
    """``path``, unless it is a symbolic link (:func:`link_error`); it need not exist."""
    if Path(path).is_symlink():
        raise link_error(Path(path))
    return Path(path)


def links(path: str | Path) -> list[Path]:
    """The symbolic links in run directory ``path`` at names clnp writes: its files at the top, ``checkpoint/``
    and ``export/``, the files clnp writes in them, and the temporary names of its atomic writes (read-only)."""
    path = Path(path)
    found: list[Path] = []
    if not path.is_dir():
        return found
    for entry in sorted(path.iterdir()):
        if entry.is_symlink() and (entry.name in OWN_TOP or entry.name in (CHECKPOINT_DIR, EXPORT_DIR)
                                   or _TMP.match(entry.name)):
            found.append(entry)
    for sub, pattern in ((CHECKPOINT_DIR, OWN_CHECKPOINT), (EXPORT_DIR, OWN_EXPORT)):
        d = path / sub
        if d.is_dir() and not d.is_symlink():
            found += [e for e in sorted(d.iterdir())
                      if e.is_symlink() and (pattern.match(e.name) or _TMP.match(e.name))]
    return found


def refuse_links(path: str | Path) -> None:
    """Refuse (:class:`RunDirError`, naming the first) any link :func:`links` finds in run directory ``path``."""
    found = links(path)
    if found:
        raise link_error(found[0])


@dataclass
class DirState:
    """What a directory holds, seen as a run directory."""

    path: Path
    exists: bool = False
    is_run: bool = False
    finished: bool = False
    unfinished: bool = False
    own: list[Path] = field(default_factory=list)
    foreign: list[Path] = field(default_factory=list)
    links: list[Path] = field(default_factory=list)

    def describe_foreign(self, limit: int = 4) -> str:
        names = [str(p.relative_to(self.path)) + ("/" if p.is_dir() else "") for p in self.foreign[:limit]]
        more = f" and {len(self.foreign) - limit} more" if len(self.foreign) > limit else ""
        return ", ".join(names) + more


def _json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _looks_like_run(path: Path) -> bool:
    """A directory clnp wrote: its marker, or (older runs) clnp's results or checkpoint metadata."""
    if (path / MARKER_NAME).is_file():
        return True
    results = _json(path / "results.json") if (path / "results.json").is_file() else None
    if isinstance(results, dict) and "accuracy_matrix" in results and "config" in results:
        return True
    meta_path = path / CHECKPOINT_DIR / "meta.json"
    meta = _json(meta_path) if meta_path.is_file() else None
    return isinstance(meta, dict) and "format_version" in meta and "tensor_file" in meta


def _sort_sub(directory: Path, pattern: re.Pattern, state: DirState) -> None:
    if not directory.is_dir() or directory.is_symlink():
        state.foreign.append(directory)
        return
    for entry in sorted(directory.iterdir()):
        ok = entry.is_file() and not entry.is_symlink() and (pattern.match(entry.name) or _TMP.match(entry.name))
        (state.own if ok else state.foreign).append(entry)


def inspect(path: str | Path) -> DirState:
    """Sort the entries of ``path`` into clnp's own files and the others (read-only)."""
    path = Path(path)
    state = DirState(path=path)
    if not path.exists() and not path.is_symlink():
        return state
    if not path.is_dir():
        raise RunDirError(f"{path} is a file, not a directory: choose a directory for --out")
    state.exists = True
    state.is_run = _looks_like_run(path)
    state.links = links(path)
    for entry in sorted(path.iterdir()):
        if entry.name == LOCK_NAME and entry.is_file() and not entry.is_symlink():
            state.own.append(entry)
        elif not state.is_run:
            state.foreign.append(entry)
        elif entry.name == CHECKPOINT_DIR:
            _sort_sub(entry, OWN_CHECKPOINT, state)
        elif entry.name == EXPORT_DIR:
            _sort_sub(entry, OWN_EXPORT, state)
        elif entry.is_file() and not entry.is_symlink() and (entry.name in OWN_TOP or _TMP.match(entry.name)):
            state.own.append(entry)
        else:
            state.foreign.append(entry)
    if state.is_run:
        state.finished = (path / "results.json").is_file()
        state.unfinished = not state.finished and (path / CHECKPOINT_DIR / "meta.json").exists()
    return state


def check_lock(path: Path) -> None:
    """Refuse (``RunDirError``) when another live process holds the lock of run directory ``path``."""
    holder = lock_holder(Path(path))
    if holder is not None:
        raise RunDirError(f"{path} is being written by another clnp run ({holder}); wait for it to end, "
                          "or choose another --out")


def check_out_path(path: Path) -> None:
    """Refuse an ``--out`` that is a file or lies below one."""
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path} is a file, not a directory: choose a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunDirError(f"--out {path}: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise RunDirError(f"--out {path}: {parent} is not writable (permission denied)")
            break


def judge(state: DirState, overwrite: bool) -> None:
    """Refuse (``RunDirError``) a fresh run into what :func:`inspect` found, unless it may go there."""
    path = state.path
    if not state.exists or not ([p for p in state.own if p.name != LOCK_NAME] or state.foreign):
        return
    if state.links:
        raise link_error(state.links[0])
    if not state.is_run:
        raise RunDirError(
            f"{path} is not empty and holds no clnp run ({state.describe_foreign()}); clnp writes only into a new "
            "or empty directory or one of its own runs: choose another --out")
    if overwrite:
        return
    if state.finished:
        raise RunDirError(f"{path} holds a finished run (results.json): pass --overwrite to replace it (removes "
                          "only the files clnp wrote there), or choose another --out")
    if state.unfinished:
        raise RunDirError(f"{path} holds an unfinished run (a checkpoint, no results.json): continue it with "
                          f"'clnp run --resume {path}', start it again with --overwrite, or choose another --out")
    if state.foreign:
        raise RunDirError(f"{path} holds files clnp did not write ({state.describe_foreign()}): move them away, "
                          "pass --overwrite to write beside them (they are kept), or choose another --out")


def check_fresh(path: str | Path, overwrite: bool = False) -> DirState:
    """Refuse (``RunDirError``) to start a fresh run in ``path`` unless it is new or empty, or
    ``overwrite`` is given and it holds a clnp run. Reads only; returns what it found."""
    path = Path(path)
    check_out_path(path)
    check_lock(path)
    state = inspect(path)
    judge(state, overwrite)
    return state


def remove_own(state: DirState) -> list[Path]:
    """Delete exactly clnp's own files found by :func:`inspect` (never the lock, nor any other file);
    remove ``checkpoint/`` and ``export/`` when that leaves them empty. Returns what was removed."""
    removed = []
    own = [p for p in state.own if p.name != LOCK_NAME]
    meta = [p for p in own if p.name == "meta.json" and p.parent.name == CHECKPOINT_DIR]
    for p in meta + [p for p in own if p not in meta]:  # a checkpoint's commit point first
        p.unlink(missing_ok=True)
        removed.append(p)
    for sub in (CHECKPOINT_DIR, EXPORT_DIR):
        d = state.path / sub
        if d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
            d.rmdir()
    return removed


def write_marker(path: Path) -> None:
    from .checkpoint import atomic_write_text

    atomic_write_text(path / MARKER_NAME, json.dumps({"clnp_run_directory": 1}) + "\n")


# ------------------------------------------------------------------------------------------ the lock
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_holder(path: Path) -> str | None:
    """Who holds the lock of run directory ``path`` (``"pid N on HOST"``), or None when nobody does.

    A lock file whose ``flock`` is free was left by a run that died (a kill): it is stale, not held.
    """
    lock = path / LOCK_NAME
    if not lock.is_file() or lock.is_symlink():
        return None
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            info = _json(lock)
            if isinstance(info, dict):
                return f"pid {info.get('pid')} on {info.get('host')}"
            return "a process holds its lock"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class RunLock:
    """An exclusive lock on a run directory while a run writes it (``with RunLock(out): ...``).

    The lock file holds the process id and host; the lock itself is an ``flock`` the kernel releases
    when the process dies, so a killed run never leaves a directory locked. The lock file is removed
    when the lock is released.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        lock = self.path / LOCK_NAME
        for _ in range(10):
            try:  # never through a link: it would truncate the file it points to
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise link_error(lock) from None
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    holder = lock_holder(self.path) or "another process"
                    raise RunDirError(f"{self.path} is being written by another clnp run ({holder}); wait for it "
                                      "to end, or choose another --out") from None
                raise
            # The file we locked must still be the one at the path (a releasing run may have unlinked it).
            try:
                same = os.fstat(fd).st_ino == os.stat(lock).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            info = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, info.encode(), 0)
            self._fd = fd
            return
        raise RunDirError(f"{self.path}: could not take the run directory's lock {lock}")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            (self.path / LOCK_NAME).unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def stale_lock_pid(path: Path) -> int | None:
    """The pid recorded in a lock file nobody holds (a run that was killed), or None."""
    lock = Path(path) / LOCK_NAME
    if not lock.is_file() or lock.is_symlink() or lock_holder(Path(path)) is not None:
        return None
    info = _json(lock)
    pid = info.get("pid") if isinstance(info, dict) else None
    return pid if isinstance(pid, int) and not _pid_alive(pid) else None
