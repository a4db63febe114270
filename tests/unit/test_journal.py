"""
Tests for the append-only journal of project pages.
"""

import errno
import json
import os
import tempfile
import threading

from typing import Any

import treq
from hypothesis import given, settings, strategies as st
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from tailmirror._mirror import Settings
from tailmirror.base import StoreError
from tailmirror.pages._journal import Journal, Pending
from tailmirror.pages._keeper import JournalKeeper

from ..fakeindex import FakeIndex, FakeProject, sdist
from ..harness import CapturedLog, Threads, startMirror


def page(n: int) -> bytes:
    return json.dumps({"meta": {}, "name": "p", "files": [], "n": n, "text": "\u00e9\u2603"}, ensure_ascii=False).encode()


class JournalTests(SynchronousTestCase):
    """
    Tests for L{Journal}.
    """

    def setUp(self) -> None:
        self.path = os.path.join(tempfile.mkdtemp(), "journal.jsonl")

    def reopen(self) -> tuple[Journal, dict]:
        journal = Journal(self.path)
        index = journal.open()
        self.addCleanup(journal.close)
        return journal, index

    def reopenDamaged(self, tail: bytes, report: str) -> tuple[Journal, dict, int]:
        """
        Write project a's page, add C{tail} to the journal as a crash or a
        bad disk might, and reopen it: one warning, saying C{report}.  The
        journal's size before the tail comes last.
        """
        journal, _ = self.reopen()
        journal.commit(journal.pageRecord("a", None, 1.0, page(1)))
        journal.close()
        whole = os.path.getsize(self.path)
        with open(self.path, "ab") as f:
            f.write(tail)
        log = CapturedLog(self)
        journal, index = self.reopen()
        reports = log.formats(LogLevel.warn)
        self.assertEqual(len(reports), 1)
        self.assertIn(report, reports[0])
        return journal, index, whole

    def test_replay(self) -> None:
        """
        Replay gives each project's latest page, its ETag and the time it
        was last known fresh; gone projects are forgotten.
        """
        journal, index = self.reopen()
        self.assertEqual(index, {})
        journal.commit(journal.pageRecord("a", '"e1"', 10.0, page(1)))
        second = journal.commit(journal.pageRecord("a", '"e2"', 20.0, page(2)))
        journal.commit(journal.freshRecord(second, 30.0))
        journal.commit(journal.pageRecord("b", None, 40.0, page(3)))
        journal.commit(journal.pageRecord("c", None, 50.0, page(4)))
        journal.commit(journal.goneRecord("c", 60.0))
        journal.close()
        journal, index = self.reopen()
        self.assertEqual(sorted(index), ["a", "b"])
        self.assertEqual((index["a"].etag, index["a"].fetched), ('"e2"', 30.0))
        self.assertEqual(journal.readPage(index["a"])["n"], 2)
        self.assertEqual(journal.readPage(index["b"])["n"], 3)
        self.assertEqual(journal.readPage(index["b"])["text"], "\u00e9\u2603")

    def test_everyLineIsJSON(self) -> None:
        """
        Each record is one JSON value on one line.
        """
        journal, _ = self.reopen()
        journal.commit(journal.pageRecord("a", '"x\\"y\n"', 1.0, page(1)))
        journal.commit(journal.goneRecord("a", 2.0))
        with open(self.path, "rb") as f:
            lines = f.read().split(b"\n")
        self.assertEqual(lines[-1], b"")
        records = [json.loads(line) for line in lines[:-1]]
        self.assertEqual(records[0][0], {"name": "a", "fetched": 1.0, "etag": '"x\\"y\n"'})
        self.assertEqual(records[1], [{"name": "a", "fetched": 2.0, "gone": True}])

    def test_tornLastRecord(self) -> None:
        """
        A last record cut short by a crash is cut off at replay, and the
        journal goes on appending after the last whole record.
        """
        torn = b'[{"name":"b","fetched":2.0},{"meta":{},"fi'
        journal, index, whole = self.reopenDamaged(torn, "torn last record")
        self.assertEqual(sorted(index), ["a"])
        self.assertEqual(os.path.getsize(self.path), whole)
        journal.commit(journal.pageRecord("c", None, 3.0, page(3)))
        journal.close()
        journal, index = self.reopen()
        self.assertEqual(sorted(index), ["a", "c"])
        self.assertEqual(journal.readPage(index["c"])["n"], 3)

    def test_damagedRecordSkipped(self) -> None:
        """
        An unreadable record in the middle is skipped and reported, and
        never fatal.
        """
        journal, _, _ = self.reopenDamaged(b"\x00\x00garbage\n", "unreadable record")
        journal.commit(journal.pageRecord("b", None, 2.0, page(2)))
        journal.close()
        journal, index = self.reopen()
        self.assertEqual(sorted(index), ["a", "b"])

    def test_failedWriteLeavesNoTrace(self) -> None:
        """
        A write that fails part way (disk full) leaves the journal as it
        was, and the index too; writing resumes when space returns.
        """
        journal, _ = self.reopen()
        journal.commit(journal.pageRecord("a", None, 1.0, page(1)))
        size, live = os.path.getsize(self.path), journal.live
        write = os.write

        def full(fd: int, data: bytes) -> int:
            if len(data) > 10:
                return write(fd, data[:10])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        self.patch(os, "write", full)
        self.assertRaises(OSError, journal.commit, journal.pageRecord("b", None, 2.0, page(2)))
        self.assertRaises(OSError, journal.commit, journal.goneRecord("a", 2.0))
        self.assertEqual((os.path.getsize(self.path), journal.size), (size, size))
        self.assertEqual((sorted(journal.index), journal.live), (["a"], live))
        self.patch(os, "write", write)
        journal.commit(journal.pageRecord("b", None, 3.0, page(3)))
        journal.close()
        journal, index = self.reopen()
        self.assertEqual(sorted(index), ["a", "b"])
        self.assertEqual(journal.readPage(index["b"])["n"], 3)

    @settings(deadline=None, max_examples=50)
    @given(st.lists(st.tuples(st.sampled_from("abc"), st.text(max_size=30), st.booleans()), max_size=12))
    def test_replayMatchesWrites(self, ops: list) -> None:
        """
        Whatever is appended, replay gives back the latest page of each
        project, byte for byte.
        """
        path = os.path.join(tempfile.mkdtemp(), "j.jsonl")
        journal = Journal(path)
        journal.open()
        latest: dict[str, tuple[str, Any]] = {}
        for i, (name, text, gone) in enumerate(ops):
            if gone:
                journal.commit(journal.goneRecord(name, float(i)))
                latest.pop(name, None)
            else:
                body = json.dumps({"t": text, "files": []}, ensure_ascii=False).encode()
                journal.commit(journal.pageRecord(name, text, float(i), body))
                latest[name] = (text, json.loads(body))
        journal.close()
        journal = Journal(path)
        index = journal.open()
        self.assertEqual(sorted(index), sorted(latest))
        for name, (etag, body) in latest.items():
            self.assertEqual(index[name].etag, etag)
            self.assertEqual(journal.readPage(index[name]), body)
        journal.close()


