"""
Core metadata read out of wheels, for indexes that serve none (PEP 658).

A page that gives no core metadata for a wheel gets the mirror's own: the
entry says C{core-metadata: true}, and the C{.metadata} path is answered
with the wheel's C{<name>.dist-info/METADATA}, byte for byte.  It is read
from the kept wheel when the tree has it, else from upstream with range
requests: the end of the zip (its central directory), then the one member.

Reading a zip is left to L{zipfile}, over a L{Sparse} file that holds only
the ranges fetched so far and asks, by raising L{Need}, for the next.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import IO, Any

from packaging.utils import canonicalize_name

__all__ = ["Need", "NoMetadata", "Sparse", "TAIL", "metadataFromZip"]

#: Bytes asked for at a time: the end of a wheel first (its central
#: directory, where a small wheel's is whole), then at least this much of
#: whatever the zip's reader wants next.
TAIL = 64 * 1024

#: The most of a wheel read by ranges before the mirror gives up: a central
#: directory and a METADATA are a small part of any wheel.
RANGED_MAX = 64 * 1024 * 1024

#: The largest METADATA taken out of a wheel.
METADATA_MAX = 16 * 1024 * 1024

_METADATA = re.compile(r"([^/]+)\.dist-info/METADATA")


class NoMetadata(Exception):
    """
    The wheel has no core metadata the mirror can serve: why, in words.
    """


class Need(Exception):
    """
    L{Sparse} does not hold these bytes yet: C{[start, end)} of the file.
    """

    def __init__(self, start: int, end: int) -> None:
        super().__init__(start, end)
        self.start = start
        self.end = end


class Sparse(io.RawIOBase):
    """
    A read-only file of C{size} bytes of which only some ranges are here.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self._pos = 0
        self._held: list[tuple[int, bytes]] = []

    def held(self) -> int:
        """
        How many bytes it holds.
        """
        return sum(len(data) for _, data in self._held)

    def add(self, start: int, data: bytes) -> None:
        """
        Hold bytes from C{start} on.
        """
        self._held.append((start, data))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = self.size + offset
        if self._pos < 0:
            raise ValueError("negative seek position")
        return self._pos

    def read(self, n: int | None = -1) -> bytes:
        start = self._pos
        end = self.size if n is None or n < 0 else min(self.size, start + n)
        if start >= end:
            return b""
        for first, data in self._held:
            if first <= start and end <= first + len(data):
                self._pos = end
                return data[start - first : end - first]
        raise Need(start, end)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def metadataFromZip(file: IO[bytes] | io.RawIOBase, filename: str) -> bytes:
    """
    The C{METADATA} of the wheel C{filename} whose bytes C{file} reads.
    CPU work for a big wheel (its central directory): run it off the
    reactor.

    @raise Need: if C{file} is a L{Sparse} that lacks bytes it must read.
    @raise NoMetadata: if the wheel has no single readable METADATA.
    """
    try:
        with zipfile.ZipFile(file) as wheel:
            member = _member(wheel, filename)
            if member.file_size > METADATA_MAX:
                raise NoMetadata(f"its METADATA is larger than {METADATA_MAX} bytes")
            return wheel.read(member)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError) as e:
        raise NoMetadata(f"it is not a readable zip ({type(e).__name__}: {str(e)[:120]})") from None
    except OSError as e:
        raise NoMetadata(f"it cannot be read ({e})") from None


def _member(wheel: zipfile.ZipFile, filename: str) -> zipfile.ZipInfo:
    """
    The wheel's one C{.dist-info/METADATA}: the only one at the top, or
    the one whose directory names the wheel's project.
    """
    found = [info for info in wheel.infolist() if _METADATA.fullmatch(info.filename)]
    if len(found) > 1:
        project = canonicalize_name(filename.partition("-")[0])
        found = [
            info for info in found if canonicalize_name(info.filename.partition("-")[0]) == project
        ]
    if len(found) != 1:
        raise NoMetadata("it has no .dist-info/METADATA" if not found else "it has several .dist-info/METADATA")
    return found[0]
