"""
Upstream's host names are resolved once a minute, once for however many
connections want them at the same moment (L{CachingResolver}).
"""

from __future__ import annotations

from typing import Sequence

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IAddress, IHostnameResolver, IHostResolution, IResolutionReceiver
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tailmirror.upstream._resolve import RESOLVE_EVERY, CachingResolver, _Known


@implementer(IHostnameResolver)
class _Slow:
    """
    A resolver whose answers are given by hand.
    """

    def __init__(self) -> None:
        self.asked: list[tuple[IResolutionReceiver, str]] = []

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
        self.asked.append((resolutionReceiver, hostName))
        return resolution

    def answer(self, *hosts: str) -> None:
        receiver, _ = self.asked[-1]
        for host in hosts:
            receiver.addressResolved(IPv4Address("TCP", host, 443))
        receiver.resolutionComplete()


@implementer(IResolutionReceiver)
class _Receiver:
    def __init__(self) -> None:
        self.began = 0
        self.addresses: list[IAddress] = []
        self.complete = False

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        self.began += 1

    def addressResolved(self, address: IAddress) -> None:
        self.addresses.append(address)

    def resolutionComplete(self) -> None:
        self.complete = True


class CachingResolverTests(SynchronousTestCase):
    """
    Tests for L{CachingResolver}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.slow = _Slow()
        self.resolver = CachingResolver(self.slow, self.clock)

    def resolve(self, name: str = "upstream.test") -> _Receiver:
        receiver = _Receiver()
        self.resolver.resolveHostName(receiver, name, 443)
        return receiver

    def test_keptForAMinute(self) -> None:
        """
        A name's addresses are kept for L{RESOLVE_EVERY} seconds, then asked
        for again.
        """
        first = self.resolve()
        self.slow.answer("192.0.2.1", "192.0.2.2")
        self.assertEqual((first.began, len(first.addresses), first.complete), (1, 2, True))
        self.clock.advance(RESOLVE_EVERY - 1)
        again = self.resolve()
        self.assertEqual((again.began, again.addresses, again.complete), (1, first.addresses, True))
        self.assertEqual(len(self.slow.asked), 1)
        self.clock.advance(1)
        self.resolve()
        self.assertEqual(len(self.slow.asked), 2)

    def test_atTheSameMoment(self) -> None:
        """
        Connections that want a name while it is being resolved wait for
        that resolution: one question, every one of them answered.
        """
        receivers = [self.resolve() for _ in range(5)]
        self.assertEqual(len(self.slow.asked), 1)
        self.assertEqual([r.complete for r in receivers], [False] * 5)
        self.slow.answer("192.0.2.1")
        self.assertEqual([(r.began, len(r.addresses), r.complete) for r in receivers], [(1, 1, True)] * 5)

    def test_nothingNotKept(self) -> None:
        """
        A name that resolved to nothing is asked for again next time.
        """
        first = self.resolve()
        self.slow.answer()
        self.assertEqual((first.addresses, first.complete), ([], True))
        self.resolve()
        self.assertEqual(len(self.slow.asked), 2)

    def test_byName(self) -> None:
        """
        Each name is kept for itself.
        """
        self.resolve("a.test")
        self.slow.answer("192.0.2.1")
        self.resolve("b.test")
        self.assertEqual(len(self.slow.asked), 2)
