"""
tailmirror: an incremental caching mirror of a Python package index.
"""

from ._version import __version__

__all__ = ["__version__"]
