"""
Dependency-aware prefetch: which file a client will pick, read from its
User-Agent; what a page request then fetches ahead of the client; the
budget and priority it keeps; and the waste it counts.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any


from packaging.specifiers import SpecifierSet
from packaging.version import Version
from twisted.trial.unittest import SynchronousTestCase

from tailmirror.pages import rulesOf
from tailmirror.prefetch import _picks
from tailmirror.prefetch._choice import Candidate, candidatesOf, choose, requirementsOf
from tailmirror.prefetch._clients import OWN, clientOf
from tailmirror.pages._policy import Policy
from tailmirror.upstream._slots import Priority, Slots

from ..fakeindex import FakeFile, FakeIndex, FakeProject
from ..harness import PIP_ACCEPT, CapturedLog, Harness, Threads
from ..wheels import tree, wheel

#: What pip 24 on CPython 3.11, Debian, x86-64 sends.
PIP_AGENT = (
    'pip/24.0 {"ci":null,"cpu":"x86_64","distro":{"id":"bookworm","libc":{"lib":"glibc","version":"2.36"},'
    '"name":"Debian GNU/Linux","version":"12"},"implementation":{"name":"CPython","version":"3.11.2"},'
    '"installer":{"name":"pip","version":"24.0"},"openssl_version":"OpenSSL 3.0.11 19 Sep 2023",'
    '"python":"3.11.2","setuptools_version":"66.1.1","system":{"name":"Linux","release":"6.1.0-18-amd64"}}'
)
#: What uv on CPython 3.12, macOS 14 on Apple silicon, sends.
UV_MAC_AGENT = (
    'uv/0.5.4 {"installer":{"name":"uv","version":"0.5.4"},"python":"3.12.1","implementation":'
    '{"name":"CPython","version":"3.12.1"},"distro":{"name":"macOS","version":"14.1","id":null,"libc":null},'
    '"system":{"name":"Darwin","release":"23.1.0"},"cpu":"arm64","openssl_version":null,'
    '"setuptools_version":null,"rustc_version":null,"ci":null}'
)
WINDOWS_AGENT = (
    'pip/24.0 {"cpu":"AMD64","implementation":{"name":"CPython","version":"3.10.11"},'
    '"python":"3.10.11","system":{"name":"Windows","release":"10"}}'
)


def asking(agent: str = PIP_AGENT) -> dict[str, str]:
    return {"Accept": PIP_ACCEPT, "User-Agent": agent}


def platformWheel(name: str, version: str, tag: str, requires: tuple[str, ...] = (), **markers: Any) -> FakeFile:
    """
    A wheel for one platform: what its page and metadata say is all a
    prefetch reads of it.
    """
    made = wheel(name, version, requires, **markers)
    made.filename = f"{name}-{version}-{tag}.whl"
    return made


class ClientTests(SynchronousTestCase):
    """
    What a User-Agent says its client installs for.
    """

    def test_pipOnLinux(self) -> None:
        """
        pip's agent gives the Python version, implementation and platform:
        markers as that client evaluates them, manylinux tags up to its
        glibc, best first.
        """
        client = clientOf(PIP_AGENT)
        self.assertEqual(client.python, Version("3.11.2"))
        self.assertEqual(client.markers["python_version"], "3.11")
        self.assertEqual(client.markers["sys_platform"], "linux")
        self.assertEqual(client.markers["platform_machine"], "x86_64")
        self.assertEqual(client.markers["implementation_name"], "cpython")
        ranks = {str(tag): rank for tag, rank in client.tags.items()}
        self.assertEqual(min(ranks, key=ranks.__getitem__), "cp311-cp311-manylinux_2_36_x86_64")
        self.assertIn("cp311-abi3-manylinux2014_x86_64", ranks)
        self.assertIn("py3-none-any", ranks)
        self.assertNotIn("cp311-cp311-manylinux_2_37_x86_64", ranks)
        self.assertNotIn("cp312-cp312-manylinux_2_17_x86_64", ranks)
        self.assertLess(ranks["cp311-cp311-manylinux_2_17_x86_64"], ranks["py3-none-any"])

    def test_uvOnMac(self) -> None:
        """
        uv's agent says the same of macOS: Darwin 23 is macOS 14.
        """
        client = clientOf(UV_MAC_AGENT)
        self.assertEqual(client.markers["sys_platform"], "darwin")
        ranks = {str(tag) for tag in client.tags}
        self.assertIn("cp312-cp312-macosx_14_0_arm64", ranks)
        self.assertIn("cp312-cp312-macosx_11_0_universal2", ranks)
        self.assertNotIn("cp312-cp312-macosx_15_0_arm64", ranks)
        self.assertNotIn("cp312-cp312-manylinux_2_17_x86_64", ranks)
        # And that it resolves a level at a time, where pip does not.
        self.assertTrue(client.parallel)
        self.assertFalse(clientOf(PIP_AGENT).parallel)

    def test_windows(self) -> None:
        client = clientOf(WINDOWS_AGENT)
        self.assertEqual(client.markers["sys_platform"], "win32")
        self.assertEqual(client.markers["os_name"], "nt")
        self.assertIn("cp310-cp310-win_amd64", {str(tag) for tag in client.tags})

    def test_otherAgents(self) -> None:
        """
        An agent that says nothing of its environment, or says it wrongly,
        is taken to run where the mirror does.
        """
        for agent in (None, "", "curl/8.5.0", "pip/24.0 {not json", "pip/1 []", 'pip/1 {"python": "two"}', "x" * 9000):
            self.assertIs(clientOf(agent), OWN, agent)
        self.assertFalse(OWN.told)


def candidate(filename: str, **kwargs: Any) -> Candidate:
    page = {"files": [dict({"filename": filename, "url": f"https://files.test/{filename}",
                            "hashes": {"sha256": "ab" * 32}}, **kwargs)]}
    [found] = candidatesOf(page)
    return found


class ChoiceTests(SynchronousTestCase):
    """
    The file a client picks among a page's.
    """

    client = clientOf(PIP_AGENT)

    def pick(self, *candidates: Candidate, spec: str = "", **kwargs: Any) -> str | None:
        chosen = choose(candidates, self.client, SpecifierSet(spec), "p", **kwargs)
        return None if chosen is None else chosen.filename

    def test_newestThatFits(self) -> None:
        """
        The newest version whose Requires-Python admits the client, not
        yanked, within the requirement, final before pre-release.
        """
        files = [
            candidate("p-1.0-py3-none-any.whl"),
            candidate("p-2.0-py3-none-any.whl"),
            candidate("p-3.0-py3-none-any.whl", **{"requires-python": ">=3.12"}),
            candidate("p-2.5-py3-none-any.whl", yanked="broken"),
            candidate("p-2.9rc1-py3-none-any.whl"),
        ]
        self.assertEqual(self.pick(*files), "p-2.0-py3-none-any.whl")
        self.assertEqual(self.pick(*files, spec="<2"), "p-1.0-py3-none-any.whl")
        self.assertEqual(self.pick(*files, spec="==2.5"), "p-2.5-py3-none-any.whl")
        self.assertEqual(self.pick(*files, spec=">=2.9rc1"), "p-2.9rc1-py3-none-any.whl")
        self.assertIsNone(self.pick(*files, spec=">=4"))

    def test_bestWheelThenSdist(self) -> None:
        """
        Of a version, the wheel whose tags the client likes best; the sdist
        when no wheel fits; a wheel for another platform never.
        """
        files = [
            candidate("p-2.0.tar.gz"),
            candidate("p-2.0-py3-none-any.whl"),
            candidate("p-2.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
            candidate("p-2.0-cp311-cp311-win_amd64.whl"),
            candidate("p-3.0-cp312-cp312-manylinux_2_17_x86_64.whl"),
        ]
        self.assertEqual(self.pick(*files), "p-2.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
        self.assertEqual(self.pick(files[0], files[3]), "p-2.0.tar.gz")

    def test_newestFirst(self) -> None:
        """
        A page's candidates come newest first, and a choice that stops at
        the first older version than a final, unyanked fit picks what a
        look at every file would.
        """
        entries: list[dict[str, Any]] = []
        for version in ["1.0", "3.0rc1", "2.0", "2.5", "0.9", "2.1", "3.0.dev1", "1.5"]:
            for tag in ("py3-none-any", "cp311-cp311-manylinux_2_17_x86_64", "cp311-cp311-win_amd64"):
                entries.append({"filename": f"p-{version}-{tag}.whl", "url": f"https://files.test/p-{version}-{tag}.whl",
                                "hashes": {"sha256": "ab" * 32}})
            entries.append({"filename": f"p-{version}.tar.gz", "url": f"https://files.test/p-{version}.tar.gz",
                            "hashes": {"sha256": "cd" * 32}})
        entries[8]["yanked"] = True  # 2.0's any wheel
        entries[12]["requires-python"] = ">=3.12"  # 2.5's
        candidates = candidatesOf({"files": entries})
        versions = [c.version for c in candidates]
        self.assertEqual(versions, sorted(versions, reverse=True))
        for spec in ("", "<2.5", "==2.0", ">=3.0rc1", "<1", ">=4", "!=2.5,!=2.1"):
            every = choose(candidates, self.client, SpecifierSet(spec))
            first = choose(candidates, self.client, SpecifierSet(spec), newestFirst=True)
            self.assertEqual(first, every, spec)

    def test_wheelNames(self) -> None:
        """
        A wheel's version and tags are read from its name as packaging
        reads them; a name that is no wheel's is no candidate.
        """
        from packaging.utils import parse_wheel_filename

        good = [
            "p-1.0-py3-none-any.whl",
            "p-1.0-1-py3-none-any.whl",
            "p-1.0+local-py2.py3-none-any.whl",
            "p-2.0rc1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        ]
        for name in good:
            [found] = [candidate(name)]
            _, version, _, tags = parse_wheel_filename(name)
            self.assertEqual((found.version, found.tags), (version, tags), name)
        for bad in ["p-1.0-py3-none.whl", "p-1.0-x1-py3-none-any.whl", "p-q-1.0-py3-none-any.whl",
                    "p-notaversion-py3-none-any.whl", "p-1.0--none-any.whl"]:
            page = {"files": [{"filename": bad, "url": "https://files.test/x", "hashes": {}}]}
            self.assertEqual(candidatesOf(page), (), bad)

    def test_sdistNames(self) -> None:
        """
        An sdist's version is read from its name as packaging reads it; a
        name that is no sdist's is no candidate.
        """
        from packaging.utils import parse_sdist_filename

        for name in ["p-1.0.tar.gz", "p-q-2.0.post1.zip", "p_q-1!3.0rc2.tar.gz", "p-1.0+local.tar.gz"]:
            self.assertEqual(candidate(name).version, parse_sdist_filename(name)[1], name)
        for bad in ["p-1.0.tar.bz2", "p.tar.gz", "-1.0.tar.gz", "p-notaversion.tar.gz", "p-1.0.whl.zip.tgz"]:
            page = {"files": [{"filename": bad, "url": "https://files.test/x", "hashes": {}}]}
            self.assertEqual(candidatesOf(page), (), bad)

    def test_newestFirstStable(self) -> None:
        """
        Candidates come newest version first, and the files of one version
        (equal however they are written) in the page's order.
        """
        names = ["p-1.0.tar.gz", "p-2.0-py3-none-any.whl", "p-1.0.0-py3-none-any.whl", "p-10.0.zip",
                 "p-2.0.tar.gz", "p-2.0rc1.tar.gz", "p-1!0.1.tar.gz"]
        page = {"files": [{"filename": n, "url": f"https://files.test/{n}", "hashes": {}} for n in names]}
        self.assertEqual(
            [c.filename for c in candidatesOf(page)],
            ["p-1!0.1.tar.gz", "p-10.0.zip", "p-2.0-py3-none-any.whl", "p-2.0.tar.gz", "p-2.0rc1.tar.gz",
             "p-1.0.tar.gz", "p-1.0.0-py3-none-any.whl"],
        )

    def test_cooldown(self) -> None:
        """
        A file the policy holds back is no client's pick.
        """
        files = [
            candidate("p-1.0-py3-none-any.whl", **{"upload-time": "2024-01-01T00:00:00Z"}),
            candidate("p-2.0-py3-none-any.whl", **{"upload-time": "2024-01-09T00:00:00Z"}),
        ]
        policy = Policy(cooldown=3 * 86400)
        now = 1704758400 + 86400  # a day after 2.0's upload
        self.assertEqual(self.pick(*files, policy=policy, now=now), "p-1.0-py3-none-any.whl")
        # A rule, or a freeze date, as well.
        self.assertEqual(self.pick(*files, policy=Policy(rules=rulesOf(deny=["p==2.0"])), now=now),
                         "p-1.0-py3-none-any.whl")
        self.assertEqual(self.pick(*files, policy=Policy(excludeNewer=1704758400 - 86400), now=now),
                         "p-1.0-py3-none-any.whl")

    def test_quarantined(self) -> None:
        page = {"project-status": {"status": "quarantined"}, "files": [
            {"filename": "p-1.0.tar.gz", "url": "https://files.test/p-1.0.tar.gz", "hashes": {}}]}
        self.assertEqual(candidatesOf(page), ())

    def test_requirements(self) -> None:
        """
        Requires-Dist, by its markers for the client, with the extras
        asked for; lines that are not requirements are passed over.
        """
        metadata = (
            b"Metadata-Version: 2.1\nName: p\nVersion: 1\n"
            b"Requires-Dist: always>=1\n"
            b"Requires-Dist: winonly; sys_platform == 'win32'\n"
            b"Requires-Dist: oldpython; python_version < '3.8'\n"
            b"Requires-Dist: feature[x]; extra == 'feat'\n"
            b"Requires-Dist: not a requirement !!\n"
            b"Requires-Dist: Linux-Only; platform_system == 'Linux'\n"
        )
        names = lambda extras: [r.name for r in requirementsOf(metadata, self.client, frozenset(extras))]  # noqa: E731
        self.assertEqual(names([]), ["always", "Linux-Only"])
        self.assertEqual(names(["feat"]), ["always", "feature", "Linux-Only"])
        windows = [r.name for r in requirementsOf(metadata, clientOf(WINDOWS_AGENT), frozenset())]
        self.assertEqual(windows, ["always", "winonly"])


class SlotsTests(SynchronousTestCase):
    """
    Upstream's slots go to clients before the prefetch.
    """

    def test_clientsFirst(self) -> None:
        slots = Slots(1)
        order: list[str] = []
        slots.acquire().addCallback(lambda _: order.append("first"))
        slots.acquire(background=True).addCallback(lambda _: order.append("prefetch"))
        slots.acquire().addCallback(lambda _: order.append("client"))
        slots.acquire(background=True).addCallback(lambda _: order.append("prefetch 2"))
        self.assertEqual(order, ["first"])
        for _ in range(3):
            slots.release()
        self.assertEqual(order, ["first", "client", "prefetch", "prefetch 2"])
        slots.release()
        self.assertEqual(slots.free, 1)

    def test_cancelled(self) -> None:
        slots = Slots(1)
        slots.acquire()
        waiting = slots.acquire(background=True)
        waiting.cancel()
        self.failureResultOf(waiting)
        slots.release()
        self.assertEqual(slots.free, 1)

    def test_raised(self) -> None:
        """
        A prefetch's request that a client comes to want waits from then on
        as a client's: ahead of the other prefetches, after the clients
        that waited before.
        """
        slots = Slots(1)
        order: list[str] = []
        slots.acquire()
        wanted = Priority(background=True)
        slots.acquire(background=True).addCallback(lambda _: order.append("prefetch"))
        slots.acquire(wanted).addCallback(lambda _: order.append("wanted"))
        slots.acquire().addCallback(lambda _: order.append("client"))
        wanted.raiseTo(False)
        self.assertFalse(wanted.background)
        for _ in range(3):
            slots.release()
        self.assertEqual(order, ["client", "wanted", "prefetch"])

    def test_raisedThenCancelled(self) -> None:
        """
        A raised request given up leaves no waiter behind.
        """
        slots = Slots(1)
        slots.acquire()
        wanted = Priority(background=True)
        waiting = slots.acquire(wanted)
        wanted.raiseTo(False)
        waiting.cancel()
        self.failureResultOf(waiting)
        slots.release()
        self.assertEqual((slots.free, slots.waiting), (1, 0))

    def test_raisedOnce(self) -> None:
        """
        Raising a priority twice, or to the background, calls nothing again.
        """
        calls: list[int] = []
        priority = Priority(background=True)
        priority.whenRaised(lambda: calls.append(1))
        priority.raiseTo(True)
        self.assertEqual(calls, [])
        priority.raiseTo(False)
        priority.raiseTo(False)
        priority.whenRaised(lambda: calls.append(2))
        self.assertEqual(calls, [1])


def answerFirst(h: Harness, held: list[tuple[Any, bytes]]) -> str:
    """
    Answer the first request the fake index holds; its path.
    """
    request, content = held.pop(0)
    request.write(content)
    request.finish()
    h.flush()
    return str(request.path.decode())


def threeDependencies() -> list[FakeProject]:
    """
    app -> one, two, three.
    """
    return [
        FakeProject("app", [wheel("app", "1.0", ("one", "two", "three"))]),
        *(FakeProject(name, [wheel(name, "1.0")]) for name in ("one", "two", "three")),
    ]


def layered() -> list[FakeProject]:
    """
    app -> left, right[fast]; left -> leaf; right -> leaf, speedup (with
    its extra fast), winonly (on Windows); leaf; a second release of each
    that the client cannot use (a newer Python, or another platform).
    """
    return [
        FakeProject("app", [wheel("app", "1.0", ("left", "right[fast]"))]),
        FakeProject("left", [
            wheel("left", "1.0", ("leaf",)),
            platformWheel("left", "2.0", "cp39-cp39-win_amd64", ("notme",)),
        ]),
        FakeProject("right", [
            wheel("right", "1.0", ("leaf>=1", "speedup; extra == 'fast'", "winonly; sys_platform == 'win32'")),
            wheel("right", "9.0", ("notme",), requiresPython=">=3.99"),
        ]),
        FakeProject("leaf", [wheel("leaf", "1.0"), wheel("leaf", "1.1", yanked=True)]),
        FakeProject("speedup", [wheel("speedup", "1.0")]),
        FakeProject("winonly", [wheel("winonly", "1.0")]),
        FakeProject("notme", [wheel("notme", "1.0")]),
    ]


class PrefetchTests(SynchronousTestCase):
    """
    What a client's page request makes the mirror fetch ahead of it.
    """

    def mirror(self, projects: list[FakeProject] | None = None, **settings: Any) -> Harness:
        settings.setdefault("prefetch", "metadata")
        h = Harness(layered() if projects is None else projects, **settings)
        self.addCleanup(h.mirror.close)
        return h

    def asked(self, h: Harness) -> dict[str, int]:
        return {path: n for path, n in h.index.requests.items() if n}

    def test_tree(self) -> None:
        """
        A page request fetches, in the background, the core metadata of the
        file the client will pick, the pages of what it requires for that
        client, and so on down the tree: nothing the client will not use.
        """
        h = self.mirror()
        self.assertEqual(h.get("/simple/app/", asking()).code, 200)
        h.flush()
        self.assertEqual(
            self.asked(h),
            {
                "/simple/app/": 1,
                "/files/app-1.0-py3-none-any.whl.metadata": 1,
                "/simple/left/": 1,
                "/files/left-1.0-py3-none-any.whl.metadata": 1,
                "/simple/right/": 1,
                "/files/right-1.0-py3-none-any.whl.metadata": 1,
                "/simple/leaf/": 1,
                "/files/leaf-1.0-py3-none-any.whl.metadata": 1,
                "/simple/speedup/": 1,
                "/files/speedup-1.0-py3-none-any.whl.metadata": 1,
            },
        )
        # The client's own requests find everything there: no more upstream.
        for path in ("/simple/left/", "/simple/right/", "/simple/leaf/", "/simple/speedup/"):
            self.assertEqual(h.get(path, asking()).code, 200)
        for name in ("app-1.0", "left-1.0", "right-1.0", "leaf-1.0", "speedup-1.0"):
            page = json.loads(h.get(f"/simple/{name.split('-')[0]}/", asking()).body)
            [link] = [f["url"] for f in page["files"] if f["filename"] == f"{name}-py3-none-any.whl"]
            path = posixpath.normpath(f"/simple/{name.split('-')[0]}/{link}.metadata")
            self.assertEqual(h.get(path, asking()).code, 200)
        self.assertEqual(sum(h.index.requests.values()), 10)
        figures = h.mirror.prefetch.figures()  # type: ignore[union-attr]
        self.assertEqual(figures["prefetched"], {"page": 4, "metadata": 5, "file": 0})
        self.assertEqual(figures["used"], {"page": 4, "metadata": 5, "file": 0})
        self.assertEqual(figures["pending"], 0)

    def test_aheadOfTheDisk(self) -> None:
        """
        The prefetch reads a core metadata file it downloaded from the
        download itself, once verified: the whole tree is fetched while no
        file of it is in the tree yet (the disk is slow to make them
        durable), and nothing of it went through the pool but that, the
        journal's records, and the one page the client waited for, listed
        for the prefetch's choice from the journal after the client had it
        (the pages the prefetch fetched itself are listed as they are
        parsed).
        """
        threads = Threads(held=("_place",))
        h = self.mirror(threads=threads)
        self.assertEqual(h.get("/simple/app/", asking()).code, 200)
        h.flush()
        self.assertEqual(len(self.asked(h)), 10)
        self.assertEqual(len(threads.waiting), 5)
        self.assertEqual(set(threads.calls) - {"inventory"}, {"_place", "temporary", "readAndMake", "write"})
        self.assertEqual(threads.calls.count("readAndMake"), 1)
        threads.release()
        h.flush()
        self.assertEqual(len(self.asked(h)), 10)

    def test_otherClient(self) -> None:
        """
        A client on Windows gets Windows' pick, and what its markers ask.
        """
        h = self.mirror()
        h.get("/simple/app/", asking(WINDOWS_AGENT))
        h.flush()
        asked = self.asked(h)
        # CPython 3.10 cannot use left 2.0's cp39 wheel: 1.0 is its pick.
        self.assertIn("/files/left-1.0-py3-none-any.whl.metadata", asked)
        self.assertIn("/simple/winonly/", asked)

    def test_depth(self) -> None:
        """
        --prefetch-depth bounds how far below the page asked for it goes.
        """
        h = self.mirror(prefetchDepth=1)
        h.get("/simple/app/", asking())
        h.flush()
        asked = self.asked(h)
        self.assertIn("/files/left-1.0-py3-none-any.whl.metadata", asked)
        self.assertNotIn("/simple/leaf/", asked)

    def test_off(self) -> None:
        h = self.mirror(prefetch="off")
        h.get("/simple/app/", asking())
        h.flush()
        self.assertEqual(self.asked(h), {"/simple/app/": 1})
        self.assertEqual(json.loads(h.get("/+status?format=json").body)["prefetch"]["mode"], "off")

    def test_files(self) -> None:
        """
        --prefetch files fetches the predicted files too, once each.
        """
        h = self.mirror(prefetch="files")
        h.get("/simple/app/", asking())
        h.flush()
        asked = self.asked(h)
        for name in ("app", "left", "right", "leaf", "speedup"):
            self.assertEqual(asked.get(f"/files/{name}-1.0-py3-none-any.whl"), 1, name)
        self.assertNotIn("/files/left-2.0-cp39-cp39-win_amd64.whl", asked)

    def test_parallelClient(self) -> None:
        """
        uv asks for each level's pages and metadata itself, at once: with
        --prefetch metadata nothing is fetched ahead of it (it is still
        counted among the clients); with --prefetch files, the file whose
        metadata it asks for (its pick) is fetched at once, nothing else.
        """
        h = self.mirror()
        h.get("/simple/app/", asking(UV_MAC_AGENT))
        h.flush()
        self.assertEqual(self.asked(h), {"/simple/app/": 1})
        figures = h.mirror.prefetch.figures()  # type: ignore[union-attr]
        self.assertEqual(sum(figures["prefetched"].values()), 0)
        self.assertEqual(list(figures["clients"]), ["uv 0.5.4 on CPython 3.12.1, Darwin arm64"])
        h = self.mirror(prefetch="files")
        path = linkOf(h, "right", "right-1.0-py3-none-any.whl", UV_MAC_AGENT)
        h.flush()
        self.assertEqual(self.asked(h), {"/simple/right/": 1})
        self.assertEqual(h.get(path + ".metadata", asking(UV_MAC_AGENT)).code, 200)
        h.flush()
        self.assertEqual(
            self.asked(h),
            {"/simple/right/": 1, "/files/right-1.0-py3-none-any.whl.metadata": 1, "/files/right-1.0-py3-none-any.whl": 1},
        )
        self.assertEqual(h.get(path, asking(UV_MAC_AGENT)).code, 200)
        self.assertEqual(self.asked(h)["/files/right-1.0-py3-none-any.whl"], 1)
        figures = h.mirror.prefetch.figures()  # type: ignore[union-attr]
        self.assertEqual((figures["prefetched"]["file"], figures["used"]["file"]), (1, 1))

    def test_waste(self) -> None:
        """
        What was prefetched and never asked for within the TTL is counted as
        waste: in the log, on the status page and in the metrics.
        """
        h = self.mirror(ttl=300)
        log = CapturedLog(self)
        h.get("/simple/app/", asking())
        h.flush()
        h.get("/simple/left/", asking())
        h.clock.advance(301)
        h.clock.advance(60)
        figures = json.loads(h.get("/+status?format=json").body)["prefetch"]
        self.assertEqual(figures["used"]["page"], 1)
        self.assertEqual(figures["wasted"], {"page": 3, "metadata": 5, "file": 0})
        self.assertEqual(figures["pending"], 0)
        self.assertIn("prefetch: 8 fetched and not asked for within the TTL", log.text())
        metrics = h.get("/+metrics").body.decode()
        self.assertIn('tailmirror_prefetch_wasted_total{kind="metadata"} 5.0', metrics)
        self.assertIn('tailmirror_prefetch_used_total{kind="page"} 1.0', metrics)
        self.assertIn("Prefetch", h.get("/+status").body.decode())

    def test_onceForAllClients(self) -> None:
        """
        Many page requests of one client's tree prefetch it once.
        """
        h = self.mirror()
        for _ in range(3):
            h.get("/simple/app/", asking())
            h.get("/simple/right/", asking())
        h.flush()
        self.assertTrue(all(n == 1 for n in h.index.requests.values()), h.index.requests)

    def test_upstreamFails(self) -> None:
        """
        A prefetch that meets a failing upstream stops there, quietly; the
        client's answer is the mirror's usual one.
        """
        h = self.mirror()
        del h.index.projects["leaf"]
        h.get("/simple/app/", asking())
        h.flush()
        self.assertEqual(h.get("/simple/leaf/", asking()).code, 404)
        self.assertEqual(h.mirror.prefetch.figures()["prefetched"]["page"], 3)  # type: ignore[union-attr]

    def test_clientJoins(self) -> None:
        """
        A client asking for a file the prefetch is fetching joins that
        download: one upstream request, and the prefetch's was of use.
        """
        h = self.mirror()
        h.index.holdFiles = True
        page = json.loads(h.get("/simple/app/", asking()).body)
        h.flush()
        self.assertEqual([r.path for r, _ in h.index.heldFiles], [b"/files/app-1.0-py3-none-any.whl.metadata"])
        [link] = [f["url"] for f in page["files"]]
        waiting = h.start("GET", posixpath.normpath(f"/simple/app/{link}.metadata"), asking())
        h.flush()
        h.index.holdFiles = False
        for request, content in h.index.heldFiles:
            request.write(content)
            request.finish()
        answer = h.finish(waiting)
        self.assertEqual(answer.code, 200)
        self.assertIn(b"Requires-Dist: left", answer.body)
        self.assertEqual(h.index.requests["/files/app-1.0-py3-none-any.whl.metadata"], 1)
        figures = h.mirror.prefetch.figures()  # type: ignore[union-attr]
        self.assertEqual(figures["used"]["metadata"], 1)

    def test_clientJumpsTheQueue(self) -> None:
        """
        A client asking for a file the prefetch has queued behind its other
        downloads joins that download, which then waits as a client's: it
        is the next to ask upstream, not the last.
        """
        h = self.mirror(threeDependencies(), fileRequests=1)
        h.index.holdFiles = True

        def release() -> str:
            return answerFirst(h, h.index.heldFiles)

        self.assertEqual(h.get("/simple/app/", asking()).code, 200)
        h.flush()
        self.assertEqual(release(), "/files/app-1.0-py3-none-any.whl.metadata")
        # The prefetch downloads one's metadata, with two's and three's
        # queued behind it; a client asks for three's.
        self.assertEqual([r.path for r, _ in h.index.heldFiles], [b"/files/one-1.0-py3-none-any.whl.metadata"])
        [link] = [f["url"] for f in json.loads(h.get("/simple/three/", asking()).body)["files"]]
        waiting = h.start("GET", posixpath.normpath(f"/simple/three/{link}.metadata"), asking())
        h.flush()
        self.assertEqual(release(), "/files/one-1.0-py3-none-any.whl.metadata")
        self.assertEqual(release(), "/files/three-1.0-py3-none-any.whl.metadata")
        answer = h.finish(waiting)
        self.assertEqual(answer.code, 200)
        self.assertIn(b"Name: three", answer.body)
        self.assertEqual(release(), "/files/two-1.0-py3-none-any.whl.metadata")
        self.assertEqual(h.index.requests["/files/three-1.0-py3-none-any.whl.metadata"], 1)

    def test_joiningTakesNoSlot(self) -> None:
        """
        The prefetch's slots bound what it asks upstream, not what it waits
        for: joining a client's fetch under way takes none, so the
        prefetch asks for the next thing meanwhile.
        """
        h = self.mirror(threeDependencies(), prefetchRequests=1)
        h.index.holdPages = True
        # uv asks for one's page itself (nothing is prefetched for uv).
        uv = h.start("GET", "/simple/one/", asking(UV_MAC_AGENT))
        pip = h.start("GET", "/simple/app/", asking())
        h.flush()
        [app] = [held for held in h.index.heldPages if held[0].path == b"/simple/app/"]
        h.index.heldPages.remove(app)
        answerFirst(h, [app])
        self.assertEqual(h.finish(pip).code, 200)
        # pip's tree: one's page is joined, two's asked for with the one
        # slot, three's waits for it.
        self.assertEqual([r.path for r, _ in h.index.heldPages], [b"/simple/one/", b"/simple/two/"])
        h.index.holdPages = False
        while h.index.heldPages:
            answerFirst(h, h.index.heldPages)
        self.assertEqual(h.finish(uv).code, 200)
        self.assertEqual(self.asked(h)["/simple/three/"], 1)
        self.assertEqual(set(n for path, n in self.asked(h).items() if path.startswith("/simple/")), {1})
        self.assertEqual(h.mirror.prefetch.slots.tokens, 1)  # type: ignore[union-attr]

    def test_clientJoinsPage(self) -> None:
        """
        A client asking for a page the prefetch has queued joins that
        refresh, which then waits as a client's.
        """
        h = self.mirror(threeDependencies(), pageRequests=1)
        h.index.holdPages = True

        def release() -> str:
            return answerFirst(h, h.index.heldPages)

        waiting = h.start("GET", "/simple/app/", asking())
        h.flush()
        self.assertEqual(release(), "/simple/app/")
        self.assertEqual(h.finish(waiting).code, 200)
        self.assertEqual([r.path for r, _ in h.index.heldPages], [b"/simple/one/"])
        waiting = h.start("GET", "/simple/three/", asking())
        h.flush()
        self.assertEqual(release(), "/simple/one/")
        self.assertEqual(release(), "/simple/three/")
        self.assertEqual(h.finish(waiting).code, 200)
        self.assertEqual(release(), "/simple/two/")
        self.assertEqual(h.index.requests["/simple/three/"], 1)

    def test_otherIndex(self) -> None:
        """
        A page of another index (--index) prefetches from that index.
        """
        other = FakeIndex(layered())
        h = self.mirror([], others={"second": other})
        self.assertEqual(h.get("/second/simple/app/", asking()).code, 200)
        h.flush()
        self.assertEqual(other.requests["/simple/leaf/"], 1)
        self.assertEqual(other.requests["/files/leaf-1.0-py3-none-any.whl.metadata"], 1)
        self.assertEqual(sum(h.index.requests.values()), 0)

    def test_sdistWithoutMetadata(self) -> None:
        """
        Where the pick has no core metadata (an sdist), the tree ends there.
        """
        h = self.mirror(tree())
        h.get("/simple/alpha/", asking())
        h.flush()
        asked = self.asked(h)
        self.assertIn("/simple/delta/", asked)
        self.assertFalse([p for p in asked if p.startswith("/files/delta")])


class CheckedAheadTests(SynchronousTestCase):
    """
    pip asks for every page checked with upstream (C{max-age=0}): once its
    pages are older than the revalidation floor, the first page it asks for
    has the pages of its tree checked ahead of it, side by side, and its
    own requests for them find them checked.
    """

    TREE = ("/simple/app/", "/simple/left/", "/simple/right/", "/simple/leaf/", "/simple/speedup/")

    def install(self, h: Harness, agent: str = PIP_AGENT, revalidate: bool = True) -> None:
        """
        Ask for the pages of the tree one at a time, as pip does.
        """
        headers = dict(asking(agent), **({"Cache-Control": "max-age=0"} if revalidate else {}))
        for path in self.TREE:
            self.assertEqual(h.get(path, headers).code, 200)
            h.flush()

    def pages(self, h: Harness) -> dict[str, int]:
        return {path: n for path, n in h.index.requests.items() if n and path.startswith("/simple/")}

    def mirror(self, **settings: Any) -> Harness:
        h = Harness(layered(), prefetch="metadata", ttl=3600, revalidateFloor=60, **settings)
        self.addCleanup(h.mirror.close)
        self.install(h)
        self.assertEqual(self.pages(h), dict.fromkeys(self.TREE, 1))
        return h

    def test_checkedAhead(self) -> None:
        """
        Past the floor, the first page asked for has every page of the tree
        checked with upstream, before the client asks for it; its requests
        then ask upstream nothing more.  Each check counts as prefetched,
        and as of use once the client asks for its page.
        """
        h = self.mirror()
        before = h.mirror.prefetch.figures()  # type: ignore[union-attr]
        h.clock.advance(61)
        h.index.holdPages = True
        waiting = h.start("GET", "/simple/app/", dict(asking(), **{"Cache-Control": "max-age=0"}))
        h.flush()
        self.assertEqual([r.path for r, _ in h.index.heldPages], [b"/simple/app/"])
        answerFirst(h, h.index.heldPages)
        self.assertEqual(h.finish(waiting).code, 200)
        # app's page named its requirements: theirs are checked side by
        # side, before the client asks for any.
        self.assertEqual(sorted(r.path for r, _ in h.index.heldPages), [b"/simple/left/", b"/simple/right/"])
        h.index.holdPages = False
        while h.index.heldPages:
            answerFirst(h, h.index.heldPages)
        self.assertEqual(self.pages(h), dict.fromkeys(self.TREE, 2))
        self.install(h)
        self.assertEqual(self.pages(h), dict.fromkeys(self.TREE, 2))
        after = h.mirror.prefetch.figures()  # type: ignore[union-attr]
        self.assertEqual(after["prefetched"]["page"] - before["prefetched"]["page"], 4)
        self.assertEqual(after["used"]["page"] - before["used"]["page"], 4)

    def test_withinTheFloor(self) -> None:
        """
        Within the floor, nothing is checked again, ahead or not.
        """
        h = self.mirror()
        h.clock.advance(59)
        self.install(h)
        self.assertEqual(self.pages(h), dict.fromkeys(self.TREE, 1))

    def test_notAsked(self) -> None:
        """
        A client that does not ask for pages checked with upstream has
        nothing checked for it, while they are fresh.
        """
        h = self.mirror()
        h.clock.advance(61)
        self.install(h, revalidate=False)
        self.assertEqual(self.pages(h), dict.fromkeys(self.TREE, 1))

    def test_floorZero(self) -> None:
        """
        With a floor of 0, where each request is checked anyway, nothing is
        checked ahead: each page once per request, never twice.
        """
        h = Harness(layered(), prefetch="metadata", ttl=3600, revalidateFloor=0)
        self.addCleanup(h.mirror.close)
        self.install(h)
        before = self.pages(h)
        self.install(h)
        self.assertEqual(self.pages(h), {path: n + 1 for path, n in before.items()})


def linkOf(h: Harness, project: str, filename: str, agent: str = PIP_AGENT) -> str:
    """
    The mirror's path of a file, from its project's page.
    """
    page = json.loads(h.get(f"/simple/{project}/", asking(agent)).body)
    [link] = [f["url"] for f in page["files"] if f["filename"] == filename]
    return posixpath.normpath(f"/simple/{project}/{link}")


def wheelOf(name: str) -> tuple[str, str]:
    """
    A project of L{layered} and its pure wheel of C{name} (C{project-version}).
    """
    return name.split("-")[0], f"{name}-py3-none-any.whl"


class PickedTests(SynchronousTestCase):
    """
    A client that resolves one requirement at a time, then downloads what
    it picked one file at a time (pip): once it asks for the first file
    whose metadata it had, the mirror downloads the others ahead of it.
    """

    def setUp(self) -> None:
        self.h = Harness(layered(), prefetch="metadata")
        self.addCleanup(self.h.mirror.close)

    def resolve(self, *names: str, agent: str = PIP_AGENT) -> dict[str, str]:
        """
        Ask for the core metadata of each pick, as a resolving client does;
        the path of each pick's file, by its name.
        """
        paths = {}
        for name in names:
            project, filename = wheelOf(name)
            paths[name] = linkOf(self.h, project, filename, agent)
            self.assertEqual(self.h.get(paths[name] + ".metadata", asking(agent)).code, 200)
        self.h.flush()
        return paths

    def wheels(self) -> dict[str, int]:
        """
        The files (not metadata) asked of upstream, and how often.
        """
        return {path: n for path, n in self.h.index.requests.items() if n and path.endswith(".whl")}

    def download(self, path: str, agent: str = PIP_AGENT) -> None:
        self.assertEqual(self.h.get(path, asking(agent)).code, 200)
        self.h.flush()

    def test_pickedAfterResolution(self) -> None:
        """
        While it resolves, no file is fetched (a run that only resolves
        costs nothing more); its first download fetches every other file it
        picked, once each, and its own downloads of them find them there.
        """
        names = ("app-1.0", "left-1.0", "right-1.0", "leaf-1.0", "speedup-1.0")
        paths = self.resolve(*names)
        self.assertEqual(self.wheels(), {})
        self.download(paths["app-1.0"])
        expected = {f"/files/{wheelOf(name)[1]}": 1 for name in names}
        self.assertEqual(self.wheels(), expected)
        for name in names[1:]:
            self.download(paths[name])
        self.assertEqual(self.wheels(), expected)
        figures = self.h.mirror.prefetch.figures()  # type: ignore[union-attr]
        self.assertEqual((figures["prefetched"]["file"], figures["used"]["file"]), (4, 4))
        # Done: its next downloads fetch nothing more.
        self.download(paths["leaf-1.0"])
        self.assertEqual(self.wheels(), expected)

    def test_lastPickOfAProject(self) -> None:
        """
        Of a project whose metadata it asked for twice (it backtracked),
        the file of its last pick is fetched; a file whose metadata it
        never asked for (it needed the whole file to resolve) is no sign
        that its resolution is over.
        """
        paths = self.resolve("app-1.0", "leaf-1.1", "leaf-1.0")
        [nine] = [f["url"] for f in json.loads(self.h.get("/simple/right/", asking()).body)["files"]
                  if f["filename"].startswith("right-9.0")]
        self.download(posixpath.normpath(f"/simple/right/{nine}"))
        self.assertEqual(self.wheels(), {"/files/right-9.0-py3-none-any.whl": 1})
        self.download(paths["app-1.0"])
        self.assertEqual(set(self.wheels()), {
            "/files/right-9.0-py3-none-any.whl", "/files/app-1.0-py3-none-any.whl", "/files/leaf-1.0-py3-none-any.whl",
        })

    def test_eachClientItsOwn(self) -> None:
        """
        Another client's download (another agent) fetches nothing of this
        one's picks; uv, which asks for all its files at once itself, is
        left alone.
        """
        paths = self.resolve("app-1.0", "leaf-1.0")
        self.resolve("left-1.0", agent=UV_MAC_AGENT)
        self.download(paths["app-1.0"], WINDOWS_AGENT)
        self.download(self.resolve("leaf-1.0", agent=UV_MAC_AGENT)["leaf-1.0"], UV_MAC_AGENT)
        self.assertEqual(set(self.wheels()), {"/files/app-1.0-py3-none-any.whl", "/files/leaf-1.0-py3-none-any.whl"})
        self.download(paths["leaf-1.0"])
        self.assertEqual(set(self.wheels()), {"/files/app-1.0-py3-none-any.whl", "/files/leaf-1.0-py3-none-any.whl"})
        self.download(self.resolve("app-1.0", "left-1.0", agent=WINDOWS_AGENT)["app-1.0"], WINDOWS_AGENT)
        self.assertIn("/files/left-1.0-py3-none-any.whl", self.wheels())

    def test_forgotten(self) -> None:
        """
        A client's picks are forgotten a TTL after its last metadata
        request, and the longest idle client's first when there are more
        than L{PICKED_MAX} picks in all.
        """
        self.h = Harness(layered(), prefetch="metadata", ttl=300)
        self.addCleanup(self.h.mirror.close)
        paths = self.resolve("app-1.0", "leaf-1.0")
        self.h.clock.advance(301)
        self.h.clock.advance(60)
        self.download(paths["app-1.0"])
        self.assertEqual(set(self.wheels()), {"/files/app-1.0-py3-none-any.whl"})
        self.patch(_picks, "PICKED_MAX", 3)
        other = PIP_AGENT.replace("pip/24.0", "pip/24.1")
        first = self.resolve("left-1.0", "right-1.0")
        second = self.resolve("leaf-1.0", "speedup-1.0", agent=other)
        self.download(first["left-1.0"])
        self.assertNotIn("/files/right-1.0-py3-none-any.whl", self.wheels())
        self.download(second["leaf-1.0"], other)
        self.assertIn("/files/speedup-1.0-py3-none-any.whl", self.wheels())
        self.assertEqual(self.h.mirror.prefetch._picks.files, 0)  # type: ignore[union-attr]


class LogTests(SynchronousTestCase):
    def test_metadataNamed(self) -> None:
        """
        A core metadata file's download is logged by its own name, not by
        its wheel's.
        """
        h = Harness(layered(), prefetch="metadata")
        self.addCleanup(h.mirror.close)
        log = CapturedLog(self)
        h.get("/simple/leaf/", asking())
        h.flush()
        self.assertIn("kept leaf-1.0-py3-none-any.whl.metadata:", log.text())
        self.assertNotIn("kept leaf-1.0-py3-none-any.whl:", log.text())
