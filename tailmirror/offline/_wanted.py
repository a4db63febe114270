"""
What C{python -m tailmirror warm} reads: requirements files (pins,
C{--hash} options, C{-r} and C{-c} includes), C{pylock.toml} (PEP 751)
and C{uv.lock}, each made into the projects, versions and hashes wanted.
"""

from __future__ import annotations

import os
import shlex
import sys
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Iterable

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement

from ..base import canonicalName
from ..pages import normalVersion

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["Unreadable", "Wanted", "readFile", "readPylock", "readRequirements", "readUvLock"]


@dataclass
class Wanted:
    """
    What a requirement or a lock file asks of one project.
    """

    project: str
    #: The pinned version, normalized, if any.
    version: str | None = None
    #: sha256 digests of the files pinned.
    hashes: set[str] = field(default_factory=set)
    #: File names pinned (lock files name them).
    filenames: set[str] = field(default_factory=set)

    def merge(self, other: "Wanted") -> None:
        self.version = self.version or other.version
        self.hashes |= other.hashes
        self.filenames |= other.filenames


class Unreadable(Exception):
    """
    A file that is no requirements or lock file the warmer reads.
    """


def _sha256(value: str) -> str | None:
    algorithm, _, digest = value.partition(":")
    if not digest:
        algorithm, _, digest = value.partition("=")
    return digest.lower() if algorithm.lower() == "sha256" and digest else None


def _pin(requirement: Requirement) -> str | None:
    specifiers = list(requirement.specifier)
    if len(specifiers) == 1 and specifiers[0].operator in ("==", "===") and "*" not in specifiers[0].version:
        return normalVersion(specifiers[0].version) or specifiers[0].version
    return None


def _requirementLines(path: str, seen: set[str]) -> Iterable[tuple[str, str]]:
    """
    The logical lines of a requirements file and the files it includes, as
    C{(file, line)}, continuations joined and comments dropped.
    """
    real = os.path.realpath(path)
    if real in seen:
        return
    seen.add(real)
    with open(path, encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line, posix=True)
        if words[0] in ("-r", "--requirement", "-c", "--constraint") and len(words) > 1:
            yield from _requirementLines(os.path.join(os.path.dirname(path), words[1]), seen)
            continue
        for option in ("--requirement=", "--constraint="):
            if words[0].startswith(option):
                yield from _requirementLines(os.path.join(os.path.dirname(path), words[0][len(option):]), seen)
                break
        else:
            yield path, line


def readRequirements(path: str) -> list[Wanted]:
    """
    What a requirements file (and what it includes) names.

    @raise Unreadable: for a line that is no requirement.
    """
    found = []
    for where, line in _requirementLines(path, set()):
        if line.startswith("-"):
            continue  # an option of pip's own: -e, -i, --index-url, -f ...
        words = line.split()
        spec = " ".join(w for w in words if not w.startswith("--"))
        hashes = {h for w in words if w.startswith("--hash=") if (h := _sha256(w[7:])) is not None}
        try:
            requirement = Requirement(spec)
        except InvalidRequirement as e:
            raise Unreadable(f"{where}: not a requirement: {line!r} ({e})") from None
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalName(requirement.name)
        if name is None:
            raise Unreadable(f"{where}: not a project name: {requirement.name!r}")
        found.append(Wanted(name, _pin(requirement), hashes))
    return found


def _fits(marker: Any) -> bool:
    if not isinstance(marker, str):
        return True
    try:
        return Marker(marker).evaluate()
    except InvalidMarker:
        return True


def readPylock(data: dict[str, Any]) -> list[Wanted]:
    """
    What a C{pylock.toml} (PEP 751) names.
    """
    found = []
    for package in data.get("packages", []):
        name = canonicalName(str(package.get("name", "")))
        if name is None or not _fits(package.get("marker")):
            continue
        wanted = Wanted(name, package.get("version"))
        for dist in [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]:
            filename = dist.get("name") or _basename(dist.get("url", ""))
            digest = (dist.get("hashes") or {}).get("sha256")
            if filename:
                wanted.filenames.add(filename)
            if isinstance(digest, str):
                wanted.hashes.add(digest.lower())
        found.append(wanted)
    return found


def readUvLock(data: dict[str, Any]) -> list[Wanted]:
    """
    What a C{uv.lock} names: the packages it locks from an index.
    """
    found = []
    for package in data.get("package", []):
        name = canonicalName(str(package.get("name", "")))
        source = package.get("source", {})
        if name is None or "registry" not in source:
            continue  # the project itself, a path, a git checkout
        wanted = Wanted(name, package.get("version"))
        for dist in [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]:
            filename = _basename(dist.get("url", "")) or dist.get("filename")
            digest = _sha256(dist.get("hash", ""))
            if filename:
                wanted.filenames.add(filename)
            if digest:
                wanted.hashes.add(digest)
        found.append(wanted)
    return found


def _basename(url: str) -> str:
    return urllib.parse.unquote(os.path.basename(urllib.parse.urlsplit(url).path))


def readFile(path: str) -> list[Wanted]:
    """
    What one requirements or lock file names, by its kind.

    @raise Unreadable: if it is not one.
    @raise OSError: if it cannot be read.
    """
    base = os.path.basename(path)
    if base.endswith(".toml") or base == "uv.lock" or base.endswith(".lock"):
        with open(path, "rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise Unreadable(f"{path}: not TOML: {e}") from None
        if base == "uv.lock" or "package" in data:
            return readUvLock(data)
        if "packages" in data or base.startswith("pylock"):
            return readPylock(data)
        raise Unreadable(f"{path}: neither a pylock.toml nor a uv.lock")
    return readRequirements(path)
