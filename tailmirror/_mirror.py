"""
One mirror, wired together from its settings: the upstream client, the
pages and their journal, the file tree and its budget, the downloads, and
the resource tree that serves them.  L{buildMirror} is the one place that
does it, for the service and the tests alike; each default lives in
L{Settings}.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from .base import DEFAULT_INDEX, PYPI, Fanout, IMirrorEvents, IndexLayout, RunInThread
from .files import TOUCH_EVERY, Bucket, FileStore, FileTree, Fleet, FleetUpstream, Limits, Walk, diskSpace, walkHere
from .observe import (
    CacheFacts,
    Health,
    DownloadFacts,
    IndexFacts,
    JournalFacts,
    LogEvents,
    MirrorMetrics,
    MirrorStatus,
    SlotFacts,
    Snapshot,
)
from .pages import RENDER_CACHE_BYTES, Journal, LegacyJSON, Policy, PolicySources, ProjectPages, Rules
from .prefetch import Prefetcher
from .upstream import Credentials, Upstream
from .web import AccessLog, AnyOf, Guard, MirrorSite, MirrorWeb, checkerFor

__all__ = ["DEFAULTS", "Index", "IndexSettings", "Mirror", "Settings", "buildMirror"]

MiB = 1024 * 1024


@dataclass(frozen=True)
class IndexSettings:
    """
    Another index to mirror (C{--index NAME=URL}), and what it has of its
    own where it differs from the mirror's settings.
    """

    name: str
    upstream: str
    #: Its pages' TTL; L{None}: the mirror's.
    ttl: float | None = None
    #: Its authorities, for https; L{None}: the mirror's.
    caCerts: str | None = None
    #: What it is told to let the mirror in, if it asks (never shown).
    credentials: Credentials | None = None


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
    #: Seconds an upstream's 404 for a project is remembered (0: asked
    #: every time); L{None}: the revalidation floor.
    notFoundTTL: float | None = None
    timeout: float = 15.0
    idleTimeout: float = 30.0
    clientTimeout: float = 60.0
    maxPageBytes: int = 64 * MiB
    #: Upstream requests at once, at most: files as many as one uv client
    #: downloads at once itself (50), so that a cold install never queues
    #: downloads that straight from the index run side by side; pages, held
    #: in memory whole, fewer.
    pageRequests: int = 32
    fileRequests: int = 64
    caCerts: str | None = None
    #: What C{upstream} is told to let the mirror in, if it asks.
    credentials: Credentials | None = None
    #: Hosts (and ports; L{None}: any) files may come from besides the
    #: upstreams' own, whatever their addresses (C{--allow-file-host}).
    fileHosts: tuple[tuple[str, int | None], ...] = ()
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
    #: The internal location of the tree in a front (nginx) that sends
    #: warm files for the mirror (C{X-Accel-Redirect}); L{None}: none.
    accelRedirect: str | None = None
    #: The indexes mirrored beside C{upstream} (which is C{pypi}).
    indexes: tuple[IndexSettings, ...] = field(default_factory=tuple)
    #: What a client's page request prefetches: C{"off"}, C{"metadata"}
    #: (the pages and core metadata of its dependencies), or C{"files"}
    #: (and the files predicted).
    prefetch: str = "metadata"
    #: Levels of dependencies below the page asked for that are prefetched.
    prefetchDepth: int = 4
    #: Upstream requests of the prefetch at once, at most.
    prefetchRequests: int = 8
    #: Bytes of rendered pages kept in memory, at most.
    renderCacheBytes: int = RENDER_CACHE_BYTES
    #: Who may read (C{--auth}): C{(kind, path)} of each file of
    #: credentials; none, anyone who can connect.
    auth: tuple[tuple[str, str], ...] = ()
    #: Files uploaded after this (Unix time) are held back; L{None}: none.
    excludeNewer: float | None = None
    #: The rules of the options (C{--deny}, C{--allow-only}, C{--waive}).
    rules: Rules = field(default_factory=Rules)
    #: A file of more rules, read again when it changes.
    policyFile: str | None = None
    #: Paths and URLs of advisories in the OSV format.
    advisories: tuple[str, ...] = ()
    #: Seconds between fetches of an advisory URL.
    advisoriesRefresh: float = 6 * 3600.0
    #: Which advisories hold files back: malicious, vulnerable or off.
    denyAdvisories: str = "malicious"
    #: The fleet's bucket, C{s3://BUCKET[/PREFIX]}; L{None}: none.
    store: str | None = None
    #: The S3-compatible service's URL; L{None}: AWS's.
    storeEndpoint: str | None = None
    #: Whether a file in the bucket is answered with a redirect to it.
    storeRedirect: bool = False
    #: Where clients read the bucket's objects, for the redirects.
    storePublicURL: str | None = None

    @property
    def allIndexes(self) -> tuple[IndexSettings, ...]:
        """
        Every index mirrored: C{upstream} as C{pypi} first, then the others.
        """
        return (IndexSettings(DEFAULT_INDEX, self.upstream, self.ttl, self.caCerts, self.credentials), *self.indexes)

    def stateDir(self, name: str) -> str:
        """
        Where an index keeps its journal: the cache directory for C{pypi}
        (as when it was the only one), C{+indexes/<name>/} in it for others.
        """
        if name == DEFAULT_INDEX:
            return self.cacheDir
        return os.path.join(self.cacheDir, "+indexes", name)

    @property
    def limits(self) -> Limits:
        """
        The disk limits these settings give.
        """
        return Limits(self.maxSize, self.minFree)


#: The defaults of every setting.
DEFAULTS = Settings("", "")


@dataclass
class Index:
    """
    The parts of one index: its upstream, its pages and their journal.
    """

    settings: IndexSettings
    layout: IndexLayout
    upstream: Upstream
    journal: Journal
    pages: ProjectPages
    #: The upstream as pages and files ask it: through the fleet's bucket
    #: where there is one.
    asked: Any = None


@dataclass
class Mirror:
    """
    The parts of one mirror.  C{upstream}, C{journal} and C{pages} are
    those of the index of C{--upstream}; C{indexes} has every index's.
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
    indexes: dict[str, Index] = field(default_factory=dict)
    prefetch: Prefetcher | None = None
    policySources: PolicySources | None = None
    health: Health = field(default_factory=Health)

    def open(self) -> Deferred[None]:
        """
        Replay the journals, clear unfinished downloads and start counting
        the tree (the L{Deferred} fires when it is counted).

        @raise OSError: if the cache directory cannot be used.
        @raise SourceError: if a source of the policy cannot be read.
        """
        for name in self.indexes:
            os.makedirs(self.settings.stateDir(name), exist_ok=True)
        if self.policySources is not None:
            self.policySources.load()
        for index in self.indexes.values():
            index.pages.open()
        if self.policySources is not None:
            self.policySources.start()
        counted = self.tree.open()
        self.metrics.start()
        self.health.opened = True
        return counted

    def close(self) -> None:
        """
        Stop the budget and close the journals, durably, and the access log.
        """
        self.metrics.stop()
        if self.policySources is not None:
            self.policySources.stop()
        if self.prefetch is not None:
            self.prefetch.stop()
        self.tree.close()
        for index in self.indexes.values():
            index.pages.close()
        self.site.accessLog.close()

    def snapshot(self) -> Snapshot:
        """
        The mirror's facts now, for its observers: read here, once, so that
        none of them walks the mirror's parts.
        """
        budget = self.tree.budget
        try:
            total, free = budget.space()
            filesystem: tuple[int, int] | str = (total, free)
            minFree: int | None = budget.limits.minFreeBytes(total)
        except OSError as e:
            filesystem, minFree = e.strerror or str(e), None
        upstreams = [index.upstream for index in self.indexes.values()]

        def slots(kind: str) -> SlotFacts:
            each = [getattr(upstream, kind) for upstream in upstreams]
            return SlotFacts(
                sum(s.limit for s in each), sum(s.limit - s.free for s in each), sum(s.waiting for s in each)
            )

        return Snapshot(
            upstream=self.settings.upstream,
            indexes=tuple(
                IndexFacts(name, index.settings.upstream, index.layout.pagesPath, len(index.pages.known()))
                for name, index in self.indexes.items()
            ),
            downloads=tuple(
                DownloadFacts(d.key.filename, d.key.linkPath, d.received, d.length, d.startedAt)
                for d in self.files.inFlight
            ),
            backlog=self.tree.backlog,
            pageSlots=slots("pageSlots"),
            fileSlots=slots("fileSlots"),
            cache=CacheFacts(
                counted=budget.ready,
                files=budget.histogram.files,
                bytes=budget.used,
                maxBytes=budget.limits.maxSize,
                evictedFiles=budget.evictedFiles,
                evictedBytes=budget.evictedBytes,
                filesystem=filesystem,
                minFreeBytes=minFree,
            ),
            journal=JournalFacts(self.journal.size, self.journal.live, self.journal.compactions),
            prefetch=self.prefetch.figures() if self.prefetch is not None else None,
            policy=self.policySources.figures() if self.policySources is not None else None,
            store=self.files.fleet.figures() if self.files.fleet is not None else None,
        )


