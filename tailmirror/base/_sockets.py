"""
Socket tuning for the connections that carry files: reads and writes in
bulk, and writes that leave at once when nothing is queued.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from errno import ENOBUFS, EWOULDBLOCK
from typing import Any, Callable, Iterable, Iterator

from twisted.internet.abstract import FileDescriptor
from twisted.internet.tcp import Connection
from twisted.python.util import untilConcludes

__all__ = [
    "BULK",
    "gathered",
    "holdsBytes",
    "MSG_MORE",
    "plainConnection",
    "readInBulk",
    "rememberHost",
    "sendInBulk",
    "socketOf",
    "stopWaiting",
    "whenWritable",
    "writeThrough",
]

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


#: The flag that tells the kernel more bytes follow at once (Linux); none
#: elsewhere, where what is gathered is sent as it is.
MSG_MORE: int = getattr(socket, "MSG_MORE", 0)


class _Through:
    """
    The writes of a connection that writes through (see L{writeThrough}),
    and what it gathers (see L{gathered}).
    """

    def __init__(self, descriptor: Connection) -> None:
        self.descriptor = descriptor
        self.buffered = descriptor.write
        self.bufferedSequence = descriptor.writeSequence
        #: What is written while gathering, to be sent as one.
        self.gathering: list[bytes] | None = None

    def idle(self) -> bool:
        # The socket is not waiting to take earlier bytes, and nothing holds
        # writes back.
        d = self.descriptor
        return bool(
            d.connected
            and not d.disconnecting
            and not d._writeDisconnected
            and not d._tempDataBuffer
            and d.offset == len(d.dataBuffer)
            and (d.producer is None or (d.streamingProducer and not d.producerPaused))
        )

    def write(self, data: bytes) -> None:
        if self.gathering is not None:
            if not isinstance(data, bytes):
                raise TypeError("Data must be bytes")  # as Twisted says
            self.gathering.append(data)
        else:
            self.send(data)

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        iovec = list(iovec)
        if self.gathering is not None:
            # Twisted takes any bytes-like in a sequence: all that is
            # written while gathering goes out together, in order.
            if any(isinstance(each, str) for each in iovec):
                raise TypeError("Data must not be string")  # as Twisted says
            self.gathering.extend(bytes(each) for each in iovec)
        elif iovec and all(type(each) is bytes for each in iovec):
            self.write(b"".join(iovec))
        else:
            self.bufferedSequence(iovec)

    def send(self, data: bytes, flags: int = 0) -> None:
        """
        Hand C{data} to the socket now if nothing waits before it, and
        buffer what it does not take.
        """
        if type(data) is bytes and data and self.idle():
            try:
                sent = untilConcludes(self.descriptor.socket.send, data, flags)
            except OSError as e:
                # Full: buffered below.  Lost: buffered too, and the reactor
                # finds the loss and reports it, as for any write.
                sent = 0 if e.errno in (EWOULDBLOCK, ENOBUFS) else -1
            if sent == len(data):
                return
            if sent > 0:
                data = data[sent:]
        self.buffered(data)


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
    through = _Through(descriptor)
    descriptor.write = through.write  # type: ignore[method-assign]
    descriptor.writeSequence = through.writeSequence  # type: ignore[method-assign]
    descriptor._tailmirrorThrough = through  # type: ignore[attr-defined]


@contextmanager
def gathered(transport: Any, more: bool = False) -> Iterator[None]:
    """
    Send what is written to C{transport} within as one, at the end: a
    response's headers and its first bytes in one segment rather than two,
    the client woken once for them.  With C{more}, what is gathered is
    marked as having more to follow at once (C{MSG_MORE}): a file the
    kernel sends next, whose first bytes then leave with the headers.

    Only a connection that writes through gathers; within another gathering
    this adds nothing (the outer one sends).
    """
    through: _Through | None = getattr(socketOf(transport), "_tailmirrorThrough", None)
    if through is None or through.gathering is not None:
        yield
        return
    gathering: list[bytes] = []
    through.gathering = gathering
    try:
        yield
    finally:
        through.gathering = None
        if gathering:
            through.send(b"".join(gathering), MSG_MORE if more else 0)


def plainConnection(transport: Any) -> Connection | None:
    """
    C{transport} itself if it is a plain TCP or UNIX connection, with no
    TLS over it: one whose socket the kernel's C{sendfile} can write a file
    to, bytes for bytes.
    """
    if isinstance(transport, Connection) and not getattr(transport, "TLS", False) and hasattr(os, "sendfile"):
        return transport
    return None


def holdsBytes(connection: Connection) -> bool:
    """
    Whether a connection holds bytes its socket has not taken yet.
    """
    return bool(connection._tempDataBuffer) or connection.offset < len(connection.dataBuffer)


def whenWritable(connection: Connection, callback: Callable[[], object]) -> None:
    """
    Call C{callback} once the connection's socket can take more and what
    the connection held before has gone.  The wait goes through the
    connection's own registration with the reactor (its C{doWrite}): a
    second registration of the same socket would take the connection's
    place in the reactor, reads and all.

    A callback that waits again (a file sent a turn at a time) keeps the
    registration; one that does not, with nothing held, ends it.  Nothing
    held, the connection's own C{doWrite} is not called: it would only send
    nothing, a system call, and end the registration, another.
    """

    def writable() -> object:
        stopWaiting(connection)
        if holdsBytes(connection):
            # Whatever the connection holds goes first; holding nothing
            # after, it stops asking the reactor to write.
            why = connection.doWrite()
            if why:
                return why  # lost: the reactor disconnects it, and says so
            if holdsBytes(connection):
                connection.doWrite = writable  # type: ignore[method-assign]
                return None
        callback()
        if not _waiting(connection) and not holdsBytes(connection) and not connection.disconnecting:
            connection.stopWriting()
        return None

    connection.doWrite = writable  # type: ignore[method-assign]
    connection.startWriting()


def _waiting(connection: Connection) -> bool:
    """
    Whether a wait of L{whenWritable} is on.
    """
    return "doWrite" in connection.__dict__


def stopWaiting(connection: Connection) -> None:
    """
    Give up a wait of L{whenWritable}, if one is on.
    """
    connection.__dict__.pop("doWrite", None)


def rememberHost(transport: Any) -> None:
    """
    Have a connection tell its own address from memory: it does not change,
    and Twisted asks for it (a C{getsockname} call) for every request the
    connection carries.
    """
    host = transport.getHost()
    transport.getHost = lambda: host
