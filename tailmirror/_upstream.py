"""
Fetching project pages and files from the upstream index.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Coroutine, Protocol as Structural, TypeVar, cast
from urllib.parse import urldefrag

from OpenSSL import SSL
from service_identity import VerificationError
from treq.cookies import IndexableCookieJar
from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.interfaces import IProtocolFactory, IPushProducer, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import (
    RequestGenerationFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.error import InfiniteRedirection, SchemeNotSupported
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS, IResponse
from zope.interface import implementer

from ._errors import NotFound, UpstreamError
from ._events import IMirrorEvents, NoEvents
from ._http import readInBulk, writeThrough
from ._idle import IdleTimer
from ._version import __version__

__all__ = [
    "BodyReader", "FileBody", "FileSink", "Fetched", "NoCookies", "Priority", "Ranged", "Slots", "Upstream",
    "UpstreamEndpoints", "priorityOf", "typeName",
]

#: What the mirror asks upstream for: JSON first, for it carries sizes and
#: upload times; HTML when that is all upstream speaks.
ACCEPT = (
    "application/vnd.pypi.simple.v1+json, "
    "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
)
USER_AGENT = f"tailmirror/{__version__}"
T = TypeVar("T")


class Priority:
    """
    Whose a request to upstream is: a client's, or a prefetch's (in the
    C{background}) until a client asks for the same thing and L{raiseTo}
    makes it a client's: a request of it still waiting for a slot then
    waits with the clients', so the client does not wait behind them.
    """

    def __init__(self, background: bool = False) -> None:
        self.background = background
        self._raised: list[Callable[[], object]] = []

    def raiseTo(self, background: bool) -> None:
        """
        Make it a client's, if C{background} is false.
        """
        if self.background and not background:
            self.background = False
            raised, self._raised = self._raised, []
            for f in raised:
                f()

    def whenRaised(self, f: Callable[[], object]) -> None:
        """
        Call C{f} once, when it becomes a client's.
        """
        if self.background:
            self._raised.append(f)


def priorityOf(background: bool | Priority) -> Priority:
    """
    A L{Priority}, from a flag or as it is.
    """
    return background if isinstance(background, Priority) else Priority(background)


class Slots:
    """
    A few requests at a time, clients' first: a background request (a
    prefetch) waits while any client's request waits, and takes a slot
    only when no client's is waiting for one.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.free = limit
        self._waiting: deque[Deferred[None]] = deque()
        self._background: deque[Deferred[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting) + len(self._background)

    def acquire(self, background: bool | Priority = False) -> Deferred[None]:
        """
        A L{Deferred} that fires when a slot is had; cancelling it gives up
        the wait.  A background request whose L{Priority} is raised while it
        waits waits from then on as a client's.
        """
        priority = priorityOf(background)
        if self.free > 0 and not self._waiting and not (priority.background and self._background):
            self.free -= 1
            return succeed(None)
        d: Deferred[None] = Deferred(self._giveUp)
        if priority.background:
            self._background.append(d)
            priority.whenRaised(lambda: self._promote(d))
        else:
            self._waiting.append(d)
        return d

    def _giveUp(self, d: Deferred[None]) -> None:
        for queue in (self._waiting, self._background):
            if d in queue:
                queue.remove(d)

    def _promote(self, d: Deferred[None]) -> None:
        """
        A background request waits as a client's from now on.
        """
        if d in self._background:
            self._background.remove(d)
            self._waiting.append(d)

    def release(self) -> None:
        """
        Give a slot back, to the longest waiting client first.
        """
        queue = self._waiting or self._background
        if queue:
            queue.popleft().callback(None)
        else:
            self.free += 1

    async def run(self, work: Any, background: bool | Priority = False) -> Any:
        """
        C{work()} (a L{Deferred}) in a slot.
        """
        await self.acquire(background)
        try:
            return await work()
        finally:
            self.release()


@implementer(IAgentEndpointFactory)
class UpstreamEndpoints:
    """
    Where an L{Agent} connects for a URL, as its own default does (TLS for
    https, checked by C{policy}), with connections that read in bulk.
    """

    def __init__(self, reactor: Any, policy: IPolicyForHTTPS, connectTimeout: float | None = None) -> None:
        self._reactor = reactor
        self._policy = policy
        self._connectTimeout = connectTimeout

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        try:
            host = uri.host.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"the host name {uri.host!r} is not ASCII") from None
        if uri.scheme not in (b"http", b"https"):
            raise SchemeNotSupported(f"unsupported scheme: {uri.scheme!r}")

        def make() -> IStreamClientEndpoint:
            kwargs: dict[str, Any] = {} if self._connectTimeout is None else {"timeout": self._connectTimeout}
            endpoint: IStreamClientEndpoint = HostnameEndpoint(self._reactor, host, uri.port, **kwargs)
            if uri.scheme == b"https":
                endpoint = wrapClientTLS(self._policy.creatorForNetloc(uri.host, uri.port), endpoint)
            return endpoint

        return _Bulk(make)


