"""
Outcomes many wait for: one piece of work per key at a time, its result
shared by every waiter.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Generic, Hashable, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.python.failure import Failure

__all__ = ["Coalescer", "Signal"]

T = TypeVar("T")


class Signal(Generic[T]):
    """
    An outcome many may wait for, each on a L{Deferred} of its own that they
    may cancel without touching the outcome or the others.
    """

    def __init__(self) -> None:
        self._waiters: list[Deferred[T]] = []
        self._outcome: T | Failure | None = None
        self.fired = False

    def wait(self) -> Deferred[T]:
        """
        A L{Deferred} of the outcome.
        """
        if self.fired:
            if isinstance(self._outcome, Failure):
                return fail(self._outcome)
            return succeed(self._outcome)  # type: ignore[arg-type]
        d: Deferred[T] = Deferred(lambda d: self._waiters.remove(d))
        self._waiters.append(d)
        return d

    def fire(self, outcome: T | Failure) -> None:
        """
        Give every waiter, present and future, the outcome.
        """
        if self.fired:
            return
        self.fired, self._outcome = True, outcome
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)


class Coalescer(Generic[T]):
    """
    Runs work keyed by, say, a project name: the first caller for a key
    starts the work, later callers join it while it runs.  Each caller gets
    a L{Deferred} of its own, so cancelling one (a client hanging up) only
    detaches that caller and never cancels the work the others wait for.
    The key is forgotten when the work ends, whatever the outcome, so the
    next caller starts afresh.
    """

    def __init__(self) -> None:
        self._running: dict[Hashable, Signal[T]] = {}

    def inFlight(self, key: Hashable) -> bool:
        """
        Whether work for C{key} is running.
        """
        return key in self._running

    def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> Deferred[T]:
        """
        Join the work for C{key}, starting it with C{work()} if none runs.
        """
        signal = self._running.get(key)
        if signal is None:
            signal = self._running[key] = Signal()
            ensureDeferred(_call(work)).addBoth(self._finished, key)
        return signal.wait()

    def _finished(self, result: T | Failure, key: Hashable) -> None:
        """
        Hand the result to every waiter still waiting.
        """
        self._running.pop(key).fire(result)


async def _call(work: Callable[[], Awaitable[T]]) -> T:
    """
    Run C{work}, turning an exception it raises at once into a failure.
    """
    return await work()
