"""
Tests for the append-only journal of project pages.
"""

import json
import os
import tempfile

from hypothesis import given, settings, strategies as st
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from tailmirror._journal import Journal

from .harness import CapturedLog


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

    def test_replay(self) -> None:
        """
        Replay gives each project's latest page, its ETag and the time it
        was last known fresh; gone projects are forgotten.
        """
        journal, index = self.reopen()
        self.assertEqual(index, {})
        journal.appendPage("a", '"e1"', 10.0, page(1))
        second = journal.appendPage("a", '"e2"', 20.0, page(2))
        journal.appendFresh(second, 30.0)
        journal.appendPage("b", None, 40.0, page(3))
        journal.appendPage("c", None, 50.0, page(4))
        journal.appendGone("c", 60.0)
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
        journal.appendPage("a", '"x\\"y\n"', 1.0, page(1))
        journal.appendGone("a", 2.0)
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
        journal, _ = self.reopen()
        journal.appendPage("a", None, 1.0, page(1))
        journal.close()
        whole = os.path.getsize(self.path)
        with open(self.path, "ab") as f:
            f.write(b'[{"name":"b","fetched":2.0},{"meta":{},"fi')
        log = CapturedLog(self)
        journal, index = self.reopen()
        reports = log.formats(LogLevel.warn)
        self.assertEqual(len(reports), 1)
        self.assertIn("torn last record", reports[0])
        self.assertEqual(sorted(index), ["a"])
        self.assertEqual(os.path.getsize(self.path), whole)
        journal.appendPage("c", None, 3.0, page(3))
        journal.close()
        journal, index = self.reopen()
        self.assertEqual(sorted(index), ["a", "c"])
        self.assertEqual(journal.readPage(index["c"])["n"], 3)

    def test_damagedRecordSkipped(self) -> None:
        """
        An unreadable record in the middle is skipped and reported, and
        never fatal.
        """
        journal, _ = self.reopen()
        journal.appendPage("a", None, 1.0, page(1))
        journal.close()
        with open(self.path, "ab") as f:
            f.write(b"\x00\x00garbage\n")
        log = CapturedLog(self)
        journal, _ = self.reopen()
        reports = log.formats(LogLevel.warn)
        self.assertEqual(len(reports), 1)
        self.assertIn("unreadable record", reports[0])
        journal.appendPage("b", None, 2.0, page(2))
        journal.close()
        journal, index = self.reopen()
        self.assertEqual(sorted(index), ["a", "b"])

    def test_failedWriteLeavesNoTrace(self) -> None:
        """
        A write that fails (disk full) leaves the journal as it was.
        """
        journal, _ = self.reopen()
        journal.appendPage("a", None, 1.0, page(1))
        size = os.path.getsize(self.path)
        os.close(journal._fd)
        journal._fd = os.open(os.devnull, os.O_RDONLY)
        self.assertRaises(OSError, journal.appendPage, "b", None, 2.0, page(2))
        self.assertEqual(os.path.getsize(self.path), size)

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
        latest = {}
        for i, (name, text, gone) in enumerate(ops):
            if gone:
                journal.appendGone(name, float(i))
                latest.pop(name, None)
            else:
                body = json.dumps({"t": text, "files": []}, ensure_ascii=False).encode()
                journal.appendPage(name, text, float(i), body)
                latest[name] = (text, json.loads(body))
        journal.close()
        journal = Journal(path)
        index = journal.open()
        self.assertEqual(sorted(index), sorted(latest))
        for name, (etag, body) in latest.items():
            self.assertEqual(index[name].etag, etag)
            self.assertEqual(journal.readPage(index[name]), body)
        journal.close()
