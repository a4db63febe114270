"""
A fleet on a shared bucket, measured in one run on this machine: real
C{twistd tailmirror} nodes, a real S3 API server on 127.0.0.1 (moto's, in
server mode) and the fake upstream with the benchmark tree (BENCH_PROJECTS
projects of real wheels in four layers, as benchmarks/installs.py installs
them, the files at BENCH_LATENCY seconds a request, as a distant index):

1. warm throughput of one node, for a 1 MB file (wrk, 16 connections) and
   a JSON page: read from its own disk; read from the bucket (a node that
   redirects nothing, its disk emptied each round, so each request is a
   bucket read: measured as files a second with curl); and redirected
   (C{--store-redirect}: the 307 alone, and the 307 followed to the
   bucket);
2. a fresh node's first install of the tree (pip, empty cache) from the
   bucket, against a warm install through a node that has it all on disk
   (target: at most 1.5 times);
3. upstream downloads per file with three nodes racing on a cold tree:
   pip through each node at once (target: 1.0);
4. the CPU seconds each node spent per warm request on each path.

Needs wrk and curl (Debian: wrk curl) and moto (the test extra).  Run
from the repository root: python benchmarks/fleet.py
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable
from urllib.parse import urljoin

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import requireTools, wrk  # noqa: E402
from benchmarks.files import cpuSeconds, curl  # noqa: E402
from tests.processes import FakeUpstreamProcess, MirrorProcess, S3Process, freshVenv, pipInstall  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PROJECTS = os.environ.get("BENCH_PROJECTS", "60")
LATENCY = os.environ.get("BENCH_LATENCY", "0.05")
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def node(upstream: FakeUpstreamProcess, s3: S3Process, cache: Path, *args: str) -> MirrorProcess:
    return MirrorProcess(upstream.url, cache, "--store", f"s3://{s3.bucket}/bench", "--store-endpoint",
                         s3.endpoint, "--access-log", "off", *args, env=s3.env)


def linkOf(mirror: MirrorProcess, project: str) -> str:
    request = urllib.request.Request(mirror.url + f"{project}/", headers={"Accept": JSON_TYPE})
    with urllib.request.urlopen(request, timeout=30) as r:
        entry = json.load(r)["files"][0]
    return str(urljoin(mirror.url + f"{project}/", entry["url"]))


def perRequestCPU(pid: int, work: Callable[[], int]) -> float:
    """
    CPU seconds a node spends per request of C{work} (which says how many
    it made).
    """
    before = cpuSeconds(pid)
    count = work()
    return (cpuSeconds(pid) - before) / max(1, count)


def wrkCount(url: str, accept: str = "*/*") -> tuple[float, int]:
    rate = wrk(url, accept, connections=16)
    return rate, int(rate * int(os.environ.get("BENCH_SECONDS", "5")))


def timedInstall(work: Path, label: str, index: str) -> float:
    python = freshVenv(work / label)
    began = time.monotonic()
    pipInstall(python, "--index-url", index, "app")
    return time.monotonic() - began


def main() -> None:
    requireTools("benchmarks/fleet.py", "wrk", "curl")
    work = Path(tempfile.mkdtemp(prefix="tailmirror-fleet-"))
    s3 = S3Process(work)
    upstream = FakeUpstreamProcess("--projects", "0", "--layered", PROJECTS, "--latency", LATENCY,
                                   "--absolute", "--sized", str(2**20))
    rows: list[tuple[str, str]] = []
    try:
        # 3. Three nodes racing on a cold tree.
        racers = [node(upstream, s3, work / f"race{i}") for i in range(3)]
        try:
            failures: list[BaseException] = []

            def install(i: int) -> None:
                try:
                    pipInstall(freshVenv(work / f"racer{i}"), "--index-url", racers[i].url, "app")
                except BaseException as e:
                    failures.append(e)

            threads = [threading.Thread(target=install, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(600)
            assert not failures, failures
            seen = upstream.stats()
            files = [n for path, n in seen.items() if path.startswith("/files/") and not path.endswith(".metadata")]
            perFile = sum(files) / len(files)
            rows.append(("upstream downloads per file, 3 nodes racing (target 1.0)", f"{perFile:.2f} ({len(files)} files)"))
        finally:
            for each in racers:
                each.stop()
        # 2. A fresh node from the bucket against a warm node from its disk.
        warmNode = node(upstream, s3, work / "race0")
        try:
            warmTimes = [timedInstall(work, f"warm{i}", warmNode.url) for i in range(ROUNDS)]
        finally:
            warmNode.stop()
        freshTimes = []
        for i in range(ROUNDS):
            fresh = node(upstream, s3, work / f"fresh{i}")
            try:
                freshTimes.append(timedInstall(work, f"fresh{i}", fresh.url))
            finally:
                fresh.stop()
                shutil.rmtree(work / f"fresh{i}", ignore_errors=True)
        warm, fromBucket = statistics.median(warmTimes), statistics.median(freshTimes)
        rows.append(("warm install, node with the tree on disk (s)", f"{warm:.2f}"))
        rows.append(("first install, fresh node from the bucket (s)", f"{fromBucket:.2f}"))
        rows.append(("  ratio (target <= 1.5)", f"{fromBucket / warm:.2f}"))
        # 1 and 4. One node's warm paths.
        disk = node(upstream, s3, work / "race1")
        try:
            url = linkOf(disk, "sized")
            curl(url)
            rate, count = wrkCount(url)
            cpu = perRequestCPU(disk.process.pid, lambda: wrkCount(url)[1])
            rows.append(("1 MB file from the node's disk (req/s; CPU ms/req)", f"{rate:,.0f}; {cpu * 1000:.2f}"))
            page = disk.url + "sized/"
            pageRate, _ = wrkCount(page, JSON_TYPE)
            pageCPU = perRequestCPU(disk.process.pid, lambda: wrkCount(page, JSON_TYPE)[1])
            rows.append(("JSON page, warm (req/s; CPU ms/req)", f"{pageRate:,.0f}; {pageCPU * 1000:.2f}"))
        finally:
            disk.stop()
        reader = node(upstream, s3, work / "reader")
        try:
            url = linkOf(reader, "sized")
            cache = work / "reader" / "+files"
            took = []
            before = cpuSeconds(reader.process.pid)
            for _ in range(20):
                shutil.rmtree(cache / "root", ignore_errors=True)
                took.append(curl(url)["total"])
            cpu = (cpuSeconds(reader.process.pid) - before) / 20
            rows.append(("1 MB file read from the bucket, disk emptied each time (files/s; CPU ms/file)",
                         f"{1 / statistics.median(took):,.1f}; {cpu * 1000:.2f}"))
        finally:
            reader.stop()
        redirecting = node(upstream, s3, work / "redirect", "--store-redirect")
        try:
            url = linkOf(redirecting, "sized")
            rate, _ = wrkCount(url)
            cpu = perRequestCPU(redirecting.process.pid, lambda: wrkCount(url)[1])
            followed = [curl(url, "-L")["total"] for _ in range(20)]
            rows.append(("1 MB file redirected: the 307 alone (req/s; CPU ms/req)", f"{rate:,.0f}; {cpu * 1000:.2f}"))
            rows.append(("  the 307 followed to the bucket (files/s)", f"{1 / statistics.median(followed):,.1f}"))
        finally:
            redirecting.stop()
    finally:
        upstream.stop()
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(label) for label, _ in rows)
    print(f"fleet benchmark: {PROJECTS} projects, upstream latency {LATENCY} s, {ROUNDS} rounds")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
