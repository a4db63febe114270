"""
Installs through the mirror against installs straight from the index, from
one run on this machine: a fake upstream on 127.0.0.1 answering every
request 50 ms late (BENCH_LATENCY), serving a generated tree of 60
projects of real wheels with core metadata in four layers
(BENCH_PROJECTS), each page with BENCH_HISTORY older releases too (0: two
files a page; 100: 402 files, as big as real projects' pages), linked by
absolute URLs, with BENCH_HEAVY some wheels big and paced; pip and uv
(BENCH_CLIENTS) each install it into fresh environments with their caches
off:

1. straight from the fake upstream, once per mode (the ratios are to the
   fastest of these);
2. through a cold mirror, for each --prefetch mode (BENCH_PREFETCH,
   default "metadata files");
3. through the warm mirror;
4. through the warm mirror once its pages are older than the revalidation
   floor (the mirror's --revalidate-floor is BENCH_FLOOR, 15 s, longer than
   a cold install, and the run waits past it): pip asks for every page
   checked with upstream, so on a build host this is pip's warm install
   whenever the last was more than a minute (the default floor) ago;

and straight from an upstream that answers at once: with small pages,
what the client costs on its own, which no warm mirror goes below; and
straight from one that answers pages and core metadata as late as
before but every file at once: an ideal cold mirror, with no cost of its
own and every file fetched ahead, which no cold mirror goes below (the
client's chain of pages and metadata, each known only from the last,
is a trip upstream each however early a mirror asks).

With BENCH_TLS=1 the fake upstream is HTTPS, as the real index is, behind
a host name (localhost, its certificate from a test authority that the
mirror is told to trust with --ca-certs, and pip with --cert and uv with
SSL_CERT_FILE when they go straight to it): what a new connection to
upstream costs (TLS, the name resolved) shows, as the plain-HTTP run hides
it.  Its targets, with big pages (BENCH_HISTORY=100): cold uv through the
mirror at most 1.3 times direct, cold pip at most 0.5.

It prints each time, the ratios to direct, the upstream requests made,
useful and wasted (prefetched and never asked for), and the mirror's peak
resident memory; then the peak over pages like the biggest of a
real-world set, and over pages three times as big again.  The issue's targets: cold pip through the mirror at most
0.5 of direct, cold uv at most 0.8, warm pip and uv at most 0.3, wasted
prefetch under 20% of what was prefetched, peak memory under 150 MB.

Run from the repository root: python benchmarks/installs.py
"""

from __future__ import annotations

import concurrent.futures
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

from benchmarks.common import peakRSS  # noqa: E402
from tests.certs import Authority  # noqa: E402
from tests.processes import FakeUpstreamProcess, MirrorProcess, freshVenv, pipInstall, uvInstall  # noqa: E402

LATENCY = os.environ.get("BENCH_LATENCY", "0.05")
PROJECTS = os.environ.get("BENCH_PROJECTS", "60")
#: Older releases on each page (four files each, never installed), for
#: pages as big as real projects' (BENCH_HISTORY=100: 400 files, 180 KB),
#: linked by absolute URLs as the real index links them.
HISTORY = os.environ.get("BENCH_HISTORY", "0")
#: EVERY:BYTES makes the newer wheel of every EVERYth project about BYTES
#: big, sent at BENCH_RATE MB/s a connection (default 8), as a CDN paces
#: each connection: a tree with native wheels, such as a real-world set.
HEAVY = os.environ.get("BENCH_HEAVY", "")
RATE = os.environ.get("BENCH_RATE", "8")
#: The mirror's --revalidate-floor, waited past before the last install:
#: longer than a cold install, or the warm one is past it already.
FLOOR = float(os.environ.get("BENCH_FLOOR", "15"))
#: Whether the fake upstream speaks HTTPS, as localhost.
TLS = os.environ.get("BENCH_TLS", "") not in ("", "0")
#: The checkout whose mirror is measured (BENCH_MIRROR, a path; by default
#: this one), for the same run against an earlier revision.
MIRROR = Path(os.environ.get("BENCH_MIRROR") or Path(__file__).resolve().parent.parent)


def treeArgs(latency: str, *more: str) -> tuple[str, ...]:
    """
    The fake upstream's arguments for the tree installed.
    """
    heavy = ("--heavy", HEAVY, "--rate", RATE) if HEAVY else ()
    return (
        "--projects", "0", "--layered", PROJECTS, "--latency", latency, "--history", HISTORY, "--absolute", *heavy, *more
    )


