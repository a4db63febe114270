"""
The offline wing: the mirror's tools that run without it.  C{tailmirror
warm} fills a cache ahead of time from requirements or a lock file, through
a running mirror; C{tailmirror export} writes a cache out as a static
index (pages in both forms and the files) that any web server can serve.

It stands on the pages wing and the ground floor.
"""

from ._export import main as export
from ._warm import main as warm

__all__ = [
    "export",
    "warm",
]
