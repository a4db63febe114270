"""
Tests for the mirror's project pages as clients see them, through the real
Klein resource over an in-memory fake upstream.
"""

import gzip
import json
from typing import Any

from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IConsumer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tailmirror.pages._bodies import CHUNK, KEEP_IDENTITY, Body
from tailmirror.web._negotiate import HTML_V1, JSON_V1
from tailmirror.web._root import _Inflated

from ..fakeindex import FakeFile, FakeProject, generated, sdist
from ..harness import PIP_ACCEPT, UV_ACCEPT, CapturedLog, Harness, Threads

JSON = {"Accept": JSON_V1}


class RoutingTests(SynchronousTestCase):
    """
    Names, redirects and refusals.
    """

    def setUp(self) -> None:
        self.h = Harness([generated("foo-bar")])

    def test_nonCanonicalRedirects(self) -> None:
        """
        Any other spelling of a name is a 301 to the canonical page,
        relative so that it works behind a path prefix, keeping the query.
        """
        for path, location in [
            ("/simple/Foo_Bar/", "../foo-bar/"),
            ("/simple/FOO.bar/?format=text/html", "../foo-bar/?format=text/html"),
            ("/simple/foo-bar", "foo-bar/"),
            ("/simple/Foo__Bar", "foo-bar/"),
            ("/simple", "simple/"),
            ("/", "simple/"),
        ]:
            answer = self.h.get(path)
            self.assertEqual((answer.code, answer.header("location")), (301, location), path)
        self.assertEqual(sum(self.h.index.requests.values()), 0)

    def test_invalidNames404WithoutUpstream(self) -> None:
        """
        An invalid project name is 404 without asking upstream.
        """
        for path in ["/simple/-foo/", "/simple/foo-/", "/simple/f%20o/", "/simple/..%2f/", "/simple/caf%C3%A9/"]:
            answer = self.h.get(path)
            self.assertEqual(answer.code, 404, path)
            self.assertEqual(answer.header("content-type"), "text/plain; charset=utf-8")
        self.assertEqual(sum(self.h.index.requests.values()), 0)

    def test_unknownPaths(self) -> None:
        """
        Any other path is a plain-text 404, never a framework page.
        """
        for path in ["/nothing", "/root/", "/simple//", "/simple/foo/bar/", "/%00"]:
            answer = self.h.get(path)
            self.assertEqual(answer.code, 404, path)
            self.assertEqual(answer.header("content-type"), "text/plain; charset=utf-8", path)
        self.assertEqual(sum(self.h.index.requests.values()), 0)

    def test_upstream404(self) -> None:
        """
        A project upstream does not have is 404, with a one-line reason.
        """
        answer = self.h.get("/simple/nothere/")
        self.assertEqual(answer.code, 404)
        self.assertEqual(answer.body.count(b"\n"), 1)
        self.assertEqual(self.h.get("/simple/").body.count(b"<a "), 0)


