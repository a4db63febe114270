"""
An in-memory mirror for unit tests: the real resource tree, driven through
C{treq.testing.RequestTraversalAgent} (so tests see the bytes and headers
as sent, gzip included), fetching from a L{FakeIndex} through
C{treq.testing.StubTreq}, with a L{Clock} for time and thread work done
synchronously.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

import treq
from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers

from tailmirror._files import FileStore
from tailmirror._journal import Journal
from tailmirror._pages import ProjectPages
from tailmirror._upstream import Upstream
from tailmirror._web import MirrorWeb

from .fakeindex import FakeIndex, FakeProject

UPSTREAM = "http://upstream.test/simple/"
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
        globalLogPublisher.addObserver(self.events.append)
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


class Harness:
    """
    A mirror over a fake index, all in memory.
    """

    def __init__(
        self,
        projects: list[FakeProject] = (),  # type: ignore[assignment]
        cacheDir: str | None = None,
        ttl: float = 900.0,
        timeout: float = 15.0,
        clock: Clock | None = None,
        index: FakeIndex | None = None,
        **upstreamOptions: Any,
    ) -> None:
        if clock is None:
            clock = Clock()
            clock.advance(1_700_000_000)
        self.clock = clock
        self.index = index or FakeIndex(projects)
        self.cacheDir = cacheDir or tempfile.mkdtemp(prefix="tailmirror-test-")
        self.journalPath = os.path.join(self.cacheDir, "journal.jsonl")
        self.upstreamHTTP = StubTreq(self.index)
        self.upstream = Upstream(
            self.upstreamHTTP, UPSTREAM, self.clock, timeout=timeout, **upstreamOptions
        )
        self.pages = ProjectPages(
            Journal(self.journalPath), self.upstream, self.clock, runSynchronously, ttl=ttl
        )
        self.pages.open()
        self.files = FileStore(self.cacheDir, self.pages, self.upstream, self.clock, runSynchronously)
        self.files.open()
        self.http = RequestTraversalAgent(MirrorWeb(self.pages, self.files).resource())

    def restart(self, **kwargs: Any) -> "Harness":
        """
        A new mirror on the same cache directory, index and clock.
        """
        self.pages.close()
        kwargs.setdefault("clock", self.clock)
        return Harness(cacheDir=self.cacheDir, index=self.index, **kwargs)

    def flush(self) -> None:
        """
        Let every in-memory request in flight make progress.
        """
        for _ in range(20):
            self.upstreamHTTP.flush()
            self.http.flush()

    def start(self, method: str, path: str, headers: dict[str, str] | None = None) -> Deferred[Any]:
        """
        Start a request; its L{Deferred} fires with the response.
        """
        raw = Headers({k: [v] for k, v in (headers or {}).items()})
        return self.http.request(method.encode(), (MIRROR + path).encode(), raw)

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
        # A body cut short arrives as the exception that says so.
        content = body[0].value if isinstance(body[0], Failure) else body[0]
        return Answer(response.code, headers, content, length)

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> Answer:
        """
        One whole request.
        """
        return self.finish(self.start(method, path, headers))
