"""
Tests for sharing one piece of in-flight work among many waiters.
"""

from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase

from tailmirror.base._coalesce import Coalescer


class CoalescerTests(SynchronousTestCase):
    """
    Tests for L{Coalescer}.
    """

    def setUp(self) -> None:
        self.coalescer: Coalescer[str] = Coalescer()
        self.started: list[Deferred[str]] = []

    def work(self) -> Deferred[str]:
        d: Deferred[str] = Deferred()
        self.started.append(d)
        return d

    def test_oneRunManyWaiters(self) -> None:
        """
        Waiters that come while work runs join it; each gets the result.
        """
        waiters = [self.coalescer.run("k", self.work) for _ in range(5)]
        self.assertEqual(len(self.started), 1)
        self.started[0].callback("done")
        self.assertEqual([self.successResultOf(w) for w in waiters], ["done"] * 5)
        self.assertFalse(self.coalescer.inFlight("k"))

    def test_keysIndependent(self) -> None:
        """
        Different keys run separately.
        """
        self.coalescer.run("a", self.work)
        self.coalescer.run("b", self.work)
        self.assertEqual(len(self.started), 2)

    def test_failureToAllThenAfresh(self) -> None:
        """
        A failure reaches every waiter, and the next caller starts afresh.
        """
        waiters = [self.coalescer.run("k", self.work) for _ in range(3)]
        self.started[0].errback(ValueError("boom"))
        for w in waiters:
            self.failureResultOf(w, ValueError)
        self.coalescer.run("k", self.work)
        self.assertEqual(len(self.started), 2)

    def test_cancelDetachesOnlyThatWaiter(self) -> None:
        """
        Cancelling one waiter (a client hanging up) neither cancels the work
        nor disturbs the others.
        """
        first = self.coalescer.run("k", self.work)
        second = self.coalescer.run("k", self.work)
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertFalse(self.started[0].called)
        self.started[0].callback("done")
        self.assertEqual(self.successResultOf(second), "done")

    def test_allCancelledWorkGoesOn(self) -> None:
        """
        Even with every waiter gone, the work runs to its end and the key is
        then forgotten.
        """
        waiter = self.coalescer.run("k", self.work)
        waiter.cancel()
        self.failureResultOf(waiter, CancelledError)
        self.assertTrue(self.coalescer.inFlight("k"))
        self.started[0].callback("done")
        self.assertFalse(self.coalescer.inFlight("k"))

    def test_synchronousWork(self) -> None:
        """
        Work that is done at once (or raises at once) still answers the
        caller and leaves nothing behind.
        """
        from twisted.internet.defer import succeed

        self.assertEqual(self.successResultOf(self.coalescer.run("k", lambda: succeed("x"))), "x")

        def boom() -> Deferred[str]:
            raise KeyError("now")

        self.failureResultOf(self.coalescer.run("k", boom), KeyError)
        self.assertFalse(self.coalescer.inFlight("k"))
