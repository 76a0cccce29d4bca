"""Scoring rules: sticky routing, feature checks, decisions and principal reasons. No I/O."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.canonical import MAX_EXACT_INT  # the decision event records the inputs so
from contracts.registry.api import DecisionPolicy, FeatureSpec, VersionPublic, VersionStatus
from contracts.scoring.api import DeploymentSpec, ReasonCode, Route

# A request may name any version to decide but these: model risk refused it, or it left service.
UNPINNABLE = frozenset({VersionStatus.rejected, VersionStatus.retired})
BUCKETS = 10_000  # routing resolution: 0.01 % of traffic
MAX_REASONS = 4  # ECOA / Reg B: up to four principal reasons on an adverse-action notice
MAX_CATEGORIES_SHOWN = 10

# (favourable, review, adverse) by the model's use case; the score is P(adverse outcome).
OUTCOMES: dict[str, tuple[str, str, str]] = {
    "credit": ("approve", "review", "decline"),
    "fraud": ("allow", "review", "block"),
    "other": ("accept", "review", "reject"),
}


# -- routing ----------------------------------------------------------------------------------


def bucket(model: str, entity_id: str) -> int:
    """A stable bucket 0..9999 for the entity: the same id always lands in the same bucket."""
    digest = hashlib.sha256(f"{model}\x00{entity_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def route(model: str, entity_id: str, deployment: DeploymentSpec) -> tuple[int, Route]:
    """The version that decides for this entity: the canary for its share of buckets, else the champion."""
    canary = deployment.canary
    if canary is not None and bucket(model, entity_id) < canary.percent * (BUCKETS // 100):
        return canary.version, "canary"
    return deployment.champion, "champion"


def why_not_pinned(info: VersionPublic) -> str | None:
    """Why a version a request names (route "direct") may not decide; None when it may."""
    if info.status in UNPINNABLE:
        return f"is {info.status}: it decides nothing"
    if info.metadata.decision_policy is None:
        return "has no decision_policy, so it cannot decide; register a version with one"
    return None


# -- features ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureProblem:
    feature: str  # the feature's name, or the attribute's when kind is "attribute"
    problem: str
    row: int | None = None  # the batch row, when there is one
    kind: str = "feature"

    def __str__(self) -> str:
        where = f"items[{self.row}]: " if self.row is not None else ""
        return f"{where}{self.kind} '{self.feature}' {self.problem}"


def check_features(schema: Sequence[FeatureSpec], features: Mapping[str, Any]) -> list[FeatureProblem]:
    """Every way the request differs from the version's feature schema, one problem per feature."""
    if len(features) == len(schema) and all(_plainly_valid(s, features.get(s.name, _ABSENT)) for s in schema):
        return []  # every request a client gets right: checked at a third of the cost of _problems
    return _problems(schema, features)


def _problems(schema: Sequence[FeatureSpec], features: Mapping[str, Any]) -> list[FeatureProblem]:
    problems = [FeatureProblem(spec.name, "is missing") for spec in schema if spec.name not in features]
    known = {spec.name for spec in schema}
    problems += [FeatureProblem(name, "is not in the version's feature schema")
                 for name in sorted(set(features) - known)]
    for spec in schema:
        if spec.name in features:
            issue = _value_problem(spec, features[spec.name])
            if issue:
                problems.append(FeatureProblem(spec.name, issue))
    return problems


_ABSENT = object()


def _plainly_valid(spec: FeatureSpec, value: Any) -> bool:
    """True only where _value_problem finds nothing, for the usual values (a float or an int for
    a number, a listed string, a bool); False sends the request through every check."""
    kind = type(value)
    if kind is float:
        if spec.dtype != "float" or not math.isfinite(value):
            return False
    elif kind is int:  # bool is not: type(True) is bool
        if spec.dtype not in ("float", "int") or not -MAX_EXACT_INT <= value <= MAX_EXACT_INT:
            return False
    elif kind is str:
        return spec.dtype == "string" and (spec.categories is None or value in spec.categories)
    else:
        return kind is bool and spec.dtype == "bool"
    return (spec.min is None or value >= spec.min) and (spec.max is None or value <= spec.max)


def check_attributes(protected: Collection[str], attributes: Mapping[str, str]) -> list[FeatureProblem]:
    """Each attribute the model does not declare as protected: only those may ride on a decision."""
    declared = ", ".join(sorted(protected)) or "none"
    return [FeatureProblem(name, f"is not a protected attribute of the model (it declares: {declared})",
                           kind="attribute")
            for name in sorted(set(attributes) - set(protected))]


