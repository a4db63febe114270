"""
The policy a fleet asks for next: allow and deny rules (options and a
policy file read again when it changes), advisories in the OSV format
(malicious or vulnerable, waived), and a freeze date; each hides files on
both forms of a page and refuses them by their URLs.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tailmirror._optiongroups import parseDate
from tailmirror.pages import Advisories, Policy, parsePolicyFile, parseRule, readAdvisories, rulesOf, versionOf
from tailmirror.pages._advisories import parseOSV

from ..fakeindex import FakeProject, sdist
from ..harness import JSON, NOW, CapturedLog, Harness, filePath, iso, policyClock

HTML = {"Accept": "text/html"}


def listed(answer: Any) -> list[str]:
    return [f["filename"] for f in json.loads(answer.body)["files"]]


def osv(identifier: str, name: str, *, versions: list[str] = (), events: list[dict[str, str]] = (),  # type: ignore[assignment]
        summary: str = "", **extra: Any) -> dict[str, Any]:
    affected: dict[str, Any] = {"package": {"ecosystem": "PyPI", "name": name}}
    if versions:
        affected["versions"] = list(versions)
    if events:
        affected["ranges"] = [{"type": "ECOSYSTEM", "events": list(events)}]
    return {"id": identifier, "summary": summary, "affected": [affected], **extra}


def projects() -> list[FakeProject]:
    return [
        FakeProject("requests", [sdist("requests", v) for v in ("2.30.0", "2.31.0", "2.32.0")]),
        FakeProject("urllib3", [sdist("urllib3", v) for v in ("1.26.5", "1.26.6")]),
        FakeProject("evil-pkg", [sdist("evil-pkg", "1.0")]),
    ]


class RuleTests(SynchronousTestCase):
    def test_parse(self) -> None:
        self.assertEqual(parseRule("Evil_Pkg").name, "evil-pkg")
        rule = parseRule("requests<2.31")
        self.assertTrue(rule.matches("requests", "2.30.0"))
        self.assertFalse(rule.matches("requests", "2.31.0"))
        self.assertTrue(parseRule("urllib3==1.26.5").matches("urllib3", "1.26.5"))
        self.assertTrue(parseRule("x>=1").matches("x", "2.0rc1"), "pre-releases are versions too")
        for bad in ("", "req uests", "requests[socks]", "requests @ https://x.test/r.whl", "a; python_version<'3'",
                    "requests<<2"):
            self.assertRaises(ValueError, parseRule, bad)

    def test_policyFile(self) -> None:
        rules = parsePolicyFile("# fleet policy\ndeny evil-pkg\n\nallow-only requests  # ok\nwaive MAL-1\n", "p")
        self.assertEqual([r.text for r in rules.deny], ["evil-pkg"])
        self.assertEqual([r.text for r in rules.allowOnly], ["requests"])
        self.assertEqual(rules.waived, {"MAL-1"})
        for bad, words in [("permit x\n", "line 1"), ("deny\n", "needs a rule"), ("# a\ndeny x[y]\n", "line 2")]:
            with self.assertRaises(ValueError) as caught:
                parsePolicyFile(bad, "p")
            self.assertIn(words, str(caught.exception))

    def test_denied(self) -> None:
        """
        A denied file is left off both forms and its URL answers 403 naming
        the rule; a whole project denied lists no files.
        """
        h = Harness(projects(), rules=rulesOf(deny=["requests<2.31", "evil-pkg"]))
        self.addCleanup(h.mirror.close)
        self.assertEqual(listed(h.get("/simple/requests/", JSON)), ["requests-2.31.0.tar.gz", "requests-2.32.0.tar.gz"])
        self.assertNotIn(b"requests-2.30.0", h.get("/simple/requests/", HTML).body)
        self.assertEqual(listed(h.get("/simple/evil-pkg/", JSON)), [])
        denied = h.get(filePath(h.index.projects["requests"].files[0]))
        self.assertEqual(denied.code, 403)
        self.assertIn(b"requests<2.31", denied.body)
        self.assertEqual(h.get(filePath(h.index.projects["requests"].files[1])).code, 200)
        self.assertEqual(h.index.requests["/files/requests-2.30.0.tar.gz"], 0)
        held = h.mirror.snapshot().policy
        assert held is not None
        self.assertIn({"kind": "rule", "what": "deny requests<2.31", "project": "requests", "versions": ["2.30.0"]},
                      held["heldBack"])
        self.assertIn(b'tailmirror_policy_refusals_total{reason="rule"} 1.0', h.mirror.metrics.render())

    def test_allowOnly(self) -> None:
        """
        A project outside the allow-only list answers 404 with the reason,
        upstream never asked; a listed project's versions outside its
        specifier are held back.
        """
        h = Harness(projects(), rules=rulesOf(allowOnly=["requests>=2.31", "urllib3"]))
        self.addCleanup(h.mirror.close)
        refused = h.get("/simple/evil-pkg/", JSON)
        self.assertEqual(refused.code, 404)
        self.assertIn(b"not on the mirror's allow-only list", refused.body)
        self.assertEqual(h.index.requests["/simple/evil-pkg/"], 0)
        self.assertEqual(h.get(filePath(h.index.projects["evil-pkg"].files[0])).code, 404)
        self.assertEqual(listed(h.get("/simple/requests/", JSON)), ["requests-2.31.0.tar.gz", "requests-2.32.0.tar.gz"])
        self.assertEqual(len(listed(h.get("/simple/urllib3/", JSON))), 2)
        self.assertEqual(h.get(filePath(h.index.projects["requests"].files[0])).code, 403)

    def test_policyFileReadAgain(self) -> None:
        """
        Editing the policy file changes what is served, without a fetch;
        a broken edit keeps the last reading and says why, once.
        """
        path = Path(tempfile.mkdtemp()) / "policy"
        path.write_text("deny urllib3==1.26.5\n")
        h = Harness(projects(), policyFile=str(path))
        self.addCleanup(h.mirror.close)
        log = CapturedLog(self)
        self.assertEqual(listed(h.get("/simple/urllib3/", JSON)), ["urllib3-1.26.6.tar.gz"])
        path.write_text("deny urllib3==1.26.6\n")
        h.clock.advance(2)
        self.assertEqual(listed(h.get("/simple/urllib3/", JSON)), ["urllib3-1.26.5.tar.gz"])
        self.assertEqual(h.index.requests["/simple/urllib3/"], 1)
        path.write_text("deny urllib3[x]\n")
        for _ in range(3):
            h.clock.advance(2)
        self.assertEqual(listed(h.get("/simple/urllib3/", JSON)), ["urllib3-1.26.5.tar.gz"])
        errors = [formatEvent(e) for e in log.events if e.get("log_level") == LogLevel.error]
        self.assertEqual(len([e for e in errors if "cannot read the policy file" in e]), 1, errors)


    def test_deniedWhenNoPageListsIt(self) -> None:
        """
        A kept file no page lists any more (upstream delisted it, or took
        the whole project down) is refused by a rule all the same: the
        rule needs only the file's name.
        """
        path = Path(tempfile.mkdtemp()) / "policy"
        path.write_text("# nothing denied yet\n")
        old = sdist("urllib3", "1.26.5")
        project = FakeProject("urllib3", [old, sdist("urllib3", "1.26.6")])
        h = Harness([project], policyFile=str(path), revalidateFloor=0)
        self.addCleanup(h.mirror.close)
        self.assertEqual(h.get(filePath(old)).code, 200)
        project.files.remove(old)
        self.assertEqual(listed(h.get("/simple/urllib3/", {**JSON, "Cache-Control": "max-age=0"})), ["urllib3-1.26.6.tar.gz"])
        self.assertEqual(h.get(filePath(old)).code, 200, "kept, and served while no rule denies it")
        path.write_text("deny urllib3==1.26.5\n")
        h.clock.advance(2)
        denied = h.get(filePath(old))
        self.assertEqual(denied.code, 403)
        self.assertIn(b"urllib3==1.26.5", denied.body)


class AdvisoryTests(SynchronousTestCase):
    def test_ranges(self) -> None:
        advisory = parseOSV(osv("GHSA-1", "Foo_Bar", versions=["0.9"], events=[
            {"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "2.0"}, {"last_affected": "2.1"},
        ]))
        assert advisory is not None
        for version, affected in [("0.9", True), ("0.8", False), ("1.0", True), ("1.1.5", True), ("1.2", False),
                                  ("2.0", True), ("2.1", True), ("2.1.1", False), ("nonsense", False)]:
            self.assertEqual(advisory.affects("foo-bar", version), affected, version)
        everything = parseOSV(osv("MAL-2", "x", events=[{"introduced": "0"}]))
        assert everything is not None
        self.assertTrue(everything.malicious and everything.affects("x", "0.0.1"))
        self.assertIsNone(parseOSV({"id": "X", "affected": [{"package": {"ecosystem": "npm", "name": "x"}}]}))
        self.assertRaises(ValueError, parseOSV, {"affected": []})

    def test_sources(self) -> None:
        """
        A directory read recursively, a zip, a JSON list; a malformed file
        skipped by name, never the others.
        """
        root = Path(tempfile.mkdtemp())
        (root / "osv" / "malicious" / "evil-pkg").mkdir(parents=True)
        (root / "osv" / "malicious" / "evil-pkg" / "MAL-1.json").write_text(json.dumps(osv("MAL-1", "evil-pkg", versions=["1.0"])))
        (root / "osv" / "broken.json").write_text("{nonsense")
        (root / "osv" / "other.json").write_text(json.dumps({"no": "id"}))
        found, skipped = readAdvisories(str(root / "osv"))
        self.assertEqual([a.id for a in found], ["MAL-1"])
        self.assertEqual(len(skipped), 2)
        self.assertTrue(any("broken.json" in s for s in skipped))
        data = io.BytesIO()
        with zipfile.ZipFile(data, "w") as z:
            z.writestr("GHSA-1.json", json.dumps(osv("GHSA-1", "requests", versions=["2.30.0"])))
            z.writestr("bad.json", "[")
        found, skipped = readAdvisories(data.getvalue(), "feed")
        self.assertEqual(([a.id for a in found], len(skipped)), (["GHSA-1"], 1))
        listed_ = json.dumps([osv("A", "a", versions=["1"]), osv("B", "b", versions=["1"])]).encode()
        self.assertEqual(Advisories(readAdvisories(listed_, "list")[0]).count, 2)
        self.assertRaises(ValueError, readAdvisories, b"not json", "x")

    def advised(self, **settings: Any) -> Harness:
        root = Path(tempfile.mkdtemp())
        (root / "MAL-2024-1.json").write_text(json.dumps(osv(
            "MAL-2024-1", "evil-pkg", versions=["1.0"], summary="Malicious code in evil-pkg")))
        (root / "GHSA-aaaa.json").write_text(json.dumps(osv(
            "GHSA-aaaa", "requests", events=[{"introduced": "0"}, {"fixed": "2.32.0"}], summary="Leaks headers",
            aliases=["CVE-2024-1"])))
        h = Harness(projects(), advisories=(str(root),), **settings)
        self.addCleanup(h.mirror.close)
        return h

    def test_malicious(self) -> None:
        """
        By default only the malicious package's versions are held back,
        its URL answered 403 naming the advisory and its summary.
        """
        h = self.advised()
        self.assertEqual(listed(h.get("/simple/evil-pkg/", JSON)), [])
        self.assertEqual(len(listed(h.get("/simple/requests/", JSON))), 3)
        refused = h.get(filePath(h.index.projects["evil-pkg"].files[0]))
        self.assertEqual(refused.code, 403)
        self.assertIn(b"MAL-2024-1: Malicious code in evil-pkg", refused.body)

    def test_vulnerable(self) -> None:
        h = self.advised(denyAdvisories="vulnerable")
        self.assertEqual(listed(h.get("/simple/requests/", JSON)), ["requests-2.32.0.tar.gz"])
        self.assertEqual(listed(h.get("/simple/evil-pkg/", JSON)), [])

    def test_waived(self) -> None:
        """
        A waiver lets one advisory through, by its identifier or an alias.
        """
        h = self.advised(denyAdvisories="vulnerable", rules=rulesOf(waive=["CVE-2024-1"]))
        self.assertEqual(len(listed(h.get("/simple/requests/", JSON))), 3)
        self.assertEqual(listed(h.get("/simple/evil-pkg/", JSON)), [])

    def test_verdictFollowsChanges(self) -> None:
        """
        A version's verdict, remembered for the files that share it, is
        asked again once the rules or the advisories change.
        """
        advisory = parseOSV(osv("MAL-9", "evil-pkg", versions=["1.0"]))
        assert advisory is not None
        policy = Policy(advisories=Advisories([advisory]))
        self.assertEqual(getattr(policy.blocking("evil-pkg", "1.0"), "id", None), "MAL-9")
        policy.update(rules=rulesOf(waive=["MAL-9"]))
        self.assertIsNone(policy.blocking("evil-pkg", "1.0"))
        policy.update(rules=rulesOf(), advisories=Advisories())
        self.assertIsNone(policy.blocking("evil-pkg", "1.0"))
        policy.update(advisories=Advisories([advisory]))
        self.assertIsNotNone(policy.blocking("evil-pkg", "1.0"))

    def test_off(self) -> None:
        h = self.advised(denyAdvisories="off")
        self.assertEqual(listed(h.get("/simple/evil-pkg/", JSON)), ["evil-pkg-1.0.tar.gz"])


class FreezeDateTests(SynchronousTestCase):
    def test_parse(self) -> None:
        self.assertEqual(parseDate("2024-01-02"), parseDate("2024-01-02T00:00:00Z"))
        self.assertEqual(parseDate("2024-01-02T03:00:00+03:00"), parseDate("2024-01-02T00:00:00Z"))
        self.assertRaises(ValueError, parseDate, "yesterday")

    def test_excludeNewer(self) -> None:
        """
        Files uploaded after the date are held back, for good; with the
        cooldown too, the stricter wins; files without an upload time as
        --cooldown-unknown says.
        """
        files = [sdist("foo", "1.0", uploadTime=iso(NOW - 10 * 86400)), sdist("foo", "2.0", uploadTime=iso(NOW - 5 * 86400)),
                 sdist("foo", "3.0", uploadTime=None)]
        h = Harness([FakeProject("foo", files)], clock=policyClock(), excludeNewer=NOW - 7 * 86400)
        self.addCleanup(h.mirror.close)
        self.assertEqual(listed(h.get("/simple/foo/", JSON)), ["foo-1.0.tar.gz", "foo-3.0.tar.gz"])
        refused = h.get(filePath(files[1]))
        self.assertEqual(refused.code, 403)
        self.assertIn(b"--exclude-newer", refused.body)
        h.clock.advance(30 * 86400)
        self.assertEqual(listed(h.get("/simple/foo/", JSON)), ["foo-1.0.tar.gz", "foo-3.0.tar.gz"])
        strict = Harness([FakeProject("foo", files)], clock=policyClock(), excludeNewer=NOW - 86400,
                         cooldown=20 * 86400.0, cooldownAllowUnknown=False)
        self.addCleanup(strict.mirror.close)
        self.assertEqual(listed(strict.get("/simple/foo/", JSON)), [])
        lax = Harness([FakeProject("foo", files)], clock=policyClock(), excludeNewer=NOW - 86400, cooldown=7 * 86400.0)
        self.addCleanup(lax.mirror.close)
        self.assertEqual(listed(lax.get("/simple/foo/", JSON)), ["foo-1.0.tar.gz", "foo-3.0.tar.gz"])


class StartTests(SynchronousTestCase):
    def test_unreadableSources(self) -> None:
        """
        A policy file with a line that is no rule, or advisories that are
        not there, stop the start with one line naming the option.
        """
        from tailmirror._mirror import Settings
        from tailmirror._service import MirrorService, StartFailure
        from twisted.internet import reactor

        path = Path(tempfile.mkdtemp()) / "policy"
        path.write_text("deny x[y]\n")
        for settings in ({"policyFile": str(path)}, {"advisories": ("/nonexistent/osv",)}):
            service = MirrorService(reactor, Settings("http://127.0.0.1:1/simple/", tempfile.mkdtemp(), **settings))
            with self.assertRaises(StartFailure) as caught:
                service.startService()
            self.assertIn("--policy-file" if "policyFile" in settings else "--advisories", str(caught.exception))


class FeedTests(SynchronousTestCase):
    def test_fetchedRefreshedKept(self) -> None:
        """
        A feed URL is fetched at start, again every --advisories-refresh
        with a conditional request; a refresh that fails keeps the last good
        copy and says so on /+status; a restart with the feed down reads
        the copy kept in the cache directory.
        """
        data = io.BytesIO()
        with zipfile.ZipFile(data, "w") as z:
            z.writestr("MAL-1.json", json.dumps(osv("MAL-1", "evil-pkg", versions=["1.0"])))
        h = Harness(projects(), advisories=("http://upstream.test/feeds/pypi.zip",), advisoriesRefresh=3600.0)
        self.addCleanup(lambda: h.mirror.close())
        h.index.feeds["/feeds/pypi.zip"] = data.getvalue()
        h.clock.advance(1)
        h.flush()
        self.assertEqual(listed(h.get("/simple/evil-pkg/", JSON)), [])
        self.assertEqual(h.index.requests["/feeds/pypi.zip"], 1)
        h.clock.advance(3600)
        h.flush()
        self.assertEqual(h.index.requests["/feeds/pypi.zip"], 2)
        self.assertEqual(h.index.lastHeaders.get("if-none-match", "")[:1], '"')
        h.index.failWith = 503
        h.clock.advance(3600)
        h.flush()
        self.assertEqual(listed(h.get("/simple/evil-pkg/", JSON)), [])
        status = json.loads(h.get("/+status?format=json").body)["policy"]
        self.assertIn("503", status["sources"][0]["error"])
        self.assertEqual(status["sources"][0]["advisories"], 1)
        self.assertIn(b"the last good copy holds", h.get("/+status").body)
        again = h.restart(advisories=("http://upstream.test/feeds/pypi.zip",))
        self.addCleanup(lambda: again.mirror.close())
        self.assertEqual(listed(again.get("/simple/evil-pkg/", JSON)), [])


class LegacyJSONTests(SynchronousTestCase):
    """
    The legacy JSON API: passed through with its URLs the mirror's and the
    policy applied, or made from the page where upstream has none.
    """

    def harness(self, jsonAPI: bool, **settings: Any) -> Harness:
        root = Path(tempfile.mkdtemp())
        (root / "GHSA-aaaa.json").write_text(json.dumps(osv(
            "GHSA-aaaa", "requests", events=[{"introduced": "0"}, {"fixed": "2.32.0"}], summary="Leaks headers")))
        h = Harness(projects() + [FakeProject("alpha-wheel", [])], advisories=(str(root),), **settings)
        h.index.jsonAPI = jsonAPI
        self.addCleanup(h.mirror.close)
        return h

    def test_passedThrough(self) -> None:
        h = self.harness(True, rules=rulesOf(deny=["requests==2.31.0"]))
        answer = h.get("/pypi/requests/json")
        self.assertEqual(answer.code, 200)
        document = json.loads(answer.body)
        self.assertEqual(sorted(document["releases"]), ["2.30.0", "2.32.0"])
        [f] = document["releases"]["2.30.0"]
        self.assertEqual(f["url"], "http://mirror.test" + filePath(h.index.projects["requests"].files[0]))
        self.assertEqual(h.get(f["url"][len("http://mirror.test"):]).body, h.index.projects["requests"].files[0].content)
        self.assertEqual(document["info"]["version"], "2.32.0")
        self.assertEqual(document["info"]["summary"], "the fake requests")
        self.assertEqual([v["id"] for v in document["vulnerabilities"]], ["PYSEC-0"])
        version = json.loads(h.get("/pypi/requests/2.30.0/json").body)
        self.assertEqual({v["id"] for v in version["vulnerabilities"]}, {"PYSEC-0", "GHSA-aaaa"})
        # Conditional requests; upstream asked once within the TTL.
        again = h.get("/pypi/requests/json", {"If-None-Match": answer.header("etag") or ""})
        self.assertEqual(again.code, 304)
        self.assertEqual(h.index.requests["/pypi/requests/json"], 1)
        h.clock.advance(h.settings.ttl + 1)
        self.assertEqual(h.get("/pypi/requests/json").body, answer.body)
        self.assertEqual(h.index.lastHeaders.get("if-none-match", "")[:1], '"')
        h.index.failWith = 503
        h.clock.advance(h.settings.ttl + 1)
        self.assertEqual(h.get("/pypi/requests/json").body, answer.body, "stale while upstream fails")

    def test_synthesized(self) -> None:
        """
        Where upstream has no JSON API, it is made from the project page,
        and the core metadata the mirror keeps.
        """
        from ..wheels import tree

        h = Harness(tree(), clock=policyClock())
        self.addCleanup(h.mirror.close)
        alpha = h.index.projects["alpha"]
        newest = [f for f in alpha.files if f.filename.endswith(".whl")][-1]
        self.assertEqual(h.get(filePath(newest, metadata=True)).code, 200)
        document = json.loads(h.get("/pypi/alpha/json").body)
        self.assertEqual(h.index.requests["/pypi/alpha/json"], 1)
        self.assertEqual(document["info"]["name"], "alpha")
        self.assertEqual(document["info"]["version"], "1.1")
        self.assertTrue(document["info"]["requires_dist"])
        self.assertEqual(sorted(document["releases"]), sorted({versionOf(f.filename) for f in alpha.files}))
        urls = {f["filename"]: f["url"] for f in document["urls"]}
        self.assertEqual(urls[newest.filename], "http://mirror.test" + filePath(newest))
        self.assertEqual(json.loads(h.get("/pypi/alpha/1.0/json").body)["info"]["version"], "1.0")
        self.assertEqual(h.get("/pypi/alpha/9.9/json").code, 404)
        self.assertEqual(h.get("/pypi/nothing-here/json").code, 404)
        moved = h.get("/pypi/Alpha/json")
        self.assertEqual((moved.code, moved.header("location")), (301, "../alpha/json"))

    def test_policy(self) -> None:
        h = self.harness(False, rules=rulesOf(allowOnly=["requests"]), denyAdvisories="vulnerable")
        self.assertEqual(h.get("/pypi/urllib3/json").code, 404)
        document = json.loads(h.get("/pypi/requests/json").body)
        self.assertEqual(sorted(document["releases"]), ["2.32.0"])
        self.assertEqual(document["info"]["version"], "2.32.0")


class VersionTests(SynchronousTestCase):
    def test_normalVersion(self) -> None:
        """
        A version as written is normalized as a version, not read out of a
        made-up file name (which took the part after a dash for all of it).
        """
        from packaging.requirements import Requirement

        from tailmirror.offline._wanted import _pin
        from tailmirror.pages import normalVersion

        self.assertEqual(normalVersion("1.0-1"), "1.0.post1")
        self.assertEqual(normalVersion("2.0RC1"), "2.0rc1")
        self.assertIsNone(normalVersion("not a version"))
        self.assertEqual(_pin(Requirement("foo==1.0-1")), "1.0.post1")
