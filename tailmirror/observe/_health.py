"""
The mirror's health, for load balancers and Kubernetes probes:
C{/+health/live} answers while the process does; C{/+health/ready} once
the mirror serves (listening, its journals replayed), and says in its body
what is degraded (a store that cannot be reached, an upstream failing)
while it still serves.
"""

from __future__ import annotations

import json
from typing import Any, Callable

__all__ = ["Health"]


class Health:
    """
    What the probes are told.  The assembly says when the mirror is open,
    and what else is degraded (each by a callable that says why, or
    L{None} while all is well).
    """

    def __init__(self) -> None:
        self.opened = False
        #: Each part that can be degraded, by name: why it is, or L{None}.
        self.parts: dict[str, Callable[[], str | None]] = {}

    def live(self) -> tuple[int, bytes]:
        return 200, b'{"status": "live"}\n'

    def ready(self) -> tuple[int, bytes]:
        """
        The status and body of C{/+health/ready}: 503 until the mirror
        serves; then 200, C{"ready"} or C{"degraded"} with the reasons.
        """
        if not self.opened:
            return 503, b'{"status": "starting", "reasons": ["the journal is not replayed yet"]}\n'
        reasons = {name: why for name, check in self.parts.items() if (why := check()) is not None}
        facts: dict[str, Any] = {"status": "degraded" if reasons else "ready", "journal": "replayed"}
        if reasons:
            facts["reasons"] = reasons
        return 200, json.dumps(facts).encode("utf-8") + b"\n"
