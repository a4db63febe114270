"""
Figures for project pages, from one run on this machine:

1. warm page requests/s, HTML and JSON, through the mirror beside a bare
   twisted.web resource serving the same bytes under the same twistd
   (target ratio: at least 0.6);
2. startup time and resident memory of the mirror with 100,000 projects in
   its journal, with few and with many files a project (targets: under 5 s,
   under 300 MB, and no growth with files a project);
3. the time a cold page takes through the mirror beside the same page
   fetched straight from the fake upstream;
4. the time to revalidate an unchanged 2 MB page from an upstream without
   ETags (so it answers in full) beside its bare transfer from upstream
   (target: under 1.5 times);
5. a warm pip install of the test tree through the mirror, upstream up
   and upstream stopped (target: within 10%).

Needs wrk (Debian: apt-get install wrk).  Run from the repository root,
with the package installed:
python benchmarks/pages.py [warm] [startup] [cold] [revalidate] [pip]
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tailmirror.pages._journal import Journal  # noqa: E402
from tests.fakeindex import generated  # noqa: E402
from benchmarks import common  # noqa: E402
from benchmarks.common import rss, wrk  # noqa: E402
from tests.processes import BIN, REPO, FakeUpstreamProcess, MirrorProcess, freePort, waitForHTTP  # noqa: E402

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def fetch(port: int, path: str, accept: str, revalidate: bool = False) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Accept": accept}
    if revalidate:
        headers["Cache-Control"] = "max-age=0"  # as pip asks
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def warm(work: Path) -> None:
    upstream = FakeUpstreamProcess("--projects", "3", "--files", "30")
    mirror = MirrorProcess(upstream.url, work / "warm-cache")
    print("1. warm page requests/s (wrk, 1 thread, 8 connections, %d s each)" % common.SECONDS)
    try:
        for form, accept, ctype in [("HTML", "text/html", "text/html; charset=utf-8"), ("JSON", JSON_TYPE, JSON_TYPE)]:
            status, body = fetch(mirror.port, "/simple/project1/", accept)
            assert status == 200
            bodyFile = work / f"body-{form}"
            bodyFile.write_bytes(body)
            port = freePort()
            bare = subprocess.Popen(
                [str(BIN / "twistd"), "-n", "--pidfile=", "--logfile", str(work / f"bare-{form}.log"), "-y", str(REPO / "benchmarks" / "bare.tac")],
                env=dict(os.environ, BARE_PORT=str(port), BARE_BODY=str(bodyFile), BARE_TYPE=ctype),
            )
            try:
                waitForHTTP(f"http://127.0.0.1:{port}/")
                mirrorRate = wrk(mirror.url + "project1/", accept)
                bareRate = wrk(f"http://127.0.0.1:{port}/", accept)
            finally:
                bare.terminate()
                bare.wait()
            print(f"   {form} ({len(body)} bytes): mirror {mirrorRate:,.0f}/s, bare twisted.web {bareRate:,.0f}/s, ratio {mirrorRate / bareRate:.2f}")
    finally:
        mirror.stop()
        upstream.stop()


def startup(work: Path, projects: int, files: int) -> None:
    cache = work / f"cache-{projects}-{files}"
    cache.mkdir()
    journal = Journal(str(cache / "journal.jsonl"))
    journal.open()
    t0 = time.monotonic()
    now = time.time()
    for i in range(projects):
        project = generated(f"project{i}", versions=files)
        page = json.loads(project.jsonPage())
        for f in page["files"]:
            f["url"] = "https://upstream.invalid/files/" + f["filename"]
        journal.commit(journal.pageRecord(project.name, f'"{i}"', now, json.dumps(page, separators=(",", ":")).encode()))
    journal.close()
    size = os.path.getsize(cache / "journal.jsonl") / 2**20
    mirror = MirrorProcess("http://127.0.0.1:9/simple/", cache)
    try:
        status, body = fetch(mirror.port, f"/simple/project{projects - 1}/", JSON_TYPE)
        assert status == 200 and len(json.loads(body)["files"]) == files, status
        print(
            f"   {projects:,} projects x {files} files (journal {size:,.0f} MB, written in {time.monotonic() - t0:.0f} s): "
            f"ready in {mirror.ready:.2f} s, resident {rss(mirror.process.pid):.0f} MB"
        )
    finally:
        mirror.stop()
        shutil.rmtree(cache)


def cold(work: Path, count: int = 200) -> None:
    upstream = FakeUpstreamProcess("--projects", str(count), "--files", "30")
    mirror = MirrorProcess(upstream.url, work / "cold-cache")
    try:
        direct, through = [], []
        for i in range(count):
            path = f"/simple/project{i}/"
            t0 = time.perf_counter()
            assert fetch(upstream.port, path, JSON_TYPE)[0] == 200
            direct.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert fetch(mirror.port, path, JSON_TYPE)[0] == 200
            through.append(time.perf_counter() - t0)
        d, m = statistics.median(direct) * 1000, statistics.median(through) * 1000
        print(f"3. cold page (JSON, 30 files, median of {count}): direct from upstream {d:.2f} ms, through the mirror {m:.2f} ms (+{m - d:.2f} ms)")
    finally:
        mirror.stop()
        upstream.stop()


def revalidate(work: Path, rounds: int = 30) -> None:
    upstream = FakeUpstreamProcess("--projects", "1", "--files", "9000", "--no-etags")
    mirror = MirrorProcess(upstream.url, work / "revalidate-cache", "--revalidate-floor", "0")
    try:
        path = "/simple/project0/"
        status, body = fetch(upstream.port, path, JSON_TYPE)
        assert status == 200
        assert fetch(mirror.port, path, JSON_TYPE)[0] == 200
        direct, through = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            assert fetch(upstream.port, path, JSON_TYPE)[0] == 200
            direct.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert fetch(mirror.port, path, JSON_TYPE, revalidate=True)[0] == 200
            through.append(time.perf_counter() - t0)
        d, m = statistics.median(direct) * 1000, statistics.median(through) * 1000
        records = (work / "revalidate-cache" / "journal.jsonl").read_bytes().count(b"\n")
        print(
            f"4. revalidating an unchanged {len(body) / 2**20:.1f} MB page, no ETag (median of {rounds}): "
            f"bare transfer {d:.1f} ms, revalidation through the mirror {m:.1f} ms, ratio {m / d:.2f} "
            f"(journal records: {records})"
        )
    finally:
        mirror.stop()
        upstream.stop()


def pipWarm(work: Path, rounds: int = 3) -> None:
    from tests.processes import freshVenv, pipInstall

    upstream = FakeUpstreamProcess("--projects", "0", "--tree")
    mirror = MirrorProcess(upstream.url, work / "pip-cache")
    try:
        index = ["--index-url", mirror.url, "alpha", "delta"]
        pipInstall(freshVenv(work / "venv-cold"), *index)

        def install(label: str, i: int) -> float:
            python = freshVenv(work / f"venv-{label}-{i}")
            t0 = time.perf_counter()
            pipInstall(python, *index)
            return time.perf_counter() - t0

        up = [install("up", i) for i in range(rounds)]
        upstream.stop()
        down = [install("down", i) for i in range(rounds)]
        u, d = statistics.median(up), statistics.median(down)
        print(
            f"5. warm pip install (alpha, delta and their dependencies; median of {rounds}): "
            f"upstream up {u:.2f} s, upstream stopped {d:.2f} s, ratio {u / d:.2f}"
        )
    finally:
        mirror.stop()
        upstream.stop()


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/pages.py needs wrk: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="tailmirror-bench-") as tmp:
        work = Path(tmp)
        only = set(sys.argv[1:]) or {"warm", "startup", "cold", "revalidate", "pip"}
        if "warm" in only:
            warm(work)
        if "startup" in only:
            print("2. startup with a large journal")
            for files in (2, 20):
                startup(work, 100_000, files)
        if "cold" in only:
            cold(work)
        if "revalidate" in only:
            revalidate(work)
        if "pip" in only:
            pipWarm(work)


if __name__ == "__main__":
    main()
