"""
The links of each version of a page, indexed once per change and kept for
as many pages as L{LINKS_KEPT} allows: how a cold file's upstream URL and
sha256 are found, and which files a new version of a page no longer lists.
"""

from __future__ import annotations

from typing import Any

from ..base import FileKey, StoreError
from ._bodies import BoundedCache
from ._links import FileLink, Links, indexLinks, lookUp
from ._records import Entry
from ._views import PerVersion, ReadBack

__all__ = ["LINKS_KEPT", "LinkIndex"]

#: Links of pages kept in memory at most, for finding cold files' links
#: (a few hundred bytes each).
LINKS_KEPT = 20_000

#: Pages whose links were let go remembered as having had a cold file
#: looked up since, at most.
MISSES_KEPT = 10_000


class LinkIndex:
    """
    The links of pages, each page's read back from the journal with
    C{readBack} once let go.
    """

    def __init__(self, kept: int, readBack: ReadBack[Any]) -> None:
        self._readBack = readBack
        self._made: PerVersion[Links] = PerVersion(BoundedCache(kept, len), readBack)
        #: The links kept, by page version (name, serial).
        self.cache = self._made.cache
        #: Versions of pages (name, serial) whose links were let go and one
        #: of whose files was looked up since (see L{find}).
        self._missed: dict[tuple[str, int], None] = {}

    def keep(self, entry: Entry, links: Links) -> None:
        """
        Keep the links of a page as it was fetched.
        """
        self._made.keep(entry, links)

    async def find(self, entry: Entry, key: FileKey) -> FileLink | None:
        """
        The link C{key} names on a page: from the page's links where they
        are kept, else from the journal's copy of the page, for that one
        file, the first time; indexed whole again the next.  When the pages
        asked for have more links than are kept, indexing every link of a
        big page again (thousands, tens of milliseconds) for each cold file
        asked for cost far more than reading the one link back.
        """
        version = (entry.name, entry.serial)
        if self.cache.get(version) is None and version not in self._missed:
            # The first cold file of it since: that file alone.  A second
            # has the page indexed again, for the next ones.
            self._missed[version] = None
            if len(self._missed) > MISSES_KEPT:
                del self._missed[next(iter(self._missed))]
            return lookUp(await self._readBack(entry, lambda page: indexLinks(page, key.filename)), key)
        self._missed.pop(version, None)  # kept again; if let go again, one link first again
        return lookUp(await self.of(entry), key)

    async def of(self, entry: Entry) -> Links:
        """
        The links of a page, indexed once per change.
        """
        return await self._made.of(entry, indexLinks)

    async def delisted(self, old: Entry, links: Links) -> list[FileKey]:
        """
        The files (and their metadata and provenance) that a page's
        C{old} version lists and its new C{links} do not.
        """
        try:
            before = await self.of(old)
        except StoreError:
            before = {}
        return [
            FileKey(shard, filename, metadata, provenance=provenance)
            for (shard, filename) in before.keys() - links.keys()
            for metadata, provenance in ((False, False), (True, False), (False, True))
        ]
