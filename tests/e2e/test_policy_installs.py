"""
The policy with real pip and uv, through a real mirror: a cooldown installs the older
release, and a file its page no longer lists still installs.
"""

from __future__ import annotations

import json
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
