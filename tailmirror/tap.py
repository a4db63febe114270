"""
C{twistd tailmirror}: options, and the service they make.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from ._service import MirrorService

__all__ = ["Options", "makeService"]

DEFAULT_LISTEN = "tcp:3141:interface=127.0.0.1"
UPSTREAM_ENV = "TAILMIRROR_UPSTREAM"


def _positive(option: str, value: str) -> float:
    """
    A positive number of seconds, or a usage error naming the option.
    """
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0 or number == float("inf"):
        raise usage.UsageError(f"--{option} takes a positive number of seconds, not {value!r}")
    return number


class Options(usage.Options):
    """
    The options of C{twistd tailmirror}.
    """

    synopsis = "[options]"
    longdesc = (
        "An incremental caching mirror of a Python package index.  Point pip "
        "or uv at http://HOST:PORT/simple/ ."
    )
    optParameters = [
        [
            "upstream",
            "u",
            None,
            f"The Simple API root URL of the index to mirror (or ${UPSTREAM_ENV}).",
        ],
        ["cache-dir", "d", ".cache/tailmirror", "Where the journal and the files live."],
        ["ttl", None, "900", "Seconds a project page stays fresh before it is revalidated."],
        ["timeout", None, "15", "Seconds to wait for upstream before giving up."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, endpoint: str) -> None:
        """
        A Twisted server endpoint to listen on; repeat for more (default:
        tcp:3141:interface=127.0.0.1).
        """
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def postOptions(self) -> None:
        """
        Check every option and say plainly what is wrong.
        """
        from twisted.internet import reactor

        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        for endpoint in self["listen"]:
            try:
                serverFromString(reactor, endpoint)
            except (ValueError, TypeError, KeyError) as e:
                raise usage.UsageError(
                    f"--listen takes a Twisted endpoint such as {DEFAULT_LISTEN}, "
                    f"not {endpoint!r} ({e})"
                ) from None
        upstream = self["upstream"] or os.environ.get(UPSTREAM_ENV)
        if not upstream:
            raise usage.UsageError(
                f"--upstream (or ${UPSTREAM_ENV}) is required: the Simple API root URL "
                "of the index to mirror"
            )
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise usage.UsageError(
                f"--upstream takes an http:// or https:// URL, not {upstream!r}"
            )
        self["upstream"] = upstream if upstream.endswith("/") else upstream + "/"
        self["ttl"] = _positive("ttl", self["ttl"])
        self["timeout"] = _positive("timeout", self["timeout"])
        if not self["cache-dir"]:
            raise usage.UsageError("--cache-dir takes a directory path")


def makeService(options: Options, reactor: Any = None) -> MultiService:
    """
    The mirror and its listening endpoints, as one service.
    """
    if reactor is None:
        from twisted.internet import reactor
    top = MultiService()
    mirror = MirrorService(
        reactor,
        options["upstream"],
        options["cache-dir"],
        options["ttl"],
        options["timeout"],
    )
    mirror.setServiceParent(top)
    for endpoint in options["listen"]:
        StreamServerEndpointService(serverFromString(reactor, endpoint), mirror.site).setServiceParent(top)
    return top
