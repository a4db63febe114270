"""
TODO
"""


from ._bodies import Body
from ._journal import Journal
from ._links import FileLink, metadataOffered, projectsOf
from ._pages import RENDER_CACHE_BYTES, ProjectPages, Served
from ._views import PageView
from ._policy import QUARANTINED, Policy, parseDuration, uploadTime, versionOf
from ._render import renderProjectHTML, renderProjectJSON, renderRootHTML, renderRootJSON

__all__ = [
    "Body",
    "FileLink",
    "Journal",
    "Policy",
    "PageView",
    "ProjectPages",
    "QUARANTINED",
    "RENDER_CACHE_BYTES",
    "Served",
    "parseDuration",
    "metadataOffered",
    "projectsOf",
    "renderProjectHTML",
    "renderProjectJSON",
    "renderRootHTML",
    "renderRootJSON",
    "uploadTime",
    "versionOf",
]
