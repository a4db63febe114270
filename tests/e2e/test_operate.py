"""
Operating the real C{twistd tailmirror}: its log as an operator reads it
(text or JSON), the warning for an upstream that is not a Simple API
index, the metrics on an endpoint of their own, the access log in a file,
the shipped systemd units (verified, and socket activation proven with
pip), and the status page in a real headless browser.
"""

from __future__ import annotations

import json
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from ..processes import (
    tool,
    BIN,
    INSTALLED,
    REPO,
    FakeUpstreamProcess,
    MirrorProcess,
    freePort,
    freshVenv,
    imported,
    pipInstall,
    waitForHTTP,
)

UNITS = REPO / "contrib" / "systemd"
#: Where the tests leave what a person may want to look at (the status
#: page's screenshot).
OUTPUT = Path(os.environ.get("TAILMIRROR_TEST_OUTPUT", REPO / "build" / "test-output"))


def needed(name: str) -> str:
    """
    The path of a tool the test needs (see L{tool}).
    """
    return tool(name, name)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def upstream() -> Iterator[FakeUpstreamProcess]:
    process = FakeUpstreamProcess("--projects", "2", "--sized", "200000")
    yield process
    process.stop()


def test_logAsRun(upstream: FakeUpstreamProcess, tmp_path: Path) -> None:
    """
    The log of a real run: a download's start and end with its rate, a
    page refresh, an uncached page failing upstream with its reason; access
    lines; and none of the connection factories' noise.
    """
    mirror = MirrorProcess(upstream.url, tmp_path / "cache")
    try:
        base = f"http://127.0.0.1:{mirror.port}"
        status, _, page = get(mirror.url + "sized/", {"Accept": "application/vnd.pypi.simple.v1+json"})
        assert status == 200
        (link,) = [f["url"] for f in json.loads(page)["files"]]
        assert get(urllib.parse.urljoin(mirror.url + "sized/", link))[0] == 200
        upstream.stop()
        assert get(mirror.url + "project1/")[0] == 502
        time.sleep(0.5)
        log = mirror.logText()
    finally:
        mirror.stop()
    assert "Starting factory" not in log and "Stopping factory" not in log, log
    assert "fetched sized from upstream" in log
    assert "downloading sized-1.0.tar.gz from upstream (200000 bytes)" in log
    assert "kept sized-1.0.tar.gz: 200000 bytes in" in log and "MB/s" in log
    assert "upstream failed for project1, which the mirror has no copy of: upstream refused" in log
    assert '"GET /simple/sized/ HTTP/1.1" 200' in log
    assert "Traceback" not in log


def jsonRecords(text: str) -> list[dict[str, Any]]:
    """
    The records of a JSON log (RFC 7464: each after a record separator).
    """
    return [json.loads(r) for r in text.split("\x1e") if r.strip()]


def _runForLog(command: list[str], port: int, upstreamURL: str) -> list[dict[str, Any]]:
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO), TAILMIRROR_UPSTREAM=upstreamURL),
    )
    try:
        waitForHTTP(f"http://127.0.0.1:{port}/simple/")
        assert get(f"http://127.0.0.1:{port}/simple/project0/")[0] == 200
        assert get(f"http://127.0.0.1:{port}/simple/nonesuch/")[0] == 404
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert "Traceback" not in out + err, out + err
    return jsonRecords(out)


@pytest.mark.parametrize("runner", ["twistd", "twist"])
def test_jsonLog(upstream: FakeUpstreamProcess, tmp_path: Path, runner: str) -> None:
    """
    JSON logs, under C{twistd --logger tailmirror.logs.json} as under
    C{twist --log-format json}: the mirror's events carry their facts as
    fields.
    """
    port = freePort()
    args = ["tailmirror", "--cache-dir", str(tmp_path / "cache"), "--listen", f"tcp:{port}:interface=127.0.0.1"]
    if runner == "twistd":
        command = [str(BIN / "twistd"), "--logger", "tailmirror.logs.json", "-n", "--pidfile=", *args]
    else:
        command = [str(BIN / "twist"), "--log-format", "json", "--log-file", "-", *args]
    records = _runForLog(command, port, upstream.url)
    fetched = [r for r in records if r.get("project") == "project0" and r.get("outcome") == "new"]
    assert len(fetched) == 1, records
    assert fetched[0]["log_namespace"] == "tailmirror"
    missing = [r for r in records if r.get("project") == "nonesuch"]
    assert missing and missing[0]["outcome"] == "missing"
    access = [r for r in records if r.get("log_namespace") == "tailmirror.access"]
    assert {(r["path"], r["status"]) for r in access} >= {("/simple/project0/", 200), ("/simple/nonesuch/", 404)}
    assert any("tailmirror" in r.get("log_format", "") and "mirroring" in r.get("log_format", "") for r in records)


