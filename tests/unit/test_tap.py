"""
Tests for C{twistd tailmirror}'s options and the service they make.
"""

import os
import tempfile

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tailmirror._service import Listening, MirrorService
from tailmirror.base import defaultCacheDir
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
        self.assertEqual(options["cache-dir"], defaultCacheDir())
        self.assertEqual((options["ttl"], options["timeout"]), (900.0, 15.0))
        self.assertEqual((options["idle-timeout"], options["client-timeout"]), (30.0, 60.0))
        self.assertEqual(options["max-page-size"], 64 * 1024 * 1024)
        self.assertEqual((options["page-requests"], options["file-requests"]), (32, 64))
        self.assertIsNone(options["ca-certs"])

    def test_portOutOfRange(self) -> None:
        """
        A URL whose port is no port is a usage error where it is given,
        not a traceback when the mirror first uses it.
        """
        self.assertUsage(["-u", "http://h:99999/simple/"], "--upstream", "http://h:99999/simple/")
        self.assertUsage(["-u", UP, "--index", "other=https://h:0x1/simple/"], "--index other=")
        self.assertUsage(["-u", UP, "--store", "s3://b", "--store-endpoint", "http://s3:70000"], "--store-endpoint")

    def test_cacheDirByDefault(self) -> None:
        """
        Without --cache-dir, the user's cache directory, wherever the mirror
        is started from.
        """
        self.patch(os, "environ", {"XDG_CACHE_HOME": "/var/cache/me", "HOME": "/home/me"})
        self.assertEqual(self.parse("-u", UP)["cache-dir"], "/var/cache/me/tailmirror")
        self.patch(os, "environ", {"HOME": "/home/me", "XDG_CACHE_HOME": "relative"})
        self.assertEqual(self.parse("-u", UP)["cache-dir"], "/home/me/.cache/tailmirror")

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
        self.assertEqual(upstream.pageSlots.limit, 3)
        self.assertEqual(upstream.fileSlots.limit, 5)
        self.assertEqual(upstream.idleTimeout, 7.0)
        self.assertEqual((mirror.files.clientTimeout, mirror.site.timeOut), (9.0, 9.0))

    def test_notFoundTTL(self) -> None:
        """
        Upstream's 404s are remembered for the revalidation floor by
        default, for --not-found-ttl when it is given (0: not at all).
        """
        for argv, seconds in ((["--revalidate-floor", "30"], 30.0), (["--not-found-ttl", "0"], 0.0),
                              (["--not-found-ttl", "300"], 300.0)):
            options = self.parse("-u", UP, "-d", tempfile.mkdtemp(), *argv)
            mirror = list(makeService(options))[0]
            self.assertEqual(mirror.pages._missing.seconds, seconds, argv)
        self.assertUsage(["-u", UP, "--not-found-ttl", "-1"], "--not-found-ttl", "0 or more")

    def test_upstreamFromEnvironment(self) -> None:
        """
        The upstream may come from C{TAILMIRROR_UPSTREAM}; the option wins.
        """
        os.environ[UPSTREAM_ENV] = "https://mirror.invalid/simple/"
        self.assertEqual(self.parse()["upstream"], "https://mirror.invalid/simple/")
        self.assertEqual(self.parse("--upstream", UP)["upstream"], UP)

    def test_upstreamFromPip(self) -> None:
        """
        Without --upstream or C{TAILMIRROR_UPSTREAM}, the upstream is the
        index pip here would use: C{PIP_INDEX_URL}, else pip's configured
        index-url, else pip's own default, read from pip; and where it came
        from is kept.
        """
        from pip._internal.models.index import PyPI

        clean = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", UPSTREAM_ENV))}
        self.patch(os, "environ", dict(clean, PIP_INDEX_URL="http://127.0.0.1:9/simple"))
        options = self.parse()
        self.assertEqual((options["upstream"], options["upstream-source"]), (UP.replace(":1/", ":9/"), "PIP_INDEX_URL"))
        config = os.path.join(tempfile.mkdtemp(), "pip.conf")
        with open(config, "w") as f:
            f.write("[global]\nindex-url = http://127.0.0.1:8/simple/\n")
        self.patch(os, "environ", dict(clean, PIP_CONFIG_FILE=config))
        options = self.parse()
        self.assertEqual(options["upstream"], "http://127.0.0.1:8/simple/")
        self.assertEqual(options["upstream-source"], "pip's configuration (global.index-url)")
        self.patch(os, "environ", dict(clean, PIP_CONFIG_FILE=os.devnull))
        options = self.parse()
        self.assertEqual(options["upstream"].rstrip("/"), PyPI.simple_url.rstrip("/"))
        self.assertEqual(options["upstream-source"], "pip's default index")
        self.assertEqual(self.parse("-u", UP)["upstream-source"], "--upstream")

    def test_noPip(self) -> None:
        """
        With no pip to ask, a usage error says to pass --upstream.
        """
        from tailmirror import tap

        self.patch(tap, "pipIndex", lambda: None)
        self.assertUsage([], "--upstream", UPSTREAM_ENV)

    def test_diskLimits(self) -> None:
        """
        C{--max-size} takes K, M, G and T (none by default); C{--min-free} a
        size or a percentage (5% by default); both reach the mirror.
        """
        self.assertIsNone(self.parse("-u", UP)["max-size"])
        self.assertEqual(self.parse("-u", UP)["min-free"], 0.05)
        self.assertEqual(self.parse("-u", UP, "--max-size", "20G")["max-size"], 20 * 1024**3)
        self.assertEqual(self.parse("-u", UP, "--max-size", "1T")["max-size"], 1024**4)
        self.assertEqual(self.parse("-u", UP, "--min-free", "10%")["min-free"], 0.1)
        self.assertEqual(self.parse("-u", UP, "--min-free", "2G")["min-free"], 2 * 1024**3)
        self.assertEqual(self.parse("-u", UP, "--min-free", "0")["min-free"], 0)
        self.assertUsage(["-u", UP, "--max-size", "0"], "--max-size")
        self.assertUsage(["-u", UP, "--max-size", "lots"], "--max-size", "size")
        self.assertUsage(["-u", UP, "--min-free", "100%"], "--min-free", "percentage")
        self.assertUsage(["-u", UP, "--min-free", "-1"], "--min-free")
        options = self.parse("-u", UP, "--max-size", "3M", "--min-free", "1%", "-d", tempfile.mkdtemp())
        mirror = list(makeService(options))[0]
        self.assertEqual(mirror.tree.budget.limits.maxSize, 3 * 1024**2)
        self.assertEqual(mirror.tree.budget.limits.minFree, 0.01)

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


