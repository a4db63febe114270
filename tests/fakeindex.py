"""
A fake upstream index for the tests and benchmarks: generated projects
served as Simple API pages, HTML (PEP 503) and JSON (PEP 691) by the
request's C{Accept}, with ETags, and their files.

In memory it is a twisted.web resource for C{treq.testing.StubTreq}; run as
C{python -m tests.fakeindex} it listens on 127.0.0.1 and prints its port.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import quote, unquote

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@dataclass
class FakeFile:
    """
    One file of a fake project, and the markers its page gives for it.
    """

    filename: str
    content: bytes
    requiresPython: str | None = None
    yanked: bool | str = False
    metadata: bytes | None = None
    uploadTime: str | None = "2024-01-02T03:04:05.000000Z"
    extra: dict[str, Any] = field(default_factory=dict)
    #: Its PEP 740 provenance object, served beside it.
    provenance: bytes | None = None
    #: Where its page links it, if not beside the page (another host).
    href: str | None = None
    #: Whether its link gives its sha256.
    hashed: bool = True

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def size(self) -> int:
        return len(self.content)

    def jsonEntry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "filename": self.filename,
            "url": self.href or f"../../files/{self.filename}",
            "hashes": {"sha256": self.sha256} if self.hashed else {},
            "size": self.size,
        }
        if self.requiresPython is not None:
            entry["requires-python"] = self.requiresPython
        if self.yanked:
            entry["yanked"] = self.yanked
        if self.metadata is not None:
            digest = {"sha256": hashlib.sha256(self.metadata).hexdigest()}
            entry["core-metadata"] = digest
            entry["dist-info-metadata"] = digest
        if self.uploadTime is not None:
            entry["upload-time"] = self.uploadTime
        if self.provenance is not None:
            entry["provenance"] = f"../../files/{self.filename}.provenance"
        entry.update(self.extra)
        return entry

    def anchor(self) -> str:
        fragment = f"#sha256={self.sha256}" if self.hashed else ""
        attrs = [("href", (self.href or f"../../files/{self.filename}") + fragment)]
        if self.requiresPython is not None:
            attrs.append(("data-requires-python", self.requiresPython))
        if self.yanked:
            attrs.append(("data-yanked", "" if self.yanked is True else str(self.yanked)))
        if self.metadata is not None:
            digest = "sha256=" + hashlib.sha256(self.metadata).hexdigest()
            attrs += [("data-core-metadata", digest), ("data-dist-info-metadata", digest)]
        if self.provenance is not None:
            attrs.append(("data-provenance", f"../../files/{self.filename}.provenance"))
        rendered = " ".join(f'{k}="{escape(v)}"' for k, v in attrs)
        return f'<a {rendered}>{escape(self.filename)}</a><br/>\n'


class DiskFile(FakeFile):
    """
    A big file, served from disk by C{twisted.web.static.File}.
    """

    def __init__(self, filename: str, path: str) -> None:
        super().__init__(filename, b"")
        self.path = path
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        self._sha256 = digest.hexdigest()

    @property
    def sha256(self) -> str:
        return self._sha256

    @property
    def size(self) -> int:
        return os.path.getsize(self.path)


@dataclass
class FakeProject:
    """
    A fake project: its files and any page-level fields.
    """

    name: str
    files: list[FakeFile]
    versions: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def jsonPage(self) -> bytes:
        page: dict[str, Any] = {
            "meta": {"api-version": "1.4", "_last-serial": 7},
            "name": self.name,
            "files": [f.jsonEntry() for f in self.files],
            "versions": self.versions if self.versions is not None else sorted(
                {f.filename.split("-")[1].removesuffix(".tar.gz") for f in self.files}
            ),
        }
        page.update(self.extra)
        return json.dumps(page).encode()

    def htmlPage(self) -> bytes:
        status = self.extra.get("project-status") or {}
        metas = "".join(
            f'<meta name="pypi:{k}" content="{escape(v)}">'
            for k, v in (("project-status", status.get("status")), ("project-status-reason", status.get("reason")))
            if v
        )
        return (
            '<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.0">'
            f"{metas}<title>Links for {self.name}</title></head><body>"
            f"<h1>Links for {self.name}</h1>\n" + "".join(f.anchor() for f in self.files) + "</body></html>"
        ).encode()


def sdist(name: str, version: str, size: int = 64, **markers: Any) -> FakeFile:
    """
    A fake sdist file of a project (its bytes are not a real archive).
    """
    seed = f"{name}-{version}".encode()
    content = (hashlib.sha256(seed).digest() * (size // 32 + 1))[:size]
    return FakeFile(f"{name}-{version}.tar.gz", content, **markers)


def history(name: str, releases: int) -> list[FakeFile]:
    """
    Older releases of a project, as a real project's page lists them: an
    sdist and three wheels each, with core metadata, that no client picks
    (their versions are 0.x) and so never downloads.
    """
    files = []
    tags = ("py3-none-any", "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64", "cp311-cp311-win_amd64")
    for i in range(releases):
        version = f"0.{i}"
        files.append(sdist(name, version, requiresPython=">=3.8"))
        for tag in tags:
            made = sdist(name, f"{version}-{tag}", requiresPython=">=3.8", metadata=b"Metadata-Version: 2.1\n")
            made.filename = f"{name}-{version}-{tag}.whl"
            files.append(made)
    return files


def generated(name: str, versions: int = 3, **markers: Any) -> FakeProject:
    """
    A fake project with a few sdist releases.
    """
    return FakeProject(name, [sdist(name, f"1.{i}", **markers) for i in range(versions)])


class FakeIndex(Resource):
    """
    The fake index as a resource.  Set C{forms} to limit what it speaks,
    C{failWith} to a status to fail every page, C{hang} to never answer.
    """

    isLeaf = True

    def __init__(self, projects: list[FakeProject] = ()) -> None:  # type: ignore[assignment]
        super().__init__()
        self.projects = {p.name: p for p in projects}
        self.forms: tuple[str, ...] = ("json", "html")
        self.failWith: int | None = None
        self.hang = False
        self.hung: list[Any] = []
        self.requests: Counter[str] = Counter()
        self.lastHeaders: dict[str, str] = {}
        self.contentTypeOverride: str | None = None
        self.bodyOverride: bytes | None = None
        self.etags = True
        #: File names served with their last byte changed.
        self.corrupt: set[str] = set()
        #: File names served cut short, the connection dropped.
        self.truncate: set[str] = set()
        #: Hold file requests in L{heldFiles} to be answered by hand.
        self.holdFiles = False
        self.heldFiles: list[tuple[Any, bytes]] = []
        #: Hold project page requests in L{heldPages} to be answered by hand.
        self.holdPages = False
        self.heldPages: list[tuple[Any, bytes]] = []
        #: Send files 64 KiB at a time, this many seconds apart, by C{clock}.
        self.chunkDelay = 0.0
        self.clock: Any = None
        #: Send disk files at this many bytes a second (0: as fast as can be).
        self.rate = 0.0
        #: What pages send as C{X-PyPI-Last-Serial}, if anything.
        self.lastSerial: str | None = None
        #: Paths answered with a 302 to another location.
        self.redirects: dict[str, str] = {}
        #: Whether a C{Range} of an in-memory file is answered with it alone.
        self.ranges = True
        #: Whether it answers the legacy JSON API (C{/pypi/<name>/json}).
        self.jsonAPI = False
        #: Other documents served by path (advisory feeds), with ETags.
        self.feeds: dict[str, bytes] = {}
        #: The C{Authorization} every request must carry (else a 401).
        self.authorization: str | None = None
        #: Requests that carried an C{Authorization} header, by path.
        self.authorized: Counter[str] = Counter()

    def add(self, project: FakeProject) -> FakeProject:
        self.projects[project.name] = project
        return project

    def render_GET(self, request: Any) -> Any:
        path = request.path.decode()
        self.requests[path] = self.requests[path] + 1
        self.lastHeaders = {k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        if "authorization" in self.lastHeaders:
            self.authorized[path] += 1
        if path == "/_stats":
            request.setHeader("Content-Type", "application/json")
            return json.dumps(self.stats()).encode()
        if self.authorization is not None and self.lastHeaders.get("authorization") != self.authorization:
            request.setResponseCode(401)
            request.setHeader("WWW-Authenticate", 'Basic realm="fake"')
            return b"credentials needed"
        if path in self.redirects:
            request.redirect(self.redirects[path].encode())
            return b""
        if self.hang:
            self.hung.append(request)
            return NOT_DONE_YET
        if self.failWith is not None:
            request.setResponseCode(self.failWith)
            return b"failing on purpose"
        if path in self.feeds:
            etag = '"' + hashlib.sha256(self.feeds[path]).hexdigest()[:16] + '"'
            request.setHeader("ETag", etag)
            if request.getHeader("if-none-match") == etag:
                request.setResponseCode(304)
                return b""
            return self.feeds[path]
        parts = path.strip("/").split("/")
        if path == "/simple/":
            return self._root(request)
        if len(parts) == 2 and parts[0] == "simple":
            return self._page(request, parts[1])
        if len(parts) == 2 and parts[0] == "files":
            return self._file(request, unquote(parts[1]))
        if self.jsonAPI and parts[0] == "pypi" and parts[-1] == "json" and len(parts) in (3, 4):
            return self._jsonAPI(request, parts[1], parts[2] if len(parts) == 4 else None)
        request.setResponseCode(404)
        return b"no such thing"

    def _jsonAPI(self, request: Any, name: str, version: str | None) -> bytes:
        """
        The legacy JSON API of a project, as the public index gives it
        (file URLs here absolute paths, resolved against the document's).
        """
        from packaging.version import Version

        from tailmirror.pages import versionOf

        project = self.projects.get(name)
        if project is None:
            request.setResponseCode(404)
            return b'{"message": "Not Found"}'
        releases: dict[str, list[dict[str, Any]]] = {}
        for f in project.files:
            each = versionOf(f.filename)
            if each is not None:
                releases.setdefault(each, []).append({
                    "filename": f.filename, "url": f"/files/{quote(f.filename)}",
                    "digests": {"sha256": f.sha256, "md5": hashlib.md5(f.content).hexdigest()},
                    "size": f.size, "upload_time_iso_8601": f.uploadTime, "yanked": bool(f.yanked),
                    "packagetype": "bdist_wheel" if f.filename.endswith(".whl") else "sdist",
                })
        latest = version or max(releases, key=Version)
        if latest not in releases:
            request.setResponseCode(404)
            return b'{"message": "Not Found"}'
        document: dict[str, Any] = {
            "info": {"name": name, "version": latest, "summary": f"the fake {name}"},
            "last_serial": 7,
            "urls": releases[latest],
            "vulnerabilities": [{"id": "PYSEC-0", "aliases": [], "summary": "upstream's own"}],
        }
        if version is None:
            document["releases"] = releases
        body = json.dumps(document).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        request.setHeader("ETag", etag)
        request.setHeader("Content-Type", "application/json")
        if request.getHeader("if-none-match") == etag:
            request.setResponseCode(304)
            return b""
        return body

    def stats(self) -> dict[str, int]:
        """
        Requests by path, and those that carried credentials as
        C{authorized:<path>}.
        """
        counts = dict(self.requests)
        counts.update({f"authorized:{k}": v for k, v in self.authorized.items()})
        return counts

    def _page(self, request: Any, name: str) -> Any:
        project = self.projects.get(name)
        if project is None:
            request.setResponseCode(404)
            return b"no such project"
        accept = (request.getHeader("accept") or "").lower()
        if "json" in self.forms and (JSON_TYPE in accept or "html" not in self.forms):
            body, ctype = project.jsonPage(), JSON_TYPE
        else:
            body, ctype = project.htmlPage(), "text/html; charset=utf-8"
        if self.bodyOverride is not None:
            body = self.bodyOverride
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        if self.etags:
            request.setHeader("ETag", etag)
        if self.etags and request.getHeader("if-none-match") == etag:
            request.setResponseCode(304)
            body = b""
        else:
            request.setHeader("Content-Type", self.contentTypeOverride or ctype)
            if self.lastSerial is not None:
                request.setHeader("X-PyPI-Last-Serial", self.lastSerial)
        if self.holdPages:
            # Unchanged or not, an answer held as long.
            self.heldPages.append((request, body))
            return NOT_DONE_YET
        return body

    def _root(self, request: Any) -> bytes:
        """
        The Simple API root: every project, in the form asked for.
        """
        names = sorted(self.projects)
        accept = (request.getHeader("accept") or "").lower()
        if "json" in self.forms and (JSON_TYPE in accept or "html" not in self.forms):
            request.setHeader("Content-Type", JSON_TYPE)
            return json.dumps(
                {"meta": {"api-version": "1.0"}, "projects": [{"name": n} for n in names]}
            ).encode()
        request.setHeader("Content-Type", "text/html; charset=utf-8")
        links = "".join(f'<a href="{n}/">{n}</a>\n' for n in names)
        return (
            '<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.0">'
            f"</head><body>{links}</body></html>"
        ).encode()

    def content(self, filename: str) -> bytes | None:
        """
        The bytes of a file or core metadata file, by name.
        """
        for project in self.projects.values():
            for f in project.files:
                if f.filename == filename:
                    return f.content
                if f.metadata is not None and f.filename + ".metadata" == filename:
                    return f.metadata
                if f.provenance is not None and f.filename + ".provenance" == filename:
                    return f.provenance
        return None

    def _diskFile(self, filename: str) -> DiskFile | None:
        for project in self.projects.values():
            for f in project.files:
                if f.filename == filename and isinstance(f, DiskFile):
                    return f
        return None

    def _file(self, request: Any, filename: str) -> Any:
        big = self._diskFile(filename)
        if big is not None and self.rate:
            request.setHeader("Content-Length", str(big.size))
            request.setHeader("Content-Type", "application/octet-stream")
            self._pace(request, open(big.path, "rb"))
            return NOT_DONE_YET
        if big is not None:
            from twisted.web.static import File

            static = File(big.path, defaultType="application/octet-stream")
            static.contentEncodings = {}  # the bytes as they are, .gz or not
            return static.render(request)
        content = self.content(filename)
        if content is None:
            request.setResponseCode(404)
            return b"no such file"
        if filename in self.corrupt:
            content = content[:-1] + bytes([content[-1] ^ 1])
        request.setHeader("Content-Type", "application/octet-stream")
        if filename in self.truncate:
            request.setHeader("Content-Length", str(len(content)))
            request.write(content[: len(content) // 2])
            request.channel.transport.abortConnection()
            return NOT_DONE_YET
        if self.holdFiles:
            request.setHeader("Content-Length", str(len(content)))
            self.heldFiles.append((request, content))
            return NOT_DONE_YET
        if self.rate and len(content) > 2**20 and not request.getHeader("range"):
            request.setHeader("Content-Length", str(len(content)))
            self._pace(request, io.BytesIO(content))
            return NOT_DONE_YET
        if self.chunkDelay:
            request.setHeader("Content-Length", str(len(content)))
            self._trickle(request, content)
            return NOT_DONE_YET
        wanted = request.getHeader("range")
        if wanted and self.ranges:
            return self._range(request, content, wanted)
        return content

    def _range(self, request: Any, content: bytes, wanted: str) -> bytes:
        """
        One range of a file, as C{bytes=FIRST-LAST} or C{bytes=-SUFFIX} asks.
        """
        self.requests["range"] += 1
        first, _, last = wanted.removeprefix("bytes=").partition("-")
        size = len(content)
        start = max(0, size - int(last)) if not first else int(first)
        end = size if not first or not last else min(size, int(last) + 1)
        if start >= size:
            request.setResponseCode(416)
            request.setHeader("Content-Range", f"bytes */{size}")
            return b""
        request.setResponseCode(206)
        request.setHeader("Content-Range", f"bytes {start}-{end - 1}/{size}")
        return content[start:end]

    def _pace(self, request: Any, f: Any) -> None:
        """
        Send a file from disk at C{rate} bytes a second.
        """
        chunk = f.read(65536)
        if request._disconnected or not chunk:
            f.close()
            if chunk == b"" and not request._disconnected:
                request.finish()
            return
        request.write(chunk)
        self.clock.callLater(len(chunk) / self.rate, self._pace, request, f)

    def _trickle(self, request: Any, content: bytes) -> None:
        """
        Send a file slowly, a chunk at a time.
        """
        if request._disconnected:
            return
        request.write(content[:65536])
        if len(content) > 65536:
            self.clock.callLater(self.chunkDelay, self._trickle, request, content[65536:])
        else:
            request.finish()


class Delayed(Resource):
    """
    Another resource, every answer begun some seconds late: an upstream
    far away.
    """

    isLeaf = True

    def __init__(self, inner: Resource, delay: float, clock: Any, filesAtOnce: bool = False) -> None:
        super().__init__()
        self._inner = inner
        self._delay = delay
        self._clock = clock
        #: Package files (not their metadata) answered at once: what a
        #: mirror that had fetched every file ahead would answer.
        self._filesAtOnce = filesAtOnce

    def render(self, request: Any) -> Any:
        if self._filesAtOnce and request.path.startswith(b"/files/") and not request.path.endswith(b".metadata"):
            return self._inner.render(request)

        def answer() -> None:
            if getattr(request, "_disconnected", False):
                return
            body = self._inner.render(request)
            if body is not NOT_DONE_YET:
                request.write(body)
                request.finish()

        self._clock.callLater(self._delay, answer)
        return NOT_DONE_YET


def main(argv: list[str]) -> None:
    """
    Serve generated projects on 127.0.0.1 and print the port.
    """
    from twisted.internet import endpoints, reactor
    from twisted.web.server import Site

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--projects", type=int, default=10, help="how many generated projects")
    parser.add_argument("--files", type=int, default=3, help="files per project")
    parser.add_argument("--file-size", type=int, default=64, metavar="BYTES",
                        help="the size of each generated file")
    parser.add_argument("--forms", default="json,html")
    parser.add_argument("--no-etags", action="store_true", help="send no ETag, answer every request in full")
    parser.add_argument("--uploaded-now", action="append", default=[], metavar="FILENAME",
                        help="give this file an upload time of now")
    parser.add_argument("--delist", action="append", default=[], metavar="FILENAME",
                        help="leave this file off its project's page")
    parser.add_argument("--layered", type=int, default=0, metavar="N",
                        help="serve a tree of about N projects of real wheels in 4 layers, under project app")
    parser.add_argument("--history", type=int, default=0, metavar="N",
                        help="give each --layered project N older releases (an sdist and three wheels each, "
                        "never installed), as real projects' pages have")
    parser.add_argument("--heavy", default="", metavar="EVERY:BYTES",
                        help="make the newer wheel of every EVERYth --layered project about BYTES big "
                        "(sent at --rate, if given)")
    parser.add_argument("--absolute", action="store_true",
                        help="link files by absolute URLs, as the real index's pages do")
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS",
                        help="answer every request this many seconds late")
    parser.add_argument("--files-at-once", action="store_true",
                        help="answer package files (not their metadata) without the --latency")
    parser.add_argument("--tree", action="store_true", help="serve the installable tree too")
    parser.add_argument("--big", action="append", default=[], metavar="PATH",
                        help="serve this file as project big's big-1.N.tar.gz")
    parser.add_argument("--sized", type=int, default=0, metavar="BYTES",
                        help="serve project sized with one file of this size")
    parser.add_argument("--rate", type=float, default=0.0, metavar="MB_PER_S",
                        help="send --big files, and any other file over 1 MiB, at this rate, each")
    parser.add_argument("--corrupt", action="append", default=[], metavar="FILENAME",
                        help="serve this file with its last byte changed")
    parser.add_argument("--chunk-delay", type=float, default=0.0,
                        help="send in-memory files 64 KiB at a time, this many seconds apart")
    parser.add_argument("--torch", action="store_true",
                        help="be an index shaped like the PyTorch ones: HTML only, only the torch-like "
                        "projects, their files at another host (localhost, another port)")
    parser.add_argument("--no-ranges", action="store_true", help="answer a Range with the whole file")
    parser.add_argument("--require", metavar="AUTHORIZATION",
                        help="answer 401 to every request without this Authorization header")
    parser.add_argument("--redirect", action="append", default=[], metavar="PATH=URL",
                        help="answer PATH with a 302 to URL")
    parser.add_argument("--link", action="append", default=[], metavar="PROJECT=URL",
                        help="serve PROJECT with one file linked at URL (its name the URL's last part; "
                        "hashed with the bytes of an sdist of that name)")
    parser.add_argument("--json-api", action="store_true", help="answer the legacy JSON API too")
    parser.add_argument("--feed", action="append", default=[], metavar="PATH=FILE",
                        help="serve FILE's bytes at PATH, with an ETag (an advisory feed)")
    parser.add_argument("--tls", metavar="PEM",
                        help="serve HTTPS with this certificate and key, as localhost (absolute links too)")
    args = parser.parse_args(argv)
    if args.torch:
        _serveTorchLike(args.port, not args.no_ranges)
        return
    index = FakeIndex(
        [generated(f"project{i}", args.files, size=args.file_size) for i in range(args.projects)]
    )
    index.forms = tuple(args.forms.split(","))
    index.etags = not args.no_etags
    index.chunkDelay, index.clock = args.chunk_delay, reactor
    index.corrupt.update(args.corrupt)
    index.rate = args.rate * 2**20
    if args.tree:
        from .wheels import tree

        for project in tree():
            index.add(project)
    if args.layered:
        from .wheels import layered

        every, _, size = args.heavy.partition(":")
        for project in layered(args.layered, int(every or 0), int(size or 0)):
            project.files[:0] = history(project.name, args.history)
            index.add(project)
    for project in index.projects.values():
        project.files = [f for f in project.files if f.filename not in args.delist]
    if args.uploaded_now:
        import datetime

        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for project in index.projects.values():
            for f in project.files:
                if f.filename in args.uploaded_now:
                    f.uploadTime = now
    index.authorization = args.require
    index.jsonAPI = args.json_api
    for each in args.feed:
        path, _, document = each.partition("=")
        with open(document, "rb") as feed:
            index.feeds[path] = feed.read()
    for each in args.redirect:
        path, _, url = each.partition("=")
        index.redirects[path] = url
    for each in args.link:
        name, _, url = each.partition("=")
        linked = sdist(name, "1.0")
        linked.filename = url.rstrip("/").rpartition("/")[2]
        linked.href = url
        index.add(FakeProject(name, [linked]))
    if args.sized:
        index.add(FakeProject("sized", [sdist("sized", "1.0", size=args.sized)]))
    if args.big:
        index.add(FakeProject("big", [DiskFile(f"big-1.{i}.tar.gz", p) for i, p in enumerate(args.big)]))
    site = Site(index if not args.latency else Delayed(index, args.latency, reactor, args.files_at_once))
    site.log = lambda request: None  # type: ignore[method-assign]
    endpoint: Any = endpoints.TCP4ServerEndpoint(reactor, args.port, interface="127.0.0.1")
    where = "http://127.0.0.1"
    if args.tls:
        from twisted.internet.ssl import PrivateCertificate

        with open(args.tls, "rb") as pem:
            options = PrivateCertificate.loadPEM(pem.read()).options()
        endpoint = endpoints.SSL4ServerEndpoint(reactor, args.port, options, interface="127.0.0.1")
        where = "https://localhost"

    def listening(port: Any) -> None:
        if args.absolute:
            for project in index.projects.values():
                for f in project.files:
                    f.href = f.href or f"{where}:{port.getHost().port}/files/{quote(f.filename)}"
        print(port.getHost().port, flush=True)

    endpoint.listen(site).addCallback(listening)
    reactor.run()


def _serveTorchLike(port: int, ranges: bool) -> None:
    """
    Serve an index shaped like the PyTorch ones on 127.0.0.1, its files on
    localhost at another port, and print the index's port.
    """
    from twisted.internet import endpoints, reactor
    from twisted.web.server import Site

    from .wheels import torchLike

    files = FakeIndex()
    files.ranges = ranges
    filesSite = Site(files)
    filesSite.log = lambda request: None  # type: ignore[method-assign]

    def filesListening(listening: Any) -> Any:
        projects = torchLike(f"http://localhost:{listening.getHost().port}/files/")
        for project in projects:
            files.add(project)
        index = FakeIndex(projects)
        index.forms = ("html",)
        index.ranges = ranges
        index.files = files  # type: ignore[attr-defined]
        site = Site(_WithStats(index, files))
        site.log = lambda request: None  # type: ignore[method-assign]
        endpoint = endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1")
        return endpoint.listen(site).addCallback(lambda p: print(p.getHost().port, flush=True))

    endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(filesSite).addCallback(filesListening)
    reactor.run()


class _WithStats(Resource):
    """
    An index whose C{/_stats} counts the requests of its file host too
    (those as C{files:<path>}).
    """

    isLeaf = True

    def __init__(self, index: FakeIndex, files: FakeIndex) -> None:
        super().__init__()
        self._index, self._files = index, files

    def render(self, request: Any) -> Any:
        if request.path == b"/_stats":
            stats = dict(self._index.requests)
            stats.update({f"files:{k}": v for k, v in self._files.requests.items()})
            request.setHeader("Content-Type", "application/json")
            return json.dumps(stats).encode()
        return self._index.render(request)


if __name__ == "__main__":
    main(sys.argv[1:])