class FormTests(SynchronousTestCase):
    """
    Content negotiation and the markers kept in both forms.
    """

    def setUp(self) -> None:
        self.project = FakeProject(
            "foo",
            [
                sdist("foo", "1.0", requiresPython=">=3.8", yanked="bad build"),
                FakeFile("foo-2.0-py3-none-any.whl", b"wheel", metadata=b"Metadata-Version: 2.1\n"),
            ],
            extra={"project-status": {"status": "archived"}},
        )
        self.h = Harness([self.project])

    def test_clientsGetJSON(self) -> None:
        """
        pip's and uv's own Accept headers get the JSON form, named exactly.
        """
        for accept in (PIP_ACCEPT, UV_ACCEPT):
            answer = self.h.get("/simple/foo/", {"Accept": accept})
            self.assertEqual(answer.header("content-type"), JSON_V1)
            self.assertEqual(json.loads(answer.body)["name"], "foo")

    def test_htmlNames(self) -> None:
        """
        No Accept means text/html; asking for the v1 HTML type names it.
        """
        self.assertEqual(self.h.get("/simple/foo/").header("content-type"), "text/html; charset=utf-8")
        answer = self.h.get("/simple/foo/", {"Accept": HTML_V1})
        self.assertEqual(answer.header("content-type"), HTML_V1 + "; charset=utf-8")
        answer = self.h.get("/simple/foo/", {"Accept": "application/vnd.pypi.simple.latest+json"})
        self.assertEqual(answer.header("content-type"), JSON_V1)

    def test_formatParameter(self) -> None:
        """
        C{?format=} overrides Accept.
        """
        answer = self.h.get(f"/simple/foo/?format={JSON_V1}", {"Accept": "text/html"})
        self.assertEqual(answer.header("content-type"), JSON_V1)

    def test_notAcceptable(self) -> None:
        """
        Only unsupported types: 406 with a reason.
        """
        answer = self.h.get("/simple/foo/", {"Accept": "application/xml"})
        self.assertEqual(answer.code, 406)
        self.assertEqual(self.h.get("/simple/", {"Accept": "image/png"}).code, 406)

    def test_markersInJSON(self) -> None:
        """
        What upstream gave reaches JSON clients: hashes, requires-python,
        yanked with its reason, core metadata, size, upload time, status.
        """
        page = json.loads(self.h.get("/simple/foo/", JSON).body)
        sdistFile, wheel = page["files"]
        upstream = self.project.files
        self.assertEqual(sdistFile["hashes"], {"sha256": upstream[0].sha256})
        self.assertEqual(sdistFile["requires-python"], ">=3.8")
        self.assertEqual(sdistFile["yanked"], "bad build")
        self.assertEqual(sdistFile["size"], len(upstream[0].content))
        self.assertEqual(sdistFile["upload-time"], upstream[0].uploadTime)
        self.assertEqual(wheel["core-metadata"], {"sha256": upstream[1].jsonEntry()["core-metadata"]["sha256"]})
        self.assertEqual(wheel["dist-info-metadata"], wheel["core-metadata"])
        self.assertEqual(page["project-status"], {"status": "archived"})
        self.assertEqual(page["meta"]["api-version"], "1.4")
        sha = upstream[0].sha256
        self.assertEqual(sdistFile["url"], f"../../root/pypi/+f/{sha[:3]}/{sha[3:16]}/foo-1.0.tar.gz")

    def test_markersInHTML(self) -> None:
        """
        The HTML form carries the same markers as attributes, and the link
        keeps the sha256 fragment.
        """
        html = self.h.get("/simple/foo/").body.decode()
        sha = self.project.files[0].sha256
        self.assertIn(
            f'href="../../root/pypi/+f/{sha[:3]}/{sha[3:16]}/foo-1.0.tar.gz#sha256={sha}" '
            'data-requires-python="&gt;=3.8" data-yanked="bad build"',
            html,
        )
        self.assertIn('data-core-metadata="sha256=', html)
        self.assertIn('data-dist-info-metadata="sha256=', html)
        self.assertIn('<meta name="pypi:project-status" content="archived">', html)

    def test_htmlOnlyUpstream(self) -> None:
        """
        An upstream that speaks only HTML is parsed; the mirror claims 1.0,
        as the page has no sizes, and offers it as JSON too.
        """
        self.h.index.forms = ("html",)
        page = json.loads(self.h.get("/simple/foo/", JSON).body)
        self.assertEqual(page["meta"]["api-version"], "1.0")
        self.assertEqual(page["files"][0]["requires-python"], ">=3.8")
        self.assertNotIn("size", page["files"][0])
        self.assertEqual(self.h.index.lastHeaders["accept"].split(",")[0], JSON_V1)

    def test_wrongContentType(self) -> None:
        """
        An upstream answer that is no Simple API page is a 502 with a reason.
        """
        self.h.index.contentTypeOverride = "image/png"
        answer = self.h.get("/simple/foo/")
        self.assertEqual(answer.code, 502)
        self.assertIn(b"malformed", answer.body)

    def test_malformedJSON(self) -> None:
        """
        Malformed JSON from upstream is a 502, no traceback.
        """
        self.h.index.bodyOverride = b'{"files": [}'
        answer = self.h.get("/simple/foo/", JSON)
        self.assertEqual(answer.code, 502)
        self.assertNotIn(b"Traceback", answer.body)

    def test_nestedTooDeep(self) -> None:
        """
        JSON nested deeper than the parser goes, small or big, is a
        malformed page: a 502 that says so, and nothing logged as a crash.
        """
        log = CapturedLog(self)
        for depth in (3000, 300_000):
            self.h.index.bodyOverride = b'{"files": ' + b"[" * depth + b"]" * depth + b"}"
            answer = self.h.get("/simple/foo/", JSON)
            self.assertEqual(answer.code, 502)
            self.assertIn(b"malformed", answer.body)
        self.assertEqual(log.failures(), [])


