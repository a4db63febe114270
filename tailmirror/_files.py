"""
Package files: where they live on disk, which upstream URL each mirror path
stands for, and the one download per file that fills the tree.

A file's upstream URL and hash come only from its project's page; a path a
client asks for is matched against the links on that page, so the mirror
never fetches a URL a client chose.  A download streams into a temporary
file under C{+tmp/}, hashed as it is written, and is renamed into the
C{+files/} tree only when its hash (and size, where the page gives one)
match.  Present in the tree means complete and verified.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urldefrag, urlsplit, urlunsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed
from twisted.web.iweb import IResponse

from ._coalesce import Signal
from ._disk import putInPlace, writeAll
from ._errors import NotFound, StoreError, Unavailable, UpstreamError
from ._names import canonicalName, mirrorPath, safeFilename, shardPath
from ._upstream import BodyReader, Upstream

if TYPE_CHECKING:
    from ._pages import ProjectPages, RunInThread

__all__ = ["FileKey", "FileLink", "FileStore", "Download", "parseFilePath"]

log = Logger()

_HEX3 = re.compile(r"[0-9a-f]{3}")
_HEX13 = re.compile(r"[0-9a-f]{13}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_HEXDIGEST = re.compile(r"[0-9a-f]+")
METADATA = ".metadata"

#: Received bytes that may wait for the disk before upstream is paused.
PENDING_MAX = 8 * 1024 * 1024

#: Hashes a link may give, strongest first; the first one present is checked.
_ALGORITHMS = ("sha256", "sha512", "sha384", "blake2b", "sha3_256", "sha224", "sha1", "md5")


@dataclass(frozen=True)
class FileKey:
    """
    A path below C{/root/pypi/+f/} that may name a file of the mirror.

    @ivar shard: C{(<3 hex>, <13 hex>)} or C{("_url", <16 hex>)}.
    @ivar filename: the distribution's file name, unquoted.
    @ivar metadata: whether the path names the file's core metadata.
    """

    shard: tuple[str, str]
    filename: str
    metadata: bool

    @property
    def linkPath(self) -> str:
        """
        The distribution's mirror path as the pages write it.
        """
        return shardPath(self.shard, self.filename)

    @property
    def parts(self) -> tuple[str, ...]:
        """
        The path's segments below the tree's root, unquoted.
        """
        name = self.filename + METADATA if self.metadata else self.filename
        return ("root", "pypi", "+f", *self.shard, name)

    @property
    def etag(self) -> str:
        """
        A strong entity tag: what the path names never changes.
        """
        suffix = METADATA if self.metadata else ""
        return f'"{self.shard[0]}{self.shard[1]}{suffix}"'

    def __str__(self) -> str:
        return "/".join(self.parts)


def parseFilePath(path: bytes) -> FileKey | None:
    """
    The file a request path names, or L{None} when it cannot name one.
    """
    segments = path.split(b"/")
    if len(segments) != 7:
        return None
    try:
        # Clients may escape any of it: pip sends "+f" as "%2Bf".
        decoded = [unquote(s.decode("ascii"), errors="strict") for s in segments]
    except UnicodeDecodeError:
        return None
    if decoded[:4] != ["", "root", "pypi", "+f"]:
        return None
    first, second, name = decoded[4:]
    if not (
        (first == "_url" and _HEX16.fullmatch(second))
        or (_HEX3.fullmatch(first) and _HEX13.fullmatch(second))
    ):
        return None
    metadata = name.endswith(METADATA)
    if metadata:
        name = name[: -len(METADATA)]
    if not safeFilename(name):
        return None
    return FileKey((first, second), name, metadata)


@dataclass(frozen=True)
class FileLink:
    """
    Where upstream keeps a file, and what its bytes must be.

    @ivar algorithm: the hash checked, or L{None} if the link gives none.
    @ivar size: the size the page gives, if any.
    """

    url: str
    algorithm: str | None
    digest: str | None
    size: int | None


def _check(hashes: object) -> tuple[str | None, str | None]:
    """
    The strongest well-formed hash among a link's C{hashes}.
    """
    if isinstance(hashes, dict):
        for algorithm in _ALGORITHMS:
            digest = hashes.get(algorithm)
            if isinstance(digest, str) and _HEXDIGEST.fullmatch(digest.lower()):
                return algorithm, digest.lower()
    return None, None


def metadataURL(url: str) -> str:
    """
    Where a distribution's core metadata file is (PEP 658): its URL with
    C{.metadata} after the path.
    """
    parts = urlsplit(urldefrag(url)[0])
    return urlunsplit(parts._replace(path=parts.path + METADATA))


def linkFor(key: FileKey, page: dict[str, Any]) -> FileLink | None:
    """
    The link on a project page that C{key} names, or L{None}: for a
    C{.metadata} path, only where the page advertises core metadata.
    """
    for entry in page.get("files", ()):
        if entry.get("filename") != key.filename:
            continue
        if mirrorPath(entry["filename"], entry["url"], entry.get("hashes")) != key.linkPath:
            continue
        if key.metadata:
            advertised = entry.get("core-metadata", entry.get("dist-info-metadata"))
            if not advertised:
                return None
            return FileLink(metadataURL(entry["url"]), *_check(advertised), None)
        size = entry.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            size = None
        return FileLink(entry["url"], *_check(entry.get("hashes")), size)
    return None


def projectsOf(filename: str) -> list[str]:
    """
    The normalized names of the projects a file may belong to, likeliest
    first: a wheel's name is exact; an sdist's is everything before its last
    dash; older formats put the version after the first dash.
    """
    names = []
    if filename.endswith(".whl"):
        try:
            names.append(parse_wheel_filename(filename)[0])
        except InvalidWheelFilename:
            pass
    try:
        names.append(parse_sdist_filename(filename)[0])
    except InvalidSdistFilename:
        for suffix in (".tar.bz2", ".tar.xz", ".tgz", ".tar", ".egg", ".exe", ".msi", ".rpm", ".dmg"):
            if filename.endswith(suffix):
                names.append(filename[: -len(suffix)].rpartition("-")[0])
    names.append(filename.partition("-")[0])
    found: list[str] = []
    for name in names:
        canonical = canonicalName(name)
        if canonical is not None and canonical not in found:
            found.append(canonical)
    return found


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


class _Receiver(BodyReader):
    """
    Hands an upstream body to a download as it arrives; drops the
    connection if upstream goes quiet for longer than the timeout.  The
    hash tells whether a body without a length was whole.
    """

    def __init__(self, download: "Download", clock: IReactorTime, idle: float) -> None:
        super().__init__()
        self._download = download
        self._clock = clock
        self._idle = idle
        self._timer: IDelayedCall | None = None
        self._paused = False
        self.quiet = False

    def connectionMade(self) -> None:
        self._timer = self._clock.callLater(self._idle, self._quiet)

    def _quiet(self) -> None:
        self.quiet = True
        self._timer = None
        self.stop()

    def pause(self) -> None:
        """
        Stop reading from upstream for a while.
        """
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pauseProducing()
            # The silence is the mirror's own, not upstream's.
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def resume(self) -> None:
        """
        Read from upstream again.
        """
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resumeProducing()
            if not self.done.called:
                self._timer = self._clock.callLater(self._idle, self._quiet)

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        if self._timer is not None:
            self._timer.reset(self._idle)
        try:
            self._download.append(data)
        except BaseException:
            failure = Failure()
            self.stop()
            self.end(failure)

    def end(self, failure: Failure | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().end(failure)


class Download:
    """
    One download of one file from upstream into the tree.  Its bytes are
    readable from L{fd} as they arrive, to every L{Follower}; all but the
    last byte until the whole file is verified, so nobody can receive a
    complete copy of a wrong file.
    """

    def __init__(self, store: "FileStore", key: FileKey) -> None:
        self._store = store
        self.key = key
        #: The length clients are told, where known before the end.
        self.length: int | None = None
        #: Bytes received, and bytes written (which clients may read).
        self.received = 0
        self.written = 0
        self._pending: list[bytes] = []
        self._pendingBytes = 0
        self._writing: Deferred[Any] | None = None
        self._writeFailure: Failure | None = None
        self._drained: Signal[None] | None = None
        self._receiver: _Receiver | None = None
        self.verified = False
        self.failed = False
        self.fd = -1
        self._tmp: str | None = None
        self._hash: Any = None
        self.followers: set[Follower] = set()
        #: Fires with this download when bytes start to arrive.
        self.started: Signal[Download] = Signal()
        #: Fires with the file's path in the tree once it is there.
        self.finished: Signal[str] = Signal()

    @property
    def readable(self) -> int:
        """
        How many bytes may be sent to clients now.
        """
        return self.written if self.verified else max(0, self.written - 1)

    def append(self, data: bytes) -> None:
        """
        Take more of the body: it is written to the temporary file and
        hashed off the reactor thread, a batch at a time, while more
        arrives.  Upstream is paused while too much waits for the disk.
        """
        if self.length is not None and self.received + len(data) > self.length:
            raise _BodyTooLong()
        self.received += len(data)
        self._pending.append(data)
        self._pendingBytes += len(data)
        if self._pendingBytes > PENDING_MAX and self._receiver is not None:
            self._receiver.pause()
        self._writeBatch()

    def _writeBatch(self) -> None:
        """
        Write and hash what is pending, both at once, in the thread pool.
        """
        if self._writing is not None or not self._pending:
            return
        batch, self._pending, self._pendingBytes = self._pending, [], 0
        run = self._store.runInThread
        work = [run(_writeAll, self.fd, batch)]
        if self._hash is not None:
            work.append(run(_hashAll, self._hash, batch))
        self._writing = gatherResults(work, consumeErrors=True)
        self._writing.addCallbacks(self._wrote, self._cannotWrite, (sum(map(len, batch)),))

    def _wrote(self, result: object, size: int) -> None:
        self._writing = None
        self.written += size
        if self._receiver is not None:
            self._receiver.resume()
        self._writeBatch()
        self._tell()
        if self._writing is None and self._drained is not None:
            self._drained.fire(None)

    def _cannotWrite(self, failure: Failure) -> None:
        self._writing = None
        self._writeFailure = failure.value.subFailure  # type: ignore[union-attr]
        self._pending = []
        if self._receiver is not None and not self._receiver.done.called:
            self._receiver.stop()  # the cache cannot take the file
        if self._drained is not None:
            self._drained.fire(None)

    async def _allWritten(self) -> None:
        """
        Wait until everything received is on disk.
        """
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

    async def run(self) -> None:
        """
        Find the file's link, download and verify it, and keep it.
        """
        store = self._store
        try:
            link = await store.resolve(self.key)
            await store.upstream.fileSlots.acquire()
            try:
                response = await store.upstream.openFile(link.url)
                self._begin(link, response)
                self._receiver = receiver = _Receiver(self, store.clock, store.upstream.idleTimeout)
                response.deliverBody(receiver)
                try:
                    await receiver.done
                except Exception:
                    if receiver.quiet:
                        raise UpstreamError(504, "upstream stopped sending the file") from None
                    raise
                finally:
                    # Whatever happened, no thread is still at the file.
                    await self._allWritten()
            finally:
                store.upstream.fileSlots.release()
            self._verify(link)
            self.verified = True
            self._tell()
            path = await self._keep()
        except BaseException as e:
            self._fail(e)
        else:
            log.info("kept {file} ({size} bytes)", file=str(self.key), size=self.written)
            self.finished.fire(path)
        finally:
            store.forget(self)
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1

    def _begin(self, link: FileLink, response: IResponse) -> None:
        """
        Upstream answered: open the temporary file, and let clients start.
        """
        length = response.length if isinstance(response.length, int) else None
        self.length = link.size if link.size is not None else length
        if link.algorithm is not None:
            self._hash = hashlib.new(link.algorithm)
        try:
            self.fd, self._tmp = self._store.temporary()
        except OSError as e:
            response.deliverBody(Protocol())
            raise StoreError.cannotWrite(e) from None
        self.started.fire(self)

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
        Put the verified file in its place in the tree, durably.
        """
        path = self._store.path(self.key)
        assert self._tmp is not None
        try:
            await self._store.runInThread(putInPlace, self.fd, self._tmp, path)
        except OSError as e:
            raise StoreError.cannotWrite(e) from None
        self._tmp = None
        return path

    def _fail(self, e: BaseException) -> None:
        """
        Keep nothing, and end every client's response without its end.
        """
        reason = _reason(e, self)
        if not isinstance(e, NotFound):
            log.error("download of {file} failed, nothing kept: {why}", file=str(self.key), why=reason.reason)
        self.failed = True
        if self._tmp is not None:
            self._store.discard(self._tmp)
        failure = Failure(e if isinstance(e, (NotFound, Unavailable)) else reason)
        self.started.fire(failure)
        self.finished.fire(failure)
        self._tell()


