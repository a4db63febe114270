"""
Package files: the one download per file that fills the tree, and the
link each download fetches, found on its project's page.

A cold file's path goes down once and comes back once: the file resource
asks L{FileStore.download}; the download asks L{FileStore.resolve} for its
link (the project's page, from memory, or fetched if the mirror has none),
upstream for the bytes, and the tree to keep them.

One store serves every index: a file named by its sha256 is one download
and one copy whichever index's page links it; its link and its bytes come
through the index that asked first.  Core metadata upstream does not serve
is read out of its wheel (L{FileStore.metadataFromWheel}).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..base import DEFAULT_INDEX, FileKey, IMirrorEvents, NoEvents, NotFound, RunInThread, Unavailable, UpstreamError
from ..pages import FileLink, projectsOf
from ..upstream import Priority, Upstream, priorityOf
from ._download import Download
from ._tree import FileTree
from ._wheel import METADATA_MAX, RANGED_MAX, TAIL, Need, NoMetadata, Sparse, metadataFromZip

if TYPE_CHECKING:
    from ._fleet import Fleet
    from ..pages import ProjectPages

__all__ = ["FileStore"]

log = Logger()

#: Range requests one metadata file may take before the mirror gives up.
RANGES_MAX = 8


class FileStore:
    """
    The downloads filling a L{FileTree}, one per file at a time.
    """

    def __init__(
        self,
        tree: FileTree,
        pages: "ProjectPages",
        upstream: Upstream,
        clock: IReactorTime,
        runInThread: RunInThread,
        *,
        clientTimeout: float,
        events: IMirrorEvents | None = None,
    ) -> None:
        self.tree = tree
        #: The pages and upstream of each index, by its name.
        self.indexes: dict[str, tuple["ProjectPages", Upstream]] = {DEFAULT_INDEX: (pages, upstream)}
        self.clock = clock
        self.runInThread = runInThread
        self.events = events if events is not None else NoEvents()
        #: Seconds a client may take nothing of a file being sent to it.
        self.clientTimeout = clientTimeout
        self._downloads: dict[tuple[str, ...], Download] = {}
        #: The fleet's bucket this node shares (C{--store}), if any.
        self.fleet: "Fleet | None" = None

    def add(self, name: str, pages: "ProjectPages", upstream: Upstream) -> None:
        """
        Serve the files of another index.
        """
        self.indexes[name] = (pages, upstream)

    def pagesOf(self, key: FileKey) -> "ProjectPages":
        """
        The pages of the index a file's path names.
        """
        return self.indexes[key.index][0]

    def download(self, key: FileKey, background: bool | Priority = False) -> Download:
        """
        The download of a file, started now unless it runs already (through
        any index, where its sha256 names it); a prefetch's, started in the
        C{background}, asks upstream after clients do, until a client asks
        for the file too.
        """
        priority = priorityOf(background)
        download = self._downloads.get(key.storeParts)
        if download is None:
            download = self._downloads[key.storeParts] = Download(
                key,
                self.resolve,
                self.indexes[key.index][1],
                self.tree,
                self.clock,
                self.runInThread,
                self.events,
                self.metadataFromWheel,
                priority,
            )
            Deferred.fromCoroutine(download.run()).addBoth(self._forget, download)
        else:
            download.priority.raiseTo(priority.background)
        return download

    def downloading(self, key: FileKey) -> bool:
        """
        Whether a download of the file runs (through any index).
        """
        return key.storeParts in self._downloads

    def _forget(self, result: object, download: Download) -> None:
        """
        A download ended: the next request for its file looks afresh.
        """
        if self._downloads.get(download.key.storeParts) is download:
            del self._downloads[download.key.storeParts]

    @property
    def inFlight(self) -> list[Download]:
        """
        The downloads under way.
        """
        return list(self._downloads.values())

    async def resolve(self, key: FileKey) -> FileLink:
        """
        The link a path names, from its project's page, fetched if need be.

        @raise NotFound: if no page of a project the file may belong to
            links it.
        """
        pages = self.pagesOf(key)
        for name in projectsOf(key.filename):
            try:
                link = await pages.findLink(name, key)
            except NotFound:
                continue
            if link is not None:
                return link
        raise NotFound(str(key))

    async def metadataFromWheel(self, key: FileKey, link: FileLink, background: bool | Priority = False) -> bytes:
        """
        The core metadata of a wheel, read out of it: from the tree if it
        has the wheel, else by range requests to upstream; where upstream
        answers no ranges, by one whole download of the wheel, which the
        tree then keeps.

        @raise UpstreamError: if the wheel cannot be had, or holds no
            metadata to serve.
        """
        wheel = replace(key, metadata=False)
        found = await self._fromTree(wheel)
        if found is not None:
            return found
        upstream = self.indexes[key.index][1]
        try:
            data = await self._ranged(upstream, link, key.filename, background)
        except NoMetadata as e:
            raise UpstreamError(502, f"upstream's wheel has no core metadata to serve: {e}") from None
        if data is not None:
            return data
        log.info("upstream answers no ranges for {file}: its wheel is downloaded whole", file=key.filename)
        await self.download(wheel, background).finished.wait()
        found = await self._fromTree(wheel)
        if found is None:
            raise UpstreamError(503, "the wheel was evicted as soon as it was kept; try again")
        return found

    async def keptMetadata(self, key: FileKey) -> bytes | None:
        """
        The core metadata file C{key} names, if the tree keeps it (or its
        wheel); L{None} if not.  Nothing is fetched.
        """
        file = self.tree.openFile(key)
        if file is not None:

            def read() -> bytes:
                with os.fdopen(os.dup(file.fd), "rb") as f:
                    return f.read(METADATA_MAX)

            try:
                data: bytes = await self.runInThread(read)
                return data
            finally:
                file.close()
        try:
            return await self._fromTree(replace(key, metadata=False))
        except Unavailable:
            return None

    async def _fromTree(self, wheel: FileKey) -> bytes | None:
        """
        The METADATA of a wheel the tree has; L{None} if it has not.
        """
        file = self.tree.openFile(wheel)
        if file is None:
            return None

        def read() -> bytes:
            with os.fdopen(os.dup(file.fd), "rb") as f:
                return metadataFromZip(f, wheel.filename)

        try:
            metadata: bytes = await self.runInThread(read)
            return metadata
        except NoMetadata as e:
            raise UpstreamError(502, f"the wheel has no core metadata to serve: {e}") from None
        finally:
            file.close()

    async def _ranged(
        self, upstream: Upstream, link: FileLink, filename: str, background: bool | Priority
    ) -> bytes | None:
        """
        A wheel's METADATA by range requests: its end first, then what the
        zip's reader asks for next; L{None} if upstream answers no ranges.
        """
        tail = await upstream.fetchRange(link.url, -(TAIL + 1024), None, background)
        if tail is None:
            return None
        sparse = Sparse(tail.total)
        sparse.add(tail.start, tail.data)

        def attempt() -> bytes | Need:
            sparse.seek(0)
            try:
                return metadataFromZip(sparse, filename)
            except Need as need:
                return need

        for _ in range(RANGES_MAX):
            result = await self.runInThread(attempt)
            if isinstance(result, bytes):
                return result
            if sparse.held() > RANGED_MAX:
                break
            end = min(sparse.size, max(result.end, result.start + TAIL))
            more = await upstream.fetchRange(link.url, result.start, end, background)
            if more is None:
                return None
            sparse.add(more.start, more.data)
        raise NoMetadata("its central directory and METADATA take too many ranges to read")

