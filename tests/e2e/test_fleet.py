"""
A fleet of real C{twistd tailmirror} nodes sharing one bucket of a real S3
API server on 127.0.0.1 (moto's, in server mode), through the real client
library: files put once verified, a fresh node that installs from the
bucket while upstream is stopped, racing cold misses that cost upstream one
download, a corrupt object never served and replaced, the bucket stopped
while installs go on, redirects, and start failures.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator
from urllib.parse import urljoin

import pytest

from ..processes import (
    BIN,
    INSTALLED,
    REPO,
    FakeUpstreamProcess,
    MirrorProcess,
    S3Process,
    cleanEnv,
    freshVenv,
    imported,
    pipInstall,
    run,
    uvInstall,
)

SIZED = 3 * 2**20


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Process]:
    server = S3Process(tmp_path)
    yield server
    server.stop()


def node(upstream: FakeUpstreamProcess, s3: S3Process, cache: Path, *args: str) -> MirrorProcess:
    return MirrorProcess(upstream.url, cache, "--store", f"s3://{s3.bucket}/fleet", "--store-endpoint", s3.endpoint,
                         *args, env=s3.env)


def fileURL(mirror: MirrorProcess, project: str) -> tuple[str, str]:
    """
    The mirror's URL of a project's first file, and its sha256.
    """
    request = urllib.request.Request(mirror.url + f"{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        entry = json.load(r)["files"][0]
    return urljoin(mirror.url + f"{project}/", entry["url"]), entry["hashes"]["sha256"]


def waitFor(check: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_freshNodeFromTheBucket(s3: S3Process, tmp_path: Path) -> None:
    """
    A node's installs put the files and pages in the bucket, in the local
    tree's layout; a fresh node (an empty cache) with the upstream stopped
    installs the tree from the bucket, with pip and uv.
    """
    upstream = FakeUpstreamProcess("--projects", "0", "--tree")
    first = node(upstream, s3, tmp_path / "a")
    try:
        python = freshVenv(tmp_path / "pip")
        pipInstall(python, "--index-url", first.url, "alpha")
        assert imported(python) == INSTALLED
        waitFor(lambda: sum(k.endswith(".whl") for k in s3.keys("fleet/root/pypi/+f/")) == 3)
        keys = s3.keys("fleet/")
        assert any(k.startswith("fleet/+pages/pypi/alpha") for k in keys), keys
        assert not any("+leases" in k for k in keys), keys
    finally:
        first.stop()
        upstream.stop()
    fresh = node(upstream, s3, tmp_path / "b")
    try:
        for name, install in (("pip-fresh", pipInstall), ("uv-fresh", uvInstall)):
            python = freshVenv(tmp_path / name)
            install(python, "--index-url", fresh.url, "alpha")
            assert imported(python) == INSTALLED, name
        assert "Traceback" not in fresh.logText()
    finally:
        fresh.stop()


def test_racingColdMisses(s3: S3Process, tmp_path: Path) -> None:
    """
    Three nodes asked for the same cold file at once download it from
    upstream once (counted there); every client gets every byte.
    """
    upstream = FakeUpstreamProcess("--projects", "0", "--sized", str(SIZED), "--rate", "2")
    nodes = [node(upstream, s3, tmp_path / f"n{i}") for i in range(3)]
    try:
        urls = [fileURL(n, "sized") for n in nodes]
        bodies: list[bytes] = [b""] * 3

        def get(i: int) -> None:
            with urllib.request.urlopen(urls[i][0], timeout=60) as r:
                bodies[i] = r.read()

        threads = [threading.Thread(target=get, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert [hashlib.sha256(b).hexdigest() for b in bodies] == [urls[0][1]] * 3
        assert upstream.stats()["/files/sized-1.0.tar.gz"] == 1
    finally:
        for n in nodes:
            n.stop()
        upstream.stop()


def test_corruptObjectReplaced(s3: S3Process, tmp_path: Path) -> None:
    """
    An object whose bytes are wrong is never served whole: the node that
    reads it fails that download, fetches the file from upstream and puts
    the verified bytes over the object, and serves them.
    """
    upstream = FakeUpstreamProcess("--projects", "0", "--sized", str(SIZED))
    first = node(upstream, s3, tmp_path / "a")
    try:
        url, sha = fileURL(first, "sized")
        urllib.request.urlopen(url, timeout=30).read()
        waitFor(lambda: any(k.endswith("sized-1.0.tar.gz") for k in s3.keys()))
    finally:
        first.stop()
    [key] = [k for k in s3.keys() if k.endswith("sized-1.0.tar.gz")]
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b"x" * SIZED)
    second = node(upstream, s3, tmp_path / "b")
    try:
        url, _ = fileURL(second, "sized")
        try:
            got = urllib.request.urlopen(url, timeout=30).read()
            assert hashlib.sha256(got).hexdigest() == sha, "a corrupt object was served whole"
        except (urllib.error.URLError, ConnectionError, OSError):
            pass  # the download from the bucket failed: never served
        def fixed() -> bool:
            data = s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read()
            return hashlib.sha256(data).hexdigest() == sha
        waitFor(fixed)
        assert hashlib.sha256(urllib.request.urlopen(url, timeout=30).read()).hexdigest() == sha
        assert "corrupt" in second.logText()
        assert "Traceback" not in second.logText()
    finally:
        second.stop()
        upstream.stop()


def test_bucketStopped(s3: S3Process, tmp_path: Path) -> None:
    """
    The bucket stopped: installs go on from the node's disk and upstream;
    /+status and /+metrics say the store fails, with puts pending; the
    readiness probe says degraded, and why.
    """
    upstream = FakeUpstreamProcess("--projects", "0", "--tree")
    mirror = node(upstream, s3, tmp_path / "a")
    try:
        s3.stop()
        python = freshVenv(tmp_path / "pip")
        pipInstall(python, "--index-url", mirror.url, "alpha")
        assert imported(python) == INSTALLED

        def status() -> dict[str, object]:
            with urllib.request.urlopen(mirror.url.replace("/simple/", "/+status?format=json"), timeout=30) as r:
                return json.load(r)["store"]  # type: ignore[no-any-return]

        waitFor(lambda: not status()["healthy"])
        assert status()["pendingPuts"] or status()["failedPuts"]
        with urllib.request.urlopen(mirror.url.replace("/simple/", "/+health/ready"), timeout=30) as r:
            ready = json.load(r)
        assert ready["status"] == "degraded" and "store" in ready["reasons"], ready
        with urllib.request.urlopen(mirror.url.replace("/simple/", "/+metrics"), timeout=30) as r:
            assert b"tailmirror_store_healthy 0.0" in r.read()
        with urllib.request.urlopen(mirror.url.replace("/simple/", "/+status"), timeout=30) as r:
            assert b"failing:" in r.read()
        assert mirror.logText().count("the store fails") == 1
        assert "Traceback" not in mirror.logText()
    finally:
        mirror.stop()
        upstream.stop()


def test_redirects(s3: S3Process, tmp_path: Path) -> None:
    """
    With --store-redirect, a file in the bucket is answered with a 307 to a
    presigned URL; pip and uv follow it, hashes checked.
    """
    upstream = FakeUpstreamProcess("--projects", "0", "--tree")
    first = node(upstream, s3, tmp_path / "a")
    try:
        pipInstall(freshVenv(tmp_path / "warm"), "--index-url", first.url, "alpha")
        waitFor(lambda: sum(k.endswith(".whl") for k in s3.keys()) == 3)
    finally:
        first.stop()
    redirecting = node(upstream, s3, tmp_path / "b", "--store-redirect")
    try:
        url, _ = fileURL(redirecting, "gamma")

        class NoFollow(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.build_opener(NoFollow()).open(url, timeout=30)
        assert caught.value.code == 307
        # A hot file's redirects reuse a URL presigned lately (a minute).
        with pytest.raises(urllib.error.HTTPError) as again:
            urllib.request.build_opener(NoFollow()).open(url, timeout=30)
        assert again.value.headers["Location"] == caught.value.headers["Location"]
        assert caught.value.headers["Location"].startswith(s3.endpoint + f"/{s3.bucket}/fleet/root/pypi/%2Bf/")
        for name, install in (("pip", pipInstall), ("uv", uvInstall)):
            python = freshVenv(tmp_path / name)
            install(python, "--index-url", redirecting.url, "alpha")
            assert imported(python) == INSTALLED, name
        assert not list((tmp_path / "b").rglob("*.whl")), "the bytes passed through the node"
    finally:
        redirecting.stop()
        upstream.stop()


def test_startFailures(tmp_path: Path) -> None:
    """
    Wrong credentials, a bucket that does not exist, or no credentials: one
    line naming the option and why, exit status 1; right ones start.
    """
    s3 = S3Process(tmp_path, checked=True)
    env = cleanEnv(PYTHONPATH=str(REPO))
    wrong = dict(s3.env, AWS_SECRET_ACCESS_KEY="not-the-secret")
    none = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    cases = [(s3.bucket, wrong, "denies these credentials"), ("no-such-bucket", s3.env, "does not exist"),
             (s3.bucket, none, "credentials")]
    try:
        upstream = FakeUpstreamProcess("--projects", "0", "--tree")
        right = node(upstream, s3, tmp_path / "right")
        right.stop()
        upstream.stop()
        runs = [(bucket, extra, words, _start(s3, bucket, extra, env, tmp_path)) for bucket, extra, words in cases]
    finally:
        s3.stop()
    for bucket, extra, words, result in runs:
        assert result.returncode == 1, result.stdout + result.stderr
        line = result.stderr.strip().splitlines()[-1]
        assert "--store" in line and words in line, line
        assert "not-the-secret" not in result.stdout + result.stderr


def _start(s3: S3Process, bucket: str, extra: dict[str, str], env: dict[str, str], tmp_path: Path) -> "subprocess.CompletedProcess[str]":
    """
    C{twistd tailmirror} started with a store: how it went.
    """
    return run([str(BIN / "twistd"), "-n", "--pidfile=", "tailmirror", "--upstream", "http://127.0.0.1:1/simple/",
                "--cache-dir", str(tmp_path / "c"), "--listen", "tcp:0:interface=127.0.0.1",
                "--store", f"s3://{bucket}", "--store-endpoint", s3.endpoint],
               env={**{k: v for k, v in env.items() if not k.startswith("AWS_")}, **extra}, timeout=60)


def test_tierBehindNginx(s3: S3Process, tmp_path: Path) -> None:
    """
    Three nodes sharing the bucket behind real nginx (as
    contrib/nginx/tailmirror-fleet.conf configures it): pip installs the
    tree through the tier while the node serving it is killed, and
    completes through the others; uv installs through what is left.
    """
    import signal

    from ..processes import NginxProcess

    upstream = FakeUpstreamProcess("--projects", "0", "--tree", "--latency", "0.3")
    nodes = [node(upstream, s3, tmp_path / f"n{i}") for i in range(3)]
    front: NginxProcess | None = None
    try:
        front = NginxProcess(0, tmp_path, tmp_path / "nginx", fleet=[n.port for n in nodes])
        python = freshVenv(tmp_path / "pip")
        done: list[BaseException | None] = []

        def install() -> None:
            try:
                pipInstall(python, "--index-url", front.url if front else "", "alpha")
                done.append(None)
            except BaseException as e:
                done.append(e)

        worker = threading.Thread(target=install)
        worker.start()
        waitFor(lambda: any('"GET /simple/' in n.logText() for n in nodes))
        time.sleep(0.5)
        victim = max(nodes, key=lambda n: n.logText().count('"GET /'))
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(10)
        worker.join(120)
        assert done == [None], done
        assert imported(python) == INSTALLED
        python = freshVenv(tmp_path / "uv")
        uvInstall(python, "--index-url", front.url, "alpha", "gamma")
        assert imported(python) == INSTALLED
        for each in nodes:
            if each is not victim:
                assert "Traceback" not in each.logText()
    finally:
        if front is not None:
            front.stop()
        for each in nodes:
            if each.process.poll() is None:
                each.stop()
        upstream.stop()


def test_nodeUnit(s3: S3Process, tmp_path: Path) -> None:
    """
    contrib/systemd/tailmirror-node.service passes C{systemd-analyze
    verify}; its command line, with the environment file's variables as
    systemd puts them in, runs a node that installs through the bucket.
    """
    import os
    import shlex
    import subprocess

    from ..processes import freePort, tool, waitForHTTP

    unit = (REPO / "contrib" / "systemd" / "tailmirror-node.service").read_text()
    copy = tmp_path / "tailmirror-node.service"
    copy.write_text(unit.replace("/opt/tailmirror/bin/twistd", str(BIN / "twistd")))
    verified = subprocess.run([tool("systemd-analyze", "systemd"), "verify", str(copy)], capture_output=True,
                              text=True, timeout=60)
    assert verified.returncode == 0 and not (verified.stdout + verified.stderr).strip(), verified.stdout + verified.stderr
    upstream = FakeUpstreamProcess("--projects", "0", "--tree")
    port = freePort()
    variables = {"TAILMIRROR_STORE": f"s3://{s3.bucket}/unit",
                 "TAILMIRROR_NODE_OPTIONS": f"--store-endpoint {s3.endpoint}"}
    line = unit.replace("\\\n", " ").split("ExecStart=", 1)[1].splitlines()[0]
    words = []
    for word in shlex.split(line):
        if word == "$TAILMIRROR_NODE_OPTIONS":
            words += variables["TAILMIRROR_NODE_OPTIONS"].split()
        else:
            words.append(word.replace("${TAILMIRROR_STORE}", variables["TAILMIRROR_STORE"])
                         .replace("/opt/tailmirror/bin/twistd", str(BIN / "twistd"))
                         .replace("/var/lib/tailmirror", str(tmp_path / "cache"))
                         .replace("tcp:3141", f"tcp:{port}:interface=127.0.0.1"))
    log = tmp_path / "node.log"
    words[1:1] = ["--logfile", str(log)]
    process = subprocess.Popen(words, env=dict(os.environ, PYTHONPATH=str(REPO), TAILMIRROR_UPSTREAM=upstream.url,
                                               **s3.env))
    try:
        url = f"http://127.0.0.1:{port}/simple/"
        waitForHTTP(url)
        python = freshVenv(tmp_path / "venv")
        pipInstall(python, "--index-url", url, "alpha")
        assert imported(python) == INSTALLED
        waitFor(lambda: any(k.startswith("unit/root/pypi/+f/") for k in s3.keys()))
    finally:
        process.terminate()
        process.wait(20)
        upstream.stop()
    assert "Traceback" not in log.read_text()


def test_leases(s3: S3Process) -> None:
    """
    A lease is one node's until it lets it go, or until it expires (its
    holder died mid-download): then another node takes it over.
    """
    import io
    import time as clock

    from tailmirror.files import Bucket

    first = Bucket(s3.bucket, "leases/", s3.endpoint, client=s3.client())
    second = Bucket(s3.bucket, "leases/", s3.endpoint, client=s3.client())
    assert first.lease("a" * 64) is True
    assert second.lease("a" * 64) is False
    first.release("a" * 64)
    assert second.lease("a" * 64) is True
    assert first.lease("b" * 64, seconds=0.5) is True
    clock.sleep(1)
    assert second.lease("b" * 64) is True, "an expired lease is taken over"
    assert first.conditional is True and second.conditional is True
    assert first.upload("leases/obj", io.BytesIO(b"bytes"), 5) is True
    assert second.upload("leases/obj", io.BytesIO(b"other"), 5) is False, "never over an object"
    assert s3.client().get_object(Bucket=s3.bucket, Key="leases/obj")["Body"].read() == b"bytes"
