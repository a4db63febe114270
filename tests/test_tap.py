"""
Tests for C{twistd tailmirror}'s options and the service they make.
"""

import os
import tempfile

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tailmirror._service import Listening, MirrorService
from tailmirror.tap import DEFAULT_LISTEN, UPSTREAM_ENV, Options, makeService

UP = "http://127.0.0.1:1/simple/"


class OptionsTests(SynchronousTestCase):
    """
    Tests for L{Options}.
    """

    def setUp(self) -> None:
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if k != UPSTREAM_ENV})

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def assertUsage(self, argv: list[str], *words: str) -> None:
        error = self.assertRaises(usage.UsageError, self.parse, *argv)
        for word in words:
            self.assertIn(word, str(error))

    def test_defaults(self) -> None:
        """
        Only the upstream is required; the rest have the documented defaults.
        """
        options = self.parse("--upstream", "http://127.0.0.1:1/simple")
        self.assertEqual(options["upstream"], UP)
        self.assertEqual(options["listen"], [DEFAULT_LISTEN])
        self.assertEqual(options["cache-dir"], ".cache/tailmirror")
        self.assertEqual((options["ttl"], options["timeout"]), (900.0, 15.0))
        self.assertEqual((options["idle-timeout"], options["client-timeout"]), (30.0, 60.0))
        self.assertEqual(options["max-page-size"], 64 * 1024 * 1024)
        self.assertEqual((options["page-requests"], options["file-requests"]), (16, 16))
        self.assertIsNone(options["ca-certs"])

    def test_capsAndLimits(self) -> None:
        """
        Sizes take K, M and G; the caps reach the mirror they make.
        """
        options = self.parse(
            "-u", UP, "--max-page-size", "2M", "--page-requests", "3",
            "--file-requests", "5", "--idle-timeout", "7", "--client-timeout", "9",
            "-d", tempfile.mkdtemp(),
        )
        self.assertEqual(options["max-page-size"], 2 * 1024 * 1024)
        self.assertEqual(self.parse("-u", UP, "--max-page-size", "1500")["max-page-size"], 1500)
        mirror = list(makeService(options))[0]
        upstream = mirror.pages._upstream
        self.assertEqual(upstream.maxPageBytes, 2 * 1024 * 1024)
        self.assertEqual(upstream._semaphore.limit, 3)
        self.assertEqual(upstream.fileSlots.limit, 5)
        self.assertEqual(upstream.idleTimeout, 7.0)
        self.assertEqual((mirror.files.clientTimeout, mirror.site.timeOut), (9.0, 9.0))

    def test_upstreamFromEnvironment(self) -> None:
        """
        The upstream may come from C{TAILMIRROR_UPSTREAM}; the option wins.
        """
        os.environ[UPSTREAM_ENV] = "https://mirror.invalid/simple/"
        self.assertEqual(self.parse()["upstream"], "https://mirror.invalid/simple/")
        self.assertEqual(self.parse("--upstream", UP)["upstream"], UP)

    def test_listenRepeats(self) -> None:
        """
        C{--listen} takes endpoint strings and may repeat.
        """
        options = self.parse("-u", UP, "--listen", "tcp:1234", "--listen", "unix:/tmp/x.sock")
        self.assertEqual(options["listen"], ["tcp:1234", "unix:/tmp/x.sock"])

    def test_badValues(self) -> None:
        """
        A missing or bad value is a usage error naming the option and what
        it takes.
        """
        self.assertUsage(["-u", "ftp://x/"], "--upstream", "http")
        self.assertUsage(["-u", "not a url"], "--upstream")
        self.assertUsage(["-u", UP, "--ttl", "soon"], "--ttl", "positive number")
        self.assertUsage(["-u", UP, "--ttl", "0"], "--ttl")
        self.assertUsage(["-u", UP, "--timeout", "-1"], "--timeout")
        self.assertUsage(["-u", UP, "--timeout", "nan"], "--timeout")
        self.assertUsage(["-u", UP, "--listen", "bogus:1"], "--listen", "bogus")
        self.assertUsage(["-u", UP, "--cache-dir", ""], "--cache-dir")
        self.assertUsage(["-u", UP, "--max-page-size", "big"], "--max-page-size", "size")
        self.assertUsage(["-u", UP, "--max-page-size", "0"], "--max-page-size")
        self.assertUsage(["-u", UP, "--page-requests", "0"], "--page-requests", "whole")
        self.assertUsage(["-u", UP, "--file-requests", "2.5"], "--file-requests")
        self.assertUsage(["-u", UP, "--idle-timeout", "0"], "--idle-timeout")
        self.assertUsage(["-u", UP, "--ca-certs", "/nonexistent"], "--ca-certs")
        empty = os.path.join(tempfile.mkdtemp(), "empty.pem")
        open(empty, "w").close()
        self.assertUsage(["-u", UP, "--ca-certs", empty], "--ca-certs", "no PEM")


class MakeServiceTests(SynchronousTestCase):
    """
    Tests for L{makeService}.
    """

    def test_services(self) -> None:
        """
        The mirror comes first, then one listening service per endpoint;
        starting it replays the journal in the cache directory.
        """
        options = Options()
        cache = os.path.join(tempfile.mkdtemp(), "cache")
        options.parseOptions(["-u", UP, "-d", cache, "-l", "tcp:0", "-l", "tcp:0"])
        top = makeService(options)
        children = list(top)
        self.assertIsInstance(children[0], MirrorService)
        self.assertEqual([type(c) for c in children[1:]], [Listening] * 2)
        mirror = children[0]
        mirror.startService()
        self.assertTrue(os.path.exists(os.path.join(cache, "journal.jsonl")))
        self.successResultOf(mirror.stopService())
