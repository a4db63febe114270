"""
Misbehaving clients and upstreams, in memory: every answer is a plain,
one-line reason, nothing unverified is kept, and the mirror keeps serving.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from html import escape
from typing import Any, NoReturn, cast

from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request

from tailmirror.web._stream import CHUNK, Stream
from tailmirror.files._tree import OpenFile

from ..fakeindex import FakeProject, generated, sdist
from ..harness import CapturedLog, Harness

METHODS = ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "X"]


def assertPlain(test: SynchronousTestCase, answer: Any, code: int, what: str) -> None:
    """
    An answer is C{code} with a plain-text, one-line reason.
    """
    test.assertEqual(answer.code, code, what)
    test.assertEqual(answer.header("content-type"), "text/plain; charset=utf-8", what)
    test.assertEqual(answer.body.count(b"\n"), 1, what)
    test.assertTrue(answer.body.endswith(b"\n"), what)
    test.assertNotIn(b"Traceback", answer.body, what)


class ClientTests(SynchronousTestCase):
    """
    Clients asking for what is not there, or in ways that are not allowed.
    """

    def setUp(self) -> None:
        self.file = sdist("foo", "1.0")
        self.h = Harness([FakeProject("foo", [self.file])])
        href = self.h.get("/simple/foo/", {"Accept": "text/html"}).body.split(b'href="')[1]
        self.link = "/" + href.split(b"#")[0].decode().removeprefix("../../")
        self.asked = sum(self.h.index.requests.values())

    def test_405Everywhere(self) -> None:
        """
        Every route takes GET and HEAD only: anything else is a plain 405
        that says so in C{Allow}, without asking upstream.
        """
        for path in ["/", "/simple", "/simple/", "/simple/foo/", "/simple/new/", self.link, "/x"]:
            for method in METHODS:
                answer = self.h.get(path, method=method)
                assertPlain(self, answer, 405, f"{method} {path}")
                self.assertEqual(answer.header("allow"), "GET, HEAD")
        self.assertEqual(sum(self.h.index.requests.values()), self.asked)

    def test_traversal(self) -> None:
        """
        Dot segments, escaped or not, and escaped slashes, backslashes and
        NULs get nowhere in any route: a 404, or a redirect to a canonical
        name, and never a file outside the tree.
        """
        prefix = self.link.rsplit("/", 1)[0]
        hostile = [
            "..", "%2e%2e", "%2E%2E", ".%2e", "..%2f..%2fetc%2fpasswd", "..%5c..%5cwin.ini",
            "%00", "foo%00.tar.gz", "foo%2f..%2f..%2fjournal.jsonl", "%2e", "~", "%252e%252e",
        ]
        paths = []
        for bad in hostile:
            paths += [
                f"/simple/{bad}/", f"/simple/{bad}", f"/simple/foo/{bad}",
                f"{prefix}/{bad}", f"{prefix}/{bad}/foo-1.0.tar.gz",
                f"/root/pypi/+f/{bad}/{bad}/{bad}", f"/root/pypi/+f/_url/{bad}/foo-1.0.tar.gz",
                f"/root/{bad}/+f/x", f"/{bad}/{bad}/journal.jsonl",
            ]
        for path in paths:
            answer = self.h.get(path)
            self.assertIn(answer.code, (301, 404), path)
            if answer.code == 301:
                self.assertNotIn("..", answer.header("location"), path)
                self.assertNotIn("%", answer.header("location"), path)
            else:
                assertPlain(self, answer, 404, path)
        self.assertEqual(sum(self.h.index.requests.values()), self.asked)

    def test_notUTF8(self) -> None:
        """
        A path that is not UTF-8 once unescaped is a plain 400, with no
        traceback in the log either.
        """
        log = CapturedLog(self)
        for path in ["/simple/%C0%AE/", "/%FF", "/simple/%E9t%E9/"]:
            assertPlain(self, self.h.get(path), 400, path)
        self.assertEqual(log.failures(), [])

    def test_badHost(self) -> None:
        """
        A C{Host} header the router cannot read is a plain 400.
        """
        for host in ["..", "a..b", "x" * 64 + ".test"]:
            answer = self.h.get("/simple/", {"Host": host})
            assertPlain(self, answer, 400, host)
            self.assertEqual(self.h.get(self.link, {"Host": host}).code, 200)

    def test_unforeseenError(self) -> None:
        """
        A bug in a route is a plain 500 with its traceback in the log, not
        in the answer.
        """
        log = CapturedLog(self)

        async def broken(*args: Any, **kwargs: Any) -> NoReturn:
            raise ZeroDivisionError("a bug")

        self.h.pages.get = broken  # type: ignore[method-assign]
        answer = self.h.get("/simple/bar/")
        assertPlain(self, answer, 500, "bug")
        [failure] = log.failures()
        self.assertTrue(failure["log_failure"].check(ZeroDivisionError))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_malformedRanges(self) -> None:
        """
        A malformed or absurd C{Range} is ignored or refused, never an error.
        """
        self.h.get(self.link)
        size = self.file.size
        for value, code in [
            ("bytes=abc", 200), ("bytes=--1", 200), ("bytes=1-2-3", 200), ("chars=0-1", 200),
            ("bytes=99999999999999999999999999-", 416), ("bytes=-99999999999999999999", 206),
            ("bytes=0-99999999999999999999", 206), ("bytes=" + "0" * 5000 + "-1", 206),
            ("bytes=5-1", 200), ("bytes=1-1,2-2", 200),
        ]:
            answer = self.h.get(self.link, {"Range": value})
            self.assertEqual(answer.code, code, value)
            if code != 416:
                self.assertLessEqual(len(answer.body), size)


class UpstreamTests(SynchronousTestCase):
    """
    An upstream that redirects too often, or answers too much.
    """

    def setUp(self) -> None:
        self.h = Harness([generated("foo"), generated("bar")], revalidateFloor=0)

    def test_redirectChain(self) -> None:
        """
        A short chain of redirects is followed to the page.
        """
        hops = self.h.index.redirects
        hops["/simple/foo/"] = "/hop/1"
        for i in range(1, 5):
            hops[f"/hop/{i}"] = f"/hop/{i + 1}"
        hops["/hop/5"] = "/simple/bar/"
        answer = self.h.get("/simple/foo/")
        self.assertEqual(answer.code, 200)

    def test_redirectLoop(self) -> None:
        """
        A redirect loop, or a chain too long, is a 502 saying so; the next
        request, upstream mended, gets the page.
        """
        log = CapturedLog(self)
        self.h.index.redirects.update({"/simple/foo/": "/a", "/a": "/b", "/b": "/simple/foo/"})
        for i in range(30):
            self.h.index.redirects["/simple/bar/" if i == 0 else f"/long/{i}"] = f"/long/{i + 1}"
        for name in ("foo", "bar"):
            answer = self.h.get(f"/simple/{name}/")
            assertPlain(self, answer, 502, name)
            self.assertIn(b"redirected too often", answer.body)
        self.assertEqual(log.failures(), [])
        self.h.index.redirects.clear()
        self.assertEqual(self.h.get("/simple/foo/").code, 200)

    def test_fileRedirectLoop(self) -> None:
        """
        A file whose URL redirects in a loop is a 502, and nothing is kept.
        """
        f = self.h.index.projects["foo"].files[0]
        href = self.h.get("/simple/foo/", {"Accept": "text/html"}).body.split(b'href="')[1]
        link = "/" + href.split(b"#")[0].decode().removeprefix("../../")
        self.h.index.redirects.update({f"/files/{f.filename}": "/x", "/x": f"/files/{f.filename}"})
        answer = self.h.get(link)
        assertPlain(self, answer, 502, "file")
        self.assertIn(b"redirected too often", answer.body)
        self.assertFalse(os.path.exists(self.h.tree.path(_key(link))))
        self.h.index.redirects.clear()
        self.assertEqual(self.h.get(link).body, f.content)

    def test_hostileLinks(self) -> None:
        """
        Links with hostile file names or schemes are dropped from the page,
        each drop logged; nothing of them reaches the disk.
        """
        log = CapturedLog(self)
        sha = "a" * 64
        anchors = [
            ("../../evil.tar.gz", "https://x.test/e"), ("a/b-1.0.tar.gz", "https://x.test/a"),
            ("a\\b-1.0.tar.gz", "https://x.test/b"),
            ("x" * 400 + ".tar.gz", "https://x.test/x"), ("ok-1.0.tar.gz", "file:///etc/passwd"),
            ("ok-1.1.tar.gz", "javascript:alert(1)"), ("good-1.0.tar.gz", "https://x.test/g"),
        ]
        body = "".join(f'<a href="{url}#sha256={sha}">{escape(name)}</a>' for name, url in anchors)
        self.h.index.forms = ("html",)
        self.h.index.bodyOverride = body.encode()
        answer = self.h.get("/simple/foo/", {"Accept": "application/vnd.pypi.simple.v1+json"})
        self.assertEqual(answer.code, 200)
        self.assertEqual([f["filename"] for f in json.loads(answer.body)["files"]], ["good-1.0.tar.gz"])
        drops = [f for f in log.formats(LogLevel.warn) if "dropped a link" in f]
        self.assertEqual(len(drops), len(anchors) - 1)
        self.assertEqual(os.listdir(os.path.join(self.h.cacheDir, "+files")), [])

    def test_concurrencyCaps(self) -> None:
        """
        No more page requests and downloads are in flight to upstream than
        the caps allow; the rest wait their turn, and all are answered.
        """
        projects = [generated(f"p{i}", versions=1) for i in range(5)]
        h = Harness(projects, pageRequests=2, fileRequests=3)
        h.index.hang = True
        pages = [h.start("GET", f"/simple/p{i}/") for i in range(5)]
        h.flush()
        self.assertEqual(len(h.index.hung), 2)
        while h.index.hung:
            h.index.hang = False
            request = h.index.hung.pop(0)
            request.write(h.index.render_GET(request))
            request.finish()
            h.flush()
        self.assertEqual([h.finish(d).code for d in pages], [200] * 5)
        h.index.holdFiles = True
        links = []
        for i in range(5):
            link = h.get(f"/simple/p{i}/", {"Accept": "text/html"}).body.split(b'href="')[1]
            links.append("/" + link.split(b"#")[0].decode().removeprefix("../../"))
        files = [h.start("GET", link) for link in links]
        h.flush()
        self.assertEqual(len(h.index.heldFiles), 3)
        while h.index.heldFiles:
            request, content = h.index.heldFiles.pop(0)
            request.write(content)
            request.finish()
            h.flush()
        self.assertEqual([h.finish(d).code for d in files], [200] * 5)

    def test_pageCapIsAnOption(self) -> None:
        """
        The page cap applies as set; a page under it is served.
        """
        size = len(self.h.index.projects["foo"].jsonPage())
        self.h.upstream.maxPageBytes = size
        self.assertEqual(self.h.get("/simple/foo/").code, 200)
        self.h.upstream.maxPageBytes = size - 1
        self.h.index.etags = False  # so that upstream answers in full
        answer = self.h.get("/simple/foo/", {"Cache-Control": "no-cache"})
        self.assertEqual(answer.code, 200)
        self.assertEqual(
            answer.header("tailmirror-stale"), "upstream page is larger than the page size cap"
        )


def _key(link: str) -> Any:
    from tailmirror.base._layout import parseFilePath

    key = parseFilePath(link.encode())
    assert key is not None
    return key


class _Transport:
    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True


class _Request:
    """
    Enough of a request for a L{Stream}: it records what it is sent.
    """

    def __init__(self) -> None:
        self.channel = type("Channel", (), {"transport": _Transport()})()
        self.written: list[bytes] = []
        self.producer: Any = None
        self.finished = False

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def notifyFinish(self) -> Any:
        from twisted.internet.defer import Deferred

        return Deferred()

    def write(self, data: bytes) -> None:
        self.written.append(data)
        if sum(map(len, self.written)) >= 256 * 1024:
            self.producer.pauseProducing()

    def finish(self) -> None:
        self.finished = True


class StalledClientTests(SynchronousTestCase):
    """
    A client that stops reading a file is let go after the client timeout.
    """

    def setUp(self) -> None:
        path = os.path.join(tempfile.mkdtemp(prefix="tailmirror-test-"), "file")
        with open(path, "wb") as f:
            f.write(b"x" * (8 * CHUNK))
        self.fd = os.open(path, os.O_RDONLY)
        self.clock = Clock()
        self.request = _Request()
        # A fake, with enough of a Request for a Stream.
        self.stream = Stream(cast(Request, self.request), OpenFile(self.fd, 8 * CHUNK), 0, 8 * CHUNK, None, self.clock, 60.0)

    def test_stalled(self) -> None:
        """
        Paused for the whole timeout: the connection is aborted and the
        file closed.
        """
        self.stream.begin()
        self.assertTrue(self.stream._paused)
        self.clock.advance(59)
        self.assertFalse(self.request.channel.transport.aborted)
        self.clock.advance(1)
        self.assertTrue(self.request.channel.transport.aborted)
        self.assertTrue(self.stream.done)
        self.assertRaises(OSError, os.fstat, self.fd)

    def test_slowButReading(self) -> None:
        """
        A client that takes a little now and then is never cut off.
        """
        self.stream.begin()
        for _ in range(3):
            self.clock.advance(50)
            self.request.written.clear()
            self.stream.resumeProducing()
        self.assertFalse(self.request.channel.transport.aborted)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.request.written.clear()
        self.request.write = self.request.written.append  # type: ignore[method-assign, assignment]
        self.stream.resumeProducing()
        self.assertTrue(self.request.finished)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class JournalUpkeepTests(SynchronousTestCase):
    """
    The journal over time: made durable soon after each write, compacted
    when dead records dominate, and bounded under changing pages.
    """

    def setUp(self) -> None:
        self.project = generated("foo", versions=2)
        self.h = Harness([self.project, generated("bar")], ttl=60.0, revalidateFloor=0)
        self.journal = self.h.pages._journal

    def test_syncedWithinASecond(self) -> None:
        """
        A page written to the journal is made durable within a second, with
        one sync for a burst of writes.
        """
        synced: list[int] = []
        self.patch(os, "fdatasync", synced.append)
        self.h.get("/simple/foo/")
        self.h.get("/simple/bar/")
        self.assertEqual(synced, [])
        self.h.clock.advance(1.0)
        self.assertEqual(len(synced), 1)
        self.h.clock.advance(10.0)
        self.assertEqual(len(synced), 1)

    def test_boundedUnderChange(self) -> None:
        """
        A page that changes at every refresh leaves the journal no bigger
        than about twice its live records, past the threshold; every answer
        is the latest page, and a restart replays it.
        """
        log = CapturedLog(self)
        self.journal.compactAbove = 20_000
        self.h.get("/simple/bar/")
        largest = 0
        for i in range(300):
            self.project.files.append(sdist("foo", f"2.{i}"))
            del self.project.files[0]
            self.h.clock.advance(61)
            answer = self.h.get("/simple/foo/", {"Accept": "text/html"})
            self.assertIn(f"foo-2.{i}.tar.gz".encode(), answer.body)
            largest = max(largest, os.path.getsize(self.h.journalPath))
        self.assertLess(largest, 20_000 + 3 * self.journal.live)
        self.assertGreater(len([f for f in log.formats(LogLevel.info) if "compacted" in f]), 5)
        restarted = self.h.restart(ttl=60.0)
        restarted.index.failWith = 500
        answer = restarted.get("/simple/foo/", {"Accept": "text/html"})
        self.assertIn(b"foo-2.299.tar.gz", answer.body)
        self.assertEqual(restarted.get("/simple/bar/").code, 200)

    def test_compactOnRequest(self) -> None:
        """
        Compaction on request keeps every page, and fresh pages are still
        served from their renders.
        """
        self.h.get("/simple/foo/")
        self.h.get("/simple/bar/")
        for _ in range(3):
            self.project.files.append(sdist("foo", f"3.{len(self.project.files)}"))
            self.h.get("/simple/foo/", {"Cache-Control": "no-cache"})
        before = self.journal.size
        self.successResultOf(self.h.pages.compact())
        self.assertLess(self.journal.size, before)
        self.assertEqual(self.journal.size, os.path.getsize(self.h.journalPath))
        asked = sum(self.h.index.requests.values())
        for name in ("foo", "bar"):
            self.assertEqual(self.h.get(f"/simple/{name}/").code, 200)
        self.assertEqual(sum(self.h.index.requests.values()), asked)
        # A file looked up on the compacted page still comes through.
        href = self.h.get("/simple/foo/", {"Accept": "text/html"}).body.split(b'href="')[1]
        link = "/" + href.split(b"#")[0].decode().removeprefix("../../")
        self.assertEqual(self.h.get(link).code, 200)

    def test_diskFullForPages(self) -> None:
        """
        A page that cannot be written is a 507 saying why; pages kept before
        are still served; writing resumes when space returns.
        """
        self.h.get("/simple/bar/")
        write = os.write

        def full(fd: int, data: Any) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        self.patch(os, "write", full)
        answer = self.h.get("/simple/foo/")
        assertPlain(self, answer, 507, "full")
        self.assertIn(b"No space left on device", answer.body)
        self.assertEqual(self.h.get("/simple/bar/").code, 200)
        self.patch(os, "write", write)
        self.assertEqual(self.h.get("/simple/foo/").code, 200)
        restarted = self.h.restart()
        self.assertEqual(sorted(restarted.pages.known()), ["bar", "foo"])
