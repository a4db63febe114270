"""
Tests for project names, file names and the mirror's file paths.
"""

import hashlib
import json
import os
import re
from typing import Any

from hypothesis import given, settings, strategies as st
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from tailmirror.base import _names as namesModule
from tailmirror.base._layout import FileKey, mirrorPath
from tailmirror.base._names import canonicalName, safeFilename
from tailmirror.offline._export import export
from tailmirror.offline._warm import Wanted, choose
from tailmirror.pages._links import FileLink, indexLinks, lookUp, projectsOf
from tailmirror.prefetch._choice import candidatesOf

from ..harness import CapturedLog

_names = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?", fullmatch=True)


class CanonicalNameTests(SynchronousTestCase):
    """
    Tests for L{canonicalName}.
    """

    def test_pep503(self) -> None:
        """
        Runs of C{-}, C{_} and C{.} become one C{-}, and letters lowercase.
        """
        self.assertEqual(canonicalName("Foo.Bar__baz-_-Qux"), "foo-bar-baz-qux")

    def test_invalid(self) -> None:
        """
        Names that no project can have are refused: leading or trailing
        punctuation, other characters, non-ASCII look-alikes, the empty name.
        """
        for name in ["", "-foo", "foo.", "a/b", "..", "foo bar", "f\u212aoo", "caf\xe9", "a\x00b"]:
            self.assertIsNone(canonicalName(name), name)

    @settings(deadline=None)
    @given(_names)
    def test_idempotent(self, name: str) -> None:
        """
        A canonical name is its own canonical name, and matches the PEP 503
        normalized form.
        """
        canonical = canonicalName(name)
        assert canonical is not None
        self.assertEqual(canonicalName(canonical), canonical)
        self.assertEqual(canonical, re.sub(r"[-_.]+", "-", name).lower())


class SafeFilenameTests(SynchronousTestCase):
    """
    Tests for L{safeFilename}.
    """

    def test_ordinary(self) -> None:
        """
        Ordinary distribution file names are safe.
        """
        for name in ["foo-1.0.tar.gz", "foo-1.0+local-py3-none-any.whl", "x.zip"]:
            self.assertTrue(safeFilename(name), name)

    def test_hostile(self) -> None:
        """
        Separators, dot names, control characters and absurd lengths are not.
        """
        for name in ["", ".", "..", "../x", "a/b", "a\\b", "a\x00b", "a\nb", "a\x7fb", "x" * 256]:
            self.assertFalse(safeFilename(name), repr(name))


class MirrorPathTests(SynchronousTestCase):
    """
    Tests for L{mirrorPath}.
    """

    def test_bySha256(self) -> None:
        """
        A file with a sha256 lives under its first 3 and next 13 hex digits,
        lowercased.
        """
        sha = "ABCDEF0123456789" + "0" * 48
        self.assertEqual(
            mirrorPath("foo-1.0.tar.gz", "http://u/f", {"sha256": sha}),
            "root/pypi/+f/abc/def0123456789/foo-1.0.tar.gz",
        )

    def test_byURL(self) -> None:
        """
        A file without a usable sha256 lives under a digest of its URL.
        """
        url = "http://u/files/foo-1.0.tar.gz"
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        for hashes in [{}, {"md5": "0" * 32}, {"sha256": "nothex"}, {"sha256": 5}]:
            self.assertEqual(
                mirrorPath("foo-1.0.tar.gz", url, hashes),
                f"root/pypi/+f/_url/{digest}/foo-1.0.tar.gz",
            )

    def test_quoted(self) -> None:
        """
        A file name is URL-quoted in its path.
        """
        self.assertTrue(mirrorPath("a b%.whl", "http://u/x", {}).endswith("/a%20b%25.whl"))


