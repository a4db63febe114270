"""
An in-memory mirror for unit tests: the real resource tree, driven through
C{treq.testing.RequestTraversalAgent} (so tests see the bytes and headers
as sent, gzip included), fetching from a L{FakeIndex} through
C{treq.testing.StubTreq}, with a L{Clock} for time and thread work done
synchronously.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, cast

import treq
from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tailmirror._mirror import IndexSettings, Settings, buildMirror
from tailmirror._service import MirrorService
from tailmirror.base._events import IMirrorEvents
from tailmirror.base._layout import mirrorPath

from .fakeindex import FakeFile, FakeIndex, FakeProject

UPSTREAM = "http://upstream.test/simple/"
#: Headers that ask for the JSON form of a page.
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
MIRROR = "http://mirror.test"
PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, "
    "application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
)
UV_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, "
    "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
)


class CapturedLog:
    """
    The log events emitted while a test runs.
    """

    def __init__(self, test: Any) -> None:
        self.events: list[dict[str, Any]] = []
        # A callable is an observer; it cannot declare that it provides ILogObserver.
        globalLogPublisher.addObserver(cast(ILogObserver, self.events.append))
        test.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def text(self) -> str:
        """
        Every event, formatted, a line each.
        """
        return "\n".join(formatEvent(e) for e in self.events)

    def formats(self, level: LogLevel) -> list[str]:
        """
        The format strings of the events at C{level} or above.
        """
        return [
            e.get("log_format", "") for e in self.events
            if e.get("log_level", LogLevel.info) >= level
        ]

    def failures(self) -> list[dict[str, Any]]:
        """
        The events that carry a failure.
        """
        return [e for e in self.events if "log_failure" in e]


def runSynchronously(f: Any, *args: Any) -> Deferred[Any]:
    """
    The unit tests' stand-in for a thread pool.
    """
    return maybeDeferred(f, *args)


class Threads:
    """
    The thread pool's stand-in for tests of what leaves the reactor thread:
    it runs each job at once, as L{runSynchronously} does, and records the
    name of its function; a job whose function is named in C{held} waits
    until L{release}, as on a busy disk.
    """

    def __init__(self, held: tuple[str, ...] = ()) -> None:
        self.held = set(held)
        self.calls: list[str] = []
        self.waiting: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []

    def __call__(self, f: Any, *args: Any) -> Deferred[Any]:
        name = getattr(f, "__name__", repr(f))
        self.calls.append(name)
        if name in self.held:
            d: Deferred[Any] = Deferred()
            self.waiting.append((d, f, args))
            return d
        return maybeDeferred(f, *args)

    def release(self) -> None:
        """
        Run the jobs held so far.
        """
        waiting, self.waiting = self.waiting, []
        for d, f, args in waiting:
            maybeDeferred(f, *args).chainDeferred(d)


@dataclass
class Answer:
    """
    A response as the tests see it.
    """

    code: int
    headers: dict[str, str]
    body: bytes
    length: int | None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@implementer(IMirrorEvents)
class RecordedEvents:
    """
    Every event a mirror fires, as C{(name, *args)}, in order.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args: self.seen.append((name, *args))

    def named(self, name: str) -> list[tuple[Any, ...]]:
        """
        The arguments of every event called C{name}.
        """
        return [e[1:] for e in self.seen if e[0] == name]


class Space:
    """
    A filesystem's size and free space as the tests say they are: by
    default, plenty of both.
    """

    def __init__(self, total: int = 1 << 40, free: int = 1 << 39) -> None:
        self.total = total
        self.free = free

    def __call__(self, path: str) -> tuple[int, int]:
        return self.total, self.free


