"""
The mirror as Twisted services: L{MirrorService} owns the cache directory
(its lock, journal and tree) and the pooled HTTP client to upstream;
L{Listening} serves it on one endpoint; L{TailmirrorService} holds them
together, says in its first log line what it runs with, and ends the
process with one plain line when it cannot start.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, NoReturn

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import CannotListenError
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.logger import Logger

from ._mirror import Index, Settings, buildMirror
from ._version import __version__
from .base import IMirrorEvents, returnBigBlocks
from .files import Bucket, BucketError, CacheLock, LockHeld, parseStore, walkInChild
from .pages import SourceError
from .upstream import Clients, Reach, origin
from .web import AccessLog, MetricsOnly, MirrorSite

__all__ = ["Listening", "MirrorService", "Settings", "StartFailure", "TailmirrorService"]

log = Logger()


class StartFailure(Exception):
    """
    The mirror cannot start: one line that names the option at fault.
    """


# Daemonized, twistd's parent prints the failure's class and the start of
# its line: keep the class's name short.
StartFailure.__module__ = "tailmirror"


#: Threads for the store's calls (uploads, reads of pages, leases) at once.
STORE_THREADS = 8

#: glibc's C{mallopt} parameter for the most malloc arenas.
_M_ARENA_MAX = -8


def limitMallocArenas(arenas: int = 2) -> bool:
    """
    Have glibc's malloc keep at most C{arenas} arenas for all threads, as
    C{MALLOC_ARENA_MAX} would: the thread pool parses big pages, and an
    arena for each of its threads keeps what each freed (tens of MB).
    Call it before any thread starts.  Whether it took (glibc only).
    """
    if sys.platform != "linux" or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


class MirrorService(Service):
    """
    A mirror of one upstream index, keeping its state in C{cacheDir}.
    """

    def __init__(self, reactor: Any, settings: Settings, subscribers: tuple[IMirrorEvents, ...] = ()) -> None:
        self.settings = settings
        self._reactor = reactor
        self._previousHandler: Any = None
        self.cacheDir = settings.cacheDir
        self._lock = CacheLock(settings.cacheDir)
        # As many idle connections per host as requests run at once.
        allowed = list(settings.fileHosts)
        if settings.storeEndpoint:
            # The store's presigned URLs, which the mirror reads objects by.
            allowed.append(origin(settings.storeEndpoint)[1:])
        reach = Reach([origin(each.upstream)[1:] for each in settings.allIndexes], allowed)
        self._clients = Clients(reactor, settings.timeout, settings.pageRequests + settings.fileRequests, reach)
        client = self._clients.clientFor(settings.caCerts)
        perIndex = {each.name: self._clients.clientFor(each.caCerts or settings.caCerts) for each in settings.indexes}
        limitMallocArenas()
        pool = reactor.getThreadPool()

        def runInThread(f: Any, *args: Any) -> Any:
            return deferToThreadPool(reactor, pool, f, *args)

        self._bucket: Bucket | None = None
        self._bucketError: str | None = None
        #: The store's calls block for as long as a big file's upload
        #: takes: they have threads of their own, so that pages are never
        #: kept waiting for the pool behind them.
        self._storePool = ThreadPool(minthreads=0, maxthreads=STORE_THREADS, name="tailmirror-store")

        def inStoreThread(f: Any, *args: Any) -> Any:
            return deferToThreadPool(reactor, self._storePool, f, *args)

        #: The journals' records are written in a thread of their own: one
        #: at a time, whatever the pool is busy with.
        self._journalPool = ThreadPool(minthreads=1, maxthreads=1, name="tailmirror-journal")

        def inJournalThread(f: Any, *args: Any) -> Any:
            return deferToThreadPool(reactor, self._journalPool, f, *args)

        if settings.store is not None:
            try:
                name, prefix = parseStore(settings.store)
                self._bucket = Bucket(name, prefix, settings.storeEndpoint)
            except (ValueError, BucketError) as e:
                self._bucketError = str(e)
        # The tree's walks (its count at start, eviction) run in a child
        # process: in a thread, a big tree's walk would hold the interpreter
        # lock from the reactor for most of a minute.
        self.mirror = buildMirror(
            settings, client, reactor, runInThread, subscribers, walk=walkInChild, clients=perIndex,
            bucket=self._bucket, storeThreads=inStoreThread, journalThreads=inJournalThread,
        )
        self.pages = self.mirror.pages
        self.files = self.mirror.files
        self.tree = self.mirror.tree
        self.site = self.mirror.site
        #: The metrics endpoint's site, for C{--metrics-listen}.
        self.metricsSite = MirrorSite(
            MetricsOnly(self.mirror.metrics, self.mirror.health),
            self.mirror.metrics,
            AccessLog("off"),
            timeout=settings.clientTimeout,
            reactor=reactor,
        )

    def startService(self) -> None:
        """
        Take the cache directory, replay the journal and clear unfinished
        downloads before the mirror answers anyone.

        @raise StartFailure: if the cache directory cannot be had.
        """
        # Before the journal's pages are read: see _memory.
        returnBigBlocks()
        if self._bucketError is not None:
            raise StartFailure(f"--store: {self._bucketError}")
        if self._bucket is not None:
            try:
                self._bucket.check()
            except BucketError as e:
                raise StartFailure(f"--store {self.settings.store}: {e}") from None
            self._storePool.start()
        # The reason comes before the path: daemonized, twistd's parent
        # shows only the line's first hundred bytes.
        where = self.cacheDir
        try:
            os.makedirs(self.cacheDir, exist_ok=True)
        except OSError as e:
            raise StartFailure(f"--cache-dir cannot be created ({e.strerror}): {where}") from None
        try:
            self.site.accessLog.open()
        except OSError as e:
            raise StartFailure(f"--access-log cannot be opened ({e.strerror}): {self.settings.accessLog}") from None
        try:
            self._lock.acquire()
        except LockHeld as e:
            holder = "another process" if e.pid is None else f"process {e.pid}"
            raise StartFailure(f"--cache-dir is in use by another tailmirror ({holder}): {where}") from None
        except OSError as e:
            raise StartFailure(f"--cache-dir cannot be written ({e.strerror}): {where}") from None
        try:
            self.mirror.open()
        except SourceError as e:
            self._lock.release()
            raise StartFailure(str(e)) from None
        except OSError as e:
            self._lock.release()
            raise StartFailure(f"--cache-dir cannot be written ({e.strerror}): {where}") from None
        try:
            fd, probe = self.tree.temporary()
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            self._lock.release()
            raise StartFailure(f"--cache-dir cannot be written ({e.strerror}): {where}") from None
        self._previousHandler = signal.signal(signal.SIGUSR2, self._compactOnSignal)
        self._journalPool.start()
        super().startService()

    async def probeUpstream(self) -> None:
        """
        Ask each index's root once whether it is a Simple API index, and
        warn if one does not look like one, or cannot be reached.
        """
        await gatherResults(
            [Deferred.fromCoroutine(self._probe(index)) for index in self.mirror.indexes.values()]
        )

    async def _probe(self, index: Index) -> None:
        status = self.mirror.status
        main = index.upstream is self.mirror.upstream
        url = index.settings.upstream
        try:
            warning = await index.upstream.probeRoot()
        except Exception as e:
            reason = getattr(e, "reason", None) or str(e)
            if main:
                status.upstreamFailed(reason)
            log.warn(
                "cannot reach upstream {upstream} ({reason}); the mirror serves what it has "
                "and asks upstream again at each request it cannot answer alone",
                upstream=url,
                reason=reason,
            )
            return
        if main:
            status.upstreamAnswered()
        if warning is not None:
            if main:
                status.upstreamWarning = warning
            log.warn("{reason}", upstream=url, reason=warning)

    def _compactOnSignal(self, signum: int, frame: Any) -> None:
        """
        C{SIGUSR2} asks for the journals to be compacted now.
        """
        for index in self.mirror.indexes.values():
            self._reactor.callFromThread(index.pages.compact)

    def stopService(self) -> Any:
        """
        Close the connections to upstream, the journal and the lock.
        """
        wasRunning = self.running
        super().stopService()
        if self._previousHandler is not None:
            signal.signal(signal.SIGUSR2, self._previousHandler)
            self._previousHandler = None
        if self._journalPool.started:
            # A record being written is written whole before the journal
            # is closed.
            self._journalPool.stop()
        if wasRunning:
            self.mirror.close()
            self._lock.release()
        if self._storePool.started:
            self._storePool.stop()
        return self._clients.close()


def _why(e: BaseException) -> str:
    """
    The one-line reason of a failure to listen.
    """
    socketError = getattr(e, "socketError", None)
    strerror = getattr(socketError, "strerror", None) or getattr(e, "strerror", None)
    if strerror:
        return str(strerror).lower()
    return " ".join(str(e).split())[:200] or type(e).__name__


class Listening(StreamServerEndpointService):
    """
    The mirror's site on one endpoint, which must listen at start.
    """

    _raiseSynchronously = True

    def __init__(self, description: str, endpoint: Any, factory: Any, option: str = "--listen") -> None:
        super().__init__(endpoint, factory)
        self.description = description
        self.option = option
        self.port: Any = None

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except (CannotListenError, OSError, ValueError, TypeError) as e:
            raise StartFailure(f"{self.option} cannot listen ({_why(e)}): {self.description}") from None
        assert self._waitingForPort is not None
        self._waitingForPort.addCallback(self._listening)

    def _listening(self, port: Any) -> Any:
        if port is None:
            # It failed later, and Twisted logged why: never run on deaf.
            try:
                fail(StartFailure(f"{self.option} cannot listen (the log says why): {self.description}"))
            except StartFailure as e:
                _plainStartFailure(StartFailure, e, None)
                os._exit(1)
        self.port = port
        return port

    def address(self) -> str:
        """
        Where this endpoint listens, for people.
        """
        if self.port is None:
            return self.description
        host = self.port.getHost()
        if hasattr(host, "port"):
            return f"http://{host.host}:{host.port}/"
        return str(getattr(host, "name", None) or self.description)


def fail(failure: StartFailure) -> NoReturn:
    """
    End the start for a failure: the reason in the log, then raised out of
    twistd, which under C{-n} ends the process with status 1 and just the
    reason on standard error (L{_plainStartFailure}); daemonized, twistd
    hands it to its waiting parent, which prints it and exits 1.  (An exit
    without raising would leave that parent waiting for good.)
    """
    log.critical("tailmirror cannot start: {reason}", reason=str(failure))
    sys.excepthook = _plainStartFailure
    raise failure


def _plainStartFailure(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    """
    A failure to start that reaches the top of twistd: one plain line, no
    traceback.
    """
    stream = sys.__stderr__
    if isinstance(value, StartFailure) and stream is not None:
        stream.write(f"tailmirror: {value}\n")
        stream.flush()
    else:
        sys.__excepthook__(kind, value, tb)


class TailmirrorService(MultiService):
    """
    The mirror and its endpoints: every endpoint listens and the cache
    directory is the mirror's, or the process ends with one plain line.
    """

    def __init__(self, mirror: MirrorService, upstreamSource: str) -> None:
        super().__init__()
        self.mirror = mirror
        self.upstreamSource = upstreamSource
        #: Warnings of the options' checks, logged after the first line.
        self.warnings: list[str] = []
        mirror.setServiceParent(self)

    def listen(self, description: str, endpoint: Any) -> Listening:
        """
        Serve the mirror on one more endpoint.
        """
        listening = Listening(description, endpoint, self.mirror.site)
        listening.setServiceParent(self)
        return listening

    def listenForMetrics(self, description: str, endpoint: Any) -> Listening:
        """
        Serve the metrics, alone, on an endpoint of their own.
        """
        listening = Listening(description, endpoint, self.mirror.metricsSite, "--metrics-listen")
        listening.setServiceParent(self)
        return listening

    @property
    def listening(self) -> list[Listening]:
        return [s for s in self if isinstance(s, Listening)]

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except StartFailure as e:
            fail(e)

    def startService(self) -> None:
        try:
            for listening in self.listening:
                if listening._waitingForPort is None:  # not started by twistd's privileged start
                    listening.privilegedStartService()
            # Every endpoint listens: say what the mirror runs with before
            # it opens its cache.
            self._announce()
            super().startService()
        except StartFailure as e:
            fail(e)
        self.probing = Deferred.fromCoroutine(self.mirror.probeUpstream())

    def _announce(self) -> None:
        """
        The first line the mirror logs.
        """
        settings = self.mirror.settings
        credentials = "" if settings.credentials is None else f", with {settings.credentials}"
        log.info(
            "tailmirror {version} mirroring {upstream} (from {source}{credentials}), listening on {addresses}; "
            "cache {cacheDir} ({limits}){store}",
            version=__version__,
            upstream=settings.upstream,
            source=self.upstreamSource,
            credentials=credentials,
            addresses=", ".join(s.address() for s in self.listening if s.option == "--listen")
            + "".join(f", metrics on {s.address()}metrics" for s in self.listening if s.option != "--listen"),
            cacheDir=os.path.abspath(settings.cacheDir),
            limits=settings.limits.describe(),
            store="" if settings.store is None else f"; store {settings.store}"
            + ("" if settings.storeEndpoint is None else f" at {settings.storeEndpoint}"),
        )
        for warning in self.warnings:
            log.warn("{warning}", warning=warning)