class LinkTests(SynchronousTestCase):
    """
    Tests for L{indexLinks} and L{lookUp}: a page's links, made into what a
    download needs only when one is looked up.
    """

    sha = "AB" * 32
    page = {
        "name": "foo",
        "files": [
            {
                "filename": "foo-1.0-py3-none-any.whl",
                "url": "https://upstream.test/foo-1.0-py3-none-any.whl#frag",
                "hashes": {"sha256": sha, "md5": "0" * 32},
                "size": 10,
                "upload-time": "2024-01-02T03:04:05.000000Z",
                "core-metadata": {"sha256": "cd" * 32},
                "provenance": "https://upstream.test/foo.provenance",
            },
            {"filename": "foo-2.0-py3-none-any.whl", "url": "https://upstream.test/foo-2.0-py3-none-any.whl",
             "hashes": {"md5": "EF" * 16}, "size": True},
            {"filename": "foo-1.0.tar.gz", "url": "https://upstream.test/foo-1.0.tar.gz", "hashes": {}},
        ],
    }

    def key(self, filename: str, metadata: bool = False, provenance: bool = False) -> FileKey:
        [shard] = [s for (s, name) in indexLinks(self.page) if name == filename]
        return FileKey(shard, filename, metadata, provenance=provenance)

    def test_file(self) -> None:
        """
        A file's link: its URL, its sha256 (lowercase, before any weaker
        hash), its size and upload time, its project.
        """
        link = lookUp(indexLinks(self.page), self.key("foo-1.0-py3-none-any.whl"))
        self.assertEqual(
            link,
            FileLink("https://upstream.test/foo-1.0-py3-none-any.whl#frag", "sha256", "ab" * 32, 10, 1704164645.0,
                     project="foo"),
        )
        self.assertEqual(self.key("foo-1.0-py3-none-any.whl").shard, ("aba", "babababababab"))

    def test_metadataAndProvenance(self) -> None:
        """
        Core metadata where the page advertises it, checked by its own hash;
        a wheel's without it is read out of the wheel; the provenance where
        the page gives it, naming the file's sha256; an sdist has neither.
        """
        links = indexLinks(self.page)
        metadata = lookUp(links, self.key("foo-1.0-py3-none-any.whl", metadata=True))
        self.assertEqual(
            metadata,
            FileLink("https://upstream.test/foo-1.0-py3-none-any.whl.metadata", "sha256", "cd" * 32, None,
                     1704164645.0, project="foo"),
        )
        inWheel = lookUp(links, self.key("foo-2.0-py3-none-any.whl", metadata=True))
        assert inWheel is not None
        self.assertTrue(inWheel.inWheel)
        provenance = lookUp(links, self.key("foo-1.0-py3-none-any.whl", provenance=True))
        assert provenance is not None
        self.assertEqual((provenance.url, provenance.subject), ("https://upstream.test/foo.provenance", "ab" * 32))
        self.assertIsNone(lookUp(links, self.key("foo-1.0.tar.gz", metadata=True)))
        self.assertIsNone(lookUp(links, self.key("foo-2.0-py3-none-any.whl", provenance=True)))

    def test_withoutSha256(self) -> None:
        """
        A file without a sha256 is sharded by its URL and checked by the
        strongest hash it has, if any; a size that is no size is none.
        """
        links = indexLinks(self.page)
        key = self.key("foo-2.0-py3-none-any.whl")
        self.assertEqual(key.shard[0], "_url")
        self.assertEqual(lookUp(links, key), FileLink(
            "https://upstream.test/foo-2.0-py3-none-any.whl", "md5", "ef" * 16, None, project="foo"))
        sdist = lookUp(links, self.key("foo-1.0.tar.gz"))
        assert sdist is not None
        self.assertEqual((sdist.algorithm, sdist.digest), (None, None))
        self.assertIsNone(lookUp(links, FileKey(("aba", "babababababab"), "other.whl", False)))


#: A wheel whose name has a tag packaging rejects, as the page of a real
#: project lists one.
ODD = "oddly-0.32.2-py36+-none-any.whl"


