"""
Whether upstream is taken to be failing: for a while after a client's
request to it failed, copies are served at once, while one refresh at a
time (a probe) tries upstream again.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

__all__ = ["UpstreamHealth"]


class UpstreamHealth:
    """
    Upstream's health as the pages' refreshes found it, on C{clock}'s time.
    """

    def __init__(self, clock: IReactorTime, retryAfter: float) -> None:
        self._clock = clock
        #: Seconds after an upstream failure in which copies are served at
        #: once, while one refresh at a time tries upstream.
        self.retryAfter = retryAfter
        self._failed: tuple[float, str] | None = None
        self._probing = False

    def failed(self, reason: str) -> None:
        """
        Upstream failed a client's request (not one page of it), for
        C{reason}.
        """
        self._failed = (self._clock.seconds(), reason)

    def answered(self) -> None:
        """
        Upstream answered, whatever it said.
        """
        self._failed = None

    def failing(self) -> str | None:
        """
        Why upstream is taken to be failing, if it failed in the last
        L{retryAfter} seconds.
        """
        if self._failed is None:
            return None
        when, reason = self._failed
        ago = self._clock.seconds() - when
        if not 0 <= ago < self.retryAfter:
            return None
        return f"upstream failed {ago:.0f} s ago ({reason}); retrying in the background"

    def probe(self, refresh: Callable[[], Deferred[Any]]) -> None:
        """
        Start a C{refresh} in the background, unless a probe of upstream
        runs already: its outcome says whether upstream is back.
        """
        if self._probing:
            return
        self._probing = True

        def done(result: object) -> None:
            self._probing = False

        refresh().addBoth(done)
