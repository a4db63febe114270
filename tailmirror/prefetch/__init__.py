"""
TODO
"""


from ._choice import Candidate, candidatesOf
from ._prefetcher import MODES, Prefetcher

__all__ = [
    "Candidate",
    "MODES",
    "Prefetcher",
    "candidatesOf",
]