class ValidatorTests(SynchronousTestCase):
    """
    ETags, 304s, Vary, Cache-Control, gzip and HEAD, on every page.
    """

    def setUp(self) -> None:
        self.h = Harness([generated("foo")])

    def test_headers(self) -> None:
        """
        Pages and the root carry a strong ETag, Vary and Cache-Control.
        """
        for path in ["/simple/foo/", "/simple/"]:
            for headers in [{}, JSON]:
                answer = self.h.get(path, headers)
                self.assertEqual(answer.code, 200)
                etag = answer.header("etag")
                assert etag is not None
                self.assertRegex(etag, r'^"[0-9a-f]{32}"$')
                self.assertEqual(answer.header("vary"), "Accept, Accept-Encoding")
                self.assertIsNotNone(answer.header("cache-control"))
                self.assertEqual(answer.length, len(answer.body))

    def test_etagPerForm(self) -> None:
        """
        Each form has its own ETag, stable across requests.
        """
        html = self.h.get("/simple/foo/").header("etag")
        self.assertEqual(self.h.get("/simple/foo/").header("etag"), html)
        self.assertNotEqual(self.h.get("/simple/foo/", JSON).header("etag"), html)

    def test_notModified(self) -> None:
        """
        If-None-Match with the current ETag: 304, no body; another: 200.
        """
        for path in ["/simple/foo/", "/simple/"]:
            etag = self.h.get(path, JSON).header("etag")
            answer = self.h.get(path, dict(JSON, **{"If-None-Match": f'"nope", {etag}'}))
            self.assertEqual((answer.code, answer.body), (304, b""))
            self.assertEqual(answer.header("etag"), etag)
            self.assertEqual(self.h.get(path, dict(JSON, **{"If-None-Match": '"other"'})).code, 200)

    def test_gzip(self) -> None:
        """
        A client that takes gzip gets it, with its own ETag; one that does
        not gets identity bytes.
        """
        plain = self.h.get("/simple/foo/")
        zipped = self.h.get("/simple/foo/", {"Accept-Encoding": "gzip, deflate"})
        self.assertEqual(zipped.header("content-encoding"), "gzip")
        self.assertEqual(gzip.decompress(zipped.body), plain.body)
        self.assertNotEqual(zipped.header("etag"), plain.header("etag"))
        self.assertIsNone(plain.header("content-encoding"))
        refused = self.h.get("/simple/foo/", {"Accept-Encoding": "gzip;q=0"})
        self.assertIsNone(refused.header("content-encoding"))

    def test_head(self) -> None:
        """
        HEAD is answered like GET, without the body.
        """
        for path in ["/simple/foo/", "/simple/"]:
            get = self.h.get(path, JSON)
            head = self.h.get(path, JSON, method="HEAD")
            self.assertEqual(head.code, 200)
            self.assertEqual(head.body, b"")
            for name in ("etag", "content-type", "vary", "cache-control"):
                self.assertEqual(head.header(name), get.header(name), name)


