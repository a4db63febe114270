"""
Durable disk operations: what the mirror keeps survives a crash of the
machine, not only of the process.
"""

from __future__ import annotations

import os

from typing import Mapping

__all__ = ["defaultCacheDir", "putInPlace", "syncDirectory", "writeAll"]


def defaultCacheDir(environ: Mapping[str, str] | None = None) -> str:
    """
    Where a mirror keeps its cache when not told: the user's cache
    directory (C{$XDG_CACHE_HOME/tailmirror}, else
    C{~/.cache/tailmirror}), the same from wherever it is started.
    """
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):
        base = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tailmirror")


def writeAll(fd: int, data: bytes) -> None:
    """
    Write all of C{data}, however many writes it takes.
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def syncDirectory(path: str) -> None:
    """
    Make the names in a directory durable: a rename into it, say.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def putInPlace(fd: int, source: str, target: str) -> None:
    """
    Move a finished file, open as C{fd}, to C{target}, durably: its bytes
    reach the disk before its new name does, so a crash leaves either no
    file there or the whole file.  Disk work: run it off the reactor.
    """
    os.fsync(fd)
    directory = os.path.dirname(target)
    os.makedirs(directory, exist_ok=True)
    os.rename(source, target)
    syncDirectory(directory)
