"""
Dependency-aware prefetch: when a client asks for a project page, the
mirror predicts the file that client will pick (the newest release whose
C{Requires-Python} and wheel tags fit the client, as its C{User-Agent}
describes it, yanked files left out, the policy's cooldown honoured),
fetches that file's core metadata, reads its C{Requires-Dist} (markers
evaluated for the client, with the extras asked for), and fetches those
projects' pages and metadata in turn, down to C{--prefetch-depth}, with
C{--prefetch-requests} upstream requests at once at most.  With
C{--prefetch files} it fetches the predicted files too.

A client that resolves one requirement at a time (pip) then downloads the
files it picked one at a time too, each a trip upstream for a cold
mirror.  The mirror remembers, for each client (its index, host and
C{User-Agent}), the file of each project whose core metadata it asked for
last; when the client asks for one of those files itself, its resolution
is over, and the mirror downloads all the others it picked, in the order
it picked them, ahead of it.  A run that only resolves (a lock file,
C{--dry-run}) asks for no file, and costs nothing more.

A prefetch never delays a client: its requests wait for a slot after
every client's (L{tailmirror.upstream.Slots}), and a client asking for a
page or file being prefetched joins that fetch, as clients join each
other's.  What a prefetch fetched from upstream and no client asked for
within the page TTL is counted as wasted: in the log, on C{/+status} and
in C{/+metrics}.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Sequence

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ..base import SMALL_FILE, FileKey, IMirrorEvents, NoEvents, NotFound, RunInThread, StoreError, Unavailable, offload
from ._choice import Candidate, candidatesOf, choose, requirementsOf
from ._clients import Client, clientOf
from ._picks import Picks

if TYPE_CHECKING:
    from ..files import FileStore, OpenFile
    from ..pages import PageView, ProjectPages

__all__ = ["KINDS", "MODES", "Prefetcher"]

log = Logger()

#: What C{--prefetch} may be: nothing; pages and core metadata; those and
#: the predicted files.
MODES = ("off", "metadata", "files")
#: What is counted, by kind of thing prefetched.
KINDS = ("page", "metadata", "file")
#: The largest core metadata file read for its requirements.
METADATA_MAX = 4 * 1024 * 1024
#: Seconds between counts of what was prefetched and never asked for.
SWEEP_EVERY = 60.0
#: A requirement of any version, and no extras.
ANY = SpecifierSet()
NONE: frozenset[str] = frozenset()
#: The user agents of the mirror's own tools, which install nothing.
OWN_TOOLS = ("tailmirror-",)
#: Kinds of client counted, at most.
CLIENTS_MAX = 50
#: What the prefetch remembers having done, at most (oldest forgotten).
REMEMBERED_MAX = 100_000
#: Files of pages kept in memory at most, for the prefetch's choice among
#: them: it asks right after a page is fetched, and once per TTL.
CANDIDATES_KEPT = 10_000


class _Walk(NamedTuple):
    """
    One client's tree, walked in an index: its pages checked with
    upstream on the way if C{revalidate}.
    """

    indexName: str
    pages: "ProjectPages"
    candidates: "PageView[tuple[Candidate, ...]]"
    client: Client
    revalidate: bool


def _readMetadata(path: str) -> bytes | None:
    """
    A core metadata file of the tree, if it is there.  Disk work: off the
    reactor.
    """
    try:
        with open(path, "rb") as f:
            return f.read(METADATA_MAX)
    except FileNotFoundError:
        return None


def _readBack(copy: "OpenFile") -> bytes:
    """
    A core metadata file just downloaded, read from its download's copy
    (closed after), which may not be in the tree yet.  Disk work: off the
    reactor.
    """
    try:
        return os.pread(copy.fd, min(copy.size, METADATA_MAX), 0)
    finally:
        copy.close()


@implementer(IMirrorEvents)
class Prefetcher(NoEvents):
    """
    Prefetches what clients will ask for next, told by the mirror's events
    what they asked for.
    """

    def __init__(
        self,
        indexes: Mapping[str, "ProjectPages"],
        files: "FileStore",
        clock: IReactorTime,
        runInThread: RunInThread,
        *,
        mode: str = "metadata",
        depth: int = 4,
        requests: int = 8,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"--prefetch is one of {', '.join(MODES)}, not {mode!r}")
        self._indexes = indexes
        self._files = files
        self._clock = clock
        self._run = runInThread
        self.mode = mode
        #: The files each index's pages offer, to choose among: made as a
        #: page the prefetch fetched is prepared.
        self._candidates = {
            name: pages.addView(candidatesOf, CANDIDATES_KEPT) for name, pages in indexes.items()
        } if mode != "off" else {}
        self.depth = depth
        #: Upstream requests of the prefetch at once, at most.
        self.slots = DeferredSemaphore(max(1, requests))
        #: When each (index, client, project, extras) was last prefetched,
        #: and last prefetched with its pages checked with upstream.
        self._done: dict[tuple[Any, ...], tuple[float, float]] = {}
        #: What a prefetch fetched from upstream that no client has asked
        #: for yet: (kind, index, ...) -> when.
        self._pending: dict[tuple[Any, ...], float] = {}
        #: By kind: fetched from upstream by the prefetch, then asked for by
        #: a client, and never asked for within the TTL.
        self.prefetched: Counter[str] = Counter()
        self.used: Counter[str] = Counter()
        self.wasted: Counter[str] = Counter()
        #: Prefetches of projects under way.
        self.running = 0
        #: The clients seen asking for pages, by what they are.
        self.clients: Counter[str] = Counter()
        #: What each client resolving one requirement at a time picked.
        self._picks = Picks(clock)
        self._sweeping: IDelayedCall | None = None

    @property
    def pending(self) -> int:
        """
        Things prefetched that no client has asked for yet (within the TTL).
        """
        return len(self._pending)

    def stop(self) -> None:
        """
        Stop counting waste.
        """
        if self._sweeping is not None and self._sweeping.active():
            self._sweeping.cancel()
        self._sweeping = None

    # Events

    def pageWanted(self, index: str, project: str, agent: str | None, revalidate: bool) -> None:
        """
        A client asked for a project page: prefetch what it will ask next.
        A client that asks for pages checked with upstream (pip does, each
        time) has the pages of its tree checked ahead of it, side by side,
        once per revalidation floor: else its warm install would wait for
        each check in turn.
        """
        self._asked(("page", index, project))
        if self.mode == "off" or index not in self._indexes:
            return
        if agent is not None and agent.startswith(OWN_TOOLS):
            return  # tailmirror warm asks for everything it wants itself
        client = clientOf(agent)
        if client.label in self.clients or len(self.clients) < CLIENTS_MAX:
            self.clients[client.label] += 1
        if client.parallel:
            # It asks for each level's pages and metadata itself as soon as
            # the prefetch would: walking its tree too only took the CPU
            # its own requests need (with 400-file pages, a cold install
            # cost the mirror 1.78 s of CPU against 1.39 without, and took
            # 2.52 s against 2.18).  The files it will want, it asks for
            # last: with --prefetch files, each is fetched as soon as it
            # asks for that file's metadata (fileWanted).
            return
        # Where every request is checked (a floor of 0), checks ahead would
        # only be made again.
        pages = self._indexes[index]
        walk = _Walk(index, pages, self._candidates[index], client, revalidate and pages.revalidateFloor > 0)
        if not self._due(walk, project, ANY, NONE):
            return  # the warm path: this client's tree was prefetched within the TTL (or checked within the floor)
        d = Deferred.fromCoroutine(self._visit(walk, project, ANY, NONE, 0))
        d.addErrback(lambda f: log.failure("prefetch for {project} failed", f, project=project))

    def fileWanted(self, key: FileKey, agent: str | None, peer: str | None) -> None:
        """
        A client asked for a file: if it resolves one requirement at a time,
        remember the file of each project whose metadata it asks for; and
        once it asks for one of those files itself, download the others.
        """
        if self.mode == "off" or key.provenance or key.index not in self._indexes:
            return
        if agent is None or agent.startswith(OWN_TOOLS):
            return
        if clientOf(agent).parallel:
            # It asks for all its files at once itself, once it has
            # resolved; with --prefetch files, each is fetched as soon as it
            # asks for that file's metadata, which names the file it picked.
            if key.metadata and self.mode == "files":
                self._fetchFile(FileKey(key.shard, key.filename, False, key.index))
            return
        who = (key.index, peer, agent)
        if key.metadata:
            self._picks.picked(who, key)
            self._sweepLater()
            return
        for other in self._picks.resolved(who, key):
            self._fetchFile(other)

    def fileServed(self, key: FileKey, size: int, cached: bool) -> None:
        """
        A client asked for a file: if the prefetch fetched it, it was of use.
        """
        if key.provenance:
            return
        self._asked(("metadata" if key.metadata else "file", key.index, key.shard, key.filename))

    # Accounting

    def _asked(self, what: tuple[Any, ...]) -> None:
        if self._pending.pop(what, None) is not None:
            self.used[what[0]] += 1

    def _fetching(self, what: tuple[Any, ...]) -> None:
        """
        The prefetch asks upstream for C{what} (a client asking for it from
        now on, even while it comes, was spared a trip).
        """
        self.prefetched[what[0]] += 1
        self._pending[what] = self._clock.seconds()
        if len(self._pending) > REMEMBERED_MAX:
            oldest = next(iter(self._pending))
            del self._pending[oldest]
            self.wasted[oldest[0]] += 1
        self._sweepLater()

    def _sweepLater(self) -> None:
        if self._sweeping is None:
            self._sweeping = self._clock.callLater(SWEEP_EVERY, self.sweep)

    def _failed(self, what: tuple[Any, ...]) -> None:
        """
        Upstream did not send C{what} after all: nothing was prefetched.
        """
        self.prefetched[what[0]] -= 1
        if self._pending.pop(what, None) is None:
            self.used[what[0]] -= 1

    def sweep(self) -> None:
        """
        Count as wasted what was prefetched and not asked for within its
        index's TTL; forget what was prefetched for whom after as long.
        """
        self._sweeping = None
        now = self._clock.seconds()
        expired: Counter[str] = Counter()
        for what, when in list(self._pending.items()):
            pages = self._indexes.get(what[1])
            if pages is None or now - when >= pages.ttl:
                del self._pending[what]
                expired[what[0]] += 1
        self.wasted.update(expired)
        for done, (when, _) in list(self._done.items()):
            pages = self._indexes.get(done[0])
            if pages is None or now - when >= pages.ttl:
                del self._done[done]
        self._picks.sweep(lambda index, when: index not in self._indexes or now - when >= self._indexes[index].ttl)
        if expired:
            log.info(
                "prefetch: {wasted} fetched and not asked for within the TTL ({detail}); "
                "{used} of {prefetched} prefetched since start were asked for",
                wasted=sum(expired.values()),
                detail=", ".join(f"{n} {kind}" for kind, n in sorted(expired.items())),
                used=sum(self.used.values()),
                prefetched=sum(self.prefetched.values()),
            )
        if self._pending or self._done or self._picks:
            self._sweeping = self._clock.callLater(SWEEP_EVERY, self.sweep)

    def figures(self) -> dict[str, Any]:
        """
        What the prefetch did, for the status page and the metrics.
        """
        return {
            "mode": self.mode,
            "depth": self.depth,
            "requests": self.slots.limit,
            "running": self.running,
            "pending": self.pending,
            "prefetched": {kind: self.prefetched[kind] for kind in KINDS},
            "used": {kind: self.used[kind] for kind in KINDS},
            "wasted": {kind: self.wasted[kind] for kind in KINDS},
            "clients": dict(self.clients.most_common()),
        }

    # The work

    def _due(self, walk: _Walk, name: str, specifier: SpecifierSet, extras: frozenset[str]) -> bool:
        """
        Whether a project is to be prefetched for a client now (not within
        the TTL already, nor, to check its pages with upstream, within the
        revalidation floor), marking it so if it is.
        """
        now = self._clock.seconds()
        done = (walk.indexName, walk.client.key, name, extras, str(specifier) if specifier is not ANY else "")
        walked, checked = self._done.get(done, (-math.inf, -math.inf))
        if walk.revalidate:
            if now - checked < walk.pages.revalidateFloor:
                return False
        elif now - walked < walk.pages.ttl:
            return False
        self._done[done] = (now, now if walk.revalidate else checked)
        if len(self._done) > REMEMBERED_MAX:
            del self._done[next(iter(self._done))]
        return True

    async def _visit(
        self, walk: _Walk, name: str, specifier: SpecifierSet, extras: frozenset[str], depth: int
    ) -> None:
        """
        Prefetch what a client installing C{name} asks for next: its
        page (unless the client asked for it itself), the chosen file's
        metadata, and so on for its requirements, down to L{depth}.
        """
        self.running += 1
        try:
            requirements = await self._one(walk, name, specifier, extras, depth)
        except (NotFound, Unavailable, StoreError) as e:
            log.debug("prefetch stops at {project}: {reason}", project=name, reason=getattr(e, "reason", str(e)))
            return
        finally:
            self.running -= 1
        if not requirements:
            return
        below = []
        for requirement in requirements:
            child = canonicalize_name(requirement.name)
            asked = frozenset(requirement.extras)
            if child == name or not self._due(walk, child, requirement.specifier, asked):
                continue
            below.append(Deferred.fromCoroutine(self._visit(walk, child, requirement.specifier, asked, depth + 1)))
        for ok, result in await DeferredList(below, consumeErrors=True):
            if not ok:
                log.failure("prefetch failed below {project}", result, project=name)

    async def _one(
        self, walk: _Walk, name: str, specifier: SpecifierSet, extras: frozenset[str], depth: int
    ) -> Sequence[Requirement]:
        """
        One project of a prefetch: its page (checked with upstream if the
        walk does), its chosen file's metadata (and the file, with
        C{files}); the requirements to follow, if any.
        """
        index, pages, view, client, revalidate = walk
        if depth == 0:
            # The client asked for the page: it is fetched for the client,
            # and this joins that.
            candidates = await view.of(name, revalidate=revalidate)
        else:
            what = ("page", index, name)
            asks = await self._slotIf(lambda: pages.wouldAsk(name, revalidate))
            try:
                if asks:
                    self._fetching(what)
                candidates = await view.of(name, background=True, revalidate=revalidate)
            except BaseException:
                if asks:
                    self._failed(what)
                raise
            finally:
                if asks:
                    self.slots.release()
        chosen = choose(candidates, client, specifier, name, pages.policy, self._clock.seconds(), newestFirst=True)
        if chosen is None or not chosen.metadata:
            return ()
        metadata = FileKey(chosen.shard, chosen.filename, True, index)
        wheel = FileKey(chosen.shard, chosen.filename, False, index)
        tree = self._files.tree
        # One small stat each: a cold tree costs no trip through the pool.
        data = None
        if tree.has(metadata):
            data = await self._run(_readMetadata, tree.path(metadata))
        if data is None:
            data = await self._download(metadata)
        if self.mode == "files":
            self._fetchFile(wheel)
        if data is None or depth >= self.depth:
            return ()
        return await offload(self._run, len(data) <= SMALL_FILE, requirementsOf, data, client, extras)

    async def _slotIf(self, asks: Callable[[], bool]) -> bool:
        """
        Take one of the prefetch's slots if C{asks()} says that what it is
        about to do asks upstream, looked at again once the slot is had (a
        client may have asked meanwhile): whether it holds one, for the
        caller to release.  Joining a fetch under way, or reading what is
        kept, takes none: the slots bound what the prefetch asks upstream,
        not what it waits for.
        """
        if not asks():
            return False
        await self.slots.acquire()
        if asks():
            return True
        self.slots.release()
        return False

    def _fetchFile(self, key: FileKey) -> None:
        """
        Download a distribution in the background, unless the tree has it or
        a download of it runs; a failure is only logged (a client asking
        for it then meets it itself).  Not where clients are sent to the
        fleet's bucket for files (C{--store-redirect}).
        """
        fleet = self._files.fleet
        if self._files.downloading(key) or self._files.tree.has(key) or (fleet is not None and fleet.redirect):
            return
        Deferred.fromCoroutine(self._download(key)).addErrback(
            lambda f: log.debug("prefetch of {file} failed: {reason}", file=key.filename, reason=f.value)
        )

    async def _download(self, key: FileKey) -> bytes | None:
        """
        Have the mirror download a file in the background, unless the tree
        has it or a download of it runs (which this joins); the bytes of a
        metadata file.
        """
        what = ("metadata" if key.metadata else "file", key.index, key.shard, key.filename)
        files = self._files
        asks = await self._slotIf(lambda: not files.downloading(key) and not files.tree.has(key))
        try:
            if asks:
                self._fetching(what)
            if asks or files.downloading(key):
                download = files.download(key, background=True)
                try:
                    # Verified is enough: its sync is no reason to wait.
                    await download.whole.wait()
                except (NotFound, Unavailable, StoreError) as e:
                    if asks:
                        self._failed(what)
                    log.debug(
                        "prefetch of {file} failed: {reason}", file=key.filename, reason=getattr(e, "reason", e)
                    )
                    return None
                if not key.metadata:
                    return None
                copy = download.copy()
                if copy is not None:
                    return await offload(self._run, copy.size <= SMALL_FILE, _readBack, copy)
        finally:
            if asks:
                self.slots.release()
        if not key.metadata:
            return None
        return await self._run(_readMetadata, self._files.tree.path(key))  # type: ignore[no-any-return]
