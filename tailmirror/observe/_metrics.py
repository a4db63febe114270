"""
The mirror's metrics, in the Prometheus text format through
C{prometheus_client}: a registry per mirror, fed by the mirror's events
and, at each scrape, read from one snapshot of the mirror's facts (the
tree's budget, the journal, the downloads: L{Snapshot}).  Label sets are bounded: a route, an
outcome, a kind, a status code; never a project's or a file's name.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from zope.interface import implementer

from .._version import __version__
from ..base import PAGE_OUTCOMES, REFRESH_OUTCOMES, UPSTREAM_OUTCOMES, FileKey, IMirrorEvents, NoEvents
from ..files import BACKLOG_MAX
from ._snapshot import Snapshots

__all__ = ["CONTENT_TYPE", "MirrorMetrics", "ROUTES", "StallMeter"]

#: The text format every Prometheus reads; the names here are all plain.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: The routes requests are counted by.
ROUTES = ("page", "index", "file", "status", "metrics", "other")

#: The kinds of upstream requests.
KINDS = ("page", "file", "range")

#: Upstream latency buckets, in seconds: pages take tens of milliseconds,
#: big files minutes.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"))


#: Why the policy refuses, as the metrics count it.
POLICY_REASONS = ("rule", "advisory", "cooldown", "exclude-newer", "allow-only")

class StallMeter:
    """
    How late the reactor runs a timed call: a call every C{every} seconds
    measures how far past its time it ran; the stall is the longest delay
    over the last C{window} seconds.
    """

    def __init__(self, clock: IReactorTime, every: float = 0.1, window: float = 10.0) -> None:
        self._clock = clock
        self.every = every
        self.window = window
        self._call = LoopingCall(self._tick)
        self._call.clock = clock
        self._expected = 0.0
        self._windowStart = 0.0
        self._current = 0.0
        self._previous = 0.0

    def start(self) -> None:
        now = self._clock.seconds()
        self._expected = now + self.every
        self._windowStart = now
        self._call.start(self.every, now=False)

    def stop(self) -> None:
        if self._call.running:
            self._call.stop()

    def _tick(self) -> None:
        now = self._clock.seconds()
        self.record(now - self._expected, now)
        self._expected = now + self.every

    def record(self, delay: float, now: float) -> None:
        """
        A timed call ran C{delay} seconds late, at C{now}.
        """
        if now - self._windowStart >= self.window:
            self._previous, self._current, self._windowStart = self._current, 0.0, now
        self._current = max(self._current, delay)

    @property
    def stall(self) -> float:
        """
        The longest delay over the last window (and the one under way).
        """
        return max(0.0, self._current, self._previous)


@implementer(IMirrorEvents)
class MirrorMetrics(NoEvents):
    """
    One mirror's metrics.  Events count into counters; L{watch} adds what
    is read at each scrape.
    """

    def __init__(self, clock: IReactorTime, process: bool = True) -> None:
        self.registry = registry = CollectorRegistry()
        self.stallMeter = StallMeter(clock)
        self.startedAt = clock.seconds()
        if process:
            ProcessCollector(registry=registry)

        def counter(name: str, documentation: str, *labels: str) -> Counter:
            return Counter(name, documentation, labels, registry=registry)

        def each(metric: Any, values: Iterable[Any], label: Callable[[Any], str] = str) -> dict[Any, Any]:
            return {v: metric.labels(label(v)) for v in values}

        # What the warm path counts is plain ints, read at each scrape: a
        # dict update per request, not a Counter's lock and checks.
        self._answered = _Tally("tailmirror_http_requests", "HTTP requests answered, by route and status code.",
                                ("route", "status"))
        self._sent = _Tally("tailmirror_http_sent_bytes", "Bytes of response bodies sent to clients, by route.",
                            ("route",), [(route,) for route in ROUTES])
        self._pages = _Tally("tailmirror_page_answers", "Project pages answered, by outcome.",
                             ("outcome",), [(outcome,) for outcome in PAGE_OUTCOMES])
        self._served = _Tally("tailmirror_files_served",
                              "File answers begun, by source: the cache, or a download under way.",
                              ("source",), [("cache",), ("download",)])
        self._servedBytes = _Tally("tailmirror_file_served_bytes",
                                   "Bytes of file answers begun, by source (the cache, or a download under way).",
                                   ("source",), [("cache",), ("download",)])
        registry.register(_Tallies([self._answered, self._sent, self._pages, self._served, self._servedBytes]))
        self._refreshes = each(
            counter("tailmirror_page_refreshes", "Refreshes of project pages from upstream, by outcome.", "outcome"),
            REFRESH_OUTCOMES,
        )
        upstream = counter(
            "tailmirror_upstream_requests",
            "Requests to upstream, by kind (page, file, range: part of a wheel, for its metadata) and outcome.",
            "kind",
            "outcome",
        )
        self._upstream = {
            (kind, outcome): upstream.labels(kind, outcome) for kind in KINDS for outcome in UPSTREAM_OUTCOMES
        }
        latency = Histogram(
            "tailmirror_upstream_request_duration_seconds",
            "Seconds from asking upstream to the end of its answer, by kind.",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._latency = each(latency, KINDS)
        self._received = each(
            counter("tailmirror_upstream_received_bytes", "Bytes of bodies received from upstream, by kind.", "kind"),
            KINDS,
        )
        self.downloads = counter("tailmirror_downloads_started", "Downloads from upstream begun.")
        self.kept = counter("tailmirror_files_kept", "Files verified and kept in the cache.")
        self.keptBytes = counter("tailmirror_files_kept_bytes", "Bytes of the files kept in the cache.")
        self.refused = counter(
            "tailmirror_files_refused",
            "Files that could not be had (download failed, or no room), by the status answered.",
            "status",
        )
        self._policy = each(
            counter(
                "tailmirror_policy_refusals",
                "What the policy held back of what clients asked for, by reason: a file by a rule, an advisory, "
                "the cooldown or the freeze date (exclude-newer); a project outside the allow-only list.",
                "reason",
            ),
            POLICY_REASONS,
        )
        self.evicted = counter("tailmirror_evicted_files", "Files evicted to keep the cache within its limits.")
        self.evictedBytes = counter("tailmirror_evicted_bytes", "Bytes of the files evicted.")
        info = Gauge("tailmirror_build_info", "The mirror's version.", ["version"], registry=registry)
        info.labels(__version__).set(1)
        Gauge("tailmirror_start_time_seconds", "When the mirror started, in Unix time.", registry=registry).set(
            self.startedAt
        )

    def start(self) -> None:
        self.stallMeter.start()

    def stop(self) -> None:
        self.stallMeter.stop()

    def watch(self, snapshot: Snapshots) -> None:
        """
        Read the mirror's state from one C{snapshot()} at each scrape.
        """
        self.registry.register(_StateCollector(snapshot, self.stallMeter))

    def render(self) -> bytes:
        """
        Every metric, in the Prometheus text format.
        """
        return generate_latest(self.registry)

    def requestFinished(self, route: str, status: int, sent: int) -> None:
        """
        A request was answered on C{route} with C{status}, and C{sent}
        bytes of body.
        """
        self._answered.add((route, status))
        if sent:
            self._sent.add((route,), sent)

    # The events.

    def pageServed(self, project: str, outcome: str) -> None:
        self._pages.add((outcome,))

    def pageRefreshed(self, project: str, outcome: str, reason: str | None) -> None:
        self._refreshes[outcome].inc()

    def upstreamRequest(self, kind: str, outcome: str, seconds: float, size: int, reason: str | None) -> None:
        self._upstream[(kind, outcome)].inc()
        self._latency[kind].observe(seconds)
        if size:
            self._received[kind].inc(size)

    def fileServed(self, key: FileKey, size: int, cached: bool) -> None:
        source = _SOURCE[cached]
        self._served.add(source)
        if size:
            self._servedBytes.add(source, size)

    def downloadStarted(self, key: FileKey, size: int | None) -> None:
        self.downloads.inc()

    def fileKept(self, key: FileKey, size: int, seconds: float) -> None:
        self.kept.inc()
        self.keptBytes.inc(size)

    def fileRefused(self, key: FileKey, status: int, reason: str, size: int, seconds: float) -> None:
        self.refused.labels(str(status)).inc()

    def policyRefused(self, kind: str, project: str, what: str) -> None:
        counter = self._policy.get(kind)
        if counter is not None:
            counter.inc()

    def fileEvicted(self, key: FileKey, size: int) -> None:
        self.evicted.inc()
        self.evictedBytes.inc(size)


_SOURCE = {True: ("cache",), False: ("download",)}


class _Tally:
    """
    A counter kept in plain ints by label values, for the warm path; the
    registry reads it at each scrape.
    """

    def __init__(
        self, name: str, documentation: str, labels: tuple[str, ...], seed: Iterable[tuple[Any, ...]] = ()
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.counts: dict[tuple[Any, ...], float] = {values: 0 for values in seed}

    def add(self, values: tuple[Any, ...], amount: float = 1) -> None:
        counts = self.counts
        counts[values] = counts.get(values, 0) + amount

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, count in self.counts.items():
            family.add_metric([str(v) for v in values], count)
        return family


class _Tallies:
    """
    The tallies, as the registry collects them.
    """

    def __init__(self, tallies: list[_Tally]) -> None:
        self._tallies = tallies

    def collect(self) -> Iterator[Any]:
        for tally in self._tallies:
            yield tally.family()


class _StateCollector:
    """
    The gauges read from one snapshot of the mirror's facts at each scrape.
    """

    def __init__(self, snapshot: Snapshots, stallMeter: StallMeter) -> None:
        self._snapshot = snapshot
        self._stall = stallMeter

    def collect(self) -> Iterator[Any]:
        facts = self._snapshot()
        cache = facts.cache
        journal = facts.journal
        yield _gauge("tailmirror_projects_known", "Projects whose page the mirror keeps.", facts.projectsKnown)
        yield _gauge("tailmirror_downloads_in_flight", "Downloads from upstream under way.", len(facts.downloads))
        yield _gauge(
            "tailmirror_download_backlog_bytes",
            f"Bytes downloads have received and not yet written to disk (upstream pauses past "
            f"{BACKLOG_MAX // 2**20} MiB).",
            facts.backlog,
        )
        for name, documentation, count in (
            ("tailmirror_upstream_slots", "Requests to upstream that may run at once, by kind "
             "(--page-requests, --file-requests).", lambda slots: slots.limit),
            ("tailmirror_upstream_slots_busy", "Requests to upstream running, by kind.",
             lambda slots: slots.busy),
            ("tailmirror_upstream_slots_waiting", "Requests to upstream waiting for a slot, by kind "
             "(clients' and the prefetch's).", lambda slots: slots.waiting),
        ):
            gauge = GaugeMetricFamily(name, documentation, labels=["kind"])
            gauge.add_metric(["page"], count(facts.pageSlots))
            gauge.add_metric(["file"], count(facts.fileSlots))
            yield gauge
        yield _gauge(
            "tailmirror_cache_counted",
            "1 once the cache's files are counted at start (until then the cache gauges are partial).",
            1 if cache.counted else 0,
        )
        yield _gauge("tailmirror_cache_files", "Files in the cache.", cache.files)
        yield _gauge(
            "tailmirror_cache_bytes",
            "Bytes the cache directory holds: files, downloads under way and the journal.",
            cache.bytes,
        )
        if cache.maxBytes is not None:
            yield _gauge("tailmirror_cache_max_bytes", "The most the cache may hold (--max-size).", cache.maxBytes)
        if not isinstance(cache.filesystem, str):
            total, free = cache.filesystem
            yield _gauge("tailmirror_filesystem_size_bytes", "Size of the cache's filesystem.", total)
            yield _gauge("tailmirror_filesystem_free_bytes", "Free space on the cache's filesystem.", free)
            yield _gauge(
                "tailmirror_cache_min_free_bytes",
                "Free space the cache keeps on its filesystem (--min-free).",
                cache.minFreeBytes or 0,
            )
        yield _gauge("tailmirror_journal_bytes", "Length of the journal.", journal.size)
        yield _gauge("tailmirror_journal_live_bytes", "Bytes of the journal's records still in use.", journal.live)
        yield _gauge(
            "tailmirror_journal_live_ratio",
            "The share of the journal still in use (compaction drops the rest).",
            journal.live / journal.size if journal.size else 1.0,
        )
        compactions = CounterMetricFamily(
            "tailmirror_journal_compactions", "Compactions of the journal since start."
        )
        compactions.add_metric([], journal.compactions)
        yield compactions
        store = facts.store
        if store is not None:
            yield _gauge("tailmirror_store_healthy", "Whether the fleet's bucket (--store) answers.",
                         1 if store["healthy"] else 0)
            yield _gauge("tailmirror_store_puts_pending", "Files waiting to be put in the bucket.", store["pendingPuts"])
            for name, key, documentation in (
                ("tailmirror_store_puts", "puts", "Files put in the bucket."),
                ("tailmirror_store_put_failures", "failedPuts", "Puts in the bucket that failed (and are retried)."),
                ("tailmirror_store_reads", "readFromBucket", "Cold files read from the bucket, not upstream."),
            ):
                family = CounterMetricFamily(name, documentation)
                family.add_metric([], store[key])
                yield family
        figures = facts.prefetch
        if figures is not None and figures["mode"] != "off":
            for name, key, documentation in (
                ("tailmirror_prefetched", "prefetched", "Things the prefetch had upstream send, by kind."),
                ("tailmirror_prefetch_used", "used", "Things prefetched that a client then asked for, by kind."),
                (
                    "tailmirror_prefetch_wasted",
                    "wasted",
                    "Things prefetched that no client asked for within the page TTL, by kind.",
                ),
            ):
                family = CounterMetricFamily(name, documentation, labels=["kind"])
                for kind, count in figures[key].items():
                    family.add_metric([kind], count)
                yield family
            yield _gauge(
                "tailmirror_prefetch_pending",
                "Things prefetched that no client has asked for yet, within the TTL.",
                figures["pending"],
            )
        yield _gauge(
            "tailmirror_reactor_stall_seconds",
            "The longest delay of a timed call on the reactor over the last 10 to 20 seconds.",
            self._stall.stall,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
