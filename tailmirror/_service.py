"""
The mirror as a Twisted service: it owns the journal and the pooled HTTP
client to upstream, opened at start and closed at stop.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any

import treq
from twisted.application.service import Service
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.internet.threads import deferToThreadPool
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.server import Site

from ._files import FileStore
from ._journal import Journal
from ._pages import ProjectPages
from ._upstream import Upstream, UpstreamEndpoints
from ._web import MirrorWeb

__all__ = ["MirrorService", "Settings", "loadTrustRoot"]

MiB = 1024 * 1024


@dataclass
class Settings:
    """
    What a mirror is told by its options.
    """

    upstream: str
    cacheDir: str
    ttl: float = 900.0
    timeout: float = 15.0
    idleTimeout: float = 30.0
    clientTimeout: float = 60.0
    maxPageBytes: int = 64 * MiB
    pageRequests: int = 16
    fileRequests: int = 16
    caCerts: str | None = None


def loadTrustRoot(path: str) -> Any:
    """
    The certificate authorities of a PEM file, as a trust root.

    @raise ValueError: if the file holds no certificate.
    """
    with open(path, "rb") as f:
        data = f.read()
    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in data.split(marker) if b"-----BEGIN" in block]
    if not blocks:
        raise ValueError(f"{path} holds no PEM certificate")
    return trustRootFromCertificates([Certificate.loadPEM(block) for block in blocks])


class MirrorService(Service):
    """
    A mirror of one upstream index, keeping its state in C{cacheDir}.
    """

    def __init__(self, reactor: Any, settings: Settings) -> None:
        self.settings = settings
        self._reactor = reactor
        self._previousHandler: Any = None
        self.cacheDir = settings.cacheDir
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 8
        # Certificates are checked against the host name by service-identity,
        # against the system's authorities or those of --ca-certs.
        trustRoot = loadTrustRoot(settings.caCerts) if settings.caCerts else None
        agent = Agent.usingEndpointFactory(
            reactor,
            UpstreamEndpoints(reactor, BrowserLikePolicyForHTTPS(trustRoot), settings.timeout),
            pool=self._pool,
        )
        # treq's client asks for gzip and decodes it, and follows redirects.
        client = treq.client.HTTPClient(agent)
        pool = reactor.getThreadPool()

        def runInThread(f: Any, *args: Any) -> Any:
            return deferToThreadPool(reactor, pool, f, *args)

        fetcher = Upstream(
            client,
            settings.upstream,
            reactor,
            timeout=settings.timeout,
            maxPageBytes=settings.maxPageBytes,
            concurrency=settings.pageRequests,
            fileConcurrency=settings.fileRequests,
            idleTimeout=settings.idleTimeout,
        )
        self.pages = ProjectPages(
            Journal(os.path.join(self.cacheDir, "journal.jsonl")),
            fetcher,
            reactor,
            runInThread,
            ttl=settings.ttl,
        )
        self.files = FileStore(
            self.cacheDir,
            self.pages,
            fetcher,
            reactor,
            runInThread,
            clientTimeout=settings.clientTimeout,
        )
        self.site = Site(MirrorWeb(self.pages, self.files).resource(), timeout=settings.clientTimeout)
        self.site.displayTracebacks = False

    def startService(self) -> None:
        """
        Replay the journal and clear unfinished downloads before the mirror
        answers anyone.
        """
        os.makedirs(self.cacheDir, exist_ok=True)
        self.pages.open()
        self.files.open()
        self._previousHandler = signal.signal(signal.SIGUSR2, self._compactOnSignal)
        super().startService()

    def _compactOnSignal(self, signum: int, frame: Any) -> None:
        """
        C{SIGUSR2} asks for the journal to be compacted now.
        """
        self._reactor.callFromThread(self.pages.compact)

    def stopService(self) -> Any:
        """
        Close the connections to upstream and the journal.
        """
        super().stopService()
        if self._previousHandler is not None:
            signal.signal(signal.SIGUSR2, self._previousHandler)
            self._previousHandler = None
        self.pages.close()
        return self._pool.closeCachedConnections()
