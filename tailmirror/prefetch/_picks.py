"""
What a client that resolves one requirement at a time (pip) picked: the
file of each project whose core metadata it asked for last, in the order
it picked them, until it asks for one of those files itself, which says
its resolution is over (see L{tailmirror.prefetch._prefetcher}).
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IReactorTime

from ..base import FileKey
from ..pages import projectsOf

__all__ = ["PICKED_MAX", "Picks", "projectOf"]

#: Files picked by clients still resolving, remembered at most, of all
#: clients together (the longest idle client forgotten first).
PICKED_MAX = 20_000

#: A client: its index, host and User-Agent.
Who = tuple[str, "str | None", str]


def projectOf(filename: str) -> str:
    """
    The project a distribution's file belongs to, likeliest first.
    """
    names = projectsOf(filename)
    return names[0] if names else filename


class Picks:
    """
    The picks of the clients still resolving, by client: when it last
    asked for metadata, and its files by project, in the order it picked
    them.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._picked: dict[Who, tuple[float, dict[str, FileKey]]] = {}
        #: Files picked, all clients together.
        self.files = 0

    def __bool__(self) -> bool:
        return bool(self._picked)

    def picked(self, who: Who, metadata: FileKey) -> None:
        """
        A client asked for the core metadata of a file: its pick of that
        file's project, for now.
        """
        found = self._picked.pop(who, None)
        picked = found[1] if found is not None else {}
        project = projectOf(metadata.filename)
        self.files += project not in picked
        picked[project] = FileKey(metadata.shard, metadata.filename, False, metadata.index)
        self._picked[who] = (self._clock.seconds(), picked)
        self._forgetIdle()

    def resolved(self, who: Who, key: FileKey) -> list[FileKey]:
        """
        A client asked for a file: if it is one of its picks, its resolution
        is over, and it is forgotten; the other files it picked, in order.
        """
        found = self._picked.pop(who, None)
        if found is None:
            return []
        picked = found[1]
        if picked.get(projectOf(key.filename)) != key:
            self._picked[who] = found  # resolving still (or a file it had no metadata of)
            return []
        self.files -= len(picked)
        return [other for other in picked.values() if other != key]

    def _forgetIdle(self) -> None:
        """
        Forget the longest idle clients' picks while there are too many.
        """
        while self.files > PICKED_MAX and self._picked:
            oldest = next(iter(self._picked))
            self.files -= len(self._picked.pop(oldest)[1])

    def sweep(self, expired: Callable[[str, float], bool]) -> None:
        """
        Forget the clients whose last pick C{expired(index, when)} says is
        too old.
        """
        for who, (when, picked) in list(self._picked.items()):
            if expired(who[0], when):
                del self._picked[who]
                self.files -= len(picked)