def _value_problem(spec: FeatureSpec, value: Any) -> str | None:
    if value is None:
        return f"is null; send a {spec.dtype}"
    if spec.dtype == "bool":
        return None if isinstance(value, bool) else f"must be a bool, got {_kind(value)}"
    if spec.dtype == "string":
        if not isinstance(value, str):
            return f"must be a string, got {_kind(value)}"
        if spec.categories is not None and value not in spec.categories:
            shown = ", ".join(spec.categories[:MAX_CATEGORIES_SHOWN])
            more = "" if len(spec.categories) <= MAX_CATEGORIES_SHOWN else f", ... ({len(spec.categories)})"
            return f"= {value!r} is not a known category ({shown}{more})"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be {'an int' if spec.dtype == 'int' else 'a float'}, got {_kind(value)}"
    if isinstance(value, int) and not -MAX_EXACT_INT <= value <= MAX_EXACT_INT:
        return "is an integer beyond ±(2**53 - 1), more than the decision's record holds exactly"
    if math.isnan(value):
        return "is NaN; send a finite number"
    if math.isinf(value):
        return "is infinite; send a finite number"
    if spec.dtype == "int" and not float(value).is_integer():
        return f"must be an int, got {value}"
    if spec.min is not None and value < spec.min:
        return f"= {value} is below the schema minimum {spec.min}"
    if spec.max is not None and value > spec.max:
        return f"= {value} is above the schema maximum {spec.max}"
    return None


def _kind(value: Any) -> str:
    return {bool: "a bool", str: "a string", int: "an int", float: "a float", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def model_row(schema: Sequence[FeatureSpec], features: Mapping[str, Any]) -> list[Any]:
    """Checked features as the model's input row: schema order, numbers as float, strings as is."""
    return [features[s.name] if s.dtype == "string" else float(features[s.name]) for s in schema]


# -- decisions --------------------------------------------------------------------------------


def decide(policy: DecisionPolicy, use_case: str, score: float) -> str:
    favourable, review, adverse = OUTCOMES.get(use_case, OUTCOMES["other"])
    if score >= policy.decline_at:
        return adverse
    return review if score >= policy.review_at else favourable


def is_adverse(use_case: str, decision: str) -> bool:
    return decision == OUTCOMES.get(use_case, OUTCOMES["other"])[2]


# -- reasons ----------------------------------------------------------------------------------


def linear_impacts(coef: Sequence[float], z: Sequence[float], z_ref: Sequence[float],
                   owners: Sequence[str | None]) -> dict[str, float]:
    """coef·(z − z̄) per model-input column, summed back to the feature each column came from.

    For a logistic regression the sum over features is exactly logit(x) − logit(reference).
    """
    out: dict[str, float] = {}
    for c, value, ref, owner in zip(coef, z, z_ref, owners, strict=True):
        if owner is not None:
            out[owner] = out.get(owner, 0.0) + float(c) * (float(value) - float(ref))
    return out


def principal_reasons(impacts: Mapping[str, float], features: Mapping[str, Any],
                      limit: int = MAX_REASONS) -> list[ReasonCode]:
    """The features that pushed hardest toward the adverse outcome, strongest first."""
    adverse = sorted(((f, v) for f, v in impacts.items() if v > 0), key=lambda fv: (-fv[1], fv[0]))
    return [ReasonCode(feature=f, value=features[f], impact=round(v, 6)) for f, v in adverse[:limit]]


# -- the reference a decision is explained against ----------------------------------------------


def numeric_reference(spec: FeatureSpec, profile: Mapping[str, Any], stat: str) -> float:
    """`stat` ("mean" or "median") from the training profile; else the schema's midpoint, else 0."""
    stats = profile.get(spec.name, {}) if isinstance(profile.get(spec.name), Mapping) else {}
    quantiles = stats.get("quantiles") or {}
    for value in ((stats.get("mean"), quantiles.get("0.5")) if stat == "mean"
                  else (quantiles.get("0.5"), stats.get("median"), stats.get("mean"))):
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
    if spec.min is not None and spec.max is not None:
        return (spec.min + spec.max) / 2
    return float(spec.min if spec.min is not None else spec.max if spec.max is not None else 0.0)


def category_weights(spec: FeatureSpec, profile: Mapping[str, Any]) -> dict[str, float]:
    """Training frequencies of the feature's categories; uniform over the schema's when unknown."""
    stats = profile.get(spec.name) if isinstance(profile.get(spec.name), Mapping) else {}
    freq = {str(k): float(v) for k, v in (stats.get("frequencies") or {}).items()
            if isinstance(v, int | float) and v > 0}
    if spec.categories is not None:
        freq = {k: v for k, v in freq.items() if k in spec.categories}
    if not freq:
        freq = {c: 1.0 for c in spec.categories or []}
    total = sum(freq.values())
    return {k: v / total for k, v in freq.items()} if total else {}


def most_frequent(weights: Mapping[str, float]) -> str | None:
    return max(sorted(weights), key=lambda k: weights[k]) if weights else None


def feature_profile(training_profile: Mapping[str, Any]) -> Mapping[str, Any]:
    """The per-feature part of a training profile (`{"features": {...}}`, as deploy/demo.py writes)."""
    features = training_profile.get("features")
    return features if isinstance(features, Mapping) else {}
