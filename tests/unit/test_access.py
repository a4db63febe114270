"""
Read access (C{--auth}): every route answers 401 without right
credentials, which an htpasswd file's bcrypt hashes or a tokens file's
digests check, each read again when it changes; failures from one address
are slowed; the access log names who read.  Upstream credentials go to
upstream's own origin only.
"""

from __future__ import annotations

import base64
import hashlib
import os
import json
import tempfile
from pathlib import Path

import bcrypt
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tailmirror.upstream import Credentials
from tailmirror.web._guard import FREE_FAILURES
from tailmirror.web._passwords import CHECKS_AT_ONCE, AnyOf, HtpasswdChecker, TokenChecker, newToken

from ..fakeindex import FakeFile, FakeProject, sdist
from ..harness import JSON, CapturedLog, Harness, Threads, filePath
from ..wheels import tree

PASSWORD = "correct horse"


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def htpasswd(path: Path, **users: str) -> None:
    """
    An htpasswd file of bcrypt hashes (as C{htpasswd -B} writes, C{$2y$}).
    """
    lines = [
        f"{name}:" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1)
        for name, password in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")


class ReadAccessTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp())
        self.users = self.dir / "users"
        htpasswd(self.users, alice=PASSWORD)
        self.token, line = newToken("ci-runner")
        self.tokens = self.dir / "tokens"
        self.tokens.write_text(f"# CI\n{line}\n")
        self.h = Harness(tree(), auth=(("htpasswd", str(self.users)), ("tokens", str(self.tokens))))
        self.addCleanup(self.h.mirror.close)
        self.log = CapturedLog(self)

    def routes(self) -> list[str]:
        alpha = self.h.index.projects["alpha"].files[-1]
        return [
            "/",
            "/simple",
            "/simple/",
            "/simple/alpha/",
            "/simple/nothing-here/",
            filePath(alpha),
            filePath(alpha, metadata=True),
            filePath(alpha) + ".provenance",
            "/root/pypi/+f/_url/0123456789abcdef/x.tar.gz",
            "/+status",
            "/+status?format=json",
            "/+metrics",
            "/pypi/simple/",
            "/elsewhere",
        ]

    def test_everyRouteNeedsCredentials(self) -> None:
        """
        Without credentials, with wrong ones, or ones that cannot be read,
        every route answers 401 with a challenge for Basic and bearer, and
        upstream is never asked.
        """
        wrong = [
            {},
            basic("alice", "wrong"),
            basic("mallory", PASSWORD),
            bearer("not-a-token"),
            {"Authorization": "Basic !!!"},
            {"Authorization": "Digest x"},
        ]
        for path in self.routes():
            for headers in wrong:
                self.h.clock.advance(120)  # never slowed here
                for method in ("GET", "HEAD"):
                    answer = self.h.get(path, headers, method=method)
                    self.assertEqual(answer.code, 401, (path, headers, method))
                    challenge = answer.header("www-authenticate") or ""
                    self.assertIn('Basic realm="tailmirror"', challenge)
                    self.assertIn('Bearer realm="tailmirror"', challenge)
        self.assertEqual(sum(self.h.index.requests.values()), 0)

    def test_rightCredentialsRead(self) -> None:
        """
        A right password, a bearer token, and a token as the password of
        Basic credentials (as pip and uv send one from a URL) read every
        route as if there were no C{--auth}.
        """
        open_ = Harness(tree(), index=self.h.index)
        self.addCleanup(open_.mirror.close)
        for headers in (basic("alice", PASSWORD), bearer(self.token), basic("__token__", self.token)):
            for path in self.routes():
                if path.startswith("/+"):
                    continue
                answer = self.h.get(path, headers)
                plain = open_.get(path)
                self.assertEqual((answer.code, answer.body), (plain.code, plain.body), path)
            self.assertEqual(self.h.get("/+status", headers).code, 200)
            self.assertEqual(self.h.get("/+metrics", headers).code, 200)

    def test_accessLogNamesTheReader(self) -> None:
        self.h.get("/simple/", basic("alice", PASSWORD))
        self.h.get("/simple/", bearer(self.token))
        self.h.get("/simple/")
        lines = [e["line"] for e in self.log.events if e.get("log_namespace") == "tailmirror.access"]
        self.assertEqual([line.split('"')[0].split()[1] for line in lines], ["alice", "ci-runner", "-"])
        self.assertNotIn(self.token, self.log.text())
        self.assertNotIn(PASSWORD, self.log.text())

    def test_tokenRevoked(self) -> None:
        """
        A token taken out of its file is refused once the file is read
        again (within two seconds of the change); one added is taken.
        """
        self.assertEqual(self.h.get("/simple/", bearer(self.token)).code, 200)
        self.assertEqual(self.h.get("/simple/", bearer(self.token)).code, 200)  # taken again at once
        other, line = newToken("other")
        self.tokens.write_text(line + "\n")
        self.h.clock.advance(1)
        self.assertEqual(self.h.get("/simple/", bearer(self.token)).code, 401)
        self.assertEqual(self.h.get("/simple/", bearer(other)).code, 200)

    def test_passwordChanged(self) -> None:
        """
        A password once checked is remembered, until the file changes.
        """
        self.assertEqual(self.h.get("/simple/", basic("alice", PASSWORD)).code, 200)
        htpasswd(self.users, alice="new password", bob="bob's")
        os.utime(self.users, ns=(1, 1))
        self.h.clock.advance(1)
        self.assertEqual(self.h.get("/simple/", basic("alice", PASSWORD)).code, 401)
        self.assertEqual(self.h.get("/simple/", basic("alice", "new password")).code, 200)
        self.assertEqual(self.h.get("/simple/", basic("bob", "bob's")).code, 200)

    def test_brokenFileKeepsTheLastReading(self) -> None:
        """
        A tokens file edited into nonsense is not taken: the last good
        reading holds, and the log says why, once.
        """
        self.tokens.write_text("nonsense\n")
        for _ in range(3):
            self.h.clock.advance(1)
            self.assertEqual(self.h.get("/simple/", bearer(self.token)).code, 200)
        errors = self.log.formats(LogLevel.error)
        self.assertEqual(len(errors), 1, errors)

    def test_failuresSlowed(self) -> None:
        """
        Past a few failures from one address, each wrong answer is held
        for longer; the log says so once per burst, without the secret; a
        right answer is never held.
        """
        for _ in range(FREE_FAILURES):
            self.assertEqual(self.h.get("/simple/", basic("alice", "guess")).code, 401)
        held = self.h.start("GET", "/simple/", basic("alice", "guess"))
        self.h.flush()
        answered: list[object] = []

        def note(result: object) -> object:
            answered.append(result)
            return result

        held.addBoth(note)
        self.assertEqual(answered, [])
        self.assertEqual(self.h.get("/simple/", bearer(self.token)).code, 200)
        self.h.clock.advance(1)
        self.assertEqual(self.h.finish(held).code, 401)
        warnings = [e for e in self.log.formats(LogLevel.warn) if "failed logins" in e]
        self.assertEqual(len(warnings), 1)
        self.assertNotIn("guess", self.log.text())
        self.assertIn("'alice'", self.log.text())

    def test_unknownNameNotLogged(self) -> None:
        """
        A name the files of credentials do not have is not logged: it may
        be a token pasted where the name goes.
        """
        for _ in range(FREE_FAILURES + 1):
            self.h.start("GET", "/simple/", basic(self.token, "x"))
            self.h.flush()
        self.assertIn("failed logins", self.log.text())
        self.assertNotIn(self.token, self.log.text())


