"""Monitoring rules, pure: windows, what a window's figures are, which alerts they raise, and
the workflow ids retrain triggers use. No I/O, no clock: callers pass `now`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np

from contracts.envelope import EventData
from contracts.monitoring.api import (
    Histogram,
    Latency,
    MonitoringPolicy,
    VersionFigures,
    WindowReport,
)
from contracts.monitoring.events import (
    DataQualityDegraded,
    DriftDetected,
    FairnessViolated,
    PerformanceDegraded,
    Window,
)
from contracts.monitoring.figures import AttributeFairness, DriftFigures, PerformanceFigures
from contracts.monitoring.profile import CategoricalProfile, NumericProfile, ReferenceProfile
from contracts.registry.api import FeatureSpec
from services.monitoring.drift import feature_drift
from services.monitoring.fairness import fairness
from services.monitoring.performance import performance
from services.monitoring.quality import data_quality

# Decisions that go against the applicant or payer: credit declines, blocked payments.
ADVERSE_DECISIONS = frozenset({"decline", "block"})


class Row(Protocol):
    """One decision as the store returns it, with its outcome label when known."""

    score: float
    decision: str
    latency_ms: float
    inputs: Mapping[str, Any]
    attributes: Mapping[str, str]
    label: int | None


@dataclass(frozen=True)
class Reference:
    """What a version is judged against: its registry metadata, read once."""

    feature_schema: list[FeatureSpec]
    profile: ReferenceProfile | None
    decision_threshold: float | None  # the score from which the decision is adverse
    protected_attributes: list[str]
    reference_auc: float | None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], protected: Sequence[str]) -> Reference:
        profile = (metadata.get("training_data") or {}).get("profile")
        policy = metadata.get("decision_policy") or {}
        return cls(
            feature_schema=[FeatureSpec.model_validate(f) for f in metadata["feature_schema"]],
            profile=ReferenceProfile.model_validate(profile) if profile else None,
            decision_threshold=policy.get("decline_at"),
            protected_attributes=list(protected),
            reference_auc=(metadata.get("metrics") or {}).get("auc"),
        )


@dataclass
class Figures:
    """A window's (or a period's) figures, before they become a report or alerts."""

    decisions: int
    labelled: int
    drift: DriftFigures | None
    quality: list
    performance: PerformanceFigures | None
    fairness: list[AttributeFairness]
    latency: Latency
    decision_rates: dict[str, float]
    score_mean: float | None = None
    histograms: dict[str, Histogram] = field(default_factory=dict)
    refused: int = 0
    error_rate: float | None = None


def time_is_up(start: datetime, now: datetime, policy: MonitoringPolicy) -> bool:
    return now - start >= timedelta(seconds=policy.window_seconds)


def drift_workflow_id(model: str, version: int, window: int) -> str:
    return f"retrain-{model}-drift-v{version}-w{window}"


def labels_workflow_id(model: str, positives: int) -> str:
    """The k-th batch of N positive labels is one trigger, whoever counts it and however often."""
    return f"retrain-{model}-labels-{positives}"


def positive_label_milestones(before: int, after: int, every: int) -> list[int]:
    """The multiples of `every` passed when the positive-label count went from before to after."""
    return list(range((before // every + 1) * every, after + 1, every))


def figures(ref: Reference, rows: Sequence[Row], policy: MonitoringPolicy, refused: int = 0) -> Figures:
    """Drift, quality, performance, fairness and operations figures over some decisions;
    `refused`: the model's score requests refused over the same period (for the error rate)."""
    n = len(rows)
    scores = np.fromiter((r.score for r in rows), float, n)
    labelled = [r for r in rows if r.label is not None]
    columns = {f.name: [r.inputs.get(f.name) for r in rows] for f in ref.feature_schema}
    drift = None
    if ref.profile is not None and n >= policy.drift.min_samples:
        drift = feature_drift(ref.profile, columns, policy.drift, scores=scores)
    perf = None
    if ref.decision_threshold is not None and labelled:
        perf = performance(np.fromiter((r.label for r in labelled), int, len(labelled)),
                           np.fromiter((r.score for r in labelled), float, len(labelled)),
                           ref.decision_threshold)
    adverse = [r.decision in ADVERSE_DECISIONS for r in rows]
    labels = [r.label for r in rows]
    groups = {a: [_group(r, a) for r in rows] for a in ref.protected_attributes}
    groups = {a: g for a, g in groups.items() if any(v is not None for v in g)}
    fair = fairness(groups, adverse, labels, policy.fairness) if groups and n else []
    hist = {}
    if drift is not None:
        shown = set(drift.drifted_features)
        hist = {name: histogram(ref.profile.features[name], columns[name])
                for name in columns if name in shown and name in ref.profile.features}
        if drift.score is not None and drift.score.drifted:
            hist["score"] = histogram(ref.profile.score, list(scores))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.decision] = counts.get(r.decision, 0) + 1
    return Figures(
        decisions=n, labelled=len(labelled), drift=drift,
        quality=data_quality(ref.feature_schema, columns, policy.quality) if n else [],
        performance=perf, fairness=fair,
        latency=latency([r.latency_ms for r in rows]),
        decision_rates={k: round(v / n, 6) for k, v in sorted(counts.items())},
        score_mean=float(scores.mean()) if n else None, histograms=hist,
        refused=refused, error_rate=round(refused / (n + refused), 6) if n + refused else None,
    )


