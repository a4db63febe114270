"""
One mirror per cache directory: an exclusive lock, held for the life of
the process, on C{<cache-dir>/lock}, which names the holder's PID.
"""

from __future__ import annotations

import fcntl
import os

__all__ = ["CacheLock", "LockHeld"]


class LockHeld(Exception):
    """
    Another process holds the cache directory.
    """

    def __init__(self, directory: str, pid: int | None) -> None:
        super().__init__(directory, pid)
        self.directory = directory
        self.pid = pid


class CacheLock:
    """
    The lock of one cache directory.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, "lock")
        self._fd = -1

    def acquire(self) -> None:
        """
        Take the lock, and write this process's PID in it.

        @raise LockHeld: if another process holds it.
        @raise OSError: if the lock file cannot be made.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise LockHeld(self.directory, int(holder) if holder.isdigit() else None) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        """
        Let the lock go.
        """
        if self._fd >= 0:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1