class UpstreamCredentialsTests(SynchronousTestCase):
    def test_ownOriginOnly(self) -> None:
        """
        Upstream's credentials go with every request to its own origin
        (pages and files beside them), and never to a file host elsewhere.
        """
        here = sdist("here", "1.0")
        there = FakeFile("there-1.0.tar.gz", b"elsewhere", href="http://files.test/files/there-1.0.tar.gz")
        h = Harness([FakeProject("here", [here]), FakeProject("there", [there])],
                    credentials=Credentials.basic("me", "s3cret", "the URL"))
        self.addCleanup(h.mirror.close)
        wanted = "Basic " + base64.b64encode(b"me:s3cret").decode()
        h.index.authorization = wanted
        for f, name in ((here, "here"), (there, "there")):
            self.assertEqual(h.get(f"/simple/{name}/", JSON).code, 200)
            h.index.authorization = None  # the stand-in for both hosts answers anyone now
            got = h.get(filePath(f))
            self.assertEqual((got.code, hashlib.sha256(got.body).hexdigest()), (200, f.sha256))
            h.index.authorization = wanted
        self.assertEqual(h.index.authorized["/files/here-1.0.tar.gz"], 1)
        self.assertEqual(h.index.requests["/files/there-1.0.tar.gz"], 1)
        self.assertEqual(h.index.authorized["/files/there-1.0.tar.gz"], 0)
        self.assertEqual(h.index.authorized["/simple/there/"], 1)
        self.assertNotIn("s3cret", repr(h.settings))


