"""
Reading upstream's answers: a page's body up to a cap, a file's handed to
its sink as it arrives (paused and resumed as the disk keeps up), each
given up when upstream goes quiet; and the failures of a request told as
one line a client can read.
"""

from __future__ import annotations

from typing import Any, Protocol as Structural, cast

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import (
    RequestGenerationFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.error import InfiniteRedirection, SchemeNotSupported
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IResponse

from ..base import IdleTimer, UpstreamError

__all__ = ["BodyReader", "CappedBody", "Dropped", "FileBody", "FileSink", "PageTooLarge", "readBody", "reasonOf", "typeName"]


class PageTooLarge(Exception):
    """
    An upstream body grew past the cap.
    """


class BodyReader(Protocol):
    """
    Reads a response body: L{done} fires at its end, or fails with why it
    did not end well.  Cancelling L{done} drops the connection.
    """

    def __init__(self) -> None:
        self.done: Deferred[Any] = Deferred(lambda d: self.stop())

    def stop(self) -> None:
        """
        Drop the connection; the body will not end well.
        """
        if self.transport is not None:
            cast(IPushProducer, self.transport).stopProducing()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        # A body without a length ends when the connection does.
        self.end(None if reason.check(ResponseDone, PotentialDataLoss) else reason)

    def end(self, failure: Failure | None) -> None:
        """
        The body ended, well or with C{failure}; only the first end counts.
        """
        if self.done.called:
            return
        if failure is None:
            self.done.callback(self.result())
        else:
            self.done.errback(failure)

    def result(self) -> Any:
        """
        What L{done} fires with when the body ends well.
        """
        return None


class CappedBody(BodyReader):
    """
    Collect a response body up to a cap: a body past it fails with
    L{PageTooLarge}, or, if only its C{head} is wanted, ends there, the
    rest unread.
    """

    def __init__(self, cap: int, head: bool = False, idle: tuple[IReactorTime, float] | None = None) -> None:
        super().__init__()
        self.cap = cap
        self.head = head
        self.parts: list[bytes] = []
        self.size = 0
        self._timer = None if idle is None else IdleTimer(idle[0], idle[1], self._quiet)

    def connectionMade(self) -> None:
        if self._timer is not None:
            self._timer.start()

    def _quiet(self) -> None:
        """
        Upstream sent nothing for too long: give the body up.
        """
        self.stop()
        self.end(Failure(UpstreamError(504, "upstream stopped sending the page")))

    def end(self, failure: Failure | None) -> None:
        if self._timer is not None:
            self._timer.stop()
        super().end(failure)

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        if self._timer is not None:
            self._timer.poke()
        self.size += len(data)
        if self.size > self.cap:
            self.stop()
            if self.head:
                self.parts.append(data)
                self.end(None)
            else:
                self.end(Failure(PageTooLarge()))
            return
        self.parts.append(data)

    def result(self) -> bytes:
        return b"".join(self.parts)[: self.cap]


class FileSink(Structural):
    """
    Where L{Upstream.fetchFile} puts a file as it arrives.
    """

    def begin(self, length: int | None, body: "FileBody") -> None:
        """
        Upstream answered, with C{length} bytes to come where it says so;
        C{body} may be paused and resumed.  Raising refuses the file before
        any of it is read.
        """

    def write(self, data: bytes) -> None:
        """
        More of the file.  Raising ends the download with that failure.
        """


class FileBody(BodyReader):
    """
    Hands a file's body to a L{FileSink} as it arrives; drops the connection
    if upstream goes quiet for longer than the idle timeout.  Time the sink
    holds upstream back (L{pause}) is not upstream's silence.
    """

    def __init__(self, sink: FileSink, clock: IReactorTime, idle: float) -> None:
        super().__init__()
        self._sink = sink
        self._timer = IdleTimer(clock, idle, self.stop)
        self.paused = False
        #: Bytes received so far.
        self.received = 0

    @property
    def quiet(self) -> bool:
        """
        Whether the body was given up for upstream's silence.
        """
        return self._timer.fired

    def connectionMade(self) -> None:
        if not self.paused:
            self._timer.start()

    def pause(self) -> None:
        """
        Stop reading from upstream for a while.
        """
        if not self.paused and self.transport is not None:
            self.paused = True
            cast(IPushProducer, self.transport).pauseProducing()
            self._timer.pause()

    def resume(self) -> None:
        """
        Read from upstream again.
        """
        if self.paused and self.transport is not None:
            self.paused = False
            cast(IPushProducer, self.transport).resumeProducing()
            if not self.done.called:
                self._timer.resume()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self._timer.poke()
        self.received += len(data)
        try:
            self._sink.write(data)
        except BaseException:
            failure = Failure()
            self.stop()
            self.end(failure)

    def end(self, failure: Failure | None) -> None:
        self._timer.stop()
        super().end(failure)


def readBody(response: IResponse, cap: int, idle: tuple[IReactorTime, float] | None = None) -> Deferred[bytes]:
    """
    Read a response body of at most C{cap} bytes; given C{(clock, seconds)},
    give it up with a 504 if upstream goes quiet for that long.
    """
    protocol = CappedBody(cap, idle=idle)
    response.deliverBody(protocol)
    return protocol.done


def _inner(failure: Failure) -> list[Failure]:
    """
    The failures a twisted.web client failure wraps, or the failure itself.
    """
    reasons = getattr(failure.value, "reasons", None)
    if failure.check(ResponseFailed, ResponseNeverReceived, RequestGenerationFailed) and reasons:
        return [f for f in reasons if isinstance(f, Failure)] or [failure]
    return [failure]


def reasonOf(failure: Failure, timeout: float) -> UpstreamError:
    """
    The answer to give for a failed upstream request.
    """
    for inner in _inner(failure):
        if inner.check(InfiniteRedirection):
            return UpstreamError(
                502, "upstream redirected too often (a loop, or a chain of more than 20)"
            )
        if inner.check(SSL.Error, VerificationError):
            summary = " ".join(inner.getErrorMessage().split())[:200]
            return UpstreamError(
                502, f"upstream's TLS certificate was refused: {summary}"
            )
        if inner.check(SchemeNotSupported):
            return UpstreamError(502, "upstream redirected to a URL that is not http(s)")
    if failure.check(ResponseFailed):
        return UpstreamError(502, "upstream broke off its answer")
    if failure.check(TimeoutError):
        return UpstreamError(504, f"upstream did not answer within {timeout:g} s")
    if failure.check(PageTooLarge):
        return UpstreamError(502, "upstream page is larger than the page size cap")
    if failure.check(DNSLookupError):
        return UpstreamError(502, "upstream host name does not resolve")
    if failure.check(ConnectError):
        return UpstreamError(502, "upstream refused or dropped the connection")
    summary = " ".join(failure.getErrorMessage().split())[:200]
    return UpstreamError(502, f"upstream request failed: {typeName(failure)}: {summary}")


def typeName(failure: Failure) -> str:
    """
    The name of a failure's exception type.
    """
    return failure.type.__name__ if failure.type is not None else "failure"


class Dropped(Protocol):
    """
    A body not wanted: its connection is dropped at once, not read through.
    """

    def connectionMade(self) -> None:
        cast(IPushProducer, self.transport).stopProducing()
