"""
Figures for package files, from one run on this machine:

1. warm throughput of a 200 MB file through the mirror beside
   twisted.web.static.File serving the same file under twistd
   (target ratio: at least 0.8);
2. cold throughput of that file through the mirror beside a direct
   download from the fake upstream (target ratio: at least 0.8), with the
   CPU time each process used and the ceiling that CPU time sets on this
   machine; and (2b) the same with the upstream sending at 100 MB/s, a
   fast network's pace;
3. time to first byte of a cold file through the mirror beside the
   upstream's own (target: under 50 ms more), with its page known and not;
4. growth of the mirror's resident memory while ten clients stream a cold
   1 GB file, two of them at a limited rate (target: under 64 MB);
5. warm requests/s for a 1 MB file, beside static.File.

Needs curl and wrk (Debian: apt-get install curl wrk), and about 3 GB of
disk in the temporary directory.  Run from the repository root, with the
package installed: python benchmarks/files.py [warm] [cold] [paced] [ttfb] [memory] [small]
"""

from __future__ import annotations

import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from benchmarks.common import requireTools, rss, wrk  # noqa: E402
from tailmirror.base._layout import mirrorPath  # noqa: E402
from tests.fakeindex import FakeFile, sdist  # noqa: E402
from tests.processes import BIN, FakeUpstreamProcess, MirrorProcess, freePort, waitForHTTP  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
MB = 2**20


