"""
Package files: the one download per file that fills the tree, and the
link each download fetches, found on its project's page.

A cold file's path goes down once and comes back once: the file resource
asks L{FileStore.download}; the download asks L{FileStore.resolve} for its
link (the project's page, from memory, or fetched if the mirror has none),
upstream for the bytes, and the tree to keep them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from ._download import Download
from ._errors import NotFound
from ._events import IMirrorEvents, NoEvents
from ._layout import FileKey
from ._links import FileLink, projectsOf
from ._tree import FileTree
from ._upstream import Upstream

if TYPE_CHECKING:
    from ._pages import ProjectPages

__all__ = ["FileStore"]


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
        runInThread: Callable[..., Deferred[Any]],
        *,
        clientTimeout: float,
        events: IMirrorEvents | None = None,
    ) -> None:
        self.tree = tree
        self.pages = pages
        self.upstream = upstream
        self.clock = clock
        self.runInThread = runInThread
        self.events = events if events is not None else NoEvents()
        #: Seconds a client may take nothing of a file being sent to it.
        self.clientTimeout = clientTimeout
        self._downloads: dict[FileKey, Download] = {}

    def download(self, key: FileKey) -> Download:
        """
        The download of a file, started now unless it runs already.
        """
        download = self._downloads.get(key)
        if download is None:
            download = self._downloads[key] = Download(
                key, self.resolve, self.upstream, self.tree, self.clock, self.runInThread, self.events
            )
            Deferred.fromCoroutine(download.run()).addBoth(self._forget, download)
        return download

    def _forget(self, result: object, download: Download) -> None:
        """
        A download ended: the next request for its file looks afresh.
        """
        if self._downloads.get(download.key) is download:
            del self._downloads[download.key]

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
        for name in projectsOf(key.filename):
            try:
                link = await self.pages.findLink(name, key)
            except NotFound:
                continue
            if link is not None:
                return link
        raise NotFound(str(key))
