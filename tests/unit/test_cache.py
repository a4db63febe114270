"""
A bounded cache: files evicted least recently used first, past
C{--max-size} or under C{--min-free}, by the mirror's own record of each
file's last use, which survives a restart; downloads that cannot fit are
refused before any byte; files in use are kept, and a file evicted while
it is read is still read whole.  And the events the mirror fires on the
way.
"""

from __future__ import annotations

import hashlib
import os
import socket
from typing import Any

import tempfile

import treq
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import ClientCreator, Protocol, connectionDone
from twisted.internet.tcp import Connection
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from tailmirror.files._budget import Histogram, Limits, formatSize
from tailmirror.files._walk import DIRECTORY, charge
from tailmirror.files._walker import usedBytes
from tailmirror.base._layout import FileKey, parseFilePath
from tailmirror._service import Settings

from ..fakeindex import FakeFile, FakeIndex, FakeProject, sdist
from ..harness import CapturedLog, Harness, Space, filePath, startMirror, treeFiles

SIZE = 20_000
#: A file big enough to be streamed to its first client as it arrives.
BIG = 1_200_000


class MeasuredSpace(Space):
    """
    A filesystem of C{total} bytes whose free space is what others leave
    (C{free} of it) less what the cache directory really holds on disk.
    """

    def __init__(self, total: int, free: int) -> None:
        super().__init__(total, free)
        self.cacheDir = ""

    def __call__(self, path: str) -> tuple[int, int]:
        held = 0
        for root, dirs, names in os.walk(self.cacheDir):
            for name in names + dirs:
                held += os.lstat(os.path.join(root, name)).st_blocks * 512
        return self.total, self.free - held


def heldFiles(h: Harness) -> list[str]:
    """
    The names of the files in the tree.
    """
    return sorted(os.path.basename(p) for p in treeFiles(h))


