"""
End-to-end tests: the real C{twistd tailmirror} process between real pip
and a fake upstream index on 127.0.0.1.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from ..processes import BIN, FakeUpstreamProcess, MirrorProcess, run


@pytest.fixture
def upstream() -> Iterator[FakeUpstreamProcess]:
    process = FakeUpstreamProcess("--projects", "4")
    yield process
    process.stop()


def pipIndexVersions(mirror: MirrorProcess, project: str) -> str:
    """
    What C{pip index versions} says of a project through the mirror.
    """
    result = run(
        [sys.executable, "-m", "pip", "index", "versions", project,
         "--index-url", mirror.url, "--no-cache-dir", "--disable-pip-version-check"]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_twistdListsPlugin(tmp_path: Path) -> None:
    """
    The installed package gives twistd its C{tailmirror} subcommand.
    """
    result = run([str(BIN / "twistd"), "--help"], cwd=tmp_path)
    assert "tailmirror" in result.stdout


def test_pipThroughMirror(upstream: FakeUpstreamProcess, tmp_path: Path) -> None:
    """
    C{pip index versions} works through the mirror; the page is kept, so
    it goes on working with upstream gone, and after a restart too.
    """
    cache = tmp_path / "cache"
    # pip asks to revalidate (max-age=0): with no floor, each request asks upstream.
    mirror = MirrorProcess(upstream.url, cache, "--revalidate-floor", "0")
    try:
        assert "Available versions: 1.2, 1.1, 1.0" in pipIndexVersions(mirror, "Project1")
        assert '"name":"project1"' in (cache / "journal.jsonl").read_text()
        upstream.stop()
        assert "Available versions: 1.2, 1.1, 1.0" in pipIndexVersions(mirror, "project1")
        assert "upstream failed for project1, serving the mirror's copy stale" in mirror.logText()
    finally:
        mirror.stop()
    mirror = MirrorProcess(upstream.url, cache)
    try:
        assert "Available versions: 1.2, 1.1, 1.0" in pipIndexVersions(mirror, "project1")
        missing = run([sys.executable, "-m", "pip", "index", "versions", "project2",
                       "--index-url", mirror.url, "--no-cache-dir"])
        assert missing.returncode != 0
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(mirror.url + "project2/", timeout=30)
        assert raised.value.code == 502
        assert raised.value.read() == b"upstream refused or dropped the connection\n"
    finally:
        mirror.stop()
    assert "Traceback" not in mirror.logText()


def test_staleInSecondsOverSockets(tmp_path: Path) -> None:
    """
    Over real sockets: upstream that accepts and never answers.  The real
    mirror serves its copy after --stale-after, far inside --timeout, and
    at once for the next clients (--retry-after).
    """
    import socket
    import time

    upstream = FakeUpstreamProcess("--projects", "1")
    port = upstream.port
    mirror = MirrorProcess(upstream.url, tmp_path / "cache", "--ttl", "1", "--timeout", "15")
    hole = socket.socket()
    try:
        page = urllib.request.urlopen(mirror.url + "project0/", timeout=30).read()
        upstream.stop()
        # The same port now accepts connections and answers nothing.
        hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hole.bind(("127.0.0.1", port))
        hole.listen(64)
        time.sleep(1.1)
        waits = []
        for _ in range(3):
            started = time.monotonic()
            with urllib.request.urlopen(mirror.url + "project0/", timeout=30) as response:
                assert response.read() == page
                assert response.headers["Tailmirror-Stale"]
            waits.append(time.monotonic() - started)
        assert waits[0] < 10, waits  # --stale-after (2 s), not --timeout (15 s)
        assert max(waits[1:]) < 1, waits  # within --retry-after: at once
    finally:
        hole.close()
        mirror.stop()
