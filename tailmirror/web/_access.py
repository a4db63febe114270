"""
The mirror's site: each answered request is counted by route and status,
and written to the access log, which goes to the mirror's own log (as an
event with its facts as fields), to a file of its own, to standard output,
or nowhere.  Its lines are bounded in length: a path, a referrer or a user
agent past its cap is cut.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from typing import IO, Any

from twisted.internet import address
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from ..base import gathered, rememberHost, writeThrough
from ..observe import MirrorMetrics
from ._guard import AVATAR

__all__ = ["AccessLog", "MirrorRequest", "MirrorSite", "routeOf", "PATH_MAX", "AGENT_MAX"]

access = Logger(namespace="tailmirror.access")

#: The most characters of a request's path (with its query) in a line.
PATH_MAX = 1000
#: The most characters of a user agent, or a referrer, in a line.
AGENT_MAX = 200

_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(32), 127)}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@lru_cache(maxsize=1024)
def _clean(value: bytes | None, limit: int) -> str:
    """
    A request's value for a line of the log: printable ASCII, quotes and
    backslashes escaped, cut at C{limit} characters.  Kept for the values
    seen most (a fleet's few user agents, its hot paths).
    """
    if not value:
        return "-"
    cut = len(value) > limit
    text = value[:limit].replace(b"\\", b"\\\\").replace(b'"', b'\\"').decode("ascii", "backslashreplace")
    if _CONTROL.search(text) is not None:
        text = text.translate(_ESCAPES)
    return text + "..." if cut else text


#: An access line in the mirror's log, which has its own time stamps.
_LINE = '{client} {user} "{method} {path} {protocol}" {status} {bytes} "{referrer}" "{agent}"'
#: An access line in a file of its own: the combined log format.
_FILE_LINE = '{client} - {user} {timestamp} "{method} {path} {protocol}" {status} {bytes} "{referrer}" "{agent}"\n'


def _reader(request: Any) -> bytes | None:
    """
    The name that logged in for a request (C{--auth}), if any.
    """
    name = getattr(request, AVATAR, None)
    return name.encode("utf-8", "backslashreplace") if name else None


def routeOf(path: bytes) -> str:
    """
    The route a request path is counted under.
    """
    if path.startswith(b"/root/"):
        return "file"
    if path.startswith(b"/simple/"):
        return "index" if path == b"/simple/" else "page"
    if path.startswith(b"/+status"):
        return "status"
    if path.startswith(b"/+metrics") or path == b"/metrics":
        return "metrics"
    return "other"


class AccessLog:
    """
    Where the lines of the access log go: C{None}, the mirror's log;
    C{"off"}, nowhere; C{"-"}, standard output; else the file at that path,
    appended to.
    """

    def __init__(self, target: str | None) -> None:
        self.target = target
        self._file: IO[str] | None = None

    @property
    def enabled(self) -> bool:
        return self.target != "off"

    def open(self) -> None:
        """
        Open the file, if the lines go to one.

        @raise OSError: if it cannot be opened for appending.
        """
        if self.target not in (None, "off", "-") and self._file is None:
            self._file = open(self.target, "a", buffering=1, encoding="ascii", errors="backslashreplace")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, request: Any, timestamp: str) -> None:
        """
        The line of one answered request.
        """
        if self.target == "off":
            return
        client = request.getClientAddress()
        host = client.host if isinstance(client, (address.IPv4Address, address.IPv6Address)) else "-"
        facts = {
            "client": host,
            "user": _clean(_reader(request), 64),
            "method": _clean(request.method, 16),
            "path": _clean(request.uri, PATH_MAX),
            "protocol": _clean(request.clientproto, 16),
            "status": request.code,
            "bytes": request.sentLength,
            "referrer": _clean(request.getHeader(b"referer"), AGENT_MAX),
            "agent": _clean(request.getHeader(b"user-agent"), AGENT_MAX),
        }
        if self.target is None:
            # The line is made here, once: a format of many fields costs
            # each observer far more to parse than one field does.
            access.info("{line}", line=_LINE.format_map(facts), **facts)
            return
        line = _FILE_LINE.format(timestamp=timestamp, **facts)
        stream = self._file if self._file is not None else sys.stdout
        try:
            stream.write(line)
            if stream is sys.stdout:
                stream.flush()
        except (OSError, ValueError):
            # A full disk or a closed stream loses access lines, never a request.
            pass


class MirrorRequest(Request):
    """
    A request whose answer's headers leave with its first bytes, in one
    write to the socket (see L{gathered}): Twisted writes them apart, two
    segments and two wake-ups of the client for every page.
    """

    def write(self, data: bytes) -> None:
        if self.startedWriting:
            super().write(data)
            return
        with gathered(self.channel.transport if self.channel is not None else None):
            super().write(data)


class MirrorSite(Site):
    """
    A site whose answered requests are counted and logged the mirror's way.
    """

    noisy = False
    requestFactory = MirrorRequest

    def __init__(
        self,
        resource: Resource,
        metrics: MirrorMetrics,
        accessLog: AccessLog,
        *,
        timeout: float,
        reactor: Any = None,
    ) -> None:
        super().__init__(resource, timeout=timeout, reactor=reactor)
        self.displayTracebacks = False
        self.metrics = metrics
        self.accessLog = accessLog

    def buildProtocol(self, addr: Any) -> Any:
        """
        A channel whose connection writes through (see L{writeThrough}): an
        answer leaves as soon as it is made, not once every other request
        of a burst has been handled; and tells its own address from memory.
        """
        channel = super().buildProtocol(addr)
        if channel is not None:
            made = channel.makeConnection

            def makeConnection(transport: Any) -> None:
                writeThrough(transport)
                rememberHost(transport)
                made(transport)

            channel.makeConnection = makeConnection
        return channel

    def log(self, request: Any) -> None:
        self.metrics.requestFinished(routeOf(request.path), request.code, request.sentLength)
        self.accessLog.write(request, self._logDateTime or "-")
