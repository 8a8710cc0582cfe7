"""Bounded ``endpoint`` labels for BentoML's HTTP metrics: route templates, never raw paths.

BentoML 1.4.39's ``RunnerTrafficMetricsMiddleware`` (``bentoml/_internal/server/http/instruments.py``)
labels ``bentoml_service_request_total``, ``..._request_duration_seconds`` and
``..._request_in_progress`` with ``endpoint=scope["path"]``: the raw path the client sent. So every
``GET /audits/<uuid>`` and every ``/nope-<uuid>`` made new series (an outside tester grew
``/metrics`` from 1,637 to 11,637 lines with 300 unauthenticated requests, control bytes included),
and any client could exhaust Prometheus. :func:`install` wraps those metrics once per process so
their ``endpoint`` label is :func:`endpoint_label` of the path: the route template for a known route
(``/audits/{audit_id}``), ``other`` for anything else. Label values then come from the fixed set
:data:`ENDPOINT_LABELS`. The middleware itself is untouched (it still routes on the real path).
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["ENDPOINT_LABELS", "OTHER", "endpoint_label", "install"]

logger = logging.getLogger("interaction_auditor.service")

OTHER = "other"
_STATIC = (
    "/", "/generate", "/submit", "/v1/chat/completions", "/v1/completions", "/v1/models", "/audit", "/audits",
    "/auditor/status", "/report", "/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/docs",
)
_TEMPLATES = ((re.compile(r"/audits/[^/]+"), "/audits/{audit_id}"),)
#: Every value the ``endpoint`` label can take.
ENDPOINT_LABELS: tuple[str, ...] = _STATIC + tuple(t for _, t in _TEMPLATES) + (OTHER,)
_WRAPPED = ("metrics_request_total", "metrics_request_duration", "metrics_request_in_progress",
            "metrics_websocket_connections", "metrics_websocket_data_received", "metrics_websocket_data_sent")


def endpoint_label(path: Any) -> str:
    """The bounded label of a request path: a known route or template, else :data:`OTHER`."""
    if not isinstance(path, str):
        return OTHER
    if path in _STATIC:
        return path
    for pattern, template in _TEMPLATES:
        if pattern.fullmatch(path):
            return template
    return OTHER


class _FoldedMetric:
    """A metric whose ``labels(endpoint=...)`` gets the bounded label; all else passes through."""

    def __init__(self, metric: Any) -> None:
        self._metric = metric

    def labels(self, *args: Any, **kwargs: Any) -> Any:
        if "endpoint" in kwargs:
            kwargs["endpoint"] = endpoint_label(kwargs["endpoint"])
        return self._metric.labels(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._metric, name)


def install() -> bool:
    """Fold the ``endpoint`` label of BentoML's HTTP metrics in this process (idempotent). False
    (and a warning) when the BentoML internals are not the ones this was written against."""
    try:
        from bentoml._internal.server.http import instruments
    except ImportError:  # pragma: no cover - a BentoML without these internals
        logger.warning("bounded endpoint labels not installed: bentoml's metrics middleware not found")
        return False
    installed = False
    for name in ("RunnerTrafficMetricsMiddleware", "HTTPTrafficMetricsMiddleware"):
        cls = getattr(instruments, name, None)
        setup = getattr(cls, "_setup", None)
        if setup is None or getattr(setup, "_bounded_labels", False):
            installed = installed or setup is not None
            continue

        def _setup(self: Any, *args: Any, __orig: Any = setup, **kwargs: Any) -> None:
            __orig(self, *args, **kwargs)
            for attr in _WRAPPED:
                metric = getattr(self, attr, None)
                if metric is not None and not isinstance(metric, _FoldedMetric):
                    setattr(self, attr, _FoldedMetric(metric))

        _setup._bounded_labels = True  # type: ignore[attr-defined]
        cls._setup = _setup  # type: ignore[union-attr]
        installed = True
    return installed
