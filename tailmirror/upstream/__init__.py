"""
The upstream wing: how the mirror asks the index it mirrors for pages and
files.  L{Upstream} is the client (pages whole and capped, files streamed
to a sink, ranges of a wheel for its metadata); its requests take L{Slots},
clients' before the prefetch's; its connections come from L{Clients}
(pooled, TLS checked, reading in bulk, going only where L{Reach} allows:
no loopback, link-local or private address but the upstream's own); the
L{Credentials} of an upstream that asks for them go to its own origin
only; and what upstream got wrong becomes an L{UpstreamError} with one
readable line.

It stands on the ground floor only (L{tailmirror.base}).
"""

from ._client import Fetched, Ranged, Upstream, judgeRoot
from ._credentials import FILE_FORMAT, Credentials, credentialsFromFile, credentialsFromNetrc, origin, withoutUserinfo
from ._reach import Reach, Refused, parseHostPort
from ._readers import FileBody, FileSink, readBody, typeName
from ._slots import Priority, Slots, priorityOf
from ._transport import Clients, NoCookies, UpstreamEndpoints, loadTrustRoot

__all__ = [
    "FILE_FORMAT",
    "Clients",
    "Credentials",
    "Reach",
    "Refused",
    "credentialsFromFile",
    "credentialsFromNetrc",
    "origin",
    "parseHostPort",
    "withoutUserinfo",
    "Fetched",
    "FileBody",
    "FileSink",
    "NoCookies",
    "Priority",
    "Ranged",
    "Slots",
    "Upstream",
    "UpstreamEndpoints",
    "judgeRoot",
    "loadTrustRoot",
    "priorityOf",
    "readBody",
    "typeName",
]
