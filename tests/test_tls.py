"""
An https upstream, over real sockets on 127.0.0.1: certificates are
checked against the host name, through service-identity.
"""

from __future__ import annotations

import os
import tempfile

import treq
from twisted.internet import reactor
from twisted.internet.ssl import PrivateCertificate
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from tailmirror._service import MirrorService, Settings

from .certs import Authority
from .fakeindex import FakeIndex, generated
from .harness import CapturedLog


class TLSTests(TestCase):
    """
    A mirror of an https upstream whose authority it is told to trust.
    """

    def setUp(self) -> None:
        self.authority = Authority.make()
        self.dir = tempfile.mkdtemp(prefix="tailmirror-tls-")
        self.trusted = os.path.join(self.dir, "trusted.pem")
        with open(self.trusted, "wb") as f:
            f.write(self.authority.pem)
        self.index = FakeIndex([generated("foo")])

    def serve(self, pem: bytes) -> int:
        """
        Serve the fake index over TLS with a certificate; give its port.
        """
        options = PrivateCertificate.loadPEM(pem).options()
        port = reactor.listenSSL(0, Site(self.index), options, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    async def mirrorGet(self, upstream: str, caCerts: str | None, path: str) -> tuple[int, bytes]:
        """
        Start a mirror of C{upstream} and ask it for C{path}.
        """
        cache = tempfile.mkdtemp(dir=self.dir)
        mirror = MirrorService(reactor, Settings(upstream, cache, timeout=5.0, caCerts=caCerts))
        mirror.startService()
        self.addCleanup(mirror.stopService)
        port = reactor.listenTCP(0, mirror.site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        pool = HTTPConnectionPool(reactor, persistent=False)
        response = await treq.get(f"http://127.0.0.1:{port.getHost().port}{path}", pool=pool)
        return response.code, await response.content()

    async def test_trusted(self) -> None:
        """
        A certificate for the upstream's host name, from a trusted
        authority: the page comes through.
        """
        port = self.serve(self.authority.serverPEM("localhost"))
        code, body = await self.mirrorGet(f"https://localhost:{port}/simple/", self.trusted, "/simple/foo/")
        self.assertEqual(code, 200, body)

    async def test_wrongHost(self) -> None:
        """
        A certificate from a trusted authority, but for another host name:
        refused, saying so, and nothing fetched.
        """
        log = CapturedLog(self)
        port = self.serve(self.authority.serverPEM("elsewhere.test"))
        code, body = await self.mirrorGet(f"https://localhost:{port}/simple/", self.trusted, "/simple/foo/")
        self.assertEqual(code, 502)
        self.assertTrue(body.startswith(b"upstream's TLS certificate was refused"), body)
        self.assertEqual(body.count(b"\n"), 1, body)
        self.assertEqual(sum(self.index.requests.values()), 0)
        self.assertNotIn("Traceback", log.text())

    async def test_untrustedAuthority(self) -> None:
        """
        A certificate for the right host from an authority nobody trusts:
        refused.
        """
        stranger = Authority.make("a stranger")
        port = self.serve(stranger.serverPEM("localhost"))
        code, body = await self.mirrorGet(f"https://localhost:{port}/simple/", self.trusted, "/simple/foo/")
        self.assertEqual(code, 502)
        self.assertTrue(body.startswith(b"upstream's TLS certificate was refused"), body)
        self.assertEqual(sum(self.index.requests.values()), 0)


