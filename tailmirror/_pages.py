"""
Project pages: served from the journal while fresh, refreshed from
upstream after the TTL with one conditional request per project at a time,
served stale while upstream fails.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred, DeferredSemaphore, TimeoutError, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from twisted.logger import Logger, LogLevel

from ._bodies import Body, BoundedCache, Rendered
from ._choice import Candidate, candidatesOf
from ._coalesce import Coalescer
from ._errors import NotFound, StoreError, Unavailable, UpstreamError
from ._events import IMirrorEvents, NoEvents
from ._journal import Entry, Journal
from ._layout import PYPI, FileKey, IndexLayout
from ._links import FileLink, Links, indexLinks, lookUp, projectsOf
from ._offload import SMALL_PAGE, offload
from ._policy import QUARANTINED, Policy
from ._parse import MalformedPage, ParsedPage, checkHTML, parseHTML, parseJSON, sniff
from ._render import renderProjectHTML, renderProjectJSON, renderRootHTML, renderRootJSON
from ._upstream import Fetched, Priority, Upstream

__all__ = ["ProjectPages", "Served", "RunInThread"]

log = Logger()
T = TypeVar("T")

#: A page that lacks a file asked for is asked for again, in case the file
#: is new, only if it was fetched at least this many seconds ago: a client
#: asking for files that do not exist cannot make every request go upstream.
RECHECK_AFTER = 10.0

#: Journal records are made durable this many seconds after they are
#: written, at most: all that a crash of the machine can lose.
SYNC_AFTER = 1.0

#: Links of pages kept in memory at most, for finding cold files' links
#: (a few hundred bytes each).
LINKS_KEPT = 20_000

#: Pages whose links were let go remembered as having had a cold file
#: looked up since, at most.
MISSES_KEPT = 10_000

#: Files of pages kept in memory at most, for the prefetch's choice among
#: them: it asks right after a page is fetched, and once per TTL.
CANDIDATES_KEPT = 10_000

#: Bytes of rendered pages kept in memory, at most, by default: a big page
#: keeps only its gzip bytes (L{tailmirror._bodies.KEEP_IDENTITY}), so this
#: holds some sixty pages of four thousand files each.
RENDER_CACHE_BYTES = 16 * 1024 * 1024

#: Upstream pages parsed at once, at most: the work holds the interpreter
#: lock, so more at once is no faster (cold uv over 400-file pages took
#: 2.44 s with one against 2.46 with two), and each page held parsed is
#: ten times its size in memory (peak RSS over 2.9 MB pages: 154 MB with
#: one, 170 with two).
PREPARING = 1

#: How CPU and disk work leaves the reactor thread:
#: C{runInThread(f, *args)} returns a L{Deferred} of C{f(*args)}.
RunInThread = Callable[..., Deferred[Any]]

_JSON_TYPES = ("application/vnd.pypi.simple.v1+json", "application/json")
_HTML_TYPES = ("text/html", "application/vnd.pypi.simple.v1+html")


class DamagedCopy(StoreError):
    """
    The journal's copy of a page cannot be read back.
    """


@dataclass
class Served:
    """
    A page ready to serve in the form asked for, how many seconds it stays
    fresh, and why it is stale if upstream could not refresh it.
    """

    body: Body
    freshFor: float = 0.0
    staleBecause: str | None = None
    #: Upstream's C{X-PyPI-Last-Serial} for the page, passed through.
    lastSerial: str | None = None


@dataclass
class _Prepared:
    """
    An upstream page made ready off the reactor thread.
    """

    pageJSON: bytes
    #: The form asked for by whoever caused the refresh, rendered.
    rendered: Rendering | None
    links: Links
    dropped: list[str] = field(default_factory=list)
    #: What upstream got wrong about the page, but not in it.
    notes: list[str] = field(default_factory=list)
    #: The project's status (PEP 792), if the page gives one.
    status: str | None = None
    #: The files a client may choose, where the prefetch wants them.
    candidates: tuple[Candidate, ...] | None = None


def bodyDigest(body: bytes) -> str:
    """
    What tells one upstream body from another: its sha256, in hex.  CPU
    work for a big page: run it off the reactor.
    """
    return hashlib.sha256(body).hexdigest()


#: How each form of a project page is rendered, once it is asked for.
RENDERERS: dict[str, Callable[[dict[str, Any], IndexLayout], bytes]] = {
    "html": renderProjectHTML,
    "json": renderProjectJSON,
}


@dataclass(frozen=True)
class Rendering:
    """
    One form of a page as the policy lets it be served, until when.
    """

    body: Body
    until: float = math.inf
    #: Whether the cooldown met a file without an upload time.
    unknownTimes: bool = False

    @property
    def size(self) -> int:
        return self.body.size


def renderAs(
    form: str, name: str, page: dict[str, Any], policy: Policy, now: float, layout: IndexLayout = PYPI
) -> Rendering:
    """
    One form of a project page as C{policy} has it served at C{now}, its
    files linked in C{layout}.  CPU work: run it off the reactor thread.
    """
    view = policy.view(name, page, now)
    return Rendering(Body.of(RENDERERS[form](view.page, layout)), view.until, view.unknownTimes)


def preparePage(
    name: str,
    fetched: Fetched,
    form: str | None = None,
    policy: Policy | None = None,
    now: float = 0.0,
    layout: IndexLayout = PYPI,
    candidates: bool = False,
) -> _Prepared:
    """
    Parse an upstream page, serialize it, and render the C{form} asked for
    (the other when it is first asked for), and, if asked for, list the
    C{candidates} a client chooses among.  CPU work: run it off the
    reactor thread.

    @raise MalformedPage: if upstream sent no readable project page.
    """
    mediaType, _, params = fetched.contentType.partition(";")
    mediaType = mediaType.strip()
    labelled = "json" if mediaType in _JSON_TYPES else "html" if mediaType in _HTML_TYPES else None
    if labelled is None:
        raise MalformedPage(f"content type {mediaType or 'none'!r:.80} is not a Simple API page")
    # Labelled as one form, the body says which it is.
    sniffed = sniff(fetched.body) or labelled
    notes = []
    if sniffed != labelled:
        notes.append(f"upstream labelled the page {mediaType or 'without a type'!r:.80}; its body is {sniffed.upper()}")
    parsed: ParsedPage
    if sniffed == "json":
        parsed = parseJSON(fetched.body, fetched.url, name)
    else:
        charset = params.partition("charset=")[2].strip().strip('"') or None
        checkHTML(fetched.body, charset)
        parsed = parseHTML(fetched.body, fetched.url, name, charset)
    page = parsed.page
    pageJSON = json.dumps(page, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    rendered = None if form is None else renderAs(form, name, page, policy or Policy(), now, layout)
    status = page.get("project-status")
    state = status.get("status") if isinstance(status, dict) and isinstance(status.get("status"), str) else None
    chosen = candidatesOf(page) if candidates else None
    return _Prepared(pageJSON, rendered, indexLinks(page), parsed.dropped, notes, state, chosen)


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
        renderCacheBytes: int = RENDER_CACHE_BYTES,
        policy: Policy | None = None,
        events: IMirrorEvents | None = None,
        linksKept: int = LINKS_KEPT,
        layout: IndexLayout = PYPI,
    ) -> None:
        self._journal = journal
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
        #: Seconds after an upstream failure in which copies are served at
        #: once, while one refresh at a time tries upstream.
        self.retryAfter = retryAfter
        self.policy = policy if policy is not None else Policy()
        #: Told of the files a refreshed page no longer lists.
        self.onDelisted: Callable[[list[FileKey]], object] | None = None
        self._unknownTimesTold: set[str] = set()
        #: The projects upstream says are quarantined.
        self._quarantined: set[str] = set()
        self._failed: tuple[float, str] | None = None
        self._probing = False
        self._index: dict[str, Entry] = {}
        self._syncing: IDelayedCall | None = None
        self._renders: BoundedCache[Rendering] = BoundedCache(renderCacheBytes, lambda r: r.size)
        self._links: BoundedCache[Links] = BoundedCache(linksKept, len)
        #: Versions of pages (name, serial) whose links were let go and one
        #: of whose files was looked up since (see _linkOf).
        self._missed: dict[tuple[str, int], None] = {}
        self._candidates: BoundedCache[tuple[Candidate, ...]] = BoundedCache(CANDIDATES_KEPT, len)
        self._preparing = DeferredSemaphore(PREPARING)
        self._choosing: Coalescer[tuple[Candidate, ...]] = Coalescer()
        self._indexing: Coalescer[Links] = Coalescer()
        self._refreshing: Coalescer[Entry] = Coalescer()
        #: Whose each refresh under way is.
        self._priorities: dict[str, Priority] = {}
        self._rendering: Coalescer[Rendering] = Coalescer()
        self._generation = 0
        self._root: tuple[int, Rendered] | None = None
        #: Whether a refreshed page's candidates are listed at once (for
        #: the prefetch, which asks for them next).
        self.keepCandidates = False

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
        if self._syncing is not None:
            self._syncing.cancel()
            self._syncing = None
        self._journal.sync()
        self._journal.close()

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
        rendering = self._renders.get((name, entry.serial, form))
        if rendering is None or rendering.until <= self._clock.seconds():
            return None
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
        upstream failed in the last L{retryAfter} seconds.
        """
        entry = self._index.get(name)
        if entry is not None and self._fresh(entry):
            if not revalidate or self._age(entry) < (self.revalidateFloor if floor is None else floor):
                return entry, None, False
        if entry is None:
            return await self._refreshJoined(name, form, background), None, True
        failing = self._failing()
        if failing is not None:
            self._probe(name)
            return entry, failing, True
        waiting = self._refreshJoined(name, form, background)
        if self.staleAfter is not None:
            waiting.addTimeout(self.staleAfter, self._clock)
        try:
            return await waiting, None, True
        except TimeoutError:
            reason = f"upstream did not answer within {self.staleAfter:g} s"
            # The refresh goes on: it is the probe the next clients need not wait for.
            self._failed = (self._clock.seconds(), reason)
            return entry, f"{reason}; refreshing in the background", True
        except Unavailable as e:
            return entry, e.reason, True

    def _failing(self) -> str | None:
        """
        Why upstream is taken to be failing, if it failed in the last
        L{retryAfter} seconds.
        """
        if self._failed is None:
            return None
        when, reason = self._failed
        ago = self._clock.seconds() - when
        if not 0 <= ago < self.retryAfter:
            return None
        return f"upstream failed {ago:.0f} s ago ({reason}); retrying in the background"

    def _probe(self, name: str) -> None:
        """
        Refresh a page in the background, unless a probe of upstream runs
        already: its outcome says whether upstream is back.
        """
        if self._probing:
            return
        self._probing = True

        def done(result: object) -> None:
            self._probing = False

        self._refreshJoined(name).addBoth(done)

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
        stale = entry is None or not self._fresh(entry) or (revalidate and self._age(entry) >= self.revalidateFloor)
        return stale and not self._refreshing.inFlight(name)

    async def candidates(self, name: str, background: bool = False, revalidate: bool = False) -> tuple[Candidate, ...]:
        """
        The files of a project's page a client may choose among (see
        L{tailmirror._prefetch}), from the page as kept, refreshed first if
        it is not fresh (or, if C{revalidate}, not checked with upstream
        within the revalidation floor): in the C{background} (a prefetch),
        after clients' requests to upstream, rendered in JSON (as pip and uv
        ask) for the client that comes next.

        @raise NotFound: if upstream has no such project.
        @raise Unavailable: if upstream fails and there is no copy.
        """
        entry, _, _ = await self._current(name, revalidate, form="json", background=background)
        return await self._perVersion(entry, self._candidates, self._choosing, candidatesOf)

    async def findLink(self, name: str, key: FileKey) -> FileLink | None:
        """
        The link on a project's page that C{key} names, or L{None}.  A page
        that does not list the file is asked for again once, for the file
        may be new upstream, unless upstream was asked for it just now.

        @raise NotFound: if upstream has no such project.
        @raise Unavailable: if upstream fails and there is no copy to look in.
        """
        entry, stale, asked = await self._current(name, revalidate=False)
        found = await self._linkOf(entry, key)
        if found is None and not asked and stale is None and self._age(entry) >= RECHECK_AFTER:
            entry, stale, asked = await self._current(name, revalidate=True, floor=RECHECK_AFTER)
            found = await self._linkOf(entry, key)
        return found

    async def _linkOf(self, entry: Entry, key: FileKey) -> FileLink | None:
        """
        The link C{key} names on a page: from the page's links where they
        are kept, else from the journal's copy of the page, for that one
        file, the first time; indexed whole again the next.  When the pages
        asked for have more links than are kept, indexing every link of a
        big page again (thousands, tens of milliseconds) for each cold file
        asked for cost far more than reading the one link back.
        """
        version = (entry.name, entry.serial)
        if self._links.get(version) is None and version not in self._missed:
            # The first cold file of it since: that file alone.  A second
            # has the page indexed again, for the next ones.
            self._missed[version] = None
            if len(self._missed) > MISSES_KEPT:
                del self._missed[next(iter(self._missed))]
            return lookUp(await self._fromJournal(entry, lambda page: indexLinks(page, key.filename)), key)
        self._missed.pop(version, None)  # kept again; if let go again, one link first again
        return lookUp(await self._linksOf(entry), key)

    async def _linksOf(self, entry: Entry) -> Links:
        """
        The links of a page, indexed once per change.
        """
        return await self._perVersion(entry, self._links, self._indexing, indexLinks)

    async def _perVersion(
        self,
        entry: Entry,
        cache: BoundedCache[T],
        making: Coalescer[T],
        make: Callable[[dict[str, Any]], T],
        *part: str,
    ) -> T:
        """
        What C{make} makes of a page, once per version of the page: kept in
        C{cache} from when the page was fetched, or made from the page read
        back from the journal off the reactor, once however many ask.
        """
        key = (entry.name, entry.serial, *part)
        found = cache.get(key)
        if found is None:

            async def fromJournal() -> T:
                made = await self._fromJournal(entry, make)
                cache.put(key, made)
                return made

            found = await making.run(key, fromJournal)
        return found

    async def _fromJournal(self, entry: Entry, make: Callable[[dict[str, Any]], T]) -> T:
        """
        Read a page back from the journal and make something of it, off the
        reactor.
        """

        def readAndMake() -> T:
            try:
                page = self._journal.readPage(entry)
            except (OSError, ValueError, RecursionError) as e:  # whatever the bytes there are
                raise DamagedCopy(503, f"the mirror's copy of this page is damaged: {e}") from None
            return make(page)

        try:
            return await self._preparing.run(self._run, readAndMake)  # type: ignore[no-any-return]
        except DamagedCopy as e:
            log.error("cannot read the page of {project} back: {reason}", project=entry.name, reason=e.reason[:200])
            raise DamagedCopy(503, "the mirror's copy of this page is damaged") from None

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
            # Upstream itself failed (not one page of it): see _failing.  A
            # prefetch's failure alone never has clients served stale.
            if not background.background:
                self._failed = (self._clock.seconds(), e.reason)
            raise
        except NotFound:
            self._failed = None
            if old is not None:
                self._write(self._journal.appendGone, name, self._clock.seconds())
                self._generation += 1
            raise
        self._failed = None
        now = self._clock.seconds()
        if fetched.status == 304 and old is not None:
            return self._unchanged(old, now)
        digest = await offload(self._run, len(fetched.body) <= SMALL_PAGE, bodyDigest, fetched.body)
        if old is not None and old.digest == digest:
            # An upstream without ETags answers every revalidation in full:
            # the same bytes cost no parse, no render and no record.
            return self._unchanged(old, now)
        prepared = await self._prepare(name, fetched, form, background.background)
        if old is not None and self.onDelisted is not None:
            try:
                before = await self._linksOf(old)
            except StoreError:
                before = {}
            gone = [
                FileKey(shard, filename, metadata, provenance=provenance)
                for (shard, filename) in before.keys() - prepared.links.keys()
                for metadata, provenance in ((False, False), (True, False), (False, True))
            ]
            if gone:
                self.onDelisted(gone)
        return self._record(name, fetched, now, prepared, digest, form, isNew=old is None)

    def _unchanged(self, old: Entry, now: float) -> Entry:
        """
        Upstream confirmed a page unchanged: it is fresh again.
        """
        if self._fresh(old):
            # A client asked to revalidate (pip always does): recording it
            # would grow the journal with every request.  Unrecorded, a
            # restart at worst revalidates once more.
            old.fetched = now
        else:
            self._write(self._journal.appendFresh, old, now)
        return old

    async def _prepare(self, name: str, fetched: Fetched, form: str | None, background: bool) -> _Prepared:
        """
        Parse and render an upstream page: off the reactor thread, one at a
        time (L{PREPARING}), unless it is a small JSON page (see
        L{SMALL_PAGE}).
        A page the prefetch fetched for itself (in the C{background}) is
        also listed for its choice, which it makes next; one a client waits
        for is answered first, and listed only if a prefetch asks, from the
        journal.
        """
        listed = self.keepCandidates and background
        args = (name, fetched, form, self.policy, self._clock.seconds(), self.layout, listed)
        small = len(fetched.body) <= SMALL_PAGE and fetched.contentType.partition(";")[0].strip() in _JSON_TYPES
        try:
            if small:
                prepared: _Prepared = preparePage(*args)
            else:
                prepared = await self._preparing.run(self._run, preparePage, *args)
        except MalformedPage as e:
            raise UpstreamError(502, f"upstream sent a malformed page: {e}") from None
        for why in prepared.notes:
            log.warn("the page of {project}: {reason}", project=name, reason=why)
        for why in prepared.dropped:
            log.warn("dropped a link from the page of {project}: {reason}", project=name, reason=why)
        return prepared

    def _record(
        self,
        name: str,
        fetched: Fetched,
        now: float,
        prepared: _Prepared,
        digest: str,
        form: str | None,
        isNew: bool,
    ) -> Entry:
        """
        Keep a new page: in the journal, the index and the render cache.
        """
        entry = self._write(
            self._journal.appendPage,
            name,
            fetched.etag,
            now,
            prepared.pageJSON,
            digest,
            prepared.status,
            fetched.lastSerial,
        )
        if isNew:
            self._generation += 1
        if prepared.rendered is not None:
            self._renders.put((name, entry.serial, form), prepared.rendered)
        self._links.put((name, entry.serial), prepared.links)
        if prepared.candidates is not None:
            self._candidates.put((name, entry.serial), prepared.candidates)
        if entry.status == QUARANTINED:
            self._quarantined.add(name)
        else:
            self._quarantined.discard(name)
        return entry

    def _write(self, append: Callable[..., T], *args: Any) -> T:
        """
        Append to the journal, turning a failed write into a clear error;
        have the record made durable soon, and the journal compacted when
        dead records dominate it.
        """
        try:
            result = append(*args)
        except OSError as e:
            log.error("cannot write the journal: {reason}", reason=str(e))
            raise StoreError.cannotWrite(e) from None
        if self._syncing is None:
            self._syncing = self._clock.callLater(SYNC_AFTER, self._sync)
        if self._journal.wantsCompaction():
            self.compact()
        return result

    def _sync(self) -> Deferred[None]:
        """
        Make the journal's latest records durable, off the reactor.
        """
        self._syncing = None

        def failed(failure: Failure) -> None:
            log.failure("cannot sync the journal", failure)

        return self._run(self._journal.sync).addErrback(failed)

    def compact(self) -> Deferred[None]:
        """
        Compact the journal, unless a compaction runs already; log what came
        of it.
        """
        if self._journal.compacting:
            log.info("journal compaction asked for; one is running already")
            return succeed(None)
        log.info(
            "compacting the journal: {size} bytes, {live} of them live",
            size=self._journal.size,
            live=self._journal.live,
        )

        def done(sizes: tuple[int, int]) -> None:
            log.info("journal compacted from {before} to {bytes} bytes", before=sizes[0], bytes=sizes[1])

        def failed(failure: Failure) -> None:
            log.error(
                "journal compaction failed, the journal is as it was: {reason}",
                reason=failure.getErrorMessage(),
            )

        d = Deferred.fromCoroutine(self._journal.compact(self._run))
        return d.addCallbacks(done, failed)

    async def _rendered(self, entry: Entry, form: str) -> Body:
        """
        One form of a page as the policy has it served now, rendered once
        per change of the page or of what the policy lets through, when
        first asked for.
        """
        now = self._clock.seconds()
        key = (entry.name, entry.serial, form)
        kept = self._renders.get(key)
        if kept is not None and kept.until <= now:
            self._renders.discard(key)  # a file came out of its cooldown

        def render(page: dict[str, Any]) -> Rendering:
            return renderAs(form, entry.name, page, self.policy, now, self.layout)

        rendering = await self._perVersion(entry, self._renders, self._rendering, render, form)
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
        Why a file may not be served at all, whatever the tree holds: its
        project is quarantined upstream (PEP 792).
        """
        if not self._quarantined:
            return None  # the warm path pays nothing while none is
        for name in projectsOf(key.filename):
            if name in self._quarantined:
                return 404, f"project {name} is quarantined upstream; its files are not served"
        return None

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
