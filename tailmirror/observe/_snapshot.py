"""
One snapshot of the mirror's facts, as plain values, for the observers
(the metrics at each scrape, the status page at each request): the
assembled mirror makes it (L{tailmirror._mirror.Mirror.snapshot}), so no
observer walks the mirror's parts itself, and each reads every fact once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["CacheFacts", "DownloadFacts", "IndexFacts", "JournalFacts", "SlotFacts", "Snapshot", "Snapshots"]


@dataclass(frozen=True)
class IndexFacts:
    """
    One index mirrored: its name, upstream, where its pages are served, and
    how many projects' pages it keeps.
    """

    name: str
    url: str
    pagesPath: str
    projectsKnown: int


@dataclass(frozen=True)
class DownloadFacts:
    """
    A download under way: its file, its path on the mirror, its bytes so
    far and in all (L{None} where upstream did not say), and when upstream
    began to send it (L{None}: not yet).
    """

    file: str
    path: str
    received: int
    length: int | None
    startedAt: float | None


@dataclass(frozen=True)
class SlotFacts:
    """
    Requests to upstream of one kind, over every index: how many may run
    at once, how many run, how many wait for a slot.
    """

    limit: int
    busy: int
    waiting: int


@dataclass(frozen=True)
class CacheFacts:
    """
    The cache directory against its limits.
    """

    #: Whether the tree's files were counted since start.
    counted: bool
    files: int
    #: Bytes it holds: files, downloads under way and the journals.
    bytes: int
    maxBytes: int | None
    evictedFiles: int
    evictedBytes: int
    #: The filesystem's size and free space, or why they cannot be read.
    filesystem: tuple[int, int] | str
    #: The free space kept (C{--min-free}), where the size is known.
    minFreeBytes: int | None


@dataclass(frozen=True)
class JournalFacts:
    """
    The main index's journal: its length, the bytes still in use, and the
    compactions since start.
    """

    size: int
    live: int
    compactions: int


@dataclass(frozen=True)
class Snapshot:
    """
    The mirror's facts at one moment.
    """

    #: The Simple API root of the main index.
    upstream: str
    indexes: tuple[IndexFacts, ...]
    downloads: tuple[DownloadFacts, ...]
    #: Bytes downloads have received and not yet written.
    backlog: int
    pageSlots: SlotFacts
    fileSlots: SlotFacts
    cache: CacheFacts
    journal: JournalFacts
    #: What the prefetch did (L{tailmirror.prefetch.Prefetcher.figures}).
    prefetch: dict[str, Any] | None
    #: What the policy holds (L{tailmirror.pages.PolicySources.figures}).
    policy: dict[str, Any] | None = None
    #: The fleet's bucket, and how it does (L{tailmirror.files.Fleet.figures}).
    store: dict[str, Any] | None = None

    @property
    def projectsKnown(self) -> int:
        """
        How many projects' pages the mirror keeps, over every index.
        """
        return sum(index.projectsKnown for index in self.indexes)


#: How an observer has a snapshot made when it needs one.
Snapshots = Callable[[], Snapshot]
