"""
A small file the mirror reads again when it changes, while it runs: the
files of credentials of C{--auth}, the policy file.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = ["LOOK_EVERY", "WatchedFile"]

log = Logger()

#: Seconds between looks at whether a file changed.
LOOK_EVERY = 1.0


class WatchedFile:
    """
    A file read again, by C{parse}, when its size, time or inode changes
    (looked at once a second at most: a stat); if it cannot be read or
    parsed, the last good reading holds, and the log says why, once.
    Small files only: they are read on the reactor.
    """

    def __init__(self, path: str, parse: Callable[[bytes], Any], clock: IReactorTime, what: str = "") -> None:
        self.path = path
        self._parse = parse
        self._clock = clock
        #: What the file is, for the log (C{"the policy file"}).
        self.what = what or "the file"
        self._seen: tuple[int, int, int] | None = None
        self._lookedAt = float("-inf")
        #: Why it could not be read again, while it cannot.
        self.failing: str | None = None
        self.value: Any = None
        #: Bumped at every reading.
        self.generation = 0

    def load(self) -> None:
        """
        Read the file now.

        @raise OSError: if it cannot be read.
        @raise ValueError: if it is not of its form.
        """
        with open(self.path, "rb") as f:
            stat = os.fstat(f.fileno())
            data = f.read()
        self.value = self._parse(data)
        self._seen = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        self.generation += 1

    def current(self) -> Any:
        """
        The file's reading, read again first if it changed.
        """
        now = self._clock.seconds()
        if now - self._lookedAt < LOOK_EVERY:
            return self.value
        self._lookedAt = now
        try:
            try:
                stat = os.stat(self.path)
            except OSError:
                self._seen = None  # read again once it is back, changed or not
                raise
            seen = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
            if seen != self._seen:
                # Each version of the file is read once, good or not: a
                # broken one is not read again every second.
                self._seen = seen
                self.load()
                log.info("read {what} {path} again: it changed", what=self.what, path=self.path)
                self.failing = None
        except (OSError, ValueError) as e:
            why = getattr(e, "strerror", None) or str(e)
            if why != self.failing:
                self.failing = why
                log.error("cannot read {what} {path} again ({why}); its last reading holds",
                          what=self.what, path=self.path, why=why)
        return self.value
