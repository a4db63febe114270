"""
The legacy JSON API that Renovate, Dependabot, pip-audit and older tools
still call: C{/pypi/<project>/json} and C{/pypi/<project>/<version>/json}.
Passed through from the upstream when it has one (beside its Simple API
root: C{../pypi/<project>/json}), kept for the pages' TTL and revalidated
with a conditional request, served stale while upstream fails; its file
URLs rewritten to the mirror's, the policy applied (held-back files left
out, a release none of whose files is left taken out), and its
C{vulnerabilities} filled from the advisory feeds.  Where the upstream has
none, it is made from the project page and the core metadata the mirror
keeps.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urljoin

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version
from twisted.internet.interfaces import IReactorTime

from ..base import Coalescer, FileKey, IndexLayout, NotFound, RunInThread, Unavailable, dumpJSON, loadJSON, shardOf
from ..upstream import Upstream
from ._advisories import Advisory
from ._policy import Policy, normalVersion, timeOf, versionOf

__all__ = ["LegacyJSON"]

#: Documents of the JSON API kept, at most (they are small, but many).
KEPT = 512


@dataclass
class _Kept:
    fetchedAt: float
    etag: str | None
    #: Upstream's document; L{None}: upstream has none.
    body: bytes | None


def _latest(versions: list[str]) -> str | None:
    parsed = []
    for each in versions:
        try:
            parsed.append((Version(each), each))
        except InvalidVersion:
            continue
    if not parsed:
        return versions[-1] if versions else None
    final = [p for p in parsed if not p[0].is_prerelease]
    return max(final or parsed)[1]


def vulnerability(advisory: Advisory, name: str) -> dict[str, Any]:
    """
    An advisory as the JSON API's C{vulnerabilities} gives one.
    """
    return {
        "id": advisory.id,
        "aliases": list(advisory.aliases),
        "summary": advisory.summary or None,
        "details": advisory.details,
        "fixed_in": list(advisory.fixedIn.get(name, ())),
        "link": None,
        "source": "tailmirror advisories",
        "withdrawn": advisory.withdrawn,
    }


def _vulnerabilities(policy: Policy, name: str, version: str | None, given: Any) -> list[Any]:
    found = [v for v in given if isinstance(v, dict)] if isinstance(given, list) else []
    seen = {v.get("id") for v in found} | {a for v in found for a in (v.get("aliases") or [])}
    for advisory in policy.advisories.affecting(name, version):
        if advisory.id not in seen and not any(a in seen for a in advisory.aliases):
            found.append(vulnerability(advisory, name))
    return found


def rewrite(
    document: dict[str, Any], name: str, version: str | None, url: str, base: str,
    layout: IndexLayout, policy: Policy, now: float,
) -> dict[str, Any]:
    """
    Upstream's JSON API document, its file URLs the mirror's, the policy
    applied.  CPU work: run it off the reactor.
    """

    def mirrored(entry: Any) -> dict[str, Any] | None:
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
            return None
        filename = entry["filename"]
        if policy.holds(name, filename, timeOf(entry.get("upload_time_iso_8601")), now) is not None:
            return None
        digests: dict[str, Any] = entry["digests"] if isinstance(entry.get("digests"), dict) else {}
        sha256 = digests.get("sha256") if isinstance(digests.get("sha256"), str) else None
        where = urljoin(url, str(entry.get("url", "")))
        return dict(entry, url=base + layout.linkPath(filename, where, {"sha256": sha256} if sha256 else {}))

    out = dict(document)
    releases = document.get("releases")
    if isinstance(releases, dict):
        kept: dict[str, Any] = {}
        for each, files in releases.items():
            if not isinstance(files, list):
                continue
            left = [f for f in map(mirrored, files) if f is not None]
            if left or not files:
                kept[each] = left
        out["releases"] = kept
    if isinstance(document.get("urls"), list):
        out["urls"] = [f for f in map(mirrored, document["urls"]) if f is not None]
    info: dict[str, Any] = document["info"] if isinstance(document.get("info"), dict) else {}
    if version is None and isinstance(out.get("releases"), dict) and info.get("version") not in out["releases"]:
        newest = _latest([v for v, files in out["releases"].items() if files])
        if newest is not None:
            out["info"] = dict(info, version=newest)
            out["urls"] = out["releases"][newest]
    about = version or (out.get("info") or {}).get("version")
    out["vulnerabilities"] = _vulnerabilities(policy, name, normalVersion(about) if about else None,
                                              document.get("vulnerabilities"))
    return out


def _packageType(filename: str) -> tuple[str, str]:
    if filename.endswith(".whl"):
        try:
            tags = parse_wheel_filename(filename)[3]
            return "bdist_wheel", sorted({t.interpreter for t in tags})[0] if tags else "py3"
        except (InvalidWheelFilename, IndexError):
            return "bdist_wheel", ""
    return "sdist", "source"


def _fromMetadata(metadata: bytes | None) -> dict[str, Any]:
    """
    What core metadata gives the JSON API's C{info}.
    """
    if not metadata:
        return {}
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(metadata)
    fields = {
        "summary": "Summary", "author": "Author", "author_email": "Author-email", "license": "License",
        "home_page": "Home-page", "requires_python": "Requires-Python", "keywords": "Keywords",
    }
    info: dict[str, Any] = {key: message.get(header) for key, header in fields.items() if message.get(header)}
    info["requires_dist"] = message.get_all("Requires-Dist") or None
    info["classifiers"] = message.get_all("Classifier") or []
    urls = message.get_all("Project-URL") or []
    info["project_urls"] = {label.strip(): link.strip() for label, _, link in (u.partition(",") for u in urls)} or None
    payload = message.get_payload()
    if isinstance(payload, str) and payload.strip():
        info["description"] = payload
    return info


def newestWheel(page: dict[str, Any], version: str | None) -> dict[str, Any] | None:
    """
    The wheel of a page whose core metadata describes C{version}, or the
    newest release.  CPU work: run it off the reactor.
    """
    files = [(f, v) for f in page["files"] if f["filename"].endswith(".whl") and (v := versionOf(f["filename"]))]
    wanted = version or _latest([v for _, v in files])
    return next((f for f, v in files if v == wanted), None)


def synthesize(
    page: dict[str, Any], name: str, version: str | None, base: str, layout: IndexLayout,
    policy: Policy, metadata: bytes | None, lastSerial: str | None,
) -> dict[str, Any]:
    """
    A JSON API document made from a project page as the policy serves it
    (L{Policy.view}'s) and, if the mirror keeps it, the newest release's
    core metadata.  CPU work: run it off the reactor.

    @raise NotFound: for a version the page has no file of.
    """
    releases: dict[str, list[dict[str, Any]]] = {}
    for entry in page["files"]:
        each = versionOf(entry["filename"])
        if each is None:
            continue
        kind, pyversion = _packageType(entry["filename"])
        hashes = entry.get("hashes") or {}
        yanked = entry.get("yanked")
        uploaded = entry.get("upload-time")
        releases.setdefault(each, []).append({
            "filename": entry["filename"],
            "url": base + layout.linkPath(entry["filename"], entry["url"], hashes),
            "digests": {k: v for k, v in hashes.items() if isinstance(v, str)},
            "size": entry.get("size"),
            "upload_time_iso_8601": uploaded,
            "upload_time": uploaded[:19] if isinstance(uploaded, str) else None,
            "requires_python": entry.get("requires-python"),
            "yanked": bool(yanked),
            "yanked_reason": yanked if isinstance(yanked, str) else None,
            "packagetype": kind,
            "python_version": pyversion,
        })
    newest = _latest([v for v, files in releases.items() if not all(f["yanked"] for f in files)] or list(releases))
    about = version or newest
    if version is not None and version not in releases:
        raise NotFound(f"{name} {version}")
    files = releases.get(about, []) if about else []
    info: dict[str, Any] = {
        "name": name,
        "version": about,
        "summary": None,
        "requires_python": next((f["requires_python"] for f in files if f["requires_python"]), None),
        "requires_dist": None,
        "yanked": bool(files) and all(f["yanked"] for f in files),
        "package_url": f"{base}pypi/{quote(name)}/",
        "project_url": f"{base}pypi/{quote(name)}/",
        "release_url": f"{base}pypi/{quote(name)}/{quote(about or '')}/",
    }
    info.update(_fromMetadata(metadata) if about == newest or version else {})
    serial = int(lastSerial) if lastSerial is not None and lastSerial.isdigit() else None
    document: dict[str, Any] = {"info": info, "last_serial": serial,
                                "urls": files, "vulnerabilities": _vulnerabilities(policy, name, about, [])}
    if version is None:
        document["releases"] = releases
    return document


class LegacyJSON:
    """
    The legacy JSON API of one index.
    """

    def __init__(self, pages: Any, upstream: Upstream, clock: IReactorTime, runInThread: RunInThread) -> None:
        self._pages = pages
        self._upstream = upstream
        self._clock = clock
        self._run = runInThread
        self._kept: dict[tuple[str, str | None], _Kept] = {}
        self._asking: Coalescer[bytes | None] = Coalescer()
        #: The core metadata the mirror keeps of a file, if any (set by
        #: the assembly: the files wing keeps them).
        self.metadataOf: Callable[[FileKey], Awaitable[bytes | None]] | None = None

    def url(self, name: str, version: str | None) -> str:
        """
        Where upstream's JSON API has a project (or a version of it).
        """
        tail = f"{quote(name)}/json" if version is None else f"{quote(name)}/{quote(version)}/json"
        return urljoin(self._upstream.root, "../pypi/" + tail)

    async def _document(self, name: str, version: str | None) -> bytes | None:
        """
        Upstream's document, as kept or fetched (conditionally) once the
        TTL is past; L{None} if upstream has none.
        """
        key = (name, version)
        kept = self._kept.get(key)
        now = self._clock.seconds()
        if kept is not None and 0 <= now - kept.fetchedAt < self._pages.ttl:
            return kept.body

        async def ask() -> bytes | None:
            try:
                fetched = await self._upstream.fetchDocument(self.url(name, version), kept.etag if kept else None)
            except NotFound:
                self._keep(key, _Kept(now, None, None))
                return None
            except Unavailable:
                if kept is not None:
                    return kept.body  # stale, while upstream fails
                raise
            if fetched.status == 304 and kept is not None:
                kept.fetchedAt = now
                return kept.body
            body: bytes | None = fetched.body
            if "json" not in fetched.contentType:
                body = None  # not a JSON API: an index's web page, say
            self._keep(key, _Kept(now, fetched.etag, body))
            return body

        return await self._asking.run(key, ask)

    def _keep(self, key: tuple[str, str | None], kept: _Kept) -> None:
        self._kept.pop(key, None)
        self._kept[key] = kept
        if len(self._kept) > KEPT:
            del self._kept[next(iter(self._kept))]

    async def answer(self, name: str, version: str | None, base: str) -> tuple[bytes, str]:
        """
        The document of a project (or of one version of it), its file URLs
        below C{base} (the mirror's root as the client reached it), and its
        ETag.

        @raise NotFound: if neither upstream's JSON API nor its Simple API
            has the project (or the version).
        @raise Unavailable: if the policy does not serve the project, or
            upstream fails and nothing is kept.
        """
        pages, policy = self._pages, self._pages.policy
        refusal = policy.projectRefusal(name)
        if refusal is not None:
            raise Unavailable(404, refusal)
        body = await self._document(name, version)
        now = self._clock.seconds()
        layout = pages.layout
        if body is not None:
            url = self.url(name, version)

            def passed() -> dict[str, Any] | None:
                try:
                    parsed = loadJSON(body)
                except ValueError:
                    return None
                if not isinstance(parsed, dict) or not isinstance(parsed.get("info"), dict):
                    return None
                return rewrite(parsed, name, version, url, base, layout, policy, now)

            found = await self._run(passed)
            if found is not None:
                return self._answer(found)
        page, lastSerial = await pages.pageNow(name)

        def served() -> tuple[dict[str, Any], dict[str, Any] | None]:
            viewed = policy.view(name, page, now).page
            return viewed, newestWheel(viewed, version)

        viewed, newest = await self._run(served)
        metadata = None
        if self.metadataOf is not None and newest is not None:
            shard = shardOf(newest["url"], newest.get("hashes") or {})
            metadata = await self.metadataOf(FileKey(shard, newest["filename"], True, layout.name))
        document = await self._run(synthesize, viewed, name, version, base, layout, policy, metadata, lastSerial)
        return self._answer(document)

    @staticmethod
    def _answer(document: dict[str, Any]) -> tuple[bytes, str]:
        data = dumpJSON(document)
        return data, '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
