"""
What the mirror's observers are served: the metrics (C{/+metrics}, or
C{/metrics} on C{--metrics-listen}'s endpoint) and the health probes
(C{/+health/live}, C{/+health/ready}).  The metrics endpoint's resource,
L{MetricsOnly}, is never behind C{--auth}: a scraper or a probe needs no
reader's password there.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from ..observe import CONTENT_TYPE as METRICS_TYPE, Health, MirrorMetrics
from ._answers import plain
from ._file import ALLOW

__all__ = ["MetricsOnly", "sendHealth", "sendMetrics"]


def sendHealth(request: IRequest, answer: tuple[int, bytes]) -> bytes:
    """
    A probe's answer: its status, and JSON that says why.
    """
    request.setResponseCode(answer[0])
    request.setHeader("Content-Type", "application/json")
    request.setHeader("Cache-Control", "no-store")
    return answer[1]


def sendMetrics(request: IRequest, metrics: MirrorMetrics) -> bytes:
    """
    The metrics, in the Prometheus text format.
    """
    request.setHeader("Content-Type", METRICS_TYPE)
    request.setHeader("Cache-Control", "no-store")
    return metrics.render()


class MetricsOnly(Resource):
    """
    The resource of the metrics endpoint (C{--metrics-listen}): the
    metrics at C{/metrics} and C{/+metrics}, the health probes at
    C{/+health/live} and C{/+health/ready}, and nothing else; never behind
    C{--auth}, so a scraper or a probe needs no reader's password.
    """

    isLeaf = True

    def __init__(self, metrics: MirrorMetrics, health: Health | None = None) -> None:
        super().__init__()
        self._metrics = metrics
        self._health = health

    def render(self, request: IRequest) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader("Allow", ALLOW)
            return plain(request, 405, f"only {ALLOW} here")
        if self._health is not None and request.path == b"/+health/live":
            return sendHealth(request, self._health.live())
        if self._health is not None and request.path == b"/+health/ready":
            return sendHealth(request, self._health.ready())
        if request.path not in (b"/metrics", b"/+metrics"):
            return plain(request, 404, "only the metrics are here, at /metrics")
        return sendMetrics(request, self._metrics)
