"""
Who may read the mirror (C{--auth}): C{twisted.cred} checkers over two
kinds of file, each read again when it changes, without a restart.

- C{htpasswd:PATH}: C{NAME:HASH} lines with bcrypt hashes, as
  C{htpasswd -B} writes them, checked by the C{bcrypt} library (in
  constant time, in a thread: a check costs tens of milliseconds of CPU).
  A password once found right is remembered (by a keyed digest, never as
  it is) until the file changes, so a client's hundred requests of an
  install cost one check.
- C{tokens:PATH}: C{NAME:sha256:HEX} lines, the sha256 of a bearer token
  and the name the access log shows for it (C{tailmirror token NAME} makes
  one).  A token is taken as a bearer token, and as the password of Basic
  credentials (pip and uv send Basic from a URL's userinfo), whatever the
  user name.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from typing import Any, Iterable

import bcrypt
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from ..base import RunInThread, WatchedFile

__all__ = [
    "AUTH_FORMATS",
    "AnyOf",
    "BearerToken",
    "HtpasswdChecker",
    "IBearerToken",
    "TokenChecker",
    "checkerFor",
    "newToken",
]

log = Logger()

#: The kinds of C{--auth}, and what each file holds (for C{--help}).
AUTH_FORMATS = {
    "htpasswd": "NAME:HASH lines with bcrypt hashes, as 'htpasswd -B' writes them",
    "tokens": "NAME:sha256:HEX lines, the sha256 of each bearer token ('tailmirror token NAME' makes one)",
}

#: Right passwords remembered, at most.
REMEMBERED = 4096
#: A bcrypt hash checked for a name the file does not have, so that such a
#: name costs as long as a wrong password does.
_DECOY = bcrypt.hashpw(b"decoy", bcrypt.gensalt(10))


class IBearerToken(Interface):
    """
    A bearer token (C{Authorization: Bearer ...}).
    """

    token = Attribute("The token, as bytes.")


@implementer(IBearerToken)
class BearerToken:
    def __init__(self, token: bytes) -> None:
        self.token = token

    def __repr__(self) -> str:
        return "BearerToken(...)"


def _lines(data: bytes, path: str) -> Iterable[tuple[int, str]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield number, line


@implementer(ICredentialsChecker)
class HtpasswdChecker:
    """
    Names and passwords checked against an htpasswd file's bcrypt hashes.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, path: str, clock: IReactorTime, runInThread: RunInThread) -> None:
        self._file = WatchedFile(path, self._parse, clock, "the file of --auth htpasswd")
        self._file.load()
        self._run = runInThread
        self._key = secrets.token_bytes(32)
        #: Keyed digests of right (name, password) pairs, by reading.
        self._right: OrderedDict[bytes, int] = OrderedDict()

    def _parse(self, data: bytes) -> dict[bytes, bytes]:
        users: dict[bytes, bytes] = {}
        for number, line in _lines(data, self._file.path):
            name, colon, hashed = line.partition(":")
            if not colon or not name:
                raise ValueError(f"{self._file.path} line {number} is not NAME:HASH")
            if not hashed.startswith(("$2y$", "$2b$", "$2a$")):
                log.warn(
                    "{path} line {number}: {name}'s hash is not bcrypt (htpasswd -B); that name cannot read",
                    path=self._file.path,
                    number=number,
                    name=name,
                )
                continue
            users[name.encode("utf-8")] = hashed.encode("ascii")
        return users

    @property
    def names(self) -> int:
        return len(self._file.current())

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        users: dict[bytes, bytes] = self._file.current()
        name: bytes = credentials.username
        password: bytes = credentials.password
        hashed = users.get(name)
        digest = hmac.new(self._key, b"%d\0%s\0%s" % (len(name), name, password), hashlib.sha256).digest()
        if hashed is not None and self._right.get(digest) == self._file.generation:
            self._right.move_to_end(digest)
            return succeed(name)

        def checked(right: bool) -> bytes:
            if not right or hashed is None:
                raise UnauthorizedLogin()
            self._right[digest] = self._file.generation
            if len(self._right) > REMEMBERED:
                self._right.popitem(last=False)
            return name

        d: Deferred[bool] = self._run(_checkpw, password, hashed or _DECOY)
        return d.addCallback(checked)


def _checkpw(password: bytes, hashed: bytes) -> bool:
    # bcrypt reads 72 bytes of a password, as htpasswd -B hashed it; the
    # library refuses a longer one rather than cut it.
    try:
        return bcrypt.checkpw(password[:72], hashed)
    except ValueError:
        return False


def tokenDigest(token: bytes) -> str:
    return hashlib.sha256(token).hexdigest()


def newToken(name: str) -> tuple[str, str]:
    """
    A new bearer token, and its line for a tokens file.
    """
    token = secrets.token_urlsafe(32)
    return token, f"{name}:sha256:{tokenDigest(token.encode('ascii'))}"


@implementer(ICredentialsChecker)
class TokenChecker:
    """
    Bearer tokens (or Basic credentials whose password is one) checked
    against a file of their sha256 digests.
    """

    credentialInterfaces = (IBearerToken, IUsernamePassword)

    def __init__(self, path: str, clock: IReactorTime) -> None:
        self._file = WatchedFile(path, self._parse, clock, "the file of --auth tokens")
        self._file.load()

    def _parse(self, data: bytes) -> list[tuple[bytes, bytes]]:
        tokens = []
        for number, line in _lines(data, self._file.path):
            name, _, rest = line.partition(":")
            kind, _, digest = rest.partition(":")
            if not name or kind != "sha256" or len(digest) != 64 or not _isHex(digest):
                raise ValueError(f"{self._file.path} line {number} is not NAME:sha256:HEX")
            tokens.append((name.encode("utf-8"), bytes.fromhex(digest)))
        return tokens

    @property
    def names(self) -> int:
        return len(self._file.current())

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        token = credentials.token if IBearerToken.providedBy(credentials) else credentials.password
        digest = hashlib.sha256(token).digest()
        found = None
        for name, each in self._file.current():
            if hmac.compare_digest(digest, each) and found is None:
                found = name
        return fail(UnauthorizedLogin()) if found is None else succeed(found)


def _isHex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


@implementer(ICredentialsChecker)
class AnyOf:
    """
    Credentials that any of several checkers takes.
    """

    def __init__(self, checkers: list[Any]) -> None:
        self._checkers = checkers
        self.credentialInterfaces = tuple({i for c in checkers for i in c.credentialInterfaces})

    async def _first(self, credentials: Any) -> bytes | tuple[()]:
        for checker in self._checkers:
            if any(i.providedBy(credentials) for i in checker.credentialInterfaces):
                try:
                    found: bytes | tuple[()] = await checker.requestAvatarId(credentials)
                    return found
                except UnauthorizedLogin:
                    continue
        raise UnauthorizedLogin()

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        return Deferred.fromCoroutine(self._first(credentials))


def checkerFor(kind: str, path: str, clock: IReactorTime, runInThread: RunInThread) -> Any:
    """
    The checker of one C{--auth KIND:PATH}.

    @raise OSError: if the file cannot be read.
    @raise ValueError: if it is not of its form.
    """
    if kind == "htpasswd":
        return HtpasswdChecker(path, clock, runInThread)
    if kind == "tokens":
        return TokenChecker(path, clock)
    raise ValueError(f"no such kind of --auth: {kind}")
