"""
TODO
"""


from ._logs import LogEvents
from ._metrics import CONTENT_TYPE, MirrorMetrics
from ._status import MirrorStatus

__all__ = [
    "CONTENT_TYPE",
    "LogEvents",
    "MirrorMetrics",
    "MirrorStatus",
]
