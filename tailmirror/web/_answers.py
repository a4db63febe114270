"""
Answers the mirror writes itself: a status with one plain line, the errors
of pages and files mapped to those answers in one place, and the request
headers every route reads.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest
from twisted.web.server import Request

from ..base import NotFound, Unavailable

__all__ = ["answerFor", "etagMatches", "header", "plain", "redirect", "refuse", "respond"]


def answerFor(error: NotFound | Unavailable, missing: str = "not found") -> tuple[int, str]:
    """
    The status and the line a client is answered with when a page or a
    file cannot be had: C{missing} for one that does not exist.
    """
    if isinstance(error, Unavailable):
        return error.status, error.reason
    return 404, missing


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


def redirect(request: IRequest, location: str) -> bytes:
    """
    A permanent redirect to a location relative to the request's path,
    keeping its query string.
    """
    query = request.uri.partition(b"?")[2]
    if query:
        location += "?" + query.decode("latin-1")
    request.setHeader("Location", location)
    return plain(request, 301, f"moved to {location}")


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


def respond(request: Request, status: int, text: str) -> None:
    """
    Finish a request with a plain-text answer.
    """
    request.write(plain(request, status, text))
    request.finish()


def refuse(request: Request, status: int, text: str) -> None:
    """
    Answer that the file cannot be had after all: none of its headers.
    """
    for name in (b"etag", b"accept-ranges", b"cache-control", b"content-length"):
        request.responseHeaders.removeHeader(name)
    respond(request, status, text)