def makeFile(path: Path, size: int) -> str:
    """
    Write C{size} bytes that do not compress; their sha256.
    """
    block = os.urandom(MB)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(size // MB):
            chunk = block[i % 256 :] + block[: i % 256]
            f.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def sizedFiles(work: Path, bigBytes: int) -> tuple[Path, str, FakeFile]:
    """
    The files the warm benchmarks fetch: a big one on disk under C{work}
    (its path and sha256), which the fake upstream serves with C{--big}, and
    the 1 MB sdist it serves with C{--sized}.
    """
    big = work / "files" / "big-1.0.tar.gz"
    big.parent.mkdir()
    return big, makeFile(big, bigBytes), sdist("sized", "1.0", size=MB)


def curl(url: str, *args: str) -> dict[str, float]:
    """
    Fetch a URL with curl, throwing the body away: its speed (bytes/s),
    time to first byte and total time (s), and size.
    """
    out = subprocess.run(
        ["curl", "-sS", "--fail", "-o", "/dev/null", "-w",
         "%{speed_download} %{time_starttransfer} %{time_total} %{size_download}", *args, url],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    speed, ttfb, total, size = map(float, out)
    return {"speed": speed, "ttfb": ttfb, "total": total, "size": size}


class StaticFile:
    """
    C{twistd web --path DIR}: twisted.web.static.File over a directory.
    """

    def __init__(self, directory: Path, log: Path) -> None:
        self.port = freePort()
        self.process = subprocess.Popen([
            str(BIN / "twistd"), "-n", "--pidfile=", "--logfile", str(log), "web",
            "--path", str(directory), "--listen", f"tcp:{self.port}:interface=127.0.0.1",
        ])
        waitForHTTP(f"http://127.0.0.1:{self.port}/")

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


class Setup:
    """
    A fake upstream serving big files from disk, and a mirror of it.
    """

    def __init__(self, work: Path, sizes: dict[str, int], *upstreamArgs: str) -> None:
        self.work = work
        self.files = work / "files"
        self.files.mkdir(exist_ok=True)
        self.sha: dict[str, str] = {}
        self.name: dict[str, str] = {}
        paths = []
        for i, (label, size) in enumerate(sizes.items()):
            name = f"big-1.{i}.tar.gz"
            path = self.files / name
            self.sha[label] = makeFile(path, size)
            self.name[label] = name
            paths.append(str(path))
        args = [a for p in paths for a in ("--big", p)]
        self.upstream = FakeUpstreamProcess("--projects", "0", *args, *upstreamArgs)
        self.cache = work / "cache"
        self.mirror = MirrorProcess(self.upstream.url, self.cache)

    def url(self, label: str) -> str:
        path = mirrorPath(self.name[label], "", {"sha256": self.sha[label]})
        return f"http://127.0.0.1:{self.mirror.port}/{path}"

    def upstreamURL(self, label: str) -> str:
        return f"http://127.0.0.1:{self.upstream.port}/files/{self.name[label]}"

    def forget(self, label: str) -> None:
        """
        Remove a file from the mirror's tree: it is cold again.
        """
        path = self.cache / "+files" / mirrorPath(self.name[label], "", {"sha256": self.sha[label]})
        deadline = time.monotonic() + 30
        while not path.exists():  # a client has it all before it is fsynced and renamed
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} never arrived")
            time.sleep(0.01)
        path.unlink()

    def stop(self) -> None:
        self.mirror.stop()
        self.upstream.stop()


def warm(setup: Setup) -> None:
    curl(setup.url("200MB"))  # the mirror fetches and keeps it
    static = StaticFile(setup.files, setup.work / "static.log")
    try:
        mirror, baseline = [], []
        for _ in range(ROUNDS):
            mirror.append(curl(setup.url("200MB"))["speed"])
            baseline.append(curl(static.url(setup.name["200MB"]))["speed"])
        m, b = max(mirror) / MB, max(baseline) / MB
        print(f"1. warm 200 MB file, best of {ROUNDS}: mirror {m:,.0f} MB/s, static.File {b:,.0f} MB/s, ratio {m / b:.2f}")
    finally:
        static.stop()


def cpuSeconds(pid: int) -> float:
    """
    CPU time a process has used so far (user and system), in seconds.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timedCurl(url: str) -> tuple[dict[str, float], float]:
    """
    L{curl}, and the CPU time curl used.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = curl(url)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return result, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def floorCosts(setup: Setup, label: str, rounds: int = 3) -> tuple[float, float]:
    """
    CPU seconds this machine needs, at best of a few rounds, to sha256 a
    file held in memory, and to write it to a new file beside the
    mirror's cache.  (Writing into pages the virtual machine has never
    touched costs ten times more than into pages freed by a removed file,
    so the best round is the one to count.)
    """
    data = (setup.files / setup.name[label]).read_bytes()
    view = memoryview(data)
    hashing, writing = [], []
    for _ in range(rounds):
        start = time.process_time()
        hashlib.sha256(data).hexdigest()
        hashing.append(time.process_time() - start)
        path = setup.work / "write-cost"
        start = time.process_time()
        with open(path, "wb", buffering=0) as f:
            for i in range(0, len(data), MB):
                f.write(view[i : i + MB])
        writing.append(time.process_time() - start)
        path.unlink()
    return min(hashing), min(writing)


def cold(setup: Setup) -> None:
    """
    Cold throughput, and what bounds it on this machine: the CPU time the
    three processes need, shared by the machine's cores.  A direct download
    costs the upstream's sending and curl's receiving.  Through a mirror,
    the mirror must also receive every byte (at least curl's cost again)
    and sha256 it, and to keep and serve it, write it to disk and send it
    on (at least curl's receiving cost again).  The ceilings printed are
    the direct download's time over that work spread over every core,
    with nothing else on the machine: no mirror can do better here.
    """
    curl(setup.url("200MB"))
    mirror, direct = [], []
    upstreamCPU, curlCPU, mirrorCPU, directTime = [], [], [], []
    for _ in range(ROUNDS):
        setup.forget("200MB")
        before = cpuSeconds(setup.mirror.process.pid)
        mirror.append(curl(setup.url("200MB"))["speed"])
        mirrorCPU.append(cpuSeconds(setup.mirror.process.pid) - before)
        before = cpuSeconds(setup.upstream.process.pid)
        result, curlSeconds = timedCurl(setup.upstreamURL("200MB"))
        upstreamCPU.append(cpuSeconds(setup.upstream.process.pid) - before)
        curlCPU.append(curlSeconds)
        direct.append(result["speed"])
        directTime.append(result["total"])
    m, d = max(mirror) / MB, max(direct) / MB
    print(f"2. cold 200 MB file, best of {ROUNDS}: through the mirror {m:,.0f} MB/s, direct {d:,.0f} MB/s, ratio {m / d:.2f}")
    cores = len(os.sched_getaffinity(0))
    u, c, t = (statistics.median(x) for x in (upstreamCPU, curlCPU, directTime))
    hashing, writing = floorCosts(setup, "200MB")
    receiveAndHash = (u + 2 * c + hashing) / cores
    everything = (u + 3 * c + hashing + writing) / cores
    print(
        f"   CPU seconds per download (median): direct: upstream {u:.3f}, curl {c:.3f}, in {t:.3f} s; "
        f"through the mirror: the mirror {statistics.median(mirrorCPU):.3f}. sha256 of the file alone: {hashing:.3f}, "
        f"writing it to disk alone: {writing:.3f}"
    )
    print(
        f"   ceiling on {cores} cores: a mirror that only received and hashed the bytes, ratio "
        f"{t / max(t, receiveAndHash):.2f}; one that also wrote them to disk and sent them on, "
        f"{t / max(t, everything):.2f}"
    )


def coldPaced(work: Path, rate: int = 100) -> None:
    """
    Cold throughput with an upstream sending at a network's pace rather
    than as fast as loopback and two cores allow.
    """
    setup = Setup(work / "paced", {"1MB": MB, "200MB": 200 * MB}, "--rate", str(rate))
    try:
        m = curl(setup.url("200MB"))["speed"] / MB
        d = curl(setup.upstreamURL("200MB"))["speed"] / MB
        print(f"2b. cold 200 MB file, upstream paced (asked for {rate} MB/s): through the mirror {m:,.0f} MB/s, direct {d:,.0f} MB/s, ratio {m / d:.2f}")
    finally:
        setup.stop()


def ttfb(setup: Setup, rounds: int = 20) -> None:
    direct, known, unknown = [], [], []
    curl(setup.url("1MB"))  # its page is known from now on
    for _ in range(rounds):
        direct.append(curl(setup.upstreamURL("1MB"))["ttfb"])
        setup.forget("1MB")
        known.append(curl(setup.url("1MB"))["ttfb"])
    for i in range(min(rounds, 5)):
        # A new mirror on a new cache: the page is fetched first.
        mirror = MirrorProcess(setup.upstream.url, setup.work / f"ttfb-cache-{i}")
        try:
            path = mirrorPath(setup.name["1MB"], "", {"sha256": setup.sha["1MB"]})
            unknown.append(curl(f"http://127.0.0.1:{mirror.port}/{path}")["ttfb"])
        finally:
            mirror.stop()
    d, k, u = (statistics.median(x) * 1000 for x in (direct, known, unknown))
    print(
        f"3. time to first byte, cold 1 MB file (median): upstream {d:.1f} ms; through the mirror "
        f"{k:.1f} ms with its page known (+{k - d:.1f} ms), {u:.1f} ms with its page fetched first (+{u - d:.1f} ms)"
    )


def memory(setup: Setup) -> None:
    pid = setup.mirror.process.pid
    before = rss(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    url = setup.url("1GB")
    results: list[dict[str, float]] = []
    t0 = time.monotonic()

    def client(limit: str | None) -> None:
        results.append(curl(url, *(["--limit-rate", limit] if limit else [])))

    clients = [threading.Thread(target=client, args=("150M" if i < 2 else None,)) for i in range(10)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    done.set()
    sampler.join()
    elapsed = time.monotonic() - t0
    assert all(r["size"] == 1024 * MB for r in results), results
    print(
        f"4. ten clients streaming a cold 1 GB file (two limited to 150 MB/s), {elapsed:.1f} s: "
        f"mirror resident {before:.0f} MB before, {peak[0]:.0f} MB at most, growth {peak[0] - before:.0f} MB"
    )


def small(setup: Setup) -> None:
    curl(setup.url("1MB"))
    static = StaticFile(setup.files, setup.work / "static-small.log")
    try:
        m = wrk(setup.url("1MB"))
        b = wrk(static.url(setup.name["1MB"]))
        print(
            f"5. warm 1 MB file, wrk 1 thread 8 connections {common.SECONDS} s: mirror {m:,.0f} requests/s, "
            f"static.File {b:,.0f} requests/s, ratio {m / b:.2f}"
        )
    finally:
        static.stop()


def main() -> None:
    requireTools("benchmarks/files.py", "curl", "wrk")
    only = set(sys.argv[1:]) or {"warm", "cold", "paced", "ttfb", "memory", "small"}
    sizes = {"1MB": MB, "200MB": 200 * MB}
    if "memory" in only:
        sizes["1GB"] = 1024 * MB
    with tempfile.TemporaryDirectory(prefix="tailmirror-bench-") as tmp:
        setup = Setup(Path(tmp), sizes)
        try:
            for name, step in [("warm", warm), ("cold", cold), ("ttfb", ttfb), ("memory", memory), ("small", small)]:
                if name in only:
                    step(setup)
        finally:
            setup.stop()
        if "paced" in only:
            (Path(tmp) / "paced").mkdir()
            coldPaced(Path(tmp))


if __name__ == "__main__":
    main()
