"""
What a fleet's installs are held to, applied when a page is served (never
when it is stored, so a change of policy, a restart, a policy file edited
or an advisory feed refreshed change what is served without refetching
anything): a quarantined project (PEP 792) lists no files and serves none;
a project outside the allow-only rules is not served; a file a rule or an
advisory holds back, one younger than the release cooldown, or uploaded
after the freeze date (C{--exclude-newer}), is left off the pages and
refused by its URL.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
import threading
from typing import Any

from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from ._advisories import Advisories, Advisory
from ._rules import Rules

__all__ = ["Held", "Policy", "View", "parseDuration", "timeOf", "uploadTime", "versionOf"]

#: What C{--deny-advisories} takes.
ADVISORY_MODES = ("malicious", "vulnerable", "off")

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


def normalVersion(version: str) -> str | None:
    """
    A version as written, normalized (C{1.0.0-1} is C{1.0.0.post1}); L{None}
    if it is no version.
    """
    try:
        return str(Version(version))
    except InvalidVersion:
        return None


#: Verdicts of advisories on versions remembered, at most (all forgotten at
#: once past it).
BLOCKING_KEPT = 65536


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


@dataclass(frozen=True)
class Held:
    """
    Why a file is held back: its C{kind} (C{rule}, C{advisory},
    C{cooldown}, C{exclude-newer}), the line a client is answered with,
    and until when (infinity: until the policy changes).
    """

    kind: str
    line: str
    until: float = math.inf
    #: The rule, or the advisory's identifier.
    what: str = ""


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Policy:
    """
    The policy of one mirror.

    @ivar cooldown: seconds a release is hidden after its upload, or
        L{None} for no cooldown.
    @ivar allowUnknown: whether a file without an upload time is served
        under a cooldown or a freeze date.
    @ivar exempt: the normalized names of projects the cooldown lets
        through at once.
    @ivar excludeNewer: the freeze date, in Unix time: files uploaded
        after it are held back; L{None} for none.
    @ivar rules: the allow and deny rules, and the advisories waived.
    @ivar advisories: the advisories of the feeds.
    @ivar denyAdvisories: which advisories hold files back: C{malicious}
        (those of malicious packages), C{vulnerable} (all) or C{off}.
    """

    cooldown: float | None = None
    allowUnknown: bool = True
    exempt: frozenset[str] = field(default_factory=frozenset)
    excludeNewer: float | None = None
    rules: Rules = field(default_factory=Rules)
    advisories: Advisories = field(default_factory=Advisories)
    denyAdvisories: str = "malicious"
    #: Bumped at each change of the rules or the advisories: what was
    #: rendered under an earlier one is rendered again.
    generation: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        #: What the rules and advisories held back of the pages served,
        #: by (kind, what, project): the versions.
        self._held: dict[tuple[str, str, str], set[str]] = {}
        #: Verdicts of L{blocking}, by generation, project and version.
        self._blocking: dict[tuple[int, str, str | None], Advisory | None] = {}

    def update(self, rules: Rules | None = None, advisories: Advisories | None = None) -> None:
        """
        Take new rules, or new advisories: pages are rendered again.
        """
        if rules is not None:
            self.rules = rules
        if advisories is not None:
            self.advisories = advisories
        with self._lock:
            self._held = {}
        self.generation += 1

    @property
    def filtersFiles(self) -> bool:
        """
        Whether a file may be held back by more than its project's status.
        """
        return (
            self.cooldown is not None
            or self.excludeNewer is not None
            or bool(self.rules.deny or self.rules.allowOnly)
            or (self.denyAdvisories != "off" and self.advisories.count > 0)
        )

    def mayHold(self, names: list[str]) -> bool:
        """
        Whether a file of a project (whose name is one of C{names}) may be
        held back: a warm file of any other costs no lookup of its link.
        """
        if self.cooldown is not None or self.excludeNewer is not None:
            return True
        ruled = self.rules.names
        advised = self.advisories.byProject if self.denyAdvisories != "off" else {}
        return any(name in ruled or name in advised for name in names)

    def cools(self, name: str) -> bool:
        """
        Whether the cooldown applies to a project.
        """
        return self.cooldown is not None and name not in self.exempt

    def projectRefusal(self, name: str) -> str | None:
        """
        Why a project is not served at all (the allow-only rules); L{None}
        if it is.
        """
        return self.rules.projectRefusal(name)

    def filesRefusal(self, names: list[str], quarantined: set[str]) -> tuple[int, str] | None:
        """
        Why no file of a project (whose name is one of C{names}) is served:
        it is quarantined upstream, or not on the allow-only list.
        """
        for name in names:
            if name in quarantined:
                return 404, f"project {name} is quarantined upstream; its files are not served"
        if self.rules.allowOnly and names and all(self.projectRefusal(name) for name in names):
            return 404, f"{self.projectRefusal(names[0])}; its files are not served"
        return None

    def blocking(self, name: str, version: str | None) -> Advisory | None:
        """
        The advisory that holds back a version of a project, under
        C{--deny-advisories}, unless waived.
        """
        if self.denyAdvisories == "off" or name not in self.advisories.byProject:
            return None
        key = (self.generation, name, version)
        try:
            return self._blocking[key]  # a release's files share their version
        except KeyError:
            pass
        waived, maliciousOnly = self.rules.waived, self.denyAdvisories == "malicious"

        def counts(advisory: Advisory) -> bool:
            return (advisory.malicious or not maliciousOnly) and not (
                waived and any(n in waived for n in advisory.names())
            )

        found = self.advisories.affecting(name, version, counts)
        if len(self._blocking) >= BLOCKING_KEPT:
            self._blocking.clear()
        verdict = self._blocking[key] = found[0] if found else None
        return verdict

    def _timeHeld(self, name: str, uploaded: float | None, now: float) -> Held | None:
        cooling = self.cools(name)
        if not cooling and self.excludeNewer is None:
            return None
        if uploaded is None:
            if self.allowUnknown:
                return None
            option = "--cooldown" if cooling else "--exclude-newer"
            return Held("cooldown" if cooling else "exclude-newer",
                        f"this release is held back by the mirror's {option}, its upload time is unknown")
        if self.excludeNewer is not None and uploaded > self.excludeNewer:
            return Held("exclude-newer",
                        f"this file was uploaded after the mirror's --exclude-newer {_when(self.excludeNewer)}")
        if cooling:
            assert self.cooldown is not None
            ends = uploaded + self.cooldown
            if ends > now:
                return Held("cooldown", f"this release is held back by the mirror's --cooldown, until {_when(ends)}",
                            ends)
        return None

    def holds(self, name: str, filename: str, uploaded: float | None, now: float) -> Held | None:
        """
        Why a file of project C{name} is held back now; L{None} if it is
        not.
        """
        return self.refuses(name, filename) or self._timeHeld(name, uploaded, now)

    def refuses(self, name: str, filename: str) -> Held | None:
        """
        Why a file of project C{name} is refused by a rule or an advisory,
        whatever its page says or whether any lists it: they need only its
        project and version.  L{None} if neither refuses it.
        """
        version = versionOf(filename)
        rule = self.rules.refusal(name, version) if self.rules.deny or self.rules.allowOnly else None
        if rule is not None:
            return Held("rule", f"this file is held back by the mirror's rule: {rule}", what=rule)
        advisory = self.blocking(name, version) if self.advisories.count else None
        if advisory is not None:
            summary = f": {advisory.summary}" if advisory.summary else ""
            return Held("advisory", f"this file is held back by advisory {advisory.id}{summary}", what=advisory.id)
        return None

    def heldBack(self) -> list[tuple[str, str, str, list[str]]]:
        """
        What the rules and advisories held back of the pages served since
        the policy last changed: (kind, the rule or advisory, project,
        versions).
        """
        with self._lock:
            return sorted((kind, what, project, sorted(versions)) for (kind, what, project), versions in self._held.items())

    def _note(self, held: Held, project: str, version: str | None) -> None:
        if held.kind not in ("rule", "advisory"):
            return
        with self._lock:
            self._held.setdefault((held.kind, held.what, project), set()).add(version or "?")

    def view(self, name: str, page: dict[str, Any], now: float) -> View:
        """
        What of C{page} is served at C{now}.  CPU work for a big page: it
        runs where the page is rendered.
        """
        status = page.get("project-status")
        if isinstance(status, dict) and status.get("status") == QUARANTINED:
            return View(dict(page, files=[]))
        if not (
            self.cools(name)
            or self.excludeNewer is not None
            or name in self.rules.names
            or (self.denyAdvisories != "off" and name in self.advisories.byProject)
        ):
            return View(page)
        kept, until, unknown = [], math.inf, False
        hiddenVersions: set[str] = set()
        keptVersions: set[str] = set()
        for entry in page["files"]:
            uploaded = uploadTime(entry)
            unknown = unknown or uploaded is None
            held = self.holds(name, entry["filename"], uploaded, now)
            version = versionOf(entry["filename"])
            if held is None:
                kept.append(entry)
                if version is not None:
                    keptVersions.add(version)
                continue
            self._note(held, name, version)
            until = min(until, held.until)
            if version is not None:
                hiddenVersions.add(version)
        if len(kept) == len(page["files"]):
            return View(page, math.inf, unknown)
        out = dict(page, files=kept)
        gone = hiddenVersions - keptVersions
        if isinstance(page.get("versions"), list) and gone:
            out["versions"] = [
                v for v in page["versions"] if not (isinstance(v, str) and (normalVersion(v) or v) in gone)
            ]
        return View(out, until, unknown)