def histogram(profile: NumericProfile | CategoricalProfile, values: Sequence) -> Histogram:
    """Current shares on the reference's own bins, for the report's charts."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    total = max(len(present), 1)
    if isinstance(profile, CategoricalProfile):
        cats = list(profile.frequencies)
        seen: dict[str, int] = {}
        for v in present:
            seen[str(v)] = seen.get(str(v), 0) + 1
        other = sum(n for c, n in seen.items() if c not in profile.frequencies)
        return Histogram(bins=[*cats, "(unseen)"],
                         reference=[round(profile.frequencies[c], 6) for c in cats] + [0.0],
                         current=[round(seen.get(c, 0) / total, 6) for c in cats] + [round(other / total, 6)])
    edges = list(profile.edges)
    counts = np.bincount(np.searchsorted(np.asarray(edges, float), np.asarray(present, float), side="left"),
                         minlength=len(edges) + 1)
    labels = [f"≤ {edges[0]:.4g}"] + [f"{a:.4g} – {b:.4g}" for a, b in zip(edges, edges[1:], strict=False)] \
        + [f"> {edges[-1]:.4g}"] if edges else ["all"]
    return Histogram(bins=labels, reference=[round(p, 6) for p in profile.proportions],
                     current=[round(c / total, 6) for c in counts.tolist()])


def _group(row: Row, attribute: str) -> str | None:
    """A protected attribute travels in the request's `attributes`, or is itself a feature."""
    value = row.attributes.get(attribute, row.inputs.get(attribute))
    return None if value is None else str(value)


def latency(values: Sequence[float]) -> Latency:
    if not values:
        return Latency(p50_ms=None, p95_ms=None, p99_ms=None, max_ms=None)
    p50, p95, p99 = np.percentile(np.asarray(values, float), [50, 95, 99])
    return Latency(p50_ms=round(float(p50), 3), p95_ms=round(float(p95), 3),
                   p99_ms=round(float(p99), 3), max_ms=round(float(max(values)), 3))


def alerts(model: str, version: int, window: Window, fig: Figures, ref: Reference,
           policy: MonitoringPolicy, raised: set[str]) -> list[EventData]:
    """The alert events a window's figures call for, except those already `raised` for it."""
    out: list[EventData] = []
    if fig.drift is not None and (fig.drift.drifted_features or _score_drifted(fig.drift)):
        out.append(DriftDetected(model=model, version=version, window=window,
                                 drifted_features=list(fig.drift.drifted_features),
                                 score_drifted=_score_drifted(fig.drift), figures=fig.drift))
    degraded = [q for q in fig.quality if q.degraded]
    if degraded:
        out.append(DataQualityDegraded(model=model, version=version, window=window,
                                       features=[q.feature for q in degraded], figures=degraded))
    reasons = performance_reasons(fig.performance, ref.reference_auc, policy)
    if reasons:
        out.append(PerformanceDegraded(model=model, version=version, window=window, reasons=reasons,
                                       reference_auc=ref.reference_auc, figures=fig.performance))
    violated = [f for f in fig.fairness if f.violated]
    if violated:
        out.append(FairnessViolated(model=model, version=version, window=window,
                                    attributes=[f.attribute for f in violated], figures=violated))
    return [a for a in out if a.event_type not in raised]


