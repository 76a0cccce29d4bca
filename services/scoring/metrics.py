"""Scoring's Prometheus metrics, per model, version and route, on the app's own registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily

from services.runtime.labels import Children

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ScoringMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("modelgov_scoring_decisions_total", "Decisions returned",
                                ["model", "version", "route", "decision"], registry=registry)
        self.latency = Histogram("modelgov_scoring_decision_seconds",
                                 "From request to durable decision, per row",
                                 ["model", "version", "route"], buckets=LATENCY_BUCKETS,
                                 registry=registry)
        self.errors = Counter("modelgov_scoring_errors_total", "Score requests refused or failed",
                              ["model", "reason"], registry=registry)
        self.loads = Counter("modelgov_scoring_model_loads_total", "Version loads into the cache",
                             ["model", "version", "outcome"], registry=registry)
        self.spooled = Counter("modelgov_scoring_events_spooled_total",
                               "Events written to the outbox because JetStream did not ack in time",
                               ["model"], registry=registry)
        self._refused: dict[tuple[str, str], int] = {}
        self._coalescing = _Coalescing()
        registry.register(self._coalescing)
        self.shadows = Counter("modelgov_scoring_shadow_predictions_total", "Shadow predictions",
                               ["model", "version", "outcome"], registry=registry)
        self._decisions, self._latencies = Children(self.requests), Children(self.latency)

    def decided(self, model: str, version: str, route: str, decision: str, seconds: float) -> None:
        """One decision returned, `seconds` after its request came in."""
        self._decisions(model, version, route, decision).inc()
        self._latencies(model, version, route).observe(seconds)

    def watch_coalescing(self, loaded: Callable[[], Iterable[Any]]) -> None:
        """`loaded()`: the versions in the cache; their coalescers' counts are read at scrape."""
        self._coalescing.loaded = loaded

    def refused(self, model: str, reason: str) -> None:
        """A score request refused or failed: counted for Prometheus, and tallied for the next
        requests.refused event unless the model is not one scoring serves."""
        self.errors.labels(model, reason).inc()
        if reason != "not_deployed":
            self._refused[(model, reason)] = self._refused.get((model, reason), 0) + 1

    def take_refused(self) -> dict[str, dict[str, int]]:
        """The tally since the last call, per model and reason; starts a new one."""
        tally, self._refused = self._refused, {}
        out: dict[str, dict[str, int]] = {}
        for (model, reason), n in tally.items():
            out.setdefault(model, {})[reason] = n
        return out

    def give_back(self, tally: dict[str, dict[str, int]]) -> None:
        """A tally that could not be recorded counts toward the next period."""
        for model, counts in tally.items():
            for reason, n in counts.items():
                self._refused[(model, reason)] = self._refused.get((model, reason), 0) + n


class _Coalescing:
    """Model calls shared by concurrent requests (coalesce.py), per loaded version: rows per call
    = rows / calls. Read at scrape time; a version's counts start again when it is reloaded."""

    loaded: Callable[[], Iterable[Any]] = tuple  # until the app's loader exists

    def collect(self):
        calls = CounterMetricFamily("modelgov_scoring_coalesced_calls", "Model calls shared by "
                                    "concurrent requests", labels=["model", "version"])
        rows = CounterMetricFamily("modelgov_scoring_coalesced_rows", "Rows decided by those calls",
                                   labels=["model", "version"])
        for loaded in self.loaded():
            if loaded.coalescer is not None:
                labels = [loaded.model, str(loaded.version)]
                calls.add_metric(labels, loaded.coalescer.calls)
                rows.add_metric(labels, loaded.coalescer.rows)
        yield calls
        yield rows
