"""
Log observers for C{twistd --logger}.

C{twistd --logger tailmirror.logs.json -n tailmirror ...} writes the log as
JSON, one event a record, to standard output (for journald or a log
shipper), as C{twist --log-format json tailmirror} does: every event with
its fields (C{project}, C{file}, C{bytes}, C{seconds}, C{reason}, ...).
"""

from __future__ import annotations

import sys

from twisted.logger import ILogObserver, jsonFileLogObserver

__all__ = ["json"]


def json() -> ILogObserver:
    """
    An observer writing every event as JSON to standard output, each record
    after an RFC 7464 record separator, as C{twist --log-format json} does.
    """
    return jsonFileLogObserver(sys.stdout)
