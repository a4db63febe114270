"""
What is made of each version of a page, once however many ask: its
renderings, its links' index, and what a wing above asks for (the
prefetch's candidates), kept in a bounded cache from when the page was
fetched, or made again from the page read back from the journal.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Generic, TypeVar

from ..base import Coalescer
from ._bodies import BoundedCache
from ._records import Entry

__all__ = ["PageView", "PerVersion"]

T = TypeVar("T")

#: How a page is read back from the journal and made something of, off
#: the reactor.
ReadBack = Callable[[Entry, Callable[[dict[str, Any]], T]], Awaitable[T]]

#: The entry of a page by its name, refreshed first where it is due:
#: C{current(name, revalidate, form, background)}.
Current = Callable[[str, bool, "str | None", bool], Awaitable[Entry]]


class PerVersion(Generic[T]):
    """
    What is made of each version of a page (by its name and serial, and
    any C{part}), kept in C{cache} and made at most once at a time.
    """

    def __init__(self, cache: BoundedCache[T], readBack: ReadBack[T]) -> None:
        self.cache = cache
        self._readBack = readBack
        self._making: Coalescer[T] = Coalescer()

    def keep(self, entry: Entry, made: T, *part: str) -> None:
        """
        Keep what was made of a page as it was fetched.
        """
        self.cache.put((entry.name, entry.serial, *part), made)

    async def of(self, entry: Entry, make: Callable[[dict[str, Any]], T], *part: str) -> T:
        """
        What C{make} makes of a page: as kept, or made from the page read
        back from the journal, once however many ask.
        """
        key = (entry.name, entry.serial, *part)
        found = self.cache.get(key)
        if found is None:

            async def fromJournal() -> T:
                made = await self._readBack(entry, make)
                self.cache.put(key, made)
                return made

            found = await self._making.run(key, fromJournal)
        return found


class PageView(Generic[T]):
    """
    What a wing above the pages makes of each project page (the prefetch,
    its candidates), registered with C{ProjectPages.addView}: made as a
    page it fetched for itself is prepared, else when first asked for.
    """

    def __init__(self, current: Current, make: Callable[[dict[str, Any]], T], made: PerVersion[T]) -> None:
        self._current = current
        self.make = make
        self.made = made

    async def of(self, name: str, background: bool = False, revalidate: bool = False) -> T:
        """
        What is made of a project's page as kept, refreshed first if it is
        not fresh (or, if C{revalidate}, not checked with upstream within
        the revalidation floor): in the C{background} (a prefetch), after
        clients' requests to upstream, rendered in JSON (as pip and uv ask)
        for the client that comes next.

        @raise NotFound: if upstream has no such project.
        @raise Unavailable: if upstream fails and there is no copy.
        """
        entry = await self._current(name, revalidate, "json", background)
        return await self.made.of(entry, self.make)
