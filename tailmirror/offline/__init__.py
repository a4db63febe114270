"""
TODO
"""

from ._export import main as export
from ._warm import main as warm

__all__ = ["export", "warm"]
