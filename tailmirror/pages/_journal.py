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
so a crash of the process can tear only the last line, which replay cuts
off and reports.  L{Journal.sync} makes the records written so far
durable against a crash of the machine; the mirror calls it within a
second of each write, so such a crash can lose at most the page refreshes
of that last second.

Pages that were replaced, and projects that are gone, leave dead records
behind.  L{Journal.compact} writes the live records to a new file beside
the journal and puts it in the journal's place; records appended while it
works are carried over, so none is lost.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from twisted.internet.defer import DeferredLock
from twisted.logger import Logger

from ..base import RunInThread, loadJSON, syncDirectory, writeAll
from ._records import Entry, JournalFile, checkedHeader, pageHeader, recordLine

__all__ = ["Entry", "Journal", "Pending"]

log = Logger()
T = TypeVar("T")

_decoder = json.JSONDecoder()
_HEADER_PREFIX = 4096

#: A journal smaller than this is never compacted automatically.
COMPACT_ABOVE = 8 * 1024 * 1024


@dataclass(frozen=True)
class Pending(Generic[T]):
    """
    A record to append, and what it does once written (settled): on the
    reactor thread, where the index is changed, after the record is in the
    file.  A record that cannot be written changes nothing.
    """

    line: bytes
    #: Given the file and where in it the record starts.
    settle: Callable[[JournalFile, int], T]


