"""
The cache's disk budget: what the tree holds, by when each file was last
used, and eviction of the least recently used files when the cache passes
C{--max-size} or the filesystem's free space falls under C{--min-free}.

A file's last use is the mirror's own record, kept in the file's
modification time: the mirror sets it when it keeps the file, and again
when it serves the file if the time recorded is older than C{touchEvery}
seconds (a minute by default), so last uses are known to within that, and
survive restarts, backups and copies that keep modification times.  The
filesystem's access time plays no part.

In memory there is no record per file, only the bytes and files by the hour
of their last use (L{Histogram}), built at start by a walk of the tree in
the background, while the mirror already answers.  Eviction walks the tree
again: it removes every file older than the hour in which enough bytes have
been counted, and of that hour's files the oldest first, exactly.  The
walks are L{tailmirror.files._walk}'s.
"""

from __future__ import annotations

import os
from collections import Counter
import threading
from dataclasses import dataclass, field
from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..base import RunInThread, Signal, StoreError
from ._walk import DIRECTORY, Evicted, Stopped, Walk, sweep, walkHere

__all__ = ["Budget", "Histogram", "Limits", "diskSpace", "formatSize", "inventory"]

log = Logger()

#: The width of a histogram bucket, in seconds.
BUCKET = 3600.0

#: Evicted files accounted for and told of in one turn of the reactor.
BATCH = 1000

#: Seconds between checks of the limits when nothing else asks for one
#: (other programs may fill the filesystem).
CHECK_EVERY = 30.0



