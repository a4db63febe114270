"""
Tests for reading upstream pages into the model and rendering the mirror's.
"""

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tailmirror.pages._parse import MalformedPage, parseHTML, parseJSON
from tailmirror.pages._render import apiVersion, renderProjectHTML, renderProjectJSON, renderRootHTML, renderRootJSON

PAGE_URL = "https://upstream.test/simple/foo/"
SHA = "a" * 64

#: A JSON page using every marker of api-version 1.4.
FULL: dict[str, Any] = {
    "meta": {"api-version": "1.4", "_last-serial": 42},
    "name": "foo",
    "versions": ["1.0", "2.0"],
    "project-status": {"status": "deprecated", "reason": "use bar"},
    "tracks": ["https://other.test/simple/foo/"],
    "alternate-locations": ["https://alt.test/simple/foo/"],
    "files": [
        {
            "filename": "foo-1.0.tar.gz",
            "url": "../../packages/foo-1.0.tar.gz",
            "hashes": {"sha256": SHA, "blake2b_256": "b" * 64},
            "requires-python": ">=3.8, <4",
            "yanked": "broken <build>",
            "size": 1234,
            "upload-time": "2024-01-02T03:04:05.123456Z",
            "gpg-sig": False,
            "provenance": "../../packages/foo-1.0.tar.gz.provenance",
            "some-future-key": {"kept": True},
        },
        {
            "filename": "foo-2.0-py3-none-any.whl",
            "url": "https://files.test/foo-2.0-py3-none-any.whl",
            "hashes": {"sha256": "c" * 64},
            "core-metadata": {"sha256": "d" * 64},
            "dist-info-metadata": {"sha256": "d" * 64},
            "yanked": True,
            "size": 99,
        },
    ],
}


class ParseJSONTests(SynchronousTestCase):
    """
    Tests for L{parseJSON}.
    """

    def test_keepsEverything(self) -> None:
        """
        Every field of every file and of the page is kept as upstream gave
        it; URLs are made absolute against the page.
        """
        parsed = parseJSON(json.dumps(FULL).encode(), PAGE_URL, "foo")
        page = parsed.page
        self.assertEqual(parsed.dropped, [])
        self.assertEqual(page["versions"], ["1.0", "2.0"])
        self.assertEqual(page["project-status"], FULL["project-status"])
        self.assertEqual(page["tracks"], FULL["tracks"])
        self.assertEqual(page["alternate-locations"], FULL["alternate-locations"])
        self.assertEqual(page["meta"], {"_last-serial": 42})
        first, second = page["files"]
        expected = dict(FULL["files"][0])
        expected["url"] = "https://upstream.test/packages/foo-1.0.tar.gz"
        expected["provenance"] = "https://upstream.test/packages/foo-1.0.tar.gz.provenance"
        self.assertEqual(first, expected)
        self.assertEqual(second, FULL["files"][1])

    def test_dropsHostileLinks(self) -> None:
        """
        Links with unsafe file names or non-http(s) schemes are dropped, and
        each drop is reported.
        """
        files: list[object] = [
            {"filename": n, "url": f"https://u.test/{i}", "hashes": {}}
            for i, n in enumerate(["../evil", "a/b", "a\\b", "a\x00b", "x" * 300, "."])
        ]
        files.append({"filename": "ok.tar.gz", "url": "file:///etc/passwd", "hashes": {}})
        files.append({"filename": "ok.tar.gz", "url": "javascript:alert(1)", "hashes": {}})
        files.append({"url": "https://u.test/x"})
        files.append("not an object")
        files.append({"filename": "good-1.0.tar.gz", "url": "https://u.test/g", "hashes": {}})
        page = {"meta": {"api-version": "1.0"}, "name": "foo", "files": files}
        parsed = parseJSON(json.dumps(page).encode(), PAGE_URL, "foo")
        self.assertEqual([f["filename"] for f in parsed.page["files"]], ["good-1.0.tar.gz"])
        self.assertEqual(len(parsed.dropped), len(files) - 1)

    def test_absoluteLinks(self) -> None:
        """
        An absolute http(s) link of plain ASCII is kept exactly as given;
        any other is resolved against the page as a browser would, and
        dropped unless it is then http(s).
        """
        cases = {
            "https://files.test/a/foo-1.0.tar.gz": "https://files.test/a/foo-1.0.tar.gz",
            "http://files.test:8080/foo-1.1.tar.gz?x=1": "http://files.test:8080/foo-1.1.tar.gz?x=1",
            "HTTPS://files.test/foo-1.2.tar.gz": "https://files.test/foo-1.2.tar.gz",
            "https://files.test/a\tb/foo-1.3.tar.gz": "https://files.test/ab/foo-1.3.tar.gz",
            "//files.test/foo-1.4.tar.gz": "https://files.test/foo-1.4.tar.gz",
            "ftp://files.test/foo-1.5.tar.gz": None,
            "https:foo-1.6.tar.gz": "https://upstream.test/simple/foo/foo-1.6.tar.gz",
        }
        files = [
            {"filename": f"foo-1.{i}.tar.gz", "url": url, "hashes": {}} for i, url in enumerate(cases)
        ]
        page = {"meta": {"api-version": "1.0"}, "name": "foo", "files": files}
        parsed = parseJSON(json.dumps(page).encode(), PAGE_URL, "foo")
        kept = {f["filename"]: f["url"] for f in parsed.page["files"]}
        for i, expected in enumerate(cases.values()):
            self.assertEqual(kept.get(f"foo-1.{i}.tar.gz"), expected, i)
        self.assertEqual(len(parsed.dropped), 1)

    def test_metadataURL(self) -> None:
        """
        A file's core metadata is at its URL with C{.metadata} after the
        path, the fragment left off: however the URL is written.
        """
        from tailmirror.pages._links import metadataURL

        for url, expected in [
            ("https://h.test/a/b.whl", "https://h.test/a/b.whl.metadata"),
            ("https://h.test/a/b.whl#sha256=00", "https://h.test/a/b.whl.metadata"),
            ("https://h.test/a/b.whl?x=1#f", "https://h.test/a/b.whl.metadata?x=1"),
            ("https://h.test", "https://h.test/.metadata"),
            ("http://h.test:81/a%20b.whl#", "http://h.test:81/a%20b.whl.metadata"),
        ]:
            self.assertEqual(metadataURL(url), expected)

    def test_malformed(self) -> None:
        """
        Not JSON, or JSON not shaped like a page: L{MalformedPage}.
        """
        for body in [b"{", b"[]", b'{"files": 3, "meta": {}}', b'{"files": []}', b"\xff\xfe"]:
            self.assertRaises(MalformedPage, parseJSON, body, PAGE_URL, "foo")


