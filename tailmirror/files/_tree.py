"""
The file tree under a cache directory, and its one owner: L{FileTree} is
the only code that opens, keeps, lists and removes the files of
C{+files/}, and the temporary files of downloads in C{+tmp/}.  So every
hit, every file kept and every file evicted passes through here, and the
disk budget (L{tailmirror.files._budget}) sees them all.

Present in the tree means complete and verified: a file gets there only
by a rename after its hash matched, made durable first.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..base import PYPI, FileKey, IMirrorEvents, IndexLayout, NoEvents, RunInThread, StoreError, putInPlace
from ._budget import Budget, Limits, diskSpace
from ._walk import Evicted, Walk, charge, walkHere
from ._walker import usedBytes

__all__ = ["FileTree", "OpenFile"]

log = Logger()

#: A file's last use is recorded again when it is served this many seconds
#: after the last record: how exactly the least recently used is known.
TOUCH_EVERY = 60.0

#: The last use given to a file upstream no longer lists (a pinned file,
#: which cannot be fetched again): far in the future, so eviction takes it
#: after every file still listed; it is not touched again.
PINNED = float(2**33)


class OpenFile:
    """
    A file open for sending: its descriptor and size, until L{close}.
    """

    def __init__(self, fd: int, size: int, onClose: Callable[[], None] = lambda: None) -> None:
        self.fd = fd
        self.size = size
        self._onClose = onClose

    def close(self) -> None:
        """
        Let the file go; only the first call counts.
        """
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self._onClose()


#: Paths of files in the tree remembered, at most (all forgotten at once
#: past it): a warm file is asked for again and again.
PATHS_KEPT = 4096


class FileTree:
    """
    The files of a cache directory, kept within its limits.
    """

    def __init__(
        self,
        cacheDir: str,
        clock: IReactorTime,
        runInThread: RunInThread,
        limits: Limits,
        events: IMirrorEvents | None = None,
        otherBytes: Callable[[], int] = lambda: 0,
        space: Callable[[str], tuple[int, int]] = diskSpace,
        layouts: tuple[IndexLayout, ...] = (PYPI,),
        touchEvery: float = TOUCH_EVERY,
        walk: Walk = walkHere,
    ) -> None:
        self.root = os.path.join(cacheDir, "+files")
        self._paths: dict[FileKey, str] = {}
        self.tmp = os.path.join(cacheDir, "+tmp")
        self._clock = clock
        self._run = runInThread
        self._events = events if events is not None else NoEvents()
        self._layouts = {layout.name: layout for layout in layouts}
        self.touchEvery = touchEvery
        #: Bytes downloads have received and not yet written, all of them
        #: together (see L{tailmirror.files._download.BACKLOG_MAX}).
        self.backlog = 0
        self.budget = Budget(
            self.root,
            limits,
            clock,
            runInThread,
            otherBytes=otherBytes,
            space=space,
            onEvicted=self._evicted,
            walk=walk,
        )

    def open(self) -> Deferred[None]:
        """
        Make the tree, clear downloads a previous run left unfinished, and
        count the tree in the background.

        @raise OSError: if the tree cannot be made.
        """
        os.makedirs(self.root, exist_ok=True)
        os.makedirs(self.tmp, exist_ok=True)
        leftovers = os.listdir(self.tmp)
        for name in leftovers:
            self.discard(os.path.join(self.tmp, name))
        if leftovers:
            log.info("cleared {count} unfinished downloads", count=len(leftovers))
        return self.budget.start()

    def close(self) -> None:
        """
        Stop keeping the limits.
        """
        self.budget.stop()

    def path(self, key: FileKey) -> str:
        """
        Where a file is in the tree: by its content, where a sha256 names
        it (see L{FileKey.storeParts}); worked out once, while
        L{PATHS_KEPT} are remembered.
        """
        try:
            return self._paths[key]
        except KeyError:
            pass
        if len(self._paths) >= PATHS_KEPT:
            self._paths.clear()
        path = self._paths[key] = os.path.join(self.root, *key.storeParts)
        return path

    def has(self, key: FileKey) -> bool:
        """
        Whether the tree has a file (one small stat), without recording a use.
        """
        return os.path.exists(self.path(key))

    def openFile(self, key: FileKey) -> OpenFile | None:
        """
        Open a file of the tree for sending, and record its use; L{None} if
        the tree does not have it.

        @raise OSError: if it is there but cannot be read.
        """
        path = self.path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            stat = os.fstat(fd)
            now = self._clock.seconds()
            if stat.st_mtime < PINNED and abs(now - stat.st_mtime) >= self.touchEvery:
                self._touch(fd, stat, key, now)
        except BaseException:
            os.close(fd)
            raise
        self.budget.inUse[path] += 1
        return OpenFile(fd, stat.st_size, lambda: self._sent(path))

    def _touch(self, fd: int, stat: os.stat_result, key: FileKey, now: float) -> None:
        """
        Record a file's use in its modification time: one small write of
        its inode, at most once in L{touchEvery} seconds.
        """
        try:
            os.utime(fd, (now, now))
        except OSError as e:
            log.warn("cannot record the use of {file}: {reason}", file=str(key), reason=str(e))
            return
        self.budget.touched(charge(usedBytes(stat), key.parts[-1]), stat.st_mtime, now)

    def pin(self, keys: list[FileKey]) -> Deferred[None]:
        """
        Files upstream no longer lists: those the tree has are evicted only
        after every file still listed.  Disk work, done off the reactor.
        """
        paths = [(key, self.path(key)) for key in keys]

        def mark() -> list[tuple[int, float]]:
            moved = []
            for key, path in paths:
                try:
                    stat = os.stat(path)
                    if stat.st_mtime >= PINNED:
                        continue
                    os.utime(path, (PINNED, PINNED))
                except OSError:
                    continue  # not in the tree, or gone meanwhile
                moved.append((charge(usedBytes(stat), key.parts[-1]), stat.st_mtime))
            return moved

        def account(moved: list[tuple[int, float]]) -> None:
            for size, before in moved:
                self.budget.touched(size, before, PINNED)
            if moved:
                log.info("{files} files no longer listed upstream are kept, evicted last", files=len(moved))

        def failed(failure: Any) -> None:
            log.failure("cannot mark files no longer listed upstream", failure)

        return self._run(mark).addCallback(account).addErrback(failed)

    def _sent(self, path: str) -> None:
        inUse = self.budget.inUse
        inUse[path] -= 1
        if inUse[path] <= 0:
            del inUse[path]

    def admit(self, size: int | None) -> int:
        """
        Room for a download of C{size} bytes: see L{Budget.admit}.
        """
        return self.budget.admit(size)

    def release(self, reserved: int) -> None:
        """
        A download is over: see L{Budget.release}.
        """
        self.budget.release(reserved)

    def temporary(self) -> tuple[int, str]:
        """
        A new temporary file for a download.

        @raise OSError: if none can be made.
        """
        return tempfile.mkstemp(dir=self.tmp, prefix="download-")

    def discard(self, path: str) -> None:
        """
        Remove a temporary file, if it is there.
        """
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.error("cannot remove {path}: {reason}", path=path, reason=str(e))

    async def keep(self, fd: int, temporary: str, key: FileKey, reserved: int = 0) -> str:
        """
        Put a verified download in its place in the tree, durably, its use
        recorded as now; the room C{reserved} for it is its own now.

        @return: its path in the tree.
        @raise StoreError: if it cannot be put there.
        """
        path = self.path(key)
        now = self._clock.seconds()
        try:
            stat = await self._run(_place, fd, temporary, path, now)
        except OSError as e:
            raise StoreError.cannotWrite(e) from None
        self.budget.kept(path, charge(usedBytes(stat), key.parts[-1]), now, reserved)
        return path

    def _evicted(self, victim: Evicted) -> None:
        """
        The budget removed a file: tell the events which one.
        """
        _, size, path = victim
        parts = os.path.relpath(path, self.root).split(os.sep)
        layout = self._layouts.get(parts[1]) if len(parts) == 6 and parts[0] == "root" else None
        key = layout.fromParts(parts[3:]) if layout is not None and parts[2] == "+f" else None
        if key is not None:
            self._events.fileEvicted(key, size)


def _place(fd: int, temporary: str, path: str, now: float) -> os.stat_result:
    """
    Move a finished file into the tree, durably, its modification time set
    to C{now}.  Disk work: run it off the reactor.
    """
    os.utime(fd, (now, now))
    putInPlace(fd, temporary, path)
    return os.fstat(fd)
