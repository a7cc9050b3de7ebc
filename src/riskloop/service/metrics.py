"""Prometheus metrics of the gateway, in a registry owned by each app (names ``riskloop_*``).

Counters and histograms are updated by the request handlers; the live gauges (mode per
deployment, drift per feature, calibrated watchdog false-positive rates, the log queue) are
read from the running deployments when Prometheus scrapes ``GET /metrics``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..monitor.deployments import MODES

if TYPE_CHECKING:
    from .runtime import Runtime

UNKNOWN = "(unknown)"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class GatewayMetrics:
    """The app's metrics; :meth:`registry` is what ``/metrics`` exposes."""

    def __init__(self, runtime: Runtime) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "riskloop_requests", "Gateway requests by deployment, endpoint and HTTP status code.",
            ["deployment", "endpoint", "code"], registry=r)
        self.latency = Histogram(
            "riskloop_request_latency_seconds",
            "Time from receiving a request to answering it (validation, model, watchdogs, logging).",
            ["deployment", "endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage = Histogram(
            "riskloop_stage_latency_seconds",
            "Time per pipeline stage and micro-batch: predict, sanitize, watch, batch (the whole "
            "guard); log (events: until committed).",
            ["deployment", "stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram(
            "riskloop_batch_requests", "Requests the guard ran together in one micro-batch.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.predictions = Counter(
            "riskloop_predictions", "Predictions served (or events ingested) and logged.",
            ["deployment", "mode", "served_by"], registry=r)
        self.reviews = Counter(
            "riskloop_review_routed", "Predictions routed to the human review queue.",
            ["deployment"], registry=r)
        self.alerts = Counter(
            "riskloop_alerts", "Alerts raised by watchdogs and drift windows.",
            ["deployment", "kind", "severity"], registry=r)
        r.register(_LiveCollector(runtime))
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once per label set."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def stage_child(self, deployment: str, stage: str) -> Any:
        return self.child(self.stage, deployment, stage)


class _LiveCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        mode = GaugeMetricFamily("riskloop_deployment_mode",
                                 "1 for the mode each deployment is in, 0 for the others.",
                                 labels=["deployment", "mode"])
        drift = GaugeMetricFamily("riskloop_feature_drift_psi",
                                  "PSI of each input feature in the last complete drift window.",
                                  labels=["deployment", "feature"])
        mean = GaugeMetricFamily("riskloop_drift_mean_psi",
                                 "Mean PSI over input features in the last drift window.",
                                 labels=["deployment"])
        pred = GaugeMetricFamily("riskloop_prediction_drift_psi",
                                 "PSI of the predicted-class distribution in the last window.",
                                 labels=["deployment"])
        fpr = GaugeMetricFamily("riskloop_watchdog_calibrated_fpr",
                                "False-positive rate each watchdog measured on clean held-out traffic.",
                                labels=["deployment", "watchdog"])
        for live in self.runtime.live_deployments():
            g = live.guard
            for m in MODES:
                mode.add_metric([live.name, m], 1.0 if g.mode == m else 0.0)
            for w in g.watchers:
                if w.name == "input-drift":
                    psi = dict(getattr(w, "last_psi_", {}))
                    for feat, value in psi.items():
                        drift.add_metric([live.name, feat], value)
                    if psi:
                        mean.add_metric([live.name], sum(psi.values()) / len(psi))
                elif w.name == "prediction-drift" and getattr(w, "last_psi_", None) is not None:
                    pred.add_metric([live.name], float(w.last_psi_))  # type: ignore[attr-defined]
            for name, cal in live.calibration.items():
                if cal.get("fpr") is not None:
                    fpr.add_metric([live.name, name], float(cal["fpr"]))
        yield from (mode, drift, mean, pred, fpr)
        writer = self.runtime.writer
        queue = GaugeMetricFamily("riskloop_log_queue_depth",
                                  "Log jobs waiting for the store writer.")
        queue.add_metric([], float(writer.queued))
        yield queue
        written = CounterMetricFamily("riskloop_logged_rows", "Prediction rows committed to the store.")
        written.add_metric([], float(writer.rows_written))
        yield written
        failed = CounterMetricFamily("riskloop_log_failures", "Log jobs the store refused (their requests got 503).")
        failed.add_metric([], float(writer.failures))
        yield failed
