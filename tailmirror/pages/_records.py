"""
The journal's records: what each line holds (a header, and a page after
it), how a header is checked when it is read back, and what the mirror
keeps in memory of each project (L{Entry}: where its latest page sits).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from ..base import canonicalName

__all__ = ["Entry", "JournalFile", "checkedHeader", "pageHeader", "recordLine"]


class JournalFile:
    """
    One open journal file.  A compaction puts a new file in the journal's
    place; the old one stays open while a reader still holds it, and
    closes when nothing refers to it any more.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        self.close()


@dataclass(slots=True, eq=False)
class Entry:
    """
    What the mirror keeps in memory of a project: where its latest page
    sits in the journal, upstream's validator for it, and when it was last
    known fresh.  C{serial} names the page for as long as the process
    runs, wherever compaction moves it.
    """

    name: str
    etag: str | None
    fetched: float
    #: The file, offset and length of the page, replaced in one assignment
    #: so that a reader in another thread sees one place or the other.
    where: tuple[JournalFile, int, int]
    #: The length of the page's whole record.
    record: int
    #: The sha256 of the upstream body the page was made from.
    digest: str | None = None
    #: The project's status (PEP 792) on that page, if it gives one.
    status: str | None = None
    #: Upstream's C{X-PyPI-Last-Serial} for the page, if it gave one.
    lastSerial: str | None = None
    serial: int = field(default_factory=itertools.count().__next__)

    @property
    def length(self) -> int:
        return self.where[2]


def pageHeader(
    name: str,
    fetched: float,
    etag: str | None,
    digest: str | None,
    status: str | None = None,
    lastSerial: str | None = None,
) -> dict[str, Any]:
    """
    The header of a page's record.
    """
    header: dict[str, Any] = {"name": name, "fetched": fetched, "etag": etag}
    for key, value in (("digest", digest), ("status", status), ("lastSerial", lastSerial)):
        if value is not None:
            header[key] = value
    return header


def checkedHeader(header: Any) -> tuple[str, float]:
    """
    The project name and fetch time of a record's header, once every field
    is of its kind.

    @raise ValueError: if one is not.
    """
    if not isinstance(header, dict):
        raise ValueError("its header is not an object")
    name, fetched = header.get("name"), header.get("fetched")
    if not isinstance(name, str) or canonicalName(name) != name:
        raise ValueError(f"its project name {name!r:.80} is not a normalized name")
    if isinstance(fetched, bool) or not isinstance(fetched, (int, float)) or not math.isfinite(fetched):
        raise ValueError(f"its fetch time {fetched!r:.80} is not a number")
    for key in ("etag", "digest", "status", "lastSerial"):
        if not isinstance(header.get(key), (str, type(None))):
            raise ValueError(f"its {key} {header.get(key)!r:.80} is not a string")
    return name, float(fetched)


def recordLine(header: dict[str, Any], page: bytes | None = None) -> tuple[bytes, int]:
    """
    One record, and where its page starts in it.
    """
    head = json.dumps(header, separators=(",", ":")).encode("ascii")
    parts = [b"[", head]
    if page is not None:
        parts += [b",", page]
    parts.append(b"]\n")
    return b"".join(parts), 2 + len(head)