def _writeAll(fd: int, chunks: list[bytes]) -> None:
    """
    Write chunks to the end of a file.  Disk work: run it off the reactor.
    """
    for chunk in chunks:
        writeAll(fd, chunk)


def _hashAll(digest: Any, chunks: list[bytes]) -> None:
    """
    Hash chunks, in order.  CPU work: run it off the reactor.
    """
    for chunk in chunks:
        digest.update(chunk)


class _Corrupt(Exception):
    """
    Upstream's bytes are not the file its page links.
    """


def _reason(e: BaseException, download: Download) -> Unavailable:
    """
    What to tell clients of a failed download.
    """
    if isinstance(e, Unavailable):
        return e
    if isinstance(e, NotFound):
        return Unavailable(404, "no such file")
    if isinstance(e, _Corrupt):
        return UpstreamError(502, f"upstream sent a corrupt file: {e}")
    if isinstance(e, _BodyTooLong):
        return UpstreamError(502, f"upstream sent more than the {download.length} bytes expected")
    if isinstance(e, OSError):
        return StoreError.cannotWrite(e)
    if isinstance(e, ResponseFailed):
        return UpstreamError(502, "upstream broke off the file")
    failure = Failure(e)
    summary = " ".join(failure.getErrorMessage().split())[:200]
    return UpstreamError(502, f"download from upstream failed: {failure.type.__name__}: {summary}")


