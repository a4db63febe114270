"""
What a fleet's installs are held to, applied when a page is served (never
when it is stored, so a change of policy and a restart change what is
served without refetching anything): a quarantined project (PEP 792)
lists no files and serves none; a release cooldown hides files younger
than it, on the pages and by their URLs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename, parse_wheel_filename

__all__ = ["Policy", "View", "parseDuration", "timeOf", "uploadTime", "versionOf"]

#: The project status under which an index lists and serves no files.
QUARANTINED = "quarantined"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_ISO = re.compile(
    r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parseDuration(text: str) -> float:
    """
    Seconds of a duration: C{3d}, C{12h}, C{90m}, C{30s}, C{2w}, or ISO 8601
    (C{P3D}, C{PT12H}, C{P1DT6H}).

    @raise ValueError: if it is none of these, or not positive.
    """
    value = text.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", value.lower())
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        iso = _ISO.match(value.upper())
        if iso is None or value.upper() in ("P", "PT") or value.upper().endswith("T"):
            raise ValueError(f"not a duration: {text!r}")
        seconds = sum(float(iso.group(unit) or 0) * _UNITS[unit] for unit in ("w", "d", "h", "m", "s"))
    if not 0 < seconds < math.inf:
        raise ValueError(f"not a positive duration: {text!r}")
    return seconds


def uploadTime(entry: dict[str, Any]) -> float | None:
    """
    A file's C{upload-time} (PEP 700), in Unix time; L{None} if it has none
    that can be read.
    """
    return timeOf(entry.get("upload-time"))


def timeOf(value: object) -> float | None:
    """
    An C{upload-time} value (PEP 700) in Unix time; L{None} if it is not
    one that can be read.
    """
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def versionOf(filename: str) -> str | None:
    """
    The version a distribution's file name gives, normalized; L{None} if
    it gives none that can be read.
    """
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename, ValueError):
        return None


@dataclass
class View:
    """
    A page as served now, and until when it stays so.
    """

    page: dict[str, Any]
    #: When a hidden file comes out of its cooldown; infinity if never.
    until: float = math.inf
    #: Whether a file without an upload time was met.
    unknownTimes: bool = False


@dataclass
class Policy:
    """
    The policy of one mirror.

    @ivar cooldown: seconds a release is hidden after its upload, or
        L{None} for no cooldown.
    @ivar allowUnknown: whether a file without an upload time is served
        under a cooldown.
    @ivar exempt: the normalized names of projects let through at once.
    """

    cooldown: float | None = None
    allowUnknown: bool = True
    exempt: frozenset[str] = field(default_factory=frozenset)

    def cools(self, name: str) -> bool:
        """
        Whether the cooldown applies to a project.
        """
        return self.cooldown is not None and name not in self.exempt

    def hides(self, name: str, uploaded: float | None, now: float) -> float | None:
        """
        Until when a file of C{name} uploaded at C{uploaded} is held back
        by the cooldown (infinity for a file without an upload time that
        is denied); L{None} if it is not.
        """
        if self.cooldown is None or name in self.exempt:
            return None
        if uploaded is None:
            return None if self.allowUnknown else math.inf
        ends = uploaded + self.cooldown
        return ends if ends > now else None

    def view(self, name: str, page: dict[str, Any], now: float) -> View:
        """
        What of C{page} is served at C{now}.  CPU work for a big page: it
        runs where the page is rendered.
        """
        status = page.get("project-status")
        if isinstance(status, dict) and status.get("status") == QUARANTINED:
            return View(dict(page, files=[]))
        if not self.cools(name):
            return View(page)
        kept, until, unknown = [], math.inf, False
        hiddenVersions: set[str] = set()
        keptVersions: set[str] = set()
        for entry in page["files"]:
            uploaded = uploadTime(entry)
            unknown = unknown or uploaded is None
            ends = self.hides(name, uploaded, now)
            version = versionOf(entry["filename"])
            if ends is None:
                kept.append(entry)
                if version is not None:
                    keptVersions.add(version)
                continue
            until = min(until, ends)
            if version is not None:
                hiddenVersions.add(version)
        if len(kept) == len(page["files"]):
            return View(page, math.inf, unknown)
        out = dict(page, files=kept)
        gone = hiddenVersions - keptVersions
        if isinstance(page.get("versions"), list) and gone:
            out["versions"] = [v for v in page["versions"] if not (isinstance(v, str) and _normal(v) in gone)]
        return View(out, until, unknown)


def _normal(version: str) -> str:
    try:
        from packaging.version import Version

        return str(Version(version))
    except ValueError:
        return version