@implementer(IStreamClientEndpoint)
class _Bulk:
    """
    An endpoint whose connections read up to L{_http.BULK} bytes at a time
    and write through (L{_http.writeThrough}), made only when a connection is: the L{Agent} asks for one for every
    request, most of which reuse a pooled connection, and TLS options cost a
    new context each.
    """

    def __init__(self, make: Callable[[], IStreamClientEndpoint]) -> None:
        self._make = make

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        def tune(protocol: Any) -> Any:
            readInBulk(protocol.transport)
            writeThrough(protocol.transport)
            return protocol

        return self._make().connect(factory).addCallback(tune)


class NoCookies(IndexableCookieJar):
    """
    A cookie jar that keeps none: what the mirror asks upstream is the same
    whichever client it asks for, and nothing upstream sets one answer
    carries over to the next.
    """

    def add_cookie_header(self, request: Any) -> None:
        pass

    def extract_cookies(self, response: Any, request: Any) -> None:
        pass


class PageTooLarge(Exception):
    """
    An upstream body grew past the cap.
    """


@dataclass
class Fetched:
    """
    An upstream answer: C{status} 200 with a body, or 304.
    """

    status: int
    url: str
    etag: str | None = None
    contentType: str = ""
    body: bytes = b""
    #: Upstream's C{X-PyPI-Last-Serial}, if it gave one.
    lastSerial: str | None = None


class BodyReader(Protocol):
    """
    Reads a response body: L{done} fires at its end, or fails with why it
    did not end well.  Cancelling L{done} drops the connection.
    """

    def __init__(self) -> None:
        self.done: Deferred[Any] = Deferred(lambda d: self.stop())

    def stop(self) -> None:
        """
        Drop the connection; the body will not end well.
        """
        if self.transport is not None:
            cast(IPushProducer, self.transport).stopProducing()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        # A body without a length ends when the connection does.
        self.end(None if reason.check(ResponseDone, PotentialDataLoss) else reason)

    def end(self, failure: Failure | None) -> None:
        """
        The body ended, well or with C{failure}; only the first end counts.
        """
        if self.done.called:
            return
        if failure is None:
            self.done.callback(self.result())
        else:
            self.done.errback(failure)

    def result(self) -> Any:
        """
        What L{done} fires with when the body ends well.
        """
        return None


class _CappedBody(BodyReader):
    """
    Collect a response body up to a cap: a body past it fails with
    L{PageTooLarge}, or, if only its C{head} is wanted, ends there, the
    rest unread.
    """

    def __init__(self, cap: int, head: bool = False, idle: tuple[IReactorTime, float] | None = None) -> None:
        super().__init__()
        self.cap = cap
        self.head = head
        self.parts: list[bytes] = []
        self.size = 0
        self._timer = None if idle is None else IdleTimer(idle[0], idle[1], self._quiet)

    def connectionMade(self) -> None:
        if self._timer is not None:
            self._timer.start()

    def _quiet(self) -> None:
        """
        Upstream sent nothing for too long: give the body up.
        """
        self.stop()
        self.end(Failure(UpstreamError(504, "upstream stopped sending the page")))

    def end(self, failure: Failure | None) -> None:
        if self._timer is not None:
            self._timer.stop()
        super().end(failure)

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        if self._timer is not None:
            self._timer.poke()
        self.size += len(data)
        if self.size > self.cap:
            self.stop()
            if self.head:
                self.parts.append(data)
                self.end(None)
            else:
                self.end(Failure(PageTooLarge()))
            return
        self.parts.append(data)

    def result(self) -> bytes:
        return b"".join(self.parts)[: self.cap]


