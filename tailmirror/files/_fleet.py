"""
A node of a fleet of mirrors sharing one bucket (L{Bucket}).  Looked for
on local disk, then in the bucket, then upstream, a file found in the
bucket never goes upstream: it is read through a presigned URL by the
mirror's own client, so it streams to every waiting client as it arrives
and is verified and kept as a download from upstream is.  A file
downloaded from upstream is put in the bucket in the background, retried
with backoff while the bucket fails; no client waits for it.  Several
nodes that miss the same cold file at once take a lease first, and all
but one wait (a while) for it to appear in the bucket.  A bucket object
whose bytes are wrong is never kept: the node fetches the file from
upstream instead and puts the verified bytes over it.  Each project's
latest verified upstream page is kept in the bucket too, so a node with
an empty cache serves pages while upstream is unreachable.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Callable
from urllib.parse import quote

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ..base import FileKey, NoEvents, RunInThread, UpstreamError
from ..upstream import Fetched, FileSink, Priority, Upstream
from ._bucket import Bucket, PageCopy, _why
from ._download import CORRUPT
from ._tree import FileTree

__all__ = ["Fleet", "FleetUpstream"]

log = Logger()

#: Seconds between retries of a failed put, doubling to the most.
RETRY_FIRST = 1.0
RETRY_MOST = 300.0
#: Uploads at once, at most: the store's threads are also where the
#: lookups run that a client waiting for a cold file needs.
UPLOADS_AT_ONCE = 4
#: Seconds a node waits for another node's download to reach the bucket.
WAIT_FOR_OTHERS = 15.0
POLL_EVERY = 0.25
#: Seconds a presigned URL is good for, and for how long one is handed
#: out again (a client it is sent to has four minutes left to use it).
PRESIGNED_FOR = 300
URL_REUSED_FOR = 60.0
#: Presigned URLs kept, at most.
URLS_KEPT = 4096


class Fleet(NoEvents):
    """
    One node's use of the fleet's bucket: uploads, leases, the files known
    to be there, pages kept, and how the bucket is doing.
    """

    def __init__(
        self,
        bucket: Bucket,
        clock: IReactorTime,
        runInThread: RunInThread,
        *,
        redirect: bool = False,
        publicURL: str | None = None,
        waitForOthers: float = WAIT_FOR_OTHERS,
    ) -> None:
        self.bucket = bucket
        self._tree: FileTree | None = None
        self._clock = clock
        self._run = runInThread
        self.redirect = redirect
        self.publicURL = publicURL if publicURL is None or publicURL.endswith("/") else publicURL + "/"
        self.waitForOthers = waitForOthers
        #: Store paths known to be in the bucket.
        self.known: set[tuple[str, ...]] = set()
        #: Presigned URLs made lately, and when, by store path.
        self._urls: dict[tuple[str, ...], tuple[str, float]] = {}
        #: Store paths whose bucket object proved corrupt: fetched from
        #: upstream, and put over it.
        self.bad: set[tuple[str, ...]] = set()
        #: Store paths read from the bucket by the downloads under way.
        self.fromBucket: set[tuple[str, ...]] = set()
        #: Leases held, by store path: the sha256 they are taken by.
        self.leases: dict[tuple[str, ...], str] = {}
        self.pending = 0
        self._uploads = DeferredSemaphore(UPLOADS_AT_ONCE)
        self.put = 0
        self.failedPuts = 0
        self.readFromBucket = 0
        self.failing: str | None = None
        self._saidNoLeases = False
        #: Starts a download of a file, from upstream (set by the assembly).
        self.redownload: Callable[[FileKey], object] | None = None

    def attach(self, tree: FileTree) -> None:
        """
        The tree whose kept files this node puts in the bucket.
        """
        self._tree = tree

    # Events of the mirror -------------------------------------------------

    def fileKept(self, key: FileKey, size: int, seconds: float) -> None:
        parts = key.storeParts
        if parts in self.fromBucket:
            self.fromBucket.discard(parts)
            self.known.add(parts)
            return
        if key.shard[0] == "_url":
            return  # no sha256: never put in the bucket
        self.pending += 1
        Deferred.fromCoroutine(self._upload(key, RETRY_FIRST))

    def fileRefused(self, key: FileKey, status: int, reason: str, size: int, seconds: float) -> None:
        parts = key.storeParts
        self._release(parts)
        if parts in self.fromBucket:
            self.fromBucket.discard(parts)
            self.known.discard(parts)
            if reason.startswith(CORRUPT):
                # The bucket's bytes are wrong: never served; fetched from
                # upstream and put over them.
                self.bad.add(parts)
                log.error("the bucket's copy of {file} is corrupt ({reason}); fetching it from upstream "
                          "to replace it", file=key.filename, reason=reason)
                if self.redownload is not None:
                    # Once this download is done with (it is still the file's).
                    self._clock.callLater(0, self.redownload, key)

    # Uploads ----------------------------------------------------------------

    async def _upload(self, key: FileKey, wait: float) -> None:
        """
        Put a kept file in the bucket, retried with backoff while the tree
        has it; a few at once (L{UPLOADS_AT_ONCE}).
        """
        parts = key.storeParts
        replace = parts in self.bad
        try:
            while True:
                try:
                    sent = await self._uploads.run(self._put, key, replace)
                    break
                except Exception as e:
                    self.failedPuts += 1
                    self.failed(_why(e))
                    assert self._tree is not None
                    if not self._tree.has(key):
                        return
                    await deferLater(self._clock, wait, lambda: None)
                    wait = min(RETRY_MOST, wait * 2)
            if not sent:
                return  # evicted already: another node, or a later download, puts it
            self.put += 1
            self.bad.discard(parts)
            self.known.add(parts)
            self._recovered()
            if replace:
                log.info("the bucket's copy of {file} is replaced with verified bytes", file=key.filename)
        finally:
            self.pending -= 1
            self._release(parts)

    async def _put(self, key: FileKey, replace: bool) -> bool:
        """
        Put a file of the tree in the bucket: whether it was still there to.
        """
        assert self._tree is not None
        file = self._tree.openFile(key)
        if file is None:
            return False
        try:

            def send() -> bool:
                with os.fdopen(os.dup(file.fd), "rb") as f:
                    f.seek(0)
                    return self.bucket.upload(self.bucket.key(key.storeParts), f, file.size, replace=replace)

            await self._run(send)
        finally:
            file.close()
        return True

    def failed(self, why: str) -> None:
        """
        The bucket failed a call: say so once per outage.
        """
        if self.failing is None:
            log.error("the store fails ({why}); the mirror serves from its disk and upstream, and "
                      "retries its puts ({pending} pending)", why=why, pending=self.pending)
        self.failing = why

    def _recovered(self) -> None:
        if self.failing is not None:
            log.info("the store answers again")
        self.failing = None

    def _release(self, parts: tuple[str, ...]) -> None:
        sha = self.leases.pop(parts, None)
        if sha is not None:
            Deferred.fromCoroutine(self._call(self.bucket.release, sha))

    async def _call(self, f: Callable[..., Any], *args: Any) -> Any:
        try:
            result = await self._run(f, *args)
        except Exception as e:
            self.failed(_why(e))
            return None
        self._recovered()
        return result

    # Reading ------------------------------------------------------------------

    def urlOf(self, parts: tuple[str, ...]) -> str:
        """
        Where clients read an object: the public URL, or a presigned one.
        Blocking (presigning may refresh the store's credentials): call it
        in a thread.
        """
        key = self.bucket.key(parts)
        if self.publicURL is not None:
            return self.publicURL + quote(key)
        return self.bucket.presign(key, PRESIGNED_FOR)

    def redirectTo(self, key: FileKey) -> str | None:
        """
        A URL that a client may be sent to for a file known to be in the
        bucket, made lately, without waiting for anything; L{None} if none
        is at hand (L{locate} makes one).  A hot file's redirects cost one
        presigning a minute, not one a request.
        """
        parts = key.storeParts
        if parts not in self.known or parts in self.bad:
            return None
        if self.publicURL is not None:
            return self.publicURL + quote(self.bucket.key(parts))
        made = self._urls.get(parts)
        if made is None or self._clock.seconds() - made[1] >= URL_REUSED_FOR:
            return None
        return made[0]

    async def locate(self, key: FileKey) -> str | None:
        """
        A URL of the file in the bucket, if it is there (and not bad).
        """
        parts = key.storeParts
        if key.shard[0] == "_url" or parts in self.bad:
            return None
        if parts not in self.known:

            def look() -> int | None:
                return self.bucket.size(self.bucket.key(parts))

            try:
                found = await self._run(look)
            except Exception as e:
                self.failed(_why(e))
                return None
            self._recovered()
            if found is None:
                return None
            self.known.add(parts)
        try:
            url: str = await self._run(self.urlOf, parts)
        except Exception as e:
            self.failed(_why(e))
            return None
        if len(self._urls) >= URLS_KEPT:
            self._urls.clear()
        self._urls[parts] = (url, self._clock.seconds())
        return url

    async def beforeUpstream(self, key: FileKey) -> str | None:
        """
        Before a node downloads a cold file from upstream: its URL in the
        bucket, if another node put it there, or, after the lease of its
        download is taken, L{None} (this node downloads it); if another
        node holds the lease, wait for its object a while.
        """
        found = await self.locate(key)
        if found is not None or key.shard[0] == "_url":
            return found
        parts = key.storeParts
        lease = hashlib.sha256("/".join(parts).encode("utf-8")).hexdigest()
        try:
            taken = await self._run(self.bucket.lease, lease)
        except Exception as e:
            self.failed(_why(e))
            return None
        if taken is None:
            if self.bucket.conditional is False and not self._saidNoLeases:
                self._saidNoLeases = True
                log.warn("the store takes no conditional writes (If-None-Match): nodes that miss the same "
                         "file at once each download it from upstream")
            return None
        if taken:
            self.leases[parts] = lease
            # Its holder may have put it, and let the lease go, between the
            # look above and the lease: look again.
            found = await self.locate(key)
            if found is not None:
                self._release(parts)
            return found
        deadline = self._clock.seconds() + self.waitForOthers
        while self._clock.seconds() < deadline:
            await deferLater(self._clock, POLL_EVERY, lambda: None)
            found = await self.locate(key)
            if found is not None:
                return found
        return None

    # Pages ---------------------------------------------------------------------

    def keepPage(self, index: str, name: str, fetched: Fetched) -> None:
        copy = PageCopy(fetched.url, fetched.etag, fetched.contentType, fetched.lastSerial, fetched.body)
        Deferred.fromCoroutine(self._call(self.bucket.putPage, index, name, copy))

    async def pageCopy(self, index: str, name: str) -> Fetched | None:
        copy = await self._call(self.bucket.getPage, index, name)
        if copy is None:
            return None
        return Fetched(200, copy.url, copy.etag, copy.contentType, copy.body, copy.lastSerial)

    # Observers ------------------------------------------------------------------

    def health(self) -> str | None:
        if self.failing is None:
            return None
        return f"the store fails: {self.failing}; serving from disk and upstream"

    def figures(self) -> dict[str, Any]:
        return {
            "bucket": f"s3://{self.bucket.bucket}/{self.bucket.prefix}",
            "endpoint": self.bucket.endpoint,
            "healthy": self.failing is None,
            "failing": self.failing,
            "pendingPuts": self.pending,
            "puts": self.put,
            "failedPuts": self.failedPuts,
            "readFromBucket": self.readFromBucket,
            "redirect": self.redirect,
            "leases": self.bucket.conditional,
        }


class FleetUpstream:
    """
    An index's upstream as a node of the fleet asks it: a file from the
    bucket when the bucket has it (or another node puts it there while
    this one waits), else from upstream; a page kept in the bucket too,
    and taken from there when upstream fails and the node has none.
    """

    def __init__(self, upstream: Upstream, fleet: Fleet, index: str) -> None:
        self._upstream = upstream
        self._fleet = fleet
        self._index = index

    def __getattr__(self, name: str) -> Any:
        return getattr(self._upstream, name)

    def fetchPage(self, name: str, etag: str | None, background: bool | Priority = False) -> Deferred[Fetched]:
        async def fetch() -> Fetched:
            try:
                fetched = await self._upstream.fetchPage(name, etag, background)
            except UpstreamError:
                if etag is not None:
                    raise  # the node has a copy to serve
                copy = await self._fleet.pageCopy(self._index, name)
                if copy is None:
                    raise
                log.info("{project}'s page from the bucket: upstream fails", project=name)
                return copy
            if fetched.status == 200:
                self._fleet.keepPage(self._index, name, fetched)
            return fetched

        return Deferred.fromCoroutine(fetch())

    async def fetchFile(self, url: str, sink: FileSink, background: bool | Priority = False) -> None:
        key: FileKey | None = getattr(sink, "key", None)
        where = None if key is None else await self._fleet.beforeUpstream(key)
        if where is not None and key is not None:
            self._fleet.fromBucket.add(key.storeParts)
            self._fleet.readFromBucket += 1
            try:
                await self._upstream.fetchFile(where, sink, background)
                return
            except UpstreamError as e:
                if getattr(sink, "startedAt", None) is not None:
                    raise  # bytes went to clients: the download fails
                # The bucket did not answer with the object: upstream then.
                self._fleet.fromBucket.discard(key.storeParts)
                self._fleet.known.discard(key.storeParts)
                self._fleet.failed(e.reason)
        await self._upstream.fetchFile(url, sink, background)

