"""
Sending package files: from the tree, by a producer reading a bounded chunk
at a time (ranges, validators and HEAD included), or from a download in
progress as its bytes arrive.
"""

from __future__ import annotations

import math
import os
import re
import time
from ipaddress import ip_address
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.internet.address import UNIXAddress
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from ..base import BULK, PYPI, FileKey, IdleTimer, IndexLayout, NotFound, Signal, Unavailable, etagMatches, header, plain, sendInBulk
from ..files import Download, FileStore, Follower, OpenFile

__all__ = [
    "ACCEL_HEADER",
    "askTheMirror",
    "FILE_HEADER",
    "FRONT_HEADER",
    "FileResource",
    "Stream",
    "fromFront",
    "parseRange",
]

log = Logger()

#: Bytes read from disk and written to a client at a time: what a client
#: being sent a file costs in memory, beyond its socket's buffers.
CHUNK = BULK
IMMUTABLE = "public, max-age=31536000, immutable"
ALLOW = "GET, HEAD"
#: Says whether a file came from the cache (C{hit}) or from upstream (C{miss}).
CACHE_HEADER = "Tailmirror-Cache"

#: Leaves a warm file to the front in front of the mirror (nginx).
ACCEL_HEADER = "X-Accel-Redirect"
#: Set by a front that serves C{X-Accel-Redirect} answers (see L{fromFront}).
FRONT_HEADER = "X-Tailmirror-Front"
#: In the answer to a front's question (C{X-Tailmirror-Front: ask}): the
#: place in the tree of a file the front may send itself.
FILE_HEADER = "X-Tailmirror-File"
#: How long the front may keep that answer (C{X-Accel-Expires}), in
#: seconds: how late it learns of an eviction or a change of policy, and
#: how exactly the tree knows a file's last use.
ANSWER_KEPT = 10
#: The places a front is told: printable ASCII with no space and no
#: percent sign, since nginx takes them as they are.  (A key's parts are
#: safe segments already: L{IndexLayout.fromParts}.)
_PLAIN_PLACE = re.compile(r"[!#-$&-~]+")

#: A cold file smaller than this is sent once it is whole and verified:
#: its wait is short, and a failure is then an answer with a status.
WHOLE_BELOW = 1024 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def _number(digits: str) -> int:
    """
    A byte position as a client wrote it: past any file when absurdly long.
    """
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 19 else 1 << 63