class FileSink(Structural):
    """
    Where L{Upstream.fetchFile} puts a file as it arrives.
    """

    def begin(self, length: int | None, body: "FileBody") -> None:
        """
        Upstream answered, with C{length} bytes to come where it says so;
        C{body} may be paused and resumed.  Raising refuses the file before
        any of it is read.
        """

    def write(self, data: bytes) -> None:
        """
        More of the file.  Raising ends the download with that failure.
        """


class FileBody(BodyReader):
    """
    Hands a file's body to a L{FileSink} as it arrives; drops the connection
    if upstream goes quiet for longer than the idle timeout.  Time the sink
    holds upstream back (L{pause}) is not upstream's silence.
    """

    def __init__(self, sink: FileSink, clock: IReactorTime, idle: float) -> None:
        super().__init__()
        self._sink = sink
        self._timer = IdleTimer(clock, idle, self.stop)
        self.paused = False
        #: Bytes received so far.
        self.received = 0

    @property
    def quiet(self) -> bool:
        """
        Whether the body was given up for upstream's silence.
        """
        return self._timer.fired

    def connectionMade(self) -> None:
        if not self.paused:
            self._timer.start()

    def pause(self) -> None:
        """
        Stop reading from upstream for a while.
        """
        if not self.paused and self.transport is not None:
            self.paused = True
            cast(IPushProducer, self.transport).pauseProducing()
            self._timer.pause()

    def resume(self) -> None:
        """
        Read from upstream again.
        """
        if self.paused and self.transport is not None:
            self.paused = False
            cast(IPushProducer, self.transport).resumeProducing()
            if not self.done.called:
                self._timer.resume()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self._timer.poke()
        self.received += len(data)
        try:
            self._sink.write(data)
        except BaseException:
            failure = Failure()
            self.stop()
            self.end(failure)

    def end(self, failure: Failure | None) -> None:
        self._timer.stop()
        super().end(failure)


#: The most of the upstream root read to judge it: the root of a big index
#: lists every project, tens of megabytes.
ROOT_HEAD = 64 * 1024

_SIMPLE_MISSING = "is the Simple API root, often ending in /simple/, missing from the URL?"


def judgeRoot(root: str, code: int, contentType: str, head: bytes) -> str | None:
    """
    What is amiss with an upstream whose root answered C{code} with the
    start of a body, C{head}; L{None} if it looks like a Simple API index.
    """
    where = f"the upstream {root}"
    if code in (404, 410):
        return f"{where} answered {code}: it is not a Simple API index ({_SIMPLE_MISSING})"
    if code != 200:
        return f"{where} answered {code} to the mirror's first request; pages may fail until it answers 200"
    mediaType = contentType.partition(";")[0].strip().lower()
    if mediaType.startswith("application/vnd.pypi.simple."):
        return None
    text = head.lower()
    if mediaType == "application/json" and b'"projects"' in text:
        return None
    if mediaType in ("text/html", "application/xhtml+xml"):
        if b"pypi:repository-version" in text or (b"<script" not in text and b"stylesheet" not in text):
            return None
        return f"{where} answered a web page, not a Simple API index ({_SIMPLE_MISSING})"
    return (
        f"{where} answered {mediaType or 'no content type'}, neither the HTML nor the JSON form "
        f"of a Simple API index ({_SIMPLE_MISSING})"
    )


