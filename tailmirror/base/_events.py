"""
What the mirror tells of itself: an interface that it calls at the moments
that matter, for logging, metrics and prefetch to subscribe to.  The
default, L{NoEvents}, does nothing; L{Fanout} hands each event to several
subscribers, and a subscriber that raises is logged and never breaks what
the mirror was doing.
"""

from __future__ import annotations

from typing import Any, Iterable

from twisted.logger import Logger
from zope.interface import Interface, implementer

from ._layout import FileKey

__all__ = ["EVENTS", "IMirrorEvents", "NoEvents", "Fanout", "PAGE_OUTCOMES", "REFRESH_OUTCOMES", "UPSTREAM_OUTCOMES"]

log = Logger()

#: How a project page was answered: from the cache within its TTL; after
#: upstream confirmed it unchanged; with a new page from upstream; stale,
#: for upstream failed; not at all, for upstream failed and no copy exists.
PAGE_OUTCOMES = ("fresh", "revalidated", "refreshed", "stale", "failed")

#: How a refresh of a project page from upstream ended: a page new to the
#: mirror; a changed page; the same page; upstream has no such project;
#: upstream failed and the mirror's copy is served stale; upstream failed
#: and the mirror has no copy.
REFRESH_OUTCOMES = ("new", "changed", "unchanged", "missing", "stale", "failed")

#: How an upstream request ended.
UPSTREAM_OUTCOMES = ("ok", "unchanged", "missing", "failed", "timeout")


class IMirrorEvents(Interface):
    """
    The moments of a mirror's work.  Every method is called on the reactor
    thread and must return quickly.
    """

    def pageWanted(index: str, project: str, agent: str | None, revalidate: bool) -> None:
        """
        A client asked for a project page of an index (by its normalized
        name), with C{agent} its C{User-Agent}, and whether it asked for an
        answer checked with upstream (C{revalidate}): before it is answered.
        """

    def pageServed(project: str, outcome: str) -> None:
        """
        A project page was answered: C{outcome} is one of L{PAGE_OUTCOMES}.
        """

    def pageRefreshed(project: str, outcome: str, reason: str | None) -> None:
        """
        A refresh of a project page from upstream ended, once however many
        clients waited for it: C{outcome} is one of L{REFRESH_OUTCOMES},
        C{reason} says why upstream failed (C{"stale"} or C{"failed"}).
        """

    def upstreamRequest(kind: str, outcome: str, seconds: float, size: int, reason: str | None) -> None:
        """
        A request to upstream ended: C{kind} is C{"page"}, C{"file"} or C{"range"},
        C{outcome} one of L{UPSTREAM_OUTCOMES}, C{seconds} from asking to
        the end of the body (or of the failure), C{size} the body's bytes
        received, C{reason} why it failed (C{"failed"} or C{"timeout"}).
        """

    def fileWanted(key: FileKey, agent: str | None, peer: str | None) -> None:
        """
        A client asked for a file (or its core metadata), with C{agent} its
        C{User-Agent} and C{peer} the host it asked from: before it is
        answered, and only once the policy lets it be served.
        """

    def fileServed(key: FileKey, size: int, cached: bool) -> None:
        """
        A file's answer began: from the tree (C{cached}) or from a download
        under way; C{size} is the bytes the answer carries, when known.
        """

    def downloadStarted(key: FileKey, size: int | None) -> None:
        """
        Upstream began sending a file: C{size} is its length where known.
        """

    def fileKept(key: FileKey, size: int, seconds: float) -> None:
        """
        A file was verified and put in the tree.
        """

    def fileRefused(key: FileKey, status: int, reason: str, size: int, seconds: float) -> None:
        """
        A file could not be had: refused before its download (the cache has
        no room), or its download failed after C{size} bytes and C{seconds};
        nothing of it was kept.
        """

    def policyRefused(kind: str, project: str, what: str) -> None:
        """
        The policy held back what a client asked for: a file, by a C{rule},
        an C{advisory}, the C{cooldown} or the freeze date
        (C{exclude-newer}); or a project outside the C{allow-only} list.
        C{what} is the rule or the advisory's identifier, if any.
        """

    def fileEvicted(key: FileKey, size: int) -> None:
        """
        A file was removed from the tree to keep the cache within its limits.
        """


@implementer(IMirrorEvents)
class NoEvents:
    """
    Events nobody listens to.
    """

    def pageWanted(self, index: str, project: str, agent: str | None, revalidate: bool) -> None:
        pass

    def pageServed(self, project: str, outcome: str) -> None:
        pass

    def pageRefreshed(self, project: str, outcome: str, reason: str | None) -> None:
        pass

    def upstreamRequest(self, kind: str, outcome: str, seconds: float, size: int, reason: str | None) -> None:
        pass

    def fileWanted(self, key: FileKey, agent: str | None, peer: str | None) -> None:
        pass

    def fileServed(self, key: FileKey, size: int, cached: bool) -> None:
        pass

    def downloadStarted(self, key: FileKey, size: int | None) -> None:
        pass

    def fileKept(self, key: FileKey, size: int, seconds: float) -> None:
        pass

    def fileRefused(self, key: FileKey, status: int, reason: str, size: int, seconds: float) -> None:
        pass

    def policyRefused(self, kind: str, project: str, what: str) -> None:
        pass

    def fileEvicted(self, key: FileKey, size: int) -> None:
        pass


def _fanned(name: str) -> Any:
    def call(self: "Fanout", *args: Any) -> None:
        for handler in self._handlers[name]:
            try:
                handler(*args)
            except Exception:
                log.failure("an events subscriber failed on {event}", event=name)

    call.__name__ = name
    call.__doc__ = f"Hand C{{{name}}} to every subscriber."
    return call


def _handler(subscriber: Any, name: str) -> Any:
    """
    What is called for event C{name}: the subscriber's method, or, for one
    that makes its methods on demand, a call that asks for it each time.
    """
    if getattr(type(subscriber), name, None) is not None:
        return getattr(subscriber, name)
    return lambda *args: getattr(subscriber, name)(*args)


#: The events, by name.
EVENTS = tuple(IMirrorEvents.names())


@implementer(IMirrorEvents)
class Fanout:
    """
    Every event, to each of several subscribers in turn.  A subscriber's
    method that is L{NoEvents}' own (it does nothing) is never called: the
    warm path pays only for the subscribers that listen.
    """

    def __init__(self, subscribers: Iterable[IMirrorEvents] = ()) -> None:
        self.subscribers = list(subscribers)
        self._handlers: dict[str, list[Any]] = {}
        self._bind()

    def subscribe(self, subscriber: IMirrorEvents) -> None:
        """
        Add a subscriber.
        """
        self.subscribers.append(subscriber)
        self._bind()

    def _bind(self) -> None:
        self._handlers = {
            name: [
                _handler(s, name) for s in self.subscribers
                if getattr(type(s), name, None) is not getattr(NoEvents, name)
            ]
            for name in EVENTS
        }

    pageWanted = _fanned("pageWanted")
    pageServed = _fanned("pageServed")
    pageRefreshed = _fanned("pageRefreshed")
    upstreamRequest = _fanned("upstreamRequest")
    fileWanted = _fanned("fileWanted")
    fileServed = _fanned("fileServed")
    downloadStarted = _fanned("downloadStarted")
    fileKept = _fanned("fileKept")
    fileRefused = _fanned("fileRefused")
    fileEvicted = _fanned("fileEvicted")
    policyRefused = _fanned("policyRefused")