def pageOf(name: str, n: int, pad: int = 0) -> bytes:
    return json.dumps({"meta": {}, "name": name, "files": [], "n": n, "pad": "x" * pad}).encode()


class Held:
    """
    A stand-in for a thread pool that runs work at once but hands its
    result over only when told to, so that a test can act meanwhile.
    """

    def __init__(self) -> None:
        self.waiting: list[tuple[Deferred, Any]] = []

    def __call__(self, f: Any, *args: Any) -> Deferred:
        d: Deferred = Deferred()
        try:
            result = f(*args)
        except BaseException:
            result = Failure()
        self.waiting.append((d, result))
        return d

    def release(self) -> None:
        while self.waiting:
            d, result = self.waiting.pop(0)
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)


def applyOps(journal: Journal, model: dict, ops: list, clock: list) -> None:
    """
    Apply C{(name, n, kind)} operations to a journal and to a model of it.
    """
    for name, n, kind in ops:
        clock[0] += 1.0
        if kind == "page":
            journal.commit(journal.pageRecord(name, f'"{n}"', clock[0], pageOf(name, n, pad=n % 50)))
            model[name] = (n, clock[0])
        elif kind == "gone":
            journal.commit(journal.goneRecord(name, clock[0]))
            model.pop(name, None)
        elif name in model:
            journal.commit(journal.freshRecord(journal.index[name], clock[0]))
            model[name] = (model[name][0], clock[0])


