"""
The prefetch with real pip and uv, through a real mirror: everything it fetched ahead of
them is what they then asked for.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest



from ..processes import FakeUpstreamProcess, MirrorProcess, freshVenv, pipInstall, uvInstall

#: What pip 24 on CPython 3.11, Debian, x86-64 sends.


@pytest.mark.parametrize("client", ["pip", "uv"])
def test_realClients(client: str, tmp_path: Path) -> None:
    """
    Real pip and uv, through the real mirror: their User-Agent is read
    (their Python, their platform), and everything the prefetch fetched
    ahead of them is what they then asked for; nothing fetched twice.
    """
    upstream = FakeUpstreamProcess("--projects", "0", "--layered", "13")
    mirror = MirrorProcess(upstream.url, tmp_path / "cache")
    try:
        python = freshVenv(tmp_path / "venv")
        (pipInstall if client == "pip" else uvInstall)(python, "--index-url", mirror.url, "app")
        request = urllib.request.Request(mirror.url.replace("/simple/", "/+status"), headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            figures = json.loads(r.read())["prefetch"]
        stats = upstream.stats()
    finally:
        mirror.stop()
        upstream.stop()
    # Each client was read for what it is: its Python, its system.
    [label] = figures["clients"]
    assert label.startswith(f"{client} "), label
    assert "on CPython %d.%d." % sys.version_info[:2] in label, label
    assert "Linux" in label, label
    assert figures["mode"] == "metadata"
    if client == "pip":
        # What pip asked for first it fetched itself; the prefetch
        # fetched the rest ahead of it.
        assert figures["prefetched"]["page"] > 0, figures
        assert figures["prefetched"]["metadata"] > 0, figures
        # Its first download told the mirror that its resolution was over:
        # the files it picked were fetched ahead of its own downloads.
        assert figures["prefetched"]["file"] > 0, figures
    else:
        # uv asks for a level at once itself: nothing is fetched ahead.
        assert sum(figures["prefetched"].values()) == 0, figures
    assert figures["used"] == figures["prefetched"], figures
    assert figures["pending"] == 0
    assert set(n for path, n in stats.items() if path != "/_stats") == {1}, stats
