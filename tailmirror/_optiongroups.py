"""
Two groups of C{twistd tailmirror}'s options, each a mixin of the
L{tailmirror.tap.Options}: access (who may read, the upstreams'
credentials, what the mirror may reach) and policy (allow and deny rules,
advisories, a freeze date).  Each has its own C{optParameters}, which
Twisted's C{usage.Options} gathers from every class, and a check that
C{postOptions} calls.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from twisted.python import usage

from ._values import credentialsFor, isHTTPURL, named, noThreads
from .base import DEFAULT_INDEX
from .files import parseStore
from .pages import ADVISORY_MODES, POLICY_FILE_FORMAT, parseDuration, parsePolicyFile, parseRule
from .upstream import FILE_FORMAT, Credentials, parseHostPort
from .web import AUTH_FORMATS, checkerFor

__all__ = ["AccessOptions", "PolicyOptions", "StoreOptions", "parseDate"]

# The mixins are usage.Options to the type checker; at run time, plain
# classes before it in the Options' bases.
if TYPE_CHECKING:
    _Group = usage.Options
else:
    _Group = object


class AccessOptions(_Group):
    """
    Who may read (C{--auth}), the upstreams' credentials, and where the
    mirror may connect (C{--allow-file-host}).
    """

    optParameters = [
        [
            "upstream-credentials",
            None,
            None,
            "A file of the credentials to send --upstream, kept out of ps and the URL: "
            f"{FILE_FORMAT}.  Without it, the URL's own user:password@, else netrc "
            "($NETRC, else ~/.netrc) for its host.  Sent to that scheme, host and port only.",
        ],
    ]

    def startAccess(self) -> None:
        """
        The access options' empty values, before parsing.
        """
        self["index-credentials"] = {}
        self["allow-file-host"] = []
        self["auth"] = []

    def opt_index_credentials(self, value: str) -> None:
        """
        NAME=PATH: a file of the credentials to send one index, as
        --upstream-credentials takes (NAME pypi is --upstream's).
        """
        name, path = named("index-credentials", value, "NAME=PATH", allowDefault=True)
        self["index-credentials"][name] = path

    def opt_auth(self, value: str) -> None:
        """
        KIND:PATH: only readers with credentials in this file may read the
        mirror (every route; the metrics too, unless on --metrics-listen).
        htpasswd:PATH holds NAME:HASH lines with bcrypt hashes, as
        'htpasswd -B' writes them; tokens:PATH holds NAME:sha256:HEX lines,
        the sha256 of each bearer token ('tailmirror token NAME' makes one),
        a token taken as a bearer token or as the password of Basic
        credentials.  Read again when it changes.  Repeat for both.
        """
        kind, colon, path = value.partition(":")
        if not colon or kind not in AUTH_FORMATS or not path:
            raise usage.UsageError(f"--auth takes htpasswd:PATH or tokens:PATH, not {value!r}")
        self["auth"].append((kind, path))

    def opt_allow_file_host(self, value: str) -> None:
        """
        HOST[:PORT]: files, metadata and provenance may be fetched from this
        host (any port, without one) whatever address it resolves to
        (repeat for more).  Without it, links to loopback, link-local and
        private addresses are refused, but the upstream's own, and links
        without a hash are taken from the upstream's host only.
        """
        try:
            self["allow-file-host"].append(parseHostPort(value))
        except ValueError:
            raise usage.UsageError(
                f"--allow-file-host takes HOST or HOST:PORT ([V6]:PORT), not {value!r}"
            ) from None

    def credentialsOf(self, name: str, url: str) -> tuple[str, Credentials | None]:
        """
        An index's URL without its userinfo, and its credentials.
        """
        path, given = self["index-credentials"].get(name), f"--index-credentials {name}="
        if path is None and name == DEFAULT_INDEX:
            path, given = self["upstream-credentials"], "--upstream-credentials"
        return credentialsFor(url, path if isinstance(path, str) else None, given, self["start-warnings"])

    def checkAccess(self, reactor: Any) -> None:
        """
        Read every file of C{--auth} once, and warn of plain HTTP with it.
        """
        for kind, path in self["auth"]:
            try:
                checker = checkerFor(kind, path, reactor, noThreads)
            except OSError as e:
                raise usage.UsageError(f"--auth {kind}: cannot be read ({e.strerror}): {path}") from None
            except ValueError as e:
                raise usage.UsageError(f"--auth {kind}: {e}") from None
            if not checker.names:
                self["start-warnings"].append(f"--auth {kind}:{path} names no reader yet: nobody can read")
        if self["auth"]:
            for endpoint in self["listen"]:
                if not endpoint.startswith("ssl:"):
                    self["start-warnings"].append(
                        f"--auth with plain HTTP on {endpoint}: readers' credentials cross the network "
                        "unencrypted; listen on ssl:... (or behind a TLS front) beyond this host"
                    )


def parseDate(text: str) -> float:
    """
    An RFC 3339 date (or date and time), as uv's C{--exclude-newer} takes
    it, in Unix time; a date alone is its midnight, UTC.

    @raise ValueError: if it is not one.
    """
    value = text.strip()
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an RFC 3339 date: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


class PolicyOptions(_Group):
    """
    Allow and deny rules, advisories and a freeze date.
    """

    optParameters = [
        [
            "policy-file",
            None,
            None,
            f"A file of rules: {POLICY_FILE_FORMAT}.  Read again when it changes.",
        ],
        [
            "deny-advisories",
            None,
            "malicious",
            "Which versions the --advisories name are held back: malicious (those of advisories of "
            "malicious packages, MAL- identifiers), vulnerable (every affected version) or off.",
        ],
        [
            "advisories-refresh",
            None,
            "6h",
            "How often an --advisories URL is fetched again, with a conditional request (3d, 12h, P3D).",
        ],
        [
            "exclude-newer",
            None,
            None,
            "Hold back every file uploaded after this date (RFC 3339, as uv's option takes it: "
            "2024-05-01 or 2024-05-01T12:00:00Z), as the cooldown holds back younger ones.",
        ],
    ]

    def startPolicy(self) -> None:
        """
        The policy options' empty values, before parsing.
        """
        self["deny"] = []
        self["allow-only"] = []
        self["waive"] = []
        self["advisories"] = []

    def _rule(self, option: str, value: str) -> None:
        try:
            parseRule(value)
        except ValueError as e:
            raise usage.UsageError(f"--{option}: {e}") from None
        self[option].append(value)

    def opt_deny(self, value: str) -> None:
        """
        RULE: hold back the files a rule names, a project with an optional
        version specifier (evil-pkg, requests<2.31, urllib3==1.26.5): left
        off the pages, their URLs answered 403 (repeat for more).
        """
        self._rule("deny", value)

    def opt_allow_only(self, value: str) -> None:
        """
        RULE: serve only the projects (and versions) such rules name;
        another project answers 404 (repeat for more).
        """
        self._rule("allow-only", value)

    def opt_waive(self, value: str) -> None:
        """
        ID: let one advisory through (repeat for more): the break-glass when
        a fleet has accepted a risk.
        """
        self["waive"].append(value.strip())

    def opt_advisories(self, value: str) -> None:
        """
        PATH or URL: advisories in the OSV format, a directory (read
        recursively), a zip or a JSON file, or a URL of one; read at start
        and again when it changes (repeat for more).
        """
        if not value.startswith(("http://", "https://")) and not os.path.exists(value):
            raise usage.UsageError(f"--advisories takes a directory, a zip or JSON file, or a URL: no {value!r}")
        self["advisories"].append(value)

    def checkPolicy(self) -> None:
        """
        Check the policy's options, and read the policy file once.
        """
        if self["deny-advisories"] not in ADVISORY_MODES:
            raise usage.UsageError(
                f"--deny-advisories takes {', '.join(ADVISORY_MODES)}, not {self['deny-advisories']!r}"
            )
        try:
            self["advisories-refresh"] = parseDuration(self["advisories-refresh"])
        except ValueError:
            raise usage.UsageError(
                f"--advisories-refresh takes a duration such as 6h or P1D, not {self['advisories-refresh']!r}"
            ) from None
        if self["exclude-newer"] is not None:
            try:
                self["exclude-newer"] = parseDate(self["exclude-newer"])
            except ValueError as e:
                raise usage.UsageError(f"--exclude-newer: {e}") from None
        if self["policy-file"] is not None:
            try:
                with open(self["policy-file"], encoding="utf-8") as f:
                    parsePolicyFile(f.read(), self["policy-file"])
            except OSError as e:
                raise usage.UsageError(f"--policy-file cannot be read ({e.strerror}): {self['policy-file']}") from None
            except (ValueError, UnicodeDecodeError) as e:
                raise usage.UsageError(f"--policy-file: {e}") from None


class StoreOptions(_Group):
    """
    A bucket of object storage shared by a fleet of mirrors.
    """

    optParameters = [
        [
            "store",
            None,
            None,
            "s3://BUCKET[/PREFIX]: keep the files (and each project's latest page) in this bucket too, "
            "shared by a fleet of mirrors: a file is looked for on local disk, then in the bucket, then "
            "upstream.  Region and credentials come from AWS's standard chain (environment, "
            "~/.aws/credentials and config, an instance or pod role).",
        ],
        ["store-endpoint", None, None, "The URL of an S3-compatible service (MinIO, Ceph RGW, Garage, ...)."],
        [
            "store-public-url",
            None,
            None,
            "With --store-redirect: send clients here (a CDN, a public bucket) followed by the object's "
            "key, rather than to a presigned URL.",
        ],
    ]
    optFlags = [
        [
            "store-redirect",
            None,
            "Answer a warm file that is in the bucket with a 307 to it (a presigned URL, or "
            "--store-public-url), so its bytes never pass through this node; for clients that "
            "reach the bucket.",
        ],
    ]

    def checkStore(self) -> None:
        """
        Check the store's options (the bucket itself is checked at start).
        """
        if self["store"] is not None:
            try:
                parseStore(self["store"])
            except ValueError:
                raise usage.UsageError(f"--store takes s3://BUCKET[/PREFIX], not {self['store']!r}") from None
        elif self["store-endpoint"] or self["store-redirect"] or self["store-public-url"]:
            raise usage.UsageError("--store-endpoint, --store-redirect and --store-public-url need --store")
        for option in ("store-endpoint", "store-public-url"):
            value = self[option]
            if value is not None:
                if not isHTTPURL(value):
                    raise usage.UsageError(f"--{option} takes an http:// or https:// URL, not {value!r}")
