"""
Installs through the mirror against installs straight from the index, from
one run on this machine: a fake upstream on 127.0.0.1 answering every
request 50 ms late (BENCH_LATENCY), serving a generated tree of 60
projects of real wheels with core metadata in four layers (BENCH_PROJECTS);
pip and uv each install it into fresh environments with their caches off:

1. straight from the fake upstream;
2. through a cold mirror;
3. through the warm mirror.

It prints each time, the ratios to direct, and the upstream requests each
install made.  The issue's targets: cold pip through the mirror at most
0.5 of direct, cold uv at most 0.8, warm pip and uv at most 0.3.

Run from the repository root: python benchmarks/installs.py
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.processes import FakeUpstreamProcess, MirrorProcess, freshVenv, pipInstall, uvInstall  # noqa: E402

LATENCY = os.environ.get("BENCH_LATENCY", "0.05")
PROJECTS = os.environ.get("BENCH_PROJECTS", "60")


def upstreamRequests(upstream: FakeUpstreamProcess) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{upstream.port}/_stats", timeout=30) as r:
        stats = json.loads(r.read())
    return sum(v for k, v in stats.items() if k != "/_stats")


def prefetchFigures(mirror: MirrorProcess) -> dict[str, Any]:
    request = urllib.request.Request(mirror.url.replace("/simple/", "/+status"), headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())["prefetch"]  # type: ignore[no-any-return]


def peakRSS(pid: int) -> int:
    """
    The most memory a process has held, in bytes (Linux).
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def timed(work: Path, label: str, install: object, index: str, upstream: FakeUpstreamProcess) -> tuple[float, int]:
    python = freshVenv(work / f"venv-{label}")
    before = upstreamRequests(upstream)
    started = time.perf_counter()
    install(python, "--index-url", index, "app")  # type: ignore[operator]
    seconds = time.perf_counter() - started
    return seconds, upstreamRequests(upstream) - before


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tailmirror-bench-installs-"))
    modes = os.environ.get("BENCH_PREFETCH", "metadata files").split()
    try:
        print(f"installing app and its {int(PROJECTS) - 1} dependencies; upstream answers {float(LATENCY) * 1000:.0f} ms late")
        clients = os.environ.get("BENCH_CLIENTS", "pip uv").split()
        for client, install in (("pip", pipInstall), ("uv", uvInstall)):
            if client not in clients:
                continue
            direct = directAsked = 0.0
            for n, mode in enumerate(modes):
                upstream = FakeUpstreamProcess("--projects", "0", "--layered", PROJECTS, "--latency", LATENCY)
                mirror = MirrorProcess(upstream.url, work / f"cache-{client}-{mode}", "--prefetch", mode)
                try:
                    if n == 0:
                        direct, directAsked = timed(work, f"{client}-direct", install, upstream.url, upstream)
                        print(f"  {client}: direct {direct:.2f} s ({directAsked} upstream requests)")
                    cold, coldAsked = timed(work, f"{client}-{mode}-cold", install, mirror.url, upstream)
                    warm, warmAsked = timed(work, f"{client}-{mode}-warm", install, mirror.url, upstream)
                    figures = prefetchFigures(mirror)
                    rss = peakRSS(mirror.process.pid)
                finally:
                    mirror.stop()
                    upstream.stop()
                prefetched = sum(figures["prefetched"].values())
                used = sum(figures["used"].values())
                unasked = prefetched - used
                kinds = ", ".join(f"{count} {kind}" for kind, count in figures["prefetched"].items())
                print(
                    f"  {client} through the mirror, --prefetch {mode}: "
                    f"cold {cold:.2f} s ({coldAsked} upstream requests), ratio {cold / direct:.2f}; "
                    f"warm {warm:.2f} s ({warmAsked}), ratio {warm / direct:.2f}"
                )
                print(
                    f"    upstream requests {coldAsked + warmAsked}: useful {coldAsked + warmAsked - unasked}, "
                    f"wasted {unasked}; prefetched {prefetched} "
                    f"({kinds}), "
                    f"{used} asked for, {unasked} not ({unasked / prefetched if prefetched else 0:.0%}); "
                    f"mirror peak RSS {rss / 2**20:.0f} MB"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
