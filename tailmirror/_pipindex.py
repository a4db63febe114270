"""
The index that pip on this host would use, for a mirror started without
C{--upstream}: C{PIP_INDEX_URL}, else pip's configured C{index-url}, else
pip's own default, all read from the installed pip at run time.
"""

from __future__ import annotations

import os

__all__ = ["pipIndex"]


def pipIndex() -> tuple[str, str] | None:
    """
    The index URL pip would install from, and where that comes from; or
    L{None} if no pip can be asked.
    """
    fromEnvironment = os.environ.get("PIP_INDEX_URL", "").strip()
    if fromEnvironment:
        return fromEnvironment, "PIP_INDEX_URL"
    try:
        from pip._internal.configuration import Configuration
        from pip._internal.models.index import PyPI
    except Exception:
        return None
    values: dict[str, object] = {}
    try:
        configuration = Configuration(isolated=False)
        configuration.load()
        values = dict(configuration.items())
    except Exception:
        pass  # an unreadable configuration: pip itself would stop; use its default
    for key in ("install.index-url", "global.index-url"):
        value = values.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip(), f"pip's configuration ({key})"
    return str(PyPI.simple_url), "pip's default index"
