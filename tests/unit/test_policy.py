"""
Supply-chain policy a mirror enforces for a fleet: quarantine and project
status (PEP 792), a release cooldown, pinned files kept, and the markers
upstream gives passed through.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from tailmirror.pages._policy import parseDuration

from ..fakeindex import FakeProject, sdist
from ..harness import JSON, DAY, NOW, CapturedLog, Harness, filePath, iso, policyClock

HTML = {"Accept": "text/html"}
AGAIN = {"Cache-Control": "no-cache"}


def listed(answer: Any) -> list[str]:
    return [f["filename"] for f in json.loads(answer.body)["files"]]


class QuarantineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.file = sdist("foo", "1.0", size=5000)
        self.project = FakeProject("foo", [self.file])
        self.h = Harness([self.project], revalidateFloor=0, clock=policyClock())
        self.assertEqual(self.h.get(filePath(self.file)).body, self.file.content)

    def quarantine(self, status: str | None) -> None:
        self.project.extra = {} if status is None else {"project-status": {"status": status, "reason": "under review"}}
        self.h.get("/simple/foo/", {**JSON, **AGAIN})

    def test_quarantined(self) -> None:
        """
        Once a refresh sees the status, no files are listed in either form,
        and the cached file is not served: a 404 naming the quarantine.
        """
        self.quarantine("quarantined")
        self.assertEqual(listed(self.h.get("/simple/foo/", JSON)), [])
        html = self.h.get("/simple/foo/", HTML).body
        self.assertNotIn(b"foo-1.0.tar.gz", html)
        self.assertIn(b'content="quarantined"', html)
        answer = self.h.get(filePath(self.file))
        self.assertEqual(answer.code, 404)
        self.assertIn(b"quarantined", answer.body)

    def test_lifted(self) -> None:
        """
        When the quarantine is lifted, the cached file is served again
        without a new download.
        """
        self.quarantine("quarantined")
        self.quarantine(None)
        self.assertEqual(listed(self.h.get("/simple/foo/", JSON)), ["foo-1.0.tar.gz"])
        self.assertEqual(self.h.get(filePath(self.file)).body, self.file.content)
        self.assertEqual(self.h.index.requests["/files/foo-1.0.tar.gz"], 1)

    def test_survivesRestart(self) -> None:
        self.quarantine("quarantined")
        h = self.h.restart(revalidateFloor=0)
        self.assertEqual(h.get(filePath(self.file)).code, 404)

    def test_archivedAndDeprecated(self) -> None:
        """
        Other statuses pass through with their reason; nothing else changes.
        """
        for status in ("archived", "deprecated"):
            self.quarantine(status)
            page = json.loads(self.h.get("/simple/foo/", JSON).body)
            self.assertEqual(page["project-status"], {"status": status, "reason": "under review"})
            self.assertEqual(listed(self.h.get("/simple/foo/", JSON)), ["foo-1.0.tar.gz"])
            html = self.h.get("/simple/foo/", HTML).body
            self.assertIn(f'content="{status}"'.encode(), html)
            self.assertIn(b'content="under review"', html)
            self.assertEqual(self.h.get(filePath(self.file)).code, 200)


class CooldownTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.old = sdist("foo", "1.0", uploadTime=iso(NOW - 10 * DAY))
        self.new = sdist("foo", "2.0", uploadTime=iso(NOW - 1 * DAY))
        self.project = FakeProject("foo", [self.old, self.new])

    def harness(self, **settings: Any) -> Harness:
        settings.setdefault("cooldown", 3 * DAY)
        return Harness([self.project], clock=policyClock(), **settings)

    def test_hidden(self) -> None:
        """
        A release younger than the cooldown is left off both forms and out
        of versions; its file URL answers 403 with when the cooldown ends.
        """
        h = self.harness()
        page = json.loads(h.get("/simple/foo/", JSON).body)
        self.assertEqual([f["filename"] for f in page["files"]], ["foo-1.0.tar.gz"])
        self.assertEqual(page["versions"], ["1.0"])
        self.assertNotIn(b"foo-2.0", h.get("/simple/foo/", HTML).body)
        answer = h.get(filePath(self.new))
        self.assertEqual(answer.code, 403)
        self.assertIn(b"--cooldown", answer.body)
        self.assertIn(iso(NOW + 2 * DAY)[:19].encode(), answer.body)
        self.assertEqual(h.index.requests["/files/foo-2.0.tar.gz"], 0)
        self.assertEqual(h.get(filePath(self.old)).code, 200)

    def test_endsOnTime(self) -> None:
        """
        When the cooldown of a file ends, it is served, without a refetch
        of the page, under a new ETag.
        """
        h = self.harness(ttl=10 * DAY)
        first = h.get("/simple/foo/", JSON)
        h.clock.advance(2 * DAY + 1)
        later = h.get("/simple/foo/", JSON)
        self.assertEqual(listed(later), ["foo-1.0.tar.gz", "foo-2.0.tar.gz"])
        self.assertNotEqual(first.header("etag"), later.header("etag"))
        self.assertEqual(h.index.requests["/simple/foo/"], 1)
        self.assertEqual(h.get(filePath(self.new)).code, 200)

    def test_unknownTimes(self) -> None:
        """
        A file without an upload time: served under allow, held back under
        deny.
        """
        self.project.files.append(sdist("foo", "3.0", uploadTime=None))
        allowed = self.harness()
        self.assertIn("foo-3.0.tar.gz", listed(allowed.get("/simple/foo/", JSON)))
        log = CapturedLog(self)
        denied = self.harness(cooldownAllowUnknown=False)
        self.assertNotIn("foo-3.0.tar.gz", listed(denied.get("/simple/foo/", JSON)))
        self.assertNotIn(b"foo-3.0", denied.get("/simple/foo/", HTML).body)
        # Said once for the project, however many renders meet such files.
        told = [e for e in log.events if e.get("project") == "foo" and "upload time" in e.get("log_format", "")]
        self.assertEqual([(e["choice"], e["log_level"]) for e in told], [("deny", LogLevel.warn)])
        answer = denied.get(filePath(self.project.files[-1]))
        self.assertEqual(answer.code, 403)
        self.assertIn(b"unknown", answer.body)

    def test_exempt(self) -> None:
        h = self.harness(cooldownExempt=("foo",))
        self.assertEqual(listed(h.get("/simple/foo/", JSON)), ["foo-1.0.tar.gz", "foo-2.0.tar.gz"])
        self.assertEqual(h.get(filePath(self.new)).code, 200)

    def test_exemptByItsPage(self) -> None:
        """
        An sdist whose name could be several projects' is exempt by the
        page that lists it.
        """
        new = sdist("foo-bar", "2.0", uploadTime=iso(NOW - DAY))
        h = Harness([FakeProject("foo-bar", [new]), FakeProject("foo", [])], clock=policyClock(),
                    cooldown=3 * DAY, cooldownExempt=("foo-bar",))
        self.assertEqual(h.get(filePath(new)).code, 200)
        held = Harness([FakeProject("foo-bar", [new])], clock=policyClock(), cooldown=3 * DAY, cooldownExempt=("foo",))
        self.assertEqual(held.get(filePath(new)).code, 403)

    def test_changedAcrossRestart(self) -> None:
        """
        The cooldown applies when a page is served: turning it off and
        restarting serves the release, with nothing fetched again.
        """
        h = self.harness(ttl=10 * DAY)
        self.assertEqual(listed(h.get("/simple/foo/", JSON)), ["foo-1.0.tar.gz"])
        h = h.restart(cooldown=None, ttl=10 * DAY)
        self.assertEqual(listed(h.get("/simple/foo/", JSON)), ["foo-1.0.tar.gz", "foo-2.0.tar.gz"])
        self.assertEqual(h.index.requests["/simple/foo/"], 1)

    def test_durations(self) -> None:
        for text, seconds in [("3d", 3 * DAY), ("12h", 43200), ("90m", 5400), ("P3D", 3 * DAY),
                              ("PT12H", 43200), ("P1DT6H", DAY + 21600), ("2w", 14 * DAY)]:
            self.assertEqual(parseDuration(text), seconds, text)
        for bad in ("", "3", "P", "PT", "0d", "-1d", "3x", "P1DT"):
            self.assertRaises(ValueError, parseDuration, bad)


class PassThroughTests(SynchronousTestCase):
    def test_pinnedFileKept(self) -> None:
        """
        A kept file stays served by its URL after upstream delists it, and
        is not listed again.
        """
        kept = sdist("foo", "1.0")
        project = FakeProject("foo", [kept, sdist("foo", "1.1")])
        h = Harness([project], revalidateFloor=0)
        self.assertEqual(h.get(filePath(kept)).code, 200)
        project.files.remove(kept)
        self.assertEqual(listed(h.get("/simple/foo/", {**JSON, **AGAIN})), ["foo-1.1.tar.gz"])
        self.assertEqual(h.get(filePath(kept)).body, kept.content)

    def test_delistedEvictedLast(self) -> None:
        """
        Eviction takes a delisted file after every file still listed: a
        listed file can be fetched again, a delisted one cannot.
        """
        import os

        a, b, c = (sdist("foo", f"1.{i}", size=20_000) for i in range(3))
        project = FakeProject("foo", [a, b, c])
        h = Harness([project], revalidateFloor=0, maxSize=100_000)
        h.get(filePath(a))
        h.clock.advance(3600)
        h.get(filePath(b))
        project.files.remove(a)
        h.get("/simple/foo/", {**JSON, **AGAIN})
        h.flush()
        h.clock.advance(3600)
        h.tree.budget.limits.maxSize = 60_000  # room for one more file, no more
        h.get(filePath(c))
        h.flush()
        present = {name for _, _, names in os.walk(h.tree.root) for name in names}
        self.assertIn(a.filename, present)  # the oldest, but delisted
        self.assertNotIn(b.filename, present)
        self.assertEqual(h.get(filePath(a)).body, a.content)

    def test_bothMetadataKeys(self) -> None:
        """
        Where upstream gives only one of the core-metadata keys, both are
        served, in both forms, with the same value.
        """
        f = sdist("foo", "1.0", metadata=b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n")
        project = FakeProject("foo", [f])
        h = Harness([project])
        h.index.forms = ("json",)
        original = f.jsonEntry

        def onlyLegacy() -> dict[str, Any]:
            entry = original()
            del entry["core-metadata"]
            return entry

        f.jsonEntry = onlyLegacy  # type: ignore[method-assign]
        (entry,) = json.loads(h.get("/simple/foo/", JSON).body)["files"]
        self.assertEqual(entry["core-metadata"], entry["dist-info-metadata"])
        html = h.get("/simple/foo/", HTML).body
        self.assertIn(b"data-core-metadata=", html)
        self.assertIn(b"data-dist-info-metadata=", html)
        self.assertEqual(h.get(filePath(f, metadata=True)).body, f.metadata)

    def test_lastSerial(self) -> None:
        """
        Upstream's X-PyPI-Last-Serial is passed through, kept across a
        restart.
        """
        h = Harness([FakeProject("foo", [sdist("foo", "1.0")])])
        h.index.lastSerial = "123456"
        self.assertEqual(h.get("/simple/foo/", JSON).header("x-pypi-last-serial"), "123456")
        self.assertEqual(h.get("/simple/foo/", JSON).header("x-pypi-last-serial"), "123456")
        h = h.restart()
        self.assertEqual(h.get("/simple/foo/", HTML).header("x-pypi-last-serial"), "123456")


def provenanceOf(sha256: str, filename: str) -> bytes:
    """
    A PEP 740 provenance object whose one attestation names a file.
    """
    import base64

    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": filename, "digest": {"sha256": sha256}}],
        "predicateType": "https://attestations.example/publish/v1",
        "predicate": {},
    }
    attestation = {
        "version": 1,
        "verification_material": {"certificate": "", "transparency_entries": []},
        "envelope": {"statement": base64.b64encode(json.dumps(statement).encode()).decode(), "signature": ""},
    }
    return json.dumps({
        "version": 1,
        "attestation_bundles": [{"publisher": {"kind": "GitHub"}, "attestations": [attestation]}],
    }).encode()


class ProvenanceTests(SynchronousTestCase):
    """
    PEP 740: a file's provenance is the mirror's, fetched the first time it
    is asked for, checked to name the file, kept and served.
    """

    def setUp(self) -> None:
        self.file = sdist("foo", "1.0")
        self.file.provenance = provenanceOf(self.file.sha256, self.file.filename)
        self.h = Harness([FakeProject("foo", [self.file])])

    def test_fetchedOnceAndServed(self) -> None:
        (entry,) = json.loads(self.h.get("/simple/foo/", JSON).body)["files"]
        self.assertEqual(entry["provenance"], entry["url"] + ".provenance")
        self.assertIn(b'data-provenance="../../root/pypi/+f/', self.h.get("/simple/foo/", HTML).body)
        path = filePath(self.file) + ".provenance"
        for _ in range(2):
            answer = self.h.get(path)
            self.assertEqual(answer.code, 200)
            self.assertEqual(answer.body, self.file.provenance)
        self.assertEqual(self.h.index.requests["/files/foo-1.0.tar.gz.provenance"], 1)

    def test_namesAnotherFile(self) -> None:
        self.file.provenance = provenanceOf("0" * 64, self.file.filename)
        answer = self.h.get(filePath(self.file) + ".provenance")
        self.assertEqual(answer.code, 502)
        self.assertIn(b"names another file", answer.body)
        self.assertEqual(self.h.get(filePath(self.file) + ".provenance").code, 502)
        self.assertEqual(self.h.index.requests["/files/foo-1.0.tar.gz.provenance"], 2)

    def test_notProvenance(self) -> None:
        self.file.provenance = b"<html>sorry</html>"
        answer = self.h.get(filePath(self.file) + ".provenance")
        self.assertEqual(answer.code, 502)
        self.assertIn(b"not a PEP 740 provenance object", answer.body)

    def test_noneAdvertised(self) -> None:
        h = Harness([FakeProject("foo", [sdist("foo", "1.0")])])
        self.assertEqual(h.get(filePath(sdist("foo", "1.0")) + ".provenance").code, 404)
