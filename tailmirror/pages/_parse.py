"""
Upstream project pages, HTML (PEP 503) or JSON (PEP 691), parsed into one
model: a PEP 691 shaped C{dict} whose file URLs are absolute upstream URLs.

Every field upstream gives is kept as it was given; fields the HTML form
carries are translated to their JSON names (PEP 592, 629, 658, 700, 708,
714, 740, 792).  Links the mirror must never follow or write to disk are
dropped, and the reason for each is returned so that it can be logged.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import html5lib

from ..base import loadJSON, safeFilename

__all__ = ["MalformedPage", "ParsedPage", "checkHTML", "parseJSON", "parseHTML", "sniff"]

_SCHEMES = ("http", "https")
#: A link that is an absolute http(s) URL of plain printable ASCII, no
#: backslash: what most indexes give, kept as it is.  Resolving each of a
#: big page's thousands of links against the page was a quarter of its
#: parse; anything else is still resolved, and its scheme checked.
_PLAIN_ABSOLUTE = re.compile(r"https?://[\x21-\x5b\x5d-\x7e]+")


class MalformedPage(Exception):
    """
    An upstream page that cannot be read as a project page.
    """


@dataclass
class ParsedPage:
    """
    A project page in the model, and what was dropped from it, and why.
    """

    page: dict[str, Any]
    dropped: list[str] = field(default_factory=list)


def _checkedFile(
    entry: dict[str, Any], pageURL: str, dropped: list[str]
) -> dict[str, Any] | None:
    """
    Resolve a file's URLs against the page and check that it is safe to
    mirror; return it, or L{None} after noting in C{dropped} why not.
    """
    filename = entry.get("filename")
    url = entry.get("url")
    if not isinstance(filename, str) or not isinstance(url, str):
        dropped.append(f"file entry without a filename or url: {entry!r:.200}")
        return None
    plain = _PLAIN_ABSOLUTE.fullmatch(url) is not None
    absolute = url if plain else urljoin(pageURL, url)
    if not plain and urlsplit(absolute).scheme not in _SCHEMES:
        dropped.append(f"{filename!r:.200}: not an http(s) link: {absolute!r:.200}")
        return None
    if not safeFilename(filename):
        dropped.append(f"unsafe file name {filename!r:.300}")
        return None
    entry["url"] = absolute
    provenance = entry.get("provenance")
    if isinstance(provenance, str):
        entry["provenance"] = urljoin(pageURL, provenance)
        if urlsplit(entry["provenance"]).scheme not in _SCHEMES:
            dropped.append(f"{filename!r:.200}: provenance not an http(s) link")
            del entry["provenance"]
    if not isinstance(entry.get("hashes"), dict):
        entry["hashes"] = {}
    return entry


def parseJSON(body: bytes, pageURL: str, name: str) -> ParsedPage:
    """
    Parse a PEP 691 project page.

    @raise MalformedPage: if it is not JSON or not shaped like a project page.
    """
    try:
        data = loadJSON(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise MalformedPage(f"not valid JSON: {e}") from None
    except RecursionError:
        raise MalformedPage("JSON nested too deep to read") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise MalformedPage("JSON page has no list of files")
    if not isinstance(data.get("name", name), str):
        raise MalformedPage("JSON page's name is not a string")
    meta = data.get("meta")
    if not isinstance(meta, dict):
        raise MalformedPage("JSON page has no meta object")
    dropped: list[str] = []
    files = []
    for entry in data["files"]:
        if not isinstance(entry, dict):
            dropped.append(f"file entry that is not an object: {entry!r:.200}")
            continue
        checked = _checkedFile(dict(entry), pageURL, dropped)
        if checked is not None:
            files.append(checked)
    page = dict(data)
    page["name"] = name
    page["files"] = files
    page["meta"] = {k: v for k, v in meta.items() if k != "api-version"}
    return ParsedPage(page, dropped)


def _metadataHash(value: str) -> bool | dict[str, str] | None:
    """
    The JSON form of a C{data-core-metadata} or C{data-dist-info-metadata}
    attribute: C{true}, or C{<hashname>=<hexdigest>}.
    """
    if value.lower() == "true":
        return True
    if value.lower() == "false":
        return False
    algorithm, sep, digest = value.partition("=")
    if sep and algorithm and digest:
        return {algorithm.lower(): digest}
    return None


def _anchorFile(
    anchor: Any, baseURL: str, dropped: list[str]
) -> dict[str, Any] | None:
    """
    One PEP 503 anchor as a PEP 691 file entry.
    """
    href = anchor.get("href")
    if href is None:
        return None
    url, fragment = urldefrag(urljoin(baseURL, href.strip()))
    hashes: dict[str, str] = {}
    algorithm, sep, digest = fragment.partition("=")
    if sep and algorithm and digest:
        hashes[algorithm.lower()] = digest
    filename = "".join(anchor.itertext()).strip()
    if not filename:
        filename = unquote(posixpath.basename(urlsplit(url).path))
    entry: dict[str, Any] = {"filename": filename, "url": url, "hashes": hashes}
    attrs = anchor.attrib
    if "data-requires-python" in attrs:
        entry["requires-python"] = attrs["data-requires-python"]
    if "data-yanked" in attrs:
        entry["yanked"] = attrs["data-yanked"] or True
    for attr, key in (
        ("data-core-metadata", "core-metadata"),
        ("data-dist-info-metadata", "dist-info-metadata"),
    ):
        if attr in attrs:
            value = _metadataHash(attrs[attr])
            if value is None:
                dropped.append(f"{filename!r:.200}: unreadable {attr}={attrs[attr]!r:.100}")
            else:
                entry[key] = value
    if "data-gpg-sig" in attrs:
        entry["gpg-sig"] = attrs["data-gpg-sig"].lower() == "true"
    if "data-provenance" in attrs:
        entry["provenance"] = attrs["data-provenance"]
    return _checkedFile(entry, baseURL, dropped)


#: Bytes no HTML page holds: the C0 controls but tab, line feed, form feed
#: and carriage return, and DEL.
_CONTROLS = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def sniff(body: bytes) -> str | None:
    """
    The form a body's first bytes show: C{"json"}, C{"html"}, or L{None}.
    """
    start = body[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"{"):
        return "json"
    if start.startswith(b"<"):
        return "html"
    return None


def checkHTML(body: bytes, encoding: str | None) -> None:
    """
    Refuse a body that is not well-formed enough to be a whole project
    page: not in its character set (UTF-8 unless one is given), control
    bytes, no anchor and no document either, an anchor left open, or a
    document cut before its end.

    @raise MalformedPage: saying what is wrong.
    """
    try:
        text = body.decode(encoding or "utf-8")
    except (LookupError, UnicodeDecodeError) as e:
        raise MalformedPage(f"HTML page is not valid {encoding or 'UTF-8'}: {e}") from None
    match = _CONTROLS.search(body)
    if match is not None:
        raise MalformedPage(f"HTML page holds a control byte {match.group()!r} at byte {match.start()}")
    lower = text.lower()
    opened = len(re.findall(r"<a[\s>]", lower))
    closed = lower.count("</a>")
    if not opened and not any(mark in lower for mark in ("<html", "<body", "<!doctype")):
        raise MalformedPage("HTML page has neither links nor a document")
    if opened != closed:
        raise MalformedPage(f"HTML page has {opened} links opened and {closed} closed: it is garbled or cut short")
    if "<html" in lower and "</html>" not in lower:
        raise MalformedPage("HTML page ends before its </html>: it is cut short")


def parseHTML(
    body: bytes, pageURL: str, name: str, encoding: str | None = None
) -> ParsedPage:
    """
    Parse a PEP 503 project page with html5lib, which reads any HTML the way
    a browser would.
    """
    try:
        document = html5lib.parse(
            body,
            treebuilder="etree",
            namespaceHTMLElements=False,
            transport_encoding=encoding,
        )
    except Exception as e:  # html5lib raises little, but a codec may
        raise MalformedPage(f"unreadable HTML: {e}") from None
    baseURL = pageURL
    for base in document.iter("base"):
        if base.get("href"):
            baseURL = urljoin(pageURL, base.get("href").strip())
            break
    page: dict[str, Any] = {"meta": {}, "name": name}
    status: dict[str, str] = {}
    for meta in document.iter("meta"):
        key, content = meta.get("name"), meta.get("content")
        if content is None:
            continue
        if key == "pypi:project-status":
            status["status"] = content
        elif key == "pypi:project-status-reason":
            status["reason"] = content
        elif key in ("pypi:tracks", "pypi:alternate-locations"):
            page.setdefault(key.partition(":")[2], []).append(content)
    if status:
        page["project-status"] = status
    dropped: list[str] = []
    files = []
    for anchor in document.iter("a"):
        entry = _anchorFile(anchor, baseURL, dropped)
        if entry is not None:
            files.append(entry)
    page["files"] = files
    return ParsedPage(page, dropped)
