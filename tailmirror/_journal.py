"""
The append-only journal of project pages.

Each line is one JSON record, C{[header]} or C{[header, page]}:

    [{"name":"foo","fetched":1700000000.0,"etag":"\\"abc\\""},{"meta":...}]
    [{"name":"foo","fetched":1700000900.0}]
    [{"name":"foo","fetched":1700001800.0,"gone":true}]

The first is a page as fetched from upstream, the second a revalidation
that found it unchanged, the third upstream's word that the project is gone.
Headers are plain ASCII and come first, so that replay reads only them
and remembers where each project's latest page sits; pages are read back on
demand.  Memory thus grows with the number of projects, not their files.

Each record is written with one C{write} to a file opened for appending,
so a crash can tear only the last line, which replay cuts off and reports.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

__all__ = ["Entry", "Journal"]

log = Logger()

_decoder = json.JSONDecoder()
_HEADER_PREFIX = 4096


@dataclass(slots=True)
class Entry:
    """
    What the mirror keeps in memory of a project: where its latest page
    sits in the journal, upstream's validator for it, and when it was last
    known fresh.
    """

    name: str
    etag: str | None
    fetched: float
    offset: int
    length: int


class Journal:
    """
    The journal file: replayed once at start, appended to afterwards.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self._size = 0

    def open(self) -> dict[str, Entry]:
        """
        Replay the journal, creating it if need be, and open it for appending.

        @return: the latest entry of every project that is not gone.
        """
        index: dict[str, Entry] = {}
        end = 0
        if os.path.exists(self.path):
            end = self._replay(index)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        if self._size != end:
            log.warn(
                "journal {path}: cut off a torn last record of {torn} bytes",
                path=self.path,
                torn=self._size - end,
            )
            os.ftruncate(self._fd, end)
            self._size = end
        return index

    def _replay(self, index: dict[str, Entry]) -> int:
        """
        Read every complete record into C{index}; return where the complete
        records end.
        """
        position = 0
        with open(self.path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    self._apply(index, line, position)
                except ValueError as e:
                    log.error(
                        "journal {path}: skipped an unreadable record at byte {position}: {why}",
                        path=self.path,
                        position=position,
                        why=str(e),
                    )
                position += len(line)
        return position

    @staticmethod
    def _apply(index: dict[str, Entry], line: bytes, position: int) -> None:
        """
        Apply one record to the index.
        """
        head = line[:_HEADER_PREFIX].decode("ascii", "ignore")
        try:
            header, end = _decoder.raw_decode(head, 1)
        except ValueError:
            header, end = _decoder.raw_decode(line.decode("utf-8"), 1)
        if not line.startswith(b"[") or not isinstance(header, dict):
            raise ValueError("not a journal record")
        name, fetched = header["name"], float(header["fetched"])
        if header.get("gone"):
            index.pop(name, None)
        elif line[end : end + 1] == b",":
            offset = end + 1
            length = len(line) - offset - 2
            index[name] = Entry(name, header.get("etag"), fetched, position + offset, length)
        elif name in index:
            index[name].fetched = fetched

    def _append(self, header: dict[str, Any], page: bytes | None = None) -> int:
        """
        Append one record in one write; undo a partial write.

        @return: where the page starts in the file.
        """
        head = json.dumps(header, separators=(",", ":")).encode("ascii")
        parts = [b"[", head]
        if page is not None:
            parts += [b",", page]
        parts.append(b"]\n")
        line = b"".join(parts)
        start = self._size
        try:
            written = os.write(self._fd, line)
            while written < len(line):
                written += os.write(self._fd, line[written:])
        except OSError:
            os.ftruncate(self._fd, start)
            raise
        self._size = start + len(line)
        return start + 2 + len(head)

    def appendPage(self, name: str, etag: str | None, fetched: float, page: bytes) -> Entry:
        """
        Record a page freshly fetched from upstream, given as JSON bytes.
        """
        offset = self._append({"name": name, "fetched": fetched, "etag": etag}, page)
        return Entry(name, etag, fetched, offset, len(page))

    def appendFresh(self, entry: Entry, fetched: float) -> None:
        """
        Record that upstream confirmed a page unchanged.
        """
        self._append({"name": entry.name, "fetched": fetched})
        entry.fetched = fetched

    def appendGone(self, name: str, fetched: float) -> None:
        """
        Record that upstream no longer has a project.
        """
        self._append({"name": name, "fetched": fetched, "gone": True})

    def holds(self, entry: Entry, page: bytes) -> bool:
        """
        Whether the journal holds exactly C{page} as C{entry}'s page.  This
        is disk work: run it off the reactor thread.
        """
        return entry.length == len(page) and os.pread(self._fd, entry.length, entry.offset) == page

    def readPage(self, entry: Entry) -> dict[str, Any]:
        """
        Read a page back from the journal.  This is disk work: run it off the
        reactor thread.

        @raise ValueError: if the bytes there are not the page.
        """
        data = os.pread(self._fd, entry.length, entry.offset)
        page = json.loads(data)
        if not isinstance(page, dict) or len(data) != entry.length:
            raise ValueError(f"journal record of {entry.name} is damaged")
        return page

    def close(self) -> None:
        """
        Close the journal.
        """
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