def _oddPage() -> dict[str, object]:
    good = "oddly-1.0-py3-none-any.whl"
    return {
        "files": [
            {"filename": name, "url": f"https://files.test/{name}", "hashes": {"sha256": digit * 64}}
            for name, digit in ((ODD, "a"), (good, "b"))
        ]
    }


class UnreadableNameTests(SynchronousTestCase):
    """
    A file name the mirror cannot read is passed by where it must be read,
    as pip and uv pass it by, and said once, at info level, whichever part
    met it and however often.
    """

    def setUp(self) -> None:
        self.patch(namesModule, "_told", {})
        self.log = CapturedLog(self)

    def told(self) -> list[dict[str, Any]]:
        return [e for e in self.log.events if e.get("file") == ODD]

    def assertToldOnce(self) -> None:
        [event] = self.told()
        self.assertEqual(event["log_level"], LogLevel.info)
        self.assertIn("py36+", event["reason"])

    def test_candidates(self) -> None:
        """
        The prefetch's candidates leave it out, and keep the rest.
        """
        self.assertEqual([c.filename for c in candidatesOf(_oddPage())], ["oddly-1.0-py3-none-any.whl"])
        candidatesOf(_oddPage())
        self.assertToldOnce()

    def test_links(self) -> None:
        """
        Its project is found from its name read as other names are.
        """
        self.assertEqual(projectsOf(ODD), ["oddly"])
        self.assertEqual(projectsOf(ODD), ["oddly"])
        self.assertToldOnce()
        self.assertIn(ODD, {filename for _, filename in indexLinks(_oddPage())})

    def test_warm(self) -> None:
        """
        C{tailmirror warm} pinning a version chooses none of the files whose
        names it cannot read.
        """
        chosen, missing = choose(Wanted("oddly", "0.32.2"), _oddPage())
        self.assertEqual((chosen, missing), ([], ["oddly==0.32.2"]))
        choose(Wanted("oddly", "0.32.2"), _oddPage())
        [event] = self.told()
        self.assertEqual(event["log_level"], LogLevel.info)

    def test_prefetch(self) -> None:
        """
        A page that lists such a file is prefetched below as any other:
        nothing fails, and the file is said once.
        """
        from ..fakeindex import FakeFile, FakeProject
        from ..harness import PIP_ACCEPT, Harness

        good = FakeFile("oddly-1.0-py3-none-any.whl", b"good", metadata=b"Metadata-Version: 2.1\nName: oddly\nVersion: 1.0\n")
        h = Harness([FakeProject("oddly", [FakeFile(ODD, b"odd"), good])], prefetch="metadata")
        self.addCleanup(h.mirror.close)
        agent = 'pip/24.0 {"python":"3.11.2","implementation":{"name":"CPython","version":"3.11.2"},"system":{"name":"Linux"}}'
        self.assertEqual(h.get("/simple/oddly/", {"Accept": PIP_ACCEPT, "User-Agent": agent}).code, 200)
        h.flush()
        self.assertEqual(h.index.requests["/files/oddly-1.0-py3-none-any.whl.metadata"], 1)
        self.assertEqual(self.log.formats(LogLevel.warn), [])
        self.assertToldOnce()

    def test_export(self) -> None:
        """
        An export of a cache whose page lists such a file writes the page
        as the mirror serves it, and the files the cache holds.
        """
        import tempfile

        from ..fakeindex import FakeFile, FakeProject
        from ..harness import Harness, filePath

        odd, good = FakeFile(ODD, b"odd"), FakeFile("oddly-1.0-py3-none-any.whl", b"good")
        h = Harness([FakeProject("oddly", [odd, good])])
        self.addCleanup(h.mirror.close)
        for f in (odd, good):
            self.assertEqual(h.get(filePath(f)).body, f.content)
        h.flush()
        out = tempfile.mkdtemp()
        done = export(h.cacheDir, out)
        self.assertEqual((done.projects, done.files), (1, 2))
        with open(os.path.join(out, "simple", "oddly", "index.json")) as page:
            self.assertEqual(sorted(e["filename"] for e in json.load(page)["files"]), [ODD, good.filename])
