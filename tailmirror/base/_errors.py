"""
The failures the mirror answers clients with, rather than tracebacks.
"""

from __future__ import annotations

__all__ = ["Unavailable", "UpstreamError", "StoreError", "NotFound"]


class Unavailable(Exception):
    """
    A page or file cannot be had now: C{status} is what the mirror answers
    and C{reason} one line saying why.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


class UpstreamError(Unavailable):
    """
    Upstream failed to give what was asked (502, or 504 for a timeout).
    """


class StoreError(Unavailable):
    """
    The mirror could not write to its cache (507).
    """

    @classmethod
    def cannotWrite(cls, e: OSError) -> "StoreError":
        """
        The error for a write to the cache that failed.
        """
        return cls(507, f"the mirror cannot write its cache: {e.strerror}")


class NotFound(Exception):
    """
    There is no such project or file, upstream or here.
    """