def readBody(response: IResponse, cap: int, idle: tuple[IReactorTime, float] | None = None) -> Deferred[bytes]:
    """
    Read a response body of at most C{cap} bytes; given C{(clock, seconds)},
    give it up with a 504 if upstream goes quiet for that long.
    """
    protocol = _CappedBody(cap, idle=idle)
    response.deliverBody(protocol)
    return protocol.done


def _inner(failure: Failure) -> list[Failure]:
    """
    The failures a twisted.web client failure wraps, or the failure itself.
    """
    reasons = getattr(failure.value, "reasons", None)
    if failure.check(ResponseFailed, ResponseNeverReceived, RequestGenerationFailed) and reasons:
        return [f for f in reasons if isinstance(f, Failure)] or [failure]
    return [failure]


def _reason(failure: Failure, timeout: float) -> UpstreamError:
    """
    The answer to give for a failed upstream request.
    """
    for inner in _inner(failure):
        if inner.check(InfiniteRedirection):
            return UpstreamError(
                502, "upstream redirected too often (a loop, or a chain of more than 20)"
            )
        if inner.check(SSL.Error, VerificationError):
            summary = " ".join(inner.getErrorMessage().split())[:200]
            return UpstreamError(
                502, f"upstream's TLS certificate was refused: {summary}"
            )
        if inner.check(SchemeNotSupported):
            return UpstreamError(502, "upstream redirected to a URL that is not http(s)")
    if failure.check(ResponseFailed):
        return UpstreamError(502, "upstream broke off its answer")
    if failure.check(TimeoutError):
        return UpstreamError(504, f"upstream did not answer within {timeout:g} s")
    if failure.check(PageTooLarge):
        return UpstreamError(502, "upstream page is larger than the page size cap")
    if failure.check(DNSLookupError):
        return UpstreamError(502, "upstream host name does not resolve")
    if failure.check(ConnectError):
        return UpstreamError(502, "upstream refused or dropped the connection")
    summary = " ".join(failure.getErrorMessage().split())[:200]
    return UpstreamError(502, f"upstream request failed: {typeName(failure)}: {summary}")


def typeName(failure: Failure) -> str:
    """
    The name of a failure's exception type.
    """
    return failure.type.__name__ if failure.type is not None else "failure"


#: The most bytes one range request may bring.
RANGE_MAX = 64 * 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@dataclass(frozen=True)
class Ranged:
    """
    Some bytes of a file, from C{start} on, and the file's whole size.
    """

    start: int
    total: int
    data: bytes


class _Dropped(Protocol):
    """
    A body not wanted: its connection is dropped at once, not read through.
    """

    def connectionMade(self) -> None:
        cast(IPushProducer, self.transport).stopProducing()


