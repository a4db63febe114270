"""
Figures for faults, from one run against the real twistd tailmirror on
127.0.0.1:

1. the kill-and-restart workload: the mirror under a load of cold page and
   file fetches, killed with SIGKILL at random moments and restarted, many
   times; after each kill the cache is checked (every file in the tree
   against the hash in its path, every page it served against the
   journal), and at the end pip installs through it;
2. the fuzz run: random and hostile requests, then a health check.

It prints kills survived, requests served, files verified, records lost
(must be 0), wrong bytes served (must be 0), and 5xx answers not caused by
upstream (must be 0).  Run from the repository root, with the package
installed: python benchmarks/faults.py [KILLS] [FUZZ_REQUESTS] [SEED]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.chaos import Figures, fileLinks, fuzz, healthy, killAndRestart  # noqa: E402
from tests.processes import (  # noqa: E402
    INSTALLED,
    FakeUpstreamProcess,
    MirrorProcess,
    freshVenv,
    imported,
    pipInstall,
)

PROJECTS = [f"project{i}" for i in range(60)]


def main(kills: int = 50, requests: int = 10_000, seed: int = 1) -> int:
    work = Path(tempfile.mkdtemp(prefix="tailmirror-faults-"))
    upstream = FakeUpstreamProcess(
        "--projects", str(len(PROJECTS)), "--files", "3", "--file-size", "500000",
        "--chunk-delay", "0.005", "--tree",
    )
    cache = work / "cache"
    try:
        began = time.monotonic()
        crash = killAndRestart(upstream.url, cache, PROJECTS, kills=kills, seed=seed)
        crashSeconds = time.monotonic() - began
        mirror = MirrorProcess(upstream.url, cache, "--client-timeout", "2")
        try:
            python = freshVenv(work / "venv")
            pipInstall(python, "--index-url", mirror.url, "alpha")
            installed = imported(python) == INSTALLED
            known = [path for path, _ in fileLinks(mirror.port, "project1")[:2]]
            fuzzed = Figures()
            began = time.monotonic()
            fuzz(mirror.port, requests, seed=seed, known=known, figures=fuzzed)
            fuzzSeconds = time.monotonic() - began
            stillHealthy = healthy(mirror.port, known)
            tracebacks = mirror.logText().count("Traceback")
        finally:
            mirror.stop()
    finally:
        upstream.stop()
    print(f"kill and restart ({crashSeconds:.0f} s, seed {seed}):")
    print(f"  kills survived                    {crash.kills}")
    print(f"  requests answered                 {crash.requests} ({crash.served} below 500)")
    print(f"  whole files verified by clients   {crash.filesVerified}")
    print(f"  files in the tree checked         {crash.treeChecks} (after each kill)")
    print(f"  unfinished downloads cleared      {crash.unfinishedCleared} (at restarts)")
    print(f"  pages checked in the journal      {crash.pagesChecked} (after each kill)")
    print(f"  records lost                      {crash.recordsLost}")
    print(f"  wrong bytes served or kept        {crash.wrongBytes}")
    print(f"  5xx not caused by upstream        {crash.not5xxUpstream}")
    print(f"  pip install afterwards            {'ok' if installed else 'FAILED'}")
    print(f"fuzz ({fuzzSeconds:.0f} s):")
    print(f"  requests sent                     {fuzzed.requests}")
    print(f"  answers by status                 {dict(sorted(fuzzed.statuses.items()))}")
    print(f"  5xx not caused by upstream        {fuzzed.not5xxUpstream}")
    print(f"  tracebacks in answers or log      {fuzzed.tracebacks + crash.tracebacks + tracebacks}")
    print(f"  healthy afterwards                {'yes' if stillHealthy else 'NO'}")
    for problem in crash.problems + fuzzed.problems:
        print(f"  problem:                          {problem}")
    bad = (
        crash.recordsLost + crash.wrongBytes + crash.not5xxUpstream + fuzzed.not5xxUpstream
        + fuzzed.tracebacks + crash.tracebacks + tracebacks
    )
    return 0 if bad == 0 and installed and stillHealthy else 1


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:])))
