"""
The real C{twistd tailmirror} killed and fuzzed: SIGKILL at random moments
under a load of cold fetches, thousands of random and hostile requests,
and compaction on request by signal.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from ..chaos import Figures, fileLinks, fuzz, healthy, killAndRestart
from ..processes import INSTALLED, REPO, FakeUpstreamProcess, MirrorProcess, freshVenv, imported, pipInstall

PROJECTS = [f"project{i}" for i in range(30)]


@pytest.fixture
def upstream() -> Iterator[FakeUpstreamProcess]:
    process = FakeUpstreamProcess(
        "--projects", str(len(PROJECTS)), "--files", "3", "--file-size", "300000",
        "--chunk-delay", "0.005", "--tree",
    )
    yield process
    process.stop()


def test_killedAndRestarted(upstream: FakeUpstreamProcess, tmp_path: Path) -> None:
    """
    Killed with SIGKILL eight times under load: no page it served is lost,
    no wrong byte is served or kept, unfinished downloads are cleared, and
    pip installs through it afterwards.
    """
    cache = tmp_path / "cache"
    figures = killAndRestart(upstream.url, cache, PROJECTS, kills=8, seed=20261121)
    assert figures.problems == []
    assert (figures.kills, figures.recordsLost, figures.wrongBytes) == (8, 0, 0)
    assert (figures.not5xxUpstream, figures.tracebacks) == (0, 0)
    assert figures.filesVerified > 0 and figures.pagesChecked > 0 and figures.treeChecks > 0
    mirror = MirrorProcess(upstream.url, cache)
    try:
        assert os.listdir(cache / "+tmp") == []
        python = freshVenv(tmp_path / "venv")
        pipInstall(python, "--index-url", mirror.url, "alpha")
        assert imported(python) == INSTALLED
        assert "Traceback" not in mirror.logText()
    finally:
        mirror.stop()


@pytest.mark.parametrize("auth", [False, True], ids=["open", "auth"])
def test_fuzz(upstream: FakeUpstreamProcess, tmp_path: Path, auth: bool) -> None:
    """
    Two thousand random and hostile requests: no 5xx but upstream's 502
    and 504, no traceback anywhere, and the mirror healthy afterwards;
    with C{--auth} too, the requests' credentials mostly right and
    otherwise wrong, broken or hostile.
    """
    args: list[str] = []
    authorization = None
    if auth:
        made = subprocess.run([sys.executable, "-m", "tailmirror", "token", "fuzz"], check=True,
                              capture_output=True, text=True, cwd=REPO)
        (tmp_path / "tokens").write_text(made.stderr.splitlines()[-1] + "\n")
        args = ["--auth", f"tokens:{tmp_path / 'tokens'}"]
        authorization = f"Bearer {made.stdout.strip()}"
    headers = {"Authorization": authorization} if authorization else {}
    mirror = MirrorProcess(upstream.url, tmp_path / "cache", "--client-timeout", "2", *args)
    try:
        known = [path for path, _ in fileLinks(mirror.port, "project1", headers)[:2]]
        figures = Figures()
        fuzz(mirror.port, 2000, seed=4, known=known, figures=figures, authorization=authorization)
        assert figures.problems == []
        assert (figures.not5xxUpstream, figures.tracebacks) == (0, 0)
        assert sum(figures.statuses.values()) > 1800
        assert {200, 400, 404, 405} <= set(figures.statuses)
        if auth:
            assert figures.statuses[401] > 50, figures.statuses
        assert healthy(mirror.port, known, headers)
        assert "Traceback" not in mirror.logText()
        # An idle connection is closed after the client timeout.
        with socket.create_connection(("127.0.0.1", mirror.port), timeout=20) as idle:
            began = time.monotonic()
            assert idle.recv(1) == b""
            assert 1.5 < time.monotonic() - began < 10
    finally:
        mirror.stop()


def test_compactOnSignal(upstream: FakeUpstreamProcess, tmp_path: Path) -> None:
    """
    SIGUSR2 compacts the journal of a running mirror, which goes on
    serving every page from it.
    """
    cache = tmp_path / "cache"
    mirror = MirrorProcess(upstream.url, cache)
    try:
        for name in PROJECTS[:5]:
            fileLinks(mirror.port, name)
        journal = cache / "journal.jsonl"
        # Dead weight: records of pages since replaced.
        with open(journal, "rb") as f:
            dead = f.read()
        mirror.stop()
        journal.write_bytes(dead * 4)
        mirror = MirrorProcess(upstream.url, cache)
        before = journal.stat().st_size
        mirror.process.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 20
        while "journal compacted" not in mirror.logText():
            assert time.monotonic() < deadline, mirror.logText()
            time.sleep(0.05)
        assert journal.stat().st_size * 4 == before
        for name in PROJECTS[:5]:
            assert fileLinks(mirror.port, name)
    finally:
        mirror.stop()
