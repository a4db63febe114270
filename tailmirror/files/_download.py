"""
One download of one file from upstream into the tree.

A download streams into a temporary file, hashed as it is written, and is
put into the tree only when its hash (and size, where the page gives one)
match.  Every client waiting for it follows it as its bytes reach the
disk; all but the last byte until the whole file is verified, so nobody
can receive a complete copy of a wrong file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any, Awaitable, Callable

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed

from ..base import FileKey, IMirrorEvents, NotFound, RunInThread, Signal, StoreError, Unavailable, UpstreamError, writeAll
from ..pages import FileLink
from ..upstream import FileBody, Priority, Upstream, priorityOf, typeName
from ._tree import FileTree, OpenFile

__all__ = ["BACKLOG_MAX", "Download", "Follower", "PENDING_MAX"]

log = Logger()

#: Received bytes that may wait for the disk before upstream is paused.
PENDING_MAX = 8 * 1024 * 1024

#: Received bytes that all downloads together may hold unwritten before
#: each one's upstream is paused: with dozens of downloads at once
#: (C{--file-requests}), a disk slower than the network would otherwise
#: have each of them hold L{PENDING_MAX}.
BACKLOG_MAX = 32 * 1024 * 1024

#: The first this many bytes of a file are written and hashed on the
#: reactor thread: a small, bounded write to a file of the mirror's own
#: costs less than a round trip through the thread pool, which a busy
#: reactor answers milliseconds late.  Core metadata files and small wheels
#: are written so whole; the rest of a bigger file goes through the pool.
INLINE_MAX = 64 * 1024


#: How the reason of a download whose bytes failed their check begins.
CORRUPT = "upstream sent a corrupt file"


class Follower:
    """
    What a L{Download} tells of its progress: something sending its bytes.
    """

    def progress(self) -> None:
        """
        More bytes may be read, or the download ended.
        """
        raise NotImplementedError()


class _BodyTooLong(Exception):
    pass


class _Corrupt(Exception):
    """
    Upstream's bytes are not the file its page links.
    """


class Download:
    """
    One download of one file, from finding its link to keeping it.

    """

    def __init__(
        self,
        key: FileKey,
        resolve: Callable[[FileKey], Awaitable[FileLink]],
        upstream: Upstream,
        tree: FileTree,
        clock: IReactorTime,
        runInThread: RunInThread,
        events: IMirrorEvents,
        fromWheel: Callable[[FileKey, FileLink, Priority], Awaitable[bytes]] | None = None,
        background: bool | Priority = False,
    ) -> None:
        self.key = key
        #: Whether it is a prefetch's, which asks upstream after clients,
        #: until a client asks for the file too.
        self.priority = priorityOf(background)
        self._fromWheel = fromWheel
        self._resolve = resolve
        self._upstream = upstream
        self._tree = tree
        self._clock = clock
        self._run = runInThread
        self._events = events
        #: The length clients are told, where known before the end.
        self.length: int | None = None
        #: Bytes received, and bytes written (which clients may read).
        self.received = 0
        self.written = 0
        self._link: FileLink | None = None
        self._reserved = 0
        self._pending: list[bytes] = []
        self._pendingBytes = 0
        #: Bytes received and not yet written: pending, or being written.
        self._unwritten = 0
        self._writing: Deferred[Any] | None = None
        #: The temporary file being made.
        self._opening: Deferred[None] | None = None
        self._writeFailure: Failure | None = None
        self._drained: Signal[None] | None = None
        self._body: FileBody | None = None
        self.verified = False
        self.failed = False
        #: Why it failed, as a client is told.
        self.problem: Unavailable | None = None
        #: When upstream began sending.
        self.startedAt: float | None = None
        self._fd = -1
        self._tmp: str | None = None
        self._hash: Any = None
        self.followers: set[Follower] = set()
        #: Fires with this download when bytes start to arrive.
        self.started: Signal[Download] = Signal()
        #: Fires once every byte is written and verified, before the file
        #: is kept (L{fd} is then the whole file, until L{finished}).
        self.whole: Signal[None] = Signal()
        #: Fires with the file's path in the tree once it is there.
        self.finished: Signal[str] = Signal()

    def copy(self) -> OpenFile | None:
        """
        The file as far as it is written, open for reading on a descriptor
        of its own, which the caller closes: followers read it as it grows;
        once it is whole and verified, it is the verified file, whatever
        becomes of keeping it.  L{None} once the download's temporary file
        is closed (it is kept, or it failed).
        """
        return None if self._fd < 0 else OpenFile(os.dup(self._fd), self.written)

    @property
    def readable(self) -> int:
        """
        How many bytes may be sent to clients now.
        """
        return self.written if self.verified else max(0, self.written - 1)

    async def run(self) -> None:
        """
        Find the file's link, make room for it, download and verify it, and
        keep it.
        """
        started = self._clock.seconds()
        try:
            self._link = link = await self._resolve(self.key)
            if link.algorithm is None:
                # Nothing to check its bytes against: taken only from where
                # the operator said files come from.
                refusal = self._upstream.unhashedRefusal(link.url)
                if refusal is not None:
                    raise UpstreamError(502, refusal)
            self._reserved = self._tree.admit(link.size)
            # Made in a thread, while upstream is asked: on a busy disk even
            # making a file waits for other files' syncs, and the trip
            # through the pool need not come before the request.
            self._opening = opening = self._run(self._tree.temporary)
            opening.addCallbacks(self._opened, self._cannotOpen)
            try:
                if link.inWheel and self._fromWheel is not None:
                    await self._metadataOf(link, self._fromWheel)
                else:
                    await self._upstream.fetchFile(link.url, self, self.priority)
            finally:
                # Whatever happened, no thread is still at the file.
                await self._allWritten()
            self._verify(link)
            if self.key.provenance:
                problem = await self._run(provenanceProblem, self._fd, self.written, link.subject)
                if problem is not None:
                    raise _Corrupt(problem)
            self.verified = True
            self._tell()
            self.whole.fire(None)
            path = await self._keep()
        except BaseException as e:
            self._fail(e, self._clock.seconds() - started)
        else:
            self._events.fileKept(self.key, self.written, self._clock.seconds() - started)
            self.finished.fire(path)
        finally:
            self._forget()
            self._tree.release(self._reserved)
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    async def _metadataOf(
        self, link: FileLink, fromWheel: Callable[[FileKey, FileLink, Priority], Awaitable[bytes]]
    ) -> None:
        """
        Core metadata read out of its wheel, written as if it came so.
        """
        data = await fromWheel(self.key, link, self.priority)
        self.begin(len(data), None)
        self.write(data)

    def begin(self, length: int | None, body: FileBody | None) -> None:
        """
        Upstream answered: make room for what it says it sends, and let
        clients start.
        """
        assert self._link is not None
        if self._link.size is None and length is not None:
            self._reserved = self._tree.admit(length)
        self.length = self._link.size if self._link.size is not None else length
        if self._link.algorithm is not None:
            self._hash = hashlib.new(self._link.algorithm)
        if self._writeFailure is not None:
            self._writeFailure.raiseException()  # no temporary file could be made
        self._body = body
        self.startedAt = self._clock.seconds()
        self._events.downloadStarted(self.key, self.length)
        self._maybeStarted()

    def _opened(self, made: tuple[int, str]) -> None:
        """
        The temporary file is made: write what waits for it.
        """
        self._opening = None
        self._fd, self._tmp = made
        self._maybeStarted()
        self._writeBatch()

    def _cannotOpen(self, failure: Failure) -> None:
        """
        No temporary file can be made: the download cannot be kept.
        """
        self._opening = None
        e = failure.value
        self._writeFailure = Failure(StoreError.cannotWrite(e)) if isinstance(e, OSError) else failure
        self._pending = []
        self._forget()
        self._stopBody()

    def _maybeStarted(self) -> None:
        """
        Clients may follow the download once upstream has begun sending and
        there is a file to read what it sent from.
        """
        if self.startedAt is not None and self._fd >= 0:
            self.started.fire(self)

    def _stopBody(self) -> None:
        if self._body is not None and not self._body.done.called:
            self._body.stop()

    def write(self, data: bytes) -> None:
        """
        More of the body, from upstream: it is written to the temporary file and
        hashed off the reactor thread, a batch at a time, while more
        arrives.  Upstream is paused while too much waits for the disk.
        """
        if self._writeFailure is not None:
            return  # nothing more can be kept; the body is being stopped
        if self.length is not None and self.received + len(data) > self.length:
            raise _BodyTooLong()
        self.received += len(data)
        self._pending.append(data)
        self._pendingBytes += len(data)
        self._unwritten += len(data)
        self._tree.backlog += len(data)
        if self._body is not None and (self._pendingBytes > PENDING_MAX or self._tree.backlog > BACKLOG_MAX):
            self._body.pause()
        self._writeBatch()

    def _writeBatch(self) -> None:
        """
        Write and hash what is pending, both at once, in the thread pool
        (or at once, while the file is small: L{INLINE_MAX}).
        """
        if self._writing is not None or not self._pending or self._fd < 0:
            return
        batch, self._pending, size = self._pending, [], self._pendingBytes
        self._pendingBytes = 0
        if self.received <= INLINE_MAX:
            # The first bytes of a file (all of a small one): see INLINE_MAX.
            try:
                _writeAll(self._fd, batch)
            except OSError:
                self._cannotWrite(Failure())
                return
            if self._hash is not None:
                _hashAll(self._hash, batch)
            self._wrote(None, size)
            return
        work = [self._run(_writeAll, self._fd, batch)]
        if self._hash is not None:
            work.append(self._run(_hashAll, self._hash, batch))
        self._writing = gatherResults(work, consumeErrors=True)
        self._writing.addCallbacks(self._wrote, self._cannotWriteAny, (size,))

    def _wrote(self, result: object, size: int) -> None:
        self._writing = None
        self.written += size
        self._unwritten -= size
        self._tree.backlog -= size
        if self._body is not None:
            self._body.resume()
        self._writeBatch()
        self._tell()
        if self._writing is None and self._drained is not None:
            self._drained.fire(None)

    def _cannotWriteAny(self, failure: Failure) -> None:
        self._cannotWrite(failure.value.subFailure)  # type: ignore[union-attr]

    def _cannotWrite(self, failure: Failure) -> None:
        self._writing = None
        self._writeFailure = failure
        self._pending = []
        self._forget()
        self._stopBody()  # the cache cannot take the file
        if self._drained is not None:
            self._drained.fire(None)

    def _forget(self) -> None:
        """
        What is received and unwritten will never be written: it no longer
        counts in the tree's backlog.
        """
        self._tree.backlog -= self._unwritten
        self._unwritten = 0

    async def _allWritten(self) -> None:
        """
        Wait until everything received is on disk.
        """
        if self._opening is not None:
            await self._opening
        if self._writing is not None:
            self._drained = Signal()
            await self._drained.wait()
            self._drained = None
        if self._writeFailure is not None:
            self._writeFailure.raiseException()

    def _tell(self) -> None:
        for follower in list(self.followers):
            try:
                follower.progress()
            except Exception:
                # One client's trouble is never the download's.
                log.failure("sending {file} to a client", file=str(self.key))
                self.followers.discard(follower)

    def _verify(self, link: FileLink) -> None:
        """
        Check the whole body against the link.
        """
        if self.length is not None and self.written != self.length:
            raise _Corrupt(f"{self.written} bytes where {self.length} were expected")
        if self._hash is not None and self._hash.hexdigest() != link.digest:
            raise _Corrupt(f"{link.algorithm} {self._hash.hexdigest()} where {link.digest} was expected")

    async def _keep(self) -> str:
        """
        Put the verified file in its place in the tree.
        """
        assert self._tmp is not None
        path = await self._tree.keep(self._fd, self._tmp, self.key, self._reserved)
        self._tmp, self._reserved = None, 0
        return path

    def _fail(self, e: BaseException, seconds: float) -> None:
        """
        Keep nothing, and end every client's response without its end.
        """
        reason = self.problem = _reason(e, self)
        if not isinstance(e, NotFound):
            self._events.fileRefused(self.key, reason.status, reason.reason, self.received, seconds)
        self.failed = True
        if self._tmp is not None:
            self._tree.discard(self._tmp)
        failure = Failure(e if isinstance(e, (NotFound, Unavailable)) else reason)
        self.started.fire(failure)
        self.whole.fire(failure)
        self.finished.fire(failure)
        self._tell()


#: The largest provenance object read back to be checked.
PROVENANCE_MAX = 16 * 1024 * 1024


def provenanceProblem(fd: int, size: int, subject: str | None) -> str | None:
    """
    What is wrong with a provenance object (PEP 740), as far as a mirror can
    tell: it must be one, with at least one attestation, and every
    attestation's statement must name the file's sha256 (C{subject}, where
    the page gives it).  L{None} if nothing is.  Disk and CPU work: run it
    off the reactor.
    """
    if size > PROVENANCE_MAX:
        return f"its provenance is larger than {PROVENANCE_MAX} bytes"
    try:
        document = json.loads(os.pread(fd, size, 0))
        bundles = document["attestation_bundles"]
        attestations = [a for bundle in bundles for a in bundle["attestations"]]
        statements = [json.loads(base64.b64decode(a["envelope"]["statement"])) for a in attestations]
        named = [{s.get("digest", {}).get("sha256") for s in statement["subject"]} for statement in statements]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return f"its provenance is not a PEP 740 provenance object ({type(e).__name__})"
    if not attestations:
        return "its provenance has no attestation"
    if subject is not None and not all(subject in digests for digests in named):
        return "its provenance names another file"
    return None


def _writeAll(fd: int, chunks: list[bytes]) -> None:
    """
    Write chunks to the end of a file.  Disk work: run it off the reactor,
    unless they are few bytes (L{INLINE_MAX}).
    """
    for chunk in chunks:
        writeAll(fd, chunk)


def _hashAll(digest: Any, chunks: list[bytes]) -> None:
    """
    Hash chunks, in order.  CPU work: run it off the reactor, unless they
    are few bytes (L{INLINE_MAX}).
    """
    for chunk in chunks:
        digest.update(chunk)


def _reason(e: BaseException, download: Download) -> Unavailable:
    """
    What to tell clients of a failed download.
    """
    if isinstance(e, Unavailable):
        return e
    if isinstance(e, NotFound):
        return Unavailable(404, "no such file")
    if isinstance(e, _Corrupt):
        return UpstreamError(502, f"{CORRUPT}: {e}")
    if isinstance(e, _BodyTooLong):
        return UpstreamError(502, f"upstream sent more than the {download.length} bytes expected")
    if isinstance(e, OSError):
        return StoreError.cannotWrite(e)
    if isinstance(e, ResponseFailed):
        return UpstreamError(502, "upstream broke off the file")
    failure = Failure(e)
    summary = " ".join(failure.getErrorMessage().split())[:200]
    return UpstreamError(502, f"download from upstream failed: {typeName(failure)}: {summary}")
