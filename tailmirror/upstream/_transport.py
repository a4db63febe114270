"""
How the mirror reaches an upstream: endpoints whose connections read in
bulk and write through, TLS checked against the system's authorities or an
operator's, connections only where L{Reach} allows, pools of persistent
connections that start and stop quietly, and one C{treq} client per set
of authorities, without cookies.
"""

from __future__ import annotations

from typing import Any, Callable

import treq
from treq.cookies import IndexableCookieJar
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HostnameCachingHTTPSPolicy,
    HTTPConnectionPool,
    _HTTP11ClientFactory,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer

from ..base import readInBulk, writeThrough
from ._reach import GuardedResolver, Reach, Refused
from ._resolve import CachingResolver, ResolvingReactor

__all__ = ["Clients", "NoCookies", "QuietPool", "UpstreamEndpoints", "loadTrustRoot"]


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


@implementer(IAgentEndpointFactory)
class UpstreamEndpoints:
    """
    Where an L{Agent} connects for a URL, as its own default does (TLS for
    https, checked by C{policy}), with connections that read in bulk; the
    host's name resolved once a minute (L{CachingResolver}), not once a
    connection, and the TLS settings (an OpenSSL context, the authorities
    loaded into it) made once a host, not once a connection.  Each
    connection goes only where C{reach} allows (L{Reach}), judged by the
    addresses it is about to connect to.
    """

    def __init__(
        self,
        reactor: Any,
        policy: IPolicyForHTTPS,
        connectTimeout: float | None = None,
        reach: Reach | None = None,
    ) -> None:
        self._reactor = reactor
        self._resolver = CachingResolver(reactor.nameResolver, reactor)
        self._reach = reach if reach is not None else Reach()
        self._policy = HostnameCachingHTTPSPolicy(policy)
        self._connectTimeout = connectTimeout

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        try:
            host = uri.host.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"the host name {uri.host!r} is not ASCII") from None
        if uri.scheme not in (b"http", b"https"):
            raise SchemeNotSupported(f"unsupported scheme: {uri.scheme!r}")

        def make() -> tuple[IStreamClientEndpoint, GuardedResolver]:
            kwargs: dict[str, Any] = {} if self._connectTimeout is None else {"timeout": self._connectTimeout}
            guard = GuardedResolver(self._resolver, self._reach)
            reactor = ResolvingReactor(self._reactor, guard)
            endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, host, uri.port, **kwargs)
            if uri.scheme == b"https":
                endpoint = wrapClientTLS(self._policy.creatorForNetloc(uri.host, uri.port), endpoint)
            return endpoint, guard

        return _Bulk(make)


@implementer(IStreamClientEndpoint)
class _Bulk:
    """
    An endpoint whose connections read up to L{tailmirror.base.BULK} bytes
    at a time and write through (L{tailmirror.base.writeThrough}), made only
    when a connection is: the L{Agent} asks for one for every
    request, most of which reuse a pooled connection, and TLS options cost a
    new context each.
    """

    def __init__(self, make: Callable[[], tuple[IStreamClientEndpoint, GuardedResolver]]) -> None:
        self._make = make

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        def tune(protocol: Any) -> Any:
            readInBulk(protocol.transport)
            writeThrough(protocol.transport)
            return protocol

        def refused(failure: Failure) -> Failure:
            if guard.refusal is not None:
                return Failure(Refused(guard.refusal))
            return failure

        endpoint, guard = self._make()
        return endpoint.connect(factory).addCallbacks(tune, refused)


class NoCookies(IndexableCookieJar):
    """
    A cookie jar that keeps none: what the mirror asks upstream is the same
    whichever client it asks for, and nothing upstream sets one answer
    carries over to the next.
    """

    def add_cookie_header(self, request: Any) -> None:
        pass

    def extract_cookies(self, response: Any, request: Any) -> None:
        pass


class _QuietClientFactory(_HTTP11ClientFactory):
    """
    The pool's connection factory, without a log line for every connection
    it starts and stops.
    """

    noisy = False


class QuietPool(HTTPConnectionPool):
    """
    Persistent connections to upstream, started and stopped without noise.
    """

    _factory = _QuietClientFactory


class Clients:
    """
    The HTTP clients to upstreams: one per set of authorities (the
    system's, or a PEM file's), each with its own pool of persistent
    connections, for a pool knows a connection only by its host.
    Certificates are checked against the host name by service-identity.
    """

    def __init__(self, reactor: Any, connectTimeout: float, persistent: int, reach: Reach | None = None) -> None:
        self._reactor = reactor
        #: Where their connections may go.
        self.reach = reach if reach is not None else Reach()
        self._connectTimeout = connectTimeout
        #: Idle connections kept per host: as many as requests run at once,
        #: so that a burst of clients (uv asks for dozens of pages at once)
        #: reuses them all.
        self._persistent = persistent
        self._clients: dict[str | None, Any] = {}
        self._pools: list[QuietPool] = []

    def clientFor(self, caCerts: str | None) -> Any:
        """
        The client that trusts the authorities of C{caCerts} (a PEM file),
        or the system's for L{None}.

        @raise ValueError: if the file holds no certificate.
        @raise OSError: if it cannot be read.
        """
        if caCerts not in self._clients:
            trustRoot = loadTrustRoot(caCerts) if caCerts else None
            reactor = self._reactor
            pool = QuietPool(reactor, persistent=True)
            pool.maxPersistentPerHost = self._persistent
            self._pools.append(pool)
            agent = Agent.usingEndpointFactory(
                reactor,
                UpstreamEndpoints(reactor, BrowserLikePolicyForHTTPS(trustRoot), self._connectTimeout, self.reach),
                pool=pool,
            )
            # treq's client asks for gzip and decodes it, and follows redirects.
            self._clients[caCerts] = treq.client.HTTPClient(agent, cookiejar=NoCookies())
        return self._clients[caCerts]

    def close(self) -> Deferred[Any]:
        """
        Close every pool's connections.
        """
        return gatherResults([pool.closeCachedConnections() for pool in self._pools])
