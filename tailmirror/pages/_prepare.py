"""
An upstream page made ready to keep and serve: parsed, checked, serialized
for the journal, its links indexed and the form asked for rendered as the
policy has it served.  All of it is CPU work, run off the reactor thread
(but for small JSON pages).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from twisted.internet.defer import DeferredSemaphore
from twisted.logger import Logger

from ..base import PYPI, SMALL_PAGE, IndexLayout, RunInThread, StoreError, UpstreamError, dumpJSON
from ..upstream import Fetched
from ._bodies import Body
from ._journal import Journal
from ._links import Links, indexLinks
from ._parse import MalformedPage, ParsedPage, checkHTML, parseHTML, parseJSON, sniff
from ._policy import Policy
from ._records import Entry
from ._render import renderProjectHTML, renderProjectJSON

__all__ = ["DamagedCopy", "JSON_TYPES", "PREPARING", "Prepared", "Rendering", "Workshop", "bodyDigest", "preparePage", "renderAs"]

log = Logger()
T = TypeVar("T")

#: Upstream pages parsed at once, at most: the work holds the interpreter
#: lock, so more at once is no faster (cold uv over 400-file pages took
#: 2.44 s with one against 2.46 with two), and each page held parsed is
#: ten times its size in memory (peak RSS over 2.9 MB pages: 154 MB with
#: one, 170 with two).
PREPARING = 1

#: The media types of a Simple API page in JSON, and in HTML.
JSON_TYPES = ("application/vnd.pypi.simple.v1+json", "application/json")
HTML_TYPES = ("text/html", "application/vnd.pypi.simple.v1+html")


@dataclass
class Prepared:
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
    #: What each view asked for made of the page (see L{PageView}).
    made: tuple[Any, ...] = ()


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
    #: The policy's generation it was rendered under.
    generation: int = 0

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
    generation = policy.generation
    view = policy.view(name, page, now)
    return Rendering(Body.of(RENDERERS[form](view.page, layout)), view.until, view.unknownTimes, generation)


def preparePage(
    name: str,
    fetched: Fetched,
    form: str | None = None,
    policy: Policy | None = None,
    now: float = 0.0,
    layout: IndexLayout = PYPI,
    views: tuple[Callable[[dict[str, Any]], Any], ...] = (),
) -> Prepared:
    """
    Parse an upstream page, serialize it, and render the C{form} asked for
    (the other when it is first asked for), and make what each of C{views}
    makes of it.  CPU work: run it off the reactor thread.

    @raise MalformedPage: if upstream sent no readable project page.
    """
    mediaType, _, params = fetched.contentType.partition(";")
    mediaType = mediaType.strip()
    labelled = "json" if mediaType in JSON_TYPES else "html" if mediaType in HTML_TYPES else None
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
    pageJSON = dumpJSON(page)
    rendered = None if form is None else renderAs(form, name, page, policy or Policy(), now, layout)
    status = page.get("project-status")
    state = status.get("status") if isinstance(status, dict) and isinstance(status.get("status"), str) else None
    made = tuple(make(page) for make in views)
    return Prepared(pageJSON, rendered, indexLinks(page), parsed.dropped, notes, state, made)


class DamagedCopy(StoreError):
    """
    The journal's copy of a page cannot be read back.
    """


class Workshop:
    """
    The CPU side of a journal's pages, off the reactor thread and one page
    at a time (L{PREPARING}): upstream pages prepared, kept pages read back
    and made something of.
    """

    def __init__(self, journal: Journal, runInThread: RunInThread) -> None:
        self._journal = journal
        self._run = runInThread
        self._preparing = DeferredSemaphore(PREPARING)

    async def readBack(self, entry: Entry, make: Callable[[dict[str, Any]], T]) -> T:
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
            return await self._preparing.run(self._run, readAndMake)
        except DamagedCopy as e:
            log.error("cannot read the page of {project} back: {reason}", project=entry.name, reason=e.reason[:200])
            raise DamagedCopy(503, "the mirror's copy of this page is damaged") from None

    async def prepare(
        self,
        name: str,
        fetched: Fetched,
        form: str | None,
        policy: Policy,
        now: float,
        layout: IndexLayout,
        views: tuple[Callable[[dict[str, Any]], Any], ...] = (),
    ) -> Prepared:
        """
        Parse an upstream page, render it in C{form} as C{policy} has it
        served C{now}, and make it into each of C{views} (see
        L{preparePage}): off the reactor thread, one at a time, unless it is
        a small JSON page (see L{SMALL_PAGE}).  Say what upstream got wrong.

        @raise UpstreamError: if upstream sent no readable project page.
        """
        args = (name, fetched, form, policy, now, layout, views)
        small = len(fetched.body) <= SMALL_PAGE and fetched.contentType.partition(";")[0].strip() in JSON_TYPES
        try:
            if small:
                prepared: Prepared = preparePage(*args)
            else:
                prepared = await self._preparing.run(self._run, preparePage, *args)
        except MalformedPage as e:
            raise UpstreamError(502, f"upstream sent a malformed page: {e}") from None
        for why in prepared.notes:
            log.warn("the page of {project}: {reason}", project=name, reason=why)
        for why in prepared.dropped:
            log.warn("dropped a link from the page of {project}: {reason}", project=name, reason=why)
        return prepared
