"""
The observers' wing: what the mirror tells the people who run it.  Each
observer hears the mirror's events (L{tailmirror.base.IMirrorEvents}) and
reads one L{Snapshot} of its facts when asked, never the mirror's parts:
L{LogEvents} writes the log lines, L{MirrorMetrics} the Prometheus metrics
of C{/+metrics} (a metric lives here), L{MirrorStatus} the facts of
C{/+status}, as JSON and as a page for people; L{Health} answers the
probes of C{/+health/live} and C{/+health/ready}.

It stands on the files wing and the ground floor.
"""

from ._health import Health
from ._logs import LogEvents
from ._metrics import CONTENT_TYPE, MirrorMetrics
from ._snapshot import CacheFacts, DownloadFacts, IndexFacts, JournalFacts, SlotFacts, Snapshot, Snapshots
from ._status import MirrorStatus

__all__ = [
    "CacheFacts",
    "CONTENT_TYPE",
    "DownloadFacts",
    "Health",
    "IndexFacts",
    "JournalFacts",
    "LogEvents",
    "MirrorMetrics",
    "MirrorStatus",
    "SlotFacts",
    "Snapshot",
    "Snapshots",
]
