"""
End to end: real pip, uv, Poetry and PDM install a dependency tree of real
wheels and an sdist through the real C{twistd tailmirror}, from a fake
upstream on 127.0.0.1; then again with that upstream gone; then from a
hashed lock of file URLs, before any page was asked for.
"""

from __future__ import annotations

import http.client
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tailmirror.base._layout import mirrorPath

from ..processes import (
    INSTALLED,
    FakeUpstreamProcess,
    MirrorProcess,
    freshVenv,
    imported,
    pdmInstall,
    pipInstall,
    poetryInstall,
    uvInstall,
)
from ..fakeindex import sdist
from ..wheels import tree



@pytest.fixture
def upstream() -> Iterator[FakeUpstreamProcess]:
    process = FakeUpstreamProcess("--projects", "0", "--tree")
    yield process
    process.stop()


def upstreamStats(upstream: FakeUpstreamProcess) -> dict[str, int]:
    return upstream.stats()


def installBoth(mirror: MirrorProcess, tmp_path: Path, label: str) -> None:
    """
    Install the tree through the mirror with pip, then with uv, each into a
    fresh venv, and check that it imports.
    """
    for name, install in (("pip", pipInstall), ("uv", uvInstall)):
        python = freshVenv(tmp_path / f"{name}-{label}")
        install(python, "--index-url", mirror.url, "alpha")
        assert imported(python) == INSTALLED, name


def test_installThroughMirror(upstream: FakeUpstreamProcess, tmp_path: Path) -> None:
    """
    pip and uv install the tree through the mirror; with upstream stopped
    they install it again, everything from the mirror.
    """
    mirror = MirrorProcess(upstream.url, tmp_path / "cache")
    try:
        installBoth(mirror, tmp_path, "first")
        stats = upstreamStats(upstream)
        files = {path: n for path, n in stats.items() if path.startswith("/files/")}
        # Each file once, whoever asked; wheels' metadata files were used.
        assert set(files.values()) == {1}, files
        assert "/files/beta-1.0-py3-none-any.whl.metadata" in files
        assert "/files/delta-1.0.tar.gz" in files
        upstream.stop()
        installBoth(mirror, tmp_path, "again")
    finally:
        mirror.stop()
    assert "Traceback" not in mirror.logText()


def test_poetryAndPdm(upstream: FakeUpstreamProcess, tmp_path: Path) -> None:
    """
    Poetry and PDM lock and install the tree through the mirror, each file
    fetched from upstream once; with upstream stopped, both do it again
    in new projects with new caches, everything from the mirror.
    """
    mirror = MirrorProcess(upstream.url, tmp_path / "cache")
    try:
        for label in ("first", "again"):
            for name, install in (("poetry", poetryInstall), ("pdm", pdmInstall)):
                python = install(tmp_path / f"{name}-{label}", mirror.url)
                assert imported(python) == INSTALLED, (name, label)
            if label == "first":
                files = {p: n for p, n in upstreamStats(upstream).items() if p.startswith("/files/")}
                assert set(files.values()) == {1}, files
                assert "/files/delta-1.0.tar.gz" in files
                upstream.stop()
    finally:
        mirror.stop()
    assert "Traceback" not in mirror.logText()


def test_hashedLockBeforeAnyPage(upstream: FakeUpstreamProcess, tmp_path: Path) -> None:
    """
    A requirements file of the mirror's file URLs with their hashes, the
    way a lock file names them, installs through a mirror that has not
    seen any page yet, and again after a restart with upstream gone.
    """
    cache = tmp_path / "cache"
    MirrorProcess(upstream.url, cache).stop()  # started once, then restarted: nothing asked yet
    mirror = MirrorProcess(upstream.url, cache)
    lines = []
    for project in tree():
        f = project.files[-1]
        url = f"http://127.0.0.1:{mirror.port}/" + mirrorPath(f.filename, "", {"sha256": f.sha256})
        lines.append(f"{project.name} @ {url} --hash=sha256:{f.sha256}")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(lines) + "\n")

    def installLocked(label: str) -> None:
        try:
            python = freshVenv(tmp_path / label)
            pipInstall(python, "--no-index", "--no-deps", "--require-hashes", "-r", str(requirements))
            assert imported(python) == INSTALLED
        finally:
            mirror.stop()
        assert "Traceback" not in mirror.logText()

    installLocked("locked")
    upstream.stop()
    mirror = MirrorProcess(upstream.url, cache, port=mirror.port)
    installLocked("locked-again")


def test_thirtyClientsOneDownload(tmp_path: Path) -> None:
    """
    Thirty clients ask for one cold file, which upstream sends slowly: one
    upstream download, thirty identical, correct bodies.
    """
    size = 2 * 1024 * 1024
    f = sdist("sized", "1.0", size=size)
    upstream = FakeUpstreamProcess("--projects", "0", "--sized", str(size), "--chunk-delay", "0.01")
    mirror = MirrorProcess(upstream.url, tmp_path / "cache")
    url = f"http://127.0.0.1:{mirror.port}/" + mirrorPath(f.filename, "", {"sha256": f.sha256})
    bodies: list[bytes] = []
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                bodies.append(response.read())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    try:
        threads = [threading.Thread(target=fetch) for _ in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert errors == []
        assert len(bodies) == 30
        assert set(bodies) == {f.content}
        assert upstreamStats(upstream)["/files/sized-1.0.tar.gz"] == 1
    finally:
        mirror.stop()
        upstream.stop()
    assert "Traceback" not in mirror.logText()


def test_corruptFileNeverWhole(tmp_path: Path) -> None:
    """
    Upstream sends wrong bytes for a file's hash: over a real socket, no
    client gets a whole response and nothing is kept; once upstream is
    fixed, the file comes through.
    """
    size = 1024 * 1024
    f = sdist("sized", "1.0", size=size)
    args = ("--projects", "0", "--sized", str(size), "--chunk-delay", "0.005")
    upstream = FakeUpstreamProcess(*args, "--corrupt", f.filename)
    cache = tmp_path / "cache"
    mirror = MirrorProcess(upstream.url, cache)
    url = f"http://127.0.0.1:{mirror.port}/" + mirrorPath(f.filename, "", {"sha256": f.sha256})
    try:
        outcomes = []

        def fetch() -> None:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    outcomes.append(response.read())
            except Exception as e:  # noqa: BLE001 - what the client saw
                outcomes.append(e)

        threads = [threading.Thread(target=fetch) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(outcomes) == 3
        assert not [o for o in outcomes if isinstance(o, bytes)], "a client got a whole body"
        assert all(isinstance(o, (http.client.IncompleteRead, ConnectionResetError, urllib.error.HTTPError)) for o in outcomes), outcomes
        assert not [p for p in (cache / "+files").rglob("*") if p.is_file()]
        assert not list((cache / "+tmp").iterdir())
        assert "sent a corrupt file" in mirror.logText()
        upstream.stop()
        upstream = FakeUpstreamProcess(*args, port=upstream.port)
        with urllib.request.urlopen(url, timeout=60) as response:
            assert response.read() == f.content
    finally:
        mirror.stop()
        upstream.stop()
    assert "Traceback" not in mirror.logText()
