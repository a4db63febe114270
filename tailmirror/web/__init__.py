"""
TODO
"""


from ._access import AccessLog, MirrorSite
from ._root import MetricsOnly, MirrorWeb

__all__ = [
    "AccessLog",
    "MetricsOnly",
    "MirrorSite",
    "MirrorWeb",
]
