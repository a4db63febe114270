"""
Rendered response bodies, ready to serve: identity and gzip bytes with a
strong ETag each, and a bounded cache of them.
"""

from __future__ import annotations

import gzip
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable

__all__ = ["Body", "Rendered", "RenderCache"]


def _etag(data: bytes) -> str:
    """
    A strong entity tag over some bytes.
    """
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


@dataclass(frozen=True)
class Body:
    """
    One form of a page as served: its bytes, gzipped bytes, and their ETags.
    """

    data: bytes
    gzipped: bytes
    etag: str
    gzipEtag: str

    @classmethod
    def of(cls, data: bytes) -> "Body":
        """
        Prepare bytes for serving.  CPU work for a big page: run it off the
        reactor thread.
        """
        gzipped = gzip.compress(data, compresslevel=6, mtime=0)
        return cls(data, gzipped, _etag(data), _etag(gzipped))

    @property
    def size(self) -> int:
        """
        The bytes this body holds in memory.
        """
        return len(self.data) + len(self.gzipped)


@dataclass(frozen=True)
class Rendered:
    """
    Both forms of one page.
    """

    html: Body
    json: Body

    @property
    def size(self) -> int:
        """
        The bytes both forms hold in memory.
        """
        return self.html.size + self.json.size


class RenderCache:
    """
    The most recently used rendered pages, up to a number of bytes.
    """

    def __init__(self, maxBytes: int) -> None:
        self.maxBytes = maxBytes
        self.size = 0
        self._items: OrderedDict[Hashable, Rendered] = OrderedDict()

    def get(self, key: Hashable) -> Rendered | None:
        """
        The rendered page kept under C{key}, if any.
        """
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: Hashable, item: Rendered) -> None:
        """
        Keep a rendered page, forgetting the least recently used past the cap.
        """
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= old.size
        self._items[key] = item
        self.size += item.size
        while self.size > self.maxBytes and len(self._items) > 1:
            _, dropped = self._items.popitem(last=False)
            self.size -= dropped.size
