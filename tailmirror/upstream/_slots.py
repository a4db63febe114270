"""
Slots for requests to upstream: a few at a time, clients' before the
prefetch's, and a prefetch's request raised to a client's when a client
asks for the same thing.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed

__all__ = ["Priority", "Slots", "priorityOf"]


class Priority:
    """
    Whose a request to upstream is: a client's, or a prefetch's (in the
    C{background}) until a client asks for the same thing and L{raiseTo}
    makes it a client's: a request of it still waiting for a slot then
    waits with the clients', so the client does not wait behind them.
    """

    def __init__(self, background: bool = False) -> None:
        self.background = background
        self._raised: list[Callable[[], object]] = []

    def raiseTo(self, background: bool) -> None:
        """
        Make it a client's, if C{background} is false.
        """
        if self.background and not background:
            self.background = False
            raised, self._raised = self._raised, []
            for f in raised:
                f()

    def whenRaised(self, f: Callable[[], object]) -> None:
        """
        Call C{f} once, when it becomes a client's.
        """
        if self.background:
            self._raised.append(f)


def priorityOf(background: bool | Priority) -> Priority:
    """
    A L{Priority}, from a flag or as it is.
    """
    return background if isinstance(background, Priority) else Priority(background)


class Slots:
    """
    A few requests at a time, clients' first: a background request (a
    prefetch) waits while any client's request waits, and takes a slot
    only when no client's is waiting for one.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.free = limit
        self._waiting: deque[Deferred[None]] = deque()
        self._background: deque[Deferred[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting) + len(self._background)

    def acquire(self, background: bool | Priority = False) -> Deferred[None]:
        """
        A L{Deferred} that fires when a slot is had; cancelling it gives up
        the wait.  A background request whose L{Priority} is raised while it
        waits waits from then on as a client's.
        """
        priority = priorityOf(background)
        if self.free > 0 and not self._waiting and not (priority.background and self._background):
            self.free -= 1
            return succeed(None)
        d: Deferred[None] = Deferred(self._giveUp)
        if priority.background:
            self._background.append(d)
            priority.whenRaised(lambda: self._promote(d))
        else:
            self._waiting.append(d)
        return d

    def _giveUp(self, d: Deferred[None]) -> None:
        for queue in (self._waiting, self._background):
            if d in queue:
                queue.remove(d)

    def _promote(self, d: Deferred[None]) -> None:
        """
        A background request waits as a client's from now on.
        """
        if d in self._background:
            self._background.remove(d)
            self._waiting.append(d)

    def release(self) -> None:
        """
        Give a slot back, to the longest waiting client first.
        """
        queue = self._waiting or self._background
        if queue:
            queue.popleft().callback(None)
        else:
            self.free += 1

    async def run(self, work: Any, background: bool | Priority = False) -> Any:
        """
        C{work()} (a L{Deferred}) in a slot.
        """
        await self.acquire(background)
        try:
            return await work()
        finally:
            self.release()