def test_upstreamNotSimple(upstream: FakeUpstreamProcess, tmp_path: Path) -> None:
    """
    An upstream URL without its Simple API path: the mirror starts, and
    says at once what is likely wrong, in its log and its status.
    """
    root = upstream.url.removesuffix("simple/")
    mirror = MirrorProcess(root, tmp_path / "cache")
    try:
        deadline = time.monotonic() + 10
        while "is the Simple API root" not in mirror.logText() and time.monotonic() < deadline:
            time.sleep(0.1)
        log = mirror.logText()
        status = json.loads(get(f"http://127.0.0.1:{mirror.port}/+status?format=json")[2])
    finally:
        mirror.stop()
    assert "answered 404: it is not a Simple API index" in log
    assert "missing from the URL?" in log
    assert "answered 404" in status["upstream"]["warning"]


def test_upstreamUnreachable(tmp_path: Path) -> None:
    """
    An upstream that cannot be reached at start is a warning, not a
    failure: the mirror runs and answers.
    """
    mirror = MirrorProcess(f"http://127.0.0.1:{freePort()}/simple/", tmp_path / "cache")
    try:
        deadline = time.monotonic() + 10
        while "cannot reach upstream" not in mirror.logText() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "cannot reach upstream" in mirror.logText()
        status = json.loads(get(f"http://127.0.0.1:{mirror.port}/+status?format=json")[2])
        assert status["upstream"]["healthy"] is False
        assert mirror.process.poll() is None
    finally:
        mirror.stop()


def test_metricsEndpointAndAccessLog(upstream: FakeUpstreamProcess, tmp_path: Path) -> None:
    """
    C{--metrics-listen}: the metrics on their own endpoint, not on the
    mirror's; C{--access-log PATH}: the access lines in that file, not in
    the log.
    """
    metricsPort = freePort()
    accessLog = tmp_path / "access.log"
    mirror = MirrorProcess(
        upstream.url, tmp_path / "cache",
        "--metrics-listen", f"tcp:{metricsPort}:interface=127.0.0.1", "--access-log", str(accessLog),
    )
    try:
        assert get(mirror.url + "project0/")[0] == 200
        assert get(f"http://127.0.0.1:{mirror.port}/+metrics")[0] == 404
        status, headers, body = get(f"http://127.0.0.1:{metricsPort}/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain")
        text = body.decode()
        assert 'tailmirror_http_requests_total{route="page",status="200"} 1.0' in text
        assert 'tailmirror_page_refreshes_total{outcome="new"} 1.0' in text
        assert "tailmirror_reactor_stall_seconds" in text
    finally:
        mirror.stop()
    lines = accessLog.read_text().splitlines()
    assert any('"GET /simple/project0/ HTTP/1.1" 200' in line for line in lines), lines
    assert any('"GET /+metrics HTTP/1.1" 404' in line for line in lines), lines
    assert "/simple/project0/ HTTP/1.1" not in mirror.logText()


# systemd


def _unitCopies(tmp_path: Path) -> Path:
    """
    The shipped units, their twistd the one of this environment.
    """
    units = tmp_path / "units"
    units.mkdir()
    for unit in ("tailmirror.service", "tailmirror.socket"):
        text = (UNITS / unit).read_text().replace("/opt/tailmirror/bin/twistd", str(BIN / "twistd"))
        (units / unit).write_text(text)
    return units