def _score_drifted(drift: DriftFigures) -> bool:
    return drift.score is not None and drift.score.drifted


def performance_reasons(perf: PerformanceFigures | None, reference_auc: float | None,
                        policy: MonitoringPolicy) -> list[str]:
    p = policy.performance
    if perf is None or perf.count < p.min_labelled or perf.auc is None:
        return []
    reasons = []
    if perf.auc < p.min_auc:
        reasons.append(f"AUC {perf.auc:.4f} is below the policy's minimum {p.min_auc}")
    if reference_auc is not None and reference_auc - perf.auc > p.max_auc_drop:
        reasons.append(f"AUC {perf.auc:.4f} is {reference_auc - perf.auc:.4f} below the "
                       f"reference {reference_auc:.4f} (allowed drop {p.max_auc_drop})")
    if perf.ece is not None and perf.ece > p.max_ece:
        reasons.append(f"expected calibration error {perf.ece:.4f} exceeds {p.max_ece}")
    return reasons


def window_report(version: int, window: Window, fig: Figures, alert_types: list[str]) -> WindowReport:
    return WindowReport(version=version, index=window.index, closed_by=window.closed_by,
                        start=window.start, end=window.end, decisions=fig.decisions,
                        labelled=fig.labelled, drift=fig.drift, quality=fig.quality,
                        performance=fig.performance, fairness=fig.fairness, latency=fig.latency,
                        decision_rates=fig.decision_rates, score_mean=fig.score_mean,
                        histograms=fig.histograms, refused=fig.refused, error_rate=fig.error_rate,
                        alerts=alert_types)


def version_figures(version: int, fig: Figures) -> VersionFigures:
    return VersionFigures(version=version, decisions=fig.decisions, labelled=fig.labelled,
                          score_mean=fig.score_mean, decision_rates=fig.decision_rates,
                          drift=fig.drift, performance=fig.performance, fairness=fig.fairness,
                          latency=fig.latency, refused=fig.refused, error_rate=fig.error_rate)


def gate(baseline: Figures, candidate: Figures, policy: MonitoringPolicy) -> tuple[list[str], float | None,
                                                                                    float | None]:
    """Why a canary should not advance (empty: it may), the AUC difference and p99 ratio."""
    reasons = []
    if candidate.decisions < policy.drift.min_samples:
        reasons.append(f"the candidate made {candidate.decisions} decisions in the period; "
                       f"the gate needs at least {policy.drift.min_samples}")
    auc_diff = None
    bp, cp = baseline.performance, candidate.performance
    if bp and cp and bp.auc is not None and cp.auc is not None:
        auc_diff = round(cp.auc - bp.auc, 6)
        if min(bp.count, cp.count) >= policy.performance.min_labelled and \
                -auc_diff > policy.performance.max_auc_drop:
            reasons.append(f"candidate AUC {cp.auc:.4f} is {-auc_diff:.4f} below the baseline's")
    ratio = None
    if baseline.latency.p99_ms and candidate.latency.p99_ms is not None:
        ratio = round(candidate.latency.p99_ms / baseline.latency.p99_ms, 4)
    reasons += [f"fairness: {f.reason}" for f in candidate.fairness if f.violated]
    if candidate.drift is not None and candidate.drift.drifted_features:
        reasons.append("candidate inputs drifted from its reference: "
                       + ", ".join(candidate.drift.drifted_features))
    return reasons, auc_diff, ratio if ratio is None or math.isfinite(ratio) else None
