"""
TODO
"""


from ._budget import Limits, diskSpace, formatSize
from ._walk import Walk, walkHere, walkInChild
from ._download import BACKLOG_MAX, Download, Follower
from ._lock import CacheLock, LockHeld
from ._store import FileStore
from ._tree import TOUCH_EVERY, FileTree, OpenFile

__all__ = [
    "BACKLOG_MAX",
    "CacheLock",
    "Download",
    "FileStore",
    "FileTree",
    "Follower",
    "Limits",
    "LockHeld",
    "OpenFile",
    "TOUCH_EVERY",
    "Walk",
    "diskSpace",
    "formatSize",
    "walkHere",
    "walkInChild",
]