class Journal:
    """
    The journal file: replayed once at start, appended to afterwards.
    L{index} holds the latest entry of every project that is not gone.
    """

    def __init__(self, path: str, compactAbove: int = COMPACT_ABOVE) -> None:
        self.path = path
        self.compactAbove = compactAbove
        self.index: dict[str, Entry] = {}
        self._file = JournalFile(-1)
        self._size = 0
        #: The bytes of the records the index refers to.
        self._live = 0
        self.compacting = False
        #: Compactions finished since the journal was made.
        self.compactions = 0

    @property
    def size(self) -> int:
        """
        The journal's length in bytes.
        """
        return self._size

    @property
    def live(self) -> int:
        """
        The bytes of the records still in use.
        """
        return self._live

    def open(self) -> dict[str, Entry]:
        """
        Replay the journal, creating it if need be, and open it for appending.

        @return: L{index}.
        """
        leftover = self.path + ".compact"
        if os.path.exists(leftover):
            # A compaction the last run did not finish; the journal is whole.
            os.unlink(leftover)
            log.info("removed an unfinished journal compaction")
        self._file = JournalFile(os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644))
        self.index = {}
        end = self._replay()
        self._size = os.fstat(self._file.fd).st_size
        if self._size != end:
            log.warn(
                "journal {path}: cut off a torn last record of {torn} bytes",
                path=self.path,
                torn=self._size - end,
            )
            os.ftruncate(self._file.fd, end)
            self._size = end
        self._live = sum(e.record for e in self.index.values())
        return self.index

    def openForReading(self) -> dict[str, Entry]:
        """
        Replay the journal without changing it (a running mirror may be
        appending to it): for reading pages back, never for appending.

        @return: L{index}.
        @raise OSError: if there is no journal to read.
        """
        self._file = JournalFile(os.open(self.path, os.O_RDONLY))
        self.index = {}
        self._replay()
        return self.index

    def _replay(self) -> int:
        """
        Read every complete record into L{index}; return where the complete
        records end.  A record that is not one the mirror writes, whatever
        it holds, is skipped and reported by its line number.
        """
        position = 0
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    break
                try:
                    self._apply(line, position)
                except Exception as e:  # any bytes at all: the record is skipped
                    log.error(
                        "journal {path}: skipped the unreadable record on line {line} (byte {position}): {reason}",
                        path=self.path,
                        line=number,
                        position=position,
                        reason=" ".join(str(e).split())[:200] or type(e).__name__,
                    )
                position += len(line)
        return position

    def _apply(self, line: bytes, position: int) -> None:
        """
        Apply one record to the index.

        @raise ValueError: if it is not a record the mirror writes.
        """
        if not line.startswith(b"["):
            raise ValueError("not a journal record")
        head = line[:_HEADER_PREFIX].decode("ascii", "ignore")
        try:
            header, end = _decoder.raw_decode(head, 1)
        except ValueError:
            header, end = _decoder.raw_decode(line.decode("utf-8"), 1)
        name, fetched = checkedHeader(header)
        rest = line[end:]
        if rest == b"]\n":
            if header.get("gone") is True:
                self.index.pop(name, None)
            elif name in self.index:
                self.index[name].fetched = fetched
        elif rest.startswith(b",") and not header.get("gone"):
            page = rest[1:-2]
            if not (page.startswith(b"{") and page.endswith(b"}") and rest.endswith(b"]\n")):
                raise ValueError(f"the page of {name} is not a JSON object")
            where = (self._file, position + end + 1, len(page))
            self.index[name] = Entry(
                name,
                header.get("etag"),
                fetched,
                where,
                len(line),
                header.get("digest"),
                header.get("status"),
                header.get("lastSerial"),
            )
        else:
            raise ValueError("not a journal record")

    def write(self, line: bytes) -> tuple[JournalFile, int]:
        """
        Append one record in one write; undo a partial write.  Disk work:
        it may run in a thread, one write at a time, while no compaction
        carries records over (see L{compact}'s C{exclusive}).

        @return: the file and where in it the record starts.
        """
        f = self._file
        fd, start = f.fd, self._size
        try:
            writeAll(fd, line)
        except OSError:
            os.ftruncate(fd, start)
            raise
        self._size = start + len(line)
        return f, start

    def commit(self, pending: Pending[T]) -> T:
        """
        Write a record here and now, and settle it.
        """
        return pending.settle(*self.write(pending.line))

    def _replace(self, name: str, entry: Entry | None) -> None:
        """
        Make C{entry} the latest of a project, or forget the project.
        """
        old = self.index.pop(name, None)
        if old is not None:
            self._live -= old.record
        if entry is not None:
            self.index[name] = entry
            self._live += entry.record

    def pageRecord(
        self,
        name: str,
        etag: str | None,
        fetched: float,
        page: bytes,
        digest: str | None = None,
        status: str | None = None,
        lastSerial: str | None = None,
    ) -> Pending[Entry]:
        """
        The record of a page freshly fetched from upstream, given as JSON
        bytes, with the digest of the upstream body it was made from, the
        project's status and upstream's serial; settled, the project's
        latest entry.
        """
        line, offset = recordLine(pageHeader(name, fetched, etag, digest, status, lastSerial), page)

        def settle(f: JournalFile, start: int) -> Entry:
            entry = Entry(name, etag, fetched, (f, start + offset, len(page)), len(line), digest, status, lastSerial)
            self._replace(name, entry)
            return entry

        return Pending(line, settle)

    def freshRecord(self, entry: Entry, fetched: float) -> Pending[None]:
        """
        The record that upstream confirmed a page unchanged.
        """

        def settle(f: JournalFile, start: int) -> None:
            entry.fetched = fetched

        return Pending(recordLine({"name": entry.name, "fetched": fetched})[0], settle)

    def goneRecord(self, name: str, fetched: float) -> Pending[None]:
        """
        The record that upstream no longer has a project.
        """

        def settle(f: JournalFile, start: int) -> None:
            self._replace(name, None)

        return Pending(recordLine({"name": name, "fetched": fetched, "gone": True})[0], settle)

    def forget(self, entry: Entry) -> None:
        """
        Forget a project whose page cannot be read back, so that it is
        fetched afresh; its next page replaces the record.
        """
        if self.index.get(entry.name) is entry:
            self._replace(entry.name, None)

    @staticmethod
    def _read(entry: Entry) -> bytes:
        f, offset, length = entry.where
        return os.pread(f.fd, length, offset)

    def readPage(self, entry: Entry) -> dict[str, Any]:
        """
        Read a page back from the journal.  This is disk work: run it off the
        reactor thread.

        @raise ValueError: if the bytes there are not the page.
        """
        data = self._read(entry)
        page = loadJSON(data)
        if not isinstance(page, dict) or len(data) != entry.length:
            raise ValueError(f"journal record of {entry.name} is damaged")
        return page

    def sync(self) -> None:
        """
        Make every record written so far durable.  Disk work: run it off the
        reactor thread.
        """
        f = self._file
        if f.fd >= 0:
            os.fdatasync(f.fd)

    def wantsCompaction(self) -> bool:
        """
        Whether dead records dominate a journal big enough to bother.
        """
        return (
            not self.compacting
            and self._size > self.compactAbove
            and self._size - self._live > self._live
        )

    async def compact(self, runInThread: RunInThread, exclusive: DeferredLock | None = None) -> tuple[int, int]:
        """
        Rewrite the journal with only its live records, atomically: the
        live records are copied to a new file off the reactor thread, the
        records appended meanwhile are carried over on it, and the new file
        is renamed over the journal.  A failure leaves the journal as it was.
        Records written in a thread are written and settled holding
        C{exclusive}, which the compaction holds too while it takes stock of
        the live records and while it carries the others over: none is
        half written, or written but not yet in the index, as it does.

        @return: the journal's size before and after.
        """
        if self.compacting:
            raise RuntimeError("a compaction is running already")
        self.compacting = True
        target = self.path + ".compact"
        held = exclusive if exclusive is not None else DeferredLock()
        try:
            # Holding the lock, no record is between its write and its
            # settling: every record below C{before} is in the index.
            async with held:
                old, before = self._file, self._size
                plan = [
                    (e, e.where, pageHeader(e.name, e.fetched, e.etag, e.digest, e.status, e.lastSerial))
                    for e in self.index.values()
                ]
            fd, places = await runInThread(self._writeLive, target, plan)
            new = JournalFile(fd)
            async with held:
                if self._file is not old:
                    new.close()
                    raise RuntimeError("the journal was closed meanwhile")
                self._carryOver(old, before, new, plan, places)
        except BaseException:
            if os.path.exists(target):
                os.unlink(target)
            raise
        finally:
            self.compacting = False
        await runInThread(self._settle, new)
        self.compactions += 1
        return before, self._size

    @staticmethod
    def _writeLive(
        target: str, plan: list[tuple[Entry, tuple[JournalFile, int, int], dict[str, Any]]]
    ) -> tuple[int, list[tuple[int, int]]]:
        """
        Write the live records to C{target}, durably; say where each page
        went and how long its record is.  Runs in a thread, reading pages
        from where they were.
        """
        fd = os.open(target, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            places: list[tuple[int, int]] = []
            batch: list[bytes] = []
            position = batched = 0
            for entry, (f, offset, length), header in plan:
                page = os.pread(f.fd, length, offset)
                if len(page) != length:
                    raise OSError(f"the page of {entry.name} is cut short")
                line, start = recordLine(header, page)
                places.append((position + start, len(line)))
                position += len(line)
                batch.append(line)
                batched += len(line)
                if batched >= 1 << 20:
                    writeAll(fd, b"".join(batch))
                    batch, batched = [], 0
            writeAll(fd, b"".join(batch))
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd, places

    def _carryOver(
        self,
        old: JournalFile,
        before: int,
        new: JournalFile,
        plan: list[tuple[Entry, tuple[JournalFile, int, int], dict[str, Any]]],
        places: list[tuple[int, int]],
    ) -> None:
        """
        On the reactor thread, where no record can be appended meanwhile:
        copy the records appended since the compaction began, rename the
        new file over the journal, and point every entry at its new place.
        """
        base = os.fstat(new.fd).st_size
        try:
            writeAll(new.fd, os.pread(old.fd, self._size - before, before))
            os.rename(self.path + ".compact", self.path)
        except BaseException:
            new.close()
            raise
        # Every planned page is in the new file, replaced since or not.
        for (entry, where, _), (offset, record) in zip(plan, places, strict=True):
            entry.where = (new, offset, where[2])
            entry.record = record
        for entry in self.index.values():
            f, offset, length = entry.where
            if f is old:  # a page appended since the compaction began
                assert offset >= before
                entry.where = (new, base + offset - before, length)
        self._file = new
        self._size = base + self._size - before
        self._live = sum(e.record for e in self.index.values())

    def _settle(self, new: JournalFile) -> None:
        os.fsync(new.fd)
        syncDirectory(os.path.dirname(os.path.abspath(self.path)))

    def close(self) -> None:
        """
        Close the journal.
        """
        self._file.close()
