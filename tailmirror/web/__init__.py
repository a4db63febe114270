"""
The web wing: the mirror's HTTP face.  L{MirrorWeb} is the resource tree:
the root index and project pages by content negotiation (HTML or JSON),
package files from the tree or as their download arrives (ranges,
validators and C{HEAD}, the policy checked first), the handshake with a
front (nginx) that sends warm files, C{/+status} and C{/+metrics}; the
failures of pages and files become answers in one place
(L{tailmirror.web._answers}); L{Guard} lets in only the readers
C{--auth} names (C{twisted.cred} checkers over an htpasswd file and a
tokens file, L{tailmirror.web._passwords}); L{MirrorSite} adds the access
log and the request metrics.

It stands on the observers' wing, the files wing, the pages wing and the
ground floor; it hears nothing of the prefetch, which learns what clients
ask for through the mirror's events.
"""

from ._access import AccessLog, MirrorSite
from ._guard import Guard
from ._passwords import AUTH_FORMATS, AnyOf, checkerFor, newToken
from ._root import MetricsOnly, MirrorWeb

__all__ = [
    "AUTH_FORMATS",
    "AccessLog",
    "AnyOf",
    "Guard",
    "checkerFor",
    "newToken",
    "MetricsOnly",
    "MirrorSite",
    "MirrorWeb",
]
