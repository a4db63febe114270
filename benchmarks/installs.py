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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.processes import FakeUpstreamProcess, MirrorProcess, freshVenv, pipInstall, uvInstall  # noqa: E402

LATENCY = os.environ.get("BENCH_LATENCY", "0.05")
PROJECTS = os.environ.get("BENCH_PROJECTS", "60")


def upstreamRequests(upstream: FakeUpstreamProcess) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{upstream.port}/_stats", timeout=30) as r:
        stats = json.loads(r.read())
    return sum(v for k, v in stats.items() if k != "/_stats")


def timed(work: Path, label: str, install: object, index: str, upstream: FakeUpstreamProcess) -> tuple[float, int]:
    python = freshVenv(work / f"venv-{label}")
    before = upstreamRequests(upstream)
    started = time.perf_counter()
    install(python, "--index-url", index, "app")  # type: ignore[operator]
    seconds = time.perf_counter() - started
    return seconds, upstreamRequests(upstream) - before


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tailmirror-bench-installs-"))
    try:
        print(f"installing app and its {int(PROJECTS) - 1} dependencies; upstream answers {float(LATENCY) * 1000:.0f} ms late")
        for client, install in (("pip", pipInstall), ("uv", uvInstall)):
            upstream = FakeUpstreamProcess("--projects", "0", "--layered", PROJECTS, "--latency", LATENCY)
            mirror = MirrorProcess(upstream.url, work / f"cache-{client}")
            try:
                direct, directAsked = timed(work, f"{client}-direct", install, upstream.url, upstream)
                cold, coldAsked = timed(work, f"{client}-cold", install, mirror.url, upstream)
                warm, warmAsked = timed(work, f"{client}-warm", install, mirror.url, upstream)
            finally:
                mirror.stop()
                upstream.stop()
            print(
                f"  {client}: direct {direct:.2f} s ({directAsked} upstream requests); "
                f"cold mirror {cold:.2f} s ({coldAsked}), ratio {cold / direct:.2f}; "
                f"warm mirror {warm:.2f} s ({warmAsked}), ratio {warm / direct:.2f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
