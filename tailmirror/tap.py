"""
C{twistd tailmirror}: options, and the service they make.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from ._mirror import DEFAULTS, IndexSettings
from ._pipindex import pipIndex
from ._service import MirrorService, Settings, TailmirrorService
from ._version import __version__
from ._optiongroups import AccessOptions, PolicyOptions, StoreOptions
from ._values import count as _count, isHTTPURL as _isHTTPURL, named as _named, seconds as _seconds, sizeOrShare as _sizeOrShare
from .base import DEFAULT_INDEX, canonicalName, defaultCacheDir
from .pages import parseDuration, rulesOf
from .prefetch import MODES
from .upstream import loadTrustRoot, withoutUserinfo

__all__ = ["Options", "makeService"]

DEFAULT_LISTEN = "tcp:3141:interface=127.0.0.1"
UPSTREAM_ENV = "TAILMIRROR_UPSTREAM"


class Options(AccessOptions, PolicyOptions, StoreOptions, usage.Options):
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
            f"The Simple API root URL of the index to mirror (or ${UPSTREAM_ENV}; "
            "default: the index pip on this host uses).",
        ],
        [
            "cache-dir",
            "d",
            None,
            "Where the journal and the files live (default: $XDG_CACHE_HOME/tailmirror, "
            "else ~/.cache/tailmirror).",
        ],
        ["ttl", None, f"{DEFAULTS.ttl:g}", "Seconds a project page stays fresh before it is revalidated."],
        [
            "revalidate-floor",
            None,
            f"{DEFAULTS.revalidateFloor:g}",
            "Seconds within which a client's revalidation (pip's max-age=0) gets the page "
            "just checked upstream; 0 revalidates every time.",
        ],
        [
            "stale-after",
            None,
            f"{DEFAULTS.staleAfter:g}",
            "Seconds a client waits for upstream before a page's copy is served stale "
            "(the refresh goes on in the background).",
        ],
        [
            "retry-after",
            None,
            f"{DEFAULTS.retryAfter:g}",
            "Seconds after an upstream failure in which copies are served stale at once, "
            "while one refresh tries upstream again.",
        ],
        [
            "not-found-ttl",
            None,
            None,
            "Seconds an upstream's 404 for a project is remembered, so that a client asking again "
            "(beside a private index, on every install) costs no trip upstream; 0 asks every time "
            "(default: the --revalidate-floor).",
        ],
        ["timeout", None, f"{DEFAULTS.timeout:g}", "Seconds for a page from upstream, and for a file to begin."],
        ["idle-timeout", None, f"{DEFAULTS.idleTimeout:g}", "Seconds a file from upstream may stall midway."],
        [
            "client-timeout",
            None,
            f"{DEFAULTS.clientTimeout:g}",
            "Seconds a client connection may idle, or take nothing of a file.",
        ],
        ["max-page-size", None, f"{DEFAULTS.maxPageBytes // 2**20}M", "The largest project page taken from upstream (K, M, G)."],
        ["page-requests", None, str(DEFAULTS.pageRequests), "Page requests to upstream at once, at most."],
        ["file-requests", None, str(DEFAULTS.fileRequests), "File downloads from upstream at once, at most."],
        [
            "max-size",
            None,
            None,
            "The most the cache directory may hold (K, M, G, T); least recently "
            "used files are evicted past it (default: no limit).",
        ],
        [
            "min-free",
            None,
            f"{DEFAULTS.minFree * 100:g}%",
            "Free space to keep on the cache's filesystem, as a size or a "
            "percentage; least recently used files are evicted to keep it.",
        ],
        [
            "ca-certs",
            None,
            None,
            "A PEM file of the authorities to trust for an https upstream "
            "(default: the system's).",
        ],
        [
            "cooldown",
            None,
            None,
            "Hold back releases younger than this (3d, 12h, P3D): left off the pages, "
            "and their files answered 403 (default: off).",
        ],
        [
            "cooldown-unknown",
            None,
            "allow",
            "Under a cooldown, serve (allow) or hold back (deny) files without an upload time.",
        ],
        [
            "access-log",
            None,
            None,
            "Where the access log goes: a file's path, - for standard output, or "
            "off (default: the mirror's log).",
        ],
        [
            "accel-redirect",
            None,
            None,
            "The location (such as /+accel/) at which a front on this host (nginx) serves "
            "the cache's +files/ directory internally: warm files asked for through it are "
            "answered with X-Accel-Redirect, for the front to send (default: off).",
        ],
        [
            "prefetch",
            None,
            DEFAULTS.prefetch,
            "What a client's request for a page prefetches of what it will ask for next: "
            "off; metadata (its dependencies' pages and core metadata); or files (those and "
            "the files predicted).",
        ],
        [
            "prefetch-depth",
            None,
            str(DEFAULTS.prefetchDepth),
            "Levels of dependencies below a page asked for that are prefetched.",
        ],
        [
            "prefetch-requests",
            None,
            str(DEFAULTS.prefetchRequests),
            "Upstream requests of the prefetch at once, at most (clients' go first).",
        ],
        [
            "render-cache",
            None,
            f"{DEFAULTS.renderCacheBytes // 2**20}M",
            "Bytes of rendered pages kept in memory, per index (K, M, G); 0 keeps none.",
        ],
        [
            "metrics-listen",
            None,
            None,
            "A Twisted endpoint that serves the metrics at /metrics, instead of "
            "/+metrics on the mirror's own endpoints.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["cooldown-exempt"] = []
        self["index"] = {}
        self["index-ttl"] = {}
        self["index-ca-certs"] = {}
        #: What the checks have to say at start (never a secret).
        self["start-warnings"] = []
        self.startAccess()
        self.startPolicy()
        # An option's method's docstring, folded to one line for --help.
        self.docs = {name: " ".join(doc.split()) if doc else doc for name, doc in self.docs.items()}

    def opt_index(self, value: str) -> None:
        """
        NAME=URL: another index to mirror, by the Simple API root URL of
        it; served at /NAME/simple/, its files below /root/NAME/ (repeat
        for more).
        """
        name, url = _named("index", value, "NAME=URL")
        if name in self["index"]:
            raise usage.UsageError(f"--index {name} is given twice")
        if not _isHTTPURL(url):
            raise usage.UsageError(
                f"--index {name}= takes an http:// or https:// URL, not {withoutUserinfo(url)[0]!r}"
            )
        self["index"][name] = url if url.endswith("/") else url + "/"

    def opt_index_ttl(self, value: str) -> None:
        """
        NAME=SECONDS: the page TTL of one index, where it differs from --ttl
        (NAME pypi is --upstream's).
        """
        name, seconds = _named("index-ttl", value, "NAME=SECONDS", allowDefault=True)
        self["index-ttl"][name] = _seconds("index-ttl", seconds)

    def opt_index_ca_certs(self, value: str) -> None:
        """
        NAME=PATH: the authorities one https index is checked against,
        where they differ from --ca-certs (NAME pypi is --upstream's).
        """
        name, path = _named("index-ca-certs", value, "NAME=PATH", allowDefault=True)
        try:
            loadTrustRoot(path)
        except (OSError, ValueError) as e:
            raise usage.UsageError(f"--index-ca-certs {name}= takes a PEM file of certificates: {e}") from None
        self["index-ca-certs"][name] = path

    def opt_cooldown_exempt(self, name: str) -> None:
        """
        A project the cooldown lets through at once (repeat for more): the
        break-glass for an urgent fix.
        """
        canonical = canonicalName(name.strip())
        if canonical is None:
            raise usage.UsageError(f"--cooldown-exempt takes a project name, not {name!r}")
        self["cooldown-exempt"].append(canonical)

    def opt_listen(self, endpoint: str) -> None:
        """
        A Twisted server endpoint to listen on; repeat for more (default:
        tcp:3141:interface=127.0.0.1).
        """
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def opt_version(self) -> None:
        """
        Print tailmirror's version and exit.
        """
        print(f"tailmirror {__version__}")
        sys.exit(0)

    def parseOptions(self, options: Any = None) -> None:
        """
        Parse the options; under twistd, a bad one ends the process with
        one line that names it, not a page of usage.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if getattr(self, "parent", None) is None:
                raise
            sys.exit(f"twistd tailmirror: {e} (twistd tailmirror --help lists the options)")

    def postOptions(self) -> None:
        """
        Check every option and say plainly what is wrong.
        """
        from twisted.internet import reactor

        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        endpoints = [("listen", endpoint) for endpoint in self["listen"]]
        if self["metrics-listen"] is not None:
            endpoints.append(("metrics-listen", self["metrics-listen"]))
        for option, endpoint in endpoints:
            try:
                serverFromString(reactor, endpoint)
            except (IndexError, KeyError) as e:
                if not endpoint.startswith("systemd:"):
                    raise
                raise usage.UsageError(
                    f"--{option} {endpoint}: systemd passed no such socket ({e}); run it from a "
                    "socket unit, or with systemd-socket-activate"
                ) from None
            except (ValueError, TypeError) as e:
                raise usage.UsageError(
                    f"--{option} takes a Twisted endpoint such as {DEFAULT_LISTEN}, "
                    f"not {endpoint!r} ({e})"
                ) from None
        upstream, self["upstream-source"] = self["upstream"], "--upstream"
        if not upstream and os.environ.get(UPSTREAM_ENV):
            upstream, self["upstream-source"] = os.environ[UPSTREAM_ENV], UPSTREAM_ENV
        if not upstream:
            found = pipIndex()
            if found is None:
                raise usage.UsageError(
                    f"no index to mirror: pass --upstream (or ${UPSTREAM_ENV}) with the "
                    "Simple API root URL of the index to mirror; no pip here says which it uses"
                )
            upstream, self["upstream-source"] = found
        if not _isHTTPURL(upstream):
            raise usage.UsageError(
                f"--upstream takes an http:// or https:// URL, not {withoutUserinfo(upstream)[0]!r}"
                + ("" if self["upstream-source"] == "--upstream" else f" (from {self['upstream-source']})")
            )
        upstream, self["credentials"] = self.credentialsOf(DEFAULT_INDEX, upstream)
        self["upstream"] = upstream if upstream.endswith("/") else upstream + "/"
        for name, url in list(self["index"].items()):
            self["index"][name], self["index-credentials"][name] = self.credentialsOf(name, url)
        self["ttl"] = _seconds("ttl", self["ttl"])
        self["revalidate-floor"] = _seconds("revalidate-floor", self["revalidate-floor"], zero=True)
        self["stale-after"] = _seconds("stale-after", self["stale-after"])
        self["retry-after"] = _seconds("retry-after", self["retry-after"], zero=True)
        if self["not-found-ttl"] is not None:
            self["not-found-ttl"] = _seconds("not-found-ttl", self["not-found-ttl"], zero=True)
        for option in ("timeout", "idle-timeout", "client-timeout"):
            self[option] = _seconds(option, self[option])
        self["max-page-size"] = _count("max-page-size", self["max-page-size"], units=True)
        for option in ("page-requests", "file-requests", "prefetch-requests"):
            self[option] = _count(option, self[option])
        self["prefetch-depth"] = _count("prefetch-depth", self["prefetch-depth"], zero=True)
        self["render-cache"] = _count("render-cache", self["render-cache"], units=True, zero=True)
        if self["prefetch"] not in MODES:
            raise usage.UsageError(f"--prefetch takes {', '.join(MODES)}, not {self['prefetch']!r}")
        if self["max-size"] is not None:
            self["max-size"] = _count("max-size", self["max-size"], units=True)
        self["min-free"] = _sizeOrShare("min-free", self["min-free"])
        if self["ca-certs"] is not None:
            try:
                loadTrustRoot(self["ca-certs"])
            except (OSError, ValueError) as e:
                raise usage.UsageError(
                    f"--ca-certs takes a PEM file of certificates: {e}"
                ) from None
        if self["cache-dir"] is None:
            self["cache-dir"] = defaultCacheDir()
        if not self["cache-dir"]:
            raise usage.UsageError("--cache-dir takes a directory path")
        if self["cooldown"] is not None:
            try:
                self["cooldown"] = parseDuration(self["cooldown"])
            except ValueError:
                raise usage.UsageError(
                    f"--cooldown takes a duration such as 3d, 12h or P3D, not {self['cooldown']!r}"
                ) from None
        if self["cooldown-unknown"] not in ("allow", "deny"):
            raise usage.UsageError(f"--cooldown-unknown takes allow or deny, not {self['cooldown-unknown']!r}")
        if self["access-log"] == "":
            raise usage.UsageError("--access-log takes a file's path, - or off")
        accel = self["accel-redirect"]
        if accel is not None and not (accel.startswith("/") and accel.endswith("/") and accel.isascii()):
            raise usage.UsageError(f"--accel-redirect takes a location that begins and ends with /, not {accel!r}")
        self.checkAccess(reactor)
        self.checkPolicy()
        self.checkStore()
        for option in ("index-ttl", "index-ca-certs", "index-credentials"):
            for name in self[option]:
                if name != DEFAULT_INDEX and name not in self["index"]:
                    raise usage.UsageError(f"--{option} {name}= names no index: give it with --index {name}=URL")


def makeService(options: Options, reactor: Any = None) -> MultiService:
    """
    The mirror and its listening endpoints, as one service.
    """
    if reactor is None:
        from twisted.internet import reactor
    settings = Settings(
        upstream=options["upstream"],
        cacheDir=options["cache-dir"],
        ttl=options["ttl"],
        revalidateFloor=options["revalidate-floor"],
        staleAfter=options["stale-after"],
        retryAfter=options["retry-after"],
        notFoundTTL=options["not-found-ttl"],
        timeout=options["timeout"],
        idleTimeout=options["idle-timeout"],
        clientTimeout=options["client-timeout"],
        maxPageBytes=options["max-page-size"],
        pageRequests=options["page-requests"],
        fileRequests=options["file-requests"],
        caCerts=options["ca-certs"],
        credentials=options["credentials"],
        fileHosts=tuple(options["allow-file-host"]),
        maxSize=options["max-size"],
        minFree=options["min-free"],
        cooldown=options["cooldown"],
        cooldownAllowUnknown=options["cooldown-unknown"] == "allow",
        cooldownExempt=tuple(options["cooldown-exempt"]),
        accessLog=options["access-log"],
        metricsListen=options["metrics-listen"],
        accelRedirect=options["accel-redirect"],
        prefetch=options["prefetch"],
        prefetchDepth=options["prefetch-depth"],
        prefetchRequests=options["prefetch-requests"],
        renderCacheBytes=options["render-cache"],
        auth=tuple(options["auth"]),
        excludeNewer=options["exclude-newer"],
        rules=rulesOf(options["deny"], options["allow-only"], options["waive"]),
        policyFile=options["policy-file"],
        advisories=tuple(options["advisories"]),
        advisoriesRefresh=options["advisories-refresh"],
        denyAdvisories=options["deny-advisories"],
        store=options["store"],
        storeEndpoint=options["store-endpoint"],
        storeRedirect=bool(options["store-redirect"]),
        storePublicURL=options["store-public-url"],
        indexes=tuple(
            IndexSettings(
                name,
                url,
                options["index-ttl"].get(name),
                options["index-ca-certs"].get(name),
                options["index-credentials"].get(name),
            )
            for name, url in options["index"].items()
        ),
    )
    if DEFAULT_INDEX in options["index-ttl"]:
        settings.ttl = options["index-ttl"][DEFAULT_INDEX]
    if DEFAULT_INDEX in options["index-ca-certs"]:
        settings.caCerts = options["index-ca-certs"][DEFAULT_INDEX]
    top = TailmirrorService(MirrorService(reactor, settings), options["upstream-source"])
    top.warnings.extend(options["start-warnings"])
    for endpoint in options["listen"]:
        top.listen(endpoint, serverFromString(reactor, endpoint))
    if settings.metricsListen is not None:
        top.listenForMetrics(settings.metricsListen, serverFromString(reactor, settings.metricsListen))
    return top
