"""Run directories that never lose a user's file: which files in one are clnp's, and whether a run may go there.

A run directory (``clnp run --out OUT``) is recognised by its marker file ``OUT/.clnp-run`` (or, for
directories written before the marker existed, by a ``results.json`` or checkpoint that clnp wrote).
clnp deletes or replaces only the files whose names it writes itself (:func:`.run_files.owned`), and
only inside a directory it recognises as a run:

* a fresh run into a directory that holds files but no clnp run is refused (a ``config.yaml`` there
  may be the user's own);
* a directory holding a finished or an unfinished run, or files clnp did not write, is refused
  unless ``overwrite``; with it, exactly clnp's own files are removed and every other file is kept;
* a symbolic link at a name clnp writes is refused with one line, never written through, replaced or
  removed (:mod:`.links`), so no file outside the directory is ever changed;
* while a run writes the directory it holds ``OUT/.clnp.lock`` (:mod:`.run_lock`); a second writer is refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .links import link_error, links, refuse_link, refuse_links
from .results import read_object
from .run_files import CHECKPOINT_DIR, CHECKPOINT_META, FOLDERS, LOCK, MARKER, RESULTS, RunDirError, owned
from .run_lock import check_lock

__all__ = ["DirState", "RunDirError", "check_fresh", "check_out_path", "inspect", "refuse_fresh_run", "refuse_link",
           "refuse_links", "remove_own", "write_marker"]


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


def _object_or_none(path: Path) -> dict | None:
    try:
        return read_object(path) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _looks_like_run(path: Path) -> bool:
    """A directory clnp wrote: its marker, or (older runs) clnp's results or checkpoint metadata."""
    if (path / MARKER).is_file():
        return True
    results = _object_or_none(path / RESULTS)
    if results is not None and "accuracy_matrix" in results and "config" in results:
        return True
    meta = _object_or_none(path / CHECKPOINT_DIR / CHECKPOINT_META)
    return meta is not None and "format_version" in meta and "tensor_file" in meta


def _own_file(entry: Path, relative: str) -> bool:
    return entry.is_file() and not entry.is_symlink() and owned(relative)


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
        if entry.name == LOCK and _own_file(entry, LOCK):
            state.own.append(entry)
        elif not state.is_run:
            state.foreign.append(entry)
        elif entry.name in FOLDERS:
            if not entry.is_dir() or entry.is_symlink():
                state.foreign.append(entry)
                continue
            for sub in sorted(entry.iterdir()):
                (state.own if _own_file(sub, f"{entry.name}/{sub.name}") else state.foreign).append(sub)
        else:
            (state.own if _own_file(entry, entry.name) else state.foreign).append(entry)
    if state.is_run:
        state.finished = (path / RESULTS).is_file()
        state.unfinished = not state.finished and (path / CHECKPOINT_DIR / CHECKPOINT_META).exists()
    return state


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


def refuse_fresh_run(state: DirState, overwrite: bool) -> None:
    """Refuse (``RunDirError``) a fresh run into what :func:`inspect` found, unless it may go there."""
    path = state.path
    if not state.exists or not ([p for p in state.own if p.name != LOCK] or state.foreign):
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
        raise RunDirError(f"{path} holds a finished run ({RESULTS}): pass --overwrite to replace it (removes "
                          "only the files clnp wrote there), or choose another --out")
    if state.unfinished:
        raise RunDirError(f"{path} holds an unfinished run (a checkpoint, no {RESULTS}): continue it with "
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
    refuse_fresh_run(state, overwrite)
    return state


def remove_own(state: DirState) -> list[Path]:
    """Delete exactly clnp's own files found by :func:`inspect` (never the lock, nor any other file);
    remove ``checkpoint/`` and ``export/`` when that leaves them empty. Returns what was removed."""
    removed = []
    own = [p for p in state.own if p.name != LOCK]
    meta = [p for p in own if p.name == CHECKPOINT_META and p.parent.name == CHECKPOINT_DIR]
    for p in meta + [p for p in own if p not in meta]:  # a checkpoint's commit point first
        p.unlink(missing_ok=True)
        removed.append(p)
    for sub in FOLDERS:
        d = state.path / sub
        if d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
            d.rmdir()
    return removed


def write_marker(path: Path) -> None:
    """Mark ``path`` as a clnp run directory."""
    from .checkpoint import atomic_write_text

    atomic_write_text(path / MARKER, json.dumps({"clnp_run_directory": 1}) + "\n")
