"""
Starting the real C{twistd tailmirror}: one instance per cache directory,
every failure to start a non-zero exit with one plain line that names the
option at fault (never a traceback, never a process that runs on without
listening), the upstream taken from the host's pip when none is given, and
a first log line that says what the mirror runs with.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailmirror._version import __version__

from ..processes import BIN, REPO, FakeUpstreamProcess, MirrorProcess, cleanEnv, freePort, waitForHTTP

NOBODY = 65534


def twistd(*args: str, env: dict[str, str] | None = None, user: int | None = None) -> subprocess.CompletedProcess[str]:
    """
    Run C{twistd -n tailmirror ARGS} to its end, within 10 s; as C{user}
    (by setpriv, run as root) if given.
    """
    command = [str(BIN / "twistd"), "-n", "--pidfile=", "--logfile=-", "tailmirror", *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    environment = dict(env or cleanEnv(), PYTHONPATH=str(REPO))
    return subprocess.run(command, capture_output=True, text=True, timeout=10, env=environment)


def assertOneLine(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """
    The process failed with one plain line on standard error naming
    C{words}, and no traceback anywhere.
    """
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def upstream() -> Iterator[FakeUpstreamProcess]:
    fake = FakeUpstreamProcess()
    yield fake
    fake.stop()


def test_secondInstanceRefused(tmp_path: Path, upstream: FakeUpstreamProcess) -> None:
    """
    A second mirror on the same cache directory exits 1 at once with a line
    naming the directory and the first one's PID; the first runs on.  The
    first one's first log line names its version, upstream and where that
    came from, its address, its cache directory and its limits.
    """
    cache = tmp_path / "cache"
    first = MirrorProcess(upstream.url, cache, "--max-size", "2G")
    try:
        started = time.monotonic()
        second = twistd("--upstream", upstream.url, "--cache-dir", str(cache), "--listen", f"tcp:{freePort()}:interface=127.0.0.1")
        assert time.monotonic() - started < 5
        assert second.returncode == 1
        assertOneLine(second, "--cache-dir", str(cache), str(first.process.pid), "in use")
        assert (cache / "lock").read_text().strip() == str(first.process.pid)
        # Daemonized, twistd's parent says why and exits 1 (it would wait
        # for good if the daemon ended without telling it).
        daemonized = subprocess.run(
            [str(BIN / "twistd"), f"--pidfile={tmp_path / 'second.pid'}", "--logfile", str(tmp_path / "second.log"),
             "tailmirror", "--upstream", upstream.url, "--cache-dir", str(cache),
             "--listen", f"tcp:{freePort()}:interface=127.0.0.1"],
            capture_output=True, text=True, timeout=10, env=dict(cleanEnv(), PYTHONPATH=str(REPO)),
        )
        assert daemonized.returncode == 1
        assert "is in use by another" in daemonized.stdout + daemonized.stderr
        assert "is in use by another" in (tmp_path / "second.log").read_text()
        waitForHTTP(first.url)
        line = next(line for line in first.logText().splitlines() if "[tailmirror." in line)
        assert "tailmirror " + __version__ + " mirroring" in line, line
        for part in (upstream.url, "(from --upstream)", f"http://127.0.0.1:{first.port}/", str(cache), "max size 2.0 GiB", "min free 5%"):
            assert part in line, line
    finally:
        first.stop()
    # With the first gone, the lock is free.
    again = MirrorProcess(upstream.url, cache)
    again.stop()


def test_portInUse(tmp_path: Path, upstream: FakeUpstreamProcess) -> None:
    """
    A port that is taken: a non-zero exit within 5 s, one line naming
    --listen.
    """
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = twistd("--upstream", upstream.url, "--cache-dir", str(tmp_path / "c"), "--listen", f"tcp:{port}:interface=127.0.0.1")
        assert time.monotonic() - started < 5
    assertOneLine(result, "--listen", f"tcp:{port}", "in use")


def test_badEndpointAndOption(tmp_path: Path) -> None:
    """
    An endpoint that cannot listen (a socket in a missing directory) and a
    bad option value: one line each, naming the option.
    """
    result = twistd("--upstream", "http://127.0.0.1:1/simple/", "--cache-dir", str(tmp_path / "c"),
                    "--listen", f"unix:{tmp_path}/missing/mirror.sock")
    assertOneLine(result, "--listen", "unix:")
    result = twistd("--upstream", "http://127.0.0.1:1/simple/", "--ttl", "soon")
    assert result.returncode == 1
    assertOneLine(result, "--ttl", "soon")


def test_cacheDirCannotBeMade(tmp_path: Path) -> None:
    """
    A cache directory whose parent is a file: one line naming --cache-dir.
    """
    (tmp_path / "file").write_text("")
    result = twistd("--upstream", "http://127.0.0.1:1/simple/", "--cache-dir", str(tmp_path / "file" / "cache"),
                    "--listen", f"tcp:{freePort()}:interface=127.0.0.1")
    assertOneLine(result, "--cache-dir", "cannot be created", str(tmp_path / "file" / "cache"))


def _canRunAs(user: int) -> bool:
    """
    Whether C{user} can run this checkout's twistd (it must reach the
    virtual environment and the working tree).
    """
    result = subprocess.run(
        ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", sys.executable, "-c", "import tailmirror"],
        capture_output=True, env=dict(cleanEnv(), PYTHONPATH=str(REPO)), cwd="/",
    )
    return result.returncode == 0


def test_cacheDirNotWritable() -> None:
    """
    A cache directory the mirror's user cannot write in: a non-zero exit
    within 5 s with one line naming --cache-dir.  (Run as root, the test
    runs the mirror as nobody, whom permissions stop.)
    """
    user = None
    if os.geteuid() == 0:
        if not shutil.which("setpriv") or not _canRunAs(NOBODY):
            pytest.skip("needs setpriv, and a checkout the nobody user can read")
        user = NOBODY
    parent = Path(tempfile.mkdtemp(prefix="tailmirror-unwritable-"))
    try:
        parent.chmod(0o755)
        cache = parent / "cache"
        cache.mkdir()
        cache.chmod(0o555)
        started = time.monotonic()
        result = twistd("--upstream", "http://127.0.0.1:1/simple/", "--cache-dir", str(cache),
                        "--listen", f"tcp:{freePort()}:interface=127.0.0.1", env=cleanEnv(HOME=str(parent)), user=user)
        assert time.monotonic() - started < 5
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    # twistd's own warning about its plugin cache may come first; ours is last.
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert lines and "--cache-dir" in lines[-1] and "cannot be written" in lines[-1], result.stderr


def test_version() -> None:
    """
    C{twistd tailmirror --version} prints tailmirror's version.
    """
    result = twistd("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"tailmirror {__version__}"


def test_versionEverywhere() -> None:
    """
    C{tailmirror --version} (as C{python -m tailmirror}) and the docs say
    the version C{twistd tailmirror --version} says.
    """
    result = subprocess.run(
        [sys.executable, "-m", "tailmirror", "--version"], capture_output=True, text=True, timeout=30, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"tailmirror {__version__}"
    conf: dict[str, object] = {"__file__": str(REPO / "docs" / "conf.py")}
    exec((REPO / "docs" / "conf.py").read_text(), conf)
    assert conf["release"] == conf["version"] == __version__


def test_upstreamFromPip(tmp_path: Path, upstream: FakeUpstreamProcess) -> None:
    """
    Without --upstream, the mirror mirrors the index pip would use here:
    PIP_INDEX_URL, as the README's run command relies on; and says so.
    """
    port = freePort()
    env = cleanEnv(PIP_INDEX_URL=upstream.url, PYTHONPATH=str(REPO))
    log = tmp_path / "mirror.log"
    process = subprocess.Popen(
        [str(BIN / "twistd"), "-n", "--pidfile=", "--logfile", str(log), "tailmirror",
         "--cache-dir", str(tmp_path / "cache"), "--listen", f"tcp:{port}:interface=127.0.0.1"],
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}/simple/"
        waitForHTTP(url)
        import urllib.request

        with urllib.request.urlopen(url + "project1/", timeout=10) as response:
            assert b"project1-1.0.tar.gz" in response.read()
        assert re.search(r"mirroring \S+ \(from PIP_INDEX_URL\)", log.read_text())
    finally:
        process.terminate()
        process.wait(10)
