"""
Small pieces of HTTP shared by the pages and the files.
"""

from __future__ import annotations

from typing import Any, Iterable

from twisted.internet.abstract import FileDescriptor
from twisted.internet.tcp import Connection
from twisted.web.iweb import IRequest

__all__ = ["BULK", "etagMatches", "header", "plain", "readInBulk", "sendInBulk", "socketOf", "writeThrough"]

#: Bytes moved by one read from, or one write to, a socket carrying files.
#: Twisted's defaults (64 KiB reads, 128 KiB writes) suit small messages;
#: for a file, each read or write costs a trip through the reactor, the
#: HTTP parser and the download's bookkeeping, which at loopback speeds
#: took more time than the copying itself.
BULK = 1 << 20


def socketOf(transport: Any) -> FileDescriptor | None:
    """
    The transport that owns the socket, under any TLS layer.
    """
    for _ in range(3):
        if isinstance(transport, FileDescriptor):
            return transport
        transport = getattr(transport, "transport", None)
    return None


def readInBulk(transport: Any) -> None:
    """
    Let a connection read up to L{BULK} bytes at a time.
    """
    descriptor = socketOf(transport)
    if descriptor is not None:
        descriptor.bufferSize = max(descriptor.bufferSize, BULK)


def sendInBulk(transport: Any) -> None:
    """
    Let a connection hand up to L{BULK} bytes at a time to its socket.
    (How much it buffers before pausing its producer is unchanged.)
    """
    descriptor = socketOf(transport)
    if descriptor is not None:
        descriptor.SEND_LIMIT = max(descriptor.SEND_LIMIT, BULK)


def writeThrough(transport: Any) -> None:
    """
    Have a TCP connection hand what it is given to its socket at once, when
    nothing waits to be sent before it, instead of at the reactor's next
    turn.

    Twisted buffers every write until the reactor has handled all the
    events of its turn.  A burst of requests (uv asks for dozens of pages at
    once) is one long turn: every upstream request the mirror makes in it,
    and every answer, waited for the whole burst to be handled before it
    left, a round of lag added to each trip.  Written through, each leaves
    as soon as it is made.  Whatever the socket does not take at once, or
    anything written while earlier bytes still wait, is buffered as before,
    in order; so is everything while a producer is paused or pulls (a pull
    producer is asked for more only as the buffer drains), and a lost
    connection is found and reported by the reactor as before.
    """
    descriptor = socketOf(transport)
    if not isinstance(descriptor, Connection):
        return
    buffered = descriptor.write
    bufferedSequence = descriptor.writeSequence

    def idle() -> bool:
        # The socket is not waiting to take earlier bytes, and nothing holds
        # writes back.
        d = descriptor
        return bool(
            d.connected
            and not d.disconnecting
            and not d._writeDisconnected
            and not d._tempDataBuffer
            and d.offset == len(d.dataBuffer)
            and (d.producer is None or (d.streamingProducer and not d.producerPaused))
        )

    def write(data: bytes) -> None:
        if type(data) is bytes and data and idle():
            sent = descriptor.writeSomeData(data)
            if isinstance(sent, int) and sent > 0:
                if sent == len(data):
                    return
                data = data[sent:]
        buffered(data)

    def writeSequence(iovec: Iterable[bytes]) -> None:
        iovec = list(iovec)
        if iovec and all(type(each) is bytes for each in iovec) and idle():
            write(b"".join(iovec))
        else:
            bufferedSequence(iovec)

    descriptor.write = write  # type: ignore[method-assign]
    descriptor.writeSequence = writeSequence  # type: ignore[method-assign]


def plain(request: IRequest, status: int, text: str) -> bytes:
    """
    Answer with a status and a one-line plain-text reason.
    """
    request.setResponseCode(status)
    request.setHeader("Content-Type", "text/plain; charset=utf-8")
    request.setHeader("Cache-Control", "no-store")
    body = (" ".join(text.split()) + "\n").encode("utf-8")
    request.setHeader("Content-Length", str(len(body)))
    return body


def header(request: IRequest, name: str) -> str | None:
    """
    A request header as text, or L{None}.
    """
    value = request.getHeader(name)
    return None if value is None else str(value)


def etagMatches(header: str | None, etags: tuple[str, ...]) -> bool:
    """
    Whether an C{If-None-Match} header names one of C{etags} (by weak
    comparison, as RFC 9110 asks for this header).
    """
    if header is None:
        return False
    candidates = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in candidates or bool(candidates & set(etags))
