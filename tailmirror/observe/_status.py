"""
C{/+status}: what a person asks of a running mirror first, as JSON for
scripts and as a small HTML page for a browser (no JavaScript, no asset
from anywhere else).  The upstream's health and the hit counts are kept
from the mirror's events; the rest is read from one snapshot of the
mirror's facts (L{Snapshot}) when asked.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from html import escape
from typing import Any

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from .._version import __version__
from ..base import FileKey, IMirrorEvents, NoEvents
from ..files import formatSize
from ._snapshot import Snapshots

__all__ = ["MirrorStatus"]

#: Page answers that served the mirror's copy, upstream at most asked
#: whether it changed.
_PAGE_HITS = ("fresh", "revalidated")


def _when(t: float | None) -> str | None:
    """
    A time for people and scripts alike: ISO 8601, in UTC.
    """
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _ratio(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


@implementer(IMirrorEvents)
class MirrorStatus(NoEvents):
    """
    The facts of C{/+status}.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self.startedAt = clock.seconds()
        self.lastSuccess: float | None = None
        self.lastFailure: float | None = None
        self.lastFailureReason: str | None = None
        #: What the check of the upstream's root at start found amiss.
        self.upstreamWarning: str | None = None
        self.pages: Counter[str] = Counter()
        self.files: Counter[bool] = Counter()
        self._snapshot: Snapshots | None = None

    def watch(self, snapshot: Snapshots) -> None:
        """
        Read the rest from one C{snapshot()} of the mirror's facts each time.
        """
        self._snapshot = snapshot

    def upstreamAnswered(self) -> None:
        """
        Upstream answered a request, whatever it said.
        """
        self.lastSuccess = self._clock.seconds()

    def upstreamFailed(self, reason: str) -> None:
        """
        Upstream did not answer a request, for C{reason}.
        """
        self.lastFailure = self._clock.seconds()
        self.lastFailureReason = reason

    # The events.

    def pageServed(self, project: str, outcome: str) -> None:
        self.pages[outcome] += 1

    def upstreamRequest(self, kind: str, outcome: str, seconds: float, size: int, reason: str | None) -> None:
        if outcome in ("failed", "timeout"):
            self.upstreamFailed(reason or outcome)
        else:
            self.upstreamAnswered()

    def fileServed(self, key: FileKey, size: int, cached: bool) -> None:
        self.files[cached] += 1

    # The facts.

    def facts(self) -> dict[str, Any]:
        """
        Everything the status tells, as JSON-ready values.
        """
        assert self._snapshot is not None, "watch a mirror first"
        facts = self._snapshot()
        now = self._clock.seconds()
        cache = facts.cache
        if isinstance(cache.filesystem, str):
            filesystem: dict[str, Any] = {"error": cache.filesystem}
        else:
            total, free = cache.filesystem
            filesystem = {"sizeBytes": total, "freeBytes": free, "minFreeBytes": cache.minFreeBytes}
        healthy = None
        if self.lastSuccess is not None or self.lastFailure is not None:
            healthy = self.lastFailure is None or (self.lastSuccess or 0) > self.lastFailure
        pageTotal = sum(self.pages.values())
        fileTotal = sum(self.files.values())
        downloads = []
        for download in facts.downloads:
            seconds = now - download.startedAt if download.startedAt is not None else 0.0
            downloads.append(
                {
                    "file": download.file,
                    "path": download.path,
                    "bytes": download.received,
                    "totalBytes": download.length,
                    "seconds": round(seconds, 3),
                    "bytesPerSecond": round(download.received / seconds) if seconds > 0 else None,
                    "started": download.startedAt is not None,
                }
            )
        return {
            "version": __version__,
            "upstream": {
                "url": facts.upstream,
                "healthy": healthy,
                "lastSuccess": _when(self.lastSuccess),
                "lastFailure": _when(self.lastFailure),
                "lastFailureReason": self.lastFailureReason,
                "warning": self.upstreamWarning,
            },
            "started": _when(self.startedAt),
            "uptimeSeconds": round(now - self.startedAt, 1),
            "projectsKnown": facts.projectsKnown,
            "indexes": {
                index.name: {"url": index.url, "pages": index.pagesPath, "projectsKnown": index.projectsKnown}
                for index in facts.indexes
            },
            "cache": {
                "counted": cache.counted,
                "files": cache.files,
                "bytes": cache.bytes,
                "maxBytes": cache.maxBytes,
                "filesystem": filesystem,
                "evictedFiles": cache.evictedFiles,
                "evictedBytes": cache.evictedBytes,
            },
            "hits": {
                "files": {
                    "fromCache": self.files[True],
                    "fromUpstream": self.files[False],
                    "ratio": _ratio(self.files[True], fileTotal),
                },
                "pages": {
                    **{outcome: self.pages[outcome] for outcome in ("fresh", "revalidated", "refreshed", "stale", "failed")},
                    "ratio": _ratio(sum(self.pages[o] for o in _PAGE_HITS), pageTotal),
                },
            },
            "downloads": downloads,
            "prefetch": facts.prefetch,
            "policy": facts.policy,
            "store": facts.store,
        }

    def json(self) -> bytes:
        return json.dumps(self.facts(), indent=2).encode("utf-8") + b"\n"

    def html(self) -> bytes:
        return renderHTML(self.facts()).encode("utf-8")