def parseRange(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """
    The byte range a C{Range} header asks for, as C{(first, end)} with
    C{end} exclusive; L{None} to send the whole file (no header, or one this
    server ignores, as several ranges); C{False} if unsatisfiable.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if first:
        start = _number(first)
        if last and _number(last) < start:
            return None
        if start >= size:
            return False
        return start, min(_number(last) + 1 if last else size, size)
    if not last:
        return None
    suffix = _number(last)
    if suffix == 0 or size == 0:
        return False
    return max(0, size - suffix), size


@implementer(IPushProducer)
class Stream(Follower):
    """
    Send bytes C{[offset, end)} of a file to a request as a push producer,
    reading at most L{CHUNK} bytes at a time and only while the client
    keeps up.  With a L{Download} as source, it sends what the download
    lets out, waits for more, and ends the connection abruptly, without the
    end of the body, if the download fails.
    """

    def __init__(
        self,
        request: Request,
        file: OpenFile,
        offset: int,
        end: int | None,
        source: Download | None = None,
        clock: IReactorTime | None = None,
        stallTimeout: float = 60.0,
    ) -> None:
        self._request = request
        self._file = file
        self.offset = offset
        self._end = end
        self._source = source
        self._paused = False
        self._stall: IdleTimer | None = None
        if clock is not None:
            self._stall = IdleTimer(clock, stallTimeout, self._stalled)
        self.done = False

    def begin(self) -> None:
        """
        Start sending.
        """
        sendInBulk(getattr(self._request.channel, "transport", None))
        self._request.registerProducer(self, True)
        self._request.notifyFinish().addErrback(self._gone)
        if self._source is not None:
            self._source.followers.add(self)
        self.progress()

    def progress(self) -> None:
        """
        Send what may be sent, as far as the client takes it.
        """
        if self.done:
            return
        source = self._source
        if source is not None and source.failed:
            if not self._request.startedWriting and source.problem is not None:
                # Nothing of the file went out yet: say why, plainly.
                self._close()
                self._request.unregisterProducer()
                _refuse(self._request, source.problem.status, source.problem.reason)
                return
            self._abort()
            return
        limit = source.readable if source is not None else self._end
        if self._end is not None:
            limit = min(limit, self._end)  # type: ignore[type-var]
        assert limit is not None
        while not self._paused and not self.done and self.offset < limit:
            try:
                data = os.pread(self._file.fd, min(CHUNK, limit - self.offset), self.offset)
            except OSError as e:
                log.error("cannot read a file being sent: {reason}", reason=str(e))
                data = b""
            if not data:
                self._abort()
                return
            self.offset += len(data)
            self._request.write(data)
        if self.done:
            return
        if source is None or source.verified:
            end = self._end if self._end is not None else source.written  # type: ignore[union-attr]
            if self.offset >= end:
                self._close()
                self._request.unregisterProducer()
                self._request.finish()

    def pauseProducing(self) -> None:
        self._paused = True
        if self._stall is not None and not self.done:
            self._stall.start()

    def resumeProducing(self) -> None:
        self._paused = False
        if self._stall is not None:
            self._stall.pause()
        self.progress()

    def _stalled(self) -> None:
        """
        The client has taken nothing for too long: let its connection go.
        """
        assert self._stall is not None
        log.info(
            "dropped a client that took nothing for {seconds:g} s",
            seconds=self._stall.seconds,
        )
        self._abort()

    def stopProducing(self) -> None:
        self._close()

    def _gone(self, reason: Failure) -> None:
        """
        The client went away: stop, and leave the download to the others.
        """
        self._close()

    def _close(self) -> None:
        if self.done:
            return
        self.done = True
        if self._stall is not None:
            self._stall.stop()
        if self._source is not None:
            self._source.followers.discard(self)
        self._file.close()

    def _abort(self) -> None:
        """
        End the response without its end, so the client knows it is broken.
        """
        self._close()
        self._request.unregisterProducer()
        transport = getattr(self._request.channel, "transport", None)
        if transport is not None and hasattr(transport, "abortConnection"):
            transport.abortConnection()
        else:
            self._request.loseConnection()


def _respond(request: Request, status: int, text: str) -> None:
    """
    Finish a request with a plain-text answer.
    """
    request.write(plain(request, status, text))
    request.finish()


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _refuse(request: Request, status: int, text: str) -> None:
    """
    Answer that the file cannot be had after all: none of its headers.
    """
    for name in (b"etag", b"accept-ranges", b"cache-control", b"content-length"):
        request.responseHeaders.removeHeader(name)
    _respond(request, status, text)


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
    except NotFound:
        _refuse(request, 404, "not found")
        return False
    except Unavailable as e:
        _refuse(request, e.status, e.reason)
        return False
    return True


def askTheMirror(request: IRequest) -> bytes:
    """
    The answer to a front's question when the front may not send the file
    itself: it passes the client's request on to the mirror, which says
    why, or fetches the file.  No body: nginx reads none of the answer to
    its question, and a connection with an unread body is not kept open.
    """
    request.setResponseCode(403)
    request.setHeader("Cache-Control", "no-store")
    request.setHeader("Content-Length", "0")
    return b""


def fromFront(request: IRequest) -> str | None:
    """
    Whether a request came through a front that sends files for the
    mirror, and how: it says so, and it is on this host (loopback, or a
    UNIX socket), the only place a front can read the tree from.  A plain
    client's say-so from elsewhere is never taken.

    @return: C{"accel"} for a client's request that the front passes on
        (a warm file is answered with C{X-Accel-Redirect}), C{"ask"} for
        the front's own question whether it may send a file itself, and
        where the tree has it; L{None} for any other request.
    """
    mode = header(request, FRONT_HEADER)
    if mode not in ("accel", "ask"):
        return None
    peer = request.getClientAddress()
    if isinstance(peer, UNIXAddress):
        return mode
    host = getattr(peer, "host", None)
    try:
        return mode if host is not None and ip_address(host).is_loopback else None
    except ValueError:
        return None


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
        if pages.policy.cooldown is not None:
            d = ensureDeferred(self._unlessCooling(request, key, front))
            d.addErrback(self._failed, request, key)
            return NOT_DONE_YET
        return self._serve(request, key, front)

    async def _unlessCooling(self, request: Request, key: FileKey, front: str | None) -> None:
        """
        Serve a file unless its release is still in the cooldown: by its
        link's upload time, on its project's page.  A file no page lists
        any more (a pinned one) is served if the mirror has it.
        """
        try:
            link = await self._store.resolve(key)
        except (NotFound, Unavailable):
            link = None
        ends = None
        if link is not None and link.project is not None:
            ends = self._store.pagesOf(key).policy.hides(link.project, link.uploaded, self._store.clock.seconds())
        if ends is not None:
            if front == "ask":
                askTheMirror(request)
                request.finish()
                return
            until = "its upload time is unknown" if ends == math.inf else f"until {_when(ends)}"
            _respond(request, 403, f"this release is held back by the mirror's --cooldown, {until}")
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

    def _answer(self, request: Request, key: FileKey) -> Any:
        """
        Tell the front, which asks whether it may send a file itself, where
        the tree has it, and that it may keep this answer for
        L{ANSWER_KEPT} seconds.  A file the tree has not, or whose place
        the front could not take as it is, is left to the mirror: the
        front then passes the client's request on.  Nothing is fetched.
        """
        place = "/".join(key.storeParts)
        if _PLAIN_PLACE.fullmatch(place) is None:
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
            _respond(request, 416, f"the file has {size} bytes")
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
        if ranged or small or download.fd < 0 or (download.length is None and request.method == b"HEAD"):
            # A range of a file, a small file, the size of one upstream does
            # not tell, or a download that ended while this request waited
            # to hear it began: wait for the file to be whole, so that a
            # failure is an answer that says why, not a cut connection.
            await self._whole(request, key, download, again)
            return
        if download.length is not None:
            request.setHeader("Content-Length", str(download.length))
        self._store.events.fileServed(key, download.length or 0, False)
        if request.method == b"HEAD":
            request.finish()
            return
        self._stream(request, OpenFile(os.dup(download.fd), 0), 0, download.length, download)

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
            if download.fd >= 0:
                # Still open: its bytes are the verified file, whatever
                # becomes of keeping it.
                self._fromDisk(request, key, OpenFile(os.dup(download.fd), download.written))
                return
        if not await _waitFor(request, download.finished):
            return
        file = self._tree.openFile(key)
        if file is not None:
            self._fromDisk(request, key, file, accel)
        elif again:
            await self._cold(request, key, again=False)  # evicted meanwhile
        else:
            _respond(request, 503, "the file was evicted as soon as it was kept; try again")

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
            _respond(request, 500, "internal error; the mirror's log says more")
