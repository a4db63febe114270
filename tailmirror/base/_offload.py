"""
Where work runs: off the reactor thread, unless it is small.

A round trip through the thread pool costs more than its own few tens of
microseconds: its answer waits for the reactor to finish whatever it is
doing, which under a burst of clients (uv asks for dozens of pages at
once) is milliseconds, once per hop.  Work known to be small (a page of a
few files, a core metadata file of a few kilobytes) is done at once on the
reactor thread; anything that may be big still leaves it.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred

__all__ = ["RunInThread", "SMALL_PAGE", "SMALL_FILE", "offload"]

T = TypeVar("T")

#: How CPU and disk work leaves the reactor thread:
#: C{runInThread(f, *args)} returns a L{Deferred} of C{f(*args)}.
RunInThread = Callable[..., Deferred[Any]]

#: A JSON project page of at most this many bytes is parsed and rendered on
#: the reactor thread: a dozen files or so, well under a millisecond.  HTML
#: always leaves it (html5lib is ten times slower).
SMALL_PAGE = 8 * 1024

#: A core metadata file of at most this many bytes is read back from its
#: download, and parsed, on the reactor thread.
SMALL_FILE = 16 * 1024


def offload(
    runInThread: RunInThread, small: bool, f: Callable[..., T], *args: Any
) -> Deferred[T]:
    """
    C{f(*args)}: at once, here, if the work is C{small}; else off the
    reactor thread through C{runInThread}.  Either way a L{Deferred} of
    its result (or failure).
    """
    if small:
        return maybeDeferred(f, *args)
    return runInThread(f, *args)
