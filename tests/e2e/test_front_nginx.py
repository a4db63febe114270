"""
A real nginx in front of a real mirror, as contrib/nginx configures it: warm files sent
by nginx, cold ones by the mirror, connections kept alive.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest


from tailmirror.web._passwords import newToken

from ..harness import JSON, linksOf
from ..processes import (
    INSTALLED,
    FakeUpstreamProcess,
    MirrorProcess,
    NginxProcess,
    freshVenv,
    imported,
    pipInstall,
    uvInstall,
)


@pytest.fixture
def upstream() -> Iterator[FakeUpstreamProcess]:
    process = FakeUpstreamProcess("--projects", "0", "--tree", "--sized", str(3 * 2**20))
    yield process
    process.stop()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()


def test_nginxInFront(upstream: FakeUpstreamProcess, tmp_path: Path) -> None:
    """
    pip and uv install the tree through nginx in front of the mirror;
    pages are cached by nginx as the mirror says; warm files are sent by
    nginx from the mirror's tree, cold ones stream through the mirror,
    byte for byte either way.
    """
    cache = tmp_path / "cache"
    mirror = MirrorProcess(upstream.url, cache, "--accel-redirect", "/+accel/", "--access-log", str(tmp_path / "access.log"))
    front: NginxProcess | None = None
    try:
        front = NginxProcess(mirror.port, cache, tmp_path / "nginx")
        for name, install in (("pip", pipInstall), ("uv", uvInstall)):
            python = freshVenv(tmp_path / name)
            install(python, "--index-url", front.url, "alpha")
            assert imported(python) == INSTALLED, name
        page = f"http://127.0.0.1:{front.port}/simple/sized/"
        _, headers, body = fetch(page, JSON)
        _, again, _ = fetch(page, JSON)
        assert again["x-cache-status"] == "HIT", again
        assert again["etag"] == headers["etag"]
        [link] = linksOf(type("A", (), {"body": body})()).values()
        url = f"http://127.0.0.1:{front.port}" + os.path.normpath("/simple/sized/" + link["url"])
        expected = link["hashes"]["sha256"]
        _, coldHeaders, cold = fetch(url)
        assert coldHeaders["tailmirror-cache"] == "miss"
        assert hashlib.sha256(cold).hexdigest() == expected
        # The client may have every byte a moment before the file is kept.
        kept = cache / "+files" / urllib.request.url2pathname(url.split("/", 3)[3])
        deadline = time.monotonic() + 10
        while not kept.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _, warmHeaders, warm = fetch(url)
        assert warmHeaders["tailmirror-cache"] == "hit"
        assert warmHeaders["etag"] == f'"{expected[:16]}"'
        assert hashlib.sha256(warm).hexdigest() == expected
        assert "last-modified" not in warmHeaders  # the tree's times are its own
        code, ranged, part = fetch(url, {"Range": "bytes=100-199"})
        assert (code, part) == (206, warm[100:200])
        for _ in range(5):
            assert fetch(url)[2] == warm
        # A client that has it is told so, by the mirror.
        with pytest.raises(urllib.error.HTTPError) as notModified:
            fetch(url, {"If-None-Match": warmHeaders["etag"]})
        assert notModified.value.code == 304
        # The warm file went out from nginx: the mirror sent no bytes, and
        # was asked about it once for all those downloads (twice if the
        # answer's seconds ran out meanwhile).
        lines = (tmp_path / "access.log").read_text().splitlines()
        sent = [line for line in lines if link["filename"] in line and '" 200 ' in line]
        assert re.search(r'" 200 (3145728|\d{7}) ', sent[0]), sent
        assert all(re.search(r'" 200 0 ', line) for line in sent[1:]), sent
        assert 1 <= len(sent[1:]) <= 2, sent
        # Gone from the tree behind nginx's answer: the mirror fetches it again.
        kept.unlink()
        _, refetchedHeaders, refetched = fetch(url)
        assert refetchedHeaders["tailmirror-cache"] == "miss"
        assert refetched == warm
        # A client cannot ask nginx for the tree itself.
        with pytest.raises(urllib.error.HTTPError) as caught:
            fetch(f"http://127.0.0.1:{front.port}/+accel/" + link["url"].replace("../", ""))
        assert caught.value.code == 404
        assert "[crit]" not in front.errors() and "[error]" not in front.errors(), front.errors()
        # The mirror down (restarting, say): warm files still go out, by
        # nginx's last answers, and cached pages; anything else is a plain
        # gateway error.
        mirror.stop()
        assert fetch(url)[2] == warm
        assert fetch(page, JSON)[2] == body
        with pytest.raises(urllib.error.HTTPError) as down:
            fetch(f"http://127.0.0.1:{front.port}/root/pypi/+f/abc/def0123456789/other-1.0.tar.gz")
        assert down.value.code == 502
    finally:
        if front is not None:
            front.stop()
        mirror.stop()
    assert "Traceback" not in mirror.logText()


class _Recorder(http.server.BaseHTTPRequestHandler):
    """
    A stand-in for the mirror behind nginx: every file is cold (the
    question is answered 403), and every request is recorded with the
    connection it came on.
    """

    protocol_version = "HTTP/1.1"
    seen: list[tuple[int, str, str | None, str | None]] = []

    def do_GET(self) -> None:
        front = self.headers.get("X-Tailmirror-Front")
        self.seen.append((self.client_address[1], self.path, self.headers.get("Host"), front))
        body = b"" if front == "ask" else b"the file\n"
        self.send_response(403 if front == "ask" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_filesKeptAlive(tmp_path: Path) -> None:
    """
    Every request nginx passes to the mirror for a file, the question and
    the client's own request, carries the name the client used and goes
    over the connections nginx keeps open: the file locations set headers
    of their own, so they must repeat the server's.
    """
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    front = NginxProcess(server.server_address[1], tmp_path / "cache", tmp_path / "nginx")
    try:
        for n in range(3):
            request = urllib.request.Request(
                f"http://127.0.0.1:{front.port}/root/pypi/+f/abc/def0123456789/f{n}-1.0.tar.gz",
                headers={"Host": "mirror.example:8080"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.read() == b"the file\n"
    finally:
        front.stop()
        server.shutdown()
    files = [seen for seen in _Recorder.seen if seen[1].startswith("/root/")]
    assert [front for _, _, _, front in files] == ["ask", "accel"] * 3, files
    assert {host for _, _, host, _ in files} == {"mirror.example:8080"}, files
    assert len({port for port, _, _, _ in files}) <= 2, files


def test_nginxInFrontOfAuth(upstream: FakeUpstreamProcess, tmp_path: Path) -> None:
    """
    Behind C{--auth}, nginx passes each client's credentials on, for pages
    and for its questions about files: pip installs with them; a request
    without them, or with wrong ones, is a 401 with the mirror's challenge,
    even for a page and a warm file nginx has sent another reader.
    """
    token, line = newToken("reader")
    (tmp_path / "tokens").write_text(line + "\n")
    cache = tmp_path / "cache"
    mirror = MirrorProcess(upstream.url, cache, "--accel-redirect", "/+accel/", "--auth", f"tokens:{tmp_path / 'tokens'}")
    front: NginxProcess | None = None
    right = {"Authorization": f"Bearer {token}"}
    try:
        front = NginxProcess(mirror.port, cache, tmp_path / "nginx")
        python = freshVenv(tmp_path / "pip")
        pipInstall(python, "--index-url", front.url.replace("://", f"://__token__:{token}@"), "alpha")
        assert imported(python) == INSTALLED
        page = f"http://127.0.0.1:{front.port}/simple/sized/"
        _, _, body = fetch(page, {**JSON, **right})
        assert fetch(page, {**JSON, **right})[1]["x-cache-status"] == "HIT"
        [link] = linksOf(type("A", (), {"body": body})()).values()
        url = f"http://127.0.0.1:{front.port}" + os.path.normpath("/simple/sized/" + link["url"])
        fetch(url, right)
        kept = cache / "+files" / urllib.request.url2pathname(url.split("/", 3)[3])
        deadline = time.monotonic() + 10
        while not kept.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fetch(url, right)[1]["tailmirror-cache"] == "hit"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic bWU6bm8="}):
            for where in (page, url, f"http://127.0.0.1:{front.port}/+status"):
                with pytest.raises(urllib.error.HTTPError) as caught:
                    fetch(where, {**JSON, **headers})
                assert caught.value.code == 401, (where, headers)
                challenges = " ".join(caught.value.headers.get_all("WWW-Authenticate") or [])
                # (nginx passes on the first challenge of its question's 401 only.)
                assert 'Basic realm="tailmirror"' in challenges, (where, challenges)
        assert fetch(url, right)[1]["tailmirror-cache"] == "hit"
    finally:
        if front is not None:
            front.stop()
        mirror.stop()
    assert "Traceback" not in mirror.logText()
