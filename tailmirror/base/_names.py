"""
Project names (PEP 503, PEP 508), and the file names and hashes the mirror
accepts from upstream.  (Paths are L{tailmirror.base._layout}'s.)
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

from packaging.utils import InvalidName, canonicalize_name
from twisted.logger import Logger

__all__ = ["canonicalName", "noteUnreadable", "safeFilename", "usableSha256"]

log = Logger()

#: File names said to be unreadable, remembered at most (the oldest
#: forgotten first), so that each is said once.
UNREADABLE_TOLD = 10_000
_told: dict[str, None] = {}
_telling = threading.Lock()

_SHA256 = re.compile(r"[0-9a-f]{64}")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")
MAX_FILENAME_BYTES = 255


@lru_cache(maxsize=4096)
def canonicalName(name: str) -> str | None:
    """
    The PEP 503 normalized form of a project name, or L{None} when C{name}
    is not a valid project name (PEP 508) and so can name no project.
    """
    if not name.isascii():
        return None
    try:
        return canonicalize_name(name, validate=True)
    except InvalidName:
        return None


def safeFilename(filename: str) -> bool:
    """
    Whether C{filename} may become one path segment of the file tree: no
    separators, no control characters, not a dot name, not absurdly long.
    """
    return (
        filename not in ("", ".", "..")
        and not _UNSAFE.search(filename)
        and len(filename.encode("utf-8", "surrogatepass")) <= MAX_FILENAME_BYTES
    )


def usableSha256(hashes: object) -> str | None:
    """
    The lowercase sha256 hex digest from a file's C{hashes} mapping, or
    L{None} where there is no well-formed one.
    """
    if not isinstance(hashes, dict):
        return None
    value = hashes.get("sha256")
    if isinstance(value, str) and len(value) == 64:
        # Lowered once, matched once: twice per file of every page parsed.
        value = value.lower()
        if _SHA256.fullmatch(value):
            return value
    return None


def noteUnreadable(filename: str, reason: object) -> None:
    """
    Say, once for each file name and at info level, that the mirror cannot
    read a file's name (a wheel's tags, a version) and passes the file by
    where it must read it, as pip and uv do.  Any thread may call it.
    """
    with _telling:
        if filename in _told:
            return
        _told[filename] = None
        if len(_told) > UNREADABLE_TOLD:
            del _told[next(iter(_told))]
    log.info(
        "{file}: the mirror cannot read this file name ({reason}); it passes the file by, as pip and uv do",
        file=filename,
        reason=str(reason)[:200],
    )