def upstreamRequests(upstream: FakeUpstreamProcess) -> int:
    return sum(v for k, v in upstream.stats().items() if k != "/_stats")


#: The test authority's PEM file and the upstream's certificate and key,
#: for localhost, once made (BENCH_TLS).
_tls: tuple[Path, Path] | None = None


def tls(work: Path) -> tuple[Path, Path] | None:
    """
    Where the upstream's certificate and key, and the authority that signed
    it, are, if the upstream speaks HTTPS (BENCH_TLS).
    """
    global _tls
    if TLS and _tls is None:
        authority = Authority.make()
        server, ca = work / "localhost.pem", work / "authority.pem"
        server.write_bytes(authority.serverPEM("localhost"))
        ca.write_bytes(authority.pem)
        _tls = (server, ca)
    return _tls


def upstreamOf(work: Path, *args: str) -> FakeUpstreamProcess:
    """
    The fake upstream, over HTTPS with BENCH_TLS.
    """
    return FakeUpstreamProcess(*args, tls=tls(work))


def trusting(work: Path) -> tuple[str, ...]:
    """
    The mirror's options to trust the fake upstream's authority.
    """
    pair = tls(work)
    return () if pair is None else ("--ca-certs", str(pair[1]))


def prefetchFigures(mirror: MirrorProcess) -> dict[str, Any]:
    request = urllib.request.Request(mirror.url.replace("/simple/", "/+status"), headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())["prefetch"]  # type: ignore[no-any-return]


#: A client on Linux, for the big pages.
AGENT = (
    'pip/24.0 {"python":"3.11.2","implementation":{"name":"CPython","version":"3.11.2"},'
    '"system":{"name":"Linux","release":"6.1.0"},"cpu":"x86_64","distro":{"libc":{"lib":"glibc","version":"2.36"}}}'
)


