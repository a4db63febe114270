"""
What the mirror may reach (L{Reach}, judged at connect time by
L{GuardedResolver}), and where upstream credentials come from.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Sequence

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IHostnameResolver, IHostResolution, IResolutionReceiver
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tailmirror.upstream import Reach, credentialsFromFile, credentialsFromNetrc, parseHostPort, withoutUserinfo
from tailmirror.upstream._reach import GuardedResolver, refusedKind
from tailmirror.upstream._resolve import _Known


class RefusedAddressTests(SynchronousTestCase):
    def test_kinds(self) -> None:
        """
        The list the issue names, and not Python's wider C{is_private}:
        documentation and benchmarking ranges pass.
        """
        for host, kind in [
            ("127.0.0.1", "loopback"), ("127.9.9.9", "loopback"), ("::1", "loopback"),
            ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("fe80::1%eth0", "link-local"),
            ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"),
            ("192.168.1.1", "private"), ("fd00::1", "unique-local"), ("100.64.0.1", "shared address space"),
            ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("::ffff:127.0.0.1", "loopback"),
        ]:
            self.assertEqual(refusedKind(host), kind, host)
        for host in ("8.8.8.8", "172.32.0.1", "192.0.2.1", "198.18.0.1", "203.0.113.5", "2001:db8::1",
                     "2a00::1", "files.test"):
            self.assertIsNone(refusedKind(host), host)

    def test_judge(self) -> None:
        reach = Reach([("localhost", 8080)], [("files.internal", None), ("10.0.0.5", 443)])
        # Upstream's own name, whatever it resolves to.
        self.assertEqual(reach.judge("localhost", 8080, ["127.0.0.1"]), (["127.0.0.1"], None))
        # Its addresses, once known, at its port only.
        reach.learned("localhost", 8080, ["127.0.0.1"])
        self.assertEqual(reach.judge("other.test", 8080, ["127.0.0.1"]), (["127.0.0.1"], None))
        kept, why = reach.judge("other.test", 9090, ["127.0.0.1"])
        self.assertEqual(kept, [])
        self.assertEqual(
            why, "refused to fetch from other.test (127.0.0.1) port 9090: a loopback address; "
            "--allow-file-host other.test:9090 allows it"
        )
        # Hosts the operator allows, by name or address, with or without a port.
        self.assertEqual(reach.judge("files.internal", 1, ["10.9.9.9"]), (["10.9.9.9"], None))
        self.assertEqual(reach.judge("x.test", 443, ["10.0.0.5"]), (["10.0.0.5"], None))
        self.assertEqual(reach.judge("x.test", 444, ["10.0.0.5"])[0], [])
        # Refused addresses are dropped; the rest kept.
        self.assertEqual(reach.judge("mixed.test", 80, ["10.1.1.1", "8.8.8.8"]), (["8.8.8.8"], None))
        self.assertIn("[fe80::1]:80", reach.judge("fe80::1", 80, ["fe80::1"])[1] or "")
        # An upstream's host that resolves elsewhere now: its old address is no longer its.
        reach.learned("localhost", 8080, ["127.0.0.2"])
        self.assertEqual(reach.judge("other.test", 8080, ["127.0.0.1"])[0], [])

    def test_hostPort(self) -> None:
        self.assertEqual(parseHostPort("Files.Internal"), ("files.internal", None))
        self.assertEqual(parseHostPort("10.0.0.5:8443"), ("10.0.0.5", 8443))
        self.assertEqual(parseHostPort("[fd00::1]:80"), ("fd00::1", 80))
        self.assertEqual(parseHostPort("fd00::1"), ("fd00::1", None))
        for bad in ("", "a:b", "a:0", "a:70000", "[::1]x", "a b", "a/b"):
            self.assertRaises(ValueError, parseHostPort, bad)


@implementer(IHostnameResolver)
class _Table:
    """
    A resolver that answers from a table, counting what it is asked.
    """

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        self.asked.append(hostName)
        resolution = _Known(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        for host in self.table.get(hostName, []):
            kind = IPv6Address if ":" in host else IPv4Address
            resolutionReceiver.addressResolved(kind("TCP", host, portNumber))
        resolutionReceiver.resolutionComplete()
        return resolution


@implementer(IResolutionReceiver)
class _Found:
    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.complete = False

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        pass

    def addressResolved(self, address: IAddress) -> None:
        self.hosts.append(getattr(address, "host"))

    def resolutionComplete(self) -> None:
        self.complete = True


class GuardedResolverTests(SynchronousTestCase):
    def resolve(self, resolver: GuardedResolver, host: str, port: int) -> _Found:
        found = _Found()
        resolver.resolveHostName(found, host, port)
        self.assertTrue(found.complete)
        return found

    def test_upstreamsAddressLearnedFirst(self) -> None:
        """
        A file link to another name for upstream's own address and port is
        allowed, upstream's name resolved first if need be; at another port
        it is refused, and why is kept for the endpoint's failure.
        """
        table = _Table({"index.test": ["127.0.0.1"], "alias.test": ["127.0.0.1", "::1"]})
        reach = Reach([("index.test", 8080)])
        guarded = GuardedResolver(table, reach)
        self.assertEqual(self.resolve(guarded, "alias.test", 8080).hosts, ["127.0.0.1"])
        self.assertEqual(table.asked, ["alias.test", "index.test"])
        self.assertIsNone(guarded.refusal)
        guarded = GuardedResolver(table, reach)
        self.assertEqual(self.resolve(guarded, "alias.test", 8081).hosts, [])
        self.assertIn("a loopback address", guarded.refusal or "")

    def test_rebinding(self) -> None:
        """
        Each connection is judged by what its name resolves to then.
        """
        table = _Table({"files.test": ["93.184.216.34"]})
        reach = Reach([("index.test", 443)])
        self.assertEqual(self.resolve(GuardedResolver(table, reach), "files.test", 443).hosts, ["93.184.216.34"])
        table.table["files.test"] = ["169.254.169.254"]
        guarded = GuardedResolver(table, reach)
        self.assertEqual(self.resolve(guarded, "files.test", 443).hosts, [])
        self.assertIn("link-local", guarded.refusal or "")


class CredentialsTests(SynchronousTestCase):
    def test_userinfo(self) -> None:
        url, found = withoutUserinfo("https://me:p%40ss%20word@index.test:8443/simple/")
        self.assertEqual(url, "https://index.test:8443/simple/")
        assert found is not None
        self.assertEqual(found.authorization, "Basic " + base64.b64encode(b"me:p@ss word").decode())
        self.assertNotIn("ss", repr(found) + str(found))
        self.assertEqual(withoutUserinfo("https://index.test/simple/"), ("https://index.test/simple/", None))

    def test_file(self) -> None:
        path = Path(tempfile.mkdtemp()) / "credentials"
        path.write_text("# the CI token\nbearer abc.def\n")
        self.assertEqual(credentialsFromFile(str(path), "--upstream-credentials").authorization, "Bearer abc.def")
        path.write_text("basic me:pa:ss\n")
        self.assertEqual(
            credentialsFromFile(str(path), "--upstream-credentials").authorization,
            "Basic " + base64.b64encode(b"me:pa:ss").decode(),
        )
        for bad in ("", "token s3cret\n", "bearer a b\n", "basic nocolon-s3cret\n", "bearer a\nbearer b\n"):
            path.write_text(bad)
            with self.assertRaises(ValueError) as caught:
                credentialsFromFile(str(path), "--upstream-credentials")
            self.assertNotIn("s3cret", str(caught.exception))

    def test_netrc(self) -> None:
        path = Path(tempfile.mkdtemp()) / "netrc"
        path.write_text("machine index.test login me password s3cret\n")
        found, warning = credentialsFromNetrc("https://index.test/simple/", {"NETRC": str(path)})
        assert found is not None
        self.assertEqual((found.source, warning), ("netrc", None))
        self.assertEqual(credentialsFromNetrc("https://other.test/simple/", {"NETRC": str(path)}), (None, None))
        path.write_text("machine index.test login me password s3cret oops\n")
        found, warning = credentialsFromNetrc("https://index.test/simple/", {"NETRC": str(path)})
        self.assertIsNone(found)
        self.assertIn("cannot be read", warning or "")
        self.assertNotIn("s3cret", warning or "")
