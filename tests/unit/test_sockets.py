"""
Upstreams that fail over real sockets on 127.0.0.1: refused connections,
names that do not resolve, answers that lie or stall, and https upstreams
whose certificates are checked against the host name by service-identity.
"""

from __future__ import annotations

import os
import socket
import struct
import tempfile
from typing import Any, cast

import treq
from twisted.internet import reactor
from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IPullProducer, IReactorPluggableNameResolver, IReactorSSL, ITCPTransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import PrivateCertificate
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import URI, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.error import SchemeNotSupported
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

from tailmirror.web._access import AccessLog, MirrorSite
from tailmirror.files._download import Download
from tailmirror.base._sockets import BULK, gathered, socketOf
from tailmirror.base._layout import mirrorPath
from tailmirror.observe._metrics import MirrorMetrics
from tailmirror.web._stream import Stream
from tailmirror._service import Settings
from tailmirror.upstream._transport import loadTrustRoot
from tailmirror.upstream import Reach
from tailmirror.upstream._transport import UpstreamEndpoints

from ..certs import Authority
from ..fakeindex import FakeIndex, FakeProject, generated, sdist
from ..harness import CapturedLog, startMirror

#: The test servers are on loopback, which upstream connections are
#: otherwise refused (their own upstream's address apart).
LOOPBACK = Reach(allowed=[("127.0.0.1", None), ("localhost", None)])


