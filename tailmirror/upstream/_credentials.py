"""
Credentials for an upstream that asks for them: taken from the upstream
URL's userinfo, from a file an option names, or from netrc (C{$NETRC},
then C{~/.netrc}, as pip and uv read it); sent only to that upstream's own
scheme, host and port; and never shown: a L{Credentials} prints as where
it came from, and the URL the mirror logs, shows and journals is the URL
without them.
"""

from __future__ import annotations

import base64
import netrc
import os
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["Credentials", "credentialsFromFile", "credentialsFromNetrc", "origin", "withoutUserinfo"]

#: What a credentials file holds (for C{--help}).
FILE_FORMAT = (
    "one line: 'basic USER:PASSWORD' or 'bearer TOKEN' ('#' begins a comment line)"
)


@dataclass(frozen=True)
class Credentials:
    """
    What the mirror says to one upstream in its C{Authorization} header,
    and where that came from (for people: never the secret).
    """

    #: The C{Authorization} header's value.
    authorization: str = field(repr=False)
    #: Where they came from: "the URL", "netrc", a file's option.
    source: str = ""
    #: C{"basic"} or C{"bearer"}.
    scheme: str = "basic"

    @classmethod
    def basic(cls, user: str, password: str, source: str) -> "Credentials":
        token = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
        return cls(f"Basic {token}", source, "basic")

    @classmethod
    def bearer(cls, token: str, source: str) -> "Credentials":
        return cls(f"Bearer {token}", source, "bearer")

    def __str__(self) -> str:
        return f"{self.scheme} credentials from {self.source}"


def origin(url: str) -> tuple[str, str, int]:
    """
    A URL's scheme, host and port (the scheme's own, if it gives none).

    @raise ValueError: if its port is not a number.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


def withoutUserinfo(url: str) -> tuple[str, Credentials | None]:
    """
    A URL without its userinfo, and the Basic credentials that userinfo
    gave (percent-decoded), if any.
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    if not user and not password:
        return clean, None
    return clean, Credentials.basic(unquote(user), unquote(password), "the URL")


def credentialsFromNetrc(url: str, environ: Mapping[str, str] | None = None) -> tuple[Credentials | None, str | None]:
    """
    The credentials netrc gives for a URL's host: C{$NETRC}'s file if set,
    else C{~/.netrc}; and a warning if that file cannot be read (never its
    contents).
    """
    if environ is None:
        environ = os.environ
    path = environ.get("NETRC") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".netrc")
    if not os.path.exists(path):
        return None, None
    try:
        found = netrc.netrc(path).authenticators(urlsplit(url).hostname or "")
    except (OSError, netrc.NetrcParseError) as e:
        line = getattr(e, "lineno", None)
        where = f" (line {line})" if line else ""
        return None, f"netrc file {path} cannot be read{where}: {getattr(e, 'strerror', None) or type(e).__name__}"
    if found is None:
        return None, None
    login, _, password = found
    if not login and not password:
        return None, None
    return Credentials.basic(login or "", password or "", "netrc"), None


def credentialsFromFile(path: str, option: str) -> Credentials:
    """
    The credentials in a file (L{FILE_FORMAT}).

    @raise ValueError: with a line that names the file and what is wrong,
        never what the file holds.
    @raise OSError: if it cannot be read.
    """
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    meant = [(n, line) for n, line in enumerate(lines, 1) if line and not line.startswith("#")]
    if len(meant) != 1:
        raise ValueError(f"{path} holds {len(meant)} lines of credentials, not one: {FILE_FORMAT}")
    number, line = meant[0]
    kind, _, rest = line.partition(" ")
    rest = rest.strip()
    if kind.lower() == "bearer" and rest and " " not in rest:
        return Credentials.bearer(rest, option)
    if kind.lower() == "basic" and ":" in rest:
        user, _, password = rest.partition(":")
        return Credentials.basic(user, password, option)
    raise ValueError(f"{path} line {number} is neither 'basic USER:PASSWORD' nor 'bearer TOKEN'")
