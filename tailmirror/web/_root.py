"""
The mirror's HTTP face: a Klein application over the pages and the files
it keeps (the root index, project pages by content negotiation, the file
resources of each index, C{/+status} and C{/+metrics}), with the L{Front}
that answers fresh pages and hands files over before Klein routes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence, cast
from urllib.parse import quote

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_accept_header
from zope.interface import implementer

from ..base import PYPI, IndexLayout, NotFound, Unavailable, canonicalName
from ..files import FileStore
from ..observe import Health, MirrorMetrics, MirrorStatus
from ..pages import Body, LegacyJSON, ProjectPages, Served
from ._answers import answerFor, etagMatches, header, plain, redirect
from ._file import ALLOW, FileResource
from ._front import askTheMirror, fromFront
from ._observers import MetricsOnly, sendHealth, sendMetrics
from ._legacy import isJSONAPI, sendLegacy
from ._negotiate import Form, contentType, negotiate

__all__ = ["MetricsOnly", "MirrorWeb"]

log = Logger()

_READ = ["GET", "HEAD"]
STALE_HEADER = "Tailmirror-Stale"


def wantsRevalidation(request: IRequest) -> bool:
    """
    Whether a client asks for an answer checked with upstream
    (C{Cache-Control: no-cache} or C{max-age=0}, or C{Pragma: no-cache}).
    """
    directives = {
        d.strip().lower().replace(" ", "")
        for d in (header(request, "cache-control") or "").split(",")
    }
    return bool(directives & {"no-cache", "max-age=0"}) or (
        "no-cache" in (header(request, "pragma") or "").lower()
    )


@lru_cache(maxsize=256)
def _takesGzip(acceptEncoding: str) -> bool:
    return parse_accept_header(acceptEncoding).quality("gzip") > 0


def acceptsGzip(request: IRequest) -> bool:
    """
    Whether the client takes gzip content coding.
    """
    accept = header(request, "accept-encoding")
    return bool(accept) and _takesGzip(accept)


def sendPage(request: IRequest, body: Body, mediaType: str, cacheControl: str) -> bytes | Deferred[bytes]:
    """
    Serve one form of a page with its validators, gzipped if the client
    takes that, or 304 if the client has it already.  A big body to a
    client that does not take gzip is inflated as it is sent: what is
    returned then fires once it is.
    """
    gzipped = acceptsGzip(request)
    request.setHeader("Vary", "Accept, Accept-Encoding")
    request.setHeader("Cache-Control", cacheControl)
    request.setHeader("ETag", body.gzipEtag if gzipped else body.etag)
    if etagMatches(header(request, "if-none-match"), (body.etag, body.gzipEtag)):
        request.setResponseCode(304)
        return b""
    request.setHeader("Content-Type", contentType(mediaType))
    if gzipped:
        request.setHeader("Content-Encoding", "gzip")
        request.setHeader("Content-Length", str(len(body.gzipped)))
        return body.gzipped
    request.setHeader("Content-Length", str(body.length))
    if body.identity is not None:
        return body.identity
    if request.method == b"HEAD":
        return b""
    return _Inflated(request, body).begin()


def streamed(body: Body, request: IRequest) -> bool:
    """
    Whether L{sendPage} sends this body to this client as it is inflated.
    """
    return body.identity is None and not acceptsGzip(request)


async def _sent(answer: bytes | Deferred[bytes]) -> bytes:
    """
    What a route returns of L{sendPage}'s answer, once it is sent.
    """
    return (await answer) if isinstance(answer, Deferred) else answer


@implementer(IPushProducer)
class _Inflated:
    """
    Send a big body's identity bytes, inflated from its gzip bytes a chunk
    at a time while the client keeps up: a page many clients ask for as
    gzip is kept only so.
    """

    def __init__(self, request: IRequest, body: Body) -> None:
        self._request = cast(IConsumer, request)
        self._chunks = body.chunks()
        self._paused = False
        #: Fires once every byte is written (the route then finishes the
        #: request); cancelled if the client goes.
        self.done: Deferred[bytes] = Deferred(lambda d: self._chunks.close())

    def begin(self) -> Deferred[bytes]:
        """
        Start sending.
        """
        self._request.registerProducer(self, True)
        self.resumeProducing()
        return self.done

    def resumeProducing(self) -> None:
        self._paused = False
        while not self._paused and not self.done.called:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._request.unregisterProducer()
                self.done.callback(b"")
                return
            self._request.write(chunk)

    def pauseProducing(self) -> None:
        self._paused = True

    def stopProducing(self) -> None:
        if not self.done.called:
            self.done.cancel()


def sendServed(request: IRequest, served: Served, chosen: tuple[Form, str]) -> bytes | Deferred[bytes]:
    """
    Serve a project page, saying so if it is stale.
    """
    if served.lastSerial is not None:
        request.setHeader("X-PyPI-Last-Serial", served.lastSerial)
    if served.staleBecause is not None:
        request.setHeader(STALE_HEADER, served.staleBecause)
        cacheControl = "max-age=0, must-revalidate"
    else:
        cacheControl = f"max-age={int(served.freshFor)}"
    return sendPage(request, served.body, chosen[1], cacheControl)


def _chosenForm(request: IRequest) -> tuple[Form, str] | None:
    """
    The form a request asks for, by C{?format=} or C{Accept}.
    """
    formats = request.args.get(b"format")
    # A media type holds no spaces: a space here is a "+" left unescaped.
    fmt = formats[-1].decode("latin-1").replace(" ", "+") if formats else None
    return negotiate(header(request, "accept"), fmt)


def wantsJSON(request: IRequest) -> bool:
    """
    Whether a request for the status asks for JSON rather than HTML.
    """
    formats: list[bytes] | None = request.args.get(b"format")
    if formats:
        return formats[-1] == b"json"
    accept = header(request, "accept")
    if not accept:
        return False
    return parse_accept_header(accept).best_match(["text/html", "application/json"]) == "application/json"


class MirrorWeb:
    """
    The routes of the mirror.
    """

    app = Klein()
    # Paths are matched as given: "//" is not folded into "/" by a redirect.
    app.url_map.merge_slashes = False

    def __init__(
        self,
        pages: ProjectPages,
        files: FileStore,
        status: MirrorStatus,
        metrics: MirrorMetrics | None,
        layout: IndexLayout = PYPI,
        accelRedirect: str | None = None,
        legacy: LegacyJSON | None = None,
        health: Health | None = None,
    ) -> None:
        self._legacy = legacy
        self._health = health
        self._pages = pages
        self._files = files
        self._status = status
        self._metrics = metrics
        self.layout = layout
        self.accelRedirect = accelRedirect

    @app.route("/", methods=_READ)
    def home(self, request: IRequest) -> bytes:
        """
        The mirror's root leads to the Simple API.
        """
        return redirect(request, "simple/")

    @app.route("/simple", methods=_READ)
    def simpleWithoutSlash(self, request: IRequest) -> bytes:
        """
        The Simple API root's canonical URL ends in a slash.
        """
        return redirect(request, "simple/")

    @app.route("/simple/", methods=_READ)
    async def rootIndex(self, request: IRequest) -> bytes:
        """
        The projects this mirror knows.
        """
        chosen = _chosenForm(request)
        if chosen is None:
            return plain(request, 406, "acceptable forms: HTML (PEP 503) and JSON (PEP 691)")
        rendered = await self._pages.root()
        form, mediaType = chosen
        return await _sent(sendPage(request, rendered.json if form == "json" else rendered.html, mediaType, "no-cache"))

    @app.route("/simple/<name>", methods=_READ)
    def projectWithoutSlash(self, request: IRequest, name: str) -> bytes:
        """
        A project page's canonical URL is its normalized name with a slash.
        """
        canonical = canonicalName(name)
        if canonical is None:
            return plain(request, 404, "not a valid project name")
        return redirect(request, f"{canonical}/")

    @app.route("/simple/<name>/", methods=_READ)
    async def project(self, request: IRequest, name: str) -> bytes:
        """
        A project page, fetched from upstream on first request.  (Fresh,
        rendered pages are answered by L{Front} before routing.)
        """
        canonical = canonicalName(name)
        if canonical is None:
            return plain(request, 404, "not a valid project name")
        if canonical != name:
            return redirect(request, f"../{canonical}/")
        chosen = _chosenForm(request)
        if chosen is None:
            return plain(request, 406, "acceptable forms: HTML (PEP 503) and JSON (PEP 691)")
        revalidate = wantsRevalidation(request)
        d = Deferred.fromCoroutine(self._pages.get(canonical, revalidate, chosen[0]))
        # Told once the page's fetch is under way, which a prefetch then joins.
        self._pages.wanted(canonical, request.getHeader(b"user-agent"), revalidate)
        try:
            served = await d
        except (NotFound, Unavailable) as e:
            return plain(request, *answerFor(e, f"upstream has no project {canonical}"))
        return await _sent(sendServed(request, served, chosen))

    @app.route("/+status", methods=_READ)
    def status(self, request: IRequest) -> bytes:
        """
        What the mirror is doing: JSON for C{Accept: application/json} or
        C{?format=json}, else a page for people.
        """
        request.setHeader("Cache-Control", "no-store")
        request.setHeader("Vary", "Accept")
        if wantsJSON(request):
            request.setHeader("Content-Type", "application/json")
            return self._status.json()
        request.setHeader("Content-Type", "text/html; charset=utf-8")
        return self._status.html()

    @app.route("/+metrics", methods=_READ)
    def metrics(self, request: IRequest) -> bytes:
        """
        The metrics, in the Prometheus text format, unless another
        endpoint serves them.
        """
        if self._metrics is None:
            return plain(request, 404, "the metrics are served on the endpoint of --metrics-listen")
        return sendMetrics(request, self._metrics)

    @app.route("/+health/live", methods=_READ)
    def live(self, request: IRequest) -> bytes:
        """
        The liveness probe: the process answers.
        """
        return sendHealth(request, self._health.live() if self._health else (200, b'{"status": "live"}\n'))

    @app.route("/+health/ready", methods=_READ)
    def ready(self, request: IRequest) -> bytes:
        """
        The readiness probe: the mirror serves (and what is degraded).
        """
        if self._health is None:
            return plain(request, 404, "not found")
        return sendHealth(request, self._health.ready())

    @app.route("/pypi/<name>/json", methods=_READ)
    async def legacyProject(self, request: IRequest, name: str) -> bytes:
        """
        The legacy JSON API of a project (L{LegacyJSON}).
        """
        return await self._legacyJSON(request, name, None)

    @app.route("/pypi/<name>/<version>/json", methods=_READ)
    async def legacyVersion(self, request: IRequest, name: str, version: str) -> bytes:
        """
        The legacy JSON API of one version of a project.
        """
        return await self._legacyJSON(request, name, version)

    async def _legacyJSON(self, request: IRequest, name: str, version: str | None) -> bytes:
        if self._legacy is None:
            return plain(request, 404, "not found")
        return await sendLegacy(request, self._legacy, name, version)

    @app.route("/<path:anything>", methods=_READ)
    def elsewhere(self, request: IRequest, anything: str) -> bytes:
        """
        Nothing else is here.
        """
        return plain(request, 404, "not found")

    @app.handle_errors(Exception)
    def unforeseen(self, request: IRequest, failure: Any) -> bytes:
        """
        Whatever a route did not foresee: logged, and a plain answer, never
        a page of traceback.
        """
        if failure.check(HTTPException):
            return plain(request, failure.value.code, failure.value.name)
        log.failure("serving {path}", failure, path=request.path.decode("latin-1")[:200])
        return plain(request, 500, "internal error; the mirror's log says more")

    def resource(self, others: Sequence["MirrorWeb"] = ()) -> Any:
        """
        The twisted.web resource of these routes (the index of
        C{--upstream}, at the root) and of the C{others} indexes' (each at
        C{/<name>/}), behind the fast paths for fresh pages and for files.
        """
        return Front(self, others)


class _Index:
    """
    What L{Front} serves of one index: its pages' fast path, its files,
    and its routes.
    """

    def __init__(self, web: MirrorWeb) -> None:
        self.pages = web._pages
        self.files = FileResource(web._files, web.layout, web.accelRedirect)
        self.routes = web.app.resource()


class Front(Resource):
    """
    The front of the resource tree.  Files go straight to their resource.
    A request for a fresh project page that is rendered already, by its
    canonical URL, is served here at once; everything else goes on to the
    Klein routes, which give the same answer for it, only slower.  Warm
    pages and files are what a mirror serves most.

    The index of C{--upstream} is at the root (C{/simple/}), and also at
    C{/pypi/}, by a redirect to the root; every other index at
    C{/<name>/}, with the same routes below it.  Every index's files are
    below C{/root/<name>/}.
    """

    isLeaf = True

    def __init__(self, main: MirrorWeb, others: Sequence[MirrorWeb] = ()) -> None:
        super().__init__()
        self._main = _Index(main)
        self._others = {web.layout.name.encode("ascii"): _Index(web) for web in others}
        self._files: dict[bytes, Resource] = {main.layout.name.encode("ascii"): self._main.files}
        self._files.update((name, index.files) for name, index in self._others.items())
        self._alias = b"/" + main.layout.name.encode("ascii")

    def render(self, request: IRequest) -> Any:
        if request.method not in (b"GET", b"HEAD"):
            # Every route takes only these: one plain answer for all.
            request.setHeader("Allow", ALLOW)
            return plain(request, 405, f"only {ALLOW} here")
        path = request.path
        if path.startswith(b"/root/"):
            files = self._files.get(path[6:].partition(b"/")[0])
            if files is None:
                if fromFront(request) == "ask":
                    return askTheMirror(request)
                return plain(request, 404, "no index of that name here")
            return files.render(request)
        index, within = self._main, path
        if not path.startswith(b"/simple/"):
            first, slash, rest = path[1:].partition(b"/")
            other = self._others.get(first)
            if other is not None:
                index, within = other, slash + rest
                request.prepath = [first]
                request.postpath = request.postpath[1:]
            elif first == self._alias[1:] and slash and not isJSONAPI(rest):
                return self._unaliased(request, slash + rest)
        body = self._fresh(request, index, within)
        if body is not None:
            return body
        try:
            b"/".join(request.postpath).decode("utf-8")
            request.getRequestHostname().decode("utf-8")
        except UnicodeDecodeError:
            return plain(request, 400, "the path or host name is not UTF-8")
        try:
            return index.routes.render(request)
        except HTTPException as e:
            # Werkzeug refuses some requests (a bad Host) before any route.
            return plain(request, e.code or 400, e.name)

    def _unaliased(self, request: IRequest, path: bytes) -> bytes:
        """
        C{/pypi/...} is the root's index: a redirect there, for a page's
        file links are relative to where it is served.
        """
        try:
            location = path.decode("utf-8")
        except UnicodeDecodeError:
            return plain(request, 400, "the path is not UTF-8")
        return redirect(request, quote(location, safe="/%+~@!$&'()*,;=:"))

    def _fresh(self, request: IRequest, index: _Index, path: bytes) -> bytes | None:
        if not (path.startswith(b"/simple/") and path.endswith(b"/")):
            return None
        name = path[8:-1].decode("latin-1")
        if canonicalName(name) != name:
            return None
        chosen = _chosenForm(request)
        if chosen is None:
            return None
        revalidate = wantsRevalidation(request)
        served = index.pages.cached(name, chosen[0], revalidate)
        if served is None or streamed(served.body, request):
            return None
        index.pages.wanted(name, request.getHeader(b"user-agent"), revalidate)
        answer = sendServed(request, served, chosen)
        assert isinstance(answer, bytes)
        return answer
