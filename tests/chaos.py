"""
Workloads that misbehave on purpose, against the real C{twistd tailmirror}
process on 127.0.0.1: killed with SIGKILL under load and restarted, and
fuzzed with random and hostile requests.  The tests run them briefly;
C{benchmarks/faults.py} runs them longer and prints their figures.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tailmirror.pages._journal import Journal
from tailmirror.web._negotiate import JSON_V1

from .processes import MirrorProcess

JSON_ACCEPT = JSON_V1


@dataclass
class Figures:
    """
    What a workload saw.
    """

    kills: int = 0
    requests: int = 0
    served: int = 0
    filesVerified: int = 0
    treeChecks: int = 0
    unfinishedCleared: int = 0
    pagesChecked: int = 0
    recordsLost: int = 0
    wrongBytes: int = 0
    not5xxUpstream: int = 0
    tracebacks: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def note(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


def get(port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """
    One GET over a fresh connection; raises if the answer is cut short.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def linkPath(url: str) -> str:
    """
    The path of a mirror link, which pages give relative to themselves.
    """
    return "/" + url.split("#")[0].lstrip("./")


class _Client(threading.Thread):
    """
    Fetches random cold pages and their files until the mirror dies,
    checking every whole file against its hash.
    """

    def __init__(self, port: int, projects: list[str], rng: random.Random, figures: Figures, lock: threading.Lock, served: set[str]) -> None:
        super().__init__(daemon=True)
        self.port, self.projects, self.rng = port, projects, rng
        self.figures, self.lock, self.served = figures, lock, served

    def run(self) -> None:
        while True:
            name = self.rng.choice(self.projects)
            try:
                status, body = get(self.port, f"/simple/{name}/", {"Accept": JSON_ACCEPT})
                self.count(status)
                if status != 200:
                    continue
                with self.lock:
                    self.served.add(name)
                page = json.loads(body)
                entry = self.rng.choice(page["files"])
                status, content = get(self.port, linkPath(entry["url"]))
                self.count(status)
                if status == 200:
                    with self.lock:
                        if hashlib.sha256(content).hexdigest() != entry["hashes"]["sha256"]:
                            self.figures.wrongBytes += 1
                            self.figures.problems.append(f"wrong bytes for {entry['filename']}")
                        else:
                            self.figures.filesVerified += 1
            except (OSError, http.client.HTTPException, ValueError):
                return  # the mirror was killed under us

    def count(self, status: int) -> None:
        with self.lock:
            self.figures.requests += 1
            self.figures.note(status)
            if status < 500:
                self.figures.served += 1
            elif status not in (502, 504):
                self.figures.not5xxUpstream += 1


def checkCache(cacheDir: Path, served: set[str], figures: Figures) -> None:
    """
    After a crash: every file in the tree matches the hash in its path,
    the journal replays and holds every page the mirror served, intact.
    """
    for root, _, names in os.walk(cacheDir / "+files"):
        for name in names:
            path = Path(root, name)
            parts = path.relative_to(cacheDir / "+files").parts
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if parts[3] == "_url":
                continue  # checked against the page's hash when kept
            figures.treeChecks += 1
            if digest[:16] != parts[3] + parts[4]:
                figures.wrongBytes += 1
                figures.problems.append(f"{path} does not match its hash")
    journal = Journal(str(cacheDir / "journal.jsonl"))
    index = journal.open()
    try:
        for name in served:
            if name not in index:
                figures.recordsLost += 1
                figures.problems.append(f"the page of {name} was served but is not in the journal")
                continue
            page = journal.readPage(index[name])
            if page.get("name") != name or not page.get("files"):
                figures.problems.append(f"the page of {name} is damaged")
                figures.recordsLost += 1
            figures.pagesChecked += 1
    finally:
        journal.close()


