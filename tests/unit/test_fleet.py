"""
The fleet's uploads and its word on the store's health, with a stand-in
bucket and tree (tests/e2e/test_fleet.py drives real nodes and a real S3
API server).
"""

import hashlib
import os
import tempfile
from typing import Any, BinaryIO, cast

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tailmirror.base._layout import FileKey, mirrorPath, parseFilePath
from tailmirror.files import FileTree
from tailmirror.files._fleet import RETRY_FIRST, UPLOADS_AT_ONCE, Fleet
from tailmirror.files._tree import OpenFile

from ..harness import Threads


class _Bucket:
    conditional = True

    def __init__(self) -> None:
        self.failures = 0
        self.uploaded: dict[str, bytes] = {}

    def key(self, parts: tuple[str, ...]) -> str:
        return "/".join(parts)

    def upload(self, key: str, f: BinaryIO, size: int, replace: bool = False) -> bool:
        if self.failures:
            self.failures -= 1
            raise OSError("the store is down")
        self.uploaded[key] = f.read()
        return True

    def release(self, sha: str) -> None:
        pass


class _Tree:
    """
    A tree that has every file, each the same bytes.
    """

    def __init__(self) -> None:
        self.path = os.path.join(tempfile.mkdtemp(), "file")
        with open(self.path, "wb") as f:
            f.write(b"bytes")

    def openFile(self, key: FileKey) -> OpenFile:
        return OpenFile(os.open(self.path, os.O_RDONLY), 5)

    def has(self, key: FileKey) -> bool:
        return True


def keyOf(n: int) -> FileKey:
    sha = hashlib.sha256(b"%d" % n).hexdigest()
    key = parseFilePath(("/" + mirrorPath(f"f-{n}.tar.gz", "", {"sha256": sha})).encode())
    assert key is not None
    return key


class FleetTests(SynchronousTestCase):
    def fleet(self, runInThread: Any) -> tuple[Fleet, _Bucket, Clock]:
        bucket, clock = _Bucket(), Clock()
        fleet = Fleet(cast(Any, bucket), clock, runInThread)
        fleet.attach(cast(FileTree, _Tree()))
        return fleet, bucket, clock

    def test_uploadsCapped(self) -> None:
        """
        Kept files are put a few at once, the rest waiting their turn: the
        store's threads stay free for a waiting client's lookups.
        """
        threads = Threads(held=("send",))
        fleet, bucket, _ = self.fleet(threads)
        for n in range(UPLOADS_AT_ONCE + 3):
            fleet.fileKept(keyOf(n), 5, 0.0)
        self.assertEqual(len(threads.waiting), UPLOADS_AT_ONCE)
        while threads.waiting:
            threads.release()
        self.assertEqual((len(bucket.uploaded), fleet.pending, fleet.put), (UPLOADS_AT_ONCE + 3, 0, UPLOADS_AT_ONCE + 3))

    def test_retriedUntilPut(self) -> None:
        """
        A failed put is retried, waiting longer each time, until it goes;
        the store is then healthy again.
        """
        fleet, bucket, clock = self.fleet(maybeDeferred)
        bucket.failures = 3
        fleet.fileKept(keyOf(1), 5, 0.0)
        self.assertEqual((fleet.failing, fleet.pending, fleet.failedPuts), ("OSError: the store is down", 1, 1))
        clock.advance(RETRY_FIRST)
        clock.advance(RETRY_FIRST * 2)
        self.assertEqual((fleet.failedPuts, bucket.uploaded), (3, {}))
        clock.advance(RETRY_FIRST * 4)
        self.assertEqual((fleet.failing, fleet.pending, fleet.put), (None, 0, 1))
        self.assertEqual(list(bucket.uploaded.values()), [b"bytes"])

    def test_anyCallThatWorksHeals(self) -> None:
        """
        Once a call to the store works again (a lease let go, a page kept),
        the store is healthy again: not only after a cold file's put.
        """
        fleet, _, _ = self.fleet(maybeDeferred)
        fleet.failed("the store is down")
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(fleet._call(lambda: 7))), 7)
        self.assertIsNone(fleet.failing)