class EvictionTests(SynchronousTestCase):
    """
    Past C{--max-size}, least recently used files go first.
    """

    def setUp(self) -> None:
        self.files = [sdist("foo", f"1.{i}", size=SIZE) for i in range(6)]
        self.h = Harness([FakeProject("foo", list(self.files))])

    def fetch(self, f: FakeFile) -> None:
        """
        Get a file through the mirror, a couple of minutes after the last.
        """
        self.h.clock.advance(120)
        answer = self.h.get(filePath(f))
        self.assertEqual(answer.body, f.content)

    def charge(self) -> int:
        """
        What one of the test's files costs the budget, by the tree.
        """
        path = os.path.join(self.h.cacheDir, treeFiles(self.h)[0])
        return charge(usedBytes(os.stat(path)), "x.tar.gz")

    def limitTo(self, files: float) -> int:
        """
        Make the cache hold as much as the journal and C{files} files.
        """
        limit = self.h.pages._journal.size + int(files * self.charge())
        self.h.tree.budget.limits.maxSize = limit
        return limit

    def test_leastRecentlyUsedFirst(self) -> None:
        """
        Four files kept, the first served again since: a fifth that passes
        the limit evicts the second and third (the least recently used),
        down to the limit less its headroom; the first, served lately, stays.
        """
        for f in self.files[:4]:
            self.fetch(f)
        self.fetch(self.files[0])
        limit = self.limitTo(4)
        self.fetch(self.files[4])
        self.assertEqual(heldFiles(self.h), sorted(f.filename for f in (self.files[0], self.files[3], self.files[4])))
        budget = self.h.tree.budget
        self.assertLessEqual(budget.used, limit - limit // 20)
        evicted = [key.filename for key, _ in self.h.events.named("fileEvicted")]
        self.assertEqual(evicted, [self.files[1].filename, self.files[2].filename])
        self.assertEqual((budget.evictedFiles, budget.histogram.files), (2, 3))
        # The evicted file comes back from upstream when asked for again.
        self.fetch(self.files[1])
        self.assertIn(self.files[1].filename, heldFiles(self.h))

    def test_busyHourTakesSeveralRounds(self) -> None:
        """
        An hour holding more files than one eviction keeps in memory: it
        goes again until the cache is within its limit, still oldest first.
        """
        from tailmirror.files import _walk

        self.patch(_walk, "CANDIDATES", 1)
        for f in self.files[:5]:
            self.h.clock.advance(2)  # all within one hour
            self.assertEqual(self.h.get(filePath(f)).body, f.content)
        limit = self.limitTo(2.5)
        self.h.tree.budget.check()
        self.assertEqual(heldFiles(self.h), sorted(f.filename for f in self.files[3:5]))
        self.assertLessEqual(self.h.tree.budget.used, limit)
        evicted = [key.filename for key, _ in self.h.events.named("fileEvicted")]
        self.assertEqual(evicted, [f.filename for f in self.files[:3]])

    def test_orderSurvivesRestart(self) -> None:
        """
        The record of last use is kept with the files: a restarted mirror
        counts them again and evicts in the same order.
        """
        for f in self.files[:4]:
            self.fetch(f)
        self.fetch(self.files[0])
        self.fetch(self.files[1])
        self.h = self.h.restart()
        budget = self.h.tree.budget
        self.assertTrue(budget.ready)
        self.assertEqual(budget.histogram.files, 4)
        self.assertEqual(budget.histogram.bytes, 4 * self.charge())
        self.limitTo(4)
        self.fetch(self.files[4])
        self.assertEqual(
            heldFiles(self.h),
            sorted(f.filename for f in (self.files[0], self.files[1], self.files[4])),
        )

    def test_touchedAtMostOnceAMinute(self) -> None:
        """
        A file served again within a minute of its last record is not
        recorded again; after it, it is.
        """
        self.fetch(self.files[0])
        path = os.path.join(self.h.cacheDir, treeFiles(self.h)[0])
        kept = os.stat(path).st_mtime
        self.assertEqual(kept, self.h.clock.seconds())
        self.h.clock.advance(30)
        self.h.get(filePath(self.files[0]))
        self.assertEqual(os.stat(path).st_mtime, kept)
        self.h.clock.advance(31)
        self.h.get(filePath(self.files[0]))
        self.assertEqual(os.stat(path).st_mtime, self.h.clock.seconds())

    def test_inUseKeptWhileOthersCanGo(self) -> None:
        """
        The oldest file, open for sending, is passed over while others can
        go; once only it can free enough, it goes too, and what was opened
        before is still read whole from the unlinked file.
        """
        for f in self.files[:3]:
            self.fetch(f)
        oldest = parseFilePath(filePath(self.files[0]).encode())
        assert oldest is not None
        sending = self.h.tree.openFile(oldest)
        assert sending is not None
        self.limitTo(3.5)
        self.fetch(self.files[3])
        self.assertIn(self.files[0].filename, heldFiles(self.h))
        self.assertNotIn(self.files[1].filename, heldFiles(self.h))
        self.limitTo(1.5)
        self.fetch(self.files[4])
        self.assertEqual(heldFiles(self.h), [self.files[4].filename])
        self.assertEqual(os.pread(sending.fd, SIZE + 1, 0), self.files[0].content)
        sending.close()


class _SlowClient(Protocol):
    """
    Asks for a path, takes the first megabyte of the answer, and stops
    reading until told to go on.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.received = b""
        self.paused: Deferred[None] = Deferred()
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        # A fixed receive buffer: left to grow, a loopback socket's takes in
        # tens of megabytes while the client reads nothing, and the mirror
        # would be done sending before the file is evicted.
        # Two steps: mypy-zope narrows to a class only from a non-optional interface.
        assert self.transport is not None
        assert isinstance(self.transport, Connection)
        self.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.transport.write(f"GET {self.path} HTTP/1.1\r\nHost: mirror\r\nConnection: close\r\n\r\n".encode())

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= 2**20 and not self.paused.called:
            assert self.transport is not None
            assert isinstance(self.transport, Connection)
            self.transport.pauseProducing()
            self.paused.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback(self.received)


class EvictedMidSendTests(TestCase):
    """
    Over real sockets: a file evicted while a slow client reads it.
    """

    async def test_arrivesWhole(self) -> None:
        """
        The client stops reading a warm 16 MB file after a megabyte; the
        file is evicted meanwhile; once the client reads on, it receives
        every byte, and the tree no longer has the file.
        """
        big = sdist("foo", "9.0", size=16 * 2**20)
        index = FakeIndex([FakeProject("foo", [big])])
        upstream = reactor.listenTCP(0, Site(index), interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted types it ServerFactory[_ProtoWithFactory] only
        self.addCleanup(upstream.stopListening)
        address = upstream.getHost()
        assert isinstance(address, IPv4Address)
        settings = Settings(f"http://127.0.0.1:{address.port}/simple/", tempfile.mkdtemp())
        mirror, base = startMirror(self, settings)
        pool = HTTPConnectionPool(reactor, persistent=False)
        warm = await treq.get(base + filePath(big), pool=pool)
        self.assertEqual(hashlib.sha256(await warm.content()).hexdigest(), big.sha256)
        # Its client has it whole once it is verified, maybe before it is in
        # the tree: until then, a second client would follow the download.
        key = parseFilePath(filePath(big).encode())
        for _ in range(500):
            if mirror.tree.has(key):  # type: ignore[arg-type]
                break
            await deferLater(reactor, 0.01, lambda: None)
        client = _SlowClient(filePath(big))
        await ClientCreator(reactor, lambda: client).connectTCP("127.0.0.1", int(base.rsplit(":", 1)[1]))
        await client.paused
        await deferLater(reactor, 0.2, lambda: None)
        budget = mirror.tree.budget
        await budget.counted.wait()
        self.assertEqual(len(budget.inUse), 1, "the file is being sent")
        budget.limits.maxSize = 4096
        budget.check()
        if budget.evicting is not None:
            await budget.evicting
        self.assertEqual(budget.evictedFiles, 1)
        self.assertIsNone(mirror.tree.openFile(key))  # type: ignore[arg-type]
        assert client.transport is not None
        assert isinstance(client.transport, Connection)
        client.transport.resumeProducing()
        raw = await client.done
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertIn(b"200 OK", head.split(b"\r\n")[0])
        self.assertEqual(len(body), big.size)
        self.assertEqual(hashlib.sha256(body).hexdigest(), big.sha256)


class RefusalTests(SynchronousTestCase):
    """
    A download that cannot fit, even after eviction, is refused before any
    byte: 507 with one line.
    """

    def test_largerThanMaxSize(self) -> None:
        """
        A file larger than the whole cache may hold: 507 at once, upstream
        never asked for it.
        """
        big = sdist("foo", "2.0", size=2 * 2**20)
        h = Harness([FakeProject("foo", [big])], maxSize=2**20)
        answer = h.get(filePath(big))
        self.assertEqual(answer.code, 507)
        self.assertEqual(answer.header("content-type"), "text/plain; charset=utf-8")
        self.assertIn(b"--max-size", answer.body)
        self.assertEqual(answer.body.count(b"\n"), 1)
        self.assertEqual(h.index.requests[f"/files/{big.filename}"], 0)
        self.assertEqual(treeFiles(h, "+tmp"), [])
        (refused,) = h.events.named("fileRefused")
        self.assertEqual(refused[1], 507)

    def test_sizeOnlyFromUpstream(self) -> None:
        """
        A page that gives no size: the upstream's Content-Length decides,
        before any byte reaches the client.
        """
        big = sdist("foo", "2.0", size=2 * 2**20, extra={"size": None})
        h = Harness([FakeProject("foo", [big])], maxSize=2**20)
        answer = h.get(filePath(big))
        self.assertEqual(answer.code, 507)
        self.assertIn(b"cannot fit", answer.body)
        self.assertEqual(treeFiles(h), [])

    def test_minFreeEvenAfterEviction(self) -> None:
        """
        A filesystem that, with every cached file evicted, would still have
        too little free beyond --min-free: 507, naming --min-free.
        """
        big = sdist("foo", "2.0", size=8 * 2**20)
        h = Harness([FakeProject("foo", [big])], space=Space(total=100 * 2**20, free=10 * 2**20))
        answer = h.get(filePath(big))
        self.assertEqual(answer.code, 507)
        self.assertIn(b"--min-free", answer.body)

    def test_fitsAfterEviction(self) -> None:
        """
        A file that fits once older files go: they go, and it is kept.
        """
        files = [sdist("foo", f"1.{i}", size=SIZE) for i in range(3)]
        big = sdist("foo", "2.0", size=3 * SIZE)
        h = Harness([FakeProject("foo", [*files, big])])
        for f in files:
            h.clock.advance(120)
            h.get(filePath(f))
        h.tree.budget.limits.maxSize = h.pages._journal.size + 5 * (SIZE // 4096 + 1) * 4096 + 5 * DIRECTORY
        self.assertEqual(h.get(filePath(big)).body, big.content)
        self.assertIn(big.filename, heldFiles(h))
        self.assertNotIn(files[0].filename, heldFiles(h))


class MinFreeTests(SynchronousTestCase):
    """
    Under C{--min-free}, least recently used files go until the free space
    is back over it with headroom.
    """

    def test_evictsUntilFree(self) -> None:
        """
        Others fill the filesystem: at the next check the oldest files go
        until --min-free (with its headroom) is free again, newest kept.
        """
        files = [sdist("foo", f"1.{i}", size=SIZE) for i in range(5)]
        space = MeasuredSpace(total=10 * 2**20, free=10 * 2**20)
        h = Harness([FakeProject("foo", files)], space=space, minFree=2**20)
        space.cacheDir = h.cacheDir
        for f in files:
            h.clock.advance(120)
            h.get(filePath(f))
        self.assertEqual(len(treeFiles(h)), 5)
        # Something else takes all but 1 MiB and two files' worth.
        _, free = space(h.cacheDir)
        space.free -= free - 2**20 + 50_000
        h.clock.advance(30)
        total, free = space(h.cacheDir)
        self.assertGreaterEqual(free, 2**20 + 2**20 // 20)
        held = heldFiles(h)
        self.assertEqual(held, sorted(f.filename for f in files[len(files) - len(held):]))
        self.assertLess(len(held), 5)

    def test_percentOfFilesystem(self) -> None:
        """
        C{--min-free} as a share of the filesystem.
        """
        self.assertEqual(Limits(None, 0.05).minFreeBytes(1000), 50)
        self.assertEqual(Limits(None, 4096).minFreeBytes(1000), 4096)
        self.assertEqual(Limits(2**30, 0.05).describe(), "max size 1.0 GiB, min free 5%")


class InventoryTests(SynchronousTestCase):
    """
    The tree is counted in a thread at start, while the mirror answers.
    """

    def test_answersWhileCounting(self) -> None:
        """
        With the inventory still running, pages and files are served; its
        count, when it comes, adds what was kept meanwhile only once.
        """
        files = [sdist("foo", f"1.{i}", size=SIZE) for i in range(3)]
        h = Harness([FakeProject("foo", files)])
        for f in files[:2]:
            h.get(filePath(f))
        queued: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []

        def later(f: Any, *args: Any) -> Deferred[Any]:
            if f.__name__ != "inventory":
                return maybeDeferred(f, *args)
            d: Deferred[Any] = Deferred()
            queued.append((d, f, args))
            return d

        h.mirror.close()
        restarted = Harness(cacheDir=h.cacheDir, index=h.index, clock=h.clock)
        restarted.tree.budget._run = later
        restarted.tree.budget.ready = False
        restarted.tree.budget.histogram = Histogram()
        restarted.tree.budget.start()
        self.assertEqual(restarted.get(filePath(files[0])).body, files[0].content)
        self.assertEqual(restarted.get(filePath(files[2])).body, files[2].content)
        self.assertFalse(restarted.tree.budget.ready)
        (d, f, args), = queued
        maybeDeferred(f, *args).chainDeferred(d)
        budget = restarted.tree.budget
        self.assertTrue(budget.ready)
        self.assertEqual(budget.histogram.files, 3)

    def test_stopGivesUp(self) -> None:
        """
        Once the mirror stops, walks of the tree in threads give up at once
        (a count of a big tree would otherwise hold the process's exit
        until it ends), and nothing is evicted.
        """
        import threading

        from tailmirror.files._budget import inventory
        from tailmirror.files._walk import Stopped, sweep

        h = Harness([FakeProject("foo", [sdist("foo", "1.0")])])
        h.get(filePath(h.index.projects["foo"].files[0]))
        stop = threading.Event()
        self.assertEqual(inventory(h.tree.root, set(), stop).files, 1)
        h.mirror.close()
        self.assertTrue(h.tree.budget._stop.is_set())
        self.assertRaises(Stopped, inventory, h.tree.root, set(), h.tree.budget._stop)
        self.assertEqual(sweep(h.tree.root, float("inf"), float("inf"), 1 << 30, set(), h.tree.budget._stop), [])
        self.assertEqual(len(treeFiles(h)), 1)

    def test_walkInChild(self) -> None:
        """
        The walk in a child process sees what the walk here sees, odd file
        names included; a child that cannot run gives way to a walk here;
        a set stop gives the walk up.
        """
        import sys
        import threading

        from tailmirror.files import _walk

        h = Harness([FakeProject("foo", [sdist("foo", f"1.{i}") for i in range(3)])])
        for f in h.index.projects["foo"].files:
            h.get(filePath(f))
        odd = os.path.join(h.tree.root, "root", "pypi", "+f", "abc", "0123456789abc", "b\tad\xe9-1.0.tar.gz")
        os.makedirs(os.path.dirname(odd))
        open(odd, "wb").close()
        here = sorted(_walk.walkHere(h.tree.root))
        self.assertEqual(len(here), 4)
        self.assertEqual(sorted(_walk.walkInChild(h.tree.root)), here)
        stop = threading.Event()
        stop.set()
        self.assertRaises(_walk.Stopped, list, _walk.walkInChild(h.tree.root, stop))
        self.patch(sys, "executable", "/nonexistent/python")
        self.assertEqual(sorted(_walk.walkInChild(h.tree.root)), here)
        self.patch(sys, "executable", "/bin/false")
        self.assertEqual(sorted(_walk.walkInChild(h.tree.root)), here)

    def test_sizes(self) -> None:
        self.assertEqual(formatSize(512), "512 B")
        self.assertEqual(formatSize(1536), "1.5 KiB")


class EventTests(SynchronousTestCase):
    """
    The moments of a mirror's work reach its subscribers.
    """

    def setUp(self) -> None:
        self.file = sdist("foo", "1.0", size=BIG)
        self.h = Harness([FakeProject("foo", [self.file])], ttl=100, revalidateFloor=0)

    def test_pages(self) -> None:
        """
        Refreshed on first sight, fresh within the TTL, revalidated after
        it (and when a client asks), stale when upstream fails; failed with
        no copy.  Upstream's answers are counted by outcome.
        """
        h = self.h
        h.get("/simple/foo/")
        h.get("/simple/foo/")
        h.clock.advance(200)
        h.get("/simple/foo/")
        h.get("/simple/foo/", {"Cache-Control": "max-age=0"})
        h.index.failWith = 503
        h.get("/simple/foo/", {"Cache-Control": "max-age=0"})
        h.get("/simple/bar/")
        outcomes = [o for _, o in h.events.named("pageServed")]
        self.assertEqual(outcomes, ["refreshed", "fresh", "revalidated", "revalidated", "stale", "failed"])
        upstream = [(kind, outcome) for kind, outcome, *_ in h.events.named("upstreamRequest")]
        self.assertEqual(
            upstream,
            [("page", "ok"), ("page", "unchanged"), ("page", "unchanged"), ("page", "failed"), ("page", "failed")],
        )
        sizes = [size for _, _, _, size, _ in h.events.named("upstreamRequest")]
        self.assertGreater(sizes[0], 0)
        self.assertEqual(sizes[1:3], [0, 0])
        reasons = [reason for *_, reason in h.events.named("upstreamRequest")]
        self.assertEqual(reasons[:3], [None, None, None])
        self.assertIn("503", reasons[3])
        # Each refresh is told once, with why upstream failed.
        refreshes = h.events.named("pageRefreshed")
        self.assertEqual(
            [(name, outcome) for name, outcome, _ in refreshes],
            [("foo", "new"), ("foo", "unchanged"), ("foo", "unchanged"), ("foo", "stale"), ("bar", "failed")],
        )
        self.assertIn("503", refreshes[3][2])
        h.index.failWith = None
        h.get("/simple/nonesuch/")
        self.assertEqual(h.events.named("upstreamRequest")[-1][:2], ("page", "missing"))
        self.assertEqual(h.events.named("pageRefreshed")[-1], ("nonesuch", "missing", None))

    def test_files(self) -> None:
        """
        A cold file: its download starts, it is served as it arrives and
        kept; then every hit from the tree is seen.
        """
        h = self.h
        h.index.holdFiles = True
        d = h.start("GET", filePath(self.file))
        h.flush()
        (request, content), = h.index.heldFiles
        request.write(content)
        request.finish()
        self.assertEqual(h.finish(d).body, self.file.content)
        h.get(filePath(self.file))
        h.get(filePath(self.file), {"Range": "bytes=0-9"})
        names = [e[0] for e in h.events.seen if e[0] not in ("pageServed", "pageRefreshed")]
        self.assertEqual(
            names,
            [
                "fileWanted", "upstreamRequest", "downloadStarted", "fileServed", "upstreamRequest", "fileKept",
                "fileWanted", "fileServed", "fileWanted", "fileServed",
            ],
        )
        key = parseFilePath(filePath(self.file).encode())
        served = h.events.named("fileServed")
        self.assertEqual(served, [(key, BIG, False), (key, BIG, True), (key, 10, True)])
        self.assertEqual(h.events.named("downloadStarted"), [(key, BIG)])
        self.assertEqual(h.events.named("fileKept")[0][:2], (key, BIG))
        fileRequest = h.events.named("upstreamRequest")[-1]
        self.assertEqual((fileRequest[0], fileRequest[1], fileRequest[3]), ("file", "ok", BIG))

    def test_refused(self) -> None:
        """
        A corrupt download is refused, with its status and reason.
        """
        self.h.index.corrupt.add(self.file.filename)
        self.h.get(filePath(self.file))
        ((key, status, reason, size, seconds),) = self.h.events.named("fileRefused")
        self.assertEqual((key.filename, status, size), (self.file.filename, 502, BIG))
        self.assertIn("corrupt", reason)

    def test_subscriberFailureLogged(self) -> None:
        """
        A subscriber that raises is logged; serving goes on.
        """
        log = CapturedLog(self)

        class Broken:
            def __getattr__(self, name: str) -> Any:
                raise RuntimeError("broken subscriber")

        self.h.mirror.events.subscribe(Broken())  # type: ignore[arg-type]
        self.assertEqual(self.h.get(filePath(self.file)).body, self.file.content)
        self.assertTrue(log.failures())
        self.assertTrue(self.flushLoggedErrors(RuntimeError))


class LinkLookupTests(SynchronousTestCase):
    """
    A cold file's link is found without reading its page back from the
    journal for every lookup.
    """

    def test_pageReadOncePerChange(self) -> None:
        """
        After a restart, the first cold file of a project reads its page
        back for its own link, the second for all of them; the next ones
        read nothing.
        """
        files = [sdist("foo", f"1.{i}") for i in range(4)]
        h = Harness([FakeProject("foo", files)])
        h.get("/simple/foo/")
        h = h.restart()
        reads: list[str] = []
        journal = h.pages._journal
        readPage = journal.readPage

        def counted(entry: Any) -> Any:
            reads.append(entry.name)
            return readPage(entry)

        journal.readPage = counted  # type: ignore[method-assign]
        for f in files:
            self.assertEqual(h.get(filePath(f)).body, f.content)
        self.assertEqual(reads, ["foo", "foo"])
        self.assertEqual(h.index.requests["/simple/foo/"], 1)

    def test_metadataLink(self) -> None:
        """
        The index serves core metadata links where the page has them, and
        none where it has not.
        """
        withMeta = sdist("foo", "1.0", metadata=b"Metadata-Version: 2.1\nName: foo\n")
        without = sdist("foo", "1.1")
        h = Harness([FakeProject("foo", [withMeta, without])])
        self.assertEqual(h.get(filePath(withMeta, metadata=True)).body, withMeta.metadata)
        self.assertEqual(h.get(filePath(without, metadata=True)).code, 404)
        key = FileKey(("abc", "0123456789abc"), "foo-1.0.tar.gz", False)
        self.assertEqual(h.get("/" + key.linkPath).code, 404)
