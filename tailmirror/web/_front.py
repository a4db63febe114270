"""
The handshake with a front (nginx) that sends warm files for the mirror:
which requests came through it, the answer to its question whether it may
send a file itself, and the headers both sides read.
"""

from __future__ import annotations

import re
from ipaddress import ip_address

from twisted.internet.address import UNIXAddress
from twisted.web.iweb import IRequest

from ._answers import header

__all__ = ["ACCEL_HEADER", "ANSWER_KEPT", "FILE_HEADER", "FRONT_HEADER", "askTheMirror", "fromFront", "plainPlace"]

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
PLAIN_PLACE = re.compile(r"[!#-$&-~]+")


def plainPlace(place: str) -> bool:
    """
    Whether a place in the tree can be told to a front as it is.
    """
    return PLAIN_PLACE.fullmatch(place) is not None


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