def formatSize(n: float) -> str:
    """
    A size for people: C{512 B}, C{1.5 MiB}.
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def expectedCharge(size: int) -> int:
    """
    What a distribution of C{size} bytes will cost, before it is written.
    """
    return -(-size // 4096) * 4096 + DIRECTORY


def diskSpace(path: str) -> tuple[int, int]:
    """
    The size of the filesystem holding C{path}, and what of it is free to
    this process, in bytes.
    """
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


@dataclass
class Limits:
    """
    The most the cache may hold, and the free space it leaves.

    @ivar maxSize: bytes, or L{None} for no limit.
    @ivar minFree: bytes (an L{int}), or a share of the filesystem (a
        L{float} below 1).
    """

    maxSize: int | None
    minFree: int | float

    def minFreeBytes(self, total: int) -> int:
        """
        The free space to keep on a filesystem of C{total} bytes.
        """
        if isinstance(self.minFree, float):
            return int(total * self.minFree)
        return self.minFree

    def describe(self) -> str:
        """
        The limits, as the first log line names them.
        """
        maxSize = "none" if self.maxSize is None else formatSize(self.maxSize)
        if isinstance(self.minFree, float):
            minFree = f"{self.minFree * 100:g}%"
        else:
            minFree = formatSize(self.minFree)
        return f"max size {maxSize}, min free {minFree}"


def headroom(limit: int) -> int:
    """
    How far under a limit an eviction goes, so that it does not run again
    at the next file.
    """
    return limit // 20


@dataclass
class Histogram:
    """
    The tree's bytes and files by the hour of their last use.
    """

    buckets: dict[int, list[int]] = field(default_factory=dict)
    bytes: int = 0
    files: int = 0

    def add(self, mtime: float, size: int) -> None:
        bucket = self.buckets.setdefault(int(mtime // BUCKET), [0, 0])
        bucket[0] += size
        bucket[1] += 1
        self.bytes += size
        self.files += 1

    def remove(self, mtime: float, size: int) -> None:
        key = int(mtime // BUCKET)
        bucket = self.buckets.get(key)
        if bucket is not None:
            bucket[0] -= size
            bucket[1] -= 1
            if bucket[1] <= 0:
                del self.buckets[key]
        self.bytes = max(0, self.bytes - size)
        self.files = max(0, self.files - 1)

    def merge(self, other: "Histogram") -> None:
        for key, (size, count) in other.buckets.items():
            bucket = self.buckets.setdefault(key, [0, 0])
            bucket[0] += size
            bucket[1] += count
        self.bytes += other.bytes
        self.files += other.files

    def boundary(self, need: int) -> tuple[float, float]:
        """
        The hour by the end of which the oldest files add up to C{need}
        bytes: its start and end.
        """
        total = 0
        for key in sorted(self.buckets):
            total += self.buckets[key][0]
            if total >= need:
                return key * BUCKET, (key + 1) * BUCKET
        return float("inf"), float("inf")


def inventory(
    root: str, skip: set[str], stop: threading.Event | None = None, walk: Walk = walkHere
) -> Histogram:
    """
    Count the tree, but for the paths in C{skip}.  Disk work: run it in a
    thread.
    """
    histogram = Histogram()
    for path, mtime, size in walk(root, stop):
        if path not in skip:
            histogram.add(mtime, size)
    return histogram


class Budget:
    """
    What the tree below C{root} holds against the limits, and its eviction.

    @ivar histogram: the tree's files by last use; until the inventory at
        start is done, only those kept since.
    @ivar reserved: bytes promised to downloads under way.
    """

    def __init__(
        self,
        root: str,
        limits: Limits,
        clock: IReactorTime,
        runInThread: RunInThread,
        otherBytes: Callable[[], int] = lambda: 0,
        space: Callable[[str], tuple[int, int]] = diskSpace,
        onEvicted: Callable[[Evicted], None] = lambda victim: None,
        walk: Walk = walkHere,
    ) -> None:
        self.root = root
        self._walk = walk
        self.limits = limits
        self._clock = clock
        self._run = runInThread
        self._otherBytes = otherBytes
        self._space = space
        self._onEvicted = onEvicted
        self.histogram = Histogram()
        self.ready = False
        #: Fires once the inventory at start is done (or given up).
        self.counted: Signal[None] = Signal()
        self.reserved = 0
        #: Paths kept while the inventory runs: it does not count them.
        self._keptMeanwhile: set[str] = set()
        #: The files of the tree being sent, and to how many clients.
        self.inUse: Counter[str] = Counter()
        self.evicting: Deferred[None] | None = None
        self.evictedFiles = 0
        self.evictedBytes = 0
        self._checking: IDelayedCall | None = None
        #: Set when the mirror stops: walks give up at once.
        self._stop = threading.Event()
        self._short = False

    def start(self) -> Deferred[None]:
        """
        Count the tree in the background, then keep the limits.
        """
        d = self._run(inventory, self.root, self._keptMeanwhile, self._stop, self._walk)

        def counted(histogram: Histogram) -> None:
            histogram.merge(self.histogram)
            self.histogram, self.ready = histogram, True
            self._keptMeanwhile.clear()
            log.info(
                "cache inventory: {files} files, {size}",
                files=histogram.files,
                size=formatSize(histogram.bytes),
            )
            self.check()

        def failed(failure: Failure) -> None:
            if not failure.check(Stopped):
                log.failure("cannot count the cache's files", failure)

        def done(result: None) -> None:
            self.counted.fire(None)

        return d.addCallbacks(counted, failed).addCallback(done)

    def stop(self) -> None:
        """
        Stop checking the limits.
        """
        self._stop.set()
        if self._checking is not None and self._checking.active():
            self._checking.cancel()
        self._checking = None

    @property
    def used(self) -> int:
        """
        The bytes the cache directory holds: files, downloads under way,
        and the rest (the journal).
        """
        return self.histogram.bytes + self.reserved + self._otherBytes()

    def kept(self, path: str, size: int, mtime: float, reserved: int = 0) -> None:
        """
        A file entered the tree, with the room C{reserved} for it.
        """
        self.release(reserved)
        if not self.ready:
            self._keptMeanwhile.add(path)
        self.histogram.add(mtime, size)
        self.check()

    def touched(self, size: int, before: float, now: float) -> None:
        """
        A file's last use moved from C{before} to C{now}.
        """
        if self.ready:
            self.histogram.remove(before, size)
            self.histogram.add(now, size)

    def admit(self, size: int | None) -> int:
        """
        Promise room to a download of C{size} bytes, evicting what it takes.

        @return: the bytes reserved, to give back to L{release}.
        @raise StoreError: (507) if the file cannot fit, even after eviction.
        """
        if size is None:
            return 0
        needed = expectedCharge(size)
        limits = self.limits
        if limits.maxSize is not None and needed + self.reserved + self._otherBytes() > limits.maxSize:
            raise StoreError(
                507,
                f"the file ({formatSize(size)}) cannot fit in the cache, whose --max-size is "
                f"{formatSize(limits.maxSize)}",
            )
        total, free = self.space()
        keep = limits.minFreeBytes(total)
        # Until the tree is counted, what eviction could free is unknown:
        # refuse only what no filesystem of this size could take.
        evictable = self.histogram.bytes if self.ready else total
        if needed > free - self.reserved + evictable - keep:
            raise StoreError(
                507,
                f"the file ({formatSize(size)}) cannot fit: the filesystem has "
                f"{formatSize(max(0, free - keep))} free beyond --min-free, even after eviction",
            )
        self.reserved += needed
        self.check()
        return needed

    def release(self, reserved: int) -> None:
        """
        A download is over: give back the room promised to it.
        """
        self.reserved = max(0, self.reserved - reserved)

    def space(self) -> tuple[int, int]:
        """
        The size and free space of the cache's filesystem, in bytes.

        @raise OSError: if they cannot be read.
        """
        return self._space(self.root)

    def need(self) -> int:
        """
        The bytes to free now to be back under the limits, with headroom;
        0 if within them.
        """
        limits = self.limits
        need = 0
        if limits.maxSize is not None and self.used > limits.maxSize:
            need = self.used - (limits.maxSize - headroom(limits.maxSize))
        total, free = self.space()
        keep = limits.minFreeBytes(total)
        if free < keep:
            need = max(need, keep + headroom(keep) - free)
        return need

    def check(self) -> None:
        """
        Evict if a limit is passed, unless an eviction runs already; check
        again in a while in any case.
        """
        if self._stop.is_set():
            return
        if self._checking is not None and self._checking.active():
            self._checking.cancel()
        self._checking = self._clock.callLater(CHECK_EVERY, self.check)
        if not self.ready or self.evicting is not None:
            return
        try:
            need = self.need()
        except OSError as e:
            log.error("cannot read the free space of the cache's filesystem: {reason}", reason=str(e))
            return
        if need <= 0:
            self._short = False
            return
        if self.histogram.files == 0 and self._short:
            return  # nothing left to evict; said so already
        evicting = Deferred.fromCoroutine(self._evict(need))
        evicting.addErrback(self._evictionFailed)
        if not evicting.called:
            self.evicting = evicting

    def _evictionFailed(self, failure: Failure) -> None:
        if not failure.check(Stopped):
            log.failure("eviction failed", failure)

    async def _evict(self, need: int) -> None:
        """
        Free C{need} bytes, least recently used files first, in a thread.
        """
        started = self._clock.seconds()
        try:
            before, until = self.histogram.boundary(need)
            removed = await self._run(
                sweep, self.root, before, until, need, set(self.inUse), self._stop, self._walk
            )
        finally:
            self.evicting = None
        freed = 0
        for start in range(0, len(removed), BATCH):
            if start:
                await self._nextTurn()  # a big eviction never holds the reactor long
            for victim in removed[start : start + BATCH]:
                self.histogram.remove(victim[0], victim[1])
                freed += victim[1]
                self._onEvicted(victim)
        self.evictedFiles += len(removed)
        self.evictedBytes += freed
        log.info(
            "evicted {files} files ({size}) in {seconds:.2f} s; the cache holds {held}",
            files=len(removed),
            size=formatSize(freed),
            seconds=self._clock.seconds() - started,
            held=formatSize(self.histogram.bytes),
        )
        if removed and self.need() > 0:
            # Still over, for files came meanwhile or the boundary hour held
            # more than one eviction takes: go again while it frees some.
            self.check()
        elif freed < need and not self._short:
            self._short = True
            log.warn(
                "the cache is still over its limits after eviction, short by {size}",
                size=formatSize(need - freed),
            )

    def _nextTurn(self) -> Deferred[None]:
        """
        Wait for the reactor's next turn.
        """
        d: Deferred[None] = Deferred()
        self._clock.callLater(0, d.callback, None)
        return d