async def mirrorGet(
    test: TestCase, upstream: str, path: str, caCerts: str | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    """
    Start a real mirror service of C{upstream} and ask it for C{path}.
    """
    cache = tempfile.mkdtemp(prefix="tailmirror-sockets-")
    settings = Settings(upstream, cache, timeout=timeout, idleTimeout=timeout, caCerts=caCerts)
    _, base = startMirror(test, settings)
    pool = HTTPConnectionPool(reactor, persistent=False)
    response = await treq.get(base + path, pool=pool)
    return response.code, await response.content()


class _Scripted(Protocol):
    """
    Answers the first request with the bytes it is given, then closes the
    connection or not.
    """

    def __init__(self, answer: bytes, close: bool) -> None:
        self.answer, self.close, self.buffer = answer, close, b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" in self.buffer and self.answer:
            assert self.transport is not None
            self.transport.write(self.answer)
            self.answer = b""
            if self.close:
                self.transport.loseConnection()


class BrokenUpstreamTests(TestCase):
    """
    Upstreams that refuse, do not resolve, or answer wrongly: a plain 502
    or 504 saying why, and no traceback in the log.
    """

    def setUp(self) -> None:
        self.log = CapturedLog(self)

    def tearDown(self) -> None:
        self.assertNotIn("Traceback", self.log.text())

    def scripted(self, answer: bytes, close: bool = True) -> str:
        factory = Factory.forProtocol(lambda: _Scripted(answer, close))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted types it ServerFactory[_ProtoWithFactory] only
        self.addCleanup(port.stopListening)
        address = port.getHost()
        assert isinstance(address, IPv4Address)
        return f"http://127.0.0.1:{address.port}/simple/"

    async def assertAnswer(self, upstream: str, code: int, reason: bytes, timeout: float = 5.0) -> None:
        answer = await mirrorGet(self, upstream, "/simple/foo/", timeout=timeout)
        self.assertEqual(answer[0], code, answer)
        self.assertTrue(answer[1].startswith(reason), answer)
        self.assertEqual(answer[1].count(b"\n"), 1)

    async def test_refused(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        await self.assertAnswer(f"http://127.0.0.1:{closed}/simple/", 502, b"upstream refused")

    async def test_unresolvable(self) -> None:
        await self.assertAnswer("http://tailmirror-test.invalid/simple/", 502, b"upstream host name does not resolve")

    async def test_lyingLength(self) -> None:
        """
        A body shorter than its C{Content-Length}, cut off.
        """
        answer = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.pypi.simple.v1+json\r\n"
            b"Content-Length: 1000\r\n\r\n{\"meta\": {"
        )
        await self.assertAnswer(self.scripted(answer), 502, b"upstream broke off its answer")

    async def test_stalledMidway(self) -> None:
        """
        A page that stops arriving midway: 504 once the idle timeout is up.
        """
        answer = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.pypi.simple.v1+json\r\n"
            b"Content-Length: 1000\r\n\r\n{\"meta\": {"
        )
        await self.assertAnswer(self.scripted(answer, close=False), 504, b"upstream stopped sending the page", 1.0)

    async def test_serverError(self) -> None:
        answer = b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy"
        await self.assertAnswer(self.scripted(answer), 502, b"upstream answered 503 for foo")

    async def test_notHTTP(self) -> None:
        await self.assertAnswer(self.scripted(b"SSH-2.0-OpenSSH\r\n\r\n"), 502, b"upstream")

    async def test_malformedHTML(self) -> None:
        """
        Garbled HTML (a NUL byte, an anchor left open, cut short) is an
        upstream failure, never a page: a 502 that says what is wrong.
        """
        body = b"<html><body><a href='/f/foo-1.0.tar.gz#sha256=" + b"a" * 64 + b"'>foo-1.0.tar.gz<a <<<\x00</table>"
        answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        code, page = await mirrorGet(self, self.scripted(answer), "/simple/foo/?format=application/vnd.pypi.simple.v1%2Bjson")
        self.assertEqual(code, 502, page)
        self.assertIn(b"control byte", page)


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
        # The global reactor is typed without IReactorSSL, which it provides.
        port = cast(IReactorSSL, reactor).listenSSL(0, Site(self.index), options, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        address = port.getHost()
        assert isinstance(address, IPv4Address)
        return address.port

    async def test_trusted(self) -> None:
        """
        A certificate for the upstream's host name, from a trusted
        authority: the page comes through.
        """
        port = self.serve(self.authority.serverPEM("localhost"))
        code, body = await mirrorGet(self, f"https://localhost:{port}/simple/", "/simple/foo/", self.trusted)
        self.assertEqual(code, 200, body)

    async def test_wrongHost(self) -> None:
        """
        A certificate from a trusted authority, but for another host name:
        refused, saying so, and nothing fetched.
        """
        log = CapturedLog(self)
        port = self.serve(self.authority.serverPEM("elsewhere.test"))
        code, body = await mirrorGet(self, f"https://localhost:{port}/simple/", "/simple/foo/", self.trusted)
        self.assertEqual(code, 502)
        self.assertTrue(body.startswith(b"upstream's TLS certificate was refused"), body)
        self.assertEqual(body.count(b"\n"), 1, body)
        self.assertEqual(sum(self.index.requests.values()), 0)
        self.assertNotIn("Traceback", log.text())

    async def test_oneContextOneResolution(self) -> None:
        """
        Connections to an https upstream at once, six of them, share one
        TLS context (the authorities loaded once) and one resolution of the
        upstream's name.
        """
        self.index = FakeIndex([generated(f"p{i}") for i in range(6)])
        port = self.serve(self.authority.serverPEM("localhost"))
        made: list[bytes] = []
        creator = BrowserLikePolicyForHTTPS.creatorForNetloc

        def counting(policy: BrowserLikePolicyForHTTPS, host: bytes, number: int) -> Any:
            made.append(host)
            return creator(policy, host, number)

        self.patch(BrowserLikePolicyForHTTPS, "creatorForNetloc", counting)
        resolver = cast(IReactorPluggableNameResolver, reactor).nameResolver
        resolve = resolver.resolveHostName
        resolved: list[str] = []

        def resolving(receiver: Any, name: str, *args: Any, **kwargs: Any) -> Any:
            if name != "127.0.0.1":  # the test's own requests to the mirror
                resolved.append(name)
            return resolve(receiver, name, *args, **kwargs)

        self.patch(resolver, "resolveHostName", resolving)
        settings = Settings(f"https://localhost:{port}/simple/", tempfile.mkdtemp(), caCerts=self.trusted)
        _, base = startMirror(self, settings)
        pool = HTTPConnectionPool(reactor, persistent=False)
        answers = await gatherResults([treq.get(f"{base}/simple/p{i}/", pool=pool) for i in range(6)])
        self.assertEqual([a.code for a in answers], [200] * 6)
        for answer in answers:
            await answer.content()
        self.assertEqual(self.index.requests["/simple/p0/"], 1)
        self.assertEqual((made, resolved), ([b"localhost"], ["localhost"]))

    async def test_untrustedAuthority(self) -> None:
        """
        A certificate for the right host from an authority nobody trusts:
        refused.
        """
        stranger = Authority.make("a stranger")
        port = self.serve(stranger.serverPEM("localhost"))
        code, body = await mirrorGet(self, f"https://localhost:{port}/simple/", "/simple/foo/", self.trusted)
        self.assertEqual(code, 502)
        self.assertTrue(body.startswith(b"upstream's TLS certificate was refused"), body)
        self.assertEqual(sum(self.index.requests.values()), 0)




class CookieTests(TestCase):
    """
    The mirror keeps no cookies upstream sets: its requests are the same
    whichever client they are for.
    """

    async def test_noCookiesKept(self) -> None:
        class Cookied(FakeIndex):
            def render_GET(self, request: Any) -> Any:
                request.addCookie(b"session", b"secret", path=b"/")
                return super().render_GET(request)

        index = Cookied([FakeProject("foo", [sdist("foo", "1.0")]), FakeProject("bar", [sdist("bar", "1.0")])])
        port = reactor.listenTCP(0, Site(index), interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted types it ServerFactory[_ProtoWithFactory] only
        self.addCleanup(port.stopListening)
        address = port.getHost()
        assert isinstance(address, IPv4Address)
        settings = Settings(f"http://127.0.0.1:{address.port}/simple/", tempfile.mkdtemp(prefix="tailmirror-cookies-"))
        _, base = startMirror(self, settings)
        pool = HTTPConnectionPool(reactor, persistent=False)
        for name in ("foo", "bar"):
            response = await treq.get(f"{base}/simple/{name}/", pool=pool)
            self.assertEqual(response.code, 200)
            await response.content()
            self.assertNotIn("cookie", index.lastHeaders)
        self.assertEqual(index.requests["/simple/bar/"], 1)


class BulkTests(TestCase):
    """
    Connections that carry files move up to a megabyte per read or write,
    where Twisted's defaults are 64 KiB reads and 128 KiB writes: at
    loopback speeds the trips through the reactor cost more than copying.
    """

    def listen(self) -> int:
        port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted types it ServerFactory[_ProtoWithFactory] only
        self.addCleanup(port.stopListening)
        address = port.getHost()
        assert isinstance(address, IPv4Address)
        return address.port

    async def connect(self, url: str, policy: BrowserLikePolicyForHTTPS | None = None) -> Protocol:
        endpoints = UpstreamEndpoints(reactor, policy or BrowserLikePolicyForHTTPS(), 5.0, LOOPBACK)
        protocol = await endpoints.endpointForURI(URI.fromBytes(url.encode())).connect(Factory.forProtocol(Protocol))
        assert isinstance(protocol, Protocol)
        # A TCP transport, or TLS over one: both provide ITCPTransport.
        self.addCleanup(cast(ITCPTransport, protocol.transport).abortConnection)
        return protocol

    async def test_upstreamReadsInBulk(self) -> None:
        protocol = await self.connect(f"http://127.0.0.1:{self.listen()}/simple/")
        self.assertIs(socketOf(protocol.transport), protocol.transport)
        # Two steps: mypy-zope narrows to a class only from a non-optional interface.
        assert protocol.transport is not None
        assert isinstance(protocol.transport, FileDescriptor)
        self.assertEqual(protocol.transport.bufferSize, BULK)

    async def test_upstreamReadsInBulkUnderTLS(self) -> None:
        """
        Under TLS it is the socket's transport, below the TLS layer, that
        reads in bulk.
        """
        authority = Authority.make()
        options = PrivateCertificate.loadPEM(authority.serverPEM("localhost")).options()
        port = cast(IReactorSSL, reactor).listenSSL(
            0, Factory.forProtocol(Protocol), options, interface="127.0.0.1"  # type: ignore[arg-type]
        )
        self.addCleanup(port.stopListening)
        address = port.getHost()
        assert isinstance(address, IPv4Address)
        pem = os.path.join(tempfile.mkdtemp(prefix="tailmirror-bulk-"), "ca.pem")
        with open(pem, "wb") as f:
            f.write(authority.pem)
        policy = BrowserLikePolicyForHTTPS(loadTrustRoot(pem))
        protocol = await self.connect(f"https://localhost:{address.port}/", policy)
        socketTransport = socketOf(protocol.transport)
        self.assertIsNot(socketTransport, protocol.transport)
        assert socketTransport is not None
        self.assertEqual(socketTransport.bufferSize, BULK)

    async def test_tlsOptionsOnlyToConnect(self) -> None:
        """
        The endpoint the agent asks for with every request makes its TLS
        options (a new context each) only when it connects: a request on a
        pooled connection costs none.
        """
        made: list[bytes] = []

        class Counting(BrowserLikePolicyForHTTPS):
            def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
                made.append(hostname)
                return super().creatorForNetloc(hostname, port)

        endpoints = UpstreamEndpoints(reactor, Counting(), 5.0, LOOPBACK)
        uri = URI.fromBytes(f"https://localhost:{self.listen()}/".encode())
        for _ in range(3):
            endpoints.endpointForURI(uri)
        self.assertEqual(made, [])
        protocol = await endpoints.endpointForURI(uri).connect(Factory.forProtocol(Protocol))
        assert isinstance(protocol, Protocol)
        self.addCleanup(cast(ITCPTransport, protocol.transport).abortConnection)
        self.assertEqual(made, [b"localhost"])

    def test_otherSchemes(self) -> None:
        endpoints = UpstreamEndpoints(reactor, BrowserLikePolicyForHTTPS(), reach=LOOPBACK)
        self.assertRaises(SchemeNotSupported, endpoints.endpointForURI, URI.fromBytes(b"ftp://127.0.0.1/"))

    async def test_bulkOverSockets(self) -> None:
        """
        A real mirror fetching a 4 MB file from an upstream on a real
        socket reads it in pieces bigger than 64 KiB and sends it to its
        client with a megabyte allowed per write; the client gets it whole.
        """
        big = sdist("foo", "1.0", size=4 * 2**20)
        index = FakeIndex([FakeProject("foo", [big])])
        port = reactor.listenTCP(0, Site(index), interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted types it ServerFactory[_ProtoWithFactory] only
        self.addCleanup(port.stopListening)
        address = port.getHost()
        assert isinstance(address, IPv4Address)
        pieces: list[int] = []
        write = Download.write

        def measured(download: Download, data: bytes) -> None:
            pieces.append(len(data))
            write(download, data)

        self.patch(Download, "write", measured)
        sendLimits: list[int] = []
        begin = Stream.begin

        def begun(stream: Stream) -> None:
            begin(stream)
            descriptor = socketOf(stream._request.channel.transport)
            assert descriptor is not None
            sendLimits.append(descriptor.SEND_LIMIT)

        self.patch(Stream, "begin", begun)
        path = "/" + mirrorPath(big.filename, "", {"sha256": big.sha256})
        code, body = await mirrorGet(self, f"http://127.0.0.1:{address.port}/simple/", path)
        self.assertEqual(code, 200)
        self.assertEqual(body, big.content)
        self.assertEqual(sum(pieces), big.size)
        self.assertGreater(max(pieces), 64 * 1024)
        self.assertEqual(sendLimits, [BULK])


class WriteThroughTests(TestCase):
    """
    The mirror's connections, to its clients and to upstream, hand what they
    are given to the socket at once when nothing waits before it, not at
    the reactor's next turn: in a burst of requests, a request to upstream
    or an answer leaves without waiting for the rest of the burst.  Each
    test looks at the peer's socket before the reactor has had a turn.
    """

    def peer(self) -> tuple[socket.socket, int]:
        listening = socket.socket()
        self.addCleanup(listening.close)
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        return listening, listening.getsockname()[1]

    async def upstream(self) -> tuple[Protocol, socket.socket]:
        """
        A connection of the mirror's to an upstream, and upstream's end of it.
        """
        listening, port = self.peer()
        endpoints = UpstreamEndpoints(reactor, BrowserLikePolicyForHTTPS(), 5.0, LOOPBACK)
        uri = URI.fromBytes(f"http://127.0.0.1:{port}/".encode())
        protocol = await endpoints.endpointForURI(uri).connect(Factory.forProtocol(Protocol))
        assert isinstance(protocol, Protocol)
        self.addCleanup(cast(ITCPTransport, protocol.transport).abortConnection)
        far, _ = listening.accept()
        self.addCleanup(far.close)
        far.settimeout(5)
        return protocol, far

    async def test_upstreamRequestLeavesAtOnce(self) -> None:
        protocol, far = await self.upstream()
        assert protocol.transport is not None
        protocol.transport.writeSequence([b"GET / HTTP/1.1\r\n", b"\r\n"])
        protocol.transport.write(b"more")
        self.assertEqual(receive(far, 22), b"GET / HTTP/1.1\r\n\r\nmore")

    async def test_answerLeavesAtOnce(self) -> None:
        """
        A client's answer is on its socket while the resource that made it
        still runs, before the reactor's turn ends.
        """
        seen: list[bytes] = []
        client = socket.socket()
        self.addCleanup(client.close)

        class Early(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> bytes | int:
                request.setHeader("Content-Length", "5")
                request.write(b"early")
                client.settimeout(5)
                seen.append(receive(client, 5, until=b"early"))
                request.finish()
                return NOT_DONE_YET

        site = MirrorSite(Early(), MirrorMetrics(reactor, process=False), AccessLog("off"), timeout=5, reactor=reactor)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted types it ServerFactory[_ProtoWithFactory] only
        self.addCleanup(port.stopListening)
        address = port.getHost()
        assert isinstance(address, IPv4Address)
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", address.port))
        done = Deferred[None]()

        def ask() -> None:
            try:
                client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            except BlockingIOError:
                reactor.callLater(0.01, ask)
                return
            reactor.callLater(0.01, wait)

        def wait() -> None:
            if seen:
                done.callback(None)
            else:
                reactor.callLater(0.01, wait)

        reactor.callLater(0, ask)
        await done
        self.assertTrue(seen[0].startswith(b"HTTP/1.1 200 OK\r\n"), seen[0])
        self.assertTrue(seen[0].endswith(b"\r\n\r\nearly"), seen[0])

    async def test_restKeptInOrder(self) -> None:
        """
        What the socket does not take at once is buffered, and whatever is
        written after it goes after it: the peer gets every byte in order.
        """
        protocol, far = await self.upstream()
        big = os.urandom(16 * 2**20)  # more than a loopback socket takes at once
        assert protocol.transport is not None
        protocol.transport.write(big)
        protocol.transport.writeSequence([b"and", b" "])
        protocol.transport.write(b"then")
        protocol.transport.loseConnection()
        got = await deferToThread(receiveAll, far)
        self.assertEqual(len(got), len(big) + 8)
        self.assertTrue(got == big + b"and then")

    async def test_gatheredInOrder(self) -> None:
        """
        What is written while gathering, in writes or in sequences (of any
        bytes-like, as Twisted takes them), goes out in one send at the end,
        in the order written, and after whatever was written before it.
        """
        protocol, far = await self.upstream()
        assert protocol.transport is not None
        transport = protocol.transport
        transport.write(b"before ")
        with gathered(transport):
            transport.write(b"one ")
            transport.write(b"two ")
            transport.writeSequence([b"three ", cast(bytes, bytearray(b"four "))])
            self.assertEqual(receive(far, 7), b"before ", "nothing gathered has gone yet")
        transport.write(b"after")
        transport.loseConnection()
        self.assertEqual(await deferToThread(receiveAll, far), b"one two three four after")

    async def test_pullProducerAskedForMore(self) -> None:
        """
        A pull producer is asked for more as the buffer drains; written
        through, its writes would leave nothing to drain and it would never
        be asked again.
        """
        protocol, far = await self.upstream()
        assert protocol.transport is not None
        assert isinstance(protocol.transport, FileDescriptor)
        transport = protocol.transport

        @implementer(IPullProducer)
        class Pieces:
            left = 5

            def resumeProducing(self) -> None:
                self.left -= 1
                transport.write(b"piece")
                if self.left == 0:
                    transport.unregisterProducer()
                    transport.loseConnection()

            def stopProducing(self) -> None:
                pass

        transport.registerProducer(Pieces(), False)
        self.assertEqual(await deferToThread(receiveAll, far), b"piece" * 5)

    async def test_lostConnection(self) -> None:
        """
        A write to a connection the peer has reset raises nothing; the
        reactor finds the connection lost, as it would have.
        """
        lost = Deferred[None]()

        class Noting(Protocol):
            def connectionLost(self, reason: Failure = connectionDone) -> None:
                lost.callback(None)

        listening, port = self.peer()
        endpoints = UpstreamEndpoints(reactor, BrowserLikePolicyForHTTPS(), 5.0, LOOPBACK)
        uri = URI.fromBytes(f"http://127.0.0.1:{port}/".encode())
        protocol = await endpoints.endpointForURI(uri).connect(Factory.forProtocol(Noting))
        assert isinstance(protocol, Noting)
        assert protocol.transport is not None
        far, _ = listening.accept()
        far.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        far.close()  # a reset
        for _ in range(3):
            protocol.transport.write(b"x" * 65536)
        await lost


def receive(s: socket.socket, size: int, until: bytes | None = None) -> bytes:
    """
    At least C{size} bytes from a socket (up to C{until}, if given), or
    what came before it timed out.
    """
    got = b""
    try:
        while len(got) < size or (until is not None and not got.endswith(until)):
            data = s.recv(65536)
            if not data:
                break
            got += data
    except (TimeoutError, BlockingIOError):
        pass
    return got


def receiveAll(s: socket.socket) -> bytes:
    """
    Everything from a socket until its peer closes it.
    """
    pieces = []
    while data := s.recv(1 << 20):
        pieces.append(data)
    return b"".join(pieces)
