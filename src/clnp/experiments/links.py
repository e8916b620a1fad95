"""No write through a symbolic link: clnp refuses a link at any name it writes in a run directory.

A link at one of clnp's names (:mod:`.run_files`: its lock, marker, results, plots, ``checkpoint/``,
``export/``, their files and the temporary names of its atomic writes) is refused with one line, never
written through, replaced or removed, so no file outside the run directory is ever changed.
"""

from __future__ import annotations

import os
from pathlib import Path

from .run_files import FOLDERS, RunDirError, owned


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
        if entry.is_symlink() and (owned(entry.name) or entry.name in FOLDERS):
            found.append(entry)
    for sub in FOLDERS:
        d = path / sub
        if d.is_dir() and not d.is_symlink():
            found += [e for e in sorted(d.iterdir()) if e.is_symlink() and owned(f"{sub}/{e.name}")]
    return found


def refuse_links(path: str | Path) -> None:
    """Refuse (:class:`RunDirError`, naming the first) any link :func:`links` finds in run directory ``path``."""
    found = links(path)
    if found:
        raise link_error(found[0])
