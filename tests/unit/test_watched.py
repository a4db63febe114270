"""
Tests for L{WatchedFile}: a small file read again when it changes.
"""

import os
import tempfile

from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from tailmirror.base import LOOK_EVERY, WatchedFile

from ..harness import CapturedLog


class WatchedFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = os.path.join(tempfile.mkdtemp(), "file")
        self.write(b"1")
        self.clock = Clock()
        self.parsed: list[bytes] = []
        self.watched = WatchedFile(self.path, self.parse, self.clock, "the test file")
        self.watched.load()

    def parse(self, data: bytes) -> int:
        self.parsed.append(data)
        return int(data)

    def write(self, data: bytes) -> None:
        with open(self.path, "wb") as f:
            f.write(data)
        os.utime(self.path, ns=(len(data), len(data) * 10**9 + os.stat(self.path).st_mtime_ns % 7))

    def look(self) -> int:
        self.clock.advance(LOOK_EVERY)
        value: int = self.watched.current()
        return value

    def test_brokenReadOnce(self) -> None:
        """
        A broken version of the file is read once, not again at every
        look; the last good reading holds, and the failure is said once
        and stays told until a good version is read.
        """
        log = CapturedLog(self)
        self.write(b"not a number")
        for _ in range(3):
            self.assertEqual(self.look(), 1)
        self.assertEqual(self.parsed, [b"1", b"not a number"])
        self.assertIsNotNone(self.watched.failing)
        self.assertEqual(len(log.formats(LogLevel.error)), 1)
        self.write(b"22")
        self.assertEqual((self.look(), self.watched.failing), (22, None))

    def test_goneAndBack(self) -> None:
        """
        A file that goes away keeps its last reading; back, even unchanged,
        it is read again and no longer failing.
        """
        os.rename(self.path, self.path + ".away")
        self.assertEqual(self.look(), 1)
        self.assertIsNotNone(self.watched.failing)
        os.rename(self.path + ".away", self.path)
        self.assertEqual((self.look(), self.watched.failing), (1, None))
        self.assertEqual(len(self.parsed), 2)
