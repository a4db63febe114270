"""
The mirror as a Twisted service: it owns the journal and the pooled HTTP
client to upstream, opened at start and closed at stop.
"""

from __future__ import annotations

import os
from typing import Any

import treq
from twisted.application.service import Service
from twisted.internet.threads import deferToThreadPool
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from ._files import FileStore
from ._journal import Journal
from ._pages import ProjectPages
from ._upstream import Upstream
from ._web import MirrorWeb

__all__ = ["MirrorService"]


class MirrorService(Service):
    """
    A mirror of one upstream index, keeping its state in C{cacheDir}.
    """

    def __init__(
        self,
        reactor: Any,
        upstream: str,
        cacheDir: str,
        ttl: float,
        timeout: float,
    ) -> None:
        self.cacheDir = cacheDir
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 8
        # treq's client asks for gzip and decodes it.
        client = treq.client.HTTPClient(Agent(reactor, pool=self._pool, connectTimeout=timeout))
        pool = reactor.getThreadPool()

        def runInThread(f: Any, *args: Any) -> Any:
            return deferToThreadPool(reactor, pool, f, *args)

        fetcher = Upstream(client, upstream, reactor, timeout=timeout)
        self.pages = ProjectPages(
            Journal(os.path.join(cacheDir, "journal.jsonl")),
            fetcher,
            reactor,
            runInThread,
            ttl=ttl,
        )
        self.files = FileStore(cacheDir, self.pages, fetcher, reactor, runInThread)
        self.site = Site(MirrorWeb(self.pages, self.files).resource())
        self.site.displayTracebacks = False

    def startService(self) -> None:
        """
        Replay the journal and clear unfinished downloads before the mirror
        answers anyone.
        """
        os.makedirs(self.cacheDir, exist_ok=True)
        self.pages.open()
        self.files.open()
        super().startService()

    def stopService(self) -> Any:
        """
        Close the connections to upstream and the journal.
        """
        super().stopService()
        self.pages.close()
        return self._pool.closeCachedConnections()
