"""
The values of C{twistd tailmirror}'s options: sizes, shares, seconds and
C{NAME=VALUE}, each read or refused with a usage error that names its
option.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from twisted.python import usage

from .base import DEFAULT_INDEX, indexName
from .upstream import Credentials, credentialsFromFile, credentialsFromNetrc, withoutUserinfo

__all__ = ["count", "credentialsFor", "isHTTPURL", "named", "noThreads", "seconds", "sizeOrShare"]


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def isHTTPURL(url: str) -> bool:
    """
    Whether C{url} is an http:// or https:// URL with a host, and a port
    if any that is one (C{:99999} would fail only when first used).
    """
    parts = urlsplit(url)
    try:
        parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def count(option: str, value: str, units: bool = False, zero: bool = False) -> int:
    """
    A positive whole number (or 0, if C{zero}), with a K, M, G or T suffix
    if C{units}; or a usage error naming the option.
    """
    text = value.strip().upper().removesuffix("IB").removesuffix("B") if units else value.strip()
    unit = text[-1:] if units and text[-1:] in _UNITS else ""
    try:
        number = int(text[: len(text) - len(unit)]) * _UNITS[unit]
    except ValueError:
        number = -1
    if number < 0 or (number == 0 and not zero):
        what = "a positive size in bytes (K, M, G, T allowed)" if units else "a positive whole number"
        raise usage.UsageError(f"--{option} takes {what}, not {value!r}")
    return number


def sizeOrShare(option: str, value: str) -> int | float:
    """
    A size in bytes, or a percentage of the filesystem (C{5%}) as a share
    below 1; or a usage error naming the option.
    """
    text = value.strip()
    if not text.endswith("%"):
        return count(option, text, units=True, zero=True)
    try:
        share = float(text[:-1]) / 100
    except ValueError:
        share = -1.0
    if not 0 <= share < 1:
        raise usage.UsageError(f"--{option} takes a size or a percentage below 100%, not {value!r}")
    return share


def seconds(option: str, value: str, zero: bool = False) -> float:
    """
    A positive number of seconds (or 0, if C{zero}), or a usage error
    naming the option.
    """
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not (number > 0 or (zero and number == 0)) or number == float("inf"):
        what = "a number of seconds, 0 or more" if zero else "a positive number of seconds"
        raise usage.UsageError(f"--{option} takes {what}, not {value!r}")
    return number



def noThreads(f: Any, *args: Any) -> Any:
    raise RuntimeError("no thread at the options' check")


def named(option: str, value: str, form: str, allowDefault: bool = False) -> tuple[str, str]:
    """
    C{NAME=VALUE} as an option gives it, the name an index's; or a usage
    error naming the option.
    """
    name, equals, rest = value.partition("=")
    name = name.strip()
    if not equals or not rest.strip():
        raise usage.UsageError(f"--{option} takes {form}, not {value!r}")
    if not (allowDefault and name == DEFAULT_INDEX) and indexName(name) is None:
        raise usage.UsageError(
            f"--{option}: {name!r} cannot name an index: lower-case letters, digits, - and _, "
            f"and not {DEFAULT_INDEX}, simple or root"
        )
    return name, rest.strip()


def credentialsFor(url: str, path: str | None, option: str, warnings: list[str]) -> tuple[str, Credentials | None]:
    """
    An index's URL without its userinfo, and its credentials: from the file
    at C{path} (given by C{option}), from the URL, or from netrc (whose
    trouble, if any, goes to C{warnings}).
    """
    clean, fromURL = withoutUserinfo(url)
    if path is not None:
        if fromURL is not None:
            raise usage.UsageError(f"{option} and credentials in the URL: give them one way")
        try:
            return clean, credentialsFromFile(path, option.rstrip("="))
        except OSError as e:
            raise usage.UsageError(f"{option} cannot be read ({e.strerror}): {path}") from None
        except ValueError as e:
            raise usage.UsageError(f"{option}: {e}") from None
    if fromURL is not None:
        return clean, fromURL
    found, warning = credentialsFromNetrc(clean)
    if warning is not None:
        warnings.append(warning)
    return clean, found