HTML_PAGE = b"""<!DOCTYPE html>
<html><head>
<meta name="pypi:repository-version" content="1.1">
<meta name="pypi:project-status" content="quarantined">
<meta name="pypi:project-status-reason" content="under review">
<meta name="pypi:tracks" content="https://other.test/simple/foo/">
<base href="https://files.test/base/">
</head><body>
<a href="foo-1.0.tar.gz#SHA256=%s" data-requires-python="&gt;=3.8" data-yanked="">foo-1.0.tar.gz</a>
<a href="/x/foo-2.0-py3-none-any.whl#md5=abc" data-core-metadata="sha256=dd"
   data-dist-info-metadata="true" data-yanked="bad" data-gpg-sig="true"
   data-provenance="p.json">foo-2.0-py3-none-any.whl</a>
<A HREF="foo-3.0.zip">  foo-3.0.zip  </A>
<a href="ftp://files.test/foo-4.0.zip">foo-4.0.zip</a>
<a href="../escape">..</a>
<a name="no-href">nothing</a>
<p>unclosed <b>tags
</body></html>""" % SHA.encode()


class ParseHTMLTests(SynchronousTestCase):
    """
    Tests for L{parseHTML}.
    """

    def test_markers(self) -> None:
        """
        Every PEP 503 anchor attribute becomes its JSON field, the base
        element and relative links are honoured, and page meta tags are kept.
        """
        parsed = parseHTML(HTML_PAGE, PAGE_URL, "foo")
        page = parsed.page
        self.assertEqual(page["project-status"], {"status": "quarantined", "reason": "under review"})
        self.assertEqual(page["tracks"], ["https://other.test/simple/foo/"])
        first, second, third = page["files"]
        self.assertEqual(
            first,
            {
                "filename": "foo-1.0.tar.gz",
                "url": "https://files.test/base/foo-1.0.tar.gz",
                "hashes": {"sha256": SHA},
                "requires-python": ">=3.8",
                "yanked": True,
            },
        )
        self.assertEqual(
            second,
            {
                "filename": "foo-2.0-py3-none-any.whl",
                "url": "https://files.test/x/foo-2.0-py3-none-any.whl",
                "hashes": {"md5": "abc"},
                "core-metadata": {"sha256": "dd"},
                "dist-info-metadata": True,
                "yanked": "bad",
                "gpg-sig": True,
                "provenance": "https://files.test/base/p.json",
            },
        )
        self.assertEqual(third["filename"], "foo-3.0.zip")
        self.assertEqual(len(parsed.dropped), 2)

    def test_garbage(self) -> None:
        """
        html5lib reads anything: garbage is a page with no files.
        """
        parsed = parseHTML(b"\x00\xff<<<>>>not html at all", PAGE_URL, "foo")
        self.assertEqual(parsed.page["files"], [])


