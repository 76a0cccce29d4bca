"""Model versions from the registry: fetched, checked, safely loaded, explained, cached.

A version's artifact is fetched over HTTP and its sha256 compared with the registry's record
before a single byte is parsed; then it is judged again by the shared allow-list and loaded with
only allow-listed types (skops) or a restricted unpickler (pickle). Loaded versions live in an LRU
cache; a request keeps the object it resolved, so eviction or a swap never fails it.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import pickle
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import httpx
import numpy as np

from contracts.registry.api import DecisionPolicy, FeatureSpec, VersionPublic
from contracts.scoring.api import ReasonCode
from contracts.scoring.events import ArtifactRejected
from services.runtime.allowlist import is_trusted
from services.runtime.heap import settle_heap
from services.runtime.registry_client import registry_http
from services.runtime.settings import Settings
from services.scoring import domain
from services.scoring.coalesce import Coalescer, row_wise
from services.scoring.exact import FastScorer, fast_scorer
from services.scoring.metrics import ScoringMetrics

log = logging.getLogger(__name__)

REJECTION_RETRY_SECONDS = 30.0  # a refused artifact is not re-fetched (nor re-reported) sooner
MAX_RECORDS = 1000  # registry records of versions kept for version-pinned requests


# -- what goes wrong ------------------------------------------------------------------------------


class LoadError(Exception):
    """A version cannot serve; `detail` tells the caller what and why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class RegistryUnavailable(LoadError):
    pass


class VersionMissing(LoadError):
    pass


class ArtifactMismatch(LoadError):
    pass


class UnsafeArtifact(LoadError):
    pass


# -- a loaded version -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Decided:
    score: float
    decision: str
    reasons: list[ReasonCode]


