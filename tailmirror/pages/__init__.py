"""
The pages wing: project pages, from upstream to what a client is served.
L{ProjectPages} serves a page while it is fresh and refreshes it after the
TTL (a page refresh lives here: one conditional request per project at a
time, served stale while upstream fails); an upstream page is parsed
(HTML or JSON), checked and rendered in both forms off the reactor, its
file links rewritten to the mirror's own and indexed for cold files; the
L{Journal} keeps every page as fetched, append-only, replayed at start and
compacted; the L{Policy} (quarantine, the release cooldown) decides what a
page shows.  A wing above may register a view of each page
(L{ProjectPages.addView}), as the prefetch does for its candidates.

It stands on the upstream wing and the ground floor.
"""

from ._bodies import Body, Served
from ._journal import Journal
from ._links import FileLink, metadataOffered, projectsOf
from ._pages import RENDER_CACHE_BYTES, ProjectPages
from ._policy import QUARANTINED, Policy, parseDuration, uploadTime, versionOf
from ._render import renderProjectHTML, renderProjectJSON, renderRootHTML, renderRootJSON
from ._views import PageView

__all__ = [
    "Body",
    "FileLink",
    "Journal",
    "metadataOffered",
    "PageView",
    "parseDuration",
    "Policy",
    "ProjectPages",
    "projectsOf",
    "QUARANTINED",
    "RENDER_CACHE_BYTES",
    "renderProjectHTML",
    "renderProjectJSON",
    "renderRootHTML",
    "renderRootJSON",
    "Served",
    "uploadTime",
    "versionOf",
]