class AccessOptionsTests(SynchronousTestCase):
    """
    The options of read access, upstream credentials and reach.
    """

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.patch(os, "environ", {"NETRC": os.path.join(self.dir, "netrc"), "HOME": self.dir})

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_upstreamCredentials(self) -> None:
        """
        The URL's userinfo is taken off it (what is logged, shown and
        journalled); a file, or netrc, gives them otherwise; never both a
        file and the URL.
        """
        options = self.parse("-u", "http://me:s3cret@127.0.0.1:1/simple/")
        self.assertEqual(options["upstream"], UP)
        self.assertEqual(options["credentials"].source, "the URL")
        self.assertIsNone(self.parse("-u", UP)["credentials"])
        self.write("netrc", "machine 127.0.0.1 login me password s3cret\n")
        self.assertEqual(self.parse("-u", UP)["credentials"].source, "netrc")
        path = self.write("token", "bearer s3cret\n")
        options = self.parse("-u", UP, "--upstream-credentials", path, "--index", "b=https://x:y@b.test/simple/")
        self.assertEqual(options["credentials"].authorization, "Bearer s3cret")
        self.assertEqual(options["index"]["b"], "https://b.test/simple/")
        self.assertEqual(options["index-credentials"]["b"].source, "the URL")
        options = self.parse("-u", UP, "--index", "b=https://b.test/simple/", "--index-credentials", f"b={path}")
        self.assertEqual(options["index-credentials"]["b"].authorization, "Bearer s3cret")
        service = makeService(options)
        settings = list(service)[0].settings
        self.assertEqual(settings.indexes[0].credentials.authorization, "Bearer s3cret")
        self.assertNotIn("s3cret", repr(settings))
        for argv, words in [
            (["-u", "http://me:s3cret@127.0.0.1:1/simple/", "--upstream-credentials", path], ["one way"]),
            (["-u", UP, "--upstream-credentials", self.write("bad", "s3cret\n")], ["--upstream-credentials", "line 1"]),
            (["-u", UP, "--upstream-credentials", "/nonexistent"], ["cannot be read"]),
            (["-u", UP, "--index-credentials", f"c={path}"], ["names no index"]),
            (["-u", "ftp://me:s3cret@x.test/"], ["--upstream", "ftp://x.test/"]),
        ]:
            error = self.assertRaises(usage.UsageError, self.parse, *argv)
            for word in words:
                self.assertIn(word, str(error))
            self.assertNotIn("s3cret", str(error))

    def test_auth(self) -> None:
        users = self.write("users", "alice:$2y$05$11N8hlytZ/RaXvKPuUX.gei4tOWhzDm.773g8RHsPrkxhgp9PisiC\n")
        options = self.parse("-u", UP, "--auth", f"htpasswd:{users}", "--listen", "tcp:0")
        self.assertEqual(options["auth"], [("htpasswd", users)])
        self.assertTrue(any("plain HTTP" in w for w in options["start-warnings"]))
        for argv, words in [
            (["--auth", "basic:x"], ["htpasswd:PATH or tokens:PATH"]),
            (["--auth", "tokens:/nonexistent"], ["cannot be read"]),
            (["--auth", f"tokens:{self.write('t', 'nonsense')}"], ["NAME:sha256:HEX"]),
            (["--allow-file-host", "a:b"], ["HOST or HOST:PORT"]),
        ]:
            error = self.assertRaises(usage.UsageError, self.parse, "-u", UP, *argv)
            for word in words:
                self.assertIn(word, str(error))
        self.assertEqual(
            self.parse("-u", UP, "--allow-file-host", "Files.Test", "--allow-file-host", "10.0.0.1:80")["allow-file-host"],
            [("files.test", None), ("10.0.0.1", 80)],
        )
