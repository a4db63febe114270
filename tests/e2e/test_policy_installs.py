"""
The policy with real pip and uv, through a real mirror: a cooldown installs the older
release, and a file its page no longer lists still installs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest


from ..fakeindex import JSON_TYPE
from ..processes import FakeUpstreamProcess, MirrorProcess, freshVenv, pipInstall, run, uvInstall


def _installedAlpha(python: Path) -> str:
    result = run([str(python), "-c", "import alpha; print(alpha.__version__)"])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("client", ["pip", "uv"])
def test_cooldownInstallsTheOlderRelease(tmp_path: Path, client: str) -> None:
    """
    pip and uv through a mirror with --cooldown install the older release
    when the newest is younger than the cooldown.
    """
    upstream = FakeUpstreamProcess("--projects", "0", "--tree", "--uploaded-now", "alpha-1.1-py3-none-any.whl")
    mirror = MirrorProcess(upstream.url, tmp_path / "cache", "--cooldown", "3d")
    try:
        python = freshVenv(tmp_path / "venv")
        install = pipInstall if client == "pip" else uvInstall
        install(python, "--index-url", mirror.url, "alpha")
        assert _installedAlpha(python) == "1.0"
    finally:
        mirror.stop()
        upstream.stop()


def test_delistedFileStillInstalls(tmp_path: Path) -> None:
    """
    A wheel the mirror kept, then delisted upstream, still installs from a
    hashed requirements file that pins its URL; it is no longer listed.
    """
    import urllib.parse
    import urllib.request

    wheel = "alpha-1.0-py3-none-any.whl"
    upstream = FakeUpstreamProcess("--projects", "0", "--tree")
    mirror = MirrorProcess(upstream.url, tmp_path / "cache", "--revalidate-floor", "0")
    try:
        request = urllib.request.Request(mirror.url + "alpha/", headers={"Accept": JSON_TYPE})
        page = json.loads(urllib.request.urlopen(request, timeout=30).read())
        (entry,) = [f for f in page["files"] if f["filename"] == wheel]
        url = urllib.parse.urljoin(mirror.url + "alpha/", entry["url"])
        urllib.request.urlopen(url, timeout=30).read()
        port = upstream.port
        upstream.stop()
        upstream = FakeUpstreamProcess("--projects", "0", "--tree", "--delist", wheel, port=port)
        request = urllib.request.Request(mirror.url + "alpha/", headers={"Accept": JSON_TYPE, "Cache-Control": "no-cache"})
        page = json.loads(urllib.request.urlopen(request, timeout=30).read())
        assert wheel not in [f["filename"] for f in page["files"]]
        requirements = tmp_path / "requirements.txt"
        requirements.write_text(f"alpha @ {url} --hash=sha256:{entry['hashes']['sha256']}\n")
        python = freshVenv(tmp_path / "venv")
        pipInstall(python, "--no-index", "--require-hashes", "-r", str(requirements))
        assert _installedAlpha(python) == "1.0"
    finally:
        mirror.stop()
        upstream.stop()


def _advisories(where: Path) -> Path:
    """
    OSV advisories for the test tree, nested as the malicious-packages
    repository nests them: alpha 1.1 malicious, gamma 2.0 vulnerable; and
    a file that is not one.
    """
    (where / "osv" / "malicious" / "alpha").mkdir(parents=True)
    (where / "osv" / "malicious" / "alpha" / "MAL-2026-7.json").write_text(json.dumps({
        "id": "MAL-2026-7", "summary": "Malicious code in alpha (PyPI)",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "alpha"}, "versions": ["1.1"]}],
    }))
    (where / "osv" / "GHSA-gamma.json").write_text(json.dumps({
        "id": "GHSA-gamma", "summary": "gamma leaks", "aliases": ["CVE-2026-1"],
        "affected": [{"package": {"ecosystem": "PyPI", "name": "gamma"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0"}]}]}],
    }))
    (where / "osv" / "broken.json").write_text("{ not json")
    return where / "osv"


def _install(client: str, python: Path, *args: str) -> bool:
    """
    Whether an install through the mirror succeeded.
    """
    import sys

    from ..processes import BIN, cleanEnv

    if client == "pip":
        command = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-cache-dir",
                   "--disable-pip-version-check", *args]
    else:
        command = [str(BIN / "uv"), "pip", "install", "--no-config", "--no-cache", "--python", str(python), *args]
    return run(command, env=cleanEnv()).returncode == 0


@pytest.mark.parametrize("client", ["pip", "uv"])
def test_advisoriesAndRules(tmp_path: Path, client: str) -> None:
    """
    With advisories, the malicious release is held back by default (the
    client installs the older one), every affected one under
    --deny-advisories vulnerable, and a waiver lets one through; a rule in
    the policy file holds back a release until the file is edited; the
    malformed advisory file is named in the log and skipped.
    """
    osv = _advisories(tmp_path)
    policy = tmp_path / "policy"
    policy.write_text("# none yet\n")
    upstream = FakeUpstreamProcess("--projects", "0", "--tree")
    mirror = MirrorProcess(upstream.url, tmp_path / "cache", "--advisories", str(osv), "--policy-file", str(policy))
    try:
        python = freshVenv(tmp_path / "malicious")
        assert _install(client, python, "--index-url", mirror.url, "alpha")
        assert _installedAlpha(python) == "1.0"
        assert "broken.json" in mirror.logText() and "Traceback" not in mirror.logText()
        assert not _install(client, freshVenv(tmp_path / "pinned"), "--index-url", mirror.url, "alpha==1.1")
        policy.write_text("deny alpha<1.1\n")
        time.sleep(1.5)
        assert not _install(client, freshVenv(tmp_path / "denied"), "--index-url", mirror.url, "alpha")
    finally:
        mirror.stop()
    mirror = MirrorProcess(upstream.url, tmp_path / "cache", "--advisories", str(osv),
                           "--deny-advisories", "vulnerable", "--waive", "MAL-2026-7")
    try:
        # alpha 1.1 is let through, but its dependency gamma is held back.
        assert not _install(client, freshVenv(tmp_path / "vulnerable"), "--index-url", mirror.url, "alpha==1.1")
        python = freshVenv(tmp_path / "older")
        assert _install(client, python, "--index-url", mirror.url, "alpha")
        assert _installedAlpha(python) == "1.0"
    finally:
        mirror.stop()
    mirror = MirrorProcess(upstream.url, tmp_path / "cache", "--advisories", str(osv), "--waive", "MAL-2026-7")
    try:
        python = freshVenv(tmp_path / "waived")
        assert _install(client, python, "--index-url", mirror.url, "alpha")
        assert _installedAlpha(python) == "1.1"
    finally:
        mirror.stop()
        upstream.stop()


def test_feedFromUpstreamAndFreezeDate(tmp_path: Path) -> None:
    """
    A feed URL (served by the test upstream) is fetched and applied; the
    freeze date holds back the file uploaded after it; /+status lists
    what the policy held back.
    """
    import io
    import urllib.request
    import zipfile

    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as z:
        z.writestr("MAL-2026-7.json", (_advisories(tmp_path) / "malicious" / "alpha" / "MAL-2026-7.json").read_text())
    (tmp_path / "feed.zip").write_bytes(data.getvalue())
    upstream = FakeUpstreamProcess("--projects", "0", "--tree", "--feed", f"/feeds/pypi.zip={tmp_path / 'feed.zip'}",
                                   "--uploaded-now", "gamma-2.0-py3-none-any.whl")
    feed = upstream.url.replace("/simple/", "/feeds/pypi.zip")
    mirror = MirrorProcess(upstream.url, tmp_path / "cache", "--advisories", feed)
    try:
        python = freshVenv(tmp_path / "feed")
        deadline = time.monotonic() + 20
        while "advisories of the PyPI ecosystem read from http" not in mirror.logText():
            assert time.monotonic() < deadline, mirror.logText()
            time.sleep(0.1)
        pipInstall(python, "--index-url", mirror.url, "alpha")
        assert _installedAlpha(python) == "1.0"
        with urllib.request.urlopen(mirror.url.replace("/simple/", "/+status?format=json"), timeout=30) as r:
            status = json.load(r)["policy"]
        assert status["sources"][0]["advisories"] == 1
        assert {"kind": "advisory", "what": "MAL-2026-7", "project": "alpha", "versions": ["1.1"]} in status["heldBack"]
    finally:
        mirror.stop()
    mirror = MirrorProcess(upstream.url, tmp_path / "cache2", "--exclude-newer", "2025-01-01T00:00:00Z")
    try:
        python = freshVenv(tmp_path / "frozen")
        uvInstall(python, "--index-url", mirror.url, "alpha==1.0")
        assert not _install("uv", freshVenv(tmp_path / "frozen-gamma"), "--index-url", mirror.url, "gamma")
    finally:
        mirror.stop()
        upstream.stop()


def test_jsonAPI(tmp_path: Path) -> None:
    """
    The legacy JSON API through a real mirror: passed through from an
    upstream that has one, made from the page where it has none; file
    URLs the mirror's, held-back files absent.
    """
    import urllib.request

    for flags in (["--json-api"], []):
        upstream = FakeUpstreamProcess("--projects", "0", "--tree", *flags)
        mirror = MirrorProcess(upstream.url, tmp_path / f"cache{len(flags)}", "--deny", "alpha==1.0")
        try:
            base = mirror.url.replace("/simple/", "/")
            with urllib.request.urlopen(base + "pypi/alpha/json", timeout=30) as r:
                document = json.load(r)
            assert sorted(document["releases"]) == ["1.1"]
            [wheel] = document["urls"]
            assert wheel["url"].startswith(base + "root/pypi/+f/")
            with urllib.request.urlopen(wheel["url"], timeout=30) as r:
                import hashlib

                assert hashlib.sha256(r.read()).hexdigest() == wheel["digests"]["sha256"]
            assert upstream.stats().get("/pypi/alpha/json") == 1
        finally:
            mirror.stop()
            upstream.stop()


def test_badRuleAtStart(tmp_path: Path) -> None:
    """
    An unparseable rule is a one-line usage error at start.
    """
    from ..processes import BIN, REPO, cleanEnv

    result = run([str(BIN / "twistd"), "-n", "tailmirror", "--upstream", "http://127.0.0.1:1/simple/",
                  "--deny", "requests[socks]<2", "--cache-dir", str(tmp_path / "c")],
                 env=dict(cleanEnv(), PYTHONPATH=str(REPO)))
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "--deny" in lines[0], lines
