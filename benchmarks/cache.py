"""
Figures for the bounded cache, from one run on this machine:

1. start-up with a big tree (BENCH_FILES small files, 1,000,000 by
   default): time to the first answer (target: under 2 s), time until the
   tree is counted, and the mirror's resident memory once it is, beside a
   mirror of an empty cache (target: under 120 bytes per cached file);
2. eviction: the same tree restarted with a --max-size under what it holds;
   files evicted per second, and the longest a warm request waited while
   eviction ran (the reactor's longest stall, as a client sees it);
3. warm file figures of the mirror before the reshaping of the code
   (BENCH_BEFORE, a git revision) and now, measured in turns in this run:
   a 200 MB file (best of BENCH_ROUNDS) and a 1 MB file with wrk.

Needs curl and wrk (Debian: apt-get install curl wrk), and about 9 GB of
disk in the temporary directory for a tree of a million files (a file
and a directory of 4 KiB each).  Run from the repository root, with the
package installed: python benchmarks/cache.py [startup] [evict] [warm]
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import rss, wrk  # noqa: E402
from benchmarks.files import curl, sizedFiles  # noqa: E402
from tailmirror.base._layout import mirrorPath  # noqa: E402
from tests.processes import REPO, FakeUpstreamProcess, MirrorProcess  # noqa: E402

FILES = int(os.environ.get("BENCH_FILES", "1000000"))
BEFORE = os.environ.get("BENCH_BEFORE", "125efbe")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
MB = 2**20
DAY = 86400.0


def makeTree(cache: Path, count: int) -> float:
    """
    A cache directory whose tree holds C{count} small files, last used at
    times spread over a month.  The seconds it took.
    """
    started = time.monotonic()
    root = cache / "+files" / "root" / "pypi" / "+f"
    now = time.time()
    payload = b"x" * 100
    for i in range(count):
        digest = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
        directory = root / digest[:3] / digest[3:16]
        os.makedirs(directory, exist_ok=True)
        path = directory / f"p{i}-1.0.tar.gz"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, payload)
        when = now - (i * 7919 % count) / count * 30 * DAY
        os.utime(fd, (when, when))
        os.close(fd)
    return time.monotonic() - started


class Probe:
    """
    A client asking for a warm page over and over, noting the longest wait.
    """

    def __init__(self, port: int, path: str = "/simple/") -> None:
        self.port, self.path = port, path
        self.longest = 0.0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set():
            started = time.perf_counter()
            connection.request("GET", self.path)
            connection.getresponse().read()
            self.longest = max(self.longest, time.perf_counter() - started)
            self.count += 1
            time.sleep(0.002)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(30)
        return self.longest


def firstAnswer(mirror: MirrorProcess) -> float:
    """
    Seconds from the mirror's start to its first answer.
    """
    return mirror.ready


def waitForLog(mirror: MirrorProcess, pattern: str, seconds: float = 600) -> re.Match[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = re.search(pattern, mirror.logText())
        if found:
            return found
        time.sleep(0.05)
    raise RuntimeError(f"never logged {pattern!r}")


def startup(work: Path, upstream: FakeUpstreamProcess) -> Path:
    empty = MirrorProcess(upstream.url, work / "empty")
    waitForLog(empty, r"cache inventory: 0 files")
    time.sleep(1)
    emptyRSS = rss(empty.process.pid)
    empty.stop()
    cache = work / "big"
    made = makeTree(cache, FILES)
    print(f"   (made a tree of {FILES:,} files in {made:.0f} s)")
    os.sync()
    mirror = MirrorProcess(upstream.url, cache)
    probe = Probe(mirror.port)
    counted = waitForLog(mirror, r"cache inventory: (\d+) files")
    inventory = time.monotonic() - mirror.started
    longest = probe.stop()
    time.sleep(1)
    bigRSS = rss(mirror.process.pid)
    mirror.stop()
    assert int(counted.group(1)) == FILES, counted.group(0)
    perFile = (bigRSS - emptyRSS) * MB / FILES
    print(
        f"1. start with {FILES:,} files: first answer after {firstAnswer(mirror):.2f} s (target < 2 s); "
        f"tree counted after {inventory:.1f} s, longest wait meanwhile {longest * 1000:.0f} ms; "
        f"resident {bigRSS:.0f} MB beside {emptyRSS:.0f} MB empty: {perFile:.1f} bytes per file (target < 120)"
    )
    return cache


def evict(work: Path, upstream: FakeUpstreamProcess, cache: Path) -> None:
    held = sum(1 for _ in (cache / "+files").rglob("*.tar.gz")) if FILES <= 100_000 else FILES
    # Each file costs a block and its directory's block: ask for a quarter off.
    limit = int(held * 8192 * 0.75)
    mirror = MirrorProcess(upstream.url, cache, "--max-size", str(limit))
    probe = Probe(mirror.port)
    found = waitForLog(mirror, r"evicted (\d+) files \(([^)]*)\) in ([\d.]+) s")
    longest = probe.stop()
    mirror.stop()
    files, seconds = int(found.group(1)), float(found.group(3))
    print(
        f"2. eviction of {files:,} of {held:,} files ({found.group(2)}): {seconds:.1f} s, "
        f"{files / seconds:,.0f} files/s; longest wait of a warm request meanwhile "
        f"{longest * 1000:.0f} ms over {probe.count:,} requests"
    )


def checkout(revision: str, into: Path) -> Path:
    """
    The tree of a revision, in a worktree of its own.
    """
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(into), revision],
                   check=True, capture_output=True)
    return into


def warm(work: Path) -> None:
    big, bigSha, small = sizedFiles(work, 200 * MB)
    upstream = FakeUpstreamProcess("--projects", "0", "--big", str(big), "--sized", str(MB))
    before = checkout(BEFORE, work / "before")
    mirrors = {
        f"before ({BEFORE})": MirrorProcess(upstream.url, work / "cache-before", repo=before),
        "now": MirrorProcess(upstream.url, work / "cache-now"),
    }
    try:
        urls = {}
        for label, mirror in mirrors.items():
            base = f"http://127.0.0.1:{mirror.port}/"
            urls[label] = (
                base + mirrorPath(big.name, "", {"sha256": bigSha}),
                base + mirrorPath(small.filename, "", {"sha256": small.sha256}),
            )
            curl(urls[label][0])
            curl(urls[label][1])
        speeds: dict[str, list[float]] = {label: [] for label in mirrors}
        rates: dict[str, list[float]] = {label: [] for label in mirrors}
        for _ in range(ROUNDS):
            for label in mirrors:
                speeds[label].append(curl(urls[label][0])["speed"] / MB)
        for label in mirrors:
            rates[label].append(wrk(urls[label][1], "application/octet-stream"))
        for label in reversed(list(mirrors)):
            rates[label].append(wrk(urls[label][1], "application/octet-stream"))
        for label in mirrors:
            print(
                f"3. warm, {label}: 200 MB file {max(speeds[label]):,.0f} MB/s (best of {ROUNDS}); "
                f"1 MB file {max(rates[label]):,.0f} requests/s (best of 2, wrk, 8 connections)"
            )
        now, then = "now", f"before ({BEFORE})"
        print(
            f"   ratios now/before: 200 MB {max(speeds[now]) / max(speeds[then]):.2f}, "
            f"1 MB {max(rates[now]) / max(rates[then]):.2f}"
        )
    finally:
        for mirror in mirrors.values():
            mirror.stop()
        upstream.stop()
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before)], capture_output=True)


def main() -> None:
    wanted = set(sys.argv[1:]) or {"startup", "evict", "warm"}
    work = Path(tempfile.mkdtemp(prefix="tailmirror-bench-cache-"))
    try:
        if wanted & {"startup", "evict"}:
            upstream = FakeUpstreamProcess()
            try:
                cache = startup(work, upstream)
                if "evict" in wanted:
                    evict(work, upstream, cache)
            finally:
                upstream.stop()
        if "warm" in wanted:
            warm(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
