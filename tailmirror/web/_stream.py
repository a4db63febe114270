"""
Sending a file's bytes: the range a client asks for, and a producer that
sends from a file of the tree, or from a download in progress as its bytes
arrive, only while the client keeps up: on a plain TCP (or UNIX)
connection with the kernel's C{sendfile}, the bytes never passing through
the process; on any other (TLS) a bounded chunk at a time, read and
written.
"""

from __future__ import annotations

import errno
import os
import re

from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from ..base import BULK, IdleTimer, gathered, holdsBytes, plainConnection, sendInBulk, stopWaiting, whenWritable
from ..files import Download, Follower, OpenFile
from ._answers import refuse

__all__ = ["CHUNK", "Stream", "parseRange"]

log = Logger()

#: Bytes read from disk and written to a client at a time: what a client
#: being sent a file costs in memory, beyond its socket's buffers.
CHUNK = BULK
#: Bytes C{sendfile} hands one client in one turn of the reactor, at most,
#: before the others' turn: on loopback the kernel takes gigabytes a second,
#: and one big file would otherwise hold the reactor for the whole of it.
SENDFILE_TURN = 4 * BULK
#: The kernel's copy from a file to a socket (a name of this module's, so
#: that a test can count the calls).
sendfile = os.sendfile
#: What C{sendfile} fails with when the client is gone.
_GONE = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN})
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
    only while the client keeps up: on a plain connection with C{sendfile}
    (at most L{SENDFILE_TURN} bytes a turn, then again once the socket can
    take more), else reading at most L{CHUNK} bytes at a time.  With a
    L{Download} as source, it sends what the download lets out, waits for
    more, and ends the connection abruptly, without the end of the body, if
    the download fails.
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
        #: The connection C{sendfile} writes to, if it can.
        self._socket = plainConnection(getattr(request.channel, "transport", None))
        #: Whether the socket's room for more is waited for.
        self._waiting = False

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
                refuse(self._request, source.problem.status, source.problem.reason)
                return
            self._abort()
            return
        limit = source.readable if source is not None else self._end
        if self._end is not None:
            limit = min(limit, self._end)  # type: ignore[type-var]
        assert limit is not None
        if not (self._sendfile(limit) if self._socket is not None else self._readAndWrite(limit)):
            return
        if source is None or source.verified:
            end = self._end if self._end is not None else source.written  # type: ignore[union-attr]
            if self.offset >= end:
                self._close()
                self._request.unregisterProducer()
                self._request.finish()

    def _readAndWrite(self, limit: int) -> bool:
        """
        Read and write what may be sent up to C{limit}, as far as the
        client takes it: whether the stream goes on.
        """
        while not self._paused and not self.done and self.offset < limit:
            try:
                data = os.pread(self._file.fd, min(CHUNK, limit - self.offset), self.offset)
            except OSError as e:
                log.error("cannot read a file being sent: {reason}", reason=str(e))
                data = b""
            if not data:
                self._abort()
                return False
            self.offset += len(data)
            self._request.write(data)
        # A write can end the stream (the client gone).
        return not self.done

    def _sendfile(self, limit: int) -> bool:
        """
        Have the kernel send what may be sent up to C{limit}, as far as the
        socket takes it now and this turn allows, once the headers (and
        whatever else the connection holds) have gone: whether the whole
        of it went.  Otherwise the rest goes when the socket can take more.
        """
        socket = self._socket
        assert socket is not None
        if self._waiting:
            return False
        turn = SENDFILE_TURN
        while not self._paused and not self.done and self.offset < limit:
            if not self._request.startedWriting:
                # The headers, before any byte of the body, and with its
                # first bytes: marked as having more to follow.
                with gathered(socket, more=True):
                    self._request.write(b"")
                if getattr(self._request, "chunked", False):
                    # A body of a length not known (upstream did not say),
                    # sent in chunks: their framing is the request's to
                    # write, which the kernel's copy would leave out.
                    self._socket = None
                    return self._readAndWrite(limit)
            if turn <= 0 or holdsBytes(socket):
                self._awaitRoom()
                return False
            asked = min(limit - self.offset, turn)
            try:
                sent = sendfile(socket.fileno(), self._file.fd, self.offset, asked)
            except BlockingIOError:
                self._awaitRoom()
                return False
            except OSError as e:
                if e.errno not in _GONE:
                    log.error("cannot send a file: {reason}", reason=str(e))
                self._abort()
                return False
            if sent == 0:
                log.error("cannot send a file: it ended {missing} bytes early", missing=limit - self.offset)
                self._abort()
                return False
            self.offset += sent
            self._request.sentLength += sent
            turn -= sent
            if sent < asked:
                # The socket is full.  Asked again at once, it would take
                # the little its reader has freed meanwhile, a call for
                # each read, every one contending with the reader for the
                # socket; once it says it has room (a third of its buffer
                # free), one call fills it again.
                self._awaitRoom()
                return False
        return not self.done and not self._paused

    def _awaitRoom(self) -> None:
        """
        Go on once the socket can take more; a client that takes nothing
        for too long is let go.
        """
        assert self._socket is not None
        self._waiting = True
        whenWritable(self._socket, self._room)
        if self._stall is not None:
            self._stall.start()

    def _room(self) -> None:
        """
        The socket can take more.
        """
        self._waiting = False
        if self._stall is not None:
            self._stall.pause()
        self.progress()

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
        if self._waiting and self._socket is not None:
            stopWaiting(self._socket)
            self._waiting = False
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
