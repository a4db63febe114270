"""
Walks of the cache's tree, for the disk budget: its count at start
(L{tailmirror.files._budget.inventory}) and eviction (L{sweep}), each in a thread, reading the tree
in a child process (L{walkInChild}, which runs L{tailmirror.files._walker})
so that they do not hold the reactor's interpreter lock.

A file's charge is the blocks it takes on disk, and for a distribution (not
a C{.metadata} file) one block more for the directory of its shard.
"""

from __future__ import annotations

import heapq
import os
import subprocess
import sys
import threading
import time
from typing import Callable, Iterator

from twisted.logger import Logger

from ..base import METADATA, PROVENANCE
from . import _walker
from ._walker import Stopped, walkFiles

__all__ = ["DIRECTORY", "Evicted", "Stopped", "Walk", "charge", "sweep", "walkHere", "walkInChild"]

log = Logger()

#: The walker the child process runs: a script of its own, for it imports
#: nothing of the mirror's and starts in a fraction of the time and memory.
WALKER = _walker.__file__

#: What a shard directory takes, charged to the distribution in it.
DIRECTORY = 4096

#: Files of the boundary hour that one eviction holds in memory at most,
#: the oldest; if a busier hour must go further, eviction goes again.
CANDIDATES = 50_000

#: Files removed in a row before an eviction pauses, and for how long: a
#: burst of removals holds up the filesystem's journal, and with it the
#: reactor's own small writes (a log line, a file's record of use).
REMOVALS_IN_A_ROW = 64
PAUSE = 0.02


def charge(used: int, path: str) -> int:
    """
    What a file of the tree costs the budget, by the bytes it takes on
    disk (see L{usedBytes}) and its path.
    """
    return used if path.endswith((METADATA, PROVENANCE)) else used + DIRECTORY


#: A walk of the tree: every regular file below a root, as its path, last
#: use and charge; given up with L{Stopped} once C{stop} is set.
Walk = Callable[[str, "threading.Event | None"], Iterator[tuple[str, float, int]]]


def walkHere(root: str, stop: threading.Event | None = None) -> Iterator[tuple[str, float, int]]:
    """
    Walk the tree in this process (see L{Walk}).
    """
    for path, mtime, used in walkFiles(root, stop):
        yield path, mtime, charge(used, path)


def walkInChild(root: str, stop: threading.Event | None = None) -> Iterator[tuple[str, float, int]]:
    """
    Walk the tree in a child process (see L{Walk}), which reads the
    directories and stats the files under its own interpreter lock, not
    the reactor's (the walk of a big tree is mostly that work), and at a
    lower priority than the mirror.  The child is killed once C{stop} is
    set.  A child that cannot run at all gives
    way to a walk in this process; one that fails midway fails the walk.
    """
    try:
        child = subprocess.Popen(
            [sys.executable, "-I", WALKER, root],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="surrogateescape",
        )
    except OSError as e:
        log.warn("cannot walk the tree in a child process ({reason}); walking it here", reason=str(e))
        yield from walkHere(root, stop)
        return
    assert child.stdout is not None
    count = 0
    try:
        for count, line in enumerate(child.stdout, 1):
            if count % 1024 == 0 and stop is not None and stop.is_set():
                raise Stopped()
            mtime, used, path = line.rstrip("\n").split("\t", 2)
            yield path, float(mtime), charge(int(used), path)
        if stop is not None and stop.is_set():
            raise Stopped()
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
        status = child.wait()
    if status != 0 and count == 0:
        log.warn("the tree's walker exited with status {status}; walking the tree here", status=status)
        yield from walkHere(root, stop)
    elif status != 0:
        raise OSError(f"the tree's walker failed midway, with status {status}")


#: A file an eviction removed (or may remove): when it was last used, its
#: charge and path, which orders such files by last use.  A plain tuple of
#: plain values, which the garbage collector stops tracking: an eviction of
#: a big tree holds hundreds of thousands, and each full collection would
#: otherwise walk them all while holding the reactor's interpreter lock.
Evicted = tuple[float, int, str]


class _Remover:
    """
    Removes files, pausing after every L{REMOVALS_IN_A_ROW} of them.
    """

    def __init__(self) -> None:
        self.removed: list[Evicted] = []
        self.freed = 0

    def __call__(self, victim: Evicted) -> None:
        if _remove(victim):
            self.removed.append(victim)
            self.freed += victim[1]
            if len(self.removed) % REMOVALS_IN_A_ROW == 0:
                time.sleep(PAUSE)


def _remove(victim: Evicted) -> bool:
    """
    Remove a file unless it was used since it was looked at; and its shard
    directory, if that is empty now.
    """
    mtime, _, path = victim
    try:
        if os.stat(path).st_mtime > mtime:
            return False
        os.unlink(path)
    except OSError:
        return False
    try:
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass
    return True


def sweep(
    root: str,
    before: float,
    until: float,
    need: int,
    inUse: set[str],
    stop: threading.Event | None = None,
    walk: Walk = walkHere,
) -> list[Evicted]:
    """
    Remove the least recently used files until C{need} bytes are freed:
    every file last used before C{before}, then those used before C{until}
    oldest first, as far as needed.  Files being sent (C{inUse}) go last,
    and only if the rest is not enough.  Disk work: run it in a thread.

    @return: what was removed.
    """
    remove = _Remover()
    boundary: list[Evicted] = []
    busy: list[Evicted] = []
    try:
        for path, mtime, size in walk(root, stop):
            if mtime >= until:
                continue
            victim = (mtime, size, path)
            if path in inUse:
                busy.append(victim)
            elif mtime < before:
                remove(victim)
            else:
                boundary.append(victim)
                if len(boundary) > 2 * CANDIDATES:
                    boundary = heapq.nsmallest(CANDIDATES, boundary)
    except Stopped:
        return remove.removed
    for victims in (sorted(boundary), sorted(busy)):
        for victim in victims:
            if remove.freed >= need or (stop is not None and stop.is_set()):
                return remove.removed
            remove(victim)
    return remove.removed
