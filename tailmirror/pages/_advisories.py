"""
Advisories in the OSV format (what OSV, GitHub's advisory database and the
OpenSSF malicious-packages project publish), read from a directory (read
recursively, as the malicious-packages repository nests its records), a
zip of them, or a JSON document of one or a list; only the PyPI
ecosystem's.  Which versions each affects is evaluated with C{packaging}:
its C{affected} versions, and its ranges' events (C{introduced},
C{fixed}, C{last_affected}).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = ["Advisories", "Advisory", "readAdvisories"]

#: The most bytes of one OSV document read.
DOCUMENT_MAX = 8 * 1024 * 1024


def _version(text: object) -> Version | None:
    if not isinstance(text, str):
        return None
    try:
        return Version(text)
    except InvalidVersion:
        return None


@dataclass(frozen=True)
class _Span:
    """
    One stretch of a range: from C{start} (L{None}: from the first) up to
    C{end}, which is included if C{inclusive}; open-ended if C{end} is
    L{None}.
    """

    start: Version | None
    end: Version | None
    inclusive: bool

    def contains(self, version: Version) -> bool:
        if self.start is not None and version < self.start:
            return False
        if self.end is None:
            return True
        return version <= self.end if self.inclusive else version < self.end


def _spans(events: list[Any]) -> Iterator[_Span]:
    """
    The stretches a range's events describe: each C{introduced} to the
    nearest C{fixed} or C{last_affected} above it.
    """
    starts: list[Version | None] = []
    ends: list[tuple[Version, bool]] = []
    for event in events:
        if not isinstance(event, dict):
            continue
        if "introduced" in event:
            text = event["introduced"]
            starts.append(None if text == "0" else _version(text))
            if text != "0" and starts[-1] is None:
                starts.pop()
        elif "fixed" in event:
            found = _version(event["fixed"])
            if found is not None:
                ends.append((found, False))
        elif "last_affected" in event:
            found = _version(event["last_affected"])
            if found is not None:
                ends.append((found, True))
    ends.sort(key=lambda e: e[0])
    for start in starts:
        above = [e for e in ends if start is None or e[0] > start or (e[1] and e[0] == start)]
        end, inclusive = above[0] if above else (None, False)
        yield _Span(start, end, inclusive)


@dataclass(frozen=True)
class Advisory:
    """
    One advisory: its identifier, its summary, whether it reports a
    malicious package, and the versions it affects, by project.
    """

    id: str
    summary: str
    malicious: bool
    aliases: tuple[str, ...] = ()
    details: str = ""
    #: Normalized project names, each with its listed versions and spans.
    affected: dict[str, tuple[frozenset[Version], tuple[_Span, ...]]] = field(default_factory=dict)
    fixedIn: dict[str, tuple[str, ...]] = field(default_factory=dict)
    withdrawn: str | None = None

    def affects(self, name: str, version: str | None) -> bool:
        return self.affectsVersion(name, _version(version))

    def affectsVersion(self, name: str, parsed: Version | None) -> bool:
        found = self.affected.get(name)
        if found is None or parsed is None:
            return False
        versions, spans = found
        return parsed in versions or any(span.contains(parsed) for span in spans)

    def names(self) -> Iterable[str]:
        return [self.id, *self.aliases]


def parseOSV(document: Any) -> Advisory | None:
    """
    An advisory of the PyPI ecosystem from an OSV document; L{None} for one
    of another ecosystem, or withdrawn.

    @raise ValueError: if it is not an OSV document.
    """
    if not isinstance(document, dict) or not isinstance(document.get("id"), str):
        raise ValueError("not an OSV document (no id)")
    affected: dict[str, tuple[frozenset[Version], tuple[_Span, ...]]] = {}
    fixedIn: dict[str, list[str]] = {}
    entries = document.get("affected") or []
    if not isinstance(entries, list):
        raise ValueError("its 'affected' is not a list")
    for entry in entries:
        package = entry.get("package") if isinstance(entry, dict) else None
        if not isinstance(package, dict) or str(package.get("ecosystem", "")).split(":")[0] != "PyPI":
            continue
        if not isinstance(package.get("name"), str):
            continue
        name = canonicalize_name(package["name"])
        versions = frozenset(v for v in map(_version, entry.get("versions") or []) if v is not None)
        spans: list[_Span] = []
        for each in entry.get("ranges") or []:
            if isinstance(each, dict) and each.get("type") in ("ECOSYSTEM", "SEMVER"):
                events = each.get("events") or []
                spans.extend(_spans(events))
                fixedIn.setdefault(name, []).extend(
                    e["fixed"] for e in events if isinstance(e, dict) and isinstance(e.get("fixed"), str)
                )
        before = affected.get(name, (frozenset(), ()))
        affected[name] = (before[0] | versions, before[1] + tuple(spans))
    if not affected:
        return None
    identifier = document["id"]
    aliases = tuple(a for a in document.get("aliases") or [] if isinstance(a, str))
    specific = document.get("database_specific")
    malicious = (
        identifier.startswith("MAL-")
        or any(a.startswith("MAL-") for a in aliases)
        or (isinstance(specific, dict) and "malicious-packages-origins" in specific)
    )
    summary = document.get("summary")
    details = document.get("details")
    withdrawn = document.get("withdrawn")
    return Advisory(
        identifier,
        summary if isinstance(summary, str) else "",
        malicious,
        aliases,
        details if isinstance(details, str) else "",
        affected,
        {name: tuple(v) for name, v in fixedIn.items()},
        withdrawn if isinstance(withdrawn, str) else None,
    )


def _documents(data: bytes) -> list[Any]:
    """
    The OSV documents of one JSON file: one, or a list of them.
    """
    document = json.loads(data)
    return document if isinstance(document, list) else [document]


def readAdvisories(source: str | bytes, label: str = "") -> tuple[list[Advisory], list[str]]:
    """
    The advisories of a directory (recursively), a zip file, or a JSON
    file, by path; or of a zip's or a JSON document's bytes.  Blocking: run
    it in a thread.

    @return: the advisories, and the names of the files that could not be
        read, each with why.
    @raise OSError: if C{source} cannot be read at all.
    @raise ValueError: if its bytes are neither a zip nor JSON.
    """
    found: list[Advisory] = []
    skipped: list[str] = []

    def take(name: str, data: bytes) -> None:
        try:
            for document in _documents(data):
                advisory = parseOSV(document)
                if advisory is not None and advisory.withdrawn is None:
                    found.append(advisory)
        except (ValueError, TypeError, AttributeError, RecursionError) as e:
            skipped.append(f"{name} ({' '.join(str(e).split())[:120] or type(e).__name__})")

    if isinstance(source, bytes):
        if source[:4] == b"PK\x03\x04":
            _fromZip(io.BytesIO(source), label, take)
        else:
            try:
                _documents(source)
            except ValueError:
                raise ValueError(f"{label} is neither a zip of OSV files nor an OSV JSON document") from None
            take(label, source)
        return found, skipped
    if os.path.isdir(source):
        for directory, folders, files in os.walk(source):
            folders.sort()
            for name in sorted(files):
                if name.endswith(".json"):
                    path = os.path.join(directory, name)
                    try:
                        with open(path, "rb") as f:
                            data = f.read(DOCUMENT_MAX + 1)
                    except OSError as e:
                        skipped.append(f"{path} ({e.strerror})")
                        continue
                    if len(data) > DOCUMENT_MAX:
                        skipped.append(f"{path} (larger than {DOCUMENT_MAX} bytes)")
                        continue
                    take(path, data)
        return found, skipped
    with open(source, "rb") as f:
        data = f.read()
    return readAdvisories(data, source)


def _fromZip(stream: io.BytesIO, label: str, take: Any) -> None:
    try:
        archive = zipfile.ZipFile(stream)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{label} is not a zip that can be read ({e})") from None
    with archive:
        for info in archive.infolist():
            if not info.filename.endswith(".json") or info.is_dir():
                continue
            if info.file_size > DOCUMENT_MAX:
                take(f"{label}:{info.filename}", b"too large")
                continue
            try:
                data = archive.read(info)
            except (zipfile.BadZipFile, OSError, ValueError) as e:
                take(f"{label}:{info.filename}", str(e).encode())
                continue
            take(f"{label}:{info.filename}", data)


class Advisories:
    """
    Advisories by the projects they affect.
    """

    def __init__(self, advisories: Iterable[Advisory] = ()) -> None:
        self.byProject: dict[str, list[Advisory]] = {}
        self.count = 0
        seen: set[str] = set()
        for advisory in advisories:
            if advisory.id in seen:
                continue
            seen.add(advisory.id)
            self.count += 1
            for name in advisory.affected:
                self.byProject.setdefault(name, []).append(advisory)

    def affecting(
        self, name: str, version: str | None, among: Callable[[Advisory], bool] = lambda advisory: True
    ) -> list[Advisory]:
        """
        The advisories that affect a version of a project (of those
        C{among} takes, asked first: it is cheaper than a version's ranges).
        """
        parsed = _version(version)
        if parsed is None:
            return []
        return [a for a in self.byProject.get(name, ()) if among(a) and a.affectsVersion(name, parsed)]
