"""
End to end, as a security reviewer would try it: a real C{twistd
tailmirror} with C{--auth} that pip, uv and Poetry read with credentials
in the URL and in netrc, over plain HTTP and over C{ssl:}; upstreams that
ask for Basic and bearer credentials, whose secret is then looked for on
every surface the mirror has; and pages that link files where the mirror
must not go.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from urllib.parse import urljoin
from pathlib import Path
from typing import Iterator

import pytest

from ..certs import Authority
from ..processes import (
    BIN,
    INSTALLED,
    REPO,
    FakeUpstreamProcess,
    MirrorProcess,
    cleanEnv,
    freePort,
    freshVenv,
    imported,
    pipInstall,
    poetryInstall,
    run,
    tool,
    uvInstall,
)

PASSWORD = "correct-horse"


@pytest.fixture
def upstream() -> Iterator[FakeUpstreamProcess]:
    process = FakeUpstreamProcess("--projects", "0", "--tree")
    yield process
    process.stop()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def readers(where: Path) -> tuple[Path, Path, str]:
    """
    An htpasswd file made by the real C{htpasswd -B} (alice), and a tokens
    file made by C{tailmirror token} (ci); the token.
    """
    users = where / "users"
    subprocess.run([tool("htpasswd", "apache2-utils"), "-B", "-b", "-c", str(users), "alice", PASSWORD],
                   check=True, capture_output=True)
    made = subprocess.run([sys.executable, "-m", "tailmirror", "token", "ci"], check=True, capture_output=True,
                          text=True, cwd=REPO)
    tokens = where / "tokens"
    tokens.write_text(made.stderr.splitlines()[-1] + "\n")
    return users, tokens, made.stdout.strip()


def withUserinfo(url: str, user: str, password: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{user}:{password}@{rest}"


def test_clientsWithCredentials(upstream: FakeUpstreamProcess, tmp_path: Path) -> None:
    """
    pip, uv and Poetry install through C{--auth} with credentials in the
    index URL, pip and uv with netrc too; without them, they cannot; the
    access log names who read.
    """
    users, tokens, token = readers(tmp_path)
    mirror = MirrorProcess(upstream.url, tmp_path / "cache", "--auth", f"htpasswd:{users}",
                           "--auth", f"tokens:{tokens}")
    try:
        python = freshVenv(tmp_path / "none")
        refused = run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-cache-dir",
                       "--index-url", mirror.url, "alpha"], env=cleanEnv())
        assert refused.returncode != 0
        assert '"GET /simple/alpha/ HTTP/1.1" 401' in mirror.logText()
        python = freshVenv(tmp_path / "pip-url")
        pipInstall(python, "--index-url", withUserinfo(mirror.url, "alice", PASSWORD), "alpha")
        assert imported(python) == INSTALLED
        python = freshVenv(tmp_path / "uv-url")
        uvInstall(python, "--index-url", withUserinfo(mirror.url, "__token__", token), "alpha")
        assert imported(python) == INSTALLED
        netrc = tmp_path / "netrc"
        netrc.write_text(f"machine 127.0.0.1 login alice password {PASSWORD}\n")
        netrc.chmod(0o600)
        python = freshVenv(tmp_path / "pip-netrc")
        pipInstall(python, "--index-url", mirror.url, "alpha", env={"NETRC": str(netrc)})
        assert imported(python) == INSTALLED
        python = freshVenv(tmp_path / "uv-netrc")
        uvInstall(python, "--index-url", mirror.url, "alpha", env={"NETRC": str(netrc)})
        assert imported(python) == INSTALLED
        python = poetryInstall(tmp_path / "poetry", mirror.url, POETRY_HTTP_BASIC_MIRROR_USERNAME="ci",
                               POETRY_HTTP_BASIC_MIRROR_PASSWORD=token)
        assert imported(python) == INSTALLED
        # The warm command reads such a mirror with the URL's credentials.
        (tmp_path / "requirements.txt").write_text("gamma==2.0\n")
        warmed = run([sys.executable, "-m", "tailmirror", "warm", str(tmp_path / "requirements.txt"),
                      "--mirror", withUserinfo(mirror.url, "alice", PASSWORD)], cwd=REPO, env=cleanEnv())
        assert warmed.returncode == 0, warmed.stdout + warmed.stderr
        assert PASSWORD not in warmed.stdout + warmed.stderr
        log = mirror.logText()
        readersSeen = {line.split('"')[0].split()[-1] for line in log.splitlines() if '"GET /' in line}
        assert {"alice", "ci", "-"} <= readersSeen, readersSeen
        assert PASSWORD not in log and token not in log
        assert "Traceback" not in log
    finally:
        mirror.stop()


def test_servedOverTLS(upstream: FakeUpstreamProcess, tmp_path: Path) -> None:
    """
    C{--listen ssl:...} serves pip and uv over HTTPS, trusted by their own
    settings; the plain HTTP listener beside it draws a warning at start.
    """
    authority = Authority.make()
    server = tmp_path / "server.pem"
    server.write_bytes(authority.serverPEM("localhost"))
    ca = tmp_path / "ca.pem"
    ca.write_bytes(authority.pem)
    users, tokens, token = readers(tmp_path)
    port = freePort()
    mirror = MirrorProcess(upstream.url, tmp_path / "cache", "--auth", f"tokens:{tokens}",
                           "--listen", f"ssl:{port}:privateKey={server}:interface=127.0.0.1")
    try:
        index = f"https://__token__:{token}@localhost:{port}/simple/"
        python = freshVenv(tmp_path / "pip")
        pipInstall(python, "--index-url", index, "alpha", authority=ca)
        assert imported(python) == INSTALLED
        python = freshVenv(tmp_path / "uv")
        uvInstall(python, "--index-url", index, "alpha", authority=ca)
        assert imported(python) == INSTALLED
        log = mirror.logText()
        assert "--auth with plain HTTP on tcp:" in log
        assert f"--auth with plain HTTP on ssl:{port}" not in log
    finally:
        mirror.stop()


@pytest.mark.parametrize("kind", ["basic-url", "bearer-file", "basic-netrc"])
def test_upstreamSecretNeverShown(kind: str, tmp_path: Path) -> None:
    """
    An upstream that asks for credentials is mirrored with them, and they
    go nowhere else: not to a file host on another port (linked, or
    redirected to), and not into the log, the access log, C{/+status},
    the metrics, the journal and the tree, pages, errors, an export or
    C{--help}.
    """
    secret = "s3cret-" + kind
    if kind == "bearer-file":
        authorization, secrets = f"Bearer {secret}", [secret]
    else:
        basic = base64.b64encode(f"me:{secret}".encode()).decode()
        authorization, secrets = f"Basic {basic}", [secret, basic]
    files = FakeUpstreamProcess("--projects", "1")
    upstream = FakeUpstreamProcess(
        "--projects", "0", "--tree", "--require", authorization,
        "--link", f"elsewhere=http://localhost:{files.port}/files/elsewhere-1.0.tar.gz",
        "--link", "hop=../../hop/hop-1.0.tar.gz",
        "--redirect", f"/hop/hop-1.0.tar.gz=http://localhost:{files.port}/files/hop-1.0.tar.gz",
    )
    env: dict[str, str] = {}
    args = ["--allow-file-host", "localhost"]
    url = upstream.url
    if kind == "basic-url":
        url = withUserinfo(url, "me", secret)
    elif kind == "bearer-file":
        (tmp_path / "credentials").write_text(f"bearer {secret}\n")
        args += ["--upstream-credentials", str(tmp_path / "credentials")]
    else:
        (tmp_path / "netrc").write_text(f"machine 127.0.0.1 login me password {secret}\n")
        env["NETRC"] = str(tmp_path / "netrc")
    cache = tmp_path / "cache"
    mirror = MirrorProcess(url, cache, *args, env=env)
    surfaces: dict[str, bytes] = {}
    try:
        python = freshVenv(tmp_path / "venv")
        pipInstall(python, "--index-url", mirror.url, "alpha")
        assert imported(python) == INSTALLED
        for name in ("elsewhere", "hop"):
            status, _, page = get(mirror.url + f"{name}/", {"Accept": "application/vnd.pypi.simple.v1+json"})
            assert status == 200, page
            link = json.loads(page)["files"][0]["url"]
            status, _, body = get(urljoin(mirror.url + f"{name}/", link))
            surfaces[f"file {name}"] = body
            assert status == 502, body
        for path in ("alpha/", "alpha/?format=application/vnd.pypi.simple.v1+json", "missing-project/", ""):
            surfaces[path] = get(mirror.url + path)[2]
        for path in ("/+status", "/+status?format=json", "/+metrics"):
            status, _, surfaces[path] = get(mirror.url.replace("/simple/", path))
            assert status == 200
        seen = files.stats()
        assert seen.get("/files/elsewhere-1.0.tar.gz") == 1 and seen.get("/files/hop-1.0.tar.gz") == 1, seen
        assert not any(path.startswith("authorized:") for path in seen), seen
        assert upstream.stats().get("authorized:/simple/alpha/") == 1
    finally:
        mirror.stop()
        upstream.stop()
        files.stop()
    log = mirror.logText()
    assert "mirroring http://127.0.0.1:" in log and ("with basic" in log or "with bearer" in log)
    surfaces["log"] = log.encode()
    exported = tmp_path / "export"
    run([sys.executable, "-m", "tailmirror", "export", str(exported), "--cache-dir", str(cache)], cwd=REPO)
    for where in (cache, exported):
        for each in where.rglob("*"):
            if each.is_file():
                surfaces[str(each)] = each.read_bytes()
    assert any("journal" in name for name in surfaces) and any(str(exported) in name for name in surfaces)
    helped = run([str(BIN / "twistd"), "tailmirror", "--upstream", withUserinfo(upstream.url, "me", secret),
                  "--help"], env=dict(cleanEnv(), PYTHONPATH=str(REPO)))
    surfaces["--help"] = (helped.stdout + helped.stderr).encode()
    failed = run([str(BIN / "twistd"), "-n", "tailmirror", "--upstream", withUserinfo("ftp://x.test/", "me", secret)],
                 env=dict(cleanEnv(), PYTHONPATH=str(REPO)))
    surfaces["usage error"] = (failed.stdout + failed.stderr).encode()
    for name, content in surfaces.items():
        for secretText in secrets:
            assert secretText.encode() not in content, f"the secret is in {name}"


def test_refusedLinks(tmp_path: Path) -> None:
    """
    Links to loopback at another port, the cloud's metadata address, a
    private address, and a redirect to loopback: none is fetched (the
    stand-in counts no request), each answered 502 with its reason and the
    option; allowed by C{--allow-file-host}, the link is fetched.
    """
    other = FakeUpstreamProcess("--projects", "1")
    links = {
        "loop": f"http://127.0.0.1:{other.port}/files/loop-1.0.tar.gz",
        "named": f"http://localhost:{other.port}/files/named-1.0.tar.gz",
        "meta": "http://169.254.169.254/latest/meta-1.0.tar.gz",
        "private": "http://10.255.255.1:8080/private-1.0.tar.gz",
        "hop": "../../hop/hop-1.0.tar.gz",
    }
    upstream = FakeUpstreamProcess(
        "--projects", "0", *[a for name, link in links.items() for a in ("--link", f"{name}={link}")],
        "--redirect", f"/hop/hop-1.0.tar.gz=http://127.0.0.1:{other.port}/files/hop-1.0.tar.gz",
    )
    mirror = MirrorProcess(upstream.url, tmp_path / "cache", "--timeout", "5")
    try:
        for name, host in [("loop", "127.0.0.1"), ("named", "localhost"), ("meta", "169.254.169.254"),
                           ("private", "10.255.255.1"), ("hop", "127.0.0.1")]:
            status, _, page = get(mirror.url + f"{name}/", {"Accept": "application/vnd.pypi.simple.v1+json"})
            assert status == 200, page
            link = json.loads(page)["files"][0]["url"]
            status, _, body = get(urljoin(mirror.url + f"{name}/", link))
            assert status == 502, (name, body)
            line = body.decode()
            assert f"refused to fetch from {host}" in line and "--allow-file-host" in line, line
            assert "address" in line
        assert not any(path.startswith("/files/") for path in other.stats()), other.stats()
    finally:
        mirror.stop()
    mirror = MirrorProcess(upstream.url, tmp_path / "cache2", "--allow-file-host", f"127.0.0.1:{other.port}")
    try:
        status, _, page = get(mirror.url + "loop/", {"Accept": "application/vnd.pypi.simple.v1+json"})
        get(urljoin(mirror.url + "loop/", json.loads(page)["files"][0]["url"]))
        assert other.stats().get("/files/loop-1.0.tar.gz") == 1
        assert "Traceback" not in mirror.logText()
    finally:
        mirror.stop()
        upstream.stop()
        other.stop()
