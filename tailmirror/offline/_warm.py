"""
C{python -m tailmirror warm FILE... --mirror URL}: fill a mirror with what
requirements and lock files name, before the network goes away.

It reads C{requirements.txt} (pins, C{--hash} options, C{-r} and C{-c}
includes), C{pylock.toml} (PEP 751) and C{uv.lock}, and asks the mirror,
through its ordinary routes, for every project page they name and for the
files they pin, with their core metadata, a few at a time.  A file is
asked for by its project's page on the mirror and its hash or name, never
by the URL a lock file gives: the mirror never fetches a URL a client
chose.  A requirement without a pin gets its page only; installers
resolve the rest.  A pin without hashes gets the files of that version
that an installer on this host could pick (its sdist, and its wheels
whose tags fit this interpreter).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from threading import Lock
from typing import Any, TextIO

from packaging.tags import sys_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from ..base import noteUnreadable
from ..pages import versionOf
from ..upstream import credentialsFromNetrc, origin, withoutUserinfo
from ._wanted import Unreadable, Wanted, readFile

__all__ = ["NotAnIndex", "Unreadable", "Wanted", "main", "readFile", "warm"]

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
USER_AGENT = "tailmirror-warm"
CHUNK = 1 << 20


def _fitsHere(filename: str) -> bool:
    """
    Whether an installer on this host could pick a file: an sdist, or a
    wheel whose tags this interpreter supports.
    """
    if not filename.endswith(".whl"):
        return True
    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename as e:
        noteUnreadable(filename, e)
        return False
    return not tags.isdisjoint(_HERE)


_HERE = frozenset(sys_tags())


def _versionHere(filename: str) -> str | None:
    """
    The version a file's name gives; where the name of a wheel or an sdist
    gives none that can be read, the file is passed by, and that is said.
    """
    version = versionOf(filename)
    if version is None and filename.endswith((".whl", ".tar.gz", ".zip")):
        noteUnreadable(filename, "no version can be read from it")
    return version


def choose(wanted: Wanted, page: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """
    The files of a page that C{wanted} pins, and what it pins that the
    page does not list.
    """
    files = page.get("files", [])
    if wanted.hashes or wanted.filenames:
        chosen = [
            f for f in files
            if (f.get("hashes") or {}).get("sha256") in wanted.hashes or f.get("filename") in wanted.filenames
        ]
        listedHashes = {(f.get("hashes") or {}).get("sha256") for f in chosen}
        listedNames = {f.get("filename") for f in chosen}
        missing = sorted(
            {n for n in wanted.filenames if n not in listedNames}
            | ({f"sha256:{h}" for h in wanted.hashes - listedHashes} if not wanted.filenames else set())
        )
        return chosen, missing
    if wanted.version is not None:
        chosen = [f for f in files if _versionHere(f.get("filename", "")) == wanted.version and _fitsHere(f["filename"])]
        return chosen, [] if chosen else [f"{wanted.project}=={wanted.version}"]
    return [], []


@dataclass
class Tally:
    """
    What warming did, so far.
    """

    total: int = 0
    #: Files done, well or not.
    done: int = 0
    fetched: int = 0
    cached: int = 0
    bytes: int = 0
    failed: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    lock: Lock = field(default_factory=Lock)


_PASS = "pass the mirror's Simple API root with --mirror, such as http://buildhost:3141/simple/"


class NotAnIndex(Exception):
    """
    The URL given as the mirror's is not a Simple index.
    """


class Warmer:
    """
    Asks a mirror for pages and files, a few at a time, and tells how it
    goes.
    """

    def __init__(self, mirror: str, jobs: int, out: TextIO, timeout: float = 600.0) -> None:
        # A mirror run with --auth: credentials from the URL, else netrc,
        # sent to the mirror alone, and the URL shown without them.
        mirror, credentials = withoutUserinfo(mirror)
        if credentials is None:
            credentials, _ = credentialsFromNetrc(mirror)
        self._credentials = credentials
        self.mirror = mirror if mirror.endswith("/") else mirror + "/"
        self._origin = origin(self.mirror)
        self.jobs = jobs
        self.out = out
        self.timeout = timeout
        self.tally = Tally()
        self.tty = out.isatty()

    def _open(self, url: str, accept: str = "*/*") -> Any:
        request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": USER_AGENT})
        if self._credentials is not None and origin(url) == self._origin:
            # Not carried over to a redirect, which may lead elsewhere.
            request.add_unredirected_header("Authorization", self._credentials.authorization)
        return urllib.request.urlopen(request, timeout=self.timeout)

    def page(self, project: str) -> dict[str, Any]:
        """
        A project's page on the mirror, as JSON.
        """
        with self._open(f"{self.mirror}{project}/", JSON_TYPE) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def fetch(self, url: str, label: str) -> None:
        """
        Have the mirror serve one file, reading it all (and throwing it
        away).
        """
        try:
            with self._open(url) as response:
                size = 0
                while chunk := response.read(CHUNK):
                    size += len(chunk)
                    with self.tally.lock:
                        self.tally.bytes += len(chunk)
                    self.progress()
                hit = response.headers.get("Tailmirror-Cache") == "hit"
        except (OSError, ValueError) as e:
            with self.tally.lock:
                self.tally.done += 1
            self.fail(label, e)
            return
        with self.tally.lock:
            self.tally.done += 1
            if hit:
                self.tally.cached += 1
            else:
                self.tally.fetched += 1
        self.say(f"{'cached' if hit else 'fetched'} {label} ({size:,} bytes)")

    def fail(self, label: str, e: Exception) -> None:
        reason = _reason(e)
        with self.tally.lock:
            self.tally.failed.append(f"{label}: {reason}")
        self.say(f"failed {label}: {reason}", always=True)

    def say(self, line: str, always: bool = False) -> None:
        """
        One line of news: on a terminal only failures, over the progress.
        """
        if self.tty and not always:
            self.progress()
            return
        with self.tally.lock:
            prefix = "\r\033[K" if self.tty else ""
            self.out.write(f"{prefix}{line}\n")
            self.out.flush()

    def progress(self) -> None:
        if not self.tty:
            return
        tally = self.tally
        with tally.lock:
            done = tally.done
            seconds = max(time.monotonic() - tally.started, 1e-6)
            self.out.write(
                f"\r\033[Kwarming: {done}/{tally.total} files, {tally.bytes / 1e6:,.1f} MB, "
                f"{tally.bytes / 1e6 / seconds:,.1f} MB/s"
            )
            self.out.flush()

    def checkIndex(self) -> None:
        """
        Make sure the mirror's URL is its Simple API root: the mirror's own
        root leads there.

        @raise NotAnIndex: if it answers, but not as a Simple index.
        """
        if urllib.parse.urlsplit(self.mirror).path in ("", "/"):
            self.mirror += "simple/"
        try:
            with self._open(self.mirror, JSON_TYPE) as response:
                kind = (response.headers.get("Content-Type") or "").lower()
                head = response.read(64 * 1024).lower()
        except urllib.error.HTTPError as e:
            raise NotAnIndex(f"{self.mirror} answered {e.code}, not a Simple index: {_PASS}") from None
        except (urllib.error.URLError, OSError):
            return  # unreachable: each request says so
        if "application/vnd.pypi.simple" in kind or b"pypi:repository-version" in head:
            return
        raise NotAnIndex(f"{self.mirror} is not a Simple index ({kind or 'no content type'}): {_PASS}")

    def warm(self, wanted: list[Wanted]) -> Tally:
        """
        Fetch every page, then every file (with its metadata) they pin.

        @raise NotAnIndex: if the mirror's URL is not a Simple index.
        """
        self.checkIndex()
        byProject: dict[str, Wanted] = {}
        for w in wanted:
            if w.project in byProject:
                byProject[w.project].merge(w)
            else:
                byProject[w.project] = w
        pages: dict[str, dict[str, Any]] = {}

        def getPage(project: str) -> None:
            try:
                pages[project] = self.page(project)
            except (OSError, ValueError) as e:
                self.fail(f"the page of {project}", e)

        with ThreadPoolExecutor(self.jobs) as pool:
            list(pool.map(getPage, byProject))
        work = []
        for project, page in pages.items():
            files, missing = choose(byProject[project], page)
            for name in missing:
                self.fail(f"{project}: {name}", LookupError("not on the mirror's page of the project"))
            base = f"{self.mirror}{project}/"
            for f in files:
                url = urllib.parse.urljoin(base, f["url"])
                work.append((url, f["filename"]))
                if f.get("core-metadata") or f.get("dist-info-metadata"):
                    work.append((url + ".metadata", f["filename"] + ".metadata"))
        self.tally.total = len(work)
        self.say(f"{len(pages)} pages, {len(work)} files to warm", always=True)
        with ThreadPoolExecutor(self.jobs) as pool:
            list(pool.map(lambda item: self.fetch(*item), work))
        if self.tty:
            self.out.write("\n")
        return self.tally


def _reason(e: Exception) -> str:
    if isinstance(e, urllib.error.HTTPError):
        try:
            text = e.read(300).decode("utf-8", "replace").strip().splitlines()
        except OSError:
            text = []
        return f"{e.code} {text[0] if text else e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


def warm(files: list[str], mirror: str, jobs: int = 8, out: TextIO = sys.stdout) -> Tally:
    """
    Warm C{mirror} (its Simple API root URL) with what C{files} name.

    @raise Unreadable: if one of them is no requirements or lock file.
    @raise OSError: if one cannot be read.
    """
    wanted = [w for path in files for w in readFile(path)]
    return Warmer(mirror, jobs, out).warm(wanted)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tailmirror warm",
        description="Fill a tailmirror with what requirements files (with --hash lines and -r includes), "
        "pylock.toml (PEP 751) and uv.lock files name.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--mirror", required=True, metavar="URL",
                        help="the mirror's Simple API root, e.g. http://buildhost:3141/simple/")
    parser.add_argument("--jobs", type=int, default=8, help="requests to the mirror at once (default 8)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs takes a positive number")
    try:
        tally = warm(args.files, args.mirror, args.jobs)
    except (Unreadable, OSError) as e:
        print(f"tailmirror warm: {e}", file=sys.stderr)
        return 1
    except NotAnIndex as e:
        print(f"tailmirror warm: {e}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - tally.started
    print(
        f"warmed in {seconds:.1f} s: {tally.fetched} fetched from upstream, {tally.cached} already cached, "
        f"{len(tally.failed)} failed; {tally.bytes:,} bytes"
    )
    for failure in tally.failed:
        print(f"  failed: {failure}", file=sys.stderr)
    return 1 if tally.failed else 0
