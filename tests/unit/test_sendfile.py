"""
Warm files go to a plain TCP client by the kernel's C{sendfile}, over real
sockets on 127.0.0.1: whole, in ranges, as C{HEAD}; to a client that stops
reading, the descriptor held and the idle timer running; from a download
a client joins; and to a TLS client by the other path, the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import tempfile
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorSSL
from twisted.internet.protocol import ClientCreator, Protocol, connectionDone
from twisted.internet.ssl import PrivateCertificate, optionsForClientTLS, Certificate
from twisted.internet.task import deferLater
from twisted.internet.tcp import Connection
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tailmirror.web._passwords import newToken
from tailmirror._mirror import Settings
from tailmirror._service import MirrorService
from tailmirror.base._layout import FileKey, mirrorPath, parseFilePath
from tailmirror.base import _sockets
from tailmirror.web import _stream

from ..certs import Authority
from ..fakeindex import FakeFile, FakeIndex, FakeProject, sdist
from ..harness import filePath, startMirror

MB = 2**20


class _Client(Protocol):
    """
    Sends one raw request and keeps all it receives; with C{stopAfter},
    stops reading once it has that many bytes, until told to go on.
    """

    def __init__(self, request: bytes, stopAfter: int | None = None) -> None:
        self.request = request
        self.stopAfter = stopAfter
        self.received = b""
        self.stopped: Deferred[None] = Deferred()
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        if self.stopAfter is not None:
            # A fixed receive buffer: left to grow, loopback takes in tens of
            # megabytes while the client reads nothing.
            assert isinstance(self.transport, Connection)
            self.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.stopAfter is not None and len(self.received) >= self.stopAfter and not self.stopped.called:
            assert self.transport is not None  # first: mypy-zope narrows to a class only from a non-optional interface
            assert isinstance(self.transport, Connection)
            self.transport.pauseProducing()
            self.stopped.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback(self.received)


def _request(path: str, *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: mirror", "Connection: close", *headers, "", ""]
    return "\r\n".join(lines).encode()


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status.split()[1]), headers, body


def _dechunked(body: bytes) -> bytes:
    """
    A chunked body's bytes; it fails if the framing is wrong.
    """
    out = b""
    while True:
        size, _, body = body.partition(b"\r\n")
        length = int(size.split(b";")[0], 16)
        if length == 0:
            return out
        out, body = out + body[:length], body[length:]
        assert body[:2] == b"\r\n", "a chunk ends with CRLF"
        body = body[2:]


class _Unsized(Resource):
    """
    An upstream whose page gives no file's size, and that sends the file
    without a length, in pieces a little apart.
    """

    isLeaf = True
    filename = "foo-1.0.tar.gz"

    def __init__(self, content: bytes) -> None:
        super().__init__()
        self.content = content

    def render_GET(self, request: Any) -> Any:
        if request.path == b"/simple/foo/":
            request.setHeader("Content-Type", "application/vnd.pypi.simple.v1+json")
            sha = hashlib.sha256(self.content).hexdigest()
            entry = {"filename": self.filename, "url": f"../../files/{self.filename}", "hashes": {"sha256": sha}}
            return json.dumps({"meta": {"api-version": "1.0"}, "name": "foo", "files": [entry]}).encode()
        pieces = [self.content[i : i + MB] for i in range(0, len(self.content), MB)]

        def next() -> None:
            if request._disconnected:
                return
            if pieces:
                request.write(pieces.pop(0))
                reactor.callLater(0.05, next)
            else:
                request.finish()

        next()
        return NOT_DONE_YET


class SendfileTests(TestCase):
    """
    A real mirror listening on 127.0.0.1, a fake upstream beside it.
    """

    def setUp(self) -> None:
        self.calls = 0
        real = _stream.sendfile

        def counting(*args: Any) -> int:
            self.calls += 1
            return real(*args)

        self.patch(_stream, "sendfile", counting)

    def mirror(self, *files: FakeFile, **settings: Any) -> tuple[MirrorService, str]:
        index = FakeIndex([FakeProject("foo", list(files))])
        upstream = reactor.listenTCP(0, Site(index), interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted types it ServerFactory[_ProtoWithFactory] only
        self.addCleanup(upstream.stopListening)
        address = upstream.getHost()
        assert isinstance(address, IPv4Address)
        return startMirror(self, Settings(f"http://127.0.0.1:{address.port}/simple/", tempfile.mkdtemp(), **settings))

    async def fetch(self, base: str, raw: bytes, stopAfter: int | None = None) -> _Client:
        client = _Client(raw, stopAfter)
        await ClientCreator(reactor, lambda: client).connectTCP("127.0.0.1", int(base.rsplit(":", 1)[1]))
        return client

    async def warm(self, mirror: MirrorService, base: str, f: FakeFile) -> FileKey:
        """
        Fetch a file once, and wait until the tree has it.
        """
        client = await self.fetch(base, _request(filePath(f)))
        status, _, body = _parse(await client.done)
        self.assertEqual((status, hashlib.sha256(body).hexdigest()), (200, f.sha256))
        key = parseFilePath(filePath(f).encode())
        assert key is not None
        for _ in range(500):
            if mirror.tree.has(key):
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertTrue(mirror.tree.has(key))
        return key

    async def test_wholeRangesAndHead(self) -> None:
        """
        A warm file is sent by sendfile: whole, a range, a suffix range;
        C{HEAD} sends its headers alone.
        """
        f = sdist("foo", "1.0", size=3 * MB + 17)
        mirror, base = self.mirror(f)
        await self.warm(mirror, base, f)
        self.calls = 0
        status, headers, body = _parse(await (await self.fetch(base, _request(filePath(f)))).done)
        self.assertEqual((status, headers["tailmirror-cache"], int(headers["content-length"])), (200, "hit", f.size))
        self.assertEqual(hashlib.sha256(body).hexdigest(), f.sha256)
        self.assertGreater(self.calls, 0)
        status, headers, body = _parse(await (await self.fetch(base, _request(filePath(f), "Range: bytes=100-2000099"))).done)
        self.assertEqual((status, headers["content-range"]), (206, f"bytes 100-2000099/{f.size}"))
        self.assertEqual(body, f.content[100:2000100])
        status, _, body = _parse(await (await self.fetch(base, _request(filePath(f), "Range: bytes=-5000"))).done)
        self.assertEqual((status, body), (206, f.content[-5000:]))
        calls = self.calls
        status, headers, body = _parse(await (await self.fetch(base, _request(filePath(f), method="HEAD"))).done)
        self.assertEqual((status, int(headers["content-length"]), body), (200, f.size, b""))
        self.assertEqual(self.calls, calls)

    async def test_headersLeaveWithFirstBytes(self) -> None:
        """
        An answer's headers go to the socket in one write with its first
        bytes: a page's headers and body together; a warm file's headers
        marked as having more to follow at once (C{MSG_MORE}), so the
        kernel sends them with the file's first bytes.  Twisted wrote them
        apart, a segment of headers alone and the client woken for it.
        """
        f = sdist("foo", "1.0", size=MB)
        mirror, base = self.mirror(f)
        await self.warm(mirror, base, f)
        sent: list[tuple[bytes, int]] = []
        real = _sockets.untilConcludes

        def recording(call: Any, *args: Any) -> Any:
            if getattr(call, "__name__", "") == "send":
                sent.append((bytes(args[0]), args[1] if len(args) > 1 else 0))
            return real(call, *args)

        self.patch(_sockets, "untilConcludes", recording)
        status, headers, body = _parse(await (await self.fetch(base, _request(filePath(f)))).done)
        self.assertEqual((status, hashlib.sha256(body).hexdigest()), (200, f.sha256))
        [(head, flags)] = sent
        self.assertTrue(head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n"), head)
        self.assertEqual(flags, socket.MSG_MORE)
        del sent[:]
        status, _, body = _parse(await (await self.fetch(base, _request("/simple/foo/", "Accept: application/vnd.pypi.simple.v1+json"))).done)
        self.assertEqual(status, 200)
        [(whole, flags)] = sent
        self.assertEqual((whole.partition(b"\r\n\r\n")[2], flags), (body, 0))
        self.assertIn(f.filename.encode(), body)

    async def test_fullSocketWaitsForRoom(self) -> None:
        """
        A socket that takes part of what C{sendfile} offers is full: the
        rest goes once the reactor says it has room, not by asking again at
        once for the little its reader freed meanwhile.  Waiting, and
        waiting again, costs no empty write to the socket.
        """
        f = sdist("foo", "1.0", size=3 * MB)
        mirror, base = self.mirror(f)
        await self.warm(mirror, base, f)
        real = _stream.sendfile
        turn = {"partial": False, "again": 0, "calls": 0}

        def partial(out: int, fd: int, offset: int, count: int) -> int:
            if turn["partial"]:
                turn["again"] += 1
            turn["calls"] += 1
            sent = real(out, fd, offset, max(1, count // 2))  # as a full socket takes a part
            turn["partial"] = True
            reactor.callLater(0, turn.__setitem__, "partial", False)  # the reactor's next turn
            return sent

        empty = []
        writeSomeData = Connection.writeSomeData

        def writing(connection: Connection, data: bytes) -> Any:
            if not data:
                empty.append(connection)
            return writeSomeData(connection, data)

        self.patch(_stream, "sendfile", partial)
        self.patch(Connection, "writeSomeData", writing)
        status, _, body = _parse(await (await self.fetch(base, _request(filePath(f)))).done)
        self.assertEqual((status, hashlib.sha256(body).hexdigest()), (200, f.sha256))
        self.assertGreater(turn["calls"], 10)
        self.assertEqual(turn["again"], 0)
        self.assertLessEqual(len(empty), 1, "one at most: Twisted's, closing the connection")

    async def test_slowClient(self) -> None:
        """
        A client that stops reading holds the file's descriptor (a use the
        budget sees) and costs a wait, not a loop; once it has taken nothing
        for the client timeout, it is let go, and the descriptor with it.
        """
        f = sdist("foo", "1.0", size=8 * MB)
        mirror, base = self.mirror(f, clientTimeout=0.5)
        await self.warm(mirror, base, f)
        self.calls = 0
        client = await self.fetch(base, _request(filePath(f)), stopAfter=MB)
        await client.stopped
        await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(len(mirror.tree.budget.inUse), 1)
        calls = self.calls
        await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(self.calls, calls, "no sendfile while the socket takes nothing")
        for _ in range(300):
            if not mirror.tree.budget.inUse:
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(len(mirror.tree.budget.inUse), 0, "let go, and the descriptor with it")
        assert client.transport is not None
        assert isinstance(client.transport, Connection)
        client.transport.resumeProducing()  # it finds the connection gone
        self.assertLess(len(await client.done), f.size)

    async def test_slowClientReadsOn(self) -> None:
        """
        A client that stops reading for a while, and reads on within the
        client timeout, gets every byte.
        """
        f = sdist("foo", "1.0", size=8 * MB)
        mirror, base = self.mirror(f)
        await self.warm(mirror, base, f)
        client = await self.fetch(base, _request(filePath(f)), stopAfter=MB)
        await client.stopped
        await deferLater(reactor, 0.3, lambda: None)
        assert client.transport is not None
        assert isinstance(client.transport, Connection)
        client.transport.resumeProducing()
        status, _, body = _parse(await client.done)
        self.assertEqual((status, hashlib.sha256(body).hexdigest()), (200, f.sha256))

    async def test_joinedDownload(self) -> None:
        """
        A cold file a client is sent as its download arrives goes by
        sendfile too, from the download's own copy, every byte verified.
        """
        f = sdist("foo", "1.0", size=6 * MB)
        mirror, base = self.mirror(f)
        status, headers, body = _parse(await (await self.fetch(base, _request(filePath(f)))).done)
        self.assertEqual((status, headers["tailmirror-cache"]), (200, "miss"))
        self.assertEqual(hashlib.sha256(body).hexdigest(), f.sha256)
        self.assertGreater(self.calls, 0)

    async def test_lengthNotKnown(self) -> None:
        """
        A cold file whose length neither its page nor upstream tells goes to
        the client in chunks as it arrives, their framing written by the
        mirror: not by sendfile, which would leave it out.
        """
        content = os.urandom(3 * MB)
        upstream = reactor.listenTCP(0, Site(_Unsized(content)), interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted types it ServerFactory[_ProtoWithFactory] only
        self.addCleanup(upstream.stopListening)
        address = upstream.getHost()
        assert isinstance(address, IPv4Address)
        _, base = startMirror(self, Settings(f"http://127.0.0.1:{address.port}/simple/", tempfile.mkdtemp()))
        path = "/" + mirrorPath(_Unsized.filename, "", {"sha256": hashlib.sha256(content).hexdigest()})
        status, headers, body = _parse(await (await self.fetch(base, _request(path))).done)
        self.assertEqual((status, headers.get("transfer-encoding")), (200, "chunked"))
        self.assertEqual(_dechunked(body), content)
        self.assertEqual(self.calls, 0)

    async def test_tlsClientOtherPath(self) -> None:
        """
        A client over TLS gets the same bytes, read and written by the
        mirror: sendfile cannot encrypt.
        """
        f = sdist("foo", "1.0", size=3 * MB)
        mirror, base = self.mirror(f)
        await self.warm(mirror, base, f)
        authority = Authority.make()
        options = PrivateCertificate.loadPEM(authority.serverPEM("localhost")).options()
        port = cast(IReactorSSL, reactor).listenSSL(0, mirror.site, options, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        address = port.getHost()
        assert isinstance(address, IPv4Address)
        client = _Client(_request(filePath(f)))
        trust = optionsForClientTLS("localhost", Certificate.loadPEM(authority.pem))
        self.calls = 0
        await ClientCreator(reactor, lambda: client).connectSSL("127.0.0.1", address.port, trust)
        status, _, body = _parse(await client.done)
        self.assertEqual((status, hashlib.sha256(body).hexdigest()), (200, f.sha256))
        self.assertEqual(self.calls, 0)



class SendfileBehindAuthTests(SendfileTests):
    """
    The same, behind C{--auth}: every request carries a bearer token, and
    slow clients, ranges and TLS behave as without.
    """

    def setUp(self) -> None:
        super().setUp()
        token, line = newToken("reader")
        tokens = os.path.join(tempfile.mkdtemp(), "tokens")
        with open(tokens, "w") as f:
            f.write(line + "\n")
        self.auth = (("tokens", tokens),)
        plainRequest = _request

        def request(path: str, *headers: str, method: str = "GET") -> bytes:
            return plainRequest(path, f"Authorization: Bearer {token}", *headers, method=method)

        self.patch(sys.modules[__name__], "_request", request)

    def mirror(self, *files: FakeFile, **settings: Any) -> tuple[MirrorService, str]:
        mirror, base = super().mirror(*files, auth=self.auth, **settings)
        return mirror, base

    async def test_noCredentialsNoBytes(self) -> None:
        """
        Without the token, a warm file is a 401, and not a byte of it.
        """
        f = sdist("foo", "1.0", size=3 * MB)
        mirror, base = self.mirror(f)
        await self.warm(mirror, base, f)
        client = await self.fetch(base, ("\r\n".join([f"GET {filePath(f)} HTTP/1.1", "Host: m", "Connection: close", "", ""])).encode())
        status, headers, body = _parse(await client.done)
        self.assertEqual(status, 401)
        self.assertNotIn(f.content[:64], body)


def test_sendfileOnThisPlatform() -> None:
    """
    The kernel's sendfile is there, or the tests above say nothing.
    """
    assert hasattr(os, "sendfile")
