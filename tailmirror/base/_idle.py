"""
One timer for every "too long without progress" the mirror watches: an
upstream body going quiet, a client taking nothing of a file.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["IdleTimer"]


class IdleTimer:
    """
    Calls C{onIdle} once C{seconds} pass without L{poke} while the timer is
    counting.  It counts from L{start} or L{resume} until L{pause} or
    L{stop}: time it is paused does not count.
    """

    def __init__(self, clock: IReactorTime, seconds: float, onIdle: Callable[[], None]) -> None:
        self._clock = clock
        self.seconds = seconds
        self._onIdle = onIdle
        self._call: IDelayedCall | None = None
        self._stopped = False
        #: Whether the timer ran out.
        self.fired = False

    @property
    def counting(self) -> bool:
        """
        Whether the timer is counting now.
        """
        return self._call is not None

    def start(self) -> None:
        """
        Count from now, unless counting already or stopped.
        """
        if self._call is None and not self._stopped:
            self._call = self._clock.callLater(self.seconds, self._fire)

    resume = start

    def poke(self) -> None:
        """
        Progress: count afresh, if counting.
        """
        if self._call is not None:
            self._call.reset(self.seconds)

    def pause(self) -> None:
        """
        Stop counting until L{resume}.
        """
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def stop(self) -> None:
        """
        Stop counting for good.
        """
        self.pause()
        self._stopped = True

    def _fire(self) -> None:
        self._call = None
        self._stopped = self.fired = True
        self._onIdle()
