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
walks read the tree in a child process (L{walkInChild}), so that they do
not hold the reactor's interpreter lock.

A file's charge is the blocks it takes on disk, and for a distribution (not
a C{.metadata} file) one block more for the directory of its shard.
"""

from __future__ import annotations

import heapq
import os
from collections import Counter
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._coalesce import Signal
from ._errors import StoreError
from ._layout import METADATA, PROVENANCE

__all__ = ["Budget", "Histogram", "Limits", "charge", "diskSpace", "formatSize"]

log = Logger()

#: The width of a histogram bucket, in seconds.
BUCKET = 3600.0

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

#: Evicted files accounted for and told of in one turn of the reactor.
BATCH = 1000

#: Seconds between checks of the limits when nothing else asks for one
#: (other programs may fill the filesystem).
CHECK_EVERY = 30.0

RunInThread = Callable[..., Deferred[Any]]


class Stopped(Exception):
    """
    A walk of the tree was given up, for the mirror is stopping.
    """


def formatSize(n: float) -> str:
    """
    A size for people: C{512 B}, C{1.5 MiB}.
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def charge(stat: os.stat_result, name: str) -> int:
    """
    What a file of the tree costs the budget.
    """
    blocks = getattr(stat, "st_blocks", None)
    used = blocks * 512 if blocks is not None else stat.st_size
    return used if name.endswith((METADATA, PROVENANCE)) else used + DIRECTORY


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


#: A walk of the tree: every regular file below a root, as its path, last
#: use and charge; given up with L{Stopped} once C{stop} is set.
Walk = Callable[[str, "threading.Event | None"], Iterator[tuple[str, float, int]]]


def walkHere(root: str, stop: threading.Event | None = None) -> Iterator[tuple[str, float, int]]:
    """
    Walk the tree in this process (see L{Walk}).
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
                        yield entry.path, stat.st_mtime, charge(stat, entry.name)
                except OSError:
                    continue


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
            [sys.executable, "-m", "tailmirror._budget", root],
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
            mtime, size, path = line.rstrip("\n").split("\t", 2)
            yield path, float(mtime), int(size)
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


def _printWalk(root: str) -> None:
    """
    The child of L{walkInChild}: a line for each file of the tree, its last
    use, charge and path, tab-separated.
    """
    out = sys.stdout
    for path, mtime, size in walkHere(root):
        if "\n" not in path:  # none of the mirror's own: it writes no control characters
            out.write(f"{mtime!r}\t{size}\t{path}\n")
    out.flush()


if __name__ == "__main__":
    # Background work: when the machine is busy, the mirror's reactor
    # comes first.
    os.nice(10)
    sys.stdout.reconfigure(errors="surrogateescape")  # type: ignore[union-attr]
    _printWalk(sys.argv[1])
