"""
Read access (C{--auth}): every request to the mirror's tree logs in to a
C{twisted.cred} portal with the credentials it carries (Basic, or a
bearer token) before the mirror sees it.  Without them, or with wrong
ones, the answer is C{401} with C{WWW-Authenticate}, never a C{404} that
would look like a missing project; an address that keeps failing is
answered more and more slowly, and the log says so once per burst, never
with the secret.  The name that logged in goes to the access log.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginFailed
from twisted.cred.portal import IRealm, Portal
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from ._answers import plain
from ._passwords import BearerToken, IBearerToken

__all__ = ["AVATAR", "Guard", "Throttle"]

log = Logger()

#: The request attribute that holds the name that logged in.
AVATAR = "tailmirrorReader"
REALM = "tailmirror"

#: Failures from one address answered at once, in a burst.
FREE_FAILURES = 5
#: Seconds without a failure that end a burst.
BURST_QUIET = 60.0
#: The longest an answer to a failing address is held, in seconds.
SLOWEST = 8.0
#: Seconds credentials that logged in are taken again without a login: as
#: long as a change of the files of credentials takes to be seen.
RECENT_FOR = 1.0
#: Such credentials kept, at most.
RECENT_KEPT = 4096


class _Reader(Resource):
    """
    The tree, as one reader sees it: the same for all, and their name in
    the access log.
    """

    isLeaf = True

    def __init__(self, resource: Resource, name: str) -> None:
        super().__init__()
        self._resource = resource
        self._name = name

    def render(self, request: IRequest) -> Any:
        setattr(request, AVATAR, self._name)
        return self._resource.render(request)


@implementer(IRealm)
class _Readers:
    """
    Every reader sees the same tree.
    """

    def __init__(self, resource: Resource) -> None:
        self._resource = resource

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> tuple[Any, Any, Any]:
        if IResource not in interfaces:
            raise NotImplementedError()
        name = avatarId.decode("utf-8", "backslashreplace") if isinstance(avatarId, bytes) else str(avatarId)
        return IResource, _Reader(self._resource, name), lambda: None


@dataclass
class _Burst:
    failures: int
    last: float
    name: str


class Throttle:
    """
    Failed logins by address: past L{FREE_FAILURES} in a burst, each
    answer is held for longer (doubling, up to L{SLOWEST} seconds); a
    burst is logged once, when it begins to be slowed, and ends after
    L{BURST_QUIET} seconds without a failure.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._bursts: dict[str, _Burst] = {}

    def failed(self, address: str, name: str) -> float:
        """
        A failure from C{address} (trying C{name}): the seconds to hold
        its answer.
        """
        now = self._clock.seconds()
        if len(self._bursts) > 10000:
            self._bursts = {a: b for a, b in self._bursts.items() if now - b.last < BURST_QUIET}
        burst = self._bursts.get(address)
        if burst is None or now - burst.last >= BURST_QUIET:
            burst = self._bursts[address] = _Burst(0, now, name)
        burst.failures += 1
        burst.last = now
        over = burst.failures - FREE_FAILURES
        if over <= 0:
            return 0.0
        if over == 1:
            log.warn(
                "{failures} failed logins from {address} (the last as {name}); its answers are slowed",
                failures=burst.failures,
                address=address,
                name=name,
            )
        return float(min(SLOWEST, 0.25 * 2 ** (over - 1)))

    def succeeded(self, address: str) -> None:
        self._bursts.pop(address, None)


