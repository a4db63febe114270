"""
What a client installs for, read from its C{User-Agent}: pip and uv send
C{<installer>/<version> <JSON>}, the JSON giving the Python version and
implementation, the operating system, the CPU and the C library.  From it
come the environment markers (PEP 508) the client evaluates and the wheel
tags it accepts, as the client itself would have them.  A client that
says none of it is taken to run on the mirror's own interpreter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping

from packaging import tags
from packaging.markers import default_environment
from packaging.version import InvalidVersion, Version

__all__ = ["Client", "clientOf", "OWN", "PARALLEL"]

#: Installers that resolve a whole level of a tree at once: each asks for
#: the pages, then the metadata, of every requirement it has found, side by
#: side, as soon as it has found them, which is as soon as a prefetch could.
PARALLEL = ("uv",)

_AGENT = re.compile(r"^(?P<installer>[A-Za-z][\w.-]*)/\S+\s+(?P<json>\{.*\})\s*$", re.DOTALL)
#: The longest user agent read: pip's and uv's are well under this.
AGENT_MAX = 4096
_ARCH = re.compile(r"[a-z0-9_]{1,32}")
_SYSTEMS = {"linux": ("linux", "posix"), "darwin": ("darwin", "posix"), "windows": ("win32", "nt")}
_WINDOWS_ARCH = {"amd64": "win_amd64", "x86_64": "win_amd64", "x86": "win32", "i686": "win32", "arm64": "win_arm64"}


@dataclass(frozen=True)
class Client:
    """
    The environment a client installs for.

    @ivar key: what tells one environment from another, for remembering
        what was prefetched for it.
    @ivar markers: its values of the environment markers (PEP 508).
    @ivar tags: the wheel tags it accepts, by preference (0 is best).
    @ivar python: its Python version, for C{Requires-Python}.
    """

    key: tuple[str, ...]
    markers: Mapping[str, str]
    tags: Mapping[tags.Tag, int]
    python: Version
    #: Whether the environment was read from the client (not assumed).
    told: bool = field(default=True, compare=False)
    #: What it is, for people: installer, Python and platform.
    label: str = field(default="", compare=False)
    #: Whether it resolves a level of its tree at once (L{PARALLEL}).
    parallel: bool = field(default=False, compare=False)

    def marker(self, extra: str = "") -> dict[str, str]:
        """
        The environment to evaluate a marker in, with C{extra}.
        """
        return dict(self.markers, extra=extra)


def _str(value: Any, limit: int = 64) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _glibcPlatforms(arch: str, libc: Any) -> list[str]:
    """
    The Linux platform tags of a client, newest first, as pip has them:
    manylinux for its glibc, or musllinux for its musl, then plain linux.
    """
    found: list[str] = []
    lib = _str(libc.get("lib")) if isinstance(libc, dict) else None
    version = _str(libc.get("version")) if isinstance(libc, dict) else None
    match = re.match(r"(\d+)\.(\d+)", version or "")
    if lib == "glibc" and match and match.group(1) == "2":
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        for minor in range(min(int(match.group(2)), 99), 4, -1):
            found.append(f"manylinux_2_{minor}_{arch}")
            if minor == 17 or (minor in legacy and arch in ("x86_64", "i686")):
                found.append(f"{legacy[minor]}_{arch}")
    elif lib == "musl" and match and match.group(1) == "1":
        found.extend(f"musllinux_1_{minor}_{arch}" for minor in range(min(int(match.group(2)), 99), -1, -1))
    found.append(f"linux_{arch}")
    return found


def _platforms(system: str, release: str, cpu: str, libc: Any) -> list[str]:
    """
    The platform tags a client on C{system} accepts, best first.
    """
    arch = cpu.lower()
    if not _ARCH.fullmatch(arch):
        return []
    if system == "linux":
        if arch == "amd64":
            arch = "x86_64"
        return _glibcPlatforms(arch, libc)
    if system == "darwin":
        # Darwin 20 is macOS 11, 21 is 12, ...; before that, 10.(darwin - 4).
        match = re.match(r"(\d+)", release)
        darwin = int(match.group(1)) if match else 20
        macos = (darwin - 9, 0) if darwin >= 20 else (10, max(0, darwin - 4))
        return list(tags.mac_platforms(macos, "arm64" if arch == "aarch64" else arch))
    if system == "windows":
        return [_WINDOWS_ARCH.get(arch, f"win_{arch}")]
    return []


def _tagsFor(implementation: str, python: Version, platforms: list[str]) -> dict[tags.Tag, int]:
    """
    The wheel tags of an interpreter, by preference.
    """
    major, minor = python.major, python.minor
    if implementation == "cpython":
        ordered = list(tags.cpython_tags((major, minor), [f"cp{major}{minor}"], platforms))
        interpreter = f"cp{major}{minor}"
    else:
        short = tags.INTERPRETER_SHORT_NAMES.get(implementation, implementation)
        interpreter = f"{short}{major}{minor}"
        ordered = list(tags.generic_tags(interpreter, ["none"], platforms))
    ordered += tags.compatible_tags((major, minor), interpreter, platforms)
    found: dict[tags.Tag, int] = {}
    for tag in ordered:
        found.setdefault(tag, len(found))
    return found


def _own() -> Client:
    """
    The mirror's own interpreter, for clients that say nothing of theirs.
    """
    markers = {k: v for k, v in default_environment().items() if isinstance(v, str)}
    ordered: dict[tags.Tag, int] = {}
    for tag in tags.sys_tags():
        ordered.setdefault(tag, len(ordered))
    python = Version(markers["python_full_version"].rstrip("+"))
    return Client(("own",), markers, ordered, python, told=False, label="unknown (taken as the mirror's own Python)")


#: The mirror's own interpreter.
OWN = _own()


def clientOf(agent: str | None) -> Client:
    """
    The environment a C{User-Agent} says its client installs for; the
    mirror's own for one that says none.
    """
    if not agent or len(agent) > AGENT_MAX:
        return OWN
    return _parsed(agent)


@lru_cache(maxsize=128)
def _parsed(agent: str) -> Client:
    match = _AGENT.match(agent)
    if match is None:
        return OWN
    try:
        data = json.loads(match.group("json"))
    except (ValueError, RecursionError):
        return OWN
    if not isinstance(data, dict):
        return OWN
    implementation = _dict(data.get("implementation"))
    try:
        python = Version(_str(data.get("python")) or "")
    except InvalidVersion:
        return OWN
    if python.major != 3:
        return OWN
    implName = (_str(implementation.get("name")) or "CPython")
    implVersion = _str(implementation.get("version")) or str(python)
    system = _dict(data.get("system"))
    systemName = _str(system.get("name")) or ""
    release = _str(system.get("release")) or ""
    cpu = _str(data.get("cpu")) or ""
    distro = _dict(data.get("distro"))
    libc = distro.get("libc")
    known = _SYSTEMS.get(systemName.lower())
    own = OWN.markers
    markers = dict(own)
    markers.update(
        implementation_name=implName.lower(),
        implementation_version=implVersion,
        platform_python_implementation=implName,
        python_version=f"{python.major}.{python.minor}",
        python_full_version=str(python),
    )
    if known is not None:
        markers.update(sys_platform=known[0], os_name=known[1], platform_system=systemName, platform_release=release)
        if cpu:
            markers["platform_machine"] = cpu
        markers["platform_version"] = ""
    platforms = _platforms(systemName.lower(), release, cpu, libc) if known is not None else []
    if not platforms:
        # Nothing known of its platform: what the mirror's own accepts.
        platforms = [t.platform for t in OWN.tags if t.platform != "any"]
        platforms = list(dict.fromkeys(platforms))
    found = _tagsFor(implName.lower(), python, platforms)
    lib = json.dumps(libc, sort_keys=True)[:100] if isinstance(libc, dict) else ""
    # A macOS release changes the tags; a Linux or Windows one does not.
    darwin = release if systemName.lower() == "darwin" else ""
    key = (implName.lower(), str(python), systemName.lower(), darwin, cpu, lib)
    installer = _dict(data.get("installer"))
    name = _str(installer.get("name"), 32) or match.group("installer")[:32]
    label = " ".join(
        part for part in (
            name,
            _str(installer.get("version"), 32),
            f"on {implName} {python},",
            systemName or "an unknown system",
            cpu,
        ) if part
    )
    return Client(key, markers, found, python, label=label, parallel=name.lower() in PARALLEL)

