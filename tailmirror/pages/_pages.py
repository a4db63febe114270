"""
Project pages: served from the journal while fresh, refreshed from
upstream after the TTL with one conditional request per project at a time,
served stale while upstream fails.
"""

from __future__ import annotations

from typing import Any, Callable, Sized, TypeVar

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

from ..base import (
    PYPI,
    SMALL_PAGE,
    Coalescer,
    FileKey,
    IMirrorEvents,
    IndexLayout,
    NoEvents,
    NotFound,
    RunInThread,
    Unavailable,
    UpstreamError,
    offload,
)
from ..upstream import Fetched, Priority, Upstream
from ._bodies import Body, BoundedCache, Rendered, Served
from ._health import UpstreamHealth
from ._journal import Journal
from ._keeper import JournalKeeper
from ._linkindex import LINKS_KEPT, LinkIndex
from ._links import FileLink, projectsOf
from ._missing import Missing
from ._policy import QUARANTINED, Policy
from ._prepare import DamagedCopy, Prepared, Rendering, Workshop, bodyDigest, renderAs
from ._records import Entry
from ._render import renderRootHTML, renderRootJSON
from ._views import PageView, PerVersion

__all__ = ["ProjectPages"]

log = Logger()
#: What a view makes of a page: a list of items, kept in a cache of items.
S = TypeVar("S", bound=Sized)

#: A page that lacks a file asked for is asked for again, in case the file
#: is new, only if it was fetched at least this many seconds ago: a client
#: asking for files that do not exist cannot make every request go upstream.
RECHECK_AFTER = 10.0

#: Bytes of rendered pages kept in memory, at most, by default: a big page
#: keeps only its gzip bytes (L{tailmirror.pages._bodies.KEEP_IDENTITY}), so this
#: holds some sixty pages of four thousand files each.
RENDER_CACHE_BYTES = 16 * 1024 * 1024




