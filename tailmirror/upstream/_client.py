"""
Fetching project pages and files from the upstream index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Coroutine, TypeVar
from urllib.parse import urldefrag

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.iweb import IResponse

from .._version import __version__
from ..base import IMirrorEvents, NoEvents, NotFound, UpstreamError
from ._credentials import Credentials, origin
from ._readers import CappedBody, Dropped, FileBody, FileSink, readBody, reasonOf
from ._slots import Priority, Slots

__all__ = ["Fetched", "Ranged", "Upstream", "judgeRoot"]

#: What the mirror asks upstream for: JSON first, for it carries sizes and
#: upload times; HTML when that is all upstream speaks.
ACCEPT = (
    "application/vnd.pypi.simple.v1+json, "
    "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
)
USER_AGENT = f"tailmirror/{__version__}"
T = TypeVar("T")


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
        credentials: Credentials | None = None,
        fileHosts: tuple[tuple[str, int | None], ...] = (),
    ) -> None:
        self._client = client
        self._events = events if events is not None else NoEvents()
        self.root = root if root.endswith("/") else root + "/"
        self._origin = origin(self.root)
        #: Said to upstream's own scheme, host and port, and nowhere else.
        self.credentials = credentials
        #: The other hosts (and ports: L{None}, any) the operator allows
        #: files from (C{--allow-file-host}).
        self.fileHosts = fileHosts
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

    def _headers(self, url: str, headers: dict[str, str]) -> dict[str, str]:
        """
        C{headers} for a request to C{url}, with the credentials if it goes
        to upstream's own origin.  (A redirect elsewhere loses them: the
        redirect agent drops C{Authorization} from a request to another
        origin.)
        """
        if self.credentials is not None and _originOf(url) == self._origin:
            headers["Authorization"] = self.credentials.authorization
        return headers

    def unhashedRefusal(self, url: str) -> str | None:
        """
        Why a link that names no hash to check may not be fetched from
        C{url}: only upstream's own host, or one the operator allows, is
        taken at its word.  L{None} if it may.
        """
        scheme, host, port = _originOf(url) or ("", "", 0)
        if host == self._origin[1] or any(
            host == allowed and wanted in (None, port) for allowed, wanted in self.fileHosts
        ):
            return None
        return (
            f"the link names no hash and {host or 'its host'} is not upstream's host: "
            f"--allow-file-host {host}:{port} allows it"
        )

    async def probeRoot(self) -> str | None:
        """
        Ask the root of upstream whether it is a Simple API index, reading
        no more than the start of its answer.

        @return: what is amiss, for a warning; L{None} if it looks right.
        @raise UpstreamError: if upstream cannot be reached.
        """

        async def ask() -> tuple[int, str, bytes]:
            headers = self._headers(self.root, {"Accept": ACCEPT, "User-Agent": USER_AGENT})
            response = await self._client.get(self.root, headers=headers, unbuffered=True)
            reader = CappedBody(ROOT_HEAD, head=True)
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
            return Failure(reasonOf(failure, self.timeout))

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
                response.deliverBody(Dropped())  # not read through, however big
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
            target = urldefrag(url)[0]
            headers = self._headers(target, {"User-Agent": USER_AGENT, "Range": wanted, "Accept-Encoding": "identity"})
            response = await self._client.get(target, headers=headers, unbuffered=True)
            if response.code == 200:
                response.deliverBody(Dropped())
                return None
            if response.code != 206:
                response.deliverBody(Protocol())
                raise UpstreamError(502, f"upstream answered {response.code} for a range of the file")
            where = _CONTENT_RANGE.fullmatch((_header(response, b"content-range") or "").strip())
            if where is None:
                response.deliverBody(Dropped())
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
        where = urldefrag(url)[0]
        response: IResponse = await self._client.get(
            where, headers=self._headers(where, {"User-Agent": USER_AGENT}), unbuffered=True
        )
        if response.code != 200:
            response.deliverBody(Protocol())
            raise UpstreamError(502, f"upstream answered {response.code} for the file")
        return response

    def fetchDocument(self, url: str, etag: str | None = None) -> Deferred[Fetched]:
        """
        Ask upstream for another document than a project page (its JSON
        API's), conditionally if we have its ETag, capped as pages are.

        @return: a L{Deferred} firing with L{Fetched} (200 or 304), or
            failing with L{NotFound} (a 404 or 410) or L{UpstreamError}.
        """

        async def ask() -> Fetched:
            headers = self._headers(url, {"Accept": "application/json", "User-Agent": USER_AGENT})
            if etag is not None:
                headers["If-None-Match"] = etag
            response = await self._within(self._client.get(url, headers=headers, unbuffered=True))
            idle = (self._clock, self.idleTimeout)
            if response.code == 304 and etag is not None:
                await readBody(response, self.maxPageBytes, idle)
                return Fetched(304, url, etag)
            if response.code in (404, 410):
                response.deliverBody(Protocol())
                raise NotFound(url)
            if response.code != 200:
                response.deliverBody(Protocol())
                raise UpstreamError(502, f"upstream answered {response.code} for its JSON API")
            body = await readBody(response, self.maxPageBytes, idle)
            return Fetched(200, url, _header(response, b"etag"), (_header(response, b"content-type") or "").lower(), body)

        return Deferred.fromCoroutine(self.pageSlots.run(lambda: self._within(ask(), deadline=False), False))

    async def _fetch(self, name: str, etag: str | None) -> Fetched:
        url = self.pageURL(name)
        headers = self._headers(url, {"Accept": ACCEPT, "User-Agent": USER_AGENT})
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


def _originOf(url: str) -> tuple[str, str, int] | None:
    """
    A URL's origin; L{None} for a URL with a port that is no number.
    """
    try:
        return origin(url)
    except ValueError:
        return None


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
