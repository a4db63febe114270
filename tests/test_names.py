"""
Tests for project names, file names and the mirror's file paths.
"""

import hashlib
import re

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tailmirror._layout import mirrorPath
from tailmirror._names import canonicalName, safeFilename

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
