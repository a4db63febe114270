"""
The files wing: package files, immutable and content-addressed.  A cold
file is downloaded once however many clients wait (L{FileStore},
L{Download}: streamed to a temporary file, hashed as it arrives, checked
against its sha256 and put in place, or thrown away); the L{FileTree}
keeps the files in their sha256-sharded places and records each one's use;
its budget evicts the least recently used when the cache passes
C{--max-size} or the disk's free space C{--min-free} (an eviction lives
here), counting the tree by walks in a child process; core metadata is read
from a wheel's tail where upstream offers none; the L{CacheLock} keeps a
cache directory to one process.  With C{--store}, a node of a L{Fleet}
shares one L{Bucket} of object storage with the others: files looked for
there before upstream, put there after, one download per file across the
fleet (leases), pages kept for nodes that start empty.

It stands on the pages wing (a cold file's link is on its project's page),
the upstream wing and the ground floor.
"""

from ._bucket import Bucket, BucketError, parseStore
from ._budget import Limits, diskSpace, formatSize
from ._download import BACKLOG_MAX, Download, Follower
from ._fleet import Fleet, FleetUpstream
from ._lock import CacheLock, LockHeld
from ._store import FileStore
from ._tree import TOUCH_EVERY, FileTree, OpenFile
from ._walk import Walk, walkHere, walkInChild

__all__ = [
    "BACKLOG_MAX",
    "Bucket",
    "BucketError",
    "Fleet",
    "FleetUpstream",
    "parseStore",
    "CacheLock",
    "diskSpace",
    "Download",
    "FileStore",
    "FileTree",
    "Follower",
    "formatSize",
    "Limits",
    "LockHeld",
    "OpenFile",
    "TOUCH_EVERY",
    "Walk",
    "walkHere",
    "walkInChild",
]