ops = st.lists(
    st.tuples(st.sampled_from("abcde"), st.integers(0, 1000), st.sampled_from(["page", "page", "gone", "fresh"])),
    max_size=25,
)


class CompactionTests(SynchronousTestCase):
    """
    Compaction keeps the live records and only them, atomically.
    """

    def setUp(self) -> None:
        self.path = os.path.join(tempfile.mkdtemp(), "journal.jsonl")
        self.journal = Journal(self.path, compactAbove=0)
        self.journal.open()
        self.addCleanup(self.journal.close)

    def assertMatches(self, journal: Journal, model: dict) -> None:
        self.assertEqual(sorted(journal.index), sorted(model))
        for name, (n, fetched) in model.items():
            entry = journal.index[name]
            self.assertEqual(journal.readPage(entry)["n"], n)
            self.assertEqual((entry.etag, entry.fetched), (f'"{n}"', fetched))

    def test_compaction(self) -> None:
        """
        Only the latest page of each project that is not gone is kept, and
        the journal replays to the same state.
        """
        model: dict = {}
        clock = [0.0]
        applyOps(self.journal, model, [(n, i, "page") for i in range(20) for n in "abc"], clock)
        applyOps(self.journal, model, [("c", 0, "gone"), ("a", 0, "fresh")], clock)
        self.assertTrue(self.journal.wantsCompaction())
        before = self.journal.size
        sizes = self.successResultOf(Deferred.fromCoroutine(self.journal.compact(maybeDeferred)))
        self.assertEqual(sizes, (before, self.journal.size))
        self.assertEqual(self.journal.size, os.path.getsize(self.path))
        self.assertEqual(self.journal.size, self.journal.live)
        self.assertLess(self.journal.size * 10, before)
        self.assertFalse(self.journal.wantsCompaction())
        self.assertFalse(os.path.exists(self.path + ".compact"))
        self.assertMatches(self.journal, model)
        self.journal.close()
        self.journal = Journal(self.path)
        self.journal.open()
        self.assertMatches(self.journal, model)

    @settings(deadline=None, max_examples=60)
    @given(ops, ops, ops)
    def test_appendedMeanwhile(self, first: list, meanwhile: list, after: list) -> None:
        """
        Records appended while a compaction copies the live ones are carried
        over: nothing is lost, in memory or on replay; pages read through
        entries taken before the compaction still read right.
        """
        path = os.path.join(tempfile.mkdtemp(), "journal.jsonl")
        journal = Journal(path, compactAbove=0)
        journal.open()
        model: dict = {}
        clock = [0.0]
        applyOps(journal, model, first, clock)
        oldEntries = {name: (e, journal.readPage(e)) for name, e in journal.index.items()}
        held = Held()
        d = Deferred.fromCoroutine(journal.compact(held))
        applyOps(journal, model, meanwhile, clock)
        held.release()
        self.successResultOf(d)
        applyOps(journal, model, after, clock)
        self.assertMatches(journal, model)
        for entry, page in oldEntries.values():
            self.assertEqual(journal.readPage(entry), page)
        journal.close()
        journal = Journal(path)
        journal.open()
        self.assertMatches(journal, model)
        journal.close()

    def test_failureLeavesTheJournal(self) -> None:
        """
        A compaction that cannot write (disk full) leaves the journal as it
        was and nothing beside it; appending goes on.
        """
        model: dict = {}
        clock = [0.0]
        applyOps(self.journal, model, [(n, i, "page") for i in range(5) for n in "ab"], clock)
        with open(self.path, "rb") as f:
            before = f.read()
        write = os.write

        def full(fd: int, data: Any) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        self.patch(os, "write", full)
        failure = self.failureResultOf(Deferred.fromCoroutine(self.journal.compact(maybeDeferred)))
        failure.trap(OSError)
        self.patch(os, "write", write)
        self.assertFalse(self.journal.compacting)
        self.assertFalse(os.path.exists(self.path + ".compact"))
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), before)
        applyOps(self.journal, model, [("c", 1, "page")], clock)
        self.assertMatches(self.journal, model)

    def test_unfinishedRemoved(self) -> None:
        """
        A compaction a crash left unfinished is removed at the next start;
        the journal is as it was.
        """
        applyOps(self.journal, {}, [("a", 1, "page")], [0.0])
        self.journal.close()
        with open(self.path + ".compact", "wb") as f:
            f.write(b'[{"name":"a","fetched":1.0},{"half')
        journal = Journal(self.path)
        self.assertEqual(sorted(journal.open()), ["a"])
        self.addCleanup(journal.close)
        self.assertFalse(os.path.exists(self.path + ".compact"))
        self.assertEqual(journal.readPage(journal.index["a"])["n"], 1)

    def test_oneAtATime(self) -> None:
        """
        A second compaction while one runs is refused.
        """
        held = Held()
        Deferred.fromCoroutine(self.journal.compact(held))
        self.assertTrue(self.journal.compacting)
        self.assertFalse(self.journal.wantsCompaction())
        self.failureResultOf(Deferred.fromCoroutine(self.journal.compact(held))).trap(RuntimeError)
        held.release()
        self.assertFalse(self.journal.compacting)

    def test_wantsCompaction(self) -> None:
        """
        Compaction is wanted once dead records outweigh live ones in a
        journal past the threshold.
        """
        self.journal.compactAbove = 2000
        clock = [0.0]
        applyOps(self.journal, {}, [("a", 1, "page")], clock)
        for i in range(100):
            if self.journal.size > 2000 and self.journal.size > 2 * self.journal.live:
                break
            self.assertFalse(self.journal.wantsCompaction())
            applyOps(self.journal, {}, [("b", i, "page")], clock)
        self.assertTrue(self.journal.wantsCompaction())


