"""
Who may read the mirror (C{--auth}): C{twisted.cred} checkers over two
kinds of file, each read again when it changes, without a restart.

- C{htpasswd:PATH}: C{NAME:HASH} lines with bcrypt hashes, as
  C{htpasswd -B} writes them, checked by the C{bcrypt} library (in
  constant time, in a thread: a check costs tens of milliseconds of CPU).
  A password once found right is remembered (by a keyed digest, never as
  it is) until the file changes, so a client's hundred requests of an
  install cost one check; the same credentials asked at once (uv's first
  burst) share one check, and only a few checks run at once, so wrong
  passwords sent in a flood cannot fill the thread pool.
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
from collections import Counter, OrderedDict
from dataclasses import dataclass
from functools import cache
from typing import Any, Iterable

import bcrypt
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, DeferredSemaphore, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from ..base import Coalescer, RunInThread, WatchedFile

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
#: bcrypt checks run at once, at most: each holds a thread of the pool the
#: mirror's disk work runs in for tens of milliseconds.
CHECKS_AT_ONCE = 2


@cache
def _emptyDecoy() -> bytes:
    """
    A bcrypt hash to check a name against where the file has none at all.
    """
    return bcrypt.hashpw(b"decoy", bcrypt.gensalt(5))


@dataclass(frozen=True)
class _Users:
    """
    A reading of an htpasswd file: each name's hash, and the hash a name
    the file does not have is checked against (one of the file's own, of
    its commonest cost), so that such a name costs as long as a wrong
    password does and tells nothing of which names there are.
    """

    hashes: dict[bytes, bytes]
    decoy: bytes | None

    @classmethod
    def of(cls, hashes: dict[bytes, bytes]) -> "_Users":
        costs = Counter(hashed[4:6] for hashed in hashes.values())
        commonest = costs.most_common(1)[0][0] if costs else None
        return cls(hashes, next((h for h in hashes.values() if h[4:6] == commonest), None))


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
        #: Checks under way, by keyed digest and reading: joined, not run again.
        self._checking: Coalescer[bool] = Coalescer()
        self._checks = DeferredSemaphore(CHECKS_AT_ONCE)

    def _parse(self, data: bytes) -> _Users:
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
        return _Users.of(users)

    @property
    def names(self) -> int:
        return len(self._file.current().hashes)

    def knows(self, name: bytes) -> bool:
        """
        Whether the file has C{name}.
        """
        return name in self._file.current().hashes

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        users: _Users = self._file.current()
        name: bytes = credentials.username
        password: bytes = credentials.password
        hashed = users.hashes.get(name)
        digest = hmac.new(self._key, b"%d\0%s\0%s" % (len(name), name, password), hashlib.sha256).digest()
        generation = self._file.generation
        if hashed is not None and self._right.get(digest) == generation:
            self._right.move_to_end(digest)
            return succeed(name)

        def check() -> Deferred[bool]:
            return self._checks.run(self._run, _checkpw, password, hashed or users.decoy or _emptyDecoy())

        def checked(right: bool) -> bytes:
            if not right or hashed is None:
                raise UnauthorizedLogin()
            self._right[digest] = generation
            if len(self._right) > REMEMBERED:
                self._right.popitem(last=False)
            return name

        return self._checking.run((digest, generation), check).addCallback(checked)


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
            try:
                raw = bytes.fromhex(digest) if len(digest) == 64 else b""
            except ValueError:
                raw = b""
            if not name or kind != "sha256" or len(raw) != 32:
                raise ValueError(f"{self._file.path} line {number} is not NAME:sha256:HEX")
            tokens.append((name.encode("utf-8"), raw))
        return tokens

    @property
    def names(self) -> int:
        return len(self._file.current())

    def knows(self, name: bytes) -> bool:
        """
        Whether the file has a token named C{name}.
        """
        return any(name == each for each, _ in self._file.current())

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        token = credentials.token if IBearerToken.providedBy(credentials) else credentials.password
        digest = hashlib.sha256(token).digest()
        found = None
        for name, each in self._file.current():
            if hmac.compare_digest(digest, each) and found is None:
                found = name
        return fail(UnauthorizedLogin()) if found is None else succeed(found)


@implementer(ICredentialsChecker)
class AnyOf:
    """
    Credentials that any of several checkers takes.
    """

    def __init__(self, checkers: list[Any]) -> None:
        # Tokens first: a token sent as a Basic password (as pip and uv send
        # it) costs a digest there, where a bcrypt check comes first.
        self._checkers = sorted(checkers, key=lambda c: isinstance(c, HtpasswdChecker))
        self.credentialInterfaces = tuple({i for c in checkers for i in c.credentialInterfaces})

    def knows(self, name: bytes) -> bool:
        """
        Whether any checker's file has C{name}.
        """
        return any(checker.knows(name) for checker in self._checkers)

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
