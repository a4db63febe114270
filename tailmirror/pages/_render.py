"""
The mirror's own pages, rendered from the model in both forms: HTML
(PEP 503) and JSON (PEP 691), file links rewritten to the mirror's paths.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any, Iterable

from ..base import PROVENANCE, PYPI, IndexLayout, dumpJSON, usableSha256
from ._links import metadataOffered

__all__ = ["apiVersion", "renderProjectHTML", "renderProjectJSON", "renderRootHTML", "renderRootJSON"]

#: The newest api-version of the Simple API that the mirror speaks.
NEWEST = "1.4"


def apiVersion(page: dict[str, Any]) -> str:
    """
    The highest api-version whose required fields the page really has:
    1.1 (PEP 700) requires C{versions} and every file's C{size}; what later
    versions add (PEP 708, 740, 792) is optional.
    """
    if isinstance(page.get("versions"), list) and all(
        isinstance(f.get("size"), int) for f in page["files"]
    ):
        return NEWEST
    return "1.0"


def fileLink(entry: dict[str, Any], layout: IndexLayout = PYPI) -> str:
    """
    A file's link relative to its project page.
    """
    return layout.rootFromPage + layout.linkPath(entry["filename"], entry["url"], entry["hashes"])


_METADATA_KEYS = ("core-metadata", "dist-info-metadata")


def _metadataKeys(entry: dict[str, Any]) -> dict[str, Any] | None:
    """
    What a file entry needs to give its core metadata under both names,
    the PEP 714 one and its legacy twin, wherever upstream gave either: old
    clients and new both find the metadata file.  A wheel upstream gives
    none for has the mirror's own (C{true}: its digest is not known yet).
    L{None} if it needs nothing.
    """
    if metadataOffered(entry):
        return {key: True for key in _METADATA_KEYS}
    given = [entry[key] for key in _METADATA_KEYS if key in entry]
    if not given or len(given) == len(_METADATA_KEYS):
        return None
    return {key: given[0] for key in _METADATA_KEYS}


def renderProjectJSON(page: dict[str, Any], layout: IndexLayout = PYPI) -> bytes:
    """
    The PEP 691 form of a project page, its files linked in C{layout}.
    """
    files = []
    for entry in page["files"]:
        link = fileLink(entry, layout)
        rewritten = {**entry, "url": link}  # the one copy made of it
        keys = _metadataKeys(entry)
        if keys is not None:
            rewritten.update(keys)
        if isinstance(entry.get("provenance"), str):
            rewritten["provenance"] = link + PROVENANCE
        files.append(rewritten)
    out = dict(page)
    out["meta"] = dict(page["meta"], **{"api-version": apiVersion(page)})
    out["files"] = files
    return dumpJSON(out)


def _hashAttribute(value: Any) -> str | None:
    """
    The HTML attribute form of a core-metadata value: C{true} or
    C{<hashname>=<hexdigest>}; L{None} when absent or false.
    """
    if value is True:
        return "true"
    if isinstance(value, dict) and value:
        name = "sha256" if "sha256" in value else next(iter(value))
        return f"{name}={value[name]}"
    return None


def _fragment(hashes: dict[str, Any]) -> str:
    """
    The URL fragment naming one hash of a file, sha256 where there is one.
    """
    sha = usableSha256(hashes)
    if sha is not None:
        return f"#sha256={sha}"
    for name, value in hashes.items():
        if isinstance(value, str):
            return f"#{name}={value}"
    return ""


def _anchor(entry: dict[str, Any], layout: IndexLayout) -> str:
    """
    One file of a project page as a PEP 503 anchor.
    """
    link = fileLink(entry, layout)
    attrs = [("href", link + _fragment(entry["hashes"]))]
    if isinstance(entry.get("requires-python"), str):
        attrs.append(("data-requires-python", entry["requires-python"]))
    yanked = entry.get("yanked")
    if yanked is True or (isinstance(yanked, str)):
        attrs.append(("data-yanked", "" if yanked is True else yanked))
    twins = _metadataKeys(entry) or entry
    for key in _METADATA_KEYS:
        value = _hashAttribute(twins.get(key))
        if value is not None:
            attrs.append(("data-" + key, value))
    if isinstance(entry.get("gpg-sig"), bool):
        attrs.append(("data-gpg-sig", "true" if entry["gpg-sig"] else "false"))
    if isinstance(entry.get("provenance"), str):
        attrs.append(("data-provenance", link + PROVENANCE))
    rendered = " ".join(f'{k}="{escape(v, quote=True)}"' for k, v in attrs)
    return f"    <a {rendered}>{escape(entry['filename'])}</a><br>\n"


def _metaTag(name: str, content: str) -> str:
    """
    One C{<meta>} element of a page's head.
    """
    return f'    <meta name="{name}" content="{escape(content, quote=True)}">\n'


def renderProjectHTML(page: dict[str, Any], layout: IndexLayout = PYPI) -> bytes:
    """
    The PEP 503 form of a project page, its files linked in C{layout}, with
    the PEP 629 repository-version and what else the HTML form can carry
    (PEP 708, 792).
    """
    name = escape(page["name"])
    head = [_metaTag("pypi:repository-version", apiVersion(page))]
    status = page.get("project-status")
    if isinstance(status, dict):
        for key, metaName in (("status", "pypi:project-status"), ("reason", "pypi:project-status-reason")):
            if isinstance(status.get(key), str):
                head.append(_metaTag(metaName, status[key]))
    for key in ("tracks", "alternate-locations"):
        for value in page.get(key) or ():
            if isinstance(value, str):
                head.append(_metaTag("pypi:" + key, value))
    parts = [
        "<!DOCTYPE html>\n<html>\n  <head>\n",
        *head,
        f"    <title>Links for {name}</title>\n  </head>\n  <body>\n",
        f"    <h1>Links for {name}</h1>\n",
        *(_anchor(entry, layout) for entry in page["files"]),
        "  </body>\n</html>\n",
    ]
    return "".join(parts).encode("utf-8")


def renderRootJSON(names: Iterable[str]) -> bytes:
    """
    The PEP 691 form of the root index of the given projects.
    """
    out = {"meta": {"api-version": NEWEST}, "projects": [{"name": n} for n in names]}
    return json.dumps(out, separators=(",", ":")).encode("utf-8")


def renderRootHTML(names: Iterable[str]) -> bytes:
    """
    The PEP 503 form of the root index of the given projects.
    """
    links = "".join(f'    <a href="{n}/">{n}</a><br>\n' for n in names)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        + _metaTag("pypi:repository-version", NEWEST)
        + "    <title>Simple index</title>\n  </head>\n  <body>\n"
        + links
        + "  </body>\n</html>\n"
    ).encode("utf-8")
