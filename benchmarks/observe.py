"""
What watching the mirror costs its warm path, from one run on this
machine: the mirror as it was before the metrics, status and event log
(BENCH_BEFORE, a git revision) and now, measured in turns in this run:

1. warm project pages, HTML and JSON: requests/s (wrk, 8 connections);
2. a warm 1 MB file: requests/s (wrk); a warm 200 MB file: MB/s (curl);
3. the cost of one scrape of /+metrics and of /+status, now.

Target: no measurable difference (ratios now/before near 1, within the
spread of the rounds).  Needs wrk and curl.  Run from the repository root:
python benchmarks/observe.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cache import checkout  # noqa: E402
from benchmarks.common import SECONDS, requireTools, wrk  # noqa: E402
from benchmarks.files import MB, curl, sizedFiles  # noqa: E402
from tailmirror.base._layout import mirrorPath  # noqa: E402
from tests.processes import REPO, FakeUpstreamProcess, MirrorProcess  # noqa: E402

BEFORE = os.environ.get("BENCH_BEFORE", "f1aa3a4")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def spread(values: list[float]) -> str:
    return f"{max(values):,.0f} (rounds {min(values):,.0f}-{max(values):,.0f})"


def main() -> None:
    requireTools("benchmarks/observe.py", "curl", "wrk")
    work = Path(tempfile.mkdtemp(prefix="tailmirror-bench-observe-"))
    big, bigSha, small = sizedFiles(work, 200 * MB)
    upstream = FakeUpstreamProcess("--projects", "3", "--files", "30", "--big", str(big), "--sized", str(MB))
    before = checkout(BEFORE, work / "before")
    then = f"before ({BEFORE})"
    mirrors = {
        then: MirrorProcess(upstream.url, work / "cache-before", repo=before),
        "now": MirrorProcess(upstream.url, work / "cache-now"),
    }
    try:
        urls: dict[str, dict[str, str]] = {}
        for label, mirror in mirrors.items():
            base = f"http://127.0.0.1:{mirror.port}/"
            urls[label] = {
                "page": base + "simple/project1/",
                "big": base + mirrorPath(big.name, "", {"sha256": bigSha}),
                "small": base + mirrorPath(small.filename, "", {"sha256": small.sha256}),
            }
            for url in urls[label].values():
                curl(url)
        figures: dict[tuple[str, str], list[float]] = {}

        def measure(label: str) -> None:
            u = urls[label]
            figures.setdefault((label, "HTML"), []).append(wrk(u["page"], "text/html"))
            figures.setdefault((label, "JSON"), []).append(wrk(u["page"], JSON_TYPE))
            figures.setdefault((label, "1 MB"), []).append(wrk(u["small"], "application/octet-stream"))
            figures.setdefault((label, "200 MB"), []).append(curl(u["big"])["speed"] / MB)

        for i in range(ROUNDS):
            order = list(mirrors) if i % 2 == 0 else list(reversed(mirrors))
            for label in order:
                measure(label)
        print(f"warm path, before and now, {ROUNDS} rounds in turns (wrk {SECONDS} s, 8 connections; best, and the rounds' range)")
        for what, unit in (("HTML", "page requests/s"), ("JSON", "page requests/s"),
                           ("1 MB", "file requests/s"), ("200 MB", "MB/s")):
            b, n = figures[(then, what)], figures[("now", what)]
            print(f"  {what:>6} {unit}: before {spread(b)}, now {spread(n)}, ratio now/before {max(n) / max(b):.2f}")
        base = f"http://127.0.0.1:{mirrors['now'].port}"
        for path in ("/+metrics", "/+status?format=json", "/+status"):
            started = time.perf_counter()
            for _ in range(50):
                with urllib.request.urlopen(base + path, timeout=30) as r:
                    size = len(r.read())
            each = (time.perf_counter() - started) / 50 * 1000
            print(f"  {path}: {each:.2f} ms a request, {size:,} bytes")
    finally:
        for mirror in mirrors.values():
            mirror.stop()
        upstream.stop()
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