class ProjectPages:
    """
    The mirror's knowledge of project pages.
    """

    def __init__(
        self,
        journal: Journal,
        upstream: Upstream,
        clock: IReactorTime,
        runInThread: RunInThread,
        *,
        ttl: float,
        revalidateFloor: float = 0.0,
        staleAfter: float | None = None,
        retryAfter: float = 0.0,
        notFoundFor: float = 0.0,
        renderCacheBytes: int = RENDER_CACHE_BYTES,
        policy: Policy | None = None,
        events: IMirrorEvents | None = None,
        linksKept: int = LINKS_KEPT,
        layout: IndexLayout = PYPI,
        writeInThread: RunInThread | None = None,
    ) -> None:
        self._journal = journal
        #: Records are written with C{writeInThread} (a thread of their own,
        #: so that none waits behind the pool's other work), or C{runInThread}.
        self._keeper = JournalKeeper(journal, clock, runInThread, writeInThread)
        self._workshop = Workshop(journal, runInThread)
        #: The index whose pages these are: where their files are linked.
        self.layout = layout
        self._events = events if events is not None else NoEvents()
        self._upstream = upstream
        self._clock = clock
        self._run = runInThread
        self.ttl = ttl
        #: A client's revalidation of a page checked less than this many
        #: seconds ago gets the page as it is.
        self.revalidateFloor = revalidateFloor
        #: Seconds a client with a copy to fall back on waits for upstream
        #: (L{None}: as long as upstream takes).
        self.staleAfter = staleAfter
        #: The projects upstream said it has not, for C{notFoundFor} seconds.
        self._missing = Missing(clock, notFoundFor)
        self.policy = policy if policy is not None else Policy()
        #: Told of the files a refreshed page no longer lists.
        self.onDelisted: Callable[[list[FileKey]], object] | None = None
        self._unknownTimesTold: set[str] = set()
        #: The projects upstream says are quarantined.
        self._quarantined: set[str] = set()
        self._health = UpstreamHealth(clock, retryAfter)
        self._index: dict[str, Entry] = {}
        self._renders: PerVersion[Rendering] = PerVersion(
            BoundedCache(renderCacheBytes, lambda r: r.size), self._workshop.readBack
        )
        self._links = LinkIndex(linksKept, self._workshop.readBack)
        #: What the wings above make of pages (see L{addView}).
        self._views: list[PageView[Any]] = []
        self._refreshing: Coalescer[Entry] = Coalescer()
        #: Whose each refresh under way is.
        self._priorities: dict[str, Priority] = {}
        self._generation = 0
        self._root: tuple[int, Rendered] | None = None

    def addView(self, make: Callable[[dict[str, Any]], S], kept: int) -> PageView[S]:
        """
        Have what C{make} makes of each page (a list of at most C{kept}
        items, kept for as many pages as that allows) made as a page
        fetched in the background is prepared, for whoever fetched it asks
        for it next (the prefetch); else made when first asked for, from
        the journal's copy.  CPU work: C{make} runs off the reactor.
        """
        made: PerVersion[S] = PerVersion(BoundedCache(kept, len), self._workshop.readBack)
        view = PageView(self.current, make, made)
        self._views.append(view)
        return view

    def open(self) -> None:
        """
        Replay the journal.
        """
        self._index = self._journal.open()
        self._generation += 1
        self._quarantined = {name for name, entry in self._index.items() if entry.status == QUARANTINED}
        log.info("journal replayed: {projects} projects known", projects=len(self._index))

    def close(self) -> None:
        """
        Close the journal, durably.
        """
        self._keeper.close()

    def known(self) -> list[str]:
        """
        The normalized names of the projects this mirror knows.
        """
        return sorted(self._index)

    def _age(self, entry: Entry) -> float:
        return self._clock.seconds() - entry.fetched

    def _fresh(self, entry: Entry) -> bool:
        return 0 <= self._age(entry) < self.ttl

    def wanted(self, name: str, agent: bytes | None, revalidate: bool = False) -> None:
        """
        A client asks for a page (by its normalized name), checked with
        upstream if C{revalidate}: tell the events.
        """
        self._events.pageWanted(
            self.layout.name, name, None if agent is None else agent.decode("latin-1"), revalidate
        )

    def cached(self, name: str, form: str, revalidate: bool = False) -> Served | None:
        """
        A page that is fresh and rendered already in C{form}, and checked
        upstream within the revalidation floor if C{revalidate} asks for
        that, without waiting for anything; L{None} if it is not.
        """
        entry = self._index.get(name)
        if entry is None or not self._fresh(entry):
            return None
        if revalidate and self._age(entry) >= self.revalidateFloor:
            return None
        rendering = self._renders.cache.get((name, entry.serial, form))
        if rendering is None or rendering.until <= self._clock.seconds():
            return None
        if rendering.generation != self.policy.generation:
            return None  # the policy changed since
        self._events.pageServed(name, "fresh")
        return Served(rendering.body, self.ttl - self._age(entry), lastSerial=entry.lastSerial)

    async def get(self, name: str, revalidate: bool = False, form: str = "json") -> Served:
        """
        A project page, by normalized name, in C{form} (C{"html"} or
        C{"json"}).

        @param revalidate: ask upstream even if the page is fresh.
        @raise NotFound: if upstream has no such project.
        @raise Unavailable: if upstream fails and there is no copy to serve.
        """
        refusal = self.policy.projectRefusal(name)
        if refusal is not None:
            self._events.policyRefused("allow-only", name, "")
            raise Unavailable(404, refusal)
        before = self._index.get(name)
        try:
            entry, stale, asked = await self._current(name, revalidate, form=form)
        except Unavailable:
            self._events.pageServed(name, "failed")
            raise
        try:
            body = await self._rendered(entry, form)
        except DamagedCopy:
            if before is None:
                raise
            # The copy cannot be read back: fetch the page afresh instead.
            self._journal.forget(entry)
            self._generation += 1
            return await self.get(name, revalidate, form)
        freshFor = 0.0 if stale else max(0.0, self.ttl - self._age(entry))
        if stale is not None:
            outcome = "stale"
        elif not asked:
            outcome = "fresh"
        else:
            outcome = "revalidated" if entry is before else "refreshed"
        self._events.pageServed(name, outcome)
        return Served(body, freshFor, stale, entry.lastSerial)

    async def _current(
        self,
        name: str,
        revalidate: bool,
        floor: float | None = None,
        form: str | None = None,
        background: bool = False,
    ) -> tuple[Entry, str | None, bool]:
        """
        The journal entry of a page, refreshed from upstream if it is not
        fresh, or if C{revalidate} asks for it and upstream was last asked
        at least C{floor} seconds ago (by default the revalidation floor):
        with why it is stale, if upstream failed or did not answer in time,
        and whether upstream was asked; a refresh it starts renders
        C{form} at once, asking upstream after any client's request if it is
        for the C{background} (a prefetch).  A client with a copy to fall back
        on never waits longer than L{staleAfter}, and not at all while
        upstream failed in the last C{retryAfter} seconds (L{UpstreamHealth}).
        """
        entry = self._index.get(name)
        if entry is not None and self._fresh(entry):
            if not revalidate or self._age(entry) < (self.revalidateFloor if floor is None else floor):
                return entry, None, False
        if entry is None:
            if name in self._missing:
                raise NotFound()
            return await self._refreshJoined(name, form, background), None, True
        failing = self._health.failing()
        if failing is not None:
            self._health.probe(lambda: self._refreshJoined(name))
            return entry, failing, True
        waiting = self._refreshJoined(name, form, background)
        if self.staleAfter is not None:
            waiting.addTimeout(self.staleAfter, self._clock)
        try:
            return await waiting, None, True
        except TimeoutError:
            reason = f"upstream did not answer within {self.staleAfter:g} s"
            # The refresh goes on: it is the probe the next clients need not wait for.
            self._health.failed(reason)
            return entry, f"{reason}; refreshing in the background", True
        except Unavailable as e:
            return entry, e.reason, True

    def _refreshJoined(self, name: str, form: str | None = None, background: bool = False) -> Deferred[Entry]:
        """
        Join the refresh of a page under way, or start one (rendering
        C{form} at once): a client that joins a prefetch's has it ask
        upstream as a client's from then on.
        """
        running = self._priorities.get(name)
        if running is not None:
            running.raiseTo(background)

        async def refresh() -> Entry:
            priority = self._priorities[name] = Priority(background)
            try:
                return await self._refresh(name, form, priority)
            finally:
                del self._priorities[name]

        return self._refreshing.run(name, refresh)

    def wouldAsk(self, name: str, revalidate: bool = False) -> bool:
        """
        Whether asking for a page now (checked with upstream if
        C{revalidate}) would ask upstream, rather than serve the page kept
        or join a refresh under way.
        """
        entry = self._index.get(name)
        if entry is None and name in self._missing:
            return False
        stale = entry is None or not self._fresh(entry) or (revalidate and self._age(entry) >= self.revalidateFloor)
        return stale and not self._refreshing.inFlight(name)

    async def current(self, name: str, revalidate: bool, form: str | None, background: bool) -> Entry:
        """
        The journal entry of a page, refreshed first if it is not fresh, or
        not checked with upstream within the floor if C{revalidate} (see
        L{_current}).
        """
        entry, _, _ = await self._current(name, revalidate, form=form, background=background)
        return entry

    async def pageNow(self, name: str) -> tuple[dict[str, Any], str | None]:
        """A page as upstream gave it (refreshed if not fresh), and its serial."""
        entry, _, _ = await self._current(name, revalidate=False)
        page: dict[str, Any] = await self._workshop.readBack(entry, lambda page: page)
        return page, entry.lastSerial

    async def findLink(self, name: str, key: FileKey) -> FileLink | None:
        """
        The link on a project's page that C{key} names, or L{None}.  A page
        that does not list the file is asked for again once, for the file
        may be new upstream, unless upstream was asked for it just now.

        @raise NotFound: if upstream has no such project.
        @raise Unavailable: if upstream fails and there is no copy to look in.
        """
        entry, stale, asked = await self._current(name, revalidate=False)
        found = await self._links.find(entry, key)
        if found is None and not asked and stale is None and self._age(entry) >= RECHECK_AFTER:
            entry, stale, asked = await self._current(name, revalidate=True, floor=RECHECK_AFTER)
            found = await self._links.find(entry, key)
        return found

    async def _refresh(self, name: str, form: str | None, background: Priority) -> Entry:
        """
        Ask upstream for a page, and record what it says; tell what came of
        it, once for all who wait.
        """
        old = self._index.get(name)
        try:
            entry = await self._refreshFrom(name, old, form, background)
        except NotFound:
            self._events.pageRefreshed(name, "missing", None)
            raise
        except Unavailable as e:
            self._events.pageRefreshed(name, "failed" if old is None else "stale", e.reason)
            raise
        if entry is old:
            outcome = "unchanged"
        else:
            outcome = "new" if old is None else "changed"
        self._events.pageRefreshed(name, outcome, None)
        return entry

    async def _refreshFrom(self, name: str, old: Entry | None, form: str | None, background: Priority) -> Entry:
        try:
            fetched = await self._upstream.fetchPage(name, old.etag if old else None, background)
        except UpstreamError as e:
            # Upstream itself failed (not one page of it).  A prefetch's
            # failure alone never has clients served stale.
            if not background.background:
                self._health.failed(e.reason)
            raise
        except NotFound:
            self._health.answered()
            self._missing.said(name)
            if old is not None:
                await self._keeper.write(self._journal.goneRecord(name, self._clock.seconds()))
                self._generation += 1
            raise
        self._health.answered()
        self._missing.found(name)
        now = self._clock.seconds()
        if fetched.status == 304 and old is not None:
            return await self._unchanged(old, now)
        digest = await offload(self._run, len(fetched.body) <= SMALL_PAGE, bodyDigest, fetched.body)
        if old is not None and old.digest == digest:
            # An upstream without ETags answers every revalidation in full:
            # the same bytes cost no parse, no render and no record.
            return await self._unchanged(old, now)
        # A page the prefetch fetched for itself (in the background) is made
        # into each view (addView), which it asks for next; one a client
        # waits for is answered first, and made into a view only if a
        # prefetch asks, from the journal.
        views = tuple(view.make for view in self._views) if background.background else ()
        prepared = await self._workshop.prepare(
            name, fetched, form, self.policy, self._clock.seconds(), self.layout, views
        )
        if old is not None and self.onDelisted is not None:
            gone = await self._links.delisted(old, prepared.links)
            if gone:
                self.onDelisted(gone)
        return await self._record(name, fetched, now, prepared, digest, form, isNew=old is None)

    async def _unchanged(self, old: Entry, now: float) -> Entry:
        """
        Upstream confirmed a page unchanged: it is fresh again.
        """
        if self._fresh(old):
            # A client asked to revalidate (pip always does): recording it
            # would grow the journal with every request.  Unrecorded, a
            # restart at worst revalidates once more.
            old.fetched = now
        else:
            await self._keeper.write(self._journal.freshRecord(old, now))
        return old

    async def _record(
        self,
        name: str,
        fetched: Fetched,
        now: float,
        prepared: Prepared,
        digest: str,
        form: str | None,
        isNew: bool,
    ) -> Entry:
        """
        Keep a new page: in the journal, the index and the render cache.
        """
        entry = await self._keeper.write(
            self._journal.pageRecord(
                name, fetched.etag, now, prepared.pageJSON, digest, prepared.status, fetched.lastSerial
            )
        )
        if isNew:
            self._generation += 1
        if prepared.rendered is not None and form is not None:
            self._renders.keep(entry, prepared.rendered, form)
        self._links.keep(entry, prepared.links)
        for view, made in zip(self._views, prepared.made):
            view.made.keep(entry, made)
        if entry.status == QUARANTINED:
            self._quarantined.add(name)
        else:
            self._quarantined.discard(name)
        return entry

    def compact(self) -> Deferred[None]:
        """Compact the journal, unless a compaction runs already."""
        return self._keeper.compact()

    async def _rendered(self, entry: Entry, form: str) -> Body:
        """
        One form of a page as the policy has it served now, rendered once
        per change of the page or of what the policy lets through, when
        first asked for.
        """
        now = self._clock.seconds()
        key = (entry.name, entry.serial, form)
        kept = self._renders.cache.get(key)
        if kept is not None and (kept.until <= now or kept.generation != self.policy.generation):
            # A file came out of its cooldown, or the policy changed.
            self._renders.cache.discard(key)

        def render(page: dict[str, Any]) -> Rendering:
            return renderAs(form, entry.name, page, self.policy, now, self.layout)

        rendering = await self._renders.of(entry, render, form)
        if rendering.unknownTimes and entry.name not in self._unknownTimesTold:
            self._unknownTimesTold.add(entry.name)
            allow = self.policy.allowUnknown
            log.emit(
                LogLevel.info if allow else LogLevel.warn,
                "{project} has files without an upload time; --cooldown-unknown {choice} {effect} them",
                project=entry.name,
                choice="allow" if allow else "deny",
                effect="serves" if allow else "hides",
            )
        return rendering.body

    def refusal(self, key: FileKey) -> tuple[int, str] | None:
        """
        Why a file may not be served at all, whatever the tree holds: its project
        is quarantined upstream (PEP 792), or not on the allow-only list.
        """
        if not self._quarantined and not self.policy.rules.allowOnly:
            return None  # the warm path pays nothing while neither is
        return self.policy.filesRefusal(projectsOf(key.filename), self._quarantined)

    async def root(self) -> Rendered:
        """
        Both forms of the root index, rendered once per change of the list.
        """
        if self._root is None or self._root[0] != self._generation:
            generation, names = self._generation, self.known()

            def render() -> Rendered:
                return Rendered(Body.of(renderRootHTML(names)), Body.of(renderRootJSON(names)))

            self._root = (generation, await self._run(render))
        return self._root[1]