def buildMirror(
    settings: Settings,
    client: Any,
    clock: IReactorTime,
    runInThread: RunInThread,
    subscribers: tuple[IMirrorEvents, ...] = (),
    space: Callable[[str], tuple[int, int]] = diskSpace,
    walk: Walk = walkHere,
    clients: Mapping[str, Any] = {},
    bucket: Bucket | None = None,
    storeThreads: RunInThread | None = None,
    journalThreads: RunInThread | None = None,
) -> Mirror:
    """
    A mirror of C{settings.upstream}, and of C{settings.indexes}, over
    C{client} (a C{treq} HTTP client; an index in C{clients}, by name, over
    its own), its files also in C{bucket} (through C{storeThreads}), its
    time from C{clock}, its disk and CPU work through
    C{runInThread} (its journals' records through C{journalThreads}, if
    given), its events to C{subscribers}, its free space read by
    C{space} and its tree walked by C{walk}.
    """
    metrics = MirrorMetrics(clock)
    status = MirrorStatus(clock)
    health = Health()
    fleet = (
        None if bucket is None
        else Fleet(
            bucket, clock, storeThreads or runInThread, redirect=settings.storeRedirect,
            publicURL=settings.storePublicURL,
        )
    )
    events = Fanout((LogEvents(), metrics, status, *subscribers))
    policy = Policy(
        settings.cooldown,
        settings.cooldownAllowUnknown,
        frozenset(settings.cooldownExempt),
        excludeNewer=settings.excludeNewer,
        denyAdvisories=settings.denyAdvisories,
        rules=settings.rules,
    )
    policySources = PolicySources(
        policy,
        clock,
        runInThread,
        rules=settings.rules,
        policyFile=settings.policyFile,
        advisories=settings.advisories,
        refresh=settings.advisoriesRefresh,
        client=client,
        keepIn=settings.cacheDir,
    )
    indexes: dict[str, Index] = {}
    for each in settings.allIndexes:
        upstream = Upstream(
            clients.get(each.name, client),
            each.upstream,
            clock,
            timeout=settings.timeout,
            maxPageBytes=settings.maxPageBytes,
            concurrency=settings.pageRequests,
            fileConcurrency=settings.fileRequests,
            idleTimeout=settings.idleTimeout,
            events=events,
            credentials=each.credentials,
            fileHosts=settings.fileHosts,
        )
        asked: Any = upstream if fleet is None else FleetUpstream(upstream, fleet, each.name)
        journal = Journal(os.path.join(settings.stateDir(each.name), "journal.jsonl"))
        layout = PYPI if each.name == DEFAULT_INDEX else IndexLayout(each.name)
        pages = ProjectPages(
            journal,
            asked,
            clock,
            runInThread,
            ttl=each.ttl if each.ttl is not None else settings.ttl,
            revalidateFloor=settings.revalidateFloor,
            staleAfter=settings.staleAfter,
            retryAfter=settings.retryAfter,
            notFoundFor=settings.revalidateFloor if settings.notFoundTTL is None else settings.notFoundTTL,
            events=events,
            policy=policy,
            layout=layout,
            renderCacheBytes=settings.renderCacheBytes,
            writeInThread=journalThreads,
        )
        indexes[each.name] = Index(each, layout, upstream, journal, pages, asked)
    tree = FileTree(
        settings.cacheDir,
        clock,
        runInThread,
        limits=settings.limits,
        events=events,
        otherBytes=lambda: sum(index.journal.size for index in indexes.values()),
        space=space,
        layouts=tuple(index.layout for index in indexes.values()),
        touchEvery=settings.touchEvery,
        walk=walk,
    )
    main = indexes[DEFAULT_INDEX]
    files = FileStore(
        tree, main.pages, main.asked, clock, runInThread, clientTimeout=settings.clientTimeout, events=events
    )
    if fleet is not None:
        fleet.attach(tree)
        files.fleet = fleet
        fleet.redownload = lambda key: files.download(key, background=True)
        events.subscribe(fleet)
        health.parts["store"] = fleet.health
    prefetch = Prefetcher(
        {name: index.pages for name, index in indexes.items()},
        files,
        clock,
        runInThread,
        mode=settings.prefetch,
        depth=settings.prefetchDepth,
        requests=settings.prefetchRequests,
    )
    if prefetch.mode != "off":
        events.subscribe(prefetch)
    shownMetrics = None if settings.metricsListen else metrics
    webs = []
    for index in indexes.values():
        index.pages.onDelisted = tree.pin
        if index is not main:
            files.add(index.settings.name, index.pages, index.asked)
        legacy = LegacyJSON(index.pages, index.upstream, clock, runInThread)
        legacy.metadataOf = files.keptMetadata
        webs.append(
            MirrorWeb(index.pages, files, status, shownMetrics, index.layout, settings.accelRedirect, legacy, health)
        )
    resource = webs[0].resource(webs[1:])
    if settings.auth:
        checkers = [checkerFor(kind, path, clock, runInThread) for kind, path in settings.auth]
        bearer = any(kind == "tokens" for kind, _ in settings.auth)
        resource = Guard(resource, checkers[0] if len(checkers) == 1 else AnyOf(checkers), clock, bearer)
    site = MirrorSite(resource, metrics, AccessLog(settings.accessLog), timeout=settings.clientTimeout, reactor=clock)
    mirror = Mirror(
        settings,
        events,
        main.upstream,
        main.journal,
        main.pages,
        tree,
        files,
        metrics,
        status,
        resource,
        site,
        indexes,
        prefetch,
        policySources,
        health,
    )
    health.parts["upstream"] = lambda: (
        None if status.lastFailure is None or (status.lastSuccess or 0) > status.lastFailure
        else f"upstream failing: {status.lastFailureReason}"
    )
    metrics.watch(mirror.snapshot)
    status.watch(mirror.snapshot)
    return mirror
