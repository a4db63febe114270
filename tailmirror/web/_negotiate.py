"""
Content negotiation between the two forms of the Simple API (PEP 691).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

__all__ = ["HTML", "JSON", "negotiate", "Form"]

Form = Literal["html", "json"]

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"

#: What a client may ask for, in the mirror's order of preference when a
#: client likes several equally, and what it is then given: the form, and
#: the exact media type the response names (the C{latest} aliases name v1).
_OFFERS: dict[str, tuple[Form, str]] = {
    TEXT_HTML: ("html", TEXT_HTML),
    HTML_V1: ("html", HTML_V1),
    JSON_V1: ("json", JSON_V1),
    "application/vnd.pypi.simple.latest+html": ("html", HTML_V1),
    "application/vnd.pypi.simple.latest+json": ("json", JSON_V1),
}
HTML = _OFFERS[TEXT_HTML]
JSON = _OFFERS[JSON_V1]


@lru_cache(maxsize=1024)
def negotiate(accept: str | None, format: str | None = None) -> tuple[Form, str] | None:
    """
    Choose the form of a page and the media type to name for it.

    @param accept: the request's C{Accept} header, if any.
    @param format: the C{format} query parameter, if any, which overrides it.
    @return: C{(form, media type)}, or L{None} if the client accepts neither
        form (406).

    Clients send the same few headers again and again, so answers are
    memoized.
    """
    if format is not None:
        return _OFFERS.get(format.strip().lower())
    if not accept or not accept.strip():
        return HTML
    chosen = parse_accept_header(accept, MIMEAccept).best_match(list(_OFFERS))
    return None if chosen is None else _OFFERS[chosen]


def contentType(mediaType: str) -> str:
    """
    The C{Content-Type} header for a media type: HTML names its charset.
    """
    return mediaType if mediaType == JSON_V1 else mediaType + "; charset=utf-8"
