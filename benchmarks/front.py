"""
Figures for nginx in front of the mirror, from one run on this machine:

1. warm page requests/s (JSON, a project of 50 files), through nginx with
   C{contrib/nginx/tailmirror.conf} in front of the mirror once nginx has
   the page cached, beside the same nginx serving the same bytes as a
   static file, and beside the mirror alone (target: front at least 0.9
   of static);
2. warm 1 MB file requests/s, the same three ways (target: front at least
   0.9 of static);
3. the throughput of one 200 MB file, the same three ways, in MB/s (its
   downloads one after another on one connection, as wrk counts them;
   target: front at least 0.9 of static).

Each figure is the median of C{BENCH_ROUNDS} (3) rounds that take the
three in turn, C{BENCH_SECONDS} (5) of wrk each.

Needs wrk and nginx (Debian: apt-get install wrk nginx-light).  Run from
the repository root, with the package installed: python benchmarks/front.py
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import SECONDS, wrk  # noqa: E402
from tests.processes import FakeUpstreamProcess, MirrorProcess, NginxProcess, freePort, nginx, waitForHTTP  # noqa: E402

JSON = "application/vnd.pypi.simple.v1+json"
MB = 2**20
#: Each figure is measured this many times, the three ways in turn, so
#: that the machine's own ups and downs fall on all three alike.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def get(url: str, accept: str = JSON) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=120) as response:
        body: bytes = response.read()
        return body


def asWrk(url: str, accept: str) -> bytes:
    """
    C{url} asked for with only the headers wrk sends, so that a cache
    keyed by them (nginx's, by the page's Vary) has what wrk will ask.
    """
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=120)
    try:
        connection.putrequest("GET", parts.path, skip_accept_encoding=True)
        connection.putheader("Accept", accept)
        connection.endheaders()
        return connection.getresponse().read()
    finally:
        connection.close()


def throughput(url: str) -> float:
    """
    MB/s of downloads of C{url} one after another over one connection, for
    C{BENCH_SECONDS}, as wrk counts them: one 200 MB download on loopback
    takes a tenth of a second, too short to time alone.
    """
    out = subprocess.run(
        ["wrk", "-t1", "-c1", f"-d{SECONDS}s", url], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"Transfer/sec:\s+([\d.]+)([KMGT]?)B", out)
    if found is None:
        raise RuntimeError(f"wrk said no transfer rate: {out}")
    return float(found.group(1)) * {"": 2**-20, "K": 2**-10, "M": 1, "G": 2**10, "T": 2**20}[found.group(2)]


class StaticNginx:
    """
    nginx serving a directory as static files, as the front's own file
    locations do (sendfile, the same settings); pages also below
    C{/page-open/}, with the open file cache the front's page location has.
    """

    def __init__(self, root: Path, where: Path) -> None:
        self.port = freePort()
        where.mkdir(parents=True)
        temps = "".join(f"    {k}_temp_path {where / k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (where / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"daemon off;\nworker_processes 2;\npid {where / 'nginx.pid'};\nerror_log {where / 'error.log'} warn;\n"
            + "events { worker_connections 1024; }\n"
            + "http {\n    access_log off;\n" + temps
            + f"    server {{\n        listen 127.0.0.1:{self.port};\n        root {root};\n"
            + "        sendfile on;\n        tcp_nopush on;\n        sendfile_max_chunk 2m;\n"
            + "        etag off;\n        if_modified_since off;\n"
            + f"        location /page/ {{ default_type {JSON}; }}\n"
            + f"        location /page-open/ {{ alias {root}/page/; default_type {JSON};"
            + " open_file_cache max=10000 inactive=60s; }\n"
            + "        location /files/ { types { } default_type application/octet-stream; }\n"
            + "    }\n}\n"
        )
        self.process = subprocess.Popen([nginx(), "-p", str(where), "-c", str(where / "nginx.conf")])
        waitForHTTP(f"http://127.0.0.1:{self.port}/files/")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="tailmirror-front-"))
    big = base / "big.bin"
    with open(big, "wb") as f:
        for _ in range(200):
            f.write(os.urandom(MB))
    upstream = FakeUpstreamProcess("--projects", "1", "--files", "50", "--sized", str(MB), "--big", str(big))
    mirror = MirrorProcess(upstream.url, base / "cache", "--accel-redirect", "/+accel/", "--access-log", "off")
    front = NginxProcess(mirror.port, base / "cache", base / "nginx")
    static = None
    try:
        alone = f"http://127.0.0.1:{mirror.port}"
        fronted = f"http://127.0.0.1:{front.port}"
        page = "/simple/project0/"
        body = asWrk(fronted + page, JSON)
        asWrk(fronted + page, JSON)
        import json

        def fileURL(project: str) -> str:
            files = json.loads(get(alone + f"/simple/{project}/"))["files"]
            url: str = files[-1]["url"]
            return os.path.normpath(f"/simple/{project}/" + url)

        small, large = fileURL("sized"), fileURL("big")
        for path in (small, large):
            get(alone + path, "*/*")
            deadline = time.monotonic() + 60
            while not os.path.exists(mirror_tree(base / "cache", path)) and time.monotonic() < deadline:
                time.sleep(0.1)
        root = base / "static"
        (root / "page").mkdir(parents=True)
        (root / "files").mkdir()
        (root / "page" / "project0").write_bytes(body)
        shutil.copy(os.path.join(mirror_tree(base / "cache", small)), root / "files" / "small")
        shutil.copy(os.path.join(mirror_tree(base / "cache", large)), root / "files" / "large")
        static = StaticNginx(root, base / "static-nginx")
        staticURL = f"http://127.0.0.1:{static.port}"
        print(f"page: {len(body):,} bytes (50 files); small file {MB:,} bytes; big file {200 * MB:,} bytes")
        rows = [
            ("warm page, requests/s", page, "/page/project0", JSON),
            ("warm 1 MB file, requests/s", small, "/files/small", "*/*"),
            ("200 MB file, MB/s", large, "/files/large", "*/*"),
        ]
        print(f"median of {ROUNDS} interleaved rounds; ratios are of the medians")
        print("static+ofc: pages served as static files with the open file cache the front's pages have")
        print(
            f"{'':28} {'front':>8} {'static':>8} {'static+ofc':>10} {'alone':>8} "
            f"{'front/static':>12} {'front/static+ofc':>16} {'alone/static':>12}   front/static by round"
        )
        for label, path, staticPath, accept in rows:
            urls = [fronted + path, staticURL + staticPath, alone + path]
            if staticPath.startswith("/page/"):
                urls.append(staticURL + staticPath.replace("/page/", "/page-open/"))
            rounds = []
            for _ in range(ROUNDS):
                if label.startswith("200"):
                    rounds.append([throughput(url) for url in urls])
                else:
                    rounds.append([wrk(url, accept) for url in urls])
            front_, static_, alone_, *opened = (statistics.median(column) for column in zip(*rounds))
            withCache = f"{opened[0]:10.0f}" if opened else f"{'-':>10}"
            ratio = f"{front_ / opened[0]:16.2f}" if opened else f"{'-':>16}"
            each = sorted(figures[0] / figures[1] for figures in rounds)
            print(
                f"{label:28} {front_:8.0f} {static_:8.0f} {withCache} {alone_:8.0f} "
                f"{front_ / static_:12.2f} {ratio} {alone_ / static_:12.2f}   {each[0]:.2f}-{each[-1]:.2f}"
            )
    finally:
        if static is not None:
            static.stop()
        front.stop()
        mirror.stop()
        upstream.stop()
        time.sleep(0.2)
        shutil.rmtree(base, ignore_errors=True)


def mirror_tree(cacheDir: Path, path: str) -> str:
    """
    Where the mirror's tree keeps the file a mirror path names.
    """
    from urllib.parse import unquote

    parts = [unquote(p) for p in path.strip("/").split("/")]
    return str(cacheDir / "+files" / "/".join(parts))


if __name__ == "__main__":
    main()
