"""
Projects upstream said it does not have, remembered for a while: a fleet
that puts the mirror beside a private index (pip's C{--extra-index-url},
uv's several indexes) asks it for every private project on every install,
and each would otherwise be a trip upstream for the same 404.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

__all__ = ["MISSING_KEPT", "Missing"]

#: Projects remembered as missing, at most (the oldest forgotten first).
MISSING_KEPT = 10_000


class Missing:
    """
    Upstream's 404s for project pages, each remembered for C{seconds} on
    C{clock}'s time (none with 0), then asked again.
    """

    def __init__(self, clock: IReactorTime, seconds: float) -> None:
        self._clock = clock
        self.seconds = seconds
        self._said: dict[str, float] = {}

    def said(self, name: str) -> None:
        """
        Upstream said now that it has no project C{name}.
        """
        if self.seconds <= 0:
            return
        self._said.pop(name, None)
        self._said[name] = self._clock.seconds()
        if len(self._said) > MISSING_KEPT:
            del self._said[next(iter(self._said))]

    def found(self, name: str) -> None:
        """
        Upstream has a project C{name} after all.
        """
        self._said.pop(name, None)

    def __contains__(self, name: str) -> bool:
        """
        Whether upstream said it has no project C{name} less than
        L{seconds} ago.
        """
        when = self._said.get(name)
        if when is None:
            return False
        if 0 <= self._clock.seconds() - when < self.seconds:
            return True
        del self._said[name]
        return False