def test_unitsVerify(tmp_path: Path) -> None:
    """
    C{systemd-analyze verify} passes both units without a word.
    """
    tool = needed("systemd-analyze")
    units = _unitCopies(tmp_path)
    result = subprocess.run(
        [tool, "verify", str(units / "tailmirror.service"), str(units / "tailmirror.socket")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stdout.strip() and not result.stderr.strip(), result.stdout + result.stderr
    service = (UNITS / "tailmirror.service").read_text()
    for setting in ("DynamicUser=yes", "StateDirectory=tailmirror", "ProtectSystem=strict", "NoNewPrivileges=yes",
                    "PrivateTmp=yes", "ProtectHome=yes", "Restart=on-failure",
                    "--listen systemd:domain=INET:index=0"):
        assert setting in service, setting


def _execStart(unit: Path) -> list[str]:
    """
    The command line of a unit's C{ExecStart=}, its continued lines joined.
    """
    text = unit.read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def test_socketActivation(tmp_path: Path) -> None:
    """
    The service's own command line, started by C{systemd-socket-activate}
    on the socket unit's kind of socket: pip installs through it.
    """
    tool = needed("systemd-socket-activate")
    upstream = FakeUpstreamProcess("--tree")
    port = freePort()
    cache = tmp_path / "cache"
    command = [
        str(cache) if word == "/var/lib/tailmirror" else word
        for word in _execStart(_unitCopies(tmp_path) / "tailmirror.service")
    ]
    log = tmp_path / "mirror.log"
    command[1:1] = ["--logfile", str(log)]
    environment = dict(os.environ, PYTHONPATH=str(REPO), TAILMIRROR_UPSTREAM=upstream.url)
    activator = subprocess.Popen([tool, "-l", f"127.0.0.1:{port}", "--fdname=tailmirror.socket",
             # It passes the child only the variables it is told to.
             "-E", "PYTHONPATH", "-E", "TAILMIRROR_UPSTREAM", *command], env=environment,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/simple/"
        waitForHTTP(url)
        python = freshVenv(tmp_path / "venv")
        pipInstall(python, "--index-url", url, "alpha", "delta")
        assert imported(python) == INSTALLED
    finally:
        activator.send_signal(signal.SIGTERM)
        output = activator.communicate(timeout=20)[0]
        upstream.stop()
    text = log.read_text()
    assert "listening on" in text, text
    assert "Traceback" not in text + output, text + output
    assert any(cache.joinpath("+files").rglob("*.whl"))


def test_pluginCache(tmp_path: Path) -> None:
    """
    A mirror installed by root, run by another user: Twisted cannot write
    its plugin cache and warns, until the one command the docs give after
    an install is run.
    """
    setpriv = needed("setpriv")
    python = BIN / "python"
    probe = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", str(python), "-c", "import tailmirror"],
        capture_output=True, cwd="/", timeout=60,
    )
    if probe.returncode != 0:
        pytest.skip("needs an environment the nobody user can read")
    plugins = subprocess.run(
        [str(python), "-c", "import twisted.plugins; print(twisted.plugins.__path__[0])"],
        capture_output=True, text=True, check=True, cwd="/",
    ).stdout.strip()
    cache = Path(plugins) / "dropin.cache"

    def runAsNobody() -> str:
        """
        What the mirror logs in its first seconds, run as nobody.
        """
        cacheDir = tempfile.mkdtemp(prefix="tailmirror-nobody-")
        os.chmod(cacheDir, 0o777)
        process = subprocess.Popen(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", str(BIN / "twistd"), "-n",
             "--pidfile=", "--logfile=-", "tailmirror", "--upstream", f"http://127.0.0.1:{freePort()}/simple/",
             "--cache-dir", cacheDir, "--listen", "tcp:0:interface=127.0.0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/",
        )
        assert process.stdout is not None
        lines: list[str] = []
        try:
            # Until it says it is up: a user who can write no byte code
            # compiles every module first, which on a busy machine is slow.
            ready = selectors.DefaultSelector()
            ready.register(process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any("mirroring" in line for line in lines):
                if ready.select(deadline - time.monotonic()):
                    line = process.stdout.readline()
                    if not line:
                        break
                    lines.append(line)
        finally:
            process.send_signal(signal.SIGTERM)
            output = "".join(lines) + process.communicate(timeout=20)[0]
            shutil.rmtree(cacheDir, ignore_errors=True)
        assert "mirroring" in output, output
        return output

    cache.unlink(missing_ok=True)
    assert "Unable to write to plugin cache" in runAsNobody()
    # The docs' command, run by whoever installed the mirror.
    subprocess.run([str(python), "-c", _docsCommand()], check=True, timeout=60, cwd="/")
    assert "plugin cache" not in runAsNobody()


def _docsCommand() -> str:
    """
    The command the operator's guide gives to refresh Twisted's plugin
    cache, read from the guide itself.
    """
    guide = (REPO / "docs" / "operating.rst").read_text()
    marker = "python -c "
    line = next(line.strip() for line in guide.splitlines() if marker in line and "getPlugins" in line)
    return shlex.split(line.split(marker, 1)[1])[0]


# The status page, in a browser


def test_statusInBrowser(upstream: FakeUpstreamProcess, tmp_path: Path) -> None:
    """
    A real headless Chromium renders the status page with no script and
    nothing from elsewhere; its screenshot is left in the tests' output.
    """
    browser = next((shutil.which(b) for b in ("chromium-headless-shell", "chromium") if shutil.which(b)), None)
    if browser is None:
        needed("chromium-headless-shell")
    mirror = MirrorProcess(upstream.url, tmp_path / "cache", "--max-size", "1G")
    try:
        assert get(mirror.url + "project0/")[0] == 200
        url = f"http://127.0.0.1:{mirror.port}/+status"
        OUTPUT.mkdir(parents=True, exist_ok=True)
        screenshot = OUTPUT / "status.png"
        screenshot.unlink(missing_ok=True)
        common = [str(browser), "--headless", "--no-sandbox", "--disable-gpu", "--disable-javascript",
                  f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,900"]
        dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120)
        subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, timeout=120)
    finally:
        mirror.stop()
    assert "tailmirror" in dom.stdout and "Downloads in flight" in dom.stdout, dom.stdout + dom.stderr
    assert upstream.url in dom.stdout
    assert "1.0 GiB" in dom.stdout
    assert screenshot.exists() and screenshot.stat().st_size > 5000
    print(f"status page screenshot: {screenshot}")


def test_sdistShipsUnits(tmp_path: Path) -> None:
    """
    The source distribution carries the systemd units and the guide.
    """
    import tarfile

    subprocess.run(
        [sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(tmp_path)!r})"],
        cwd=REPO, check=True, capture_output=True, timeout=120,
    )
    (sdist,) = tmp_path.glob("tailmirror-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"contrib/systemd/tailmirror.service", "contrib/systemd/tailmirror.socket", "docs/operating.rst"} <= names