class BigBodyTests(SynchronousTestCase):
    """
    A big page keeps only its gzip bytes in memory; a client that does not
    take gzip gets the identity bytes inflated as they are sent.
    """

    def setUp(self) -> None:
        self.h = Harness([generated("big", 2000)])

    def test_kept(self) -> None:
        """
        A rendered big page holds its gzip bytes, not its identity bytes.
        """
        self.h.get("/simple/big/", JSON)
        served = self.h.pages.cached("big", "json")
        assert served is not None
        self.assertIsNone(served.body.identity)
        self.assertGreater(served.body.length, KEEP_IDENTITY)
        self.assertEqual(served.body.size, len(served.body.gzipped))

    def test_identity(self) -> None:
        """
        Identity bytes, whole, with their length and ETag, in both forms,
        cold and warm; HEAD says the same, without the body.
        """
        for headers in ({}, JSON):
            plain = self.h.get("/simple/big/", headers)
            again = self.h.get("/simple/big/", headers)
            zipped = self.h.get("/simple/big/", dict(headers, **{"Accept-Encoding": "gzip"}))
            head = self.h.get("/simple/big/", headers, method="HEAD")
            self.assertEqual(plain.code, 200)
            self.assertGreater(len(plain.body), KEEP_IDENTITY)
            self.assertEqual(plain.body, gzip.decompress(zipped.body))
            self.assertEqual(again.body, plain.body)
            self.assertEqual(plain.length, len(plain.body))
            self.assertIsNone(plain.header("content-encoding"))
            self.assertEqual((head.body, head.header("content-length")), (b"", str(len(plain.body))))
            self.assertEqual(head.header("etag"), plain.header("etag"))
        json.loads(self.h.get("/simple/big/", JSON).body)

    def test_notModified(self) -> None:
        """
        A client with the identity bytes already gets a 304.
        """
        etag = self.h.get("/simple/big/").header("etag")
        assert etag is not None
        answer = self.h.get("/simple/big/", {"If-None-Match": etag})
        self.assertEqual((answer.code, answer.body), (304, b""))


@implementer(IConsumer)
class _Consumer:
    """
    A consumer that takes one write, then pauses its producer.
    """

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self.producer.pauseProducing()


class InflatedTests(SynchronousTestCase):
    """
    L{_Inflated} sends a body a chunk at a time, only while the client
    keeps up, and stops when it goes.
    """

    body = Body.of(bytes(range(256)) * 4096)

    def test_keepsUp(self) -> None:
        """
        One chunk per turn the client takes; every byte, then done.
        """
        consumer = _Consumer()
        done = _Inflated(consumer, self.body).begin()  # type: ignore[arg-type]
        self.assertEqual(len(consumer.written), 1)
        while consumer.producer is not None:
            consumer.producer.resumeProducing()
        self.assertEqual(b"".join(consumer.written), bytes(range(256)) * 4096)
        self.assertLessEqual(max(map(len, consumer.written)), CHUNK)
        self.assertEqual(self.successResultOf(done), b"")

    def test_gone(self) -> None:
        """
        A client that goes stops the sending: nothing more is written.
        """
        consumer = _Consumer()
        inflated = _Inflated(consumer, self.body)  # type: ignore[arg-type]
        done = inflated.begin()
        inflated.stopProducing()
        inflated.resumeProducing()
        self.assertEqual(len(consumer.written), 1)
        self.failureResultOf(done, CancelledError)


class RootTests(SynchronousTestCase):
    """
    The root index lists the projects the mirror knows, and only those.
    """

    def test_knownOnly(self) -> None:
        """
        Projects appear in the root once someone asked for them.
        """
        h = Harness([generated("a"), generated("b"), generated("c")])
        self.assertEqual(json.loads(h.get("/simple/", JSON).body)["projects"], [])
        h.get("/simple/c/")
        h.get("/simple/a/")
        root = json.loads(h.get("/simple/", JSON).body)
        self.assertEqual(root["projects"], [{"name": "a"}, {"name": "c"}])
        self.assertIn(b'<a href="c/">c</a>', h.get("/simple/").body)
        self.assertNotIn("/simple/", h.index.requests)


