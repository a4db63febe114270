"""
Serving package files (C{/root/<index>/+f/...}): from the tree, ranges,
validators and C{HEAD} included, or as their download arrives; the policy
checked first; a front's questions answered.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from ..base import PYPI, FileKey, IndexLayout, NotFound, Signal, Unavailable
from ..files import Download, FileStore, OpenFile
from ..pages import projectsOf
from ._answers import answerFor, etagMatches, header, plain, refuse, respond
from ._front import ACCEL_HEADER, ANSWER_KEPT, FILE_HEADER, askTheMirror, fromFront, plainPlace
from ._stream import Stream, parseRange

__all__ = ["ALLOW", "FileResource"]

log = Logger()

IMMUTABLE = "public, max-age=31536000, immutable"
ALLOW = "GET, HEAD"
#: Says whether a file came from the cache (C{hit}) or from upstream (C{miss}).
CACHE_HEADER = "Tailmirror-Cache"

#: A cold file smaller than this is sent once it is whole and verified:
#: its wait is short, and a failure is then an answer with a status.
WHOLE_BELOW = 1024 * 1024


async def _waitFor(request: Request, signal: Signal[Any]) -> bool:
    """
    Wait on a client's behalf for a download to get as far as C{signal}
    says: whether to go on.  Not if the client hung up, nor if the
    download failed, which the client is told (with none of the file's
    headers).
    """
    waiting = signal.wait()
    request.notifyFinish().addErrback(lambda _: waiting.cancel())
    try:
        await waiting
    except CancelledError:
        return False
    except (NotFound, Unavailable) as e:
        refuse(request, *answerFor(e))
        return False
    return True


def _describe(request: Request, key: FileKey) -> bool:
    """
    Set the headers every answer for a file has; answer 304 and say so if
    the client has it already.
    """
    request.setHeader("Content-Type", "application/octet-stream")
    request.setHeader("ETag", key.etag)
    request.setHeader("Cache-Control", IMMUTABLE)
    request.setHeader("Accept-Ranges", "bytes")
    if etagMatches(header(request, "if-none-match"), (key.etag,)):
        request.setResponseCode(304)
        request.finish()
        return True
    return False


def _wantedRange(request: Request, key: FileKey) -> str | None:
    """
    The C{Range} header to honour: none if C{If-Range} names another
    version (by strong comparison) or a date, which this server never gives.
    """
    wanted = header(request, "range")
    condition = header(request, "if-range")
    if wanted is not None and condition is not None and condition.strip() != key.etag:
        return None
    return wanted


class FileResource(Resource):
    """
    C{/root/<index>/+f/...}: package files and their core metadata, from
    the tree when it has them, else as their download arrives.
    """

    isLeaf = True

    def __init__(self, store: FileStore, layout: IndexLayout = PYPI, accelRedirect: str | None = None) -> None:
        super().__init__()
        self._store = store
        self._tree = store.tree
        self._layout = layout
        #: The front's internal location of the tree (C{--accel-redirect}).
        self._accel = accelRedirect

    def render(self, request: Request) -> Any:
        # Only GET and HEAD get here: L{Front} answers other methods.
        front = fromFront(request)
        if front is not None and self._accel is None:
            # Without --accel-redirect the front sends no file itself.
            if front == "ask":
                return askTheMirror(request)
            front = None
        key = self._layout.parse(request.path)
        if key is None:
            return askTheMirror(request) if front == "ask" else plain(request, 404, "not found")
        pages = self._store.pagesOf(key)
        refusal = pages.refusal(key)
        if refusal is not None:
            return askTheMirror(request) if front == "ask" else plain(request, *refusal)
        if pages.policy.filtersFiles and pages.policy.mayHold(projectsOf(key.filename)):
            d = ensureDeferred(self._unlessHeld(request, key, front))
            d.addErrback(self._failed, request, key)
            return NOT_DONE_YET
        return self._serve(request, key, front)

    async def _unlessHeld(self, request: Request, key: FileKey, front: str | None) -> None:
        """
        Serve a file unless the policy holds it back (a rule, an advisory,
        the cooldown, the freeze date): by its link on its project's page.
        A file no page lists any more, or whose page cannot be had now, is
        held back by the rules and advisories all the same (they need only
        its name), and otherwise served if the mirror has it.
        """
        try:
            link = await self._store.resolve(key)
        except (NotFound, Unavailable):
            link = None
        policy = self._store.pagesOf(key).policy
        project = link.project if link is not None else None
        if link is not None and project is not None:
            held = policy.holds(project, key.filename, link.uploaded, self._store.clock.seconds())
        else:
            project = next(iter(projectsOf(key.filename)), None)
            held = policy.refuses(project, key.filename) if project is not None else None
        if held is not None:
            if front == "ask":
                askTheMirror(request)
                request.finish()
                return
            self._store.events.policyRefused(held.kind, project or "", held.what)
            respond(request, 403, held.line)
            return
        if not request.finished and not getattr(request, "_disconnected", False):
            answer = self._serve(request, key, front)
            if answer is not NOT_DONE_YET:
                request.write(answer)
                request.finish()

    def _serve(self, request: Request, key: FileKey, front: str | None = None) -> Any:
        """
        Serve a file from the tree, or as its download arrives; or, to a
        front's question, say where the tree has it.
        """
        agent = request.getHeader(b"user-agent")
        peer = getattr(request.getClientAddress(), "host", None)
        self._store.events.fileWanted(key, None if agent is None else agent.decode("latin-1"), peer)
        if front == "ask":
            return self._answer(request, key)
        fleet = self._store.fleet
        if fleet is not None and fleet.redirect and front is None:
            # --store-redirect: a file in the bucket is read from there.
            # (Presigning may refresh the store's credentials: in a thread,
            # unless a URL made lately is at hand.)
            url = fleet.redirectTo(key)
            if url is not None:
                return self._toBucket(request, key, url)
            if key.storeParts in fleet.known or not self._tree.has(key):
                d = ensureDeferred(self._bucketOrCold(request, key))
                d.addErrback(self._failed, request, key)
                return NOT_DONE_YET
        try:
            file = self._tree.openFile(key)
        except OSError as e:
            log.error("cannot open {file}: {reason}", file=str(key), reason=str(e))
            return plain(request, 503, "the mirror cannot read its copy of this file")
        if file is not None:
            self._fromDisk(request, key, file, front == "accel")
            return NOT_DONE_YET
        d = ensureDeferred(self._cold(request, key))
        d.addErrback(self._failed, request, key)
        return NOT_DONE_YET

    def _toBucket(self, request: Request, key: FileKey, url: str) -> bytes:
        """
        Send a client to the file's object in the bucket: its bytes never
        pass through this node.
        """
        request.setResponseCode(307)
        request.setHeader("Location", url)
        request.setHeader("Cache-Control", "no-store")
        request.setHeader(CACHE_HEADER, "bucket")
        request.setHeader("Content-Length", "0")
        self._store.events.fileServed(key, 0, True)
        return b""

    async def _bucketOrCold(self, request: Request, key: FileKey) -> None:
        """
        A file in the bucket: a client is sent there; else served from this
        node's tree, or fetched as a cold file.
        """
        fleet = self._store.fleet
        assert fleet is not None
        url = await fleet.locate(key)
        if request.finished or getattr(request, "_disconnected", False):
            return
        if url is not None:
            request.write(self._toBucket(request, key, url))
            request.finish()
            return
        file = self._tree.openFile(key)
        if file is not None:
            self._fromDisk(request, key, file)  # the bucket failed us: this node has it
            return
        await self._cold(request, key)

    def _answer(self, request: Request, key: FileKey) -> Any:
        """
        Tell the front, which asks whether it may send a file itself, where
        the tree has it, and that it may keep this answer for
        L{ANSWER_KEPT} seconds.  A file the tree has not, or whose place
        the front could not take as it is, is left to the mirror: the
        front then passes the client's request on.  Nothing is fetched.
        """
        place = "/".join(key.storeParts)
        if not plainPlace(place):
            return askTheMirror(request)
        try:
            file = self._tree.openFile(key)
        except OSError as e:
            log.error("cannot open {file}: {reason}", file=str(key), reason=str(e))
            return askTheMirror(request)
        if file is None:
            return askTheMirror(request)
        size = file.size
        file.close()
        request.setHeader(FILE_HEADER, place)
        request.setHeader("X-Accel-Expires", str(ANSWER_KEPT))
        request.setHeader("ETag", key.etag)
        request.setHeader("Content-Length", "0")
        self._store.events.fileServed(key, size, True)
        return b""

    def _fromDisk(self, request: Request, key: FileKey, file: OpenFile, accel: bool = False) -> None:
        """
        Serve a file from the tree.
        """
        size = file.size
        if not request.responseHeaders.hasHeader(CACHE_HEADER):
            request.setHeader(CACHE_HEADER, "hit")
        try:
            if _describe(request, key):
                file.close()
                return
            if accel and self._accel is not None:
                file.close()
                self._redirect(request, key, self._accel, size)
                return
            wanted = parseRange(_wantedRange(request, key), size)
        except BaseException:
            file.close()
            raise
        start, end = 0, size
        if wanted is False:
            file.close()
            request.setHeader("Content-Range", f"bytes */{size}")
            respond(request, 416, f"the file has {size} bytes")
            return
        if isinstance(wanted, tuple):
            start, end = wanted
            request.setResponseCode(206)
            request.setHeader("Content-Range", f"bytes {start}-{end - 1}/{size}")
        request.setHeader("Content-Length", str(end - start))
        self._store.events.fileServed(key, end - start, True)
        if request.method == b"HEAD":
            file.close()
            request.finish()
            return
        self._stream(request, file, start, end)

    def _redirect(self, request: Request, key: FileKey, prefix: str, size: int) -> None:
        """
        Leave a warm file to the front: C{X-Accel-Redirect} to its place
        in the tree, below the front's internal location, which sends it
        (ranges included) with sendfile.
        """
        where = "/".join(quote(part) for part in key.storeParts)
        request.setHeader(ACCEL_HEADER, prefix + where)
        request.responseHeaders.removeHeader(b"accept-ranges")  # the front's own
        request.setHeader("Content-Length", "0")
        self._store.events.fileServed(key, size, True)
        request.finish()

    async def _cold(self, request: Request, key: FileKey, again: bool = True) -> None:
        """
        Serve a file that is not in the tree yet, as its download arrives.
        """
        request.setHeader(CACHE_HEADER, "miss")
        download = self._store.download(key)
        if not await _waitFor(request, download.started):
            return
        if _describe(request, key):
            return
        ranged = _wantedRange(request, key) is not None
        small = download.length is not None and download.length < WHOLE_BELOW
        copy = download.copy()
        if copy is None or ranged or small or (download.length is None and request.method == b"HEAD"):
            # A range of a file, a small file, the size of one upstream does
            # not tell, or a download that ended while this request waited
            # to hear it began: wait for the file to be whole, so that a
            # failure is an answer that says why, not a cut connection.
            if copy is not None:
                copy.close()
            await self._whole(request, key, download, again)
            return
        if download.length is not None:
            request.setHeader("Content-Length", str(download.length))
        self._store.events.fileServed(key, download.length or 0, False)
        if request.method == b"HEAD":
            copy.close()
            request.finish()
            return
        self._stream(request, copy, 0, download.length, download)

    async def _whole(self, request: Request, key: FileKey, download: Download, again: bool) -> None:
        """
        Serve a file once its download is whole and verified: from the
        download's own copy, before it is made durable and put in its place
        (a client waits for no sync), or from the tree once it is there
        (what a front in C{X-Accel} mode is sent to).
        """
        accel = fromFront(request) == "accel"
        if not accel:
            if not await _waitFor(request, download.whole):
                return
            copy = download.copy()
            if copy is not None:
                # Still open: its bytes are the verified file, whatever
                # becomes of keeping it.
                self._fromDisk(request, key, copy)
                return
        if not await _waitFor(request, download.finished):
            return
        file = self._tree.openFile(key)
        if file is not None:
            self._fromDisk(request, key, file, accel)
        elif again:
            await self._cold(request, key, again=False)  # evicted meanwhile
        else:
            respond(request, 503, "the file was evicted as soon as it was kept; try again")

    def _stream(
        self, request: Request, file: OpenFile, start: int, end: int | None, source: Download | None = None
    ) -> None:
        """
        Send a file, or what there is of it so far, with a L{Stream}.
        """
        store = self._store
        Stream(request, file, start, end, source, store.clock, store.clientTimeout).begin()

    def _failed(self, failure: Failure, request: Request, key: FileKey) -> None:
        """
        Something unforeseen: log it, and tell the client plainly.
        """
        log.failure("serving {file}", failure, file=str(key))
        if request.finished or getattr(request, "_disconnected", False):
            return
        if request.startedWriting:
            request.loseConnection()
        else:
            respond(request, 500, "internal error; the mirror's log says more")
