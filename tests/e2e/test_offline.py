"""
Offline and air-gapped: warming a mirror from requirements and lock files,
and exporting its cache as a static index that pip and uv install from
with no mirror and no upstream running.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tailmirror.offline._export import export
from tailmirror.offline._warm import readFile

from ..processes import (
    INSTALLED,
    REPO,
    FakeUpstreamProcess,
    MirrorProcess,
    freePort,
    freshVenv,
    imported,
    pipInstall,
    uvInstall,
    waitForHTTP,
)
from ..wheels import tree


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_requirements(tmp_path: Path) -> None:
    """
    Pins, hashes (on continued lines), includes, markers, comments and
    pip's own options.
    """
    write(tmp_path / "base.txt", "Gamma==2.0  # a comment\n")
    req = write(tmp_path / "requirements.txt", (
        "-r base.txt\n"
        "--index-url http://elsewhere.invalid/simple/\n"
        "alpha==1.1 \\\n    --hash=sha256:AAAA \\\n    --hash=sha256:bbbb\n"
        "beta>=1.0\n"
        "never==1.0; python_version < '3'\n"
        "# delta==9\n"
    ))
    found = {w.project: w for w in readFile(str(req))}
    assert set(found) == {"gamma", "alpha", "beta"}
    assert found["alpha"].version == "1.1" and found["alpha"].hashes == {"aaaa", "bbbb"}
    assert found["gamma"].version == "2.0"
    assert found["beta"].version is None


def test_locks(tmp_path: Path) -> None:
    pylock = write(tmp_path / "pylock.toml", (
        'lock-version = "1.0"\n'
        "[[packages]]\nname = \"Alpha\"\nversion = \"1.1\"\n"
        "wheels = [{ name = \"alpha-1.1-py3-none-any.whl\", url = \"https://elsewhere.invalid/a.whl\", "
        "hashes = { sha256 = \"abc\" } }]\n"
        "[[packages]]\nname = \"never\"\nversion = \"1\"\nmarker = \"python_version < '3'\"\n"
    ))
    (alpha,) = readFile(str(pylock))
    assert (alpha.project, alpha.version, alpha.filenames, alpha.hashes) == (
        "alpha", "1.1", {"alpha-1.1-py3-none-any.whl"}, {"abc"})
    uvlock = write(tmp_path / "uv.lock", (
        "version = 1\n"
        "[[package]]\nname = \"consumer\"\nversion = \"0.1\"\nsource = { virtual = \".\" }\n"
        "[[package]]\nname = \"delta\"\nversion = \"1.0\"\nsource = { registry = \"https://elsewhere.invalid/simple\" }\n"
        "sdist = { url = \"https://elsewhere.invalid/d/delta-1.0.tar.gz\", hash = \"sha256:DEF\", size = 10 }\n"
    ))
    (delta,) = readFile(str(uvlock))
    assert (delta.project, delta.filenames, delta.hashes) == ("delta", {"delta-1.0.tar.gz"}, {"def"})


def pylockOfTree(path: Path) -> Path:
    """
    A pylock.toml naming every file of the test tree, its URLs on a host
    that does not exist (the mirror must never use them).
    """
    lines = ['lock-version = "1.0"']
    for project in tree():
        lines.append(f'[[packages]]\nname = "{project.name}"')
        dists = []
        for f in project.files:
            dists.append(f'{{ name = "{f.filename}", url = "https://elsewhere.invalid/{f.filename}", '
                         f'hashes = {{ sha256 = "{f.sha256}" }} }}')
        wheels = [d for d in dists if ".whl" in d]
        sdists = [d for d in dists if ".whl" not in d]
        if wheels:
            lines.append(f"wheels = [{', '.join(wheels)}]")
        if sdists:
            lines.append(f"sdist = {sdists[0]}")
    return write(path, "\n".join(lines) + "\n")


def warmCommand(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tailmirror", "warm", *args],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)),
    )


@pytest.fixture
def warmed(tmp_path: Path) -> Iterator[Path]:
    """
    A mirror's cache warmed from a pylock.toml of the test tree; the mirror
    and its upstream are stopped when the test runs.
    """
    upstream = FakeUpstreamProcess("--projects", "0", "--tree")
    cache = tmp_path / "cache"
    mirror = MirrorProcess(upstream.url, cache)
    try:
        lock = pylockOfTree(tmp_path / "pylock.toml")
        first = warmCommand(str(lock), "--mirror", mirror.url)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "9 fetched from upstream, 0 already cached, 0 failed" in first.stdout, first.stdout
        again = warmCommand(str(lock), "--mirror", mirror.url)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "0 fetched from upstream, 9 already cached" in again.stdout, again.stdout
        upstream.stop()
        # Everything a full install needs is on the mirror now.
        python = freshVenv(tmp_path / "venv-mirror")
        pipInstall(python, "--index-url", mirror.url, "alpha", "delta")
        assert imported(python) == INSTALLED
    finally:
        mirror.stop()
        upstream.stop()
    yield cache


def test_warmFailures(tmp_path: Path) -> None:
    """
    What cannot be had is reported with its reason, and the exit status
    is 1.
    """
    upstream = FakeUpstreamProcess("--projects", "0", "--tree")
    mirror = MirrorProcess(upstream.url, tmp_path / "cache")
    try:
        req = write(tmp_path / "requirements.txt", "alpha==1.1 --hash=sha256:" + "0" * 64 + "\nnonesuch==1.0\n")
        result = warmCommand(str(req), "--mirror", mirror.url)
    finally:
        mirror.stop()
        upstream.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not on the mirror's page" in result.stderr
    assert "the page of nonesuch: 404" in result.stderr


def test_warmTheMirrorsRoot(tmp_path: Path) -> None:
    """
    The mirror's root is taken for its Simple API root; a URL that is no
    Simple index is said in one line (exit status 2), not a 404 for each
    project.
    """
    upstream = FakeUpstreamProcess("--projects", "0", "--tree")
    mirror = MirrorProcess(upstream.url, tmp_path / "cache")
    try:
        req = write(tmp_path / "requirements.txt", "gamma==2.0\n")
        root = warmCommand(str(req), "--mirror", mirror.url.replace("/simple/", "/"))
        assert root.returncode == 0, root.stdout + root.stderr
        wrong = warmCommand(str(req), "--mirror", mirror.url.replace("/simple/", "/+status"))
    finally:
        mirror.stop()
        upstream.stop()
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert wrong.stderr.count("\n") == 1 and "not a Simple index" in wrong.stderr, wrong.stderr
    assert "the page of gamma" not in wrong.stderr


def test_exportInstalls(warmed: Path, tmp_path: Path) -> None:
    """
    An export of the warmed cache: pip and uv install from it as a file://
    index and served by python -m http.server, with no mirror and no
    upstream running; a second export copies nothing.
    """
    target = tmp_path / "export"
    done = export(str(warmed), str(target))
    assert (done.projects, done.files) == (4, 5)
    assert "only the files the mirror's cache held" in (target / "simple" / "alpha" / "index.html").read_text()
    assert (target / "simple" / "alpha" / "index.json").exists()
    again = export(str(warmed), str(target))
    assert (again.copied, again.linked, again.bytes) == (0, 0, 0)
    index = (target / "simple").as_uri() + "/"
    python = freshVenv(tmp_path / "venv-pip")
    pipInstall(python, "--index-url", index, "alpha", "delta")
    assert imported(python) == INSTALLED
    python = freshVenv(tmp_path / "venv-uv")
    uvInstall(python, "--index-url", index, "alpha", "delta")
    assert imported(python) == INSTALLED
    port = freePort()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(target)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        waitForHTTP(f"http://127.0.0.1:{port}/simple/")
        python = freshVenv(tmp_path / "venv-http")
        pipInstall(python, "--index-url", f"http://127.0.0.1:{port}/simple/", "alpha", "delta")
        assert imported(python) == INSTALLED
    finally:
        server.terminate()
        server.wait(10)


def test_exportCommand(warmed: Path, tmp_path: Path) -> None:
    """
    The command line: one project; the cache left as it was.
    """
    journal = warmed / "journal.jsonl"
    before = journal.read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "tailmirror", "export", str(tmp_path / "out"), "--cache-dir", str(warmed),
         "--project", "Alpha"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert result.returncode == 0, result.stderr
    assert "exported 1 projects, 2 files" in result.stdout
    assert sorted(os.listdir(tmp_path / "out" / "simple")) == ["alpha", "index.html", "index.json"]
    assert journal.read_bytes() == before

