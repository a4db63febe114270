"""
The tree's walker: every regular file below a root, when it was last used
(its modification time) and the bytes it takes on disk.  It imports nothing
of the mirror's, so that the child process that runs it as a script (see
L{tailmirror.files._walk.walkInChild}) starts in a fraction of the mirror's
time and memory; it prints a line for each file, tab-separated.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Iterator

__all__ = ["Stopped", "usedBytes", "walkFiles"]


class Stopped(Exception):
    """
    A walk of the tree was given up, for the mirror is stopping.
    """


def usedBytes(stat: os.stat_result) -> int:
    """
    The bytes a file takes on disk: its blocks, where the system counts
    them, else its size.
    """
    blocks = getattr(stat, "st_blocks", None)
    return blocks * 512 if blocks is not None else stat.st_size


def walkFiles(root: str, stop: threading.Event | None = None) -> Iterator[tuple[str, float, int]]:
    """
    Every regular file below C{root}: its path, last use and the bytes it
    takes (L{usedBytes}); given up with L{Stopped} once C{stop} is set.
    """
    stack = [root]
    while stack:
        if stop is not None and stop.is_set():
            raise Stopped()
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        stat = entry.stat(follow_symlinks=False)
                        yield entry.path, stat.st_mtime, usedBytes(stat)
                except OSError:
                    continue


def printWalk(root: str) -> None:
    """
    A line for each file of the tree: its last use, the bytes it takes and
    its path, tab-separated.
    """
    out = sys.stdout
    for path, mtime, used in walkFiles(root):
        if "\n" not in path:  # none of the mirror's own: it writes no control characters
            out.write(f"{mtime!r}\t{used}\t{path}\n")
    out.flush()


if __name__ == "__main__":
    # Background work: when the machine is busy, the mirror's reactor
    # comes first.
    os.nice(10)
    sys.stdout.reconfigure(errors="surrogateescape")  # type: ignore[union-attr]
    printWalk(sys.argv[1])
