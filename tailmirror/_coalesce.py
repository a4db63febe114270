"""
One piece of work per key at a time, its result shared by every waiter.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Generic, Hashable, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.failure import Failure

__all__ = ["Coalescer"]

T = TypeVar("T")


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
        self._waiting: dict[Hashable, list[Deferred[T]]] = {}

    def inFlight(self, key: Hashable) -> bool:
        """
        Whether work for C{key} is running.
        """
        return key in self._waiting

    def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> Deferred[T]:
        """
        Join the work for C{key}, starting it with C{work()} if none runs.
        """
        waiters = self._waiting.get(key)
        start = waiters is None
        if waiters is None:
            waiters = self._waiting[key] = []
        mine: Deferred[T] = Deferred(lambda d: waiters.remove(d) if d in waiters else None)
        waiters.append(mine)
        if start:
            ensureDeferred(_call(work)).addBoth(self._finished, key)
        return mine

    def _finished(self, result: T | Failure, key: Hashable) -> None:
        """
        Hand the result to every waiter still waiting.
        """
        for waiter in self._waiting.pop(key):
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)


async def _call(work: Callable[[], Awaitable[T]]) -> T:
    """
    Run C{work}, turning an exception it raises at once into a failure.
    """
    return await work()
