"""
Small pieces of HTTP shared by the pages and the files.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.web.iweb import IRequest

__all__ = ["BULK", "etagMatches", "header", "plain", "readInBulk", "sendInBulk", "socketOf"]

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