class FileStore:
    """
    The file tree under a cache directory, and the downloads filling it.
    """

    def __init__(
        self,
        cacheDir: str,
        pages: "ProjectPages",
        upstream: Upstream,
        clock: IReactorTime,
        runInThread: "RunInThread",
        clientTimeout: float = 60.0,
    ) -> None:
        self.root = os.path.join(cacheDir, "+files")
        self.tmp = os.path.join(cacheDir, "+tmp")
        self.pages = pages
        self.upstream = upstream
        self.clock = clock
        self.runInThread = runInThread
        #: Seconds a client may take nothing of a file being sent to it.
        self.clientTimeout = clientTimeout
        self._downloads: dict[FileKey, Download] = {}

    def open(self) -> None:
        """
        Make the tree, and clear downloads a previous run left unfinished.
        """
        os.makedirs(self.root, exist_ok=True)
        os.makedirs(self.tmp, exist_ok=True)
        leftovers = os.listdir(self.tmp)
        for name in leftovers:
            self.discard(os.path.join(self.tmp, name))
        if leftovers:
            log.info("cleared {count} unfinished downloads", count=len(leftovers))

    def path(self, key: FileKey) -> str:
        """
        Where a file is in the tree.
        """
        return os.path.join(self.root, *key.parts)

    def download(self, key: FileKey) -> Download:
        """
        The download of a file, started now unless it runs already.
        """
        download = self._downloads.get(key)
        if download is None:
            download = self._downloads[key] = Download(self, key)
            Deferred.fromCoroutine(download.run())
        return download

    def forget(self, download: Download) -> None:
        """
        A download ended: the next request for its file looks afresh.
        """
        if self._downloads.get(download.key) is download:
            del self._downloads[download.key]

    async def resolve(self, key: FileKey) -> FileLink:
        """
        The link a path names, from its project's page, fetched if need be.

        @raise NotFound: if no page of a project the file may belong to
            links it.
        """
        for name in projectsOf(key.filename):
            try:
                link = await self.pages.findFile(name, lambda page: linkFor(key, page))
            except NotFound:
                continue
            if link is not None:
                return link
        raise NotFound(str(key))

    def temporary(self) -> tuple[int, str]:
        """
        A new temporary file for a download.
        """
        return tempfile.mkstemp(dir=self.tmp, prefix="download-")

    def discard(self, path: str) -> None:
        """
        Remove a temporary file, if it is there.
        """
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.error("cannot remove {path}: {why}", path=path, why=str(e))
