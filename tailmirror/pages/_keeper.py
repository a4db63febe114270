"""
The journal as the pages keep it: records written off the reactor, one at a
time and in order, an append that fails saying so clearly; records made
durable soon after they are written, and the journal compacted when dead
records dominate it.
"""

from __future__ import annotations

from typing import TypeVar

from twisted.internet.defer import Deferred, DeferredLock, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..base import RunInThread, StoreError
from ._journal import Journal, Pending

__all__ = ["JournalKeeper", "SYNC_AFTER"]

log = Logger()
T = TypeVar("T")

#: Journal records are made durable this many seconds after they are
#: written, at most: all that a crash of the machine can lose.
SYNC_AFTER = 1.0


class JournalKeeper:
    """
    Writes to a L{Journal}, syncs and compacts it, on C{clock}'s time and
    with C{runInThread} for the disk work; records are written with
    C{writeInThread} (by default C{runInThread}), one at a time.
    """

    def __init__(
        self,
        journal: Journal,
        clock: IReactorTime,
        runInThread: RunInThread,
        writeInThread: RunInThread | None = None,
    ) -> None:
        self._journal = journal
        self._clock = clock
        self._run = runInThread
        self._write = writeInThread if writeInThread is not None else runInThread
        #: Held while a record is written, and while a compaction carries
        #: records over to its new file.
        self._writing = DeferredLock()
        self._syncing: IDelayedCall | None = None

    async def write(self, pending: Pending[T]) -> T:
        """
        Append a record to the journal, off the reactor thread, and settle
        it, in the order records are given; turn a failed write into a clear
        error.  Have the record made durable soon, and the journal compacted
        when dead records dominate it.

        A page's record is a page's worth of bytes, and a write to a file
        can wait on the file system's own journal (ext4 commits it while
        files are synced): written on the reactor thread, it held every
        client for up to 13 ms a page through a cold install.
        """
        await self._writing.acquire()
        try:
            try:
                f, start = await self._write(self._journal.write, pending.line)
            except OSError as e:
                log.error("cannot write the journal: {reason}", reason=str(e))
                raise StoreError.cannotWrite(e) from None
            result = pending.settle(f, start)
        finally:
            self._writing.release()
        if self._syncing is None:
            self._syncing = self._clock.callLater(SYNC_AFTER, self._sync)
        if self._journal.wantsCompaction():
            self.compact()
        return result

    def _sync(self) -> Deferred[None]:
        """
        Make the journal's latest records durable, off the reactor.
        """
        self._syncing = None

        def failed(failure: Failure) -> None:
            log.failure("cannot sync the journal", failure)

        return self._run(self._journal.sync).addErrback(failed)

    def compact(self) -> Deferred[None]:
        """
        Compact the journal, unless a compaction runs already; log what came
        of it.
        """
        if self._journal.compacting:
            log.info("journal compaction asked for; one is running already")
            return succeed(None)
        log.info(
            "compacting the journal: {size} bytes, {live} of them live",
            size=self._journal.size,
            live=self._journal.live,
        )

        def done(sizes: tuple[int, int]) -> None:
            log.info("journal compacted from {before} to {bytes} bytes", before=sizes[0], bytes=sizes[1])

        def failed(failure: Failure) -> None:
            log.error(
                "journal compaction failed, the journal is as it was: {reason}",
                reason=failure.getErrorMessage(),
            )

        d = Deferred.fromCoroutine(self._journal.compact(self._run, self._writing))
        return d.addCallbacks(done, failed)

    def close(self) -> None:
        """
        Close the journal, durably.
        """
        if self._syncing is not None:
            self._syncing.cancel()
            self._syncing = None
        self._journal.sync()
        self._journal.close()