class RenderTests(SynchronousTestCase):
    """
    Tests for the mirror's own pages.
    """

    def model(self) -> dict[str, Any]:
        return parseJSON(json.dumps(FULL).encode(), PAGE_URL, "foo").page

    def test_apiVersion(self) -> None:
        """
        A page claims 1.4 only with C{versions} and every file's C{size};
        otherwise 1.0.
        """
        page = self.model()
        self.assertEqual(apiVersion(page), "1.4")
        del page["files"][1]["size"]
        self.assertEqual(apiVersion(page), "1.0")
        page = self.model()
        del page["versions"]
        self.assertEqual(apiVersion(page), "1.0")

    def test_jsonKeepsAndRewrites(self) -> None:
        """
        The JSON form keeps every field and rewrites only file URLs, to the
        mirror's paths relative to the page.
        """
        out = json.loads(renderProjectJSON(self.model()))
        self.assertEqual(out["meta"], {"api-version": "1.4", "_last-serial": 42})
        first = out["files"][0]
        self.assertEqual(first["url"], f"../../root/pypi/+f/aaa/{'a' * 13}/foo-1.0.tar.gz")
        for key in ("hashes", "requires-python", "yanked", "size", "upload-time", "gpg-sig", "some-future-key"):
            self.assertEqual(first[key], FULL["files"][0][key], key)
        for key in ("versions", "project-status", "tracks", "alternate-locations"):
            self.assertEqual(out[key], FULL[key], key)
        self.assertEqual(out["files"][1]["core-metadata"], {"sha256": "d" * 64})

    def test_htmlRoundTrip(self) -> None:
        """
        Reading the mirror's HTML back gives every marker HTML can carry.
        """
        model = self.model()
        back = parseHTML(renderProjectHTML(model), "http://mirror.test/simple/foo/", "foo").page
        self.assertEqual(back["project-status"], model["project-status"])
        self.assertEqual(back["tracks"], model["tracks"])
        self.assertEqual(back["alternate-locations"], model["alternate-locations"])
        for ours, theirs in zip(back["files"], model["files"], strict=True):
            for key in ("filename", "requires-python", "yanked", "core-metadata", "dist-info-metadata", "gpg-sig"):
                self.assertEqual(ours.get(key), theirs.get(key), key)
            self.assertEqual(ours["hashes"], {"sha256": theirs["hashes"]["sha256"]})
            self.assertTrue(ours["url"].startswith("http://mirror.test/root/pypi/+f/"))
            if "provenance" in theirs:
                # PEP 740 provenance is the mirror's too, beside the file.
                self.assertEqual(ours["provenance"], ours["url"] + ".provenance")

    def test_htmlEscapes(self) -> None:
        """
        Values are escaped in attributes and text.
        """
        html = renderProjectHTML(self.model()).decode()
        self.assertIn('data-yanked="broken &lt;build&gt;"', html)
        self.assertIn('data-requires-python="&gt;=3.8, &lt;4"', html)
        self.assertIn('<meta name="pypi:repository-version" content="1.4">', html)

    def test_root(self) -> None:
        """
        The root lists the names given, in both forms.
        """
        self.assertEqual(
            json.loads(renderRootJSON(["a", "b-c"])),
            {"meta": {"api-version": "1.4"}, "projects": [{"name": "a"}, {"name": "b-c"}]},
        )
        self.assertIn(b'<a href="b-c/">b-c</a>', renderRootHTML(["a", "b-c"]))
