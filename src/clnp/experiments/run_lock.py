"""The lock of a run directory while a run writes it: an exclusive ``flock`` on ``OUT/.clnp.lock``.

The lock file holds the process id and host, for the message a second writer gets; the lock itself is
an ``flock`` the kernel releases when the process dies, so a lock file left by a killed run is not
locked any more and is taken over.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from pathlib import Path

from .links import link_error
from .run_files import LOCK, RunDirError


def lock_holder(path: Path) -> str | None:
    """Who holds the lock of run directory ``path`` (``"pid N on HOST"``), or None when nobody does.

    A lock file whose ``flock`` is free was left by a run that died (a kill): it is stale, not held.
    """
    lock = path / LOCK
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
            try:
                info = json.loads(lock.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError):
                info = None
            if isinstance(info, dict):
                return f"pid {info.get('pid')} on {info.get('host')}"
            return "a process holds its lock"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def check_lock(path: Path) -> None:
    """Refuse (``RunDirError``) when another live process holds the lock of run directory ``path``."""
    holder = lock_holder(Path(path))
    if holder is not None:
        raise RunDirError(f"{path} is being written by another clnp run ({holder}); wait for it to end, "
                          "or choose another --out")


class RunLock:
    """An exclusive lock on a run directory while a run writes it (``with RunLock(out): ...``).

    The lock file is removed when the lock is released.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        lock = self.path / LOCK
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
            (self.path / LOCK).unlink(missing_ok=True)
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
