"""
Where the policy's rules and advisories come from, kept current while the
mirror runs: the policy file (C{--policy-file}), looked at every second
and read again when it changes; advisory directories, zips and files
(C{--advisories PATH}), looked at every ten seconds (their walk in a
thread); advisory feeds (C{--advisories URL}), fetched again every
C{--advisories-refresh} with a conditional request, their last good copy
kept in the cache directory, so a restart with the feed down still has
it.  A source that fails keeps its last good reading, and says so on
C{/+status}; a malformed advisory file is skipped with its name in the
log.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..base import LOOK_EVERY, RunInThread, WatchedFile
from ..upstream import readBody
from ._advisories import Advisories, Advisory, readAdvisories
from ._policy import Policy
from ._rules import Rules, policyFileRules

__all__ = ["PolicySources", "SourceError"]


class SourceError(Exception):
    """
    A source of the policy cannot be read at start: one line that names
    its option.
    """

log = Logger()

#: Seconds between walks of the advisory paths (the policy file is looked
#: at every LOOK_EVERY).
WALK_EVERY = 10.0
#: The most bytes of a feed taken.
FEED_MAX = 512 * 1024 * 1024
#: The request headers of a feed that answered, kept for the next.
_VALIDATORS = (("etag", "If-None-Match"), ("last-modified", "If-Modified-Since"))


@dataclass
class _Source:
    """
    One source of advisories, and how its last readings went.
    """

    where: str
    isURL: bool
    advisories: list[Advisory] = field(default_factory=list)
    signature: Any = None
    loadedAt: float | None = None
    checkedAt: float | None = None
    error: str | None = None
    skipped: int = 0
    validators: dict[str, str] = field(default_factory=dict)
    busy: bool = False

    def facts(self) -> dict[str, Any]:
        return {
            "source": self.where,
            "advisories": len(self.advisories),
            "loaded": self.loadedAt,
            "checked": self.checkedAt,
            "skippedFiles": self.skipped,
            "error": self.error,
        }


def _signature(path: str) -> tuple[int, int, int]:
    """
    What changes when a file, or any file under a directory, does: their
    count, total size and latest time.
    """
    if not os.path.isdir(path):
        stat = os.stat(path)
        return 1, stat.st_size, stat.st_mtime_ns
    count = size = latest = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                stat = os.stat(os.path.join(directory, name))
            except OSError:
                continue
            count, size, latest = count + 1, size + stat.st_size, max(latest, stat.st_mtime_ns)
    return count, size, latest


class PolicySources:
    """
    The policy's rules (the options' and the policy file's) and advisories,
    read at start and kept current.
    """

    def __init__(
        self,
        policy: Policy,
        clock: IReactorTime,
        runInThread: RunInThread,
        *,
        rules: Rules = Rules(),
        policyFile: str | None = None,
        advisories: Sequence[str] = (),
        refresh: float = 6 * 3600.0,
        client: Any = None,
        keepIn: str | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._run = runInThread
        self._rules = rules
        self.policyFile = policyFile
        self._file = (
            None if policyFile is None
            else WatchedFile(policyFile, lambda data: policyFileRules(data, policyFile), clock, "the policy file")
        )
        self._sources = [_Source(s, s.startswith(("http://", "https://"))) for s in advisories]
        self.refresh = refresh
        self._client = client
        self._keepIn = keepIn
        self._call: IDelayedCall | None = None
        self._lastWalk = self._lastFeed = float("-inf")

    def load(self) -> None:
        """
        Read every source now, at start: the policy file and advisory
        paths, and each feed's copy kept from an earlier run.

        @raise SourceError: if the policy file or an advisory path cannot
            be read, the policy file holds a line that is no rule, or an
            advisory path is neither a directory, a zip nor JSON.
        """
        if self._file is not None:
            try:
                self._file.load()
            except (OSError, ValueError) as e:
                raise SourceError(f"--policy-file cannot be read ({getattr(e, 'strerror', None) or e}): {self.policyFile}") from None
        for source in self._sources:
            if source.isURL:
                self._readKept(source)
                continue
            try:
                source.signature = _signature(source.where)
                self._took(source, *readAdvisories(source.where))
            except (OSError, ValueError) as e:
                raise SourceError(f"--advisories cannot be read ({getattr(e, 'strerror', None) or e}): {source.where}") from None
        self._apply()

    def start(self) -> None:
        """
        Keep the sources current, from now on.
        """
        self._call = self._clock.callLater(0, self._tick)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _tick(self) -> None:
        now = self._clock.seconds()
        try:
            self._lookAtPolicyFile()
            if now - self._lastWalk >= WALK_EVERY:
                self._lastWalk = now
                for source in self._sources:
                    if not source.isURL and not source.busy:
                        Deferred.fromCoroutine(self._reread(source))
            if now - self._lastFeed >= self.refresh:
                self._lastFeed = now
                for source in self._sources:
                    if source.isURL and not source.busy:
                        Deferred.fromCoroutine(self._fetch(source))
        finally:
            self._call = self._clock.callLater(LOOK_EVERY, self._tick)

    def _apply(self) -> None:
        everything = [a for source in self._sources for a in source.advisories]
        fileRules = self._file.value if self._file is not None else Rules()
        self.policy.update(self._rules + fileRules, Advisories(everything))

    def _took(self, source: _Source, advisories: list[Advisory], skipped: list[str]) -> None:
        source.advisories = advisories
        source.loadedAt = source.checkedAt = self._clock.seconds()
        source.skipped = len(skipped)
        source.error = None
        for name in skipped:
            log.warn("advisory {name} skipped: it is not an OSV document that can be read", name=name)
        log.info("{count} advisories of the PyPI ecosystem read from {source}", count=len(advisories), source=source.where)

    def _lookAtPolicyFile(self) -> None:
        if self._file is None:
            return
        seen = self._file.generation
        self._file.current()
        if self._file.generation != seen:
            self._apply()

    async def _reread(self, source: _Source) -> None:
        source.busy = True
        try:
            signature = await self._run(_signature, source.where)
            if signature == source.signature:
                return
            found, skipped = await self._run(readAdvisories, source.where)
            source.signature = signature
            self._took(source, found, skipped)
            self._apply()
        except (OSError, ValueError) as e:
            self._failed(source, getattr(e, "strerror", None) or str(e))
        finally:
            source.busy = False

    def _failed(self, source: _Source, why: str) -> None:
        source.checkedAt = self._clock.seconds()
        if why != source.error:
            log.error("cannot read advisories from {source} ({why}); the last good copy holds",
                      source=source.where, why=why)
        source.error = why

    def _keptPaths(self, source: _Source) -> tuple[str, str] | None:
        if self._keepIn is None:
            return None
        digest = hashlib.sha256(source.where.encode("utf-8")).hexdigest()[:16]
        base = os.path.join(self._keepIn, "+advisories", digest)
        return base + ".body", base + ".json"

    def _readKept(self, source: _Source) -> None:
        paths = self._keptPaths(source)
        if paths is None or not os.path.exists(paths[0]):
            return
        try:
            with open(paths[1], "rb") as f:
                source.validators = json.load(f).get("validators", {})
            self._took(source, *readAdvisories(paths[0]))
        except (OSError, ValueError) as e:
            log.warn("the kept copy of {source} cannot be read ({why}); fetching it afresh",
                     source=source.where, why=str(e))
            source.validators = {}

    def _keep(self, source: _Source, body: bytes, validators: dict[str, str]) -> None:
        paths = self._keptPaths(source)
        if paths is None:
            return
        os.makedirs(os.path.dirname(paths[0]), exist_ok=True)
        for path, data in ((paths[0], body), (paths[1], json.dumps({"url": source.where, "validators": validators}).encode())):
            with open(path + ".tmp", "wb") as f:
                f.write(data)
            os.replace(path + ".tmp", path)

    async def _fetch(self, source: _Source) -> None:
        if self._client is None:
            return
        source.busy = True
        try:
            headers = {"User-Agent": "tailmirror", **{ask: v for name, ask in _VALIDATORS if (v := source.validators.get(name))}}
            response = await self._client.get(source.where, headers=headers, unbuffered=True)
            if response.code == 304:
                await readBody(response, 1024 * 1024)
                source.checkedAt = self._clock.seconds()
                source.error = None
                return
            if response.code != 200:
                await readBody(response, 1024 * 1024)
                raise ValueError(f"it answered {response.code}")
            body = await readBody(response, FEED_MAX)
            found, skipped = await self._run(readAdvisories, body, source.where)
            validators = {
                name: values[0].decode("latin-1")
                for name, _ in _VALIDATORS
                if (values := response.headers.getRawHeaders(name.encode()))
            }
            await self._run(self._keep, source, body, validators)
            source.validators = validators
            self._took(source, found, skipped)
            self._apply()
        except Exception as e:
            self._failed(source, getattr(e, "reason", None) or " ".join(str(e).split())[:200] or type(e).__name__)
        finally:
            source.busy = False

    def figures(self) -> dict[str, Any]:
        """
        What the policy holds, for C{/+status}.
        """
        rules = self.policy.rules
        return {
            "deny": [r.text for r in rules.deny],
            "allowOnly": [r.text for r in rules.allowOnly],
            "waived": sorted(rules.waived),
            "denyAdvisories": self.policy.denyAdvisories,
            "policyFile": self.policyFile,
            "policyFileError": self._file.failing if self._file is not None else None,
            "advisories": self.policy.advisories.count,
            "sources": [source.facts() for source in self._sources],
            "heldBack": [
                {"kind": kind, "what": what, "project": project, "versions": versions}
                for kind, what, project, versions in self.policy.heldBack()
            ],
        }