class ProbeTests(SynchronousTestCase):
    def test_probes(self) -> None:
        """
        /+health/live and /+health/ready answer probes: ready once the
        journal is replayed, degraded (still 200) with the reason while
        upstream fails; behind --auth on the mirror's endpoints, open on
        the metrics endpoint's.
        """
        import treq
        from treq.testing import StubTreq

        from tailmirror.observe import Health
        from tailmirror.web import MetricsOnly

        h = Harness(tree())
        self.addCleanup(h.mirror.close)
        self.assertEqual(json.loads(h.get("/+health/live").body), {"status": "live"})
        ready = h.get("/+health/ready")
        self.assertEqual((ready.code, json.loads(ready.body)["status"]), (200, "ready"))
        h.index.failWith = 503
        h.get("/simple/alpha/")
        degraded = json.loads(h.get("/+health/ready").body)
        self.assertEqual(degraded["status"], "degraded")
        self.assertIn("upstream failing", degraded["reasons"]["upstream"])
        self.assertEqual(Health().ready()[0], 503)
        users = Path(tempfile.mkdtemp()) / "users"
        htpasswd(users, alice=PASSWORD)
        guarded = Harness(tree(), auth=(("htpasswd", str(users)),))
        self.addCleanup(guarded.mirror.close)
        self.assertEqual(guarded.get("/+health/ready").code, 401)
        probes = StubTreq(MetricsOnly(guarded.mirror.metrics, guarded.mirror.health))
        answer: list[object] = []
        asked = probes.get("http://metrics.test/+health/ready")  # type: ignore[attr-defined]
        asked.addCallback(treq.json_content).addCallback(answer.append)
        probes.flush()
        self.assertEqual(answer, [{"status": "ready", "journal": "replayed"}])


class HtpasswdFormTests(SynchronousTestCase):
    def test_onlyBcrypt(self) -> None:
        """
        Entries with another kind of hash (MD5, SHA-1, crypt) are skipped,
        with a warning that names the user; they cannot read.
        """
        from twisted.internet.task import Clock

        from ..harness import runSynchronously
        from tailmirror.web._passwords import HtpasswdChecker

        path = Path(tempfile.mkdtemp()) / "users"
        htpasswd(path, alice=PASSWORD)
        path.write_text(path.read_text() + "bob:$apr1$abc$defghijklmnopqrstuv\ncarol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
        log = CapturedLog(self)
        checker = HtpasswdChecker(str(path), Clock(), runSynchronously)
        self.assertEqual(checker.names, 1)
        warned = " ".join(formatEvent(e) for e in log.events if e.get("log_level") == LogLevel.warn)
        self.assertIn("bob", warned)
        self.assertIn("carol", warned)
        self.assertNotIn("$apr1$", warned)


class CheckerTests(SynchronousTestCase):
    """
    The htpasswd checker's bcrypt checks: a name the file lacks checked
    against one of the file's own hashes; the same credentials asked at
    once checked once; a few checks at once, at most; tokens tried first.
    """

    def setUp(self) -> None:
        self.path = Path(tempfile.mkdtemp()) / "users"
        htpasswd(self.path, alice="right", bob="other")
        self.threads = Threads(held=("_checkpw",))
        self.checker = HtpasswdChecker(str(self.path), Clock(), self.threads)

    def test_decoyOfTheFile(self) -> None:
        """
        A name the file does not have is checked against a hash of the
        file's, of the cost its names have: as slow as a wrong password.
        """
        d = self.checker.requestAvatarId(UsernamePassword(b"mallory", b"right"))
        [(_, _, (_, hashed))] = self.threads.waiting
        self.assertIn(hashed.decode(), self.path.read_text())
        self.threads.release()
        self.failureResultOf(d).trap(UnauthorizedLogin)

    def test_sharedAndCapped(self) -> None:
        """
        The same credentials asked at once share one check; different ones
        wait for a free place past CHECKS_AT_ONCE; each gets its answer.
        """
        answers: list[object] = []
        for _ in range(5):
            self.checker.requestAvatarId(UsernamePassword(b"alice", b"right")).addBoth(answers.append)
        for i in range(4):
            self.checker.requestAvatarId(UsernamePassword(b"bob", b"wrong%d" % i)).addBoth(answers.append)
        self.assertEqual(len(self.threads.waiting), CHECKS_AT_ONCE)
        while self.threads.waiting:
            self.threads.release()
        self.assertEqual(self.threads.calls.count("_checkpw"), 5)
        self.assertEqual(answers[:5], [b"alice"] * 5)
        self.assertEqual(len(answers), 9)
        for failure in answers[5:]:
            assert isinstance(failure, Failure)
            failure.trap(UnauthorizedLogin)

    def test_tokensFirst(self) -> None:
        """
        A token sent as a Basic password is taken without a bcrypt check.
        """
        token, line = newToken("ci")
        tokens = self.path.parent / "tokens"
        tokens.write_text(line + "\n")
        either = AnyOf([self.checker, TokenChecker(str(tokens), Clock())])
        self.assertEqual(self.successResultOf(either.requestAvatarId(UsernamePassword(b"x", token.encode()))), b"ci")
        self.assertEqual(self.threads.calls, [])