class Harness:
    """
    A mirror over a fake index, all in memory, built as the service builds
    one (L{buildMirror}); any L{Settings} field may be given.
    """

    def __init__(
        self,
        projects: list[FakeProject] = (),  # type: ignore[assignment]
        cacheDir: str | None = None,
        clock: Clock | None = None,
        index: FakeIndex | None = None,
        space: Space | None = None,
        others: dict[str, FakeIndex] | None = None,
        threads: Any = runSynchronously,
        **settings: Any,
    ) -> None:
        if clock is None:
            clock = Clock()
            clock.advance(1_700_000_000)
        self.clock = clock
        self.index = index or FakeIndex(projects)
        self.cacheDir = cacheDir or tempfile.mkdtemp(prefix="tailmirror-test-")
        self.journalPath = os.path.join(self.cacheDir, "journal.jsonl")
        self.upstreamHTTP = StubTreq(self.index)
        self.events = RecordedEvents()
        self.space = space or Space()
        #: Other indexes, by name, each at C{http://<name>.test/simple/}.
        self.others = others or {}
        self.otherHTTP = {name: StubTreq(index) for name, index in self.others.items()}
        # Each test of another part sees only that part's upstream
        # requests: the prefetch is on where a test says (tests/test_prefetch.py).
        settings.setdefault("prefetch", "off")
        settings.setdefault(
            "indexes", tuple(IndexSettings(name, f"http://{name}.test/simple/") for name in self.others)
        )
        self.settings = Settings(UPSTREAM, self.cacheDir, **settings)
        self.mirror = buildMirror(
            self.settings,
            self.upstreamHTTP,
            self.clock,
            threads,
            (self.events,),
            self.space,
            clients=self.otherHTTP,
        )
        self.upstream = self.mirror.upstream
        self.pages = self.mirror.pages
        self.tree = self.mirror.tree
        self.files = self.mirror.files
        self.mirror.open()
        self.http = RequestTraversalAgent(self.mirror.resource)
        # Requests go through the mirror's own site, which counts and logs
        # them as the service's does.
        self.http._serverFactory = self.mirror.site

    def restart(self, **kwargs: Any) -> "Harness":
        """
        A new mirror on the same cache directory, index, clock and space.
        """
        self.mirror.close()
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("space", self.space)
        kwargs.setdefault("others", self.others)
        return Harness(cacheDir=self.cacheDir, index=self.index, **kwargs)

    def flush(self) -> None:
        """
        Let every in-memory request in flight make progress.
        """
        for _ in range(20):
            self.upstreamHTTP.flush()
            for other in self.otherHTTP.values():
                other.flush()
            self.http.flush()

    def start(self, method: str, path: str, headers: dict[str, str] | None = None) -> Deferred[Any]:
        """
        Start a request; its L{Deferred} fires with the response.
        """
        raw = Headers({k: [v] for k, v in (headers or {}).items()})
        d: Deferred[Any] = self.http.request(method.encode(), (MIRROR + path).encode(), raw)
        return d

    def finish(self, d: Deferred[Any]) -> Answer:
        """
        Pump until a started request is answered, and read it whole.
        """
        self.flush()
        results: list[Any] = []
        d.addBoth(results.append)
        self.flush()
        if not results:
            raise AssertionError("the mirror did not answer")
        response = results[0]
        if not hasattr(response, "code"):
            response.raiseException()
        body: list[Any] = []
        treq.content(response).addBoth(body.append)
        self.flush()
        headers = {
            k.decode().lower(): b", ".join(v).decode()
            for k, v in response.headers.getAllRawHeaders()
        }
        length = response.length if isinstance(response.length, int) else None
        if not body:
            raise AssertionError("the response body never ended")
        # A body cut short arrives as the exception that says so: the tests
        # look for it with isinstance, and take Answer.body as bytes otherwise.
        content = body[0].value if isinstance(body[0], Failure) else body[0]
        return Answer(response.code, headers, cast(bytes, content), length)

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> Answer:
        """
        One whole request.
        """
        return self.finish(self.start(method, path, headers))


def filePath(f: FakeFile, metadata: bool = False) -> str:
    """
    The mirror's path of a fake file, as its pages link it.
    """
    path = "/" + mirrorPath(f.filename, "", {"sha256": f.sha256})
    return path + ".metadata" if metadata else path


def treeFiles(h: Harness, under: str = "+files") -> list[str]:
    """
    The files in a part of the cache directory.
    """
    found = []
    for root, _, names in os.walk(os.path.join(h.cacheDir, under)):
        found += [os.path.relpath(os.path.join(root, n), h.cacheDir) for n in names]
    return sorted(found)


def finish(request: Any) -> None:
    """
    End a held upstream response, unless its client has already hung up
    (as it does on the last byte of a body with a length).
    """
    if not request._disconnected:
        request.finish()


def linksOf(answer: Any) -> dict[str, dict[str, Any]]:
    """
    The file entries of a JSON project page, by file name.
    """
    return {f["filename"]: f for f in json.loads(answer.body)["files"]}


def startMirror(test: TestCase, settings: Settings) -> tuple[MirrorService, str]:
    """
    A real mirror service listening on 127.0.0.1, stopped when the test
    ends; and its root URL, without the trailing slash.
    """
    mirror = MirrorService(reactor, settings)
    mirror.startService()
    test.addCleanup(mirror.stopService)
    port = reactor.listenTCP(0, mirror.site, interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted types it ServerFactory[_ProtoWithFactory] only
    test.addCleanup(port.stopListening)
    address = port.getHost()
    assert isinstance(address, IPv4Address)
    return mirror, f"http://127.0.0.1:{address.port}"


#: Times for the policy's tests: a day, and a fixed "now".
DAY = 86400.0
NOW = datetime(2025, 6, 1, tzinfo=timezone.utc).timestamp()


def iso(t: float) -> str:
    """
    A time as upstream gives an upload time.
    """
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def policyClock() -> Clock:
    """
    A clock at L{NOW}.
    """
    c = Clock()
    c.advance(NOW)
    return c
