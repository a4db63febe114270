"""
The legacy JSON API's answers (C{/pypi/<project>/json} and
C{/pypi/<project>/<version>/json}, made by L{tailmirror.pages.LegacyJSON}):
a name that is not normalized redirected to the one that is, links
absolute to the mirror's root as the client reached it, ETags and 304s.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from twisted.web.iweb import IRequest

from ..base import NotFound, Unavailable, canonicalName
from ..pages import LegacyJSON
from ._answers import answerFor, etagMatches, header, plain, redirect

__all__ = ["isJSONAPI", "rootURL", "sendLegacy"]

#: A C{Host} header taken for the links: a name or an address, a port.
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


def isJSONAPI(rest: bytes) -> bool:
    """
    Whether a path below C{/pypi/} is the legacy JSON API's:
    C{<project>/json} or C{<project>/<version>/json}.
    """
    segments = rest.split(b"/")
    return len(segments) in (2, 3) and segments[-1] == b"json" and all(segments)


def rootURL(request: IRequest) -> str:
    """
    The mirror's root as the client reached it, for absolute links: by its
    C{Host} if that is a host name or an address, else by the address it
    connected to.
    """
    scheme = "https" if request.isSecure() else "http"
    host = header(request, "host") or ""
    if not _HOST.fullmatch(host):
        address = request.getHost()
        host = f"{getattr(address, 'host', '127.0.0.1')}:{getattr(address, 'port', 80)}"
    return f"{scheme}://{host}/"


async def sendLegacy(request: IRequest, legacy: LegacyJSON, name: str, version: str | None) -> bytes:
    """
    Answer a request of the legacy JSON API.
    """
    canonical = canonicalName(name)
    if canonical is None:
        return plain(request, 404, "not a valid project name")
    if canonical != name:
        return redirect(request, f"../{canonical}/json" if version is None else f"../../{canonical}/{quote(version)}/json")
    try:
        body, etag = await legacy.answer(canonical, version, rootURL(request))
    except (NotFound, Unavailable) as e:
        missing = f"upstream has no project {canonical}" + (f" {version}" if version else "")
        return plain(request, *answerFor(e, missing))
    request.setHeader("ETag", etag)
    request.setHeader("Cache-Control", "max-age=60")
    request.setHeader("Vary", "Host")
    if etagMatches(header(request, "if-none-match"), (etag,)):
        request.setResponseCode(304)
        return b""
    request.setHeader("Content-Type", "application/json")
    request.setHeader("Content-Length", str(len(body)))
    return body
