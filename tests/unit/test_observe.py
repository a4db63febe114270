"""
Watching a mirror: its metrics, its status, its log lines and its access
log, in memory (the real resource tree and site over a fake index).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from tailmirror.web._access import AGENT_MAX, PATH_MAX, routeOf
from tailmirror.observe._metrics import StallMeter
from tailmirror.upstream._client import judgeRoot

from ..fakeindex import FakeProject, generated, sdist
from ..harness import CapturedLog, Harness, filePath

SIZE = 1_200_000


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """
    Every sample of a Prometheus text exposition, by name and labels.
    """
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


class MetricsTests(SynchronousTestCase):
    """
    C{/+metrics}: what the mirror did, in the Prometheus text format.
    """

    def setUp(self) -> None:
        self.file = sdist("foo", "1.0", size=SIZE)
        self.h = Harness([FakeProject("foo", [self.file])], maxSize=10 * 2**20)

    def scrape(self, h: Harness | None = None) -> dict[Any, float]:
        answer = (h or self.h).get("/+metrics")
        self.assertEqual(answer.code, 200)
        contentType = answer.header("content-type")
        assert contentType is not None
        self.assertTrue(contentType.startswith("text/plain; version=0.0.4"))
        return samples(answer.body.decode())

    def test_counts(self) -> None:
        """
        Requests by route and status; page answers by outcome; upstream
        requests by kind and outcome with their latency; bytes from the
        cache and from upstream; the cache, its limits and the journal.
        """
        h = self.h
        h.get("/simple/foo/")
        h.get("/simple/foo/")
        h.get("/simple/nonesuch/")
        h.get(filePath(self.file))
        h.get(filePath(self.file))
        found = self.scrape()
        self.assertEqual(value(found, "tailmirror_http_requests_total", route="page", status="200"), 2)
        self.assertEqual(value(found, "tailmirror_http_requests_total", route="page", status="404"), 1)
        self.assertEqual(value(found, "tailmirror_http_requests_total", route="file", status="200"), 2)
        self.assertGreaterEqual(value(found, "tailmirror_http_sent_bytes_total", route="file"), 2 * SIZE)
        self.assertEqual(value(found, "tailmirror_page_answers_total", outcome="refreshed"), 1)
        self.assertEqual(value(found, "tailmirror_page_answers_total", outcome="fresh"), 1)
        self.assertEqual(value(found, "tailmirror_page_refreshes_total", outcome="new"), 1)
        self.assertEqual(value(found, "tailmirror_page_refreshes_total", outcome="missing"), 1)
        self.assertEqual(value(found, "tailmirror_upstream_requests_total", kind="page", outcome="ok"), 1)
        self.assertEqual(value(found, "tailmirror_upstream_requests_total", kind="page", outcome="missing"), 1)
        self.assertEqual(value(found, "tailmirror_upstream_requests_total", kind="file", outcome="ok"), 1)
        self.assertEqual(value(found, "tailmirror_upstream_request_duration_seconds_count", kind="page"), 2)
        self.assertEqual(value(found, "tailmirror_upstream_request_duration_seconds_count", kind="file"), 1)
        self.assertEqual(value(found, "tailmirror_upstream_received_bytes_total", kind="file"), SIZE)
        # In memory, the download is done before its first answer begins.
        self.assertEqual(value(found, "tailmirror_files_served_total", source="cache"), 2)
        self.assertEqual(value(found, "tailmirror_files_served_total", source="download"), 0)
        self.assertEqual(value(found, "tailmirror_file_served_bytes_total", source="cache"), 2 * SIZE)
        self.assertEqual(value(found, "tailmirror_files_kept_total"), 1)
        self.assertEqual(value(found, "tailmirror_files_kept_bytes_total"), SIZE)
        self.assertEqual(value(found, "tailmirror_downloads_in_flight"), 0)
        self.assertEqual(value(found, "tailmirror_cache_files"), 1)
        self.assertGreaterEqual(value(found, "tailmirror_cache_bytes"), SIZE)
        self.assertEqual(value(found, "tailmirror_cache_max_bytes"), 10 * 2**20)
        self.assertEqual(value(found, "tailmirror_filesystem_free_bytes"), h.space.free)
        self.assertEqual(value(found, "tailmirror_cache_min_free_bytes"), int(h.space.total * 0.05))
        self.assertEqual(value(found, "tailmirror_journal_bytes"), h.mirror.journal.size)
        self.assertEqual(value(found, "tailmirror_journal_live_bytes"), h.mirror.journal.live)
        self.assertEqual(value(found, "tailmirror_journal_compactions_total"), 0)
        self.assertEqual(value(found, "tailmirror_journal_live_ratio"), h.mirror.journal.live / h.mirror.journal.size)
        self.assertEqual(value(found, "tailmirror_projects_known"), 1)
        self.assertIn("tailmirror_reactor_stall_seconds", {name for name, _ in found})
        self.assertIn("process_resident_memory_bytes", {name for name, _ in found})

    def test_upstreamSlots(self) -> None:
        """
        The upstream slots of each kind: how many, how many are busy, how
        many requests wait for one; and the bytes received that wait for
        the disk.
        """
        from ..harness import Threads

        threads = Threads(held=("_writeAll",))
        other = sdist("foo", "2.0", size=SIZE)
        h = Harness([FakeProject("foo", [self.file, other])], fileRequests=1, threads=threads)
        h.index.holdFiles = True
        gets = [h.start("GET", filePath(f)) for f in (self.file, other)]
        h.flush()
        (request, content), = h.index.heldFiles
        request.write(content[:500_000])  # past what is written at once
        h.flush()
        found = self.scrape(h)
        self.assertEqual(value(found, "tailmirror_upstream_slots", kind="file"), 1)
        self.assertEqual(value(found, "tailmirror_upstream_slots", kind="page"), h.mirror.upstream.pageSlots.limit)
        self.assertEqual(value(found, "tailmirror_upstream_slots_busy", kind="file"), 1)
        self.assertEqual(value(found, "tailmirror_upstream_slots_waiting", kind="file"), 1)
        self.assertEqual(value(found, "tailmirror_upstream_slots_busy", kind="page"), 0)
        self.assertGreater(value(found, "tailmirror_download_backlog_bytes"), 0)
        threads.release()
        request.write(content[500_000:])
        request.finish()
        h.flush()
        threads.release()
        h.flush()
        (request, content), = h.index.heldFiles[1:]
        request.write(content)
        request.finish()
        h.flush()
        threads.release()
        h.flush()
        self.assertEqual([h.finish(d).body for d in gets], [self.file.content, other.content])
        found = self.scrape(h)
        self.assertEqual(value(found, "tailmirror_upstream_slots_busy", kind="file"), 0)
        self.assertEqual(value(found, "tailmirror_upstream_slots_waiting", kind="file"), 0)
        self.assertEqual(value(found, "tailmirror_download_backlog_bytes"), 0)

    def test_boundedLabels(self) -> None:
        """
        No label carries a project's or a file's name, whatever is asked.
        """
        h = self.h
        h.get("/simple/foo/")
        h.get(filePath(self.file))
        for i in range(20):
            h.get(f"/simple/nonesuch{i}/")
            h.get(f"/elsewhere/{i}")
        values = {v for _, labels in self.scrape() for _, v in labels}
        self.assertFalse([v for v in values if "foo" in v or "nonesuch" in v or "elsewhere" in v], values)

    def test_evictionsAndCompactions(self) -> None:
        """
        Evictions and journal compactions are counted.
        """
        h = self.h
        h.get(filePath(self.file))
        h.space.free = 0
        h.tree.budget.check()
        h.flush()
        h.pages.compact()
        found = self.scrape()
        self.assertEqual(value(found, "tailmirror_evicted_files_total"), 1)
        # What the file took on disk, in whole blocks.
        self.assertGreaterEqual(value(found, "tailmirror_evicted_bytes_total"), SIZE)
        self.assertEqual(value(found, "tailmirror_journal_compactions_total"), 1)

    def test_registryPerMirror(self) -> None:
        """
        Two mirrors in one process count apart.
        """
        other = Harness([generated("foo")])
        self.h.get("/simple/foo/")
        self.assertEqual(value(self.scrape(), "tailmirror_page_answers_total", outcome="refreshed"), 1)
        self.assertEqual(value(self.scrape(other), "tailmirror_page_answers_total", outcome="refreshed"), 0)

    def test_elsewhere(self) -> None:
        """
        With C{--metrics-listen}, the mirror's own endpoint does not serve
        the metrics.
        """
        h = Harness([generated("foo")], metricsListen="tcp:0")
        answer = h.get("/+metrics")
        self.assertEqual(answer.code, 404)
        self.assertIn(b"--metrics-listen", answer.body)

    def test_routes(self) -> None:
        self.assertEqual(
            [routeOf(p) for p in (b"/simple/", b"/simple/foo/", b"/root/pypi/+f/abc/def/x.whl", b"/+status",
                                  b"/+metrics", b"/metrics", b"/", b"/favicon.ico")],
            ["index", "page", "file", "status", "metrics", "metrics", "other", "other"],
        )


class StallTests(SynchronousTestCase):
    """
    The reactor's stall: the longest delay of a timed call over the last
    window.
    """

    def test_longestDelay(self) -> None:
        clock = Clock()
        meter = StallMeter(clock, every=0.1, window=10)
        meter.start()
        clock.advance(0.1)
        self.assertAlmostEqual(meter.stall, 0.0)
        clock.advance(2.6)  # the reactor was held for 2.5 s past the call's time
        self.assertAlmostEqual(meter.stall, 2.5)
        for _ in range(105):
            clock.advance(0.1)
        self.assertAlmostEqual(meter.stall, 2.5)  # still in the last window
        for _ in range(105):
            clock.advance(0.1)
        self.assertAlmostEqual(meter.stall, 0.0, places=6)
        meter.stop()


class StatusTests(SynchronousTestCase):
    """
    C{/+status}: the facts a person asks first.
    """

    def setUp(self) -> None:
        self.file = sdist("foo", "1.0", size=SIZE)
        self.h = Harness([FakeProject("foo", [self.file]), generated("bar")], maxSize=10 * 2**20)

    def facts(self) -> dict[str, Any]:
        answer = self.h.get("/+status", {"Accept": "application/json"})
        self.assertEqual(answer.code, 200)
        self.assertEqual(answer.header("content-type"), "application/json")
        return json.loads(answer.body)  # type: ignore[no-any-return]

    def test_facts(self) -> None:
        """
        Version, upstream and its health, uptime, projects, the cache
        against its limits, and hit ratios.
        """
        from tailmirror._version import __version__

        h = self.h
        h.get("/simple/foo/")
        h.get("/simple/foo/")
        h.get(filePath(self.file))
        h.get(filePath(self.file))
        h.get(filePath(self.file))
        h.clock.advance(42)
        facts = self.facts()
        self.assertEqual(facts["version"], __version__)
        self.assertEqual(facts["upstream"]["url"], h.settings.upstream)
        self.assertIs(facts["upstream"]["healthy"], True)
        self.assertIsNotNone(facts["upstream"]["lastSuccess"])
        self.assertIsNone(facts["upstream"]["lastFailure"])
        self.assertEqual(facts["uptimeSeconds"], 42)
        self.assertEqual(facts["projectsKnown"], 1)
        cache = facts["cache"]
        self.assertEqual((cache["files"], cache["maxBytes"], cache["counted"]), (1, 10 * 2**20, True))
        self.assertGreaterEqual(cache["bytes"], SIZE)
        self.assertEqual(cache["filesystem"]["freeBytes"], h.space.free)
        # In memory, the download is done before its first answer begins.
        self.assertEqual(facts["hits"]["files"], {"fromCache": 3, "fromUpstream": 0, "ratio": 1.0})
        self.assertEqual(facts["hits"]["pages"]["ratio"], 0.5)
        self.assertEqual(facts["downloads"], [])

    def test_upstreamFailure(self) -> None:
        """
        The last failure of upstream, with its reason; healthy again once
        upstream answers.
        """
        h = self.h
        h.index.failWith = 503
        h.get("/simple/foo/")
        up = self.facts()["upstream"]
        self.assertIs(up["healthy"], False)
        self.assertIn("503", up["lastFailureReason"])
        h.index.failWith = None
        h.clock.advance(1)
        h.get("/simple/foo/")
        up = self.facts()["upstream"]
        self.assertIs(up["healthy"], True)
        self.assertIsNotNone(up["lastFailure"])

    def test_downloadsInFlight(self) -> None:
        """
        A download under way: its file, bytes so far, total and rate.
        """
        h = self.h
        h.index.holdFiles = True
        d = h.start("GET", filePath(self.file))
        h.flush()
        (request, content), = h.index.heldFiles
        request.write(content[:100_000])
        h.flush()
        h.clock.advance(2)
        (download,) = self.facts()["downloads"]
        self.assertEqual(download["file"], self.file.filename)
        self.assertEqual((download["bytes"], download["totalBytes"]), (100_000, SIZE))
        self.assertEqual(download["bytesPerSecond"], 50_000)
        self.assertIn(self.file.filename, self.h.get("/+status").body.decode())
        request.write(content[100_000:])
        request.finish()
        h.finish(d)
        facts = self.facts()
        self.assertEqual(facts["downloads"], [])
        self.assertEqual(facts["hits"]["files"], {"fromCache": 0, "fromUpstream": 1, "ratio": 0.0})

    def test_html(self) -> None:
        """
        For a browser: a page of its own, no script, nothing from elsewhere.
        """
        h = self.h
        h.get("/simple/foo/")
        for headers in ({}, {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, {"Accept": "*/*"}):
            answer = h.get("/+status", headers)
            self.assertEqual(answer.header("content-type"), "text/html; charset=utf-8")
            page = answer.body.decode()
            self.assertIn("tailmirror", page)
            self.assertIn(h.settings.upstream, page)
            self.assertNotIn("<script", page.lower())
            self.assertNotIn("src=", page.lower())
            self.assertNotIn('href="http', page.lower())
        self.assertEqual(json.loads(h.get("/+status?format=json").body)["projectsKnown"], 1)

    def test_escaped(self) -> None:
        """
        What upstream says is escaped in the page.
        """
        self.h.mirror.status.upstreamFailed("<b>boom</b>")
        self.assertIn("&lt;b&gt;boom&lt;/b&gt;", self.h.get("/+status").body.decode())


class LogTests(SynchronousTestCase):
    """
    The log says what happened, once, with its facts as fields.
    """

    def setUp(self) -> None:
        self.file = sdist("foo", "1.0", size=SIZE)
        self.h = Harness([FakeProject("foo", [self.file])], revalidateFloor=0)
        self.log = CapturedLog(self)

    def events(self, key: str, value: Any) -> list[dict[str, Any]]:
        return [e for e in self.log.events if e.get(key) == value]

    def test_uncachedFailure(self) -> None:
        """
        Upstream failing for a page the mirror has no copy of is an error in
        the log, with the project and the reason.
        """
        self.h.index.failWith = 503
        self.assertEqual(self.h.get("/simple/foo/").code, 502)
        (event,) = self.events("project", "foo")
        self.assertEqual(event["log_level"], LogLevel.error)
        self.assertIn("503", event["reason"])

    def test_staleOnce(self) -> None:
        """
        A refresh that fails, with three clients waiting, is logged once.
        """
        h = self.h
        h.get("/simple/foo/")
        h.clock.advance(h.settings.ttl + 1)
        h.index.hang = True
        waiting = [h.start("GET", "/simple/foo/") for _ in range(3)]
        h.flush()
        for request in h.index.hung:
            request.setResponseCode(503)
            request.finish()
        h.index.hang = False
        for d in waiting:
            self.assertEqual(h.finish(d).code, 200)
        stale = [e for e in self.events("project", "foo") if e.get("outcome") == "stale"]
        self.assertEqual(len(stale), 1)
        self.assertEqual(stale[0]["log_level"], LogLevel.warn)
        self.assertIn("503", stale[0]["reason"])

    def test_refreshOutcomes(self) -> None:
        """
        Each refresh logs its outcome: new, unchanged, missing.
        """
        h = self.h
        h.get("/simple/foo/")
        h.get("/simple/foo/", {"Cache-Control": "max-age=0"})
        h.get("/simple/nonesuch/")
        outcomes = [(e["project"], e["outcome"]) for e in self.log.events if "outcome" in e]
        self.assertEqual(outcomes, [("foo", "new"), ("foo", "unchanged"), ("nonesuch", "missing")])

    def test_download(self) -> None:
        """
        A download logs its start (file, size) and its end (bytes, seconds,
        rate).
        """
        self.h.get(filePath(self.file))
        (started, kept) = self.events("file", self.file.filename)
        self.assertIn("downloading", started["log_format"])
        self.assertEqual(started["bytes"], SIZE)
        self.assertEqual(kept["bytes"], SIZE)
        self.assertIn("seconds", kept)
        self.assertIn("rate", kept)
        self.assertIn("MB/s", self.log.text())

    def test_downloadFailure(self) -> None:
        """
        A failed download logs why, with the bytes it got.
        """
        self.h.index.corrupt.add(self.file.filename)
        self.h.get(filePath(self.file))
        failed = [e for e in self.events("file", self.file.filename) if "reason" in e]
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]["log_level"], LogLevel.error)
        self.assertIn("corrupt", failed[0]["reason"])
        self.assertEqual(failed[0]["bytes"], SIZE)


class AccessLogTests(SynchronousTestCase):
    """
    The access log: in the mirror's log by default, off, or in a file of
    its own; bounded lines.
    """

    def test_inTheLog(self) -> None:
        log = CapturedLog(self)
        h = Harness([generated("foo")])
        h.get("/simple/foo/", {"User-Agent": "pip/24.0 " + "x" * 5000})
        (event,) = [e for e in log.events if e.get("log_namespace") == "tailmirror.access"]
        self.assertEqual((event["method"], event["path"], event["status"]), ("GET", "/simple/foo/", 200))
        self.assertEqual(len(event["agent"]), AGENT_MAX + 3)
        self.assertTrue(event["agent"].startswith("pip/24.0 x"))

    def test_off(self) -> None:
        log = CapturedLog(self)
        h = Harness([generated("foo")], accessLog="off")
        h.get("/simple/foo/")
        self.assertFalse([e for e in log.events if e.get("log_namespace") == "tailmirror.access"])

    def test_file(self) -> None:
        """
        A file of its own, in the combined format, a line a request, each
        bounded: a long path and a long user agent are cut, and what is not
        printable is escaped.
        """
        path = os.path.join(tempfile.mkdtemp(), "access.log")
        log = CapturedLog(self)
        h = Harness([generated("foo")], accessLog=path)
        h.mirror.site.accessLog.open()
        h.get("/simple/foo/", {"User-Agent": "uv/0.5"})
        h.get("/simple/" + "a" * 5000 + "/", {"User-Agent": "x" * 5000 + '"\x1b'})
        h.mirror.close()
        with open(path) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertIn('"GET /simple/foo/ HTTP/1.1" 200', lines[0])
        self.assertTrue(lines[0].endswith('"uv/0.5"'))
        self.assertLess(len(lines[1]), PATH_MAX + 2 * AGENT_MAX + 200)
        self.assertFalse([e for e in log.events if e.get("log_namespace") == "tailmirror.access"])


class RootProbeTests(SynchronousTestCase):
    """
    Judging the upstream's root at start: a Simple API index or not.
    """

    ROOT = "http://index.test/simple/"

    def test_simple(self) -> None:
        for contentType, head in [
            ("application/vnd.pypi.simple.v1+json", b'{"meta": {"api-version": "1.1"}, "projects": ['),
            ("application/vnd.pypi.simple.v1+html", b"<html>"),
            ("text/html; charset=utf-8", b'<html><head><meta name="pypi:repository-version" content="1.1">'),
            ("text/html", b'<html><body><a href="foo/">foo</a>'),
            ("application/json", b'{"meta": {}, "projects": []}'),
        ]:
            self.assertIsNone(judgeRoot(self.ROOT, 200, contentType, head), contentType)

    def test_notSimple(self) -> None:
        missing = judgeRoot("http://index.test/", 404, "text/html", b"no")
        assert missing is not None
        self.assertIn("404", missing)
        self.assertIn("/simple/", missing)
        homepage = judgeRoot(
            "http://index.test/", 200, "text/html",
            b'<html><head><link rel="stylesheet" href="/s.css"><script src="/a.js"></script>',
        )
        assert homepage is not None
        self.assertIn("web page", homepage)
        other = judgeRoot(self.ROOT, 200, "application/octet-stream", b"")
        assert other is not None
        self.assertIn("neither the HTML nor the JSON form", other)
        denied = judgeRoot(self.ROOT, 403, "text/plain", b"")
        assert denied is not None
        self.assertIn("403", denied)
