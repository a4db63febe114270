"""
Where an index's files live: the mirror's URL paths for them, the paths in
the file tree, and the way back from either to the file they name.

Pages link a file as C{root/<index>/+f/<3 hex>/<13 hex>/<filename>}, by the
first 16 hex digits of its sha256 (devpi's layout), or as
C{root/<index>/+f/_url/<16 hex>/<filename>}, by a digest of its upstream
URL where the link gives no usable sha256.  Each index has its own
L{IndexLayout}: L{PYPI}, the index of C{--upstream}, serves its pages at
C{/simple/}; every other at C{/<index>/simple/}.

The tree below C{+files/} uses the same relative paths, but files are
content-addressed: a file named by its sha256 is kept once, at the path
L{PYPI} gives it (where a mirror of one index always kept it), whichever
index it was fetched through.  Only a C{_url} file, which no hash names,
is kept under its own index.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from ._names import safeFilename, usableSha256

__all__ = [
    "FileKey",
    "IndexLayout",
    "METADATA",
    "PROVENANCE",
    "PYPI",
    "indexName",
    "mirrorPath",
    "parseFilePath",
    "shardOf",
    "shardOfDigest",
]

METADATA = ".metadata"
#: The suffix of the path of a file's provenance object (PEP 740).
PROVENANCE = ".provenance"
_HEX3 = re.compile(r"[0-9a-f]{3}")
_HEX13 = re.compile(r"[0-9a-f]{13}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_INDEX_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: A file name that L{quote} leaves as it is: most, a few thousand a page.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.~-]+")
#: The index of C{--upstream}, whose pages are also at C{/simple/}.
DEFAULT_INDEX = "pypi"
#: Names no other index may take: they are the mirror's own paths.
_RESERVED = frozenset({DEFAULT_INDEX, "simple", "root"})


def indexName(name: str) -> str | None:
    """
    An index's name as C{--index NAME=URL} may give it: lower-case letters,
    digits, C{-} and C{_}, not one of the mirror's own paths; L{None} if
    it is not one.
    """
    if not _INDEX_NAME.fullmatch(name) or name in _RESERVED:
        return None
    return name


@dataclass(frozen=True)
class FileKey:
    """
    A path below C{/root/<index>/+f/} that may name a file of the mirror.

    @ivar shard: C{(<3 hex>, <13 hex>)} or C{("_url", <16 hex>)}.
    @ivar filename: the distribution's file name, unquoted.
    @ivar metadata: whether the path names the file's core metadata.
    @ivar index: the name of the index the file comes from.
    @ivar provenance: whether the path names the file's provenance (PEP 740).
    """

    shard: tuple[str, str]
    filename: str
    metadata: bool
    index: str = "pypi"
    provenance: bool = False

    @property
    def suffix(self) -> str:
        """
        What follows the distribution's name in the path.
        """
        return METADATA if self.metadata else PROVENANCE if self.provenance else ""

    @property
    def linkPath(self) -> str:
        """
        The distribution's mirror path as the pages write it.
        """
        return _shardPath(self.index, self.shard, self.filename)

    @property
    def parts(self) -> tuple[str, ...]:
        """
        The path's segments below the tree's root, unquoted.
        """
        return ("root", self.index, "+f", *self.shard, self.filename + self.suffix)

    @property
    def storeParts(self) -> tuple[str, ...]:
        """
        The path's segments in the tree: by content where a sha256 names
        the file, whichever index it came through.
        """
        if self.shard[0] == "_url" or self.index == DEFAULT_INDEX:
            return self.parts
        return ("root", DEFAULT_INDEX, "+f", *self.shard, self.filename + self.suffix)

    @property
    def etag(self) -> str:
        """
        A strong entity tag: what the path names never changes.
        """
        return f'"{self.shard[0]}{self.shard[1]}{self.suffix}"'

    def __str__(self) -> str:
        return "/".join(self.parts)


def _shardPath(index: str, shard: tuple[str, str], filename: str) -> str:
    name = filename if _PLAIN_NAME.fullmatch(filename) else quote(filename)
    return f"root/{index}/+f/{shard[0]}/{shard[1]}/{name}"


def _validShard(first: str, second: str) -> bool:
    return bool(
        (first == "_url" and _HEX16.fullmatch(second))
        or (_HEX3.fullmatch(first) and _HEX13.fullmatch(second))
    )


def shardOf(url: str, hashes: object) -> tuple[str, str]:
    """
    The shard of a file's path: by its sha256, or by its upstream URL where
    it has no usable sha256.
    """
    return shardOfDigest(url, usableSha256(hashes))


def shardOfDigest(url: str, sha: str | None) -> tuple[str, str]:
    """
    L{shardOf} a file whose usable sha256 is known already (L{None}: none).
    """
    if sha is None:
        return ("_url", hashlib.sha256(url.encode("utf-8")).hexdigest()[:16])
    return (sha[:3], sha[3:16])


#: Request paths an index remembers having parsed, at most (all forgotten
#: at once past it): a warm file is asked for by the same path again and
#: again.
PARSED_KEPT = 4096


class IndexLayout:
    """
    The file paths of one index, by its name.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        #: Where the index's file URLs begin, as a request path starts.
        self.urlPrefix = f"/root/{name}/".encode("ascii")
        #: Where its project pages are, from the mirror's root.
        self.pagesPath = "/simple/" if name == DEFAULT_INDEX else f"/{name}/simple/"
        #: The mirror's root, relative to one of its project pages.
        self.rootFromPage = "../" * self.pagesPath.count("/")
        self._parsed: dict[bytes, FileKey | None] = {}

    def linkPath(self, filename: str, url: str, hashes: object) -> str:
        """
        The path of a file below the mirror's root, without a leading slash,
        as the pages link it: see L{shardOf}.
        """
        return _shardPath(self.name, shardOf(url, hashes), filename)

    def parse(self, path: bytes) -> FileKey | None:
        """
        The file a request path names, or L{None} when it cannot name one;
        read once, while L{PARSED_KEPT} paths are remembered.
        """
        try:
            return self._parsed[path]
        except KeyError:
            pass
        key = self._parse(path)
        if len(self._parsed) >= PARSED_KEPT:
            self._parsed.clear()
        self._parsed[path] = key
        return key

    def _parse(self, path: bytes) -> FileKey | None:
        segments = path.split(b"/")
        if len(segments) != 7:
            return None
        try:
            # Clients may escape any of it: pip sends "+f" as "%2Bf".
            decoded = [unquote(s.decode("ascii"), errors="strict") for s in segments]
        except UnicodeDecodeError:
            return None
        if decoded[:4] != ["", "root", self.name, "+f"]:
            return None
        return self.fromParts(decoded[4:])

    def fromParts(self, parts: list[str] | tuple[str, ...]) -> FileKey | None:
        """
        The file that the last three segments of a path name, unquoted:
        C{(<shard>, <shard>, <name>)}; L{None} if they name none.  The
        inverse of L{FileKey.parts}, for the tree.
        """
        if len(parts) != 3:
            return None
        first, second, name = parts
        if not _validShard(first, second):
            return None
        metadata = name.endswith(METADATA)
        provenance = name.endswith(PROVENANCE)
        if metadata or provenance:
            name = name[: -len(METADATA if metadata else PROVENANCE)]
        if not safeFilename(name):
            return None
        return FileKey((first, second), name, metadata, self.name, provenance)


#: The layout of the index given as C{--upstream}.
PYPI = IndexLayout(DEFAULT_INDEX)


def mirrorPath(filename: str, url: str, hashes: object) -> str:
    """
    A file's path in L{PYPI}: see L{IndexLayout.linkPath}.
    """
    return PYPI.linkPath(filename, url, hashes)


def parseFilePath(path: bytes) -> FileKey | None:
    """
    The file of L{PYPI} a request path names: see L{IndexLayout.parse}.
    """
    return PYPI.parse(path)
