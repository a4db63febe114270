"""
Upstream's host names resolved once a minute, not once a connection: each
new connection to upstream asked the system's resolver again, in a thread
(a cold install through an HTTPS upstream spent tens of thread-seconds in
C{getaddrinfo}), for a name whose addresses had not changed.
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IReactorPluggableNameResolver,
    IReactorTime,
    IResolutionReceiver,
)
from zope.interface import implementer

__all__ = ["RESOLVE_EVERY", "CachingResolver", "ResolvingReactor"]

#: Seconds a host name's addresses are kept: about the time a content
#: network's name keeps its addresses.
RESOLVE_EVERY = 60.0

#: Names resolved, kept at most.
NAMES_KEPT = 256

_Key = tuple[str, int, "tuple[type[IAddress], ...] | None", str]


@implementer(IHostResolution)
class _Known:
    """
    A resolution answered from what is kept: over at once.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass


@implementer(IHostnameResolver)
class CachingResolver:
    """
    A resolver that keeps the addresses another found for a name, for
    C{seconds} on C{clock}'s time, and asks it once for however many
    connections want the name at the same moment.  A name that resolved to
    nothing is asked again at once, next time.
    """

    def __init__(self, resolver: IHostnameResolver, clock: IReactorTime, seconds: float = RESOLVE_EVERY) -> None:
        self._resolver = resolver
        self._clock = clock
        self.seconds = seconds
        self._known: dict[_Key, tuple[float, list[IAddress]]] = {}
        #: Those waiting for a resolution under way, by what it resolves.
        self._waiting: dict[_Key, list[IResolutionReceiver]] = {}

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        key: _Key = (hostName, portNumber, tuple(addressTypes) if addressTypes else None, transportSemantics)
        now = self._clock.seconds()
        found = self._known.get(key)
        if found is not None and 0 <= now - found[0] < self.seconds:
            resolution = _Known(hostName)
            tell(resolutionReceiver, found[1], began=resolution)
            return resolution
        waiting = self._waiting.get(key)
        if waiting is not None:
            resolution = _Known(hostName)
            resolutionReceiver.resolutionBegan(resolution)
            waiting.append(resolutionReceiver)
            return resolution
        self._waiting[key] = [resolutionReceiver]
        return self._resolver.resolveHostName(
            _Recording(self, key, now), hostName, portNumber, addressTypes, transportSemantics
        )

    def began(self, key: _Key, resolution: IHostResolution) -> None:
        """
        A resolution under way began: tell the receiver that asked for it
        (those who joined it were told as they joined).
        """
        self._waiting[key][0].resolutionBegan(resolution)

    def resolved(self, key: _Key, when: float, addresses: list[IAddress]) -> None:
        """
        A resolution under way found C{addresses}: keep them, if any, and
        tell all who wait.
        """
        if addresses:
            self._known.pop(key, None)
            self._known[key] = (when, addresses)
            if len(self._known) > NAMES_KEPT:
                del self._known[next(iter(self._known))]
        for receiver in self._waiting.pop(key, ()):
            tell(receiver, addresses)


def tell(receiver: IResolutionReceiver, addresses: list[IAddress], began: IHostResolution | None = None) -> None:
    """
    Tell a receiver the addresses found for a name, all at once, and that
    that is all; that the resolution C{began} first, if given.
    """
    if began is not None:
        receiver.resolutionBegan(began)
    for address in addresses:
        receiver.addressResolved(address)
    receiver.resolutionComplete()


@implementer(IResolutionReceiver)
class _Recording:
    """
    Gathers what a resolution finds, for the resolver to keep and tell.
    """

    def __init__(self, resolver: CachingResolver, key: _Key, when: float) -> None:
        self._resolver = resolver
        self._key = key
        self._when = when
        self._addresses: list[IAddress] = []

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        self._resolver.began(self._key, resolutionInProgress)

    def addressResolved(self, address: IAddress) -> None:
        self._addresses.append(address)

    def resolutionComplete(self) -> None:
        self._resolver.resolved(self._key, self._when, self._addresses)


@implementer(IReactorPluggableNameResolver)
class ResolvingReactor:
    """
    The reactor, as an endpoint sees it, with another name resolver.
    """

    def __init__(self, reactor: Any, resolver: IHostnameResolver) -> None:
        self._reactor = reactor
        self.nameResolver = resolver

    def installNameResolver(self, resolver: IHostnameResolver) -> IHostnameResolver:
        previous, self.nameResolver = self.nameResolver, resolver
        return previous

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)