def killAndRestart(
    upstream: str, cacheDir: Path, projects: list[str], kills: int, seed: int, clients: int = 4
) -> Figures:
    """
    Run the mirror under a load of cold page and file fetches and kill it
    with SIGKILL at random moments, C{kills} times, restarting it each
    time; check the cache after each kill.
    """
    rng = random.Random(seed)
    figures = Figures()
    lock = threading.Lock()
    served: set[str] = set()
    for _ in range(kills):
        mirror = MirrorProcess(upstream, cacheDir)
        leftovers = os.listdir(cacheDir / "+tmp")
        if leftovers:
            figures.problems.append(f"leftovers after a restart: {leftovers}")
        threads = [
            _Client(mirror.port, projects, random.Random(rng.random()), figures, lock, served)
            for _ in range(clients)
        ]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.05, 0.6))
        mirror.stop(signal.SIGKILL)
        figures.kills += 1
        for thread in threads:
            thread.join(15)
        checkCache(cacheDir, served, figures)
        text = mirror.logText()
        figures.tracebacks += text.count("Traceback")
        for line in text.splitlines():
            if "cleared" in line and "unfinished downloads" in line:
                figures.unfinishedCleared += int(line.split("cleared ")[1].split()[0])
    return figures


_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "get", "G\x00T", "X" * 300]
_HOSTILE = [
    "..", "%2e%2e", "%2E%2e/", "..%2f", "%2f", "%5c", "\\", "%00", "%", "%zz", "~root", ".",
    "%252e%252e", "a" * 5000, "\u00e9".encode().decode("latin-1"), "%C0%AE%C0%AE", "//", "?", "#", ";",
]


def _randomPath(rng: random.Random, known: list[str]) -> str:
    pick = rng.random()
    if pick < 0.2 and known:
        return rng.choice(known)
    if pick < 0.3:
        return rng.choice(["/", "/simple", "/simple/", "/simple/project1/", "/simple/PROJECT_1", "/root/pypi/+f/"])
    segments = [rng.choice(_HOSTILE + ["simple", "root", "pypi", "+f", "_url", "project1", "abc", "0" * 13]) for _ in range(rng.randint(1, 6))]
    return "/" + "/".join(segments) + rng.choice(["", "/", "?format=x", "?format=application/vnd.pypi.simple.v1+json"])


def _oddHeader(rng: random.Random) -> str:
    """
    A well-formed header with a value a server may not expect.
    """
    return rng.choice([
        f"Range: bytes={rng.choice(['0-0', '-1', '5-2', 'x', '99999999999999999999999-', '0-1,2-3', ''])}",
        f"Accept: {rng.choice(['*/*', 'text/html;q=x', 'application/vnd.pypi.simple.v1+json', 'a/b;q=0', ','*50])}",
        "If-None-Match: " + rng.choice(['"x"', "*", "W/", '""' * 100]),
        "If-Range: " + rng.choice(['"x"', "Tue, 01 Jan 2030 00:00:00 GMT"]),
        "Accept-Encoding: " + rng.choice(["gzip", "br;q=2", "gzip;q=nan"]),
        "Cache-Control: " + rng.choice(["no-cache", "max-age=0", "max-age=-1"]),
        "Host: " + rng.choice(["..", "a..b", "[::1", "x" * 300]),
        "X-" + "a" * rng.randint(1, 2000) + ": 1",
    ])


def _brokenHeader(rng: random.Random) -> tuple[str, bool]:
    """
    A header a server should refuse, or that announces a body never sent;
    and whether an answer is due before the client timeout.
    """
    return rng.choice([
        ("Content-Length: " + rng.choice(["-1", "x"]), True),
        ("Content-Length: 99999999999", False),
        ("Transfer-Encoding: " + rng.choice(["gzip, chunked", "x"]), True),
        ("X-" + "a" * rng.randint(17000, 30000) + ": 1", True),
        ("Broken header line", True),
        ("\x00: \x00", True),
        ("Host: ", True),
    ])


def _credentials(rng: random.Random, authorization: str) -> str:
    """
    An C{Authorization} header: mostly the right one, else wrong, broken
    or hostile.
    """
    if rng.random() < 0.9:
        return f"Authorization: {authorization}"
    return "Authorization: " + rng.choice([
        "Basic " + "QUJD" * rng.randint(1, 3000),
        "Basic !!!",
        "Basic",
        "Bearer " + "x" * rng.randint(0, 5000),
        "Bearer",
        "Digest username=x",
        authorization[:-1],
        "\x00" * 10,
    ])


