"""
The prefetch wing: what clients will ask for next, fetched ahead of them.
The L{Prefetcher} (a prefetch lives here) hears of each page and file a
client asks for through the mirror's events; it predicts the file the
client will pick (its Python and platform read from its C{User-Agent}),
reads that file's core metadata for its requirements and fetches their
pages and metadata, level by level, with slots that always yield to
clients; for a client that resolves one requirement at a time (pip) it
downloads the files it picked once its resolution is over; it counts what
was used and what was wasted.

It stands on the files wing, the pages wing (whose pages it views through
L{tailmirror.pages.ProjectPages.addView}) and the ground floor, and asks
upstream only through them; nothing but the assembly imports it.
"""

from ._prefetcher import KINDS, MODES, Prefetcher

__all__ = [
    "KINDS",
    "MODES",
    "Prefetcher",
]