class FreshnessTests(SynchronousTestCase):
    """
    The TTL, conditional refreshes and revalidation on request.
    """

    def setUp(self) -> None:
        self.h = Harness([generated("foo")], ttl=100, revalidateFloor=0)
        self.h.get("/simple/foo/")

    def upstreamHits(self) -> int:
        return self.h.index.requests["/simple/foo/"]

    def test_freshFromCache(self) -> None:
        """
        Within the TTL, pages come from the cache.
        """
        self.h.clock.advance(99)
        for _ in range(3):
            self.assertEqual(self.h.get("/simple/foo/").code, 200)
        self.assertEqual(self.upstreamHits(), 1)

    def test_conditionalRefresh(self) -> None:
        """
        After the TTL the page is revalidated with If-None-Match; a 304
        makes it fresh again for another TTL.
        """
        self.h.clock.advance(101)
        self.assertEqual(self.h.get("/simple/foo/").code, 200)
        self.assertEqual(self.upstreamHits(), 2)
        self.assertIsNotNone(self.h.index.lastHeaders.get("if-none-match"))
        self.h.clock.advance(99)
        self.h.get("/simple/foo/")
        self.assertEqual(self.upstreamHits(), 2)

    def test_changedUpstream(self) -> None:
        """
        A changed page upstream is served after the TTL.
        """
        self.h.index.projects["foo"].files.append(sdist("foo", "9.9"))
        self.assertNotIn(b"foo-9.9", self.h.get("/simple/foo/").body)
        self.h.clock.advance(101)
        self.assertIn(b"foo-9.9", self.h.get("/simple/foo/").body)

    def test_revalidateOnRequest(self) -> None:
        """
        Cache-Control no-cache or max-age=0 revalidates before answering.
        """
        self.h.index.projects["foo"].files.append(sdist("foo", "9.9"))
        for n, value in enumerate(["no-cache", "max-age=0", "public, MAX-AGE=0"], start=2):
            answer = self.h.get("/simple/foo/", {"Cache-Control": value})
            self.assertIn(b"foo-9.9", answer.body)
            self.assertEqual(self.upstreamHits(), n)

    def test_cacheControlCountsDown(self) -> None:
        """
        The page's Cache-Control max-age is what remains of its freshness.
        """
        self.h.clock.advance(40)
        self.assertEqual(self.h.get("/simple/foo/").header("cache-control"), "max-age=60")


class FailureTests(SynchronousTestCase):
    """
    Upstream down, failing or timing out.
    """

    def setUp(self) -> None:
        self.h = Harness([generated("foo"), generated("bar")], ttl=100, timeout=5)

    def test_staleWhenFailing(self) -> None:
        """
        A cached page is served stale, saying so, while upstream fails.
        """
        fresh = self.h.get("/simple/foo/")
        self.h.clock.advance(101)
        self.h.index.failWith = 503
        answer = self.h.get("/simple/foo/")
        self.assertEqual(answer.code, 200)
        self.assertEqual(answer.body, fresh.body)
        self.assertIn("503", answer.header("tailmirror-stale"))
        self.assertEqual(answer.header("cache-control"), "max-age=0, must-revalidate")
        self.flushLoggedErrors()

    def test_staleWhenTimingOut(self) -> None:
        """
        A cached page is served stale once --stale-after passes, well
        before the timeout.
        """
        self.h.get("/simple/foo/")
        self.h.clock.advance(101)
        self.h.index.hang = True
        d = self.h.start("GET", "/simple/foo/")
        self.h.flush()
        self.assertNoResult(d)
        self.h.clock.advance(2)
        answer = self.h.finish(d)
        self.assertEqual(answer.code, 200)
        self.assertIn("did not answer within 2 s", answer.header("tailmirror-stale"))

    def test_uncachedFailing(self) -> None:
        """
        An uncached page while upstream fails: 502 with a one-line reason.
        """
        self.h.index.failWith = 500
        answer = self.h.get("/simple/bar/")
        self.assertEqual(answer.code, 502)
        self.assertEqual(answer.header("content-type"), "text/plain; charset=utf-8")
        self.assertEqual(answer.body, b"upstream answered 500 for bar\n")

    def test_uncachedTimeout(self) -> None:
        """
        An uncached page while upstream hangs: 504 when the timeout passes,
        not later.
        """
        self.h.index.hang = True
        d = self.h.start("GET", "/simple/bar/")
        self.h.flush()
        self.h.clock.advance(4.9)
        self.h.flush()
        self.assertNoResult(d)
        self.h.clock.advance(0.1)
        answer = self.h.finish(d)
        self.assertEqual(answer.code, 504)
        self.assertEqual(answer.body.count(b"\n"), 1)

    def test_pageTooLarge(self) -> None:
        """
        A page past the size cap is not read further: 502, saying why.
        """
        self.h.upstream.maxPageBytes = 100
        answer = self.h.get("/simple/bar/")
        self.assertEqual(answer.code, 502)
        self.assertEqual(answer.body, b"upstream page is larger than the page size cap\n")

    def test_nextRequestTriesAgain(self) -> None:
        """
        After a failed fetch, the next request asks upstream afresh.
        """
        self.h.index.failWith = 502
        self.assertEqual(self.h.get("/simple/bar/").code, 502)
        self.h.index.failWith = None
        self.assertEqual(self.h.get("/simple/bar/").code, 200)
        self.assertEqual(self.h.index.requests["/simple/bar/"], 2)


