"""
Package files: resolved from their project's page, downloaded once,
verified, streamed to every waiting client, and served from disk.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import maybeDeferred
from twisted.trial.unittest import SynchronousTestCase

from tailmirror.base._layout import FileKey, parseFilePath
from tailmirror.pages._links import projectsOf
from tailmirror.web._stream import parseRange

from ..fakeindex import FakeFile, FakeProject, generated, sdist
from ..harness import Answer, CapturedLog, Harness, Threads, filePath, finish, treeFiles


class PathTests(SynchronousTestCase):
    def test_sha256Path(self) -> None:
        key = parseFilePath(b"/root/pypi/+f/abc/0123456789abc/foo-1.0.tar.gz")
        self.assertEqual(key, FileKey(("abc", "0123456789abc"), "foo-1.0.tar.gz", False))
        assert key is not None
        self.assertEqual(key.linkPath, "root/pypi/+f/abc/0123456789abc/foo-1.0.tar.gz")
        self.assertEqual(key.etag, '"abc0123456789abc"')

    def test_escaped(self) -> None:
        """
        pip escapes the "+" of "+f".
        """
        self.assertEqual(
            parseFilePath(b"/root/pypi/%2Bf/abc/0123456789abc/foo-1.0.tar.gz"),
            parseFilePath(b"/root/pypi/+f/abc/0123456789abc/foo-1.0.tar.gz"),
        )
        self.assertIsNotNone(parseFilePath(b"/root/pypi/%2bf/abc/0123456789abc/foo-1.0.tar.gz"))

    def test_metadataAndQuoting(self) -> None:
        key = parseFilePath(b"/root/pypi/+f/_url/0123456789abcdef/a%2Bb-1.0-py3-none-any.whl.metadata")
        self.assertEqual(key, FileKey(("_url", "0123456789abcdef"), "a+b-1.0-py3-none-any.whl", True))
        assert key is not None
        self.assertEqual(key.parts[-1], "a+b-1.0-py3-none-any.whl.metadata")
        self.assertEqual(key.etag, '"_url0123456789abcdef.metadata"')

    def test_refused(self) -> None:
        for path in [
            b"/root/pypi/+f/abc/0123456789abc",
            b"/root/pypi/+f/ABC/0123456789abc/x.whl",
            b"/root/pypi/+f/abc/0123456789ab/x.whl",
            b"/root/pypi/+f/abc/0123456789abc/..",
            b"/root/pypi/+f/abc/0123456789abc/%2e%2e",
            b"/root/pypi/+f/abc/0123456789abc/a%2Fb",
            b"/root/pypi/+f/abc/0123456789abc/a%00b",
            b"/root/pypi/+f/abc/0123456789abc/.metadata",
            b"/root/pypi/+f/abc/0123456789abc/x.whl/more",
            b"/root/pypi/+f/_url/0123456789abcde/x.whl",
            b"/root/pypi/+f/abc/0123456789abc/%ff.whl",
            b"/root/other/+f/abc/0123456789abc/x.whl",
        ]:
            self.assertIsNone(parseFilePath(path), path)

    @given(st.binary(max_size=120))
    def test_anyPath(self, tail: bytes) -> None:
        """
        No path raises, and every accepted one stays inside its shard.
        """
        key = parseFilePath(b"/root/pypi/+f/abc/0123456789abc/" + tail)
        if key is not None:
            self.assertNotIn("/", key.parts[-1])
            self.assertNotIn(key.parts[-1], ("", ".", ".."))

    def test_projectsOf(self) -> None:
        self.assertEqual(projectsOf("Foo_Bar-1.0-py3-none-any.whl"), ["foo-bar"])
        self.assertEqual(projectsOf("foo-bar-1.0.tar.gz"), ["foo-bar", "foo"])
        self.assertEqual(projectsOf("zope.interface-5.0.zip"), ["zope-interface"])
        self.assertEqual(projectsOf("thing-1.0-py2.7.egg"), ["thing-1-0", "thing"])
        self.assertEqual(projectsOf("-.whl"), [])


class RangeTests(SynchronousTestCase):
    def test_ranges(self) -> None:
        self.assertIsNone(parseRange(None, 10))
        self.assertEqual(parseRange("bytes=0-0", 10), (0, 1))
        self.assertEqual(parseRange("bytes=2-5", 10), (2, 6))
        self.assertEqual(parseRange("bytes=2-", 10), (2, 10))
        self.assertEqual(parseRange("bytes=2-99", 10), (2, 10))
        self.assertEqual(parseRange("bytes=-3", 10), (7, 10))
        self.assertEqual(parseRange("bytes=-30", 10), (0, 10))
        self.assertIs(parseRange("bytes=10-", 10), False)
        self.assertIs(parseRange("bytes=-0", 10), False)
        self.assertIs(parseRange("bytes=-1", 0), False)
        # Ignored: several ranges, nonsense, another unit, last before first.
        for header in ("bytes=0-1,3-4", "bytes=x", "lines=1-2", "bytes=5-2", "bytes=-"):
            self.assertIsNone(parseRange(header, 10), header)


def project(*files: FakeFile, name: str = "foo") -> FakeProject:
    return FakeProject(name, list(files))


class ColdFileTests(SynchronousTestCase):
    """
    A file not in the tree yet.
    """

    def setUp(self) -> None:
        self.file = sdist("foo", "1.0", size=5000)
        self.h = Harness([project(self.file, sdist("foo", "1.1"))])

    def test_beforeItsPage(self) -> None:
        """
        A file asked for before its page: the page is fetched first, then
        the file, whose bytes are served, verified, and kept.
        """
        answer = self.h.get(filePath(self.file))
        self.assertEqual(answer.code, 200)
        self.assertEqual(answer.body, self.file.content)
        self.assertEqual(answer.length, 5000)
        self.assertEqual(answer.header("cache-control"), "public, max-age=31536000, immutable")
        self.assertEqual(answer.header("accept-ranges"), "bytes")
        self.assertEqual(answer.header("etag"), f'"{self.file.sha256[:16]}"')
        self.assertEqual(self.h.index.requests["/simple/foo/"], 1)
        self.assertEqual(self.h.index.requests["/files/foo-1.0.tar.gz"], 1)
        self.assertEqual(
            treeFiles(self.h),
            [f"+files/root/pypi/+f/{self.file.sha256[:3]}/{self.file.sha256[3:16]}/foo-1.0.tar.gz"],
        )
        self.assertEqual(treeFiles(self.h, "+tmp"), [])

    def test_warmAfterwards(self) -> None:
        """
        Once kept, a file is served from disk, upstream or no upstream.
        """
        self.h.get(filePath(self.file))
        self.h.index.failWith = 500
        h = self.h.restart()
        answer = h.get(filePath(self.file))
        self.assertEqual((answer.code, answer.body), (200, self.file.content))
        self.assertEqual(self.h.index.requests["/files/foo-1.0.tar.gz"], 1)

    def test_unknownFile(self) -> None:
        """
        A path no link on the page names is 404, whatever the upstream has,
        and nothing else is fetched.
        """
        other = sdist("foo", "9.9")
        wrongHash = filePath(self.file).replace(self.file.sha256[:3], "000", 1)
        for path in (filePath(other), wrongHash, "/root/pypi/+f/abc/0123456789abc/nothing-1.0.tar.gz"):
            self.assertEqual(self.h.get(path).code, 404, path)
        self.assertEqual([p for p in self.h.index.requests if p.startswith("/files/")], [])

    def test_notAdvertisedMetadata(self) -> None:
        self.assertEqual(self.h.get(filePath(self.file, metadata=True)).code, 404)

    def test_newFileRechecksPage(self) -> None:
        """
        A file newer than the kept page: the page is asked for again, once
        it is a little old, and the file is found.
        """
        self.h.get("/simple/foo/")
        new = sdist("foo", "2.0")
        self.h.index.projects["foo"].files.append(new)
        self.assertEqual(self.h.get(filePath(new)).code, 404)
        self.h.clock.advance(11)
        self.assertEqual(self.h.get(filePath(new)).body, new.content)
        self.assertEqual(self.h.index.requests["/simple/foo/"], 2)

    def test_postRefused(self) -> None:
        answer = self.h.get(filePath(self.file), method="POST")
        self.assertEqual(answer.code, 405)
        self.assertEqual(answer.header("allow"), "GET, HEAD")

    def test_coldHead(self) -> None:
        """
        HEAD of a cold file gives its headers, and the file is kept.
        """
        answer = self.h.get(filePath(self.file), method="HEAD")
        self.assertEqual((answer.code, answer.body), (200, b""))
        self.assertEqual(answer.header("content-length"), "5000")
        self.assertEqual(len(treeFiles(self.h)), 1)

    def test_coldRange(self) -> None:
        answer = self.h.get(filePath(self.file), {"Range": "bytes=-10"})
        self.assertEqual(answer.code, 206)
        self.assertEqual(answer.body, self.file.content[-10:])

    def test_coldIfNoneMatch(self) -> None:
        etag = f'"{self.file.sha256[:16]}"'
        answer = self.h.get(filePath(self.file), {"If-None-Match": etag})
        self.assertEqual(answer.code, 304)

    def test_upstreamMissingFile(self) -> None:
        """
        Upstream lists a file it does not have: 502, nothing kept.
        """
        self.h.index.projects["foo"].files.append(ghost := sdist("foo", "3.0"))
        self.h.index.content = lambda filename: None  # type: ignore[method-assign]
        answer = self.h.get(filePath(ghost))
        self.assertEqual(answer.code, 502)
        self.assertEqual(answer.body, b"upstream answered 404 for the file\n")
        self.assertEqual(treeFiles(self.h), [])

    def test_fileNeverAnswered(self) -> None:
        """
        Upstream takes the file request but never answers: 504 once the
        timeout passes, and the next request tries again.
        """
        self.h.get("/simple/foo/")
        self.h.index.hang = True
        d = self.h.start("GET", filePath(self.file))
        self.h.flush()
        self.assertNoResult(d)
        self.h.clock.advance(15)
        answer = self.h.finish(d)
        self.assertEqual((answer.code, answer.body), (504, b"upstream did not answer within 15 s\n"))
        self.h.index.hang = False
        self.assertEqual(self.h.get(filePath(self.file)).body, self.file.content)

    def test_fsyncedBeforeKept(self) -> None:
        """
        A file is on disk for good before it appears in the tree, and its
        name is on disk for good after.
        """
        synced: list[tuple[bool, bool]] = []
        fsync = os.fsync
        path = os.path.join(self.h.cacheDir, "+files", filePath(self.file).lstrip("/"))

        def recordingFsync(fd: int) -> None:
            fsync(fd)
            synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), os.path.exists(path)))

        self.patch(os, "fsync", recordingFsync)
        self.assertEqual(self.h.get(filePath(self.file)).code, 200)
        self.assertEqual(synced, [(False, False), (True, True)])
        self.assertTrue(os.path.exists(path))

    def test_upstreamDown(self) -> None:
        """
        Upstream refuses the page: 502, with why.
        """
        self.h.index.failWith = 503
        answer = self.h.get(filePath(self.file))
        self.assertEqual(answer.code, 502)
        self.assertEqual(answer.header("etag"), None)

    def test_cannotWrite(self) -> None:
        """
        The cache cannot take the file: 507, and the next request tries again.
        """

        def full() -> Any:
            raise OSError(28, "No space left on device")

        self.h.tree.temporary = full  # type: ignore[method-assign]
        answer = self.h.get(filePath(self.file))
        self.assertEqual(answer.code, 507)
        self.assertIn(b"No space left on device", answer.body)
        del self.h.tree.temporary
        self.assertEqual(self.h.get(filePath(self.file)).body, self.file.content)


    def test_diskFullMidway(self) -> None:
        """
        The disk fills up part way through: the client's response is cut
        short, nothing is kept, and the next request tries again.
        """
        from tailmirror.files import _download

        log = CapturedLog(self)
        writeAll = _download._writeAll
        calls = []

        def fillsUp(fd: int, chunks: list[bytes]) -> None:
            calls.append(fd)
            if len(calls) == 2:
                raise OSError(28, "No space left on device")
            writeAll(fd, chunks)

        self.patch(_download, "_writeAll", fillsUp)
        self.h.index.holdFiles = True
        d = self.h.start("GET", filePath(self.file))
        self.h.flush()
        (request, content), = self.h.index.heldFiles
        for i in range(0, len(content), 1000):
            request.write(content[i : i + 1000])
            self.h.flush()
        assertNotWhole(self, self.h.finish(d))
        self.assertEqual(treeFiles(self.h), [])
        self.assertEqual(treeFiles(self.h, "+tmp"), [])
        self.assertIn("No space left on device", log.text())
        self.h.index.holdFiles = False
        self.assertEqual(self.h.get(filePath(self.file)).body, self.file.content)

    def test_leftoversCleared(self) -> None:
        """
        Downloads a stopped mirror left unfinished are removed at start,
        and the log says so.
        """
        with open(os.path.join(self.h.cacheDir, "+tmp", "download-x"), "wb") as f:
            f.write(b"partial")
        log = CapturedLog(self)
        self.h.restart()
        self.assertEqual(treeFiles(self.h, "+tmp"), [])
        self.assertIn("cleared 1 unfinished downloads", log.text())


class LinksLetGoTests(SynchronousTestCase):
    """
    A cold file of a page whose links the mirror let go (it keeps so many):
    found from the journal's copy of the page, for that file alone.
    """

    def setUp(self) -> None:
        self.file = sdist("foo", "1.0")
        self.h = Harness([project(self.file, sdist("foo", "1.1"), sdist("foo", "1.2")), generated("bar")])
        self.h.pages._links.cache.maxSize = 3
        self.h.get("/simple/foo/")
        self.h.get("/simple/bar/")
        self.entry = self.h.pages._index["foo"]
        self.assertIsNone(self.h.pages._links.cache.get(("foo", self.entry.serial)))

    def test_found(self) -> None:
        """
        The file is served, its page not indexed whole again, nor asked
        for upstream again.
        """
        self.assertEqual(self.h.get(filePath(self.file)).body, self.file.content)
        self.assertIsNone(self.h.pages._links.cache.get(("foo", self.entry.serial)))
        self.assertEqual(self.h.index.requests["/simple/foo/"], 1)

    def test_secondIndexesAgain(self) -> None:
        """
        A second cold file of that page has the page's links indexed whole
        and kept again.
        """
        other = sdist("foo", "1.1")
        self.h.get(filePath(self.file))
        self.assertEqual(self.h.get(filePath(other)).body, other.content)
        self.assertIsNotNone(self.h.pages._links.cache.get(("foo", self.entry.serial)))
        # Let go again: the next cold file is again looked up alone.
        self.h.pages._links.cache.discard(("foo", self.entry.serial))
        third = sdist("foo", "1.2")
        self.assertEqual(self.h.get(filePath(third)).body, third.content)
        self.assertIsNone(self.h.pages._links.cache.get(("foo", self.entry.serial)))

    def test_notOnThePage(self) -> None:
        """
        A file the page does not list is still not found.
        """
        self.assertEqual(self.h.get(filePath(sdist("foo", "9.9"))).code, 404)


class SmallColdFileTests(SynchronousTestCase):
    """
    A small file is written as it arrives, on the reactor thread, and sent
    once it is whole and verified, while it is still being made durable:
    a busy disk delays no client of a small file.
    """

    def setUp(self) -> None:
        self.file = sdist("foo", "1.0", size=5000, metadata=b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n")
        self.threads = Threads(held=("_place",))
        self.h = Harness([project(self.file)], threads=self.threads)

    def test_sentBeforeKept(self) -> None:
        """
        The client has the whole file, and its metadata, while neither is in
        the tree yet; neither was written nor hashed in the pool.  Once kept,
        both are served from the tree, with nothing more from upstream.
        """
        for path, content in ((filePath(self.file), self.file.content), (filePath(self.file, True), self.file.metadata)):
            answer = self.h.get(path)
            self.assertEqual((answer.code, answer.body), (200, content))
            self.assertEqual(answer.header("tailmirror-cache"), "miss")
        self.assertEqual(treeFiles(self.h), [])
        self.assertEqual(len(self.threads.waiting), 2)
        self.assertNotIn("_writeAll", self.threads.calls)
        self.assertNotIn("_hashAll", self.threads.calls)
        self.threads.release()
        self.h.flush()
        self.assertEqual(len(treeFiles(self.h)), 2)
        self.assertEqual(self.h.get(filePath(self.file)).header("tailmirror-cache"), "hit")
        self.assertEqual(self.h.index.requests["/files/foo-1.0.tar.gz"], 1)
        self.assertEqual(self.h.index.requests["/files/foo-1.0.tar.gz.metadata"], 1)

    def test_rangeBeforeKept(self) -> None:
        """
        A range of a small cold file is sent from the verified download too.
        """
        answer = self.h.get(filePath(self.file), {"Range": "bytes=10-19"})
        self.assertEqual((answer.code, answer.body), (206, self.file.content[10:20]))
        self.assertEqual(treeFiles(self.h), [])

    def test_corruptNeverSent(self) -> None:
        """
        A small file that fails its check is never sent whole, kept or not.
        """
        self.h.index.corrupt.add(self.file.filename)
        assertNotWhole(self, self.h.get(filePath(self.file)))
        self.assertEqual(self.threads.waiting, [])
        self.assertEqual(treeFiles(self.h, "+tmp"), [])

    def test_keepingFails(self) -> None:
        """
        A verified file that cannot be kept (the disk fails as it is made
        durable) was still the right file for its client; nothing is
        kept, and the next client has it fetched again.
        """

        def failing(*args: Any) -> None:
            raise OSError(5, "Input/output error")

        answer = self.h.get(filePath(self.file))
        self.assertEqual(answer.body, self.file.content)
        [(waiting, _, args)] = self.threads.waiting
        self.threads.waiting = []
        CapturedLog(self)
        maybeDeferred(failing, *args).chainDeferred(waiting)
        self.h.flush()
        self.assertEqual(treeFiles(self.h), [])
        self.assertEqual(treeFiles(self.h, "+tmp"), [])
        self.threads.held = set()
        self.assertEqual(self.h.get(filePath(self.file)).body, self.file.content)
        self.assertEqual(self.h.index.requests["/files/foo-1.0.tar.gz"], 2)
        self.assertEqual(len(treeFiles(self.h)), 1)

    def test_askedWhileTheFileIsMade(self) -> None:
        """
        Upstream is asked while the temporary file is still being made (a
        busy disk): what it sent waits for the file, and the client has it.
        """
        self.threads.held = {"temporary"}
        d = self.h.start("GET", filePath(self.file))
        self.h.flush()
        self.assertEqual(self.h.index.requests["/files/foo-1.0.tar.gz"], 1)
        self.assertEqual(len(self.threads.waiting), 1)
        self.threads.held = set()
        self.threads.release()
        answer = self.h.finish(d)
        self.assertEqual((answer.code, answer.body), (200, self.file.content))
        self.assertEqual(len(treeFiles(self.h)), 1)

    def test_corruptWhileTheFileIsMade(self) -> None:
        """
        A corrupt file upstream sent before its temporary file was made:
        never sent whole, and its temporary file is removed.
        """
        self.threads.held = {"temporary"}
        self.h.index.corrupt.add(self.file.filename)
        d = self.h.start("GET", filePath(self.file))
        self.h.flush()
        self.threads.release()
        assertNotWhole(self, self.h.finish(d))
        self.assertEqual(treeFiles(self.h, "+tmp"), [])

    def test_fileCannotBeMade(self) -> None:
        """
        No temporary file can be made, after upstream has sent it all: a
        507 that says why, nothing kept or left behind, and the next
        request tries again.
        """
        self.threads.held = {"temporary"}
        CapturedLog(self)
        d = self.h.start("GET", filePath(self.file))
        self.h.flush()
        [(waiting, _, _)] = self.threads.waiting
        self.threads.waiting = []
        waiting.errback(OSError(28, "No space left on device"))
        answer = self.h.finish(d)
        self.assertEqual(answer.code, 507)
        self.assertIn(b"No space left on device", answer.body)
        self.assertEqual(treeFiles(self.h), [])
        self.assertEqual(treeFiles(self.h, "+tmp"), [])
        self.threads.held = set()
        self.assertEqual(self.h.get(filePath(self.file)).body, self.file.content)

    def test_bigFileThroughThePool(self) -> None:
        """
        The bytes of a bigger file past its first few go through the pool.
        """
        from tailmirror.files._download import INLINE_MAX

        big = sdist("foo", "2.0", size=4 * INLINE_MAX)
        self.h.index.projects["foo"].files.append(big)
        self.threads.held = set()
        self.assertEqual(self.h.get(filePath(big)).body, big.content)
        self.assertIn("_writeAll", self.threads.calls)


class MetadataTests(SynchronousTestCase):
    def test_metadata(self) -> None:
        """
        A core metadata file the page advertises is fetched, verified
        against its own hash, and kept beside the file.
        """
        f = sdist("foo", "1.0", metadata=b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n")
        h = Harness([project(f)])
        answer = h.get(filePath(f, metadata=True))
        self.assertEqual((answer.code, answer.body), (200, f.metadata))
        self.assertEqual(answer.header("etag"), f'"{f.sha256[:16]}.metadata"')
        self.assertEqual(len(treeFiles(h)), 1)
        self.assertTrue(treeFiles(h)[0].endswith("foo-1.0.tar.gz.metadata"), treeFiles(h))
        h.index.corrupt.add("foo-1.0.tar.gz.metadata")
        other = Harness([project(f)])
        other.index.corrupt.add("foo-1.0.tar.gz.metadata")
        assertNotWhole(self, other.get(filePath(f, metadata=True)))
        self.assertEqual(treeFiles(other), [])

    def test_htmlUpstream(self) -> None:
        """
        From an HTML page (no sizes), files and metadata work alike.
        """
        f = sdist("foo", "1.0", metadata=b"Metadata-Version: 2.1\nName: foo\n")
        h = Harness([project(f)])
        h.index.forms = ("html",)
        self.assertEqual(h.get(filePath(f)).body, f.content)
        self.assertEqual(h.get(filePath(f, metadata=True)).body, f.metadata)

    def test_unhashedLink(self) -> None:
        """
        A link without a sha256 is served under C{_url/}, checked by the
        hash it does give.
        """
        f = sdist("foo", "1.0")
        f.extra = {"hashes": {"md5": hashlib.md5(f.content).hexdigest()}}
        h = Harness([project(f)])
        page = h.get("/simple/foo/", {"Accept": "application/vnd.pypi.simple.v1+json"})
        url = page.body.decode().split('"url":"')[1].split('"')[0]
        self.assertTrue(url.startswith("../../root/pypi/+f/_url/"), url)
        self.assertEqual(h.get(url[5:]).body, f.content)
        h.index.corrupt.add(f.filename)
        other = Harness([project(f)])
        other.index.corrupt.add(f.filename)
        assertNotWhole(self, other.get(url[5:]))


class WarmFileTests(SynchronousTestCase):
    """
    A file in the tree.
    """

    def setUp(self) -> None:
        self.file = sdist("foo", "1.0", size=1000)
        self.h = Harness([project(self.file)])
        self.path = filePath(self.file)
        self.assertEqual(self.h.get(self.path).code, 200)
        self.etag = f'"{self.file.sha256[:16]}"'

    def get(self, headers: dict[str, str] | None = None, method: str = "GET") -> Answer:
        return self.h.get(self.path, headers, method)

    def test_headers(self) -> None:
        answer = self.get({"Accept-Encoding": "gzip"})
        self.assertEqual(answer.body, self.file.content)
        self.assertEqual(answer.length, 1000)
        self.assertEqual(answer.header("etag"), self.etag)
        self.assertEqual(answer.header("accept-ranges"), "bytes")
        self.assertEqual(answer.header("cache-control"), "public, max-age=31536000, immutable")
        self.assertIsNone(answer.header("content-encoding"))

    def test_head(self) -> None:
        answer = self.get(method="HEAD")
        self.assertEqual((answer.code, answer.body), (200, b""))
        self.assertEqual(answer.header("content-length"), "1000")

    def test_ifNoneMatch(self) -> None:
        self.assertEqual(self.get({"If-None-Match": self.etag}).code, 304)
        self.assertEqual(self.get({"If-None-Match": f'"x", W/{self.etag}'}).code, 304)
        self.assertEqual(self.get({"If-None-Match": '"other"'}).code, 200)

    def test_ranges(self) -> None:
        content = self.file.content
        answer = self.get({"Range": "bytes=10-19"})
        self.assertEqual((answer.code, answer.body), (206, content[10:20]))
        self.assertEqual(answer.header("content-range"), "bytes 10-19/1000")
        self.assertEqual(answer.length, 10)
        answer = self.get({"Range": "bytes=-100"})
        self.assertEqual((answer.code, answer.body), (206, content[-100:]))
        self.assertEqual(answer.header("content-range"), "bytes 900-999/1000")
        answer = self.get({"Range": "bytes=990-"})
        self.assertEqual((answer.code, answer.body), (206, content[990:]))
        answer = self.get({"Range": "bytes=1000-"})
        self.assertEqual(answer.code, 416)
        self.assertEqual(answer.header("content-range"), "bytes */1000")
        self.assertEqual(self.get({"Range": "bytes=0-1,5-6"}).body, content)

    def test_ifRange(self) -> None:
        answer = self.get({"Range": "bytes=0-9", "If-Range": self.etag})
        self.assertEqual((answer.code, answer.body), (206, self.file.content[:10]))
        answer = self.get({"Range": "bytes=0-9", "If-Range": '"changed"'})
        self.assertEqual((answer.code, answer.body), (200, self.file.content))
        answer = self.get({"Range": "bytes=0-9", "If-Range": "Wed, 21 Oct 2015 07:28:00 GMT"})
        self.assertEqual(answer.code, 200)


class SharedDownloadTests(SynchronousTestCase):
    """
    One download per file, whoever asks, streamed to all.
    """

    def setUp(self) -> None:
        self.file = sdist("foo", "1.0", size=1_200_000)
        self.h = Harness([project(self.file)])
        self.h.index.holdFiles = True
        self.path = filePath(self.file)

    def release(self, chunks: int = 3) -> None:
        """
        Send the held upstream response, a chunk at a time.
        """
        (request, content), = self.h.index.heldFiles
        step = len(content) // chunks + 1
        for i in range(0, len(content), step):
            request.write(content[i : i + step])
            self.h.flush()
        finish(request)
        self.h.flush()

    def test_thirtyAtOnce(self) -> None:
        """
        Thirty concurrent cold requests, and one more joining late: one
        upstream request, and every client gets the whole, right file.
        """
        started = [self.h.start("GET", self.path) for _ in range(30)]
        self.h.flush()
        (request, content), = self.h.index.heldFiles
        request.write(content[:100_000])
        self.h.flush()
        started.append(self.h.start("GET", self.path))
        request.write(content[100_000:])
        finish(request)
        answers = [self.h.finish(d) for d in started]
        self.assertEqual(self.h.index.requests["/files/foo-1.0.tar.gz"], 1)
        self.assertEqual({a.body for a in answers}, {self.file.content})
        self.assertEqual({a.code for a in answers}, {200})

    def test_bytesFlowBeforeTheEnd(self) -> None:
        """
        Clients receive bytes as they arrive, all but the last until the
        file is verified.
        """
        received: list[bytes] = []
        d = self.h.start("GET", self.path)
        self.h.flush()
        d.addCallback(lambda r: r.deliverBody(Collector(received)))
        self.h.flush()
        (request, content), = self.h.index.heldFiles
        request.write(content[:-10])
        self.h.flush()
        self.assertEqual(b"".join(received), content[:-11])
        request.write(content[-10:])
        finish(request)
        self.h.flush()
        self.assertEqual(b"".join(received), content)

    def test_clientLeaves(self) -> None:
        """
        A client hanging up does not stop the download for others or the tree.
        """
        first = self.h.start("GET", self.path)
        self.h.flush()
        first.addCallback(lambda r: r.deliverBody(Collector([], stopAfterFirst=True)))
        second = self.h.start("GET", self.path)
        self.release()
        self.assertEqual(self.h.finish(second).body, self.file.content)
        self.assertEqual(len(treeFiles(self.h)), 1)

    def test_corrupt(self) -> None:
        """
        Wrong bytes for the hash: no client gets a whole response, nothing
        is kept, it is logged, and a fixed upstream then works.
        """
        log = CapturedLog(self)
        self.h.index.corrupt.add(self.file.filename)
        started = [self.h.start("GET", self.path) for _ in range(3)]
        self.release()
        for d in started:
            body = self.h.finish(d).body
            self.assertIsInstance(body, Exception)
        self.assertEqual(treeFiles(self.h), [])
        self.assertEqual(treeFiles(self.h, "+tmp"), [])
        self.assertIn("sent a corrupt file", log.text())
        self.h.index.corrupt.clear()
        self.h.index.heldFiles.clear()
        d = self.h.start("GET", self.path)
        self.release()
        self.assertEqual(self.h.finish(d).body, self.file.content)

    def test_truncated(self) -> None:
        """
        Upstream drops the connection half way: nothing complete, nothing kept.
        """
        self.h.index.holdFiles = False
        self.h.index.truncate.add(self.file.filename)
        assertNotWhole(self, self.h.get(self.path))
        self.assertEqual(treeFiles(self.h), [])
        self.assertEqual(treeFiles(self.h, "+tmp"), [])

    def test_upstreamWaitsForTheDisk(self) -> None:
        """
        While more than a few MiB wait to be written, upstream is paused;
        it goes on once the disk has caught up, and the file is whole.  The
        time paused is the mirror's, not upstream's silence: it does not
        count towards the idle timeout.
        """
        from twisted.internet.defer import Deferred, maybeDeferred

        from tailmirror.files._download import PENDING_MAX

        queued: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []

        def later(f: Any, *args: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            queued.append((d, f, args))
            return d

        self.h.files.runInThread = later
        self.h.tree._run = later
        big = sdist("foo", "2.0", size=PENDING_MAX + 4 * 2**20)
        self.h.index.projects["foo"].files.append(big)
        d = self.h.start("GET", filePath(big))
        self.h.flush()
        # The temporary file is made in a thread, while upstream is asked.
        waiting, f, args = queued.pop(0)
        self.assertEqual(f, self.h.tree.temporary)
        maybeDeferred(f, *args).chainDeferred(waiting)
        self.h.flush()
        (request, content), = self.h.index.heldFiles
        last = len(content) - 2**20
        for i in range(0, last, 2**20):
            request.write(content[i : min(i + 2**20, last)])
            self.h.flush()
        (download,) = self.h.files._downloads.values()
        receiver = download._body
        assert receiver is not None
        self.assertTrue(receiver.paused)
        self.h.clock.advance(3 * self.h.upstream.idleTimeout)
        self.assertFalse(receiver.done.called)
        while queued:
            waiting, f, args = queued.pop(0)
            maybeDeferred(f, *args).chainDeferred(waiting)
            self.h.flush()
        self.assertFalse(receiver.paused)
        request.write(content[last:])
        self.h.flush()
        finish(request)
        while queued:
            waiting, f, args = queued.pop(0)
            maybeDeferred(f, *args).chainDeferred(waiting)
            self.h.flush()
        self.assertEqual(self.h.finish(d).body, big.content)

    def test_downloadsTogetherWaitForTheDisk(self) -> None:
        """
        While more than L{BACKLOG_MAX} of all downloads together waits to
        be written, each download's upstream is paused, though each holds
        less than L{PENDING_MAX}; all go on once the disk has caught up,
        the files are whole, and nothing is counted unwritten any more.
        """
        from twisted.internet.defer import Deferred, maybeDeferred

        from tailmirror.files import _download

        self.patch(_download, "BACKLOG_MAX", 3 * 2**20)
        queued: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []

        def later(f: Any, *args: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            queued.append((d, f, args))
            return d

        def catchUp() -> None:
            while queued:
                waiting, f, args = queued.pop(0)
                maybeDeferred(f, *args).chainDeferred(waiting)
                self.h.flush()

        self.h.files.runInThread = later
        self.h.tree._run = later
        big = [sdist("foo", f"3.{i}", size=4 * 2**20) for i in range(2)]
        self.h.index.projects["foo"].files.extend(big)
        gets = []
        for f in big:
            gets.append(self.h.start("GET", filePath(f)))
            self.h.flush()
            waiting, made, args = queued.pop(0)  # the temporary file
            maybeDeferred(made, *args).chainDeferred(waiting)
            self.h.flush()
        held = list(self.h.index.heldFiles)
        self.assertEqual(len(held), 2)
        sent = [0, 0]

        def send(which: int, size: int) -> None:
            request, content = held[which]
            request.write(content[sent[which] : sent[which] + size])
            sent[which] += size
            self.h.flush()

        send(0, 2**20)
        send(0, 2**20)
        send(1, 2**20)  # 3 MiB together: not more than may wait
        bodies = [d._body for d in self.h.files._downloads.values()]
        self.assertEqual([b is not None and b.paused for b in bodies], [False, False])
        send(1, 2**20)  # the second's 2 MiB are less than PENDING_MAX
        send(0, 1024)  # and so is the first's
        self.assertEqual(self.h.tree.backlog, 4 * 2**20 + 1024)
        self.assertEqual([b is not None and b.paused for b in bodies], [True, True])
        catchUp()
        self.assertEqual(self.h.tree.backlog, 0)
        self.assertEqual([b is not None and b.paused for b in bodies], [False, False])
        for which, (request, content) in enumerate(held):
            send(which, len(content))
            finish(request)
            catchUp()
        self.assertEqual([self.h.finish(d).body for d in gets], [f.content for f in big])
        self.assertEqual(self.h.tree.backlog, 0)

    def test_upstreamGoesQuiet(self) -> None:
        """
        Upstream stops sending: after the timeout the download fails.
        """
        log = CapturedLog(self)
        d = self.h.start("GET", self.path)
        self.h.flush()
        (request, content), = self.h.index.heldFiles
        request.write(content[:1000])
        self.h.flush()
        self.h.clock.advance(self.h.upstream.idleTimeout + 1)
        self.assertIsInstance(self.h.finish(d).body, Exception)
        self.assertIn("upstream stopped sending the file", log.text())
        self.assertEqual(treeFiles(self.h, "+tmp"), [])


def assertNotWhole(test: SynchronousTestCase, answer: Answer) -> None:
    """
    A client did not get a whole file: an error status, or a body cut short.
    """
    body: object = answer.body  # or the exception that cut it short: see Harness.finish
    if not isinstance(body, Exception):
        test.assertNotEqual(answer.code, 200, answer.body[:200])


class Collector:
    """
    A protocol keeping what a response body delivers.
    """

    def __init__(self, into: list[bytes], stopAfterFirst: bool = False) -> None:
        self.into = into
        self.stopAfterFirst = stopAfterFirst
        self.transport: Any = None

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport

    def dataReceived(self, data: bytes) -> None:
        self.into.append(data)
        if self.stopAfterFirst:
            self.transport.stopProducing()

    def connectionLost(self, reason: Any) -> None:
        pass
