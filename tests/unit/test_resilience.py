"""
Never a wrong page, never a long wait: pages are stored only when they are
right, a client with a copy waits seconds at most for a failing upstream,
revalidation costs almost nothing, a small cold file that fails is an
answer with a status, and replay survives any record.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, cast

from hypothesis import given, settings, strategies as st
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

import tailmirror.pages._prepare
from tailmirror.pages._journal import Journal

from ..fakeindex import JSON_TYPE, FakeProject, generated, sdist
from ..harness import PIP_ACCEPT, CapturedLog, Harness, filePath, finish

PIP = {"Accept": PIP_ACCEPT, "Cache-Control": "max-age=0"}
JSON = {"Accept": JSON_TYPE}


def files(answer: Any) -> list[str]:
    return [f["filename"] for f in json.loads(answer.body)["files"]]


class ValidityTests(SynchronousTestCase):
    """
    Only a right page is stored; the body decides its form.
    """

    def setUp(self) -> None:
        self.project = generated("foo")
        self.h = Harness([self.project], ttl=100, revalidateFloor=0)
        self.log = CapturedLog(self)

    def test_jsonLabelledHTML(self) -> None:
        """
        A JSON body labelled as HTML is read as JSON, and the label logged.
        """
        self.h.index.forms = ("json",)
        self.h.index.contentTypeOverride = "text/html; charset=utf-8"
        answer = self.h.get("/simple/foo/", JSON)
        self.assertEqual(answer.code, 200)
        self.assertEqual(files(answer), [f.filename for f in self.project.files])
        self.assertTrue([f for f in self.log.formats(LogLevel.warn) if "the page of {project}" in f])

    def test_htmlLabelledJSON(self) -> None:
        """
        An HTML body labelled as JSON is read as HTML.
        """
        self.h.index.forms = ("html",)
        self.h.index.contentTypeOverride = JSON_TYPE
        answer = self.h.get("/simple/foo/", JSON)
        self.assertEqual(answer.code, 200)
        self.assertEqual(files(answer), [f.filename for f in self.project.files])

    GARBLED = {
        "a NUL byte": b"<html><body><a href='x-1.0.tar.gz'>x-1.0.tar.gz</a>\x00</body></html>",
        "not UTF-8": b"<html><body><a href='x-1.0.tar.gz'>x-1.0.tar.gz\xff\xfe</a></body></html>",
        "an anchor left open": b"<html><body><a href='x-1.0.tar.gz'>x-1.0.tar.gz</a><a href='y</body></html>",
        "cut short": b"<html><body><a href='x-1.0.tar.gz'>x-1.0.tar.gz</a>",
        "no links, no document": b"Service Unavailable",
        "JSON without files": b'{"meta": {"api-version": "1.0"}, "name": "foo"}',
        "JSON without meta": b'{"name": "foo", "files": []}',
        "JSON cut short": b'{"meta": {"api-version": "1.0"}, "name": "foo", "files": [',
    }

    def test_garbledUncached(self) -> None:
        """
        A garbled body for a page the mirror has no copy of: a 502 that
        says what is wrong, and nothing stored.
        """
        for what, body in self.GARBLED.items():
            h = Harness([generated("foo")])
            h.index.forms = ("json",) if body.startswith(b"{") else ("html",)
            h.index.bodyOverride = body
            answer = h.get("/simple/foo/")
            self.assertEqual(answer.code, 502, what)
            self.assertIn(b"upstream sent a malformed page", answer.body, what)
            self.assertEqual(h.pages.known(), [], what)
            self.assertEqual(os.path.getsize(h.journalPath), 0, what)

    def test_garbledCached(self) -> None:
        """
        A garbled body for a page the mirror has: its copy is served stale
        with the reason; nothing of the garbled body is kept, not even its
        ETag, so a later 304 cannot confirm it.
        """
        h = self.h
        good = h.get("/simple/foo/", JSON)
        size = os.path.getsize(h.journalPath)
        for what, body in self.GARBLED.items():
            h.index.forms = ("json",) if body.startswith(b"{") else ("html",)
            h.index.bodyOverride = body
            answer = h.get("/simple/foo/", {**JSON, "Cache-Control": "no-cache"})
            self.assertEqual(answer.code, 200, what)
            self.assertEqual(answer.body, good.body, what)
            self.assertIn("malformed", answer.header("tailmirror-stale"), what)
        self.assertEqual(os.path.getsize(h.journalPath), size)
        # The validator sent upstream is still the good page's.
        h.index.bodyOverride = None
        h.index.forms = ("json", "html")
        answer = h.get("/simple/foo/", {**JSON, "Cache-Control": "no-cache"})
        self.assertIsNone(answer.header("tailmirror-stale"))
        self.assertEqual(h.index.lastHeaders.get("if-none-match"), h.pages._index["foo"].etag)


class StaleTests(SynchronousTestCase):
    """
    A client with a copy to fall back on waits seconds at most.
    """

    def setUp(self) -> None:
        self.project = generated("foo")
        self.h = Harness([self.project, generated("bar")], ttl=100, timeout=15)
        self.h.get("/simple/foo/", JSON)
        self.h.clock.advance(101)

    def test_staleAfter(self) -> None:
        """
        Upstream accepts and never answers: the copy is served after
        --stale-after, not at the timeout; the refresh goes on, and when
        upstream answers at last the new page is kept.
        """
        h = self.h
        h.index.hang = True
        d = h.start("GET", "/simple/foo/", JSON)
        h.flush()
        h.clock.advance(1.9)
        self.assertNoResult(d)
        h.clock.advance(0.1)
        answer = h.finish(d)
        self.assertEqual(answer.code, 200)
        self.assertIn("did not answer within 2 s", answer.header("tailmirror-stale"))
        # Upstream answers, late: the refresh carries on and keeps it.
        self.project.files.append(sdist("foo", "9.9"))
        h.index.hang = False
        (request,) = h.index.hung
        request.write(h.index._page(request, "foo"))
        request.finish()
        h.flush()
        self.assertIn("foo-9.9.tar.gz", files(h.get("/simple/foo/", JSON)))

    def test_hangingUpstreamOpensTheWindow(self) -> None:
        """
        A refresh that does not answer within --stale-after counts as a
        failure: the next clients are served at once, not after 2 s each.
        """
        h = self.h
        h.get("/simple/bar/", JSON)
        h.clock.advance(101)
        h.index.hang = True
        d = h.start("GET", "/simple/foo/", JSON)
        h.flush()
        h.clock.advance(2)
        self.assertIn("did not answer within 2 s", h.finish(d).header("tailmirror-stale"))
        d = h.start("GET", "/simple/bar/", JSON)
        h.flush()
        self.assertIn("retrying in the background", h.finish(d).header("tailmirror-stale"))

    def test_retryWindow(self) -> None:
        """
        After an upstream failure, copies are served at once for
        --retry-after seconds while one probe asks upstream; an uncached
        page still asks upstream.
        """
        h = self.h
        h.get("/simple/bar/", JSON)
        h.clock.advance(101)
        h.index.failWith = 503
        self.assertIn("503", h.get("/simple/foo/", JSON).header("tailmirror-stale"))
        asked = h.index.requests["/simple/foo/"] + h.index.requests["/simple/bar/"]
        h.index.failWith = None
        h.index.hang = True  # the probe will wait
        for name in ("foo", "bar", "foo", "bar"):
            d = h.start("GET", f"/simple/{name}/", JSON)
            h.flush()
            answer = h.finish(d)  # at once, no clock advanced
            self.assertIn("retrying in the background", answer.header("tailmirror-stale"))
        # One probe, not one request each.
        self.assertEqual(h.index.requests["/simple/foo/"] + h.index.requests["/simple/bar/"], asked + 1)
        h.index.hang = False
        for request in h.index.hung:
            request.write(h.index._page(request, request.path.decode().strip("/").split("/")[1]))
            request.finish()
        h.flush()
        h.clock.advance(1)
        # The probe answered: upstream is back, and the window is closed.
        answer = h.get("/simple/bar/", JSON)
        self.assertIsNone(answer.header("tailmirror-stale"))

    def test_windowEnds(self) -> None:
        """
        Past --retry-after, a client waits for upstream again (up to
        --stale-after).
        """
        h = self.h
        h.index.failWith = 503
        h.get("/simple/foo/", JSON)
        h.clock.advance(11)
        h.index.failWith = None
        answer = h.get("/simple/foo/", JSON)
        self.assertIsNone(answer.header("tailmirror-stale"))

    def test_uncachedStillAsks(self) -> None:
        """
        In the window, a page the mirror has no copy of is still asked for.
        """
        h = Harness([generated("foo"), generated("bar")])
        h.index.failWith = 503
        self.assertEqual(h.get("/simple/foo/").code, 502)
        h.index.failWith = None
        self.assertEqual(h.get("/simple/bar/").code, 200)


class RevalidationTests(SynchronousTestCase):
    """
    pip's C{max-age=0} on every page: revalidated at most once a floor, and
    an unchanged page costs no parse, no render, no record.
    """

    def test_floor(self) -> None:
        """
        With pip's real headers, a page checked less than --revalidate-floor
        ago is served as it is; after the floor, upstream is asked.
        """
        h = Harness([generated("foo")], ttl=900, revalidateFloor=60)
        h.get("/simple/foo/", PIP)
        # Within the floor, pip's revalidating request takes the fast path.
        self.assertIsNotNone(h.pages.cached("foo", "json", revalidate=True))
        for _ in range(5):
            h.clock.advance(10)
            self.assertEqual(h.get("/simple/foo/", PIP).code, 200)
        self.assertEqual(h.index.requests["/simple/foo/"], 1)
        h.clock.advance(11)
        h.get("/simple/foo/", PIP)
        self.assertEqual(h.index.requests["/simple/foo/"], 2)

    def test_floorZero(self) -> None:
        h = Harness([generated("foo")], revalidateFloor=0)
        for _ in range(3):
            h.get("/simple/foo/", PIP)
        self.assertEqual(h.index.requests["/simple/foo/"], 3)

    def test_floorNeverExtendsTTL(self) -> None:
        """
        A page past its TTL is refreshed, whatever the floor.
        """
        h = Harness([generated("foo")], ttl=30, revalidateFloor=60)
        h.get("/simple/foo/", PIP)
        h.clock.advance(31)
        h.get("/simple/foo/", PIP)
        self.assertEqual(h.index.requests["/simple/foo/"], 2)

    def test_unchangedWithoutETag(self) -> None:
        """
        Upstream without ETags sends the same page in full: no parse, no
        journal record.
        """
        parsed = []
        real = tailmirror.pages._prepare.preparePage

        def counting(*args: Any) -> Any:
            parsed.append(args[0])
            return real(*args)

        self.patch(tailmirror.pages._prepare, "preparePage", counting)
        h = Harness([generated("foo")], revalidateFloor=0)
        h.index.etags = False
        first = h.get("/simple/foo/", PIP)
        size = os.path.getsize(h.journalPath)
        for _ in range(5):
            h.clock.advance(1)
            self.assertEqual(h.get("/simple/foo/", PIP).body, first.body)
        self.assertEqual(h.index.requests["/simple/foo/"], 6)
        self.assertEqual(parsed, ["foo"])
        self.assertEqual(os.path.getsize(h.journalPath), size)
        # A changed page is parsed and kept.
        h.index.projects["foo"].files.append(sdist("foo", "9.9"))
        self.assertIn(b"foo-9.9", h.get("/simple/foo/", PIP).body)
        self.assertEqual(parsed, ["foo", "foo"])

    def test_digestSurvivesRestartAndCompaction(self) -> None:
        """
        The digest is in the journal: after a compaction and a restart, an
        unchanged body is still not parsed.
        """
        parsed = []
        real = tailmirror.pages._prepare.preparePage
        self.patch(tailmirror.pages._prepare, "preparePage", lambda *a: parsed.append(a[0]) or real(*a))  # type: ignore[func-returns-value]
        h = Harness([generated("foo")], revalidateFloor=0)
        h.index.etags = False
        h.get("/simple/foo/", PIP)
        self.successResultOf(h.pages.compact())
        h = h.restart(revalidateFloor=0)
        h.get("/simple/foo/", PIP)
        self.assertEqual(parsed, ["foo"])


class NotFoundTests(SynchronousTestCase):
    """
    Upstream's 404 for a project is remembered for --not-found-ttl (by
    default the revalidation floor): a client asking again within it, even
    revalidating as pip does, costs no trip upstream.
    """

    def test_rememberedThenAskedAgain(self) -> None:
        """
        A missing project asked for twice within the time costs one
        upstream request; past the time upstream is asked again, and a
        project that appeared there meanwhile is served from then on.
        """
        h = Harness([generated("foo")], revalidateFloor=60)
        for _ in range(3):
            self.assertEqual(h.get("/simple/private/", PIP).code, 404)
            h.clock.advance(10)
        self.assertEqual(h.index.requests["/simple/private/"], 1)
        h.index.add(generated("private"))
        h.clock.advance(31)
        self.assertEqual(h.get("/simple/private/", PIP).code, 200)
        self.assertEqual(h.index.requests["/simple/private/"], 2)
        self.assertEqual(h.get("/simple/private/", PIP).code, 200)
        self.assertEqual(h.index.requests["/simple/private/"], 2)

    def test_fileOfAMissingProject(self) -> None:
        """
        A cold file of a project upstream has not (a lock file's link)
        finds the 404 remembered too.
        """
        h = Harness([generated("foo")], notFoundTTL=120)
        f = sdist("private", "1.0")
        for _ in range(2):
            self.assertEqual(h.get(filePath(f)).code, 404)
            h.clock.advance(100)
        self.assertEqual(h.index.requests["/simple/private/"], 1)

    def test_gone(self) -> None:
        """
        A project that upstream no longer has, once it said so, is answered
        404 without asking again within the time.
        """
        h = Harness([generated("foo")], ttl=30, revalidateFloor=60)
        self.assertEqual(h.get("/simple/foo/", PIP).code, 200)
        del h.index.projects["foo"]
        h.clock.advance(31)
        self.assertEqual(h.get("/simple/foo/", PIP).code, 404)
        self.assertEqual(h.get("/simple/foo/", PIP).code, 404)
        self.assertEqual(h.index.requests["/simple/foo/"], 2)

    def test_zeroAsksEveryTime(self) -> None:
        """
        With --not-found-ttl 0, each request asks upstream.
        """
        h = Harness([generated("foo")], notFoundTTL=0)
        for _ in range(3):
            self.assertEqual(h.get("/simple/private/", PIP).code, 404)
        self.assertEqual(h.index.requests["/simple/private/"], 3)


class SmallFileTests(SynchronousTestCase):
    """
    A small cold file that fails gets a status and its reason; a large one
    that fails after bytes went out is cut off.
    """

    def test_corruptSmall(self) -> None:
        f = sdist("foo", "1.0", size=50_000)
        h = Harness([FakeProject("foo", [f])])
        h.index.corrupt.add(f.filename)
        answers = [h.start("GET", filePath(f)) for _ in range(3)]
        for d in answers:
            answer = h.finish(d)
            self.assertEqual(answer.code, 502)
            self.assertIn(b"corrupt", answer.body)
            self.assertIsNone(answer.header("etag"))

    def test_truncatedSmall(self) -> None:
        f = sdist("foo", "1.0", size=50_000)
        h = Harness([FakeProject("foo", [f])])
        h.index.truncate.add(f.filename)
        answer = h.get(filePath(f))
        self.assertIn(answer.code, (502, 504))

    def test_corruptLarge(self) -> None:
        """
        A large file streamed as it arrives, found corrupt at its end: the
        clients' responses are cut off, never whole.
        """
        f = sdist("foo", "1.0", size=3_000_000)
        h = Harness([FakeProject("foo", [f])])
        h.index.corrupt.add(f.filename)
        h.index.holdFiles = True
        d = h.start("GET", filePath(f))
        h.flush()
        (request, content), = h.index.heldFiles
        for i in range(0, len(content), 500_000):
            request.write(content[i : i + 500_000])
            h.flush()
        finish(request)
        answer = h.finish(d)
        self.assertEqual(answer.code, 200)
        self.assertIsInstance(answer.body, Exception)


class DamagedCopyTests(SynchronousTestCase):
    def test_refetched(self) -> None:
        """
        A copy in the journal that cannot be read back is fetched afresh.
        """
        h = Harness([generated("foo")])
        h.get("/simple/foo/")
        entry = h.pages._index["foo"]
        f, offset, length = entry.where
        os.pwrite(f.fd, b"[" * length, offset)
        h = h.restart()
        answer = h.get("/simple/foo/", JSON)
        self.assertEqual(answer.code, 200)
        self.assertEqual(len(files(answer)), 3)


# Journal replay survives any record.

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_headers = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.text(max_size=10), st.just("foo"), _json),
        "fetched": st.one_of(st.floats(), st.integers(), st.none(), st.just(1.5), _json),
        "etag": st.one_of(st.none(), st.text(max_size=5), _json),
        "digest": st.one_of(st.none(), st.text(max_size=5), _json),
        "gone": _json,
    },
)
_records = st.one_of(
    _json.map(lambda v: json.dumps(v).encode()),
    st.tuples(_headers).map(lambda t: json.dumps(list(t)).encode()),
    st.tuples(_headers, _json).map(lambda t: json.dumps(list(t)).encode()),
    st.binary(max_size=40).filter(lambda b: b"\n" not in b),
)


class ReplayTests(SynchronousTestCase):
    def good(self, journal: Journal, name: str) -> None:
        journal.commit(journal.pageRecord(name, '"e"', 1.0, json.dumps({"meta": {}, "name": name, "files": []}).encode(), "d" * 64))

    @settings(max_examples=150, deadline=None)
    @given(st.lists(_records, max_size=6))
    def test_anyRecord(self, records: list[bytes]) -> None:
        """
        Arbitrary JSON values (and bytes) as records between good ones:
        start never stops, the good records are kept, each bad one skipped.
        """
        path = os.path.join(tempfile.mkdtemp(), "journal.jsonl")
        journal = Journal(path)
        journal.open()
        self.good(journal, "first")
        journal.close()
        with open(path, "ab") as f:
            for record in records:
                f.write(record + b"\n")
        journal = Journal(path)
        journal.open()
        self.good(journal, "last")
        journal.close()
        journal = Journal(path)
        index = journal.open()
        try:
            self.assertIn("last", index)
            for entry in index.values():
                self.assertIsInstance(entry.name, str)
                self.assertIsInstance(entry.fetched, float)
                self.assertIsInstance(entry.etag, (str, type(None)))
                self.assertIsInstance(journal.readPage(entry), dict) if entry.name in ("first", "last") else None
        finally:
            journal.close()

    def test_namedShapes(self) -> None:
        """
        The records the issue names: skipped, each reported with its line.
        """
        path = os.path.join(tempfile.mkdtemp(), "journal.jsonl")
        bad = [
            b'[{"fetched": 1}]',
            b'[{"name": "foo", "fetched": null}]',
            b"[" * 100_000 + b"]" * 100_000,
            b'[{"name": "foo", "fetched": 1.0}, [1, 2]]',
            b'[{"name": "foo", "fetched": 1.0}, "page"]',
            b'[{"name": "Foo_Bar", "fetched": 1.0}, {}]',
        ]
        with open(path, "wb") as f:
            f.write(b"\n".join(bad) + b"\n")
        log = CapturedLog(self)
        journal = Journal(path)
        self.assertEqual(journal.open(), {})
        journal.close()
        reports = [e for e in log.events if e.get("log_level") == LogLevel.error]
        self.assertEqual([e["line"] for e in reports], list(range(1, len(bad) + 1)))


class LazyRenderTests(SynchronousTestCase):
    def test_formWhenAsked(self) -> None:
        """
        A refresh renders the form its client asked for; the other form is
        rendered when first asked for, once.
        """
        h = Harness([generated("foo")])
        h.get("/simple/foo/", JSON)
        # The cache keys by Hashable; a page's renderings by (name, serial, form).
        self.assertEqual([cast(tuple[str, int, str], k)[2] for k in h.pages._renders.cache._items], ["json"])
        html = h.get("/simple/foo/", {"Accept": "text/html"})
        self.assertIn(b"<!DOCTYPE html>", html.body)
        self.assertEqual(sorted(cast(tuple[str, int, str], k)[2] for k in h.pages._renders.cache._items), ["html", "json"])
        self.assertEqual(h.index.requests["/simple/foo/"], 1)

    def test_fileLookupRendersNothing(self) -> None:
        """
        A cold file whose page the mirror fetches to find its link renders
        no form of the page.
        """
        f = sdist("foo", "1.0")
        h = Harness([FakeProject("foo", [f])])
        self.assertEqual(h.get(filePath(f)).body, f.content)
        self.assertEqual(list(h.pages._renders.cache._items), [])
