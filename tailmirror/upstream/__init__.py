"""
The upstream wing: how the mirror asks the index it mirrors for pages and
files.  L{Upstream} is the client (pages whole and capped, files streamed
to a sink, ranges of a wheel for its metadata); its requests take L{Slots},
clients' before the prefetch's; its connections come from L{Clients}
(pooled, TLS checked, reading in bulk); and what upstream got wrong becomes
an L{UpstreamError} with one readable line.

It stands on the ground floor only (L{tailmirror.base}).
"""

from ._client import Fetched, Ranged, Upstream, judgeRoot
from ._readers import FileBody, FileSink, typeName
from ._slots import Priority, Slots, priorityOf
from ._transport import Clients, NoCookies, UpstreamEndpoints, loadTrustRoot

__all__ = [
    "Clients",
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
    "typeName",
]