_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 56em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.1em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.25em 0.8em 0.25em 0; vertical-align: top; }
th { font-weight: 600; width: 14em; }
td.n, th.n { text-align: right; }
.ok { color: #176f2c; font-weight: 600; }
.bad { color: #b3261e; font-weight: 600; }
.muted { color: #777; }
.bar { background: #e6e6e6; height: 0.6em; width: 10em; display: inline-block; }
.bar span { background: #3a6ea5; height: 100%; display: block; }
"""


def _percent(ratio: float | None) -> str:
    return "none yet" if ratio is None else f"{ratio * 100:.1f}%"


def _row(name: str, value: str) -> str:
    return f"<tr><th>{escape(name)}</th><td>{value}</td></tr>"


def renderHTML(facts: dict[str, Any]) -> str:
    """
    The status page for a browser.
    """
    up = facts["upstream"]
    if up["healthy"] is None:
        health = '<span class="muted">not asked yet</span>'
    elif up["healthy"]:
        health = '<span class="ok">answering</span>'
    else:
        health = '<span class="bad">failing</span>'
    upstream = [
        _row("URL", f"<code>{escape(up['url'])}</code>"),
        _row("Health", health),
        _row("Last answer", escape(up["lastSuccess"] or "none yet")),
        _row("Last failure", escape(up["lastFailure"] or "none")),
    ]
    if up["lastFailureReason"]:
        upstream.append(_row("Its reason", escape(up["lastFailureReason"])))
    if up["warning"]:
        upstream.append(_row("Warning", f'<span class="bad">{escape(up["warning"])}</span>'))
    if len(facts["indexes"]) > 1:
        for name, index in facts["indexes"].items():
            upstream.append(
                _row(
                    f"Index {name}",
                    f"<code>{escape(index['pages'])}</code> from <code>{escape(index['url'])}</code>, "
                    f"{index['projectsKnown']:,} projects",
                )
            )
    cache = facts["cache"]
    fs = cache["filesystem"]
    limits = [_row("Files", f"{cache['files']:,}" + ("" if cache["counted"] else " (still counting)"))]
    held = formatSize(cache["bytes"])
    if cache["maxBytes"] is not None:
        share = min(1.0, cache["bytes"] / cache["maxBytes"]) if cache["maxBytes"] else 1.0
        held += (
            f" of {formatSize(cache['maxBytes'])} "
            f'<span class="bar"><span style="width: {share * 100:.0f}%"></span></span>'
        )
    limits.append(_row("Size", held))
    if "freeBytes" in fs:
        limits.append(
            _row(
                "Free space",
                f"{formatSize(fs['freeBytes'])} of {formatSize(fs['sizeBytes'])} "
                f"(keeping at least {formatSize(fs['minFreeBytes'])})",
            )
        )
    else:
        limits.append(_row("Free space", f'<span class="bad">{escape(fs["error"])}</span>'))
    limits.append(
        _row("Evicted since start", f"{cache['evictedFiles']:,} files, {formatSize(cache['evictedBytes'])}")
    )
    hits = facts["hits"]
    files, pages = hits["files"], hits["pages"]
    hitRows = [
        _row(
            "Files",
            f"{_percent(files['ratio'])} from the cache "
            f"({files['fromCache']:,} answers from the cache, {files['fromUpstream']:,} from upstream)",
        ),
        _row(
            "Pages",
            f"{_percent(pages['ratio'])} from the mirror's copy "
            f"({pages['fresh']:,} fresh, {pages['revalidated']:,} revalidated, "
            f"{pages['refreshed']:,} refreshed, {pages['stale']:,} stale, {pages['failed']:,} failed)",
        ),
    ]
    if facts["downloads"]:
        lines = []
        for d in facts["downloads"]:
            total = "size unknown" if d["totalBytes"] is None else formatSize(d["totalBytes"])
            rate = "" if d["bytesPerSecond"] is None else f"{formatSize(d['bytesPerSecond'])}/s"
            lines.append(
                f"<tr><td><code>{escape(d['file'])}</code></td>"
                f'<td class="n">{formatSize(d["bytes"])}</td><td class="n">{total}</td>'
                f'<td class="n">{rate}</td><td class="n">{d["seconds"]:.0f} s</td></tr>'
            )
        downloads = (
            '<table><tr><th>File</th><th class="n">So far</th><th class="n">Total</th>'
            '<th class="n">Rate</th><th class="n">For</th></tr>' + "".join(lines) + "</table>"
        )
    else:
        downloads = '<p class="muted">None.</p>'
    prefetch = _prefetchTable(facts["prefetch"])
    policy = _policyTables(facts.get("policy"))
    store = _storeTable(facts.get("store"))
    uptime = _duration(facts["uptimeSeconds"])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="10">
<title>tailmirror status</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>tailmirror {escape(facts["version"])}</h1>
<p class="muted">Up {uptime}, since {escape(facts["started"])}; {_projects(facts["projectsKnown"])} known.
This page reloads every 10 s; <a href="?format=json">JSON</a>.</p>
<h2>Upstream</h2>
<table>{"".join(upstream)}</table>
<h2>Cache</h2>
<table>{"".join(limits)}</table>
<h2>Hits since start</h2>
<table>{"".join(hitRows)}</table>
<h2>Downloads in flight</h2>
{downloads}
<h2>Prefetch</h2>
{prefetch}
<h2>Policy</h2>
{policy}
<h2>Store</h2>
{store}
</body>
</html>
"""


def _storeTable(store: dict[str, Any] | None) -> str:
    """
    The fleet's bucket, and how it does.
    """
    if store is None:
        return '<p class="muted">None: this node keeps its files on its own disk.</p>'
    state = (
        '<span class="ok">answering</span>' if store["healthy"]
        else f'<span class="bad">failing: {escape(store["failing"] or "")}</span>; serving from disk and upstream'
    )
    rows = [
        _row("Bucket", f"<code>{escape(store['bucket'])}</code>" + (
            f" at <code>{escape(store['endpoint'])}</code>" if store["endpoint"] else "")),
        _row("State", state),
        _row("Puts", f"{store['puts']:,} done, {store['pendingPuts']:,} pending, {store['failedPuts']:,} failed"),
        _row("Read from the bucket", f"{store['readFromBucket']:,} files"),
        _row("Redirects", "on" if store["redirect"] else "off"),
    ]
    return "<table>" + "".join(rows) + "</table>"


def _policyTables(policy: dict[str, Any] | None) -> str:
    """
    The rules and advisories, their sources, and what they held back.
    """
    if policy is None:
        return '<p class="muted">None.</p>'
    rows = [
        _row(label, escape(", ".join(policy[key])) or '<span class="muted">none</span>')
        for label, key in (("Deny", "deny"), ("Allow only", "allowOnly"), ("Waived", "waived"))
    ]
    if policy["policyFile"]:
        trouble = policy["policyFileError"]
        state = f'<span class="bad">cannot be read again: {escape(trouble)}</span>' if trouble else "read"
        rows.append(_row("Policy file", f"<code>{escape(policy['policyFile'])}</code> ({state})"))
    rows.append(_row("Advisories", f"{policy['advisories']:,}, held back: {escape(policy['denyAdvisories'])}"))
    for source in policy["sources"]:
        error = source["error"]
        state = (
            f'<span class="bad">failed: {escape(error)}; the last good copy holds</span>' if error
            else f'<span class="ok">{source["advisories"]:,} advisories</span>'
        )
        loaded = _when(source["loaded"]) or "never"
        rows.append(_row("", f"<code>{escape(source['source'])}</code>: {state}, read {escape(loaded)}"))
    held = "".join(
        f"<tr><td>{escape(h['kind'])}</td><td><code>{escape(h['what'])}</code></td>"
        f"<td>{escape(h['project'])}</td><td>{escape(', '.join(h['versions']))}</td></tr>"
        for h in policy["heldBack"]
    )
    heldTable = (
        "<table><tr><th>Held back by</th><th></th><th>Project</th><th>Versions</th></tr>" + held + "</table>"
        if held else '<p class="muted">Nothing held back by a rule or an advisory in the pages served.</p>'
    )
    return "<table>" + "".join(rows) + "</table>" + heldTable


def _prefetchTable(figures: dict[str, Any] | None) -> str:
    """
    What the prefetch did since start, kind by kind.
    """
    if figures is None or figures["mode"] == "off":
        return '<p class="muted">Off.</p>'
    rows = []
    for kind, label in (("page", "Pages"), ("metadata", "Core metadata"), ("file", "Files")):
        fetched = figures["prefetched"][kind]
        if kind == "file" and figures["mode"] != "files" and not fetched:
            continue
        used, wasted = figures["used"][kind], figures["wasted"][kind]
        rows.append(
            f"<tr><th>{label}</th><td class=\"n\">{fetched:,}</td><td class=\"n\">{used:,}</td>"
            f"<td class=\"n\">{wasted:,}</td><td class=\"n\">{_percent(_ratio(wasted, used + wasted))}</td></tr>"
        )
    return (
        f'<p class="muted">{escape(figures["mode"])}, {figures["depth"]} levels deep, '
        f'{figures["requests"]} requests at once; {figures["running"]:,} projects under way, '
        f'{figures["pending"]:,} things prefetched not asked for yet.</p>'
        '<table><tr><th></th><th class="n">Prefetched</th><th class="n">Asked for</th>'
        '<th class="n">Never asked for</th><th class="n">Wasted</th></tr>' + "".join(rows) + "</table>"
        + "<table>" + "".join(
            _row("Clients" if n == 0 else "", f"{escape(label)}: {count:,} page requests")
            for n, (label, count) in enumerate(figures["clients"].items())
        ) + "</table>"
    )


def _projects(count: int) -> str:
    return "1 project" if count == 1 else f"{count:,} projects"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"
