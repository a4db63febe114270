"""
Small pieces of HTTP shared by the pages and the files.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

__all__ = ["etagMatches", "header", "plain"]


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
