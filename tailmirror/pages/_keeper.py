"""
The journal as the pages keep it: an append that fails says so clearly,
records are made durable soon after they are written, off the reactor, and
the journal is compacted when dead records dominate it.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..base import RunInThread, StoreError
from ._journal import Journal

__all__ = ["JournalKeeper", "SYNC_AFTER"]

log = Logger()
T = TypeVar("T")

#: Journal records are made durable this many seconds after they are
#: written, at most: all that a crash of the machine can lose.
SYNC_AFTER = 1.0


class JournalKeeper:
    """
    Writes to a L{Journal}, syncs and compacts it, on C{clock}'s time and
    with C{runInThread} for the disk work.
    """

    def __init__(self, journal: Journal, clock: IReactorTime, runInThread: RunInThread) -> None:
        self._journal = journal
        self._clock = clock
        self._run = runInThread
        self._syncing: IDelayedCall | None = None

    def write(self, append: Callable[..., T], *args: Any) -> T:
        """
        Append to the journal, turning a failed write into a clear error;
        have the record made durable soon, and the journal compacted when
        dead records dominate it.
        """
        try:
            result = append(*args)
        except OSError as e:
            log.error("cannot write the journal: {reason}", reason=str(e))
            raise StoreError.cannotWrite(e) from None
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

        d = Deferred.fromCoroutine(self._journal.compact(self._run))
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
