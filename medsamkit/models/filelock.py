"""An exclusive lock shared by processes (flock on POSIX, msvcrt on Windows), on a file removed on release.

Used so that two processes asking for the same model file download it once: the second waits, then
finds the first one's verified file.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable


class FileLock:
    """An exclusive OS lock on ``path`` shared by processes (flock / msvcrt); the file is removed on release.

    on_wait is called once when another process holds the lock. After locking, the path is checked to
    still name the locked file (a releasing holder unlinks it), so two processes never both hold it.
    """

    def __init__(self, path: Path, on_wait: Callable[[], None] | None = None, poll: float = 0.2):
        self.path, self.on_wait, self.poll, self.fd = Path(path), on_wait, poll, None

    def __enter__(self):
        waited = False
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if _try_lock(fd):
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except OSError:
                    same = False
                if same:
                    self.fd = fd
                    return self
                _unlock(fd)
            os.close(fd)
            if not waited and self.on_wait is not None:
                self.on_wait()
            waited = True
            time.sleep(self.poll)

    def __exit__(self, *exc):
        try:
            self.path.unlink()
        except OSError:
            pass
        _unlock(self.fd)
        os.close(self.fd)
        self.fd = None


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd) -> None:
        try:
            os.lseek(fd, 0, 0)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass
else:
    import fcntl

    def _try_lock(fd) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _unlock(fd) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
