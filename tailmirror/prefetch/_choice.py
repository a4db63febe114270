"""
Which file of a project a client installs, as pip and uv choose it: the
newest version that fits the requirement and the client's Python, of it
the wheel whose tags the client likes best, or its sdist; and what that
file's core metadata requires of the client's environment.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Iterable, NamedTuple

from packaging.metadata import parse_email
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import InvalidTag, Tag, parse_tag
from packaging.utils import InvalidSdistFilename, InvalidWheelFilename
from packaging.version import InvalidVersion, Version

from ..base import noteUnreadable, shardOf
from ..pages import QUARANTINED, Policy, metadataOffered, uploadTime
from ._clients import Client

__all__ = ["Candidate", "candidatesOf", "choose", "requirementsOf"]

#: Requirements of one distribution followed, at most.
REQUIRES_MAX = 200


class Candidate(NamedTuple):
    """
    A file of a project page, as a client's choice among them sees it (a
    tuple: a big page has thousands, made three times faster so than as a
    frozen dataclass).

    @ivar tags: a wheel's tags; L{None} for an sdist.
    """

    filename: str
    shard: tuple[str, str]
    version: Version
    tags: frozenset[Tag] | None
    requiresPython: SpecifierSet | None
    #: Whether the page offers its core metadata (or the wheel holds it).
    metadata: bool
    uploaded: float | None
    yanked: bool


@lru_cache(maxsize=4096)
def _tagsOf(text: str) -> frozenset[Tag]:
    """
    The tags a wheel's name gives (C{py3-none-any}): the same few thousand
    on every page, each read once.
    """
    return parse_tag(text)


def _wheelParts(filename: str, versions: dict[str, Version]) -> tuple[Version, frozenset[Tag]]:
    """
    A wheel's version and tags by its name, as L{parse_wheel_filename} reads
    them, its name left unchecked (it is the page's project): the version
    read once per page (in C{versions}), the tags once per process.

    @raise InvalidWheelFilename: if it is not a wheel's name.
    @raise InvalidVersion: if its version is not one.
    """
    parts = filename[:-4].split("-")
    if len(parts) not in (5, 6) or not parts[0] or (len(parts) == 6 and not parts[2][:1].isdigit()):
        raise InvalidWheelFilename(filename)
    if not all(parts[-3:]):
        raise InvalidWheelFilename(filename)
    return _versionOf(parts[1], versions), _tagsOf("-".join(parts[-3:]))


def _versionOf(text: str, versions: dict[str, Version]) -> Version:
    """
    The version C{text} names, parsed once per page (in C{versions}).

    @raise InvalidVersion: if it names none.
    """
    version = versions.get(text)
    if version is None:
        version = versions[text] = Version(text)
    return version


def _sdistVersion(filename: str, versions: dict[str, Version]) -> Version:
    """
    An sdist's version by its name, as L{parse_sdist_filename} reads it,
    its name left unchecked (it is the page's project), read once per page.

    @raise InvalidSdistFilename: if it is not an sdist's name.
    @raise InvalidVersion: if its version is not one.
    """
    if filename.endswith(".tar.gz"):
        stem = filename[:-7]
    elif filename.endswith(".zip"):
        stem = filename[:-4]
    else:
        raise InvalidSdistFilename(filename)
    name, dash, text = stem.rpartition("-")
    if not dash or not name:
        raise InvalidSdistFilename(filename)
    return _versionOf(text, versions)


def _newestFirst(found: list[Candidate]) -> None:
    """
    Sort candidates newest version first, in place, files of one version
    in the page's order: by the key versions compare by, for sorting a big
    page's thousands by L{Version}'s C{<} costs ten times as much.
    """
    try:
        found.sort(key=lambda c: c.version._key, reverse=True)
    except (AttributeError, TypeError):  # a packaging that keeps its key elsewhere
        found.sort(key=lambda c: c.version, reverse=True)


def candidatesOf(page: dict[str, Any]) -> tuple[Candidate, ...]:
    """
    The files of a page a client may choose: wheels and sdists whose names
    say their version.  CPU work for a big page: run it off the reactor.
    """
    status = page.get("project-status")
    if isinstance(status, dict) and status.get("status") == QUARANTINED:
        return ()
    found = []
    # A page's files share a few Requires-Python strings: each read once.
    specifiers: dict[str, SpecifierSet | None] = {}
    # And a few versions, each shared by several files.
    versions: dict[str, Version] = {}
    for entry in page.get("files", ()):
        filename = entry["filename"]
        wheelTags: frozenset[Tag] | None
        try:
            if filename.endswith(".whl"):
                version, wheelTags = _wheelParts(filename, versions)
            else:
                version = _sdistVersion(filename, versions)
                wheelTags = None
        except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion, InvalidTag) as e:
            noteUnreadable(filename, e)
            continue
        requires = entry.get("requires-python")
        spec = None
        if isinstance(requires, str) and requires.strip():
            if requires not in specifiers:
                try:
                    specifiers[requires] = SpecifierSet(requires)
                except InvalidSpecifier:
                    specifiers[requires] = None  # as pip does: a constraint it cannot read is none
            spec = specifiers[requires]
        advertised = entry.get("core-metadata", entry.get("dist-info-metadata"))
        found.append(
            Candidate(
                filename,
                shardOf(entry["url"], entry.get("hashes")),
                version,
                wheelTags,
                spec,
                bool(advertised) or metadataOffered(entry),
                uploadTime(entry),
                bool(entry.get("yanked")),
            )
        )
    # Newest first, so that a choice can stop at the first older version
    # than one that fits (see choose's newestFirst).
    _newestFirst(found)
    return tuple(found)


def choose(
    candidates: Iterable[Candidate],
    client: Client,
    specifier: SpecifierSet,
    name: str = "",
    policy: Policy | None = None,
    now: float = 0.0,
    newestFirst: bool = False,
) -> Candidate | None:
    """
    The file C{client} installs of a project for a requirement's
    C{specifier}: the newest version that fits (final releases before
    pre-releases; yanked files only for an exact pin), and of it the wheel
    whose tags the client likes best, or else its sdist.  Candidates given
    C{newestFirst} (as L{candidatesOf} gives them) are looked at only down
    to the first final release that fits: a big page has thousands.
    """
    pinned = any(s.operator in ("==", "===") and "*" not in s.version for s in specifier)
    best: tuple[Any, ...] | None = None
    chosen = None
    worst = len(client.tags)
    for c in candidates:
        if newestFirst and best is not None and best[0] and best[1] and c.version < best[2]:
            break  # nothing older can be chosen over a final, unyanked fit
        if c.yanked and not pinned:
            continue
        if c.requiresPython is not None and not c.requiresPython.contains(client.python, prereleases=True):
            continue
        if not specifier.contains(c.version, prereleases=True):
            continue
        rank: float
        if c.tags is None:
            rank = worst
        else:
            rank = min((client.tags.get(t, math.inf) for t in c.tags), default=math.inf)
            if rank == math.inf:
                continue
        if policy is not None and policy.holds(name, c.filename, c.uploaded, now) is not None:
            continue
        # A pre-release only where the specifier names one, or none else fits.
        final = not c.version.is_prerelease or specifier.prereleases is True
        order = (final, not c.yanked, c.version, -rank)
        if best is None or order > best:
            best, chosen = order, c
    return chosen


def requirementsOf(data: bytes, client: Client, extras: frozenset[str]) -> list[Requirement]:
    """
    The requirements of a distribution, by its core metadata, that apply
    to C{client} installing it with C{extras}.  CPU work: off the reactor.
    """
    raw, _ = parse_email(data)
    wanted = [""] + sorted(extras)
    found = []
    for line in raw.get("requires_dist", [])[:REQUIRES_MAX]:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        marker = requirement.marker
        if marker is not None:
            try:
                if not any(marker.evaluate(client.marker(extra)) for extra in wanted):
                    continue
            except Exception:  # a marker the client could not evaluate either
                continue
        found.append(requirement)
    return found
