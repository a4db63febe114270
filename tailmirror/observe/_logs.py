"""
What the mirror says in its log of its own work: a subscriber to its
events, so each line is said once, where the event happens, with its
facts as fields (C{project}, C{file}, C{bytes}, C{seconds}, C{reason})
for a JSON log to carry, not only in the text.
"""

from __future__ import annotations

from twisted.logger import Logger
from zope.interface import implementer

from ..base import FileKey, IMirrorEvents, NoEvents

__all__ = ["LogEvents", "megabytesPerSecond"]

log = Logger(namespace="tailmirror")


def megabytesPerSecond(size: int, seconds: float) -> float:
    """
    A transfer's rate in MB/s (10**6 bytes), 0 for no time at all.
    """
    return round(size / seconds / 1e6, 2) if seconds > 0 else 0.0


@implementer(IMirrorEvents)
class LogEvents(NoEvents):
    """
    Log lines for the events an operator wants to read: every page refresh
    (once, not per waiting client), every failure of upstream with its
    reason, and every download's start and end.
    """

    def pageRefreshed(self, project: str, outcome: str, reason: str | None) -> None:
        if outcome == "new":
            log.info("fetched {project} from upstream", project=project, outcome=outcome)
        elif outcome == "changed":
            log.info("{project} changed upstream; the new page is kept", project=project, outcome=outcome)
        elif outcome == "unchanged":
            log.info("{project} is unchanged upstream", project=project, outcome=outcome)
        elif outcome == "missing":
            log.info("upstream has no project {project}", project=project, outcome=outcome)
        elif outcome == "stale":
            log.warn(
                "upstream failed for {project}, serving the mirror's copy stale: {reason}",
                project=project,
                outcome=outcome,
                reason=reason,
            )
        else:
            log.error(
                "upstream failed for {project}, which the mirror has no copy of: {reason}",
                project=project,
                outcome=outcome,
                reason=reason,
            )

    def downloadStarted(self, key: FileKey, size: int | None) -> None:
        log.info(
            "downloading {file} from upstream ({size})",
            file=key.filename + key.suffix,
            path=str(key),
            bytes=size,
            size="size unknown" if size is None else f"{size} bytes",
        )

    def fileKept(self, key: FileKey, size: int, seconds: float) -> None:
        log.info(
            "kept {file}: {bytes} bytes in {seconds:.2f} s ({rate:.2f} MB/s)",
            file=key.filename + key.suffix,
            path=str(key),
            bytes=size,
            seconds=round(seconds, 3),
            rate=megabytesPerSecond(size, seconds),
        )

    def fileRefused(self, key: FileKey, status: int, reason: str, size: int, seconds: float) -> None:
        log.error(
            "download of {file} failed after {bytes} bytes in {seconds:.2f} s, nothing kept: {reason}",
            file=key.filename + key.suffix,
            path=str(key),
            status=status,
            reason=reason,
            bytes=size,
            seconds=round(seconds, 3),
        )