def bigPages(work: Path, projects: int = 30, files: int = 4000) -> None:
    """
    The mirror's peak resident memory over pages like the biggest of a
    real-world set (boto3's, botocore's: thousands of files, megabytes
    each): C{projects} of them, each asked for in JSON and in HTML, gzipped,
    eight at a time, as uv asks.
    """
    upstream = FakeUpstreamProcess("--projects", str(projects), "--files", str(files))
    mirror = MirrorProcess(upstream.url, work / f"cache-big-{files}", "--access-log", "off")

    def get(name: str, accept: str) -> int:
        request = urllib.request.Request(
            f"{mirror.url}{name}/", headers={"Accept": accept, "Accept-Encoding": "gzip", "User-Agent": AGENT}
        )
        with urllib.request.urlopen(request, timeout=120) as r:
            return len(r.read())

    try:
        start = peakRSS(mirror.process.pid)
        names = [f"project{i}" for i in range(projects)]
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for accept in ("application/vnd.pypi.simple.v1+json", "text/html"):
                list(pool.map(lambda name: get(name, accept), names))
        seconds = time.perf_counter() - started
        with urllib.request.urlopen(
            urllib.request.Request(f"{mirror.url}project0/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        ) as r:
            size = len(r.read())
        peak = peakRSS(mirror.process.pid)
    finally:
        mirror.stop()
        upstream.stop()
    print(
        f"  big pages: {projects} pages of {files} files ({size / 2**20:.1f} MB of JSON each), both forms, "
        f"cold, in {seconds:.1f} s: mirror peak RSS {peak / 2**20:.0f} MB ({start / 2**20:.0f} MB at start; "
        "target under 150 MB)"
    )


def timed(work: Path, label: str, install: object, index: str, upstream: FakeUpstreamProcess) -> tuple[float, int]:
    python = freshVenv(work / f"venv-{label}")
    before = upstreamRequests(upstream)
    started = time.perf_counter()
    pair = tls(work)
    install(python, "--index-url", index, "app", authority=None if pair is None else pair[1])  # type: ignore[operator]
    seconds = time.perf_counter() - started
    return seconds, upstreamRequests(upstream) - before


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tailmirror-bench-installs-"))
    modes = os.environ.get("BENCH_PREFETCH", "metadata files").split()
    try:
        print(
            f"installing app and its {int(PROJECTS) - 1} dependencies; upstream answers {float(LATENCY) * 1000:.0f} ms late; "
            f"{4 * int(HISTORY) + 2} files on each page; upstream over {'HTTPS as localhost' if TLS else 'plain HTTP'}"
            + (f"; every {HEAVY.split(':')[0]}th wheel {int(HEAVY.split(':')[1]) / 1e6:g} MB at {RATE} MB/s" if HEAVY else "")
        )
        clients = os.environ.get("BENCH_CLIENTS", "pip uv").split()
        for client, install in (("pip", pipInstall), ("uv", uvInstall)):
            if client not in clients:
                continue
            # Straight from the index once per mode, each on that mode's
            # fresh upstream: the ratios are to the fastest, so that one
            # slow moment of the machine never flatters the mirror.
            directs: list[float] = []
            results = []
            for mode in modes:
                upstream = upstreamOf(work, *treeArgs(LATENCY))
                mirror = MirrorProcess(
                    upstream.url, work / f"cache-{client}-{mode}", "--prefetch", mode, "--revalidate-floor", f"{FLOOR:g}",
                    *trusting(work), repo=MIRROR,
                )
                try:
                    direct, directAsked = timed(work, f"{client}-{mode}-direct", install, upstream.url, upstream)
                    directs.append(direct)
                    cold, coldAsked = timed(work, f"{client}-{mode}-cold", install, mirror.url, upstream)
                    warm, warmAsked = timed(work, f"{client}-{mode}-warm", install, mirror.url, upstream)
                    time.sleep(FLOOR + 0.5)
                    aged, agedAsked = timed(work, f"{client}-{mode}-aged", install, mirror.url, upstream)
                    figures = prefetchFigures(mirror)
                    rss = peakRSS(mirror.process.pid)
                finally:
                    mirror.stop()
                    upstream.stop()
                results.append((mode, cold, coldAsked, warm, warmAsked, aged, agedAsked, figures, rss))
            direct = min(directs)
            # The same tree straight from an upstream that answers at once:
            # with small pages, what the client costs on its own, which no
            # warm mirror goes below (with big ones, the fake upstream's own
            # rendering of every page counts too).
            upstream = upstreamOf(work, *treeArgs("0"))
            try:
                floor, _ = timed(work, f"{client}-floor", install, upstream.url, upstream)
            finally:
                upstream.stop()
            upstream = upstreamOf(work, *treeArgs(LATENCY, "--files-at-once"))
            try:
                ideal, _ = timed(work, f"{client}-ideal", install, upstream.url, upstream)
            finally:
                upstream.stop()
            print(
                f"  {client}: direct {direct:.2f} s ({directAsked} upstream requests); "
                f"each run: {', '.join(f'{d:.2f}' for d in directs)} s; "
                f"with upstream answering at once {floor:.2f} s, ratio {floor / direct:.2f}; "
                f"through an ideal cold mirror {ideal:.2f} s, ratio {ideal / direct:.2f}"
            )
            for mode, cold, coldAsked, warm, warmAsked, aged, agedAsked, figures, rss in results:
                prefetched = sum(figures["prefetched"].values())
                used = sum(figures["used"].values())
                unasked = prefetched - used
                kinds = ", ".join(f"{count} {kind}" for kind, count in figures["prefetched"].items())
                print(
                    f"  {client} through the mirror, --prefetch {mode}: "
                    f"cold {cold:.2f} s ({coldAsked} upstream requests), ratio {cold / direct:.2f}; "
                    f"warm {warm:.2f} s ({warmAsked}), ratio {warm / direct:.2f}; "
                    f"warm past the floor {aged:.2f} s ({agedAsked}), ratio {aged / direct:.2f}"
                )
                asked = coldAsked + warmAsked + agedAsked
                print(
                    f"    upstream requests {asked}: useful {asked - unasked}, "
                    f"wasted {unasked}; prefetched {prefetched} "
                    f"({kinds}), "
                    f"{used} asked for, {unasked} not ({unasked / prefetched if prefetched else 0:.0%}); "
                    f"mirror peak RSS {rss / 2**20:.0f} MB"
                )
        bigPages(work)
        # Pages three times as big again (the biggest of all, beyond the
        # real-world set's): where the peak goes past the first's.
        bigPages(work, projects=12, files=12000)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
