"""
The ground floor: the small pieces every wing stands on, and none of the
mirror's behaviour of their own.  Project names and file names checked
(L{canonicalName}), where each file lives in the tree and on the mirror's
URLs (L{FileKey}, L{IndexLayout}), the failures clients are answered with
(L{NotFound}, L{Unavailable}), the events every part reports to the
observers and the prefetch (L{IMirrorEvents}), one piece of work shared by
all who wait for it (L{Coalescer}, L{Signal}), CPU and disk work sent off
the reactor (L{offload}), idle timers, durable writes, memory, and the
socket tuning of connections that carry files.

It imports nothing else of the mirror's.
"""

from ._coalesce import Coalescer, Signal
from ._disk import defaultCacheDir, putInPlace, syncDirectory, writeAll
from ._watched import LOOK_EVERY, WatchedFile
from ._errors import NotFound, StoreError, Unavailable, UpstreamError
from ._events import PAGE_OUTCOMES, REFRESH_OUTCOMES, UPSTREAM_OUTCOMES, Fanout, IMirrorEvents, NoEvents
from ._idle import IdleTimer
from ._json import JSONError, dumpJSON, loadJSON
from ._layout import DEFAULT_INDEX, METADATA, PROVENANCE, PYPI, FileKey, IndexLayout, indexName, shardOf, shardOfDigest
from ._memory import returnBigBlocks
from ._names import canonicalName, noteUnreadable, safeFilename, usableSha256
from ._offload import SMALL_FILE, SMALL_PAGE, RunInThread, offload
from ._sockets import (
    BULK,
    MSG_MORE,
    gathered,
    holdsBytes,
    plainConnection,
    readInBulk,
    rememberHost,
    sendInBulk,
    stopWaiting,
    whenWritable,
    writeThrough,
)

__all__ = [
    "LOOK_EVERY",
    "WatchedFile",
    "defaultCacheDir",
    "BULK",
    "gathered",
    "MSG_MORE",
    "canonicalName",
    "Coalescer",
    "DEFAULT_INDEX",
    "dumpJSON",
    "Fanout",
    "FileKey",
    "holdsBytes",
    "IdleTimer",
    "IMirrorEvents",
    "IndexLayout",
    "indexName",
    "JSONError",
    "loadJSON",
    "METADATA",
    "NoEvents",
    "noteUnreadable",
    "NotFound",
    "offload",
    "PAGE_OUTCOMES",
    "plainConnection",
    "PROVENANCE",
    "putInPlace",
    "PYPI",
    "readInBulk",
    "REFRESH_OUTCOMES",
    "rememberHost",
    "returnBigBlocks",
    "RunInThread",
    "safeFilename",
    "sendInBulk",
    "shardOf",
    "shardOfDigest",
    "Signal",
    "SMALL_FILE",
    "SMALL_PAGE",
    "stopWaiting",
    "StoreError",
    "syncDirectory",
    "Unavailable",
    "UPSTREAM_OUTCOMES",
    "UpstreamError",
    "usableSha256",
    "whenWritable",
    "writeAll",
    "writeThrough",
]