class ConcurrencyTests(SynchronousTestCase):
    """
    Many clients, one upstream request.
    """

    def test_oneUpstreamRequest(self) -> None:
        """
        Concurrent requests for a project being fetched make one upstream
        request, and each client gets the whole page.
        """
        h = Harness([generated("foo", versions=50)])
        h.index.hang = True
        started = [h.start("GET", "/simple/foo/", JSON if i % 2 else {}) for i in range(20)]
        h.flush()
        self.assertEqual(len(h.index.hung), 1)
        h.index.hang = False
        request = h.index.hung[0]
        request.setHeader("Content-Type", JSON_V1)
        request.write(h.index.projects["foo"].jsonPage())
        request.finish()
        answers = [h.finish(d) for d in started]
        self.assertEqual(h.index.requests["/simple/foo/"], 1)
        for i, answer in enumerate(answers):
            self.assertEqual(answer.code, 200)
            self.assertEqual(answer.length, len(answer.body))
            if i % 2:
                self.assertEqual(len(json.loads(answer.body)["files"]), 50)
            else:
                self.assertEqual(answer.body.count(b"<a "), 50)

    def test_hangUpDoesNotDisturb(self) -> None:
        """
        A client that hangs up while the page is fetched does not cancel the
        fetch for the others, and the page is kept.
        """
        log = CapturedLog(self)
        h = Harness([generated("foo")])
        h.index.hang = True
        leaving = h.start("GET", "/simple/foo/")
        staying = h.start("GET", "/simple/foo/")
        h.flush()
        leaving.cancel()
        self.failureResultOf(leaving)
        h.flush()
        h.index.hang = False
        request = h.index.hung[0]
        request.setHeader("Content-Type", JSON_V1)
        request.write(h.index.projects["foo"].jsonPage())
        request.finish()
        self.assertEqual(h.finish(staying).code, 200)
        self.assertEqual(h.pages.known(), ["foo"])
        self.assertEqual(log.failures(), [])


class RestartTests(SynchronousTestCase):
    """
    Pages live in the journal across restarts.
    """

    def test_servedAfterRestartWithoutUpstream(self) -> None:
        """
        After a restart, cached pages are served without asking upstream
        until their TTL runs out, byte for byte as before.
        """
        h = Harness([generated("foo")], ttl=100)
        before = h.get("/simple/foo/", JSON)
        h.clock.advance(50)
        h = h.restart(ttl=100)
        h.index.failWith = 500
        after = h.get("/simple/foo/", JSON)
        self.assertEqual((after.code, after.body), (200, before.body))
        self.assertEqual(after.header("etag"), before.header("etag"))
        self.assertIsNone(after.header("tailmirror-stale"))
        self.assertEqual(h.index.requests["/simple/foo/"], 1)
        self.assertEqual(json.loads(h.get("/simple/", JSON).body)["projects"], [{"name": "foo"}])
        h.clock.advance(51)
        h.index.failWith = None
        h.get("/simple/foo/")
        self.assertEqual(h.index.requests["/simple/foo/"], 2)


