"""
Which upstream URL each mirror path stands for: the links of a project
page, indexed once per version of the page, so that a cold file's link is
found without reading its page back from the journal for every lookup.

A file's upstream URL and hash come only from its project's page; a path a
client asks for is matched against the links on that page, so the mirror
never fetches a URL a client chose.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)

from ..base import METADATA, FileKey, canonicalName, noteUnreadable, shardOfDigest, usableSha256
from ._policy import timeOf

__all__ = ["FileLink", "Given", "Links", "indexLinks", "lookUp", "metadataURL", "projectsOf"]

_HEXDIGEST = re.compile(r"[0-9a-f]+")

#: Hashes a link may give, strongest first; the first one present is checked.
_ALGORITHMS = ("sha256", "sha512", "sha384", "blake2b", "sha3_256", "sha224", "sha1", "md5")


def metadataOffered(entry: dict[str, Any]) -> bool:
    """
    Whether the mirror offers core metadata of its own for a page's file:
    a wheel for which upstream gives none.
    """
    return (
        isinstance(entry.get("filename"), str)
        and entry["filename"].endswith(".whl")
        and not entry.get("core-metadata")
        and not entry.get("dist-info-metadata")
    )


class FileLink(NamedTuple):
    """
    Where upstream keeps a file, and what its bytes must be (a tuple: a big
    page has thousands, made three times faster so than as a frozen
    dataclass).

    @ivar algorithm: the hash checked, or L{None} if the link gives none.
    @ivar size: the size the page gives, if any.
    """

    url: str
    algorithm: str | None
    digest: str | None
    size: int | None
    #: When it was uploaded (PEP 700), in Unix time, where the page says.
    uploaded: float | None = None
    #: For a provenance object: the sha256 of the file it must name.
    subject: str | None = None
    #: The normalized name of the project whose page gives the link.
    project: str | None = None
    #: For core metadata upstream does not serve: it is read out of the
    #: wheel at L{url} (see L{tailmirror.files._wheel}).
    inWheel: bool = False


class Given(NamedTuple):
    """
    What a page gives of one file, as it gives it: made into a L{FileLink}
    only when looked up (L{lookUp}), for a big page has thousands of files
    and a client asks for a few.
    """

    url: str
    #: Its sha256, where the page gives a well-formed one.
    sha256: str | None
    #: The page's C{hashes} for the file where it gives no sha256.
    hashes: object
    size: int | None
    #: The core metadata the page advertises (its C{core-metadata}), if any.
    advertised: object
    #: Whether the mirror reads the core metadata out of the wheel.
    offered: bool
    #: Its C{upload-time}, as the page gives it.
    uploaded: object
    provenance: str | None
    project: str | None


#: A page's links by the path below C{+f/} that names each, as the shard
#: and file name.
Links = dict[tuple[tuple[str, str], str], Given]


def _check(hashes: object) -> tuple[str | None, str | None]:
    """
    The strongest well-formed hash among a link's C{hashes}.
    """
    if isinstance(hashes, dict):
        for algorithm in _ALGORITHMS:
            digest = hashes.get(algorithm)
            if isinstance(digest, str) and _HEXDIGEST.fullmatch(digest.lower()):
                return algorithm, digest.lower()
    return None, None


def metadataURL(url: str) -> str:
    """
    Where a distribution's core metadata file is (PEP 658): its URL with
    C{.metadata} after the path.
    """
    base = url.partition("#")[0]
    if "?" not in base and base.count("/") >= 3:
        return base + METADATA  # the same, without taking it apart (thousands a page)
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=parts.path + METADATA))


def indexLinks(page: dict[str, Any], only: str | None = None) -> Links:
    """
    Every link of a project page by the path that names it (or those of
    file C{only}).  CPU work for a big page: run it off the reactor thread.
    """
    links: Links = {}
    project = page.get("name") if isinstance(page.get("name"), str) else None
    for entry in page.get("files", ()):
        filename, url = entry["filename"], entry["url"]
        if only is not None and filename != only:
            continue
        hashes = entry.get("hashes")
        sha = usableSha256(hashes)
        where = (shardOfDigest(url, sha), filename)
        if where in links:
            continue
        size = entry.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            size = None
        advertised = entry.get("core-metadata", entry.get("dist-info-metadata"))
        provenance = entry.get("provenance")
        links[where] = Given(
            url,
            sha,
            None if sha is not None else hashes,
            size,
            advertised or None,
            not advertised and metadataOffered(entry),
            entry.get("upload-time"),
            provenance if isinstance(provenance, str) else None,
            project,
        )
    return links


def lookUp(links: Links, key: FileKey) -> FileLink | None:
    """
    The link C{key} names among a page's links, or L{None}: for a
    C{.metadata} path, only where the page advertises core metadata (or
    the mirror reads it out of the wheel); for a C{.provenance} path, only
    where it gives a provenance URL.
    """
    given = links.get((key.shard, key.filename))
    if given is None:
        return None
    uploaded = timeOf(given.uploaded)
    if key.metadata:
        if given.advertised is not None:
            return FileLink(metadataURL(given.url), *_check(given.advertised), None, uploaded, project=given.project)
        if given.offered:
            return FileLink(given.url, None, None, None, uploaded, project=given.project, inWheel=True)
        return None
    algorithm, digest = ("sha256", given.sha256) if given.sha256 is not None else _check(given.hashes)
    if key.provenance:
        if given.provenance is None:
            return None
        subject = digest if algorithm == "sha256" else None
        return FileLink(given.provenance, None, None, None, uploaded, subject, given.project)
    return FileLink(given.url, algorithm, digest, given.size, uploaded, project=given.project)


def projectsOf(filename: str) -> list[str]:
    """
    The normalized names of the projects a file may belong to, likeliest
    first: a wheel's name is exact; an sdist's is everything before its last
    dash; older formats put the version after the first dash.
    """
    names: list[str] = []
    if filename.endswith(".whl"):
        try:
            names.append(parse_wheel_filename(filename)[0])
        except InvalidWheelFilename as e:
            noteUnreadable(filename, e)  # read as other names are, below
    try:
        names.append(parse_sdist_filename(filename)[0])
    except InvalidSdistFilename:
        for suffix in (".tar.bz2", ".tar.xz", ".tgz", ".tar", ".egg", ".exe", ".msi", ".rpm", ".dmg"):
            if filename.endswith(suffix):
                names.append(filename[: -len(suffix)].rpartition("-")[0])
    names.append(filename.partition("-")[0])
    found: list[str] = []
    for name in names:
        canonical = canonicalName(name)
        if canonical is not None and canonical not in found:
            found.append(canonical)
    return found
