"""
One mirror, wired together from its settings: the upstream client, the
pages and their journal, the file tree and its budget, the downloads, and
the resource tree that serves them.  L{buildMirror} is the one place that
does it, for the service and the tests alike; each default lives in
L{Settings}.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from ._access import AccessLog, MirrorSite
from ._budget import Limits, Walk, diskSpace, walkHere
from ._events import Fanout, IMirrorEvents
from ._files import FileStore
from ._journal import Journal
from ._logs import LogEvents
from ._metrics import MirrorMetrics
from ._pages import ProjectPages
from ._policy import Policy
from ._status import MirrorStatus
from ._tree import TOUCH_EVERY, FileTree
from ._upstream import Upstream
from ._web import MirrorWeb

__all__ = ["DEFAULTS", "Mirror", "Settings", "buildMirror"]

MiB = 1024 * 1024


@dataclass
class Settings:
    """
    What a mirror is told by its options, with their defaults.
    """

    upstream: str
    cacheDir: str
    ttl: float = 900.0
    #: Seconds within which a client's revalidation (pip's C{max-age=0})
    #: is answered with the page just checked upstream.
    revalidateFloor: float = 60.0
    #: Seconds a client waits for a refresh before the copy is served stale.
    staleAfter: float = 2.0
    #: Seconds after an upstream failure in which copies are served stale
    #: at once while one background refresh tries upstream again.
    retryAfter: float = 10.0
    timeout: float = 15.0
    idleTimeout: float = 30.0
    clientTimeout: float = 60.0
    maxPageBytes: int = 64 * MiB
    pageRequests: int = 16
    fileRequests: int = 16
    caCerts: str | None = None
    #: The most the cache directory may hold, in bytes; L{None}: no limit.
    maxSize: int | None = None
    #: Free space to keep: bytes, or a share of the filesystem below 1.
    minFree: int | float = 0.05
    #: Seconds between records of a file's use.
    touchEvery: float = TOUCH_EVERY
    #: Seconds a release is held back after its upload; L{None}: none.
    cooldown: float | None = None
    #: Whether a file without an upload time is served under a cooldown.
    cooldownAllowUnknown: bool = True
    #: Normalized names of projects the cooldown lets through at once.
    cooldownExempt: tuple[str, ...] = ()
    #: Where the access log goes: L{None}, the mirror's log; C{"off"};
    #: C{"-"}, standard output; or a file's path.
    accessLog: str | None = None
    #: The endpoint that serves the metrics instead of the mirror's own.
    metricsListen: str | None = None

    @property
    def limits(self) -> Limits:
        """
        The disk limits these settings give.
        """
        return Limits(self.maxSize, self.minFree)


#: The defaults of every setting.
DEFAULTS = Settings("", "")


@dataclass
class Mirror:
    """
    The parts of one mirror.
    """

    settings: Settings
    events: Fanout
    upstream: Upstream
    journal: Journal
    pages: ProjectPages
    tree: FileTree
    files: FileStore
    metrics: MirrorMetrics
    status: MirrorStatus
    resource: Any
    site: MirrorSite

    def open(self) -> Deferred[None]:
        """
        Replay the journal, clear unfinished downloads and start counting
        the tree (the L{Deferred} fires when it is counted).

        @raise OSError: if the cache directory cannot be used.
        """
        os.makedirs(self.settings.cacheDir, exist_ok=True)
        self.pages.open()
        counted = self.tree.open()
        self.metrics.start()
        return counted

    def close(self) -> None:
        """
        Stop the budget and close the journal, durably, and the access log.
        """
        self.metrics.stop()
        self.tree.close()
        self.pages.close()
        self.site.accessLog.close()


def buildMirror(
    settings: Settings,
    client: Any,
    clock: IReactorTime,
    runInThread: Callable[..., Deferred[Any]],
    subscribers: tuple[IMirrorEvents, ...] = (),
    space: Callable[[str], tuple[int, int]] = diskSpace,
    walk: Walk = walkHere,
) -> Mirror:
    """
    A mirror of C{settings.upstream} over C{client} (a C{treq} HTTP client),
    its time from C{clock}, its disk and CPU work through C{runInThread},
    its events to C{subscribers}, its free space read by C{space} and its
    tree walked by C{walk}.
    """
    metrics = MirrorMetrics(clock)
    status = MirrorStatus(clock)
    events = Fanout((LogEvents(), metrics, status, *subscribers))
    upstream = Upstream(
        client,
        settings.upstream,
        clock,
        timeout=settings.timeout,
        maxPageBytes=settings.maxPageBytes,
        concurrency=settings.pageRequests,
        fileConcurrency=settings.fileRequests,
        idleTimeout=settings.idleTimeout,
        events=events,
    )
    journal = Journal(os.path.join(settings.cacheDir, "journal.jsonl"))
    pages = ProjectPages(
        journal,
        upstream,
        clock,
        runInThread,
        ttl=settings.ttl,
        revalidateFloor=settings.revalidateFloor,
        staleAfter=settings.staleAfter,
        retryAfter=settings.retryAfter,
        events=events,
        policy=Policy(settings.cooldown, settings.cooldownAllowUnknown, frozenset(settings.cooldownExempt)),
    )
    tree = FileTree(
        settings.cacheDir,
        clock,
        runInThread,
        limits=settings.limits,
        events=events,
        otherBytes=lambda: journal.size,
        space=space,
        touchEvery=settings.touchEvery,
        walk=walk,
    )
    pages.onDelisted = tree.pin
    files = FileStore(tree, pages, upstream, clock, runInThread, clientTimeout=settings.clientTimeout, events=events)
    resource = MirrorWeb(pages, files, status, None if settings.metricsListen else metrics).resource()
    site = MirrorSite(resource, metrics, AccessLog(settings.accessLog), timeout=settings.clientTimeout, reactor=clock)
    mirror = Mirror(settings, events, upstream, journal, pages, tree, files, metrics, status, resource, site)
    metrics.watch(mirror)
    status.watch(mirror)
    return mirror