class FastPathTests(SynchronousTestCase):
    """
    The fast path for fresh pages answers exactly as the Klein routes do.
    """

    def test_sameAnswers(self) -> None:
        """
        For every form, encoding, validator and method, the front resource
        and the Klein routes alone give the same status, headers and body.
        """
        import copy

        from treq.testing import RequestTraversalAgent

        from tailmirror.web._root import MirrorWeb

        h = Harness([generated("foo")])
        h.get("/simple/foo/")
        etag = h.get("/simple/foo/", JSON).header("etag")
        assert etag is not None
        klein = copy.copy(h)
        klein.http = RequestTraversalAgent(MirrorWeb(h.pages, h.files, h.mirror.status, h.mirror.metrics).app.resource())
        cases: list[tuple[str, dict[str, str]]] = [
            ("GET", {}),
            ("GET", JSON),
            ("GET", {"Accept": PIP_ACCEPT, "Accept-Encoding": "gzip"}),
            ("GET", dict(JSON, **{"If-None-Match": etag})),
            ("HEAD", {"Accept": "application/vnd.pypi.simple.latest+html"}),
            ("GET", {"Accept": "application/xml"}),
        ]
        for method, headers in cases:
            fast = h.get("/simple/foo/", headers, method=method)
            slow = klein.get("/simple/foo/", headers, method=method)
            fast.headers.pop("date"), slow.headers.pop("date")
            self.assertEqual((fast.code, fast.headers, fast.body), (slow.code, slow.headers, slow.body), headers)
        self.assertEqual(h.index.requests["/simple/foo/"], 1)


class JournalGrowthTests(SynchronousTestCase):
    """
    Revalidations that change nothing do not grow the journal per request.
    """

    def test_forcedRevalidationsNotRecorded(self) -> None:
        """
        A client forcing revalidation within the TTL (pip sends max-age=0
        with every page request) appends nothing when upstream says 304;
        a revalidation after the TTL is recorded once, so freshness
        survives a restart.
        """
        import os

        h = Harness([generated("foo")], ttl=100, revalidateFloor=0)
        h.get("/simple/foo/")
        size = os.path.getsize(h.journalPath)
        for _ in range(5):
            self.assertEqual(h.get("/simple/foo/", {"Cache-Control": "max-age=0"}).code, 200)
        self.assertEqual(h.index.requests["/simple/foo/"], 6)
        self.assertEqual(os.path.getsize(h.journalPath), size)
        h.clock.advance(101)
        h.get("/simple/foo/")
        grown = os.path.getsize(h.journalPath)
        self.assertGreater(grown, size)
        self.assertLess(grown - size, 100)

    def test_unchangedPagesWithoutETags(self) -> None:
        """
        An upstream without ETags answers every revalidation in full; an
        unchanged page appends nothing, a changed one is recorded.
        """
        import os

        h = Harness([generated("foo")], ttl=100, revalidateFloor=0)
        h.index.etags = False
        first = h.get("/simple/foo/").body
        size = os.path.getsize(h.journalPath)
        for _ in range(3):
            self.assertEqual(h.get("/simple/foo/", {"Cache-Control": "no-cache"}).body, first)
        self.assertEqual(h.index.requests["/simple/foo/"], 4)
        self.assertEqual(os.path.getsize(h.journalPath), size)
        h.index.projects["foo"].files.append(sdist("foo", "9.9"))
        self.assertIn(b"foo-9.9", h.get("/simple/foo/", {"Cache-Control": "no-cache"}).body)
        self.assertGreater(os.path.getsize(h.journalPath), size)


class WhereParsedTests(SynchronousTestCase):
    """
    A small JSON page from upstream is parsed and rendered on the reactor
    thread, where the pool's round trip would cost its client more than
    the work; HTML and big pages leave it.
    """

    def parsedInPool(self, project: FakeProject, forms: tuple[str, ...] = ("json", "html")) -> list[str]:
        threads = Threads()
        h = Harness([project], threads=threads)
        h.index.forms = forms
        answer = h.get(f"/simple/{project.name}/", JSON)
        self.assertEqual(answer.code, 200)
        self.assertEqual(len(json.loads(answer.body)["files"]), len(project.files))
        return [name for name in threads.calls if name in ("preparePage", "bodyDigest")]

    def test_smallJSON(self) -> None:
        self.assertEqual(self.parsedInPool(generated("foo")), [])

    def test_smallHTML(self) -> None:
        self.assertEqual(self.parsedInPool(generated("foo"), forms=("html",)), ["preparePage"])

    def test_bigJSON(self) -> None:
        from tailmirror.base._offload import SMALL_PAGE

        big = generated("foo", versions=SMALL_PAGE // 200)
        self.assertEqual(self.parsedInPool(big), ["bodyDigest", "preparePage"])