@dataclass(frozen=True)
class Estimator:
    """The loaded artifact and how to read its adverse-class probability."""

    schema: list[FeatureSpec]
    estimator: Any
    adverse_index: int
    fast: FastScorer | None = None  # the same scores without sklearn's per-call cost

    def scores(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        x = to_matrix(self.schema, rows)
        if self.fast is not None:
            return self.fast.scores(x)
        return self.estimator.predict_proba(x)[:, self.adverse_index]


@dataclass(frozen=True)
class LoadedModel:
    model: str
    version: int
    use_case: str
    policy: DecisionPolicy
    parts: Estimator
    explainer: Explainer
    sha256: str
    # The model's protected_attributes in the registry (fixed when the model is created): the
    # only names a request's `attributes` may carry.
    protected_attributes: frozenset[str] = frozenset()
    # Set when a row's score does not depend on the rest of the batch (coalesce.row_wise, or the
    # LR fast path): concurrent requests' rows are then decided in one call.
    coalescer: Coalescer | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.parts.fast is not None or row_wise(self.parts.estimator):
            # frozen: the dataclass idiom for a derived field
            object.__setattr__(self, "coalescer", Coalescer(self.decide_many))

    @property
    def schema(self) -> list[FeatureSpec]:
        return self.parts.schema

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        """The features in schema order: the columns of an OIP [N, F] tensor."""
        return tuple(s.name for s in self.schema)

    def decide_many(self, items: Sequence[Mapping[str, Any]]) -> list[Decided]:
        """Score checked feature dicts in one call; adverse decisions carry their principal reasons."""
        rows = [domain.model_row(self.schema, f) for f in items]
        out = []
        for features, row, score in zip(items, rows, self.parts.scores(rows), strict=True):
            score = float(score)
            decision = domain.decide(self.policy, self.use_case, score)
            reasons = []
            if domain.is_adverse(self.use_case, decision):
                reasons = domain.principal_reasons(self.explainer.impacts(row, score), features)
            out.append(Decided(score, decision, reasons))
        return out


def to_matrix(schema: Sequence[FeatureSpec], rows: Sequence[Sequence[Any]]) -> np.ndarray:
    """The artifact's input: one column per feature in schema order; object dtype with strings."""
    if any(s.dtype == "string" for s in schema):
        out = np.empty((len(rows), len(schema)), dtype=object)
        for i, row in enumerate(rows):
            out[i] = row
        return out
    return np.asarray(rows, dtype=float).reshape(len(rows), len(schema))


def adverse_index(estimator: Any) -> int:
    """The predict_proba column of the adverse class: label 1 (or True), else the last class."""
    classes = list(getattr(estimator, "classes_", [0, 1]))
    for label in (1, True, "1", "bad"):
        if label in classes:
            return classes.index(label)
    return len(classes) - 1


# -- explanations ---------------------------------------------------------------------------------


class Explainer(ABC):
    @abstractmethod
    def impacts(self, row: list[Any], score: float) -> dict[str, float]:
        """Per original feature: how far it pushes this row's score toward the adverse outcome."""


class SubstitutionExplainer(Explainer):
    """Any model: replace one feature at a time by its reference value (median / most frequent
    category) and measure how far the model's own score falls."""

    def __init__(self, model: Estimator, reference: list[Any]) -> None:
        self.parts, self.reference = model, reference

    def impacts(self, row: list[Any], score: float) -> dict[str, float]:
        variants = []
        for j in range(len(row)):
            variant = list(row)
            variant[j] = self.reference[j]
            variants.append(variant)
        substituted = self.parts.scores(variants)
        return {s.name: score - float(v) for s, v in zip(self.parts.schema, substituted, strict=True)}


class LinearExplainer(Explainer):
    """A logistic regression at the end of a pipeline: coef·(z − z̄) in the model's input space,
    summed back to the source feature of each column (one-hot columns to their categorical)."""

    def __init__(self, transform: Callable[[np.ndarray], np.ndarray], coef: np.ndarray,
                 z_ref: np.ndarray, owners: list[str | None], schema: list[FeatureSpec]) -> None:
        self.transform, self.coef, self.z_ref, self.owners = transform, coef, z_ref, owners
        self.schema = schema

    def impacts(self, row: list[Any], score: float) -> dict[str, float]:
        z = self.transform(to_matrix(self.schema, [row]))[0]
        return domain.linear_impacts(self.coef, z, self.z_ref, self.owners)


def build_explainer(parts: Estimator, training_profile: Mapping[str, Any]) -> Explainer:
    """Linear attribution for a (pipeline ending in a) LogisticRegression whose input columns each
    come from one feature; substitution for everything else."""
    profile = domain.feature_profile(training_profile)
    schema = parts.schema
    weights = {s.name: domain.category_weights(s, profile) for s in schema if s.dtype == "string"}
    median_row = [domain.most_frequent(weights[s.name]) if s.dtype == "string"
                  else domain.numeric_reference(s, profile, "median") for s in schema]
    fallback = SubstitutionExplainer(parts, median_row)
    linear = _linear_parts(parts.estimator)
    if linear is None or any(v is None for v in median_row):
        return fallback
    transform, lr = linear
    try:
        owners, z_ref = _columns_and_reference(transform, schema, median_row, weights, profile)
    except NotSeparable as exc:
        log.info("version explained by substitution: %s", exc)
        return fallback
    coef = np.asarray(lr.coef_[0], dtype=float)
    if parts.adverse_index == 0:  # coef_ points toward classes_[1]
        coef = -coef
    return LinearExplainer(transform, coef, z_ref, owners, schema)


class NotSeparable(ValueError):
    pass


def _linear_parts(estimator: Any) -> tuple[Callable[[np.ndarray], np.ndarray], Any] | None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    if not isinstance(final, LogisticRegression) or final.coef_.shape[0] != 1:
        return None
    pre = estimator[:-1] if isinstance(estimator, Pipeline) and len(estimator.steps) > 1 else None

    def transform(x: np.ndarray) -> np.ndarray:
        z = pre.transform(x) if pre is not None else x
        z = z.toarray() if hasattr(z, "toarray") else z
        return np.asarray(z, dtype=float)

    return transform, final


def _columns_and_reference(transform, schema, base_row, weights, profile):
    """Which feature each model-input column comes from (found by varying one feature at a time),
    and the columns' training mean z̄: exact per category frequency, T(mean) for numbers."""
    variants, spans = [], []
    for j, spec in enumerate(schema):
        if spec.dtype == "string":
            values = list(weights[spec.name])
        else:
            mean = domain.numeric_reference(spec, profile, "mean")
            values = [mean, base_row[j] + 1.0, base_row[j] - 1.0]
            values += [v for v in (spec.min, spec.max) if v is not None]
        start = len(variants)
        for value in values:
            row = list(base_row)
            row[j] = value
            variants.append(row)
        spans.append((start, len(variants), values))
    z = transform(to_matrix(schema, [base_row, *variants]))
    base, z = z[0], z[1:]
    owners: list[str | None] = [None] * z.shape[1]
    z_ref = base.copy()
    for spec, (start, stop, values) in zip(schema, spans, strict=True):
        block = z[start:stop]
        moved = np.flatnonzero(np.any(np.abs(block - base) > 1e-12, axis=0))
        for col in moved:
            if owners[col] is not None:
                raise NotSeparable(f"column {col} depends on '{owners[col]}' and '{spec.name}'")
            owners[col] = spec.name
        if spec.dtype == "string":
            w = np.array([weights[spec.name][v] for v in values])
            z_ref[moved] = w @ block[:, moved]
        else:
            z_ref[moved] = block[0, moved]  # T(mean): exact for per-column affine scalers
    return owners, z_ref


# -- loading --------------------------------------------------------------------------------------


def load_artifact(data: bytes, artifact_format: str) -> Any:
    """Parse the verified bytes admitting only allow-listed types; raises UnsafeArtifact."""
    if artifact_format == "skops":
        import skops.io

        types = skops.io.get_untrusted_types(data=data)
        refused = [t for t in types if not is_trusted(t)]
        if refused:
            raise UnsafeArtifact(f"the artifact references untrusted types {', '.join(refused)}")
        return skops.io.loads(data, trusted=types)
    if artifact_format == "pickle":
        return _AllowListUnpickler(io.BytesIO(data)).load()
    raise UnsafeArtifact(f"artifact format {artifact_format!r} is not one scoring can load")


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if not is_trusted(f"{module}.{name}"):
            raise UnsafeArtifact(f"the pickle references the untrusted global {module}.{name}")
        return super().find_class(module, name)


Rejected = Callable[[ArtifactRejected], Awaitable[None]]


class ModelLoader:
    """Fetches, verifies and loads versions; an LRU of loaded ones; one load per version at a time."""

    def __init__(self, settings: Settings, metrics: ScoringMetrics, on_rejected: Rejected,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.http = registry_http(settings, transport)
        self.capacity = max(1, settings.scoring_model_cache)
        self.metrics = metrics
        self.on_rejected = on_rejected
        self._cache: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._refused: dict[tuple[str, int], tuple[float, LoadError]] = {}
        self._records: dict[tuple[str, int], tuple[float, VersionPublic | None]] = {}

    async def close(self) -> None:
        await self.http.aclose()

    def cached(self, model: str, version: int) -> LoadedModel | None:
        return self._cache.get((model, version))

    def loaded(self) -> list[LoadedModel]:
        return list(self._cache.values())

    def has_room(self) -> bool:
        """True while a load would evict nothing."""
        return len(self._cache) < self.capacity

    async def get(self, model: str, version: int) -> LoadedModel:
        key = (model, version)
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._cache:
                return self._cache[key]
            refused = self._refused.get(key)
            if refused and asyncio.get_running_loop().time() - refused[0] < REJECTION_RETRY_SECONDS:
                raise refused[1]
            try:
                loaded = await self._load(model, version)
            except (ArtifactMismatch, UnsafeArtifact) as exc:
                self._refused[key] = (asyncio.get_running_loop().time(), exc)
                self.metrics.loads.labels(model, str(version), "refused").inc()
                raise
            except LoadError:
                self.metrics.loads.labels(model, str(version), "failed").inc()
                raise
            self._refused.pop(key, None)
            self._cache[key] = loaded
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
            self.metrics.loads.labels(model, str(version), "loaded").inc()
            settle_heap()
            return loaded

    async def model_info(self, model: str) -> dict[str, Any] | None:
        """The registry's record of the model, or None when it does not exist."""
        response = await self._get(f"/v1/models/{model}")
        return None if response.status_code == 404 else response.json()

    async def version_info(self, model: str, version: int) -> VersionPublic | None:
        response = await self._get(f"/v1/models/{model}/versions/{version}")
        return None if response.status_code == 404 else VersionPublic.model_validate(response.json())

    async def recent_info(self, model: str, version: int, max_age: float) -> VersionPublic | None:
        """The registry's record of the version (None: no such version), read again once it is
        `max_age` seconds old. While the registry is unreachable the last record read is used,
        however old; with none, RegistryUnavailable."""
        key = (model, version)
        now = asyncio.get_running_loop().time()
        known = self._records.get(key)
        if known is not None and now - known[0] < max_age:
            return known[1]
        try:
            info = await self.version_info(model, version)
        except RegistryUnavailable:
            if known is None:
                raise
            log.warning("registry unreachable: using its record of version %s of %s read %.0f s ago",
                        version, model, now - known[0])
            return known[1]
        self._records[key] = (now, info)
        while len(self._records) > MAX_RECORDS:  # pinned requests for many versions: oldest first
            del self._records[next(iter(self._records))]
        return info

    async def _get(self, path: str) -> httpx.Response:
        try:
            response = await self.http.get(path)
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"the registry at {self.http.base_url} is not reachable "
                                      f"({type(exc).__name__}); retry shortly") from exc
        if response.status_code not in (200, 404):
            raise RegistryUnavailable(f"the registry answered {response.status_code} to GET {path}: "
                                      f"{_detail(response)}")
        return response

    async def _load(self, model: str, version: int) -> LoadedModel:
        info = await self.version_info(model, version)
        if info is None:
            raise VersionMissing(f"version {version} of model '{model}' does not exist in the registry")
        about = await self.model_info(model) or {}
        response = await self._get(f"/v1/models/{model}/versions/{version}/artifact")
        data = response.content
        actual = hashlib.sha256(data).hexdigest()
        if actual != info.artifact_sha256:
            reason = "the artifact's bytes do not match the sha256 the registry recorded at registration"
            await self.on_rejected(ArtifactRejected(
                model=model, version=version, expected_sha256=info.artifact_sha256,
                actual_sha256=actual, reason=reason))
            raise ArtifactMismatch(f"version {version} of model '{model}' refused: {reason} "
                                   f"(expected {info.artifact_sha256}, got {actual}); "
                                   f"restore the artifact or deploy another version")
        if info.metadata.decision_policy is None:
            raise VersionMissing(f"version {version} of model '{model}' has no decision_policy; "
                                 f"register a version with one")
        return await asyncio.to_thread(_build, model, info, about.get("use_case", "other"),
                                       frozenset(about.get("protected_attributes") or ()), data)


def _build(model: str, info: VersionPublic, use_case: str, protected: frozenset[str],
           data: bytes) -> LoadedModel:
    try:
        estimator = load_artifact(data, info.artifact_format)
    except UnsafeArtifact:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure: this artifact cannot serve
        raise UnsafeArtifact(f"version {info.version} of model '{model}' cannot be loaded "
                             f"({type(exc).__name__}: {exc})") from exc
    schema = list(info.metadata.feature_schema)
    adverse = adverse_index(estimator)
    parts = Estimator(schema, estimator, adverse, fast_scorer(estimator, schema, adverse))
    profile = info.metadata.training_data.profile
    explainer = build_explainer(parts, profile.model_dump(mode="json") if profile else {})
    return LoadedModel(model, info.version, use_case, info.metadata.decision_policy, parts, explainer,
                       info.artifact_sha256, protected)


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text[:300]))
    except (ValueError, AttributeError):
        return response.text[:300]