def _randomRequest(rng: random.Random, known: list[str], authorization: str | None = None) -> tuple[bytes, bool]:
    """
    A random request, and whether an answer is due (not for a request sent
    in part); with C{authorization}, its credentials, mostly right.
    """
    kind = rng.random()
    if kind < 0.04:
        garbage = bytes(rng.randrange(256) for _ in range(rng.randint(1, 400)))
        return garbage + b"\r\n\r\n", True
    if kind < 0.06:
        return b"GET /" + b"a" * rng.randint(20000, 70000) + b" HTTP/1.1\r\nHost: x\r\n\r\n", True
    if kind < 0.08:
        return b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 600 + b"\r\n", True
    method = rng.choice(_METHODS) if rng.random() < 0.2 else rng.choice(["GET", "HEAD"])
    version = "HTTP/1.1" if rng.random() < 0.9 else rng.choice(["HTTP/1.0", "HTTP/9.9", "", "HTTP/1.1 x"])
    lines = [f"{method} {_randomPath(rng, known)} {version}".rstrip(), "Host: 127.0.0.1"]
    lines += [_oddHeader(rng) for _ in range(rng.randint(0, 3))]
    if authorization is not None:
        lines.append(_credentials(rng, authorization))
    due = True
    if rng.random() < 0.15:
        broken, due = _brokenHeader(rng)
        lines.insert(rng.randint(1, len(lines)), broken)
    lines.append("Connection: close")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    if rng.random() < 0.03:
        return request[: rng.randint(1, len(request) - 1)], False
    return request, due


def _exchange(port: int, request: bytes, due: bool) -> bytes:
    """
    Send raw bytes and read what comes back until the mirror closes the
    connection, falls silent, or a bounded amount has arrived.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=5.0 if due else 0.2) as s:
        try:
            s.sendall(request)
        except OSError:
            pass
        received = b""
        try:
            while len(received) < 4 << 20:
                data = s.recv(65536)
                if not data:
                    break
                received += data
        except (socket.timeout, ConnectionResetError):
            pass
        return received


def fuzz(
    port: int, count: int, seed: int, known: list[str], figures: Figures, authorization: str | None = None
) -> None:
    """
    Send C{count} random and hostile requests (with C{authorization}, each
    with credentials, mostly right); note every status, and any 5xx not
    caused by upstream or traceback in an answer.
    """
    rng = random.Random(seed)
    for _ in range(count):
        request, due = _randomRequest(rng, known, authorization)
        answer = _exchange(port, request, due)
        figures.requests += 1
        if b"Traceback" in answer:
            figures.tracebacks += 1
            figures.problems.append(f"a traceback for {request[:200]!r}")
        for line in answer.split(b"\r\n"):
            if not line.startswith(b"HTTP/1."):
                continue
            try:
                status = int(line.split(b" ")[1])
            except (IndexError, ValueError):
                continue
            figures.note(status)
            if status < 500:
                figures.served += 1
            elif status not in (502, 504):
                figures.not5xxUpstream += 1
                figures.problems.append(f"{status} for {request[:200]!r}")


def healthy(port: int, known: list[str], headers: dict[str, str] | None = None) -> bool:
    """
    Whether the mirror still answers its index and a file, right.
    """
    status, _ = get(port, "/simple/", headers)
    if status != 200:
        return False
    for path in known:
        status, _ = get(port, path, headers)
        if status != 200:
            return False
    return True


def fileLinks(port: int, name: str, headers: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """
    The mirror's links to a project's files, with their sha256.
    """
    status, body = get(port, f"/simple/{name}/", {"Accept": JSON_ACCEPT, **(headers or {})})
    assert status == 200, body
    return [(linkPath(f["url"]), f["hashes"]["sha256"]) for f in json.loads(body)["files"]]