class KeeperTests(SynchronousTestCase):
    """
    The pages' records are written off the reactor thread, one at a time
    and in order, and settled (the index changed) only once written.
    """

    def setUp(self) -> None:
        self.path = os.path.join(tempfile.mkdtemp(), "journal.jsonl")
        self.journal = Journal(self.path, compactAbove=1 << 40)
        self.journal.open()
        self.addCleanup(self.journal.close)
        self.writes = Threads(held=("write",))
        self.clock = Clock()
        self.keeper = JournalKeeper(self.journal, self.clock, maybeDeferred, self.writes)

    def write(self, pending: Pending[Any]) -> Deferred[Any]:
        return Deferred.fromCoroutine(self.keeper.write(pending))

    def test_inOrderOneAtATime(self) -> None:
        """
        Records given at once are written one at a time, in order, each
        settled as it is written: nothing is in the index, or the file,
        before its write.
        """
        done = [
            self.write(self.journal.pageRecord("a", '"1"', 1.0, pageOf("a", 1))),
            self.write(self.journal.pageRecord("b", '"1"', 2.0, pageOf("b", 1))),
            self.write(self.journal.goneRecord("a", 3.0)),
            self.write(self.journal.pageRecord("c", '"1"', 4.0, pageOf("c", 1))),
        ]
        seen = []
        while self.writes.waiting:
            self.assertEqual(len(self.writes.waiting), 1, "one write at a time")
            seen.append(sorted(self.journal.index))
            self.writes.release()
        self.assertEqual(seen, [[], ["a"], ["a", "b"], ["b"]])
        entries = [self.successResultOf(d) for d in done]
        self.assertEqual(self.journal.readPage(entries[3])["n"], 1)
        self.assertEqual(sorted(self.journal.index), ["b", "c"])
        self.assertEqual(self.journal.size, os.path.getsize(self.path))
        replayed = Journal(self.path)
        self.addCleanup(replayed.close)
        self.assertEqual(sorted(replayed.open()), ["b", "c"])
        self.assertTrue(self.clock.getDelayedCalls(), "a sync is due")

    def test_failedWrite(self) -> None:
        """
        A record that cannot be written is a clear error and changes
        nothing; the records after it are written.
        """
        self.writes.held = set()
        self.successResultOf(self.write(self.journal.pageRecord("a", None, 1.0, pageOf("a", 1))))
        size = self.journal.size
        write = os.write

        def full(fd: int, data: Any) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        self.patch(os, "write", full)
        log = CapturedLog(self)
        failure = self.failureResultOf(self.write(self.journal.pageRecord("b", None, 2.0, pageOf("b", 1))))
        failure.trap(StoreError)
        self.assertEqual(failure.value.status, 507)
        self.assertIn("cannot write the journal", log.formats(LogLevel.error)[0])
        self.assertEqual((sorted(self.journal.index), self.journal.size, os.path.getsize(self.path)), (["a"], size, size))
        self.patch(os, "write", write)
        self.successResultOf(self.write(self.journal.pageRecord("b", None, 3.0, pageOf("b", 2))))
        self.assertEqual(sorted(self.journal.index), ["a", "b"])

    def test_compactionWaitsForAWrite(self) -> None:
        """
        A compaction carries the records appended meanwhile over only once
        the record being written is written whole; none is lost.
        """
        self.writes.held = set()
        model: dict = {}
        for i in range(6):
            for name in "ab":
                self.successResultOf(self.write(self.journal.pageRecord(name, f'"{i}"', float(i), pageOf(name, i))))
                model[name] = i
        self.writes.held = {"write"}
        written = self.write(self.journal.pageRecord("c", '"9"', 9.0, pageOf("c", 9)))
        compacted = self.keeper.compact()
        self.assertTrue(self.journal.compacting, "waiting for the write")
        self.writes.release()
        self.successResultOf(written)
        self.successResultOf(compacted)
        self.assertFalse(self.journal.compacting)
        self.assertEqual(self.journal.compactions, 1)
        model["c"] = 9
        for journal in (self.journal, Journal(self.path)):
            if journal is not self.journal:
                journal.open()
                self.addCleanup(journal.close)
            self.assertEqual({name: journal.readPage(e)["n"] for name, e in journal.index.items()}, model)
        self.assertEqual(self.journal.size, os.path.getsize(self.path))


    def test_compactionBetweenWriteAndSettling(self) -> None:
        """
        A compaction that begins while a record is written but not yet
        settled in the index takes stock only once it is: the record is
        neither left out of the new journal nor misplaced in it.
        """
        writes = Held()  # writes at once, hands over the result when told
        keeper = JournalKeeper(self.journal, self.clock, maybeDeferred, writes)
        for i in range(4):
            d = Deferred.fromCoroutine(keeper.write(self.journal.pageRecord("a", f'"{i}"', float(i), pageOf("a", i))))
            writes.release()
            self.successResultOf(d)
        written = Deferred.fromCoroutine(keeper.write(self.journal.pageRecord("c", '"9"', 9.0, pageOf("c", 9))))
        self.assertEqual(self.journal.size, os.path.getsize(self.path), "written, not settled")
        self.assertNotIn("c", self.journal.index)
        compacted = keeper.compact()
        writes.release()
        self.successResultOf(written)
        self.successResultOf(compacted)
        self.assertEqual(self.journal.compactions, 1)
        self.assertEqual(self.journal.size, os.path.getsize(self.path))
        for journal in (self.journal, Journal(self.path)):
            if journal is not self.journal:
                journal.open()
                self.addCleanup(journal.close)
            self.assertEqual({name: journal.readPage(e)["n"] for name, e in journal.index.items()}, {"a": 3, "c": 9})


class JournalThreadTests(TestCase):
    """
    In a running mirror, pages' records are written in the journal's own
    thread, never on the reactor's.
    """

    async def test_writtenInItsOwnThread(self) -> None:
        threads: list[str] = []
        write = Journal.write

        def recording(journal: Journal, line: bytes) -> Any:
            threads.append(threading.current_thread().name)
            return write(journal, line)

        self.patch(Journal, "write", recording)
        index = FakeIndex([FakeProject("foo", [sdist("foo", "1.0")])])
        upstream = reactor.listenTCP(0, Site(index), interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted types it ServerFactory[_ProtoWithFactory] only
        self.addCleanup(upstream.stopListening)
        address = upstream.getHost()
        assert isinstance(address, IPv4Address)
        mirror, base = startMirror(self, Settings(f"http://127.0.0.1:{address.port}/simple/", tempfile.mkdtemp()))
        response = await treq.get(f"{base}/simple/foo/", pool=HTTPConnectionPool(reactor, persistent=False))
        self.assertEqual(response.code, 200)
        self.assertIn(b"foo-1.0.tar.gz", await response.content())
        self.assertEqual(len(threads), 1)
        self.assertIn("journal", threads[0])
        self.assertNotEqual(threads[0], threading.main_thread().name)
