"""
TODO
"""


from ._coalesce import Coalescer, Signal
from ._disk import putInPlace, syncDirectory, writeAll
from ._errors import NotFound, StoreError, Unavailable, UpstreamError
from ._events import PAGE_OUTCOMES, REFRESH_OUTCOMES, UPSTREAM_OUTCOMES, Fanout, IMirrorEvents, NoEvents
from ._idle import IdleTimer
from ._layout import DEFAULT_INDEX, METADATA, PROVENANCE, PYPI, FileKey, IndexLayout, indexName, shardOf, shardOfDigest
from ._memory import returnBigBlocks
from ._names import canonicalName, safeFilename, usableSha256
from ._offload import SMALL_FILE, SMALL_PAGE, offload
from ._sockets import BULK, etagMatches, header, plain, readInBulk, sendInBulk, writeThrough

__all__ = [
    "BULK",
    "Coalescer",
    "DEFAULT_INDEX",
    "Fanout",
    "FileKey",
    "IMirrorEvents",
    "IdleTimer",
    "IndexLayout",
    "METADATA",
    "NoEvents",
    "NotFound",
    "PAGE_OUTCOMES",
    "PROVENANCE",
    "PYPI",
    "REFRESH_OUTCOMES",
    "SMALL_FILE",
    "SMALL_PAGE",
    "Signal",
    "StoreError",
    "UPSTREAM_OUTCOMES",
    "Unavailable",
    "UpstreamError",
    "canonicalName",
    "etagMatches",
    "header",
    "indexName",
    "offload",
    "plain",
    "putInPlace",
    "readInBulk",
    "returnBigBlocks",
    "safeFilename",
    "sendInBulk",
    "shardOf",
    "shardOfDigest",
    "syncDirectory",
    "usableSha256",
    "writeAll",
    "writeThrough",
]
