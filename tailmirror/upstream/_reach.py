"""
What the mirror may reach.  A page can link a file at any URL; a hostile
or compromised upstream could thus have the mirror fetch from inside its
own network (loopback, the cloud's metadata address, a private network)
and hand the answer to any client.  So every connection's addresses are
judged as they are resolved, at connect time (a name that resolves
elsewhere a moment later, DNS rebinding, gains nothing): an address in
L{REFUSED} is refused, unless the upstream's own host resolves to it with
that port, or the operator allows its host (C{--allow-file-host}).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any, Iterable, Sequence

from twisted.internet import address as twistedAddress
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IAddress, IHostnameResolver, IHostResolution, IResolutionReceiver
from zope.interface import implementer

from ..base import UpstreamError
from ._resolve import _Known, tell

__all__ = ["REFUSED", "GuardedResolver", "Reach", "Refused", "parseHostPort"]

#: The addresses refused unless allowed, and what each is, for the line
#: that says why.  This list, not Python's wider C{is_private}, which also
#: takes in documentation and benchmarking ranges that some networks route
#: to real indexes.
REFUSED = tuple(
    (ip_network(network), kind)
    for network, kind in (
        ("127.0.0.0/8", "loopback"),
        ("::1/128", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("fe80::/10", "link-local"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("fc00::/7", "unique-local"),
        ("100.64.0.0/10", "shared address space"),
        ("0.0.0.0/8", "unspecified"),
        ("::/128", "unspecified"),
    )
)


class Refused(UpstreamError):
    """
    The mirror will not connect where a link (or a redirect) leads.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(502, reason)


def refusedKind(host: str) -> str | None:
    """
    What kind of refused address C{host} is; L{None} if it is not one.
    """
    try:
        found: IPv4Address | IPv6Address = ip_address(host.partition("%")[0])
    except ValueError:
        return None
    if isinstance(found, IPv6Address) and found.ipv4_mapped is not None:
        found = found.ipv4_mapped
    for network, kind in REFUSED:
        if found.version == network.version and found in network:
            return kind
    return None


def parseHostPort(value: str) -> tuple[str, int | None]:
    """
    C{HOST[:PORT]} (C{[V6]:PORT} for an IPv6 address), lower-cased.

    @raise ValueError: if it is not one.
    """
    text = value.strip().lower()
    port: int | None = None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(value)
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        port = int(number)
    else:
        host = text
    if not host or " " in host or "/" in host or (port is not None and not 0 < port < 65536):
        raise ValueError(value)
    return host, port


class Reach:
    """
    Where connections may go: the upstreams' own hosts (by name, or by the
    addresses those names resolve to, with their ports), the hosts the
    operator allows, and any address not in L{REFUSED}.
    """

    def __init__(
        self, origins: Iterable[tuple[str, int]] = (), allowed: Iterable[tuple[str, int | None]] = ()
    ) -> None:
        self.origins = {(host.lower(), port) for host, port in origins}
        self.allowed = tuple((host.lower(), port) for host, port in allowed)
        #: The addresses each upstream's host (and port) last resolved to.
        self._originAddresses: dict[tuple[str, int], frozenset[str]] = {
            (host, port): frozenset([host]) for host, port in self.origins if refusedKind(host) is not None
        }

    def isOrigin(self, host: str, port: int) -> bool:
        return (host.lower(), port) in self.origins

    def _allows(self, host: str, port: int) -> bool:
        host = host.lower()
        return any(host == each and wanted in (None, port) for each, wanted in self.allowed)

    def learned(self, host: str, port: int, addresses: Iterable[str]) -> None:
        """
        An upstream's host, on C{port}, resolved to C{addresses} (its
        addresses now, in place of those it had).
        """
        self._originAddresses[(host.lower(), port)] = frozenset(addresses)

    def unlearnedOrigins(self, port: int) -> list[str]:
        """
        The upstreams' host names on C{port} whose addresses are not known yet.
        """
        return [host for host, each in self.origins if each == port and (host, port) not in self._originAddresses]

    def judge(self, host: str, port: int, addresses: Sequence[str]) -> tuple[list[str], str | None]:
        """
        Which of the addresses a name resolved to may be connected to, and
        if none may, why not: one line naming the host and the option.
        """
        if self.isOrigin(host, port) or self._allows(host, port):
            return list(addresses), None
        kept: list[str] = []
        refusal = None
        originAddresses = set().union(*(found for (_, each), found in self._originAddresses.items() if each == port))
        for each in addresses:
            kind = refusedKind(each)
            if kind is None or each in originAddresses or self._allows(each, port):
                kept.append(each)
            elif refusal is None:
                what = host if host == each else f"{host} ({each})"
                refusal = (
                    f"refused to fetch from {what} port {port}: a {kind} address; "
                    f"--allow-file-host {_hostPort(host, port)} allows it"
                )
        return kept, None if kept else refusal


def _hostPort(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _hostOf(address: IAddress) -> str | None:
    if isinstance(address, (twistedAddress.IPv4Address, twistedAddress.IPv6Address)):
        return str(address.host)
    return None


@implementer(IResolutionReceiver)
class _Gathered:
    """
    The addresses a resolution finds, as a L{Deferred}.
    """

    def __init__(self) -> None:
        self.addresses: list[IAddress] = []
        self.done: Deferred[list[IAddress]] = Deferred()

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        pass

    def addressResolved(self, address: IAddress) -> None:
        self.addresses.append(address)

    def resolutionComplete(self) -> None:
        self.done.callback(self.addresses)


@implementer(IHostnameResolver)
class GuardedResolver:
    """
    A resolver for one connection that passes on only the addresses
    L{Reach} allows; if it allows none, C{refusal} says why (the endpoint
    then fails with L{Refused}, not a failure to resolve).
    """

    def __init__(self, resolver: IHostnameResolver, reach: Reach) -> None:
        self._resolver = resolver
        self._reach = reach
        self.refusal: str | None = None

    def _resolve(self, hostName: str, portNumber: int, addressTypes: Any, transportSemantics: str) -> Deferred[list[IAddress]]:
        gathered = _Gathered()
        self._resolver.resolveHostName(gathered, hostName, portNumber, addressTypes, transportSemantics)
        return gathered.done

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        resolution = _Known(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        reach = self._reach

        async def judged() -> list[IAddress]:
            found = await self._resolve(hostName, portNumber, addressTypes, transportSemantics)
            hosts = [h for h in map(_hostOf, found) if h is not None]
            if reach.isOrigin(hostName, portNumber):
                reach.learned(hostName, portNumber, hosts)
                return found
            if any(refusedKind(h) is not None for h in hosts):
                # Is it the upstream's own address?  Learn where its host is.
                unlearned = reach.unlearnedOrigins(portNumber)
                if unlearned:
                    origins = await gatherResults(
                        [self._resolve(name, portNumber, addressTypes, transportSemantics) for name in unlearned]
                    )
                    for name, each in zip(unlearned, origins):
                        reach.learned(name, portNumber, [h for h in map(_hostOf, each) if h is not None])
            kept, self.refusal = reach.judge(hostName, portNumber, hosts)
            return [a for a in found if _hostOf(a) in kept]

        Deferred.fromCoroutine(judged()).addCallbacks(
            lambda addresses: tell(resolutionReceiver, addresses), lambda failure: tell(resolutionReceiver, [])
        )
        return resolution