def credentialsOf(request: IRequest) -> Any:
    """
    The credentials a request carries: Basic or bearer; L{None} for none
    (or ones that cannot be read, which are wrong all the same: C{False}).
    """
    header = request.getHeader(b"authorization")
    if not header:
        return None
    scheme, _, value = header.strip().partition(b" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == b"bearer" and value:
        return BearerToken(value)
    if scheme == b"basic":
        try:
            decoded = binascii.a2b_base64(value)
        except binascii.Error:
            return False
        name, colon, password = decoded.partition(b":")
        if colon:
            return UsernamePassword(name, password)
    return False


class Guard(Resource):
    """
    The mirror's tree behind a portal: logged in to, request by request,
    with the credentials each carries.
    """

    isLeaf = True

    def __init__(self, resource: Resource, checker: Any, clock: IReactorTime, bearer: bool) -> None:
        super().__init__()
        self._checker = checker
        self._portal = Portal(_Readers(resource), [checker])
        self._clock = clock
        self.throttle = Throttle(clock)
        self._key = secrets.token_bytes(32)
        #: Keyed digests of the credentials that logged in lately: the
        #: reader's tree, and until when it is taken without a login.
        self._recent: dict[bytes, tuple[Resource, float]] = {}
        self._challenges = [f'Basic realm="{REALM}", charset="UTF-8"']
        if bearer:
            self._challenges.append(f'Bearer realm="{REALM}"')

    def render(self, request: IRequest) -> Any:
        header = request.getHeader(b"authorization")
        digest = None
        if header:
            # Credentials that logged in within the last second are let in
            # again at once: a client's hundred requests of an install cost
            # one login.  (A second: how late a file's change is seen.)
            digest = hmac.new(self._key, header, hashlib.sha256).digest()
            known = self._recent.get(digest)
            if known is not None and self._clock.seconds() < known[1]:
                return known[0].render(request)
        credentials = credentialsOf(request)
        if credentials is None:
            return self._unauthorized(request, "credentials are needed to read this mirror")
        if credentials is False:
            return self._failed(request, "credentials that cannot be read", "the credentials cannot be read")
        d = self._portal.login(credentials, None, IResource)
        answered: list[Any] = []
        waiting = False

        def handle(result: Any) -> None:
            try:
                outcome = self._loggedIn(result, request, credentials, digest)
            except Exception:
                log.failure("serving {path}", path=request.path.decode("latin-1")[:200])
                outcome = plain(request, 500, "internal error; the mirror's log says more")
            if not waiting:
                answered.append(outcome)
            elif outcome is not NOT_DONE_YET and not getattr(request, "_disconnected", False):
                request.write(outcome)
                request.finish()

        d.addBoth(handle)
        if answered:
            return answered[0]
        waiting = True
        return NOT_DONE_YET

    def _loggedIn(self, result: Any, request: IRequest, credentials: Any, digest: bytes | None) -> Any:
        if isinstance(result, Failure):
            if not result.check(LoginFailed):
                log.failure("checking credentials", result)
            return self._failed(request, self._nameOf(credentials), "wrong credentials")
        _, resource, _ = result
        self.throttle.succeeded(_addressOf(request))
        if digest is not None:
            if len(self._recent) >= RECENT_KEPT:
                self._recent.clear()
            self._recent[digest] = (resource, self._clock.seconds() + RECENT_FOR)
        return resource.render(request)

    def _nameOf(self, credentials: Any) -> str:
        """
        The name wrong credentials tried, for the log: only a name the
        files of credentials have (a token pasted where the name goes is a
        secret all the same).
        """
        if IBearerToken.providedBy(credentials):
            return "a bearer token"
        if not self._checker.knows(credentials.username):
            return "a name not known"
        return repr(credentials.username.decode("utf-8", "backslashreplace")[:64])

    def _unauthorized(self, request: IRequest, reason: str) -> bytes:
        request.responseHeaders.setRawHeaders(b"www-authenticate", [c.encode("ascii") for c in self._challenges])
        return plain(request, 401, reason)

    def _failed(self, request: IRequest, name: str, reason: str) -> Any:
        hold = self.throttle.failed(_addressOf(request), name)
        body = self._unauthorized(request, reason)
        if not hold:
            return body

        def answer() -> None:
            if not getattr(request, "_disconnected", False) and not getattr(request, "finished", False):
                request.write(body)
                request.finish()

        self._clock.callLater(hold, answer)
        return NOT_DONE_YET


def _addressOf(request: IRequest) -> str:
    return str(getattr(request.getClientAddress(), "host", "-"))
