"""
The floor, measured: the mirror alone (C{twistd -n tailmirror}, as the
README runs it) against nginx serving the same bytes as static files, in
one run on this machine, on the benchmark tree (60 projects of real wheels
in four layers, as benchmarks/installs.py installs them), a 1 MB file and a
50 MB one:

1. warm files: requests/s for the 1 MB file (wrk, 32 connections) and MB/s
   for the 50 MB one (curl, the best of BENCH_FIFTY_TRIES a round), from the mirror and from
   nginx serving the mirror's own tree (C{sendfile on});
2. warm installs of the tree, pip and uv into fresh environments, through
   the mirror and from a static export of the same cache (C{python -m
   tailmirror export}) served by nginx, in turns: the physical floor of a
   warm index;
3. warm JSON page requests/s (wrk, 32 connections) from the mirror and
   from nginx serving the exported page;
4. the mirror's peak resident memory over all of it.

nginx runs two workers, one a core, as it does by default on this
machine; the mirror is one process.  The warm files are measured against
nginx with one worker too, for what one process of each does.

Targets, as ratios in the same run: warm files at least 0.8 of nginx;
warm installs at most 1.1 times the static export's; warm pages at least
0.15 of nginx; memory under 100 MB.  Needs nginx, wrk and curl (Debian:
nginx-light wrk curl).  Run from the repository root:
python benchmarks/floor.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import peakRSS, requireTools, wrk  # noqa: E402
from benchmarks.files import MB, curl, sizedFiles  # noqa: E402
from tailmirror.base._layout import mirrorPath  # noqa: E402
from tests.processes import FakeUpstreamProcess, MirrorProcess, freePort, freshVenv, nginx, pipInstall, uvInstall, waitForHTTP  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PROJECTS = os.environ.get("BENCH_PROJECTS", "60")
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
#: Downloads of the 50 MB file a round, the best of them kept: one stream's
#: speed on two cores swings by half with where the scheduler puts the
#: sender and curl (1.2 to 3.3 GB/s from nginx alone, in one minute).
FIFTY_TRIES = int(os.environ.get("BENCH_FIFTY_TRIES", "5"))


class StaticNginx:
    """
    nginx serving two trees as static files, with sendfile: the mirror's
    own tree (its files, at the mirror's paths) and an export (its pages,
    JSON to those that ask for it, and its files).
    """

    def __init__(self, tree: Path, export: Path, where: Path, workers: int = 2) -> None:
        self.treePort, self.exportPort = freePort(), freePort()
        where.mkdir(parents=True, exist_ok=True)
        temps = "".join(f"    {kind}_temp_path {where / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (where / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"daemon off;\nworker_processes {workers};\npid {where / 'nginx.pid'};\nerror_log {where / 'error.log'} warn;\n"
            + "events { worker_connections 1024; }\n"
            + "http {\n    access_log off;\n    sendfile on;\n    tcp_nopush on;\n" + temps
            + "    default_type application/octet-stream;\n"
            + "    map $http_accept $simple_index {\n"
            + '        "~application/vnd\\.pypi\\.simple\\.v1\\+json" index.json;\n'
            + "        default index.html;\n    }\n"
            + f"    server {{\n        listen 127.0.0.1:{self.treePort};\n        root {tree};\n    }}\n"
            + f"    server {{\n        listen 127.0.0.1:{self.exportPort};\n        root {export};\n"
            + "        location /simple/ {\n            index $simple_index;\n"
            + f"            types {{ {JSON_TYPE} json; text/html html; }}\n        }}\n    }}\n"
            + "}\n"
        )
        self.process = subprocess.Popen([nginx(), "-p", str(where), "-c", str(where / "nginx.conf")])
        waitForHTTP(f"http://127.0.0.1:{self.exportPort}/simple/")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def spread(figures: list[float]) -> str:
    return f"{statistics.median(figures):,.0f} ({min(figures):,.0f}-{max(figures):,.0f})"


def main() -> None:
    requireTools("benchmarks/floor.py", "curl", "wrk")
    work = Path(tempfile.mkdtemp(prefix="tailmirror-bench-floor-"))
    big, bigSha, small = sizedFiles(work, 50 * MB)
    upstream = FakeUpstreamProcess("--projects", "0", "--layered", PROJECTS, "--big", str(big), "--sized", str(MB))
    cache = work / "cache"
    mirror = MirrorProcess(upstream.url, cache, "--access-log", "off")
    static: StaticNginx | None = None
    single: StaticNginx | None = None
    try:
        # Warm the mirror: the tree by a cold install, the two files.
        pipInstall(freshVenv(work / "venv-cold"), "--index-url", mirror.url, "app")
        paths = {"1 MB": mirrorPath(small.filename, "", {"sha256": small.sha256}),
                 "50 MB": mirrorPath(big.name, "", {"sha256": bigSha})}
        for path in paths.values():
            curl(f"http://127.0.0.1:{mirror.port}/{path}")
        subprocess.run(
            [sys.executable, "-m", "tailmirror", "export", str(work / "export"), "--cache-dir", str(cache)],
            check=True, capture_output=True, env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent)),
        )
        static = StaticNginx(cache / "+files", work / "export", work / "nginx")
        single = StaticNginx(cache / "+files", work / "export", work / "nginx-single", workers=1)
        mirrorBase, treeBase = f"http://127.0.0.1:{mirror.port}", f"http://127.0.0.1:{static.treePort}"
        singleBase = f"http://127.0.0.1:{single.treePort}"
        exportBase = f"http://127.0.0.1:{static.exportPort}"
        for path in paths.values():
            curl(f"{treeBase}/{path}")
        print(f"the floor: the mirror alone against nginx static, {ROUNDS} rounds in turns")
        one: dict[str, list[float]] = {"mirror": [], "nginx": [], "one worker": []}
        fifty: dict[str, list[float]] = {"mirror": [], "nginx": [], "one worker": []}
        pages: dict[str, list[float]] = {"mirror": [], "nginx": []}
        installs: dict[tuple[str, str], list[float]] = {}
        for i in range(ROUNDS):
            order = [("mirror", mirrorBase), ("nginx", treeBase), ("one worker", singleBase)]
            for label, base in order if i % 2 == 0 else order[::-1]:
                one[label].append(wrk(f"{base}/{paths['1 MB']}", "*/*", connections=32))
                fifty[label].append(max(curl(f"{base}/{paths['50 MB']}")["speed"] for _ in range(FIFTY_TRIES)) / MB)
            order = [("mirror", mirrorBase), ("nginx", exportBase)]
            for label, base in order if i % 2 == 0 else order[::-1]:
                pages[label].append(wrk(f"{base}/simple/app/", JSON_TYPE, connections=32))
            for client, install in (("pip", pipInstall), ("uv", uvInstall)):
                order = [("mirror", mirror.url), ("export", f"{exportBase}/simple/")]
                for label, index in order if i % 2 == 0 else order[::-1]:
                    python = freshVenv(work / f"venv-{client}-{label}-{i}")
                    started = time.perf_counter()
                    install(python, "--index-url", index, "app")
                    installs.setdefault((client, label), []).append(time.perf_counter() - started)
        for what, figures, unit in (("1 MB file, 32 connections", one, "requests/s"), ("50 MB file", fifty, "MB/s")):
            ratio = statistics.median(figures["mirror"]) / statistics.median(figures["nginx"])
            alone = statistics.median(figures["mirror"]) / statistics.median(figures["one worker"])
            print(f"  warm {what}: mirror {spread(figures['mirror'])} {unit}, nginx static {spread(figures['nginx'])}, "
                  f"ratio {ratio:.2f} (target at least 0.8); nginx with one worker {spread(figures['one worker'])}, "
                  f"ratio {alone:.2f}")
        ratio = statistics.median(pages["mirror"]) / statistics.median(pages["nginx"])
        print(f"  warm JSON page, 32 connections: mirror {spread(pages['mirror'])} requests/s, "
              f"nginx static {spread(pages['nginx'])}, ratio {ratio:.2f} (target at least 0.15)")
        for client in ("pip", "uv"):
            m, e = installs[(client, "mirror")], installs[(client, "export")]
            print(f"  warm {client} install of the tree: mirror {statistics.median(m):.2f} s "
                  f"({min(m):.2f}-{max(m):.2f}), static export {statistics.median(e):.2f} s ({min(e):.2f}-{max(e):.2f}), "
                  f"ratio {statistics.median(m) / statistics.median(e):.2f} (target at most 1.1)")
        print(f"  mirror peak resident memory: {peakRSS(mirror.process.pid) / MB:.1f} MB (target under 100 MB)")
    finally:
        for each in (static, single):
            if each is not None:
                each.stop()
        mirror.stop()
        upstream.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
