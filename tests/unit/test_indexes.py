"""
Several indexes in one mirror, and core metadata read out of wheels for
indexes that serve none: in memory, over fake indexes.
"""

from __future__ import annotations

import io
import os
import zipfile

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tailmirror import tap
from tailmirror.base._layout import indexName

from ..fakeindex import FakeFile, FakeIndex, FakeProject
from ..harness import JSON, PIP_ACCEPT, Harness, linksOf
from ..wheels import torchLike, wheel, tree



def metadataOf(data: bytes) -> bytes:
    """
    The METADATA inside a wheel's bytes.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        [name] = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return z.read(name)


def fileRequests(index: FakeIndex) -> int:
    """
    The requests an index was sent for files, ranges apart.
    """
    return sum(n for path, n in index.requests.items() if path.startswith("/files/"))


class SeveralIndexesTests(SynchronousTestCase):
    """
    A second index beside the first, shaped like the PyTorch ones.
    """

    def setUp(self) -> None:
        self.torch = FakeIndex(torchLike("http://files.test/files/"))
        self.torch.forms = ("html",)
        # Its links without a hash lead to another host: allowed here.
        self.h = Harness(tree(), others={"torch": self.torch}, fileHosts=(("files.test", None),))
        self.addCleanup(self.h.mirror.close)

    def test_unhashedOnlyFromAllowedHosts(self) -> None:
        """
        A link without a hash to check is fetched only from upstream's own
        host or one the operator allows (C{--allow-file-host}): else a 502
        whose line names the host and the option, and nothing asked of it.
        A link with a hash is fetched from anywhere it resolves to that is
        not refused.
        """
        h = Harness(tree(), others={"torch": self.torch})
        self.addCleanup(h.mirror.close)
        links = linksOf(h.get("/torch/simple/torchlike/", JSON))
        bare = links["torchlike-2.0.0+cu118-py3-none-any.whl"]
        got = h.get(os.path.normpath("/torch/simple/torchlike/" + bare["url"]))
        self.assertEqual(got.code, 502)
        self.assertIn(b"--allow-file-host files.test:80", got.body)
        self.assertEqual(fileRequests(self.torch), 0)
        hashed = links["torchlike-2.1.0+cu121-py3-none-any.whl"]
        got = h.get(os.path.normpath("/torch/simple/torchlike/" + hashed["url"]))
        self.assertEqual(got.code, 200)

    def test_ownPagesAndFiles(self) -> None:
        """
        An index is at C{/<name>/simple/}, its file links lead to
        C{/root/<name>/+f/}, by hash where the link gives one and by URL
        where not, local versions and all; the file is served whole.
        """
        answer = self.h.get("/torch/simple/torchlike/", JSON)
        self.assertEqual(answer.code, 200)
        links = linksOf(answer)
        hashed = links["torchlike-2.1.0+cu121-py3-none-any.whl"]
        bare = links["torchlike-2.0.0+cu118-py3-none-any.whl"]
        sha = hashed["hashes"]["sha256"]
        self.assertEqual(
            hashed["url"], f"../../../root/torch/+f/{sha[:3]}/{sha[3:16]}/torchlike-2.1.0%2Bcu121-py3-none-any.whl"
        )
        self.assertTrue(bare["url"].startswith("../../../root/torch/+f/_url/"))
        self.assertEqual(bare["hashes"], {})
        for link in links.values():
            path = "/torch/simple/torchlike/" + link["url"]
            got = self.h.get(os.path.normpath(path))
            self.assertEqual(got.code, 200)
            self.assertEqual(got.body, self.torch.content(link["filename"]))

    def test_htmlLinksFromItsPages(self) -> None:
        """
        The HTML form links the same files, relative to the index's pages.
        """
        answer = self.h.get("/torch/simple/tritonlike/", {"Accept": "text/html"})
        self.assertIn(b'href="../../../root/torch/+f/', answer.body)
        self.assertIn(b'data-core-metadata="true"', answer.body)

    def test_ownListsAndJournals(self) -> None:
        """
        Each index lists the projects asked of it, and keeps them in its
        own journal; the first keeps its journal where it always was.
        """
        self.h.get("/torch/simple/torchlike/")
        self.h.get("/simple/alpha/")
        self.assertIn(b"torchlike", self.h.get("/torch/simple/").body)
        self.assertNotIn(b"alpha", self.h.get("/torch/simple/").body)
        self.assertNotIn(b"torchlike", self.h.get("/simple/").body)
        with open(os.path.join(self.h.cacheDir, "+indexes", "torch", "journal.jsonl")) as f:
            self.assertIn("torchlike", f.read())
        with open(os.path.join(self.h.cacheDir, "journal.jsonl")) as f:
            self.assertNotIn("torchlike", f.read())
        h = self.h.restart()
        self.addCleanup(h.mirror.close)
        self.assertIn(b"torchlike", h.get("/torch/simple/").body)

    def test_noMerging(self) -> None:
        """
        A project of one index is not found through another.
        """
        self.assertEqual(self.h.get("/torch/simple/alpha/").code, 404)
        self.assertEqual(self.h.get("/simple/torchlike/").code, 404)

    def test_fileOfOneIndexNotThroughAnother(self) -> None:
        """
        A file's path names its index: the other index's pages do not
        list it, so the mirror has nothing for it there.
        """
        links = linksOf(self.h.get("/simple/gamma/", JSON))
        [link] = links.values()
        path = os.path.normpath("/simple/gamma/" + link["url"]).replace("/root/pypi/", "/root/torch/")
        self.assertEqual(self.h.get(path).code, 404)

    def test_unknownIndex(self) -> None:
        """
        A name that is no index is a plain 404, for pages and files.
        """
        self.assertEqual(self.h.get("/nothing/simple/alpha/").code, 404)
        self.assertEqual(self.h.get("/root/nothing/+f/abc/0123456789abc/a-1.0.tar.gz").code, 404)

    def test_pypiAlias(self) -> None:
        """
        C{/pypi/simple/...} leads to the first index at C{/simple/...}.
        """
        answer = self.h.get("/pypi/simple/alpha/?format=json")
        self.assertEqual(answer.code, 301)
        self.assertEqual(answer.headers["location"], "/simple/alpha/?format=json")

    def test_redirectsWithinIndex(self) -> None:
        """
        A name not normalized is redirected within its index.
        """
        answer = self.h.get("/torch/simple/TorchLike/")
        self.assertEqual(answer.code, 301)
        self.assertEqual(answer.headers["location"], "../torchlike/")
        self.assertEqual(self.h.get("/torch/").headers["location"], "simple/")

    def test_freshPagesFastPath(self) -> None:
        """
        A fresh page of another index is served from the render cache
        without asking upstream again.
        """
        self.h.get("/torch/simple/torchlike/", {"Accept": PIP_ACCEPT})
        self.h.get("/torch/simple/torchlike/", {"Accept": PIP_ACCEPT})
        self.assertEqual(self.torch.requests["/simple/torchlike/"], 1)


class ContentAddressedTests(SynchronousTestCase):
    """
    The same file through two indexes.
    """

    def test_storedOnce(self) -> None:
        """
        A file both indexes list with its sha256 is downloaded and kept
        once; through the second it is a hit.
        """
        shared = wheel("shared", "1.0")
        first = FakeIndex([FakeProject("shared", [shared])])
        second = FakeIndex([FakeProject("shared", [shared])])
        h = Harness(index=first, others={"second": second})
        self.addCleanup(h.mirror.close)
        path = os.path.normpath("/simple/shared/" + linksOf(h.get("/simple/shared/", JSON))[shared.filename]["url"])
        self.assertEqual(h.get(path).body, shared.content)
        other = linksOf(h.get("/second/simple/shared/", JSON))[shared.filename]["url"]
        answer = h.get(os.path.normpath("/second/simple/shared/" + other))
        self.assertEqual(answer.body, shared.content)
        self.assertEqual(answer.headers["tailmirror-cache"], "hit")
        self.assertEqual(fileRequests(second), 0)
        kept = [name for _, _, names in os.walk(h.tree.root) for name in names]
        self.assertEqual(kept, [shared.filename])


def _bigWheel() -> FakeFile:
    """
    A wheel whose central directory is far bigger than the first range
    asked for, its METADATA far from its end.
    """
    out = io.BytesIO()
    metadata = b"Metadata-Version: 2.1\nName: big\nVersion: 1.0\n" + b"Description: x\n" * 5000
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big-1.0.dist-info/METADATA", metadata)
        z.writestr("big-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        for i in range(3000):
            z.writestr(f"big/{'deep/' * 8}module_{i:05d}.py", os.urandom(64).hex())
    return FakeFile("big-1.0-py3-none-any.whl", out.getvalue())


class MetadataFromWheelTests(SynchronousTestCase):
    """
    Core metadata for wheels whose page gives none.
    """

    def harness(self, *files: FakeFile, ranges: bool = True) -> Harness:
        for f in files:
            f.metadata = None
        index = FakeIndex([FakeProject(files[0].filename.partition("-")[0], list(files))])
        index.ranges = ranges
        h = Harness(index=index)
        self.addCleanup(h.mirror.close)
        return h

    def metadataPath(self, h: Harness, f: FakeFile) -> str:
        project = f.filename.partition("-")[0]
        link = linksOf(h.get(f"/simple/{project}/", JSON))[f.filename]
        self.assertIs(link["core-metadata"], True)
        self.assertIs(link["dist-info-metadata"], True)
        url: str = link["url"]
        return os.path.normpath(f"/simple/{project}/" + url) + ".metadata"

    def test_byRanges(self) -> None:
        """
        The metadata is the wheel's METADATA byte for byte, read by range
        requests: the wheel itself is not downloaded, and the metadata is
        kept.
        """
        f = wheel("alpha", "1.0")
        h = self.harness(f)
        path = self.metadataPath(h, f)
        answer = h.get(path)
        self.assertEqual(answer.code, 200)
        self.assertEqual(answer.body, metadataOf(f.content))
        self.assertEqual(h.index.requests["range"], 1)
        again = h.get(path)
        self.assertEqual((again.body, again.headers["tailmirror-cache"]), (answer.body, "hit"))
        self.assertEqual(h.index.requests["range"], 1)
        self.assertFalse(os.path.exists(h.tree.path(h.mirror.indexes["pypi"].layout.parse(path[:-9].encode()))))  # type: ignore[arg-type]

    def test_bigWheel(self) -> None:
        """
        A wheel whose central directory lies beyond the first range takes
        more ranges, and still gives its METADATA exactly.
        """
        f = _bigWheel()
        self.assertGreater(len(f.content), 300_000)
        h = self.harness(f)
        answer = h.get(self.metadataPath(h, f))
        self.assertEqual(answer.body, metadataOf(f.content))
        self.assertGreater(h.index.requests["range"], 1)
        self.assertEqual(h.index.requests[f"/files/{f.filename}"], h.index.requests["range"])

    def test_noRanges(self) -> None:
        """
        Where upstream answers no ranges, the wheel is downloaded once,
        whole: the metadata is read from it, and the wheel is served from
        the tree after.
        """
        f = wheel("alpha", "1.0")
        h = self.harness(f, ranges=False)
        path = self.metadataPath(h, f)
        self.assertEqual(h.get(path).body, metadataOf(f.content))
        wheelAnswer = h.get(path.removesuffix(".metadata"))
        self.assertEqual(wheelAnswer.body, f.content)
        self.assertEqual(wheelAnswer.headers["tailmirror-cache"], "hit")
        self.assertEqual(fileRequests(h.index), 2)  # the range refused, then the whole

    def test_fromKeptWheel(self) -> None:
        """
        A wheel the tree has gives its metadata without asking upstream.
        """
        f = wheel("alpha", "1.0")
        h = self.harness(f)
        path = self.metadataPath(h, f)
        self.assertEqual(h.get(path.removesuffix(".metadata")).body, f.content)
        before = dict(h.index.requests)
        self.assertEqual(h.get(path).body, metadataOf(f.content))
        self.assertEqual(dict(h.index.requests), before)

    def test_notAZip(self) -> None:
        """
        A "wheel" that is no zip is a 502 that says so, and nothing kept.
        """
        f = FakeFile("alpha-1.0-py3-none-any.whl", b"not a zip at all" * 10)
        h = self.harness(f)
        answer = h.get(self.metadataPath(h, f))
        self.assertEqual(answer.code, 502)
        self.assertIn(b"no core metadata", answer.body)
        self.assertEqual([n for _, _, names in os.walk(h.tree.root) for n in names], [])

    def test_noMetadataInside(self) -> None:
        """
        A zip without a .dist-info/METADATA is a 502 that says so.
        """
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            z.writestr("alpha/__init__.py", "")
        f = FakeFile("alpha-1.0-py3-none-any.whl", out.getvalue())
        h = self.harness(f)
        answer = h.get(self.metadataPath(h, f))
        self.assertEqual(answer.code, 502)
        self.assertIn(b"no .dist-info/METADATA", answer.body)

    def test_upstreamMetadataKept(self) -> None:
        """
        A wheel whose page gives core metadata keeps upstream's: its
        digest, and its file fetched from upstream.
        """
        f = wheel("alpha", "1.0")
        h = Harness([FakeProject("alpha", [f])])
        self.addCleanup(h.mirror.close)
        link = linksOf(h.get("/simple/alpha/", JSON))[f.filename]
        self.assertIsInstance(link["core-metadata"], dict)
        h.get(os.path.normpath("/simple/alpha/" + link["url"]) + ".metadata")
        self.assertEqual(h.index.requests[f"/files/{f.filename}.metadata"], 1)
        self.assertEqual(h.index.requests["range"], 0)

    def test_sdistOffersNone(self) -> None:
        """
        An sdist has no metadata of the mirror's own.
        """
        h = Harness(tree())
        self.addCleanup(h.mirror.close)
        [link] = linksOf(h.get("/simple/delta/", JSON)).values()
        self.assertNotIn("core-metadata", link)


class OptionsTests(SynchronousTestCase):
    """
    C{--index}, C{--index-ttl} and C{--index-ca-certs}.
    """

    def parse(self, *args: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(["--upstream", "http://127.0.0.1:1/simple/", *args])
        return options

    def test_indexes(self) -> None:
        options = self.parse("--index", "torch=http://127.0.0.1:2/whl", "--index-ttl", "torch=3600")
        self.assertEqual(options["index"], {"torch": "http://127.0.0.1:2/whl/"})
        service = tap.makeService(options)
        settings = service.mirror.settings  # type: ignore[attr-defined]
        [torch] = settings.indexes
        self.assertEqual((torch.name, torch.upstream, torch.ttl), ("torch", "http://127.0.0.1:2/whl/", 3600.0))

    def test_refused(self) -> None:
        for args, says in [
            (["--index", "torch"], "NAME=URL"),
            (["--index", "pypi=http://x/"], "cannot name an index"),
            (["--index", "simple=http://x/"], "cannot name an index"),
            (["--index", "Torch=http://x/"], "cannot name an index"),
            (["--index", "torch=ftp://x/"], "http:// or https://"),
            (["--index", "t=http://x/", "--index", "t=http://y/"], "twice"),
            (["--index-ttl", "other=60"], "names no index"),
            (["--index-ttl", "pypi=soon"], "seconds"),
        ]:
            with self.assertRaises(usage.UsageError) as caught:
                self.parse(*args)
            self.assertIn(says, str(caught.exception), args)

    def test_pypiTTL(self) -> None:
        service = tap.makeService(self.parse("--index-ttl", "pypi=5"))
        self.assertEqual(service.mirror.settings.ttl, 5.0)  # type: ignore[attr-defined]

    def test_names(self) -> None:
        self.assertEqual(indexName("cu121"), "cu121")
        for bad in ("", "root", "+f", "a/b", "x" * 65, "UP"):
            self.assertIsNone(indexName(bad))