class Upstream:
    """
    The upstream index, asked for project pages through a pooled
    C{treq.HTTPClient}, a few requests at a time.
    """

    def __init__(
        self,
        client: Any,
        root: str,
        clock: IReactorTime,
        *,
        timeout: float,
        maxPageBytes: int,
        concurrency: int,
        fileConcurrency: int,
        idleTimeout: float,
        events: IMirrorEvents | None = None,
    ) -> None:
        self._client = client
        self._events = events if events is not None else NoEvents()
        self.root = root if root.endswith("/") else root + "/"
        self._clock = clock
        #: Seconds for a page fetch, whole, and for a file's headers.
        self.timeout = timeout
        #: Seconds a file download may go without a byte from upstream.
        self.idleTimeout = idleTimeout
        self.maxPageBytes = maxPageBytes
        #: Page requests hold one of these.
        self.pageSlots = Slots(concurrency)
        #: Downloads hold a slot of their own from request to last byte, so
        #: long downloads never keep project pages waiting.
        self.fileSlots = Slots(fileConcurrency)

    async def probeRoot(self) -> str | None:
        """
        Ask the root of upstream whether it is a Simple API index, reading
        no more than the start of its answer.

        @return: what is amiss, for a warning; L{None} if it looks right.
        @raise UpstreamError: if upstream cannot be reached.
        """

        async def ask() -> tuple[int, str, bytes]:
            headers = {"Accept": ACCEPT, "User-Agent": USER_AGENT}
            response = await self._client.get(self.root, headers=headers, unbuffered=True)
            reader = _CappedBody(ROOT_HEAD, head=True)
            response.deliverBody(reader)
            head = await reader.done
            return response.code, _header(response, b"content-type") or "", head

        code, contentType, head = await self._within(ask())
        return judgeRoot(self.root, code, contentType, head)

    def pageURL(self, name: str) -> str:
        """
        Where upstream keeps the page of a project, by its normalized name.
        """
        return f"{self.root}{name}/"

    def fetchPage(self, name: str, etag: str | None, background: bool | Priority = False) -> Deferred[Fetched]:
        """
        Ask upstream for a project page, conditionally if we have its ETag;
        in the C{background} (a prefetch), after any client's request.

        @return: a L{Deferred} firing with L{Fetched}, or failing with
            L{NotFound} or L{UpstreamError}, within the timeout.
        """
        started = self._clock.seconds()

        def report(result: Any) -> Any:
            size, reason = 0, None
            if isinstance(result, Fetched):
                outcome = "unchanged" if result.status == 304 else "ok"
                size = len(result.body)
            else:
                outcome = _outcome(result.value)
                reason = _failureReason(result.value)
            self._events.upstreamRequest("page", outcome, self._clock.seconds() - started, size, reason)
            return result

        # The timeout bounds the wait for upstream's answer; its body may
        # take as long as it keeps coming (the idle timeout), up to the cap.
        d = Deferred.fromCoroutine(
            self.pageSlots.run(lambda: self._within(self._fetch(name, etag), deadline=False), background)
        )
        return d.addBoth(report)

    def _within(self, work: Coroutine[Any, Any, T] | Deferred[T], deadline: bool = True) -> Deferred[T]:
        """
        Run C{work}, failed after the timeout (unless without C{deadline})
        with whatever it had in flight cancelled, and its failures put in a
        line a client can read.
        """
        d = work if isinstance(work, Deferred) else Deferred.fromCoroutine(work)

        def timedOut(result: object, timeout: float) -> None:
            raise TimeoutError()

        if deadline:
            d.addTimeout(self.timeout, self._clock, onTimeoutCancel=timedOut)

        def translate(failure: Failure) -> Failure:
            if failure.check(NotFound, UpstreamError):
                return failure
            return Failure(_reason(failure, self.timeout))

        return d.addErrback(translate)

    async def fetchFile(self, url: str, sink: FileSink, background: bool | Priority = False) -> None:
        """
        Download a file, by the URL its project page gives, into C{sink}:
        in a slot of L{fileSlots} (after any client's, in the
        C{background}), headers within the timeout, then the body for as
        long as upstream keeps sending it.

        @raise UpstreamError: if upstream fails to send it whole (504 if it
            stops sending, or never answers).
        """
        await self.fileSlots.acquire(background)
        started = self._clock.seconds()
        outcome, reason = "failed", None
        body: FileBody | None = None
        try:
            response = await self._within(self._openFile(url))
            body = FileBody(sink, self._clock, self.idleTimeout)
            length = response.length if isinstance(response.length, int) else None
            try:
                sink.begin(length, body)
            except BaseException:
                outcome = "ok"  # upstream answered; the mirror refused the file
                response.deliverBody(_Dropped())  # not read through, however big
                raise
            response.deliverBody(body)
            try:
                await body.done
            except Exception:
                if body.quiet:
                    raise UpstreamError(504, "upstream stopped sending the file") from None
                raise
            outcome = "ok"
        except Exception as e:
            if outcome != "ok":
                outcome, reason = _outcome(e), _failureReason(e)
            raise
        finally:
            self.fileSlots.release()
            size = body.received if body is not None else 0
            self._events.upstreamRequest("file", outcome, self._clock.seconds() - started, size, reason)

    def fetchRange(
        self, url: str, start: int, end: int | None, background: bool | Priority = False
    ) -> Deferred[Ranged | None]:
        """
        Ask upstream for bytes C{[start, end)} of a file, or for its last
        C{-start} bytes if C{start} is negative (C{end} L{None}): a short
        request, in a page request's slot and within the timeout.

        @return: a L{Deferred} firing with L{Ranged}, or with L{None} if
            upstream does not answer ranges (its answer is not read); or
            failing with L{UpstreamError}.
        """
        wanted = f"bytes={start}" if end is None else f"bytes={start}-{end - 1}"
        began = self._clock.seconds()

        async def ask() -> Ranged | None:
            headers = {"User-Agent": USER_AGENT, "Range": wanted, "Accept-Encoding": "identity"}
            response = await self._client.get(urldefrag(url)[0], headers=headers, unbuffered=True)
            if response.code == 200:
                response.deliverBody(_Dropped())
                return None
            if response.code != 206:
                response.deliverBody(Protocol())
                raise UpstreamError(502, f"upstream answered {response.code} for a range of the file")
            where = _CONTENT_RANGE.fullmatch((_header(response, b"content-range") or "").strip())
            if where is None:
                response.deliverBody(_Dropped())
                return None  # several ranges, or none it says: not one to trust
            first, last, total = (int(n) for n in where.groups())
            data = await readBody(response, RANGE_MAX, (self._clock, self.idleTimeout))
            if len(data) != last - first + 1:
                raise UpstreamError(502, "upstream sent a range cut short")
            return Ranged(first, total, data)

        def report(result: Any) -> Any:
            ok = not isinstance(result, Failure)
            size = len(result.data) if isinstance(result, Ranged) else 0
            reason = None if ok else _failureReason(result.value)
            outcome = "ok" if ok else _outcome(result.value)
            self._events.upstreamRequest("range", outcome, self._clock.seconds() - began, size, reason)
            return result

        d = Deferred.fromCoroutine(self.pageSlots.run(lambda: self._within(ask()), background))
        return d.addBoth(report)

    async def _openFile(self, url: str) -> IResponse:
        response = await self._client.get(
            urldefrag(url)[0], headers={"User-Agent": USER_AGENT}, unbuffered=True
        )
        if response.code != 200:
            response.deliverBody(Protocol())
            raise UpstreamError(502, f"upstream answered {response.code} for the file")
        return response

    async def _fetch(self, name: str, etag: str | None) -> Fetched:
        url = self.pageURL(name)
        headers = {"Accept": ACCEPT, "User-Agent": USER_AGENT}
        if etag is not None:
            headers["If-None-Match"] = etag
        response = await self._within(self._client.get(url, headers=headers, unbuffered=True))
        finalURL = response.request.absoluteURI.decode("utf-8", "replace")
        code = response.code
        idle = (self._clock, self.idleTimeout)
        if code == 304 and etag is not None:
            await readBody(response, self.maxPageBytes, idle)
            return Fetched(304, finalURL, etag)
        if code in (404, 410):
            response.deliverBody(Protocol())
            raise NotFound(name)
        if code != 200:
            response.deliverBody(Protocol())
            raise UpstreamError(502, f"upstream answered {code} for {name}")
        body = await readBody(response, self.maxPageBytes, idle)
        return Fetched(
            200,
            finalURL,
            _header(response, b"etag"),
            (_header(response, b"content-type") or "").lower(),
            body,
            _header(response, b"x-pypi-last-serial"),
        )


def _outcome(e: BaseException) -> str:
    """
    The outcome of a failed upstream request, for the events.
    """
    if isinstance(e, NotFound):
        return "missing"
    if isinstance(e, UpstreamError) and e.status == 504:
        return "timeout"
    return "failed"


def _failureReason(e: BaseException) -> str | None:
    """
    Why an upstream request failed, for the events; L{None} if upstream
    answered (that it has no such thing).
    """
    if isinstance(e, NotFound):
        return None
    if isinstance(e, UpstreamError):
        return e.reason
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def _header(response: IResponse, name: bytes) -> str | None:
    """
    The first value of a response header, as text.
    """
    values = response.headers.getRawHeaders(name)
    return values[0].decode("latin-1") if values else None
