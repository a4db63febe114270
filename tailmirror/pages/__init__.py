"""
The pages wing: project pages, from upstream to what a client is served.
L{ProjectPages} serves a page while it is fresh and refreshes it after the
TTL (a page refresh lives here: one conditional request per project at a
time, served stale while upstream fails); an upstream page is parsed
(HTML or JSON), checked and rendered in both forms off the reactor, its
file links rewritten to the mirror's own and indexed for cold files; the
L{Journal} keeps every page as fetched, append-only, replayed at start and
compacted; the L{Policy} (quarantine, allow and deny rules, advisories in
the OSV format, the release cooldown, a freeze date) decides what a page
shows and which files are refused, its rules and advisories kept current
by L{PolicySources}.  A wing above may register a view of each page
(L{ProjectPages.addView}), as the prefetch does for its candidates.

It stands on the upstream wing and the ground floor.
"""

from ._bodies import Body, Served
from ._journal import Journal
from ._legacy import LegacyJSON
from ._links import FileLink, metadataOffered, projectsOf
from ._pages import RENDER_CACHE_BYTES, ProjectPages
from ._advisories import Advisories, Advisory, readAdvisories
from ._policy import ADVISORY_MODES, QUARANTINED, Held, Policy, normalVersion, parseDuration, uploadTime, versionOf
from ._rules import POLICY_FILE_FORMAT, Rule, Rules, parsePolicyFile, parseRule, rulesOf
from ._sources import PolicySources, SourceError
from ._render import renderProjectHTML, renderProjectJSON, renderRootHTML, renderRootJSON
from ._views import PageView

__all__ = [
    "ADVISORY_MODES",
    "Advisories",
    "Advisory",
    "Held",
    "POLICY_FILE_FORMAT",
    "PolicySources",
    "SourceError",
    "Rule",
    "Rules",
    "parsePolicyFile",
    "parseRule",
    "readAdvisories",
    "rulesOf",
    "Body",
    "FileLink",
    "Journal",
    "LegacyJSON",
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
    "normalVersion",
    "versionOf",
]
