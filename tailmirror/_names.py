"""
Project names (PEP 503, PEP 508) and the file names and paths the mirror serves.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from urllib.parse import quote

from packaging.utils import InvalidName, canonicalize_name

__all__ = ["canonicalName", "safeFilename", "mirrorPath", "shardPath"]

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
    if isinstance(value, str) and _SHA256.fullmatch(value.lower()):
        return value.lower()
    return None


def mirrorPath(filename: str, url: str, hashes: object) -> str:
    """
    The path of a file below the mirror's root, without a leading slash:
    C{root/pypi/+f/<3 hex>/<13 hex>/<filename>} by the file's sha256, or
    C{root/pypi/+f/_url/<digest>/<filename>} by its upstream URL where it
    has no usable sha256.
    """
    sha = usableSha256(hashes)
    if sha is None:
        shard = ("_url", hashlib.sha256(url.encode("utf-8")).hexdigest()[:16])
    else:
        shard = (sha[:3], sha[3:16])
    return shardPath(shard, filename)


def shardPath(shard: tuple[str, str], filename: str) -> str:
    """
    The path of a file below the mirror's root by its shard, C{(<3 hex>,
    <13 hex>)} or C{("_url", <digest>)}, as the pages link it.
    """
    return f"root/pypi/+f/{shard[0]}/{shard[1]}/{quote(filename)}"
