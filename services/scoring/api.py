"""Scoring routes: decisions (one or a batch) and the deployments that route them."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from opentelemetry import trace
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from contracts.envelope import CloudEvent, new_event_id
from contracts.registry.api import VersionPublic, VersionStatus
from contracts.scoring.api import (
    DeploymentPublic,
    DeploymentSpec,
    ScoreBatchRequest,
    ScoreBatchResponse,
    ScoreRequest,
    ScoreResponse,
)
from contracts.scoring.events import DecisionMade, DeploymentChanged, ShadowPredictionMade
from services.runtime.auth import Principal, Role, principal_of
from services.runtime.causes import Cause, cause_of
from services.runtime.errors import Problem
from services.runtime.params import ModelName
from services.runtime.service import Runtime
from services.scoring import domain, messaging, store
from services.scoring.messaging import Recorder
from services.scoring.metrics import ScoringMetrics
from services.scoring.models import (
    ArtifactMismatch,
    Decided,
    LoadedModel,
    LoadError,
    ModelLoader,
    RegistryUnavailable,
    UnsafeArtifact,
    VersionMissing,
)
from services.scoring.shadows import ShadowQueue

if TYPE_CHECKING:
    from services.scoring.prewarm import Prewarmer

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["scoring"])

R = Role
SCORER_ROLES = (R.scoring_client, R.service, R.operator, R.admin)
Scorer = principal_of(*SCORER_ROLES)
DeploymentReader = principal_of(R.service, R.operator, R.admin, R.regulator, R.model_risk, R.compliance,
                                R.data_scientist)
DeploymentKeeper = principal_of(R.service, R.operator)
SERVABLE = (VersionStatus.approved, VersionStatus.deployed)
MAX_PENDING_SHADOWS = 1000  # requests' shadow jobs waiting; beyond this dropped (and counted)
# Up to this many rows are scored on the event loop: measured on one-row requests, a hop to a
# worker thread and back cost more CPU than the prediction (HistGradientBoosting at c=16: 4.5 ms
# per request through a thread, 2.2 ms inline), and a few rows block the loop for about a ms.
INLINE_ROWS = 4


# -- scoring ----------------------------------------------------------------------------------


@router.post("/score/{model}", response_model=ScoreResponse)
async def score(model: ModelName, body: ScoreRequest, request: Request, who: Scorer) -> ScoreResponse:
    """Decide for one entity; the answer is on the record (decision.made) before it is returned."""
    return (await decide(request, who, model, [body], batch=False))[0]


@router.post("/score/{model}/batch", response_model=ScoreBatchResponse)
async def score_batch(
    model: ModelName, body: ScoreBatchRequest, request: Request, who: Scorer
) -> ScoreBatchResponse:
    """Decide for many entities at once: one decision.made event per item."""
    limit = request.app.state.settings.scoring_max_batch
    if len(body.items) > limit:
        metrics_of(request).refused(model, "too_large")
        raise Problem(413, "Content Too Large",
                      f"the batch holds {len(body.items)} items; the limit is {limit}: split it")
    return ScoreBatchResponse(items=await decide(request, who, model, body.items, batch=True))


async def decide(request: Request, who: Principal, model: str, items: list[ScoreRequest],
                 batch: bool, version: int | None = None) -> list[ScoreResponse]:
    """The one decision path (v1 and OIP v2): route, check, score, record durably, then answer.
    `version` pins the deciding version (route "direct") in place of the deployment's routing.
    Shadow work waits while any decision is in flight in this process (shadows.py)."""
    with shadows_of(runtime_of(request)).deciding():
        return await _decide(request, who, model, items, batch, version)


async def _decide(request: Request, who: Principal, model: str, items: list[ScoreRequest],
                  batch: bool, version: int | None) -> list[ScoreResponse]:
    started = time.perf_counter()
    rt, metrics = runtime_of(request), metrics_of(request)
    deployment = None
    if version is None:
        deployment = await deployments_of(rt).get(model)
        if deployment is None:
            metrics.refused(model, "not_deployed")
            raise await why_not_deployed(loader_of(rt), model)
        routed = [domain.route(model, item.entity_id, deployment) for item in items]
    else:
        await check_pinned(rt, metrics, model, version)
        routed = [(version, "direct")] * len(items)
    serving: dict[int, LoadedModel] = {}
    for v in dict.fromkeys(v for v, _ in routed):
        serving[v] = await loaded_version(rt, metrics, model, v)
    protected = next(iter(serving.values())).protected_attributes  # the model's, same for every version
    problems: list[domain.FeatureProblem] = []
    for i, (item, (v, _)) in enumerate(zip(items, routed, strict=True)):
        found = domain.check_features(serving[v].schema, item.features)
        if item.attributes:
            found += domain.check_attributes(protected, item.attributes)
        problems += [replace(p, row=i if batch else None) for p in found]
    if problems:
        raise _unprocessable(metrics, model, problems)
    decided = [None] * len(items)
    for v, loaded in serving.items():
        rows = [i for i, (deciding, _) in enumerate(routed) if deciding == v]
        try:
            results = await _decided(loaded, [items[i].features for i in rows])
        except Exception as exc:  # noqa: BLE001 - the model failed on checked input: not the caller's fault
            log.exception("version %s of %s failed to score", v, model)
            metrics.refused(model, "model_failed")
            raise Problem(503, "Service Unavailable", f"version {v} of model '{model}' failed to "
                          f"score ({type(exc).__name__}); nothing was decided: retry or roll back") from exc
        for i, result in zip(rows, results, strict=True):
            decided[i] = result
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    cause = cause_of(request, who)
    trace_id = _trace_id()
    events: list[CloudEvent] = []
    responses = []
    for item, (v, route), result in zip(items, routed, decided, strict=True):
        decision_id = new_event_id()
        data = DecisionMade(decision_id=decision_id, model=model, version=v, route=route,
                            entity_id=item.entity_id, inputs=item.features, attributes=item.attributes,
                            score=result.score, decision=result.decision, reason_codes=result.reasons,
                            trace_id=trace_id, latency_ms=latency_ms)
        events.append(messaging.event(data, cause, event_id=decision_id))
        responses.append(ScoreResponse(decision_id=decision_id, score=result.score, decision=result.decision,
                                       model_version=v, route=route, reason_codes=result.reasons))
    await _on_record(rt, metrics, model, events)
    elapsed = time.perf_counter() - started
    for response in responses:
        metrics.decided(model, str(response.model_version), response.route, response.decision, elapsed)
    if deployment is not None and deployment.shadow:  # a pinned request is not the deployment's traffic
        _start_shadows(rt, metrics, model, deployment.shadow, items, responses, cause, trace_id)
    return responses


async def _decided(loaded: LoadedModel, features: Sequence[Mapping[str, Any]]) -> list[Decided]:
    """A few rows on the event loop (in one call with concurrent requests' where that changes no
    score), more in a worker thread."""
    if len(features) > INLINE_ROWS:
        return await asyncio.to_thread(loaded.decide_many, features)
    if loaded.coalescer is not None:
        return await loaded.coalescer.decide(features)
    return loaded.decide_many(features)


def _unprocessable(metrics: ScoringMetrics, model: str, problems: list[domain.FeatureProblem]) -> Problem:
    """One 422 naming every offending feature and attribute, and where to look them up."""
    kinds = {p.kind for p in problems}
    metrics.refused(model, "invalid_features" if "feature" in kinds else "invalid_attributes")
    hints = []
    if "feature" in kinds:
        hints.append(f"see GET /v1/deployments/{model} and the version's feature_schema in the registry")
    if "attribute" in kinds:
        hints.append(f"attributes are the model's protected_attributes (GET /v1/models/{model} on the "
                     f"registry); send the model's features in `features`")
    return Problem(422, "Unprocessable Content", "; ".join([*map(str, problems), *hints]),
                   errors=[{"row": p.row, p.kind: p.feature, "problem": p.problem} for p in problems])


async def _on_record(rt: Runtime, metrics: ScoringMetrics, model: str, events: list[CloudEvent]) -> None:
    try:
        await _recorder(rt).durable(events, model)
    except Exception as exc:  # noqa: BLE001 - neither JetStream nor the outbox took it
        log.exception("decisions for %s could not be recorded", model)
        metrics.refused(model, "not_recorded")
        raise Problem(503, "Service Unavailable", "the decision could not be recorded (JetStream and the "
                      "outbox both failed), so it was not made; retry") from exc


async def loaded_version(rt: Runtime, metrics: ScoringMetrics, model: str, version: int) -> LoadedModel:
    try:
        return await loader_of(rt).get(model, version)
    except LoadError as exc:
        metrics.refused(model, "version_unavailable")
        raise Problem(503, "Service Unavailable", f"{exc.detail}; nothing was decided",
                      version=version) from exc


async def check_pinned(rt: Runtime, metrics: ScoringMetrics, model: str, version: int) -> None:
    """A version a request names decides only when it exists and domain.why_not_pinned finds
    nothing against it. Its registry record is at most the deployment TTL old: the same bound as
    a replica's view of its deployment."""
    try:
        info = await pinned_record(rt, model, version)
    except Problem:
        metrics.refused(model, "unknown_version")
        raise
    refused = domain.why_not_pinned(info)
    if refused:
        metrics.refused(model, "version_refused")
        raise Problem(409, "Conflict", f"version {version} of model '{model}' {refused}; name another "
                                       f"version, or let the deployment route (/v2/models/{model}/infer)")


async def pinned_record(rt: Runtime, model: str, version: int) -> VersionPublic:
    """The version's registry record (recent, see check_pinned); 404 naming what does not exist,
    503 when the registry is unreachable and nothing is known of it."""
    loader = loader_of(rt)
    try:
        info = await loader.recent_info(model, version, rt.settings.scoring_deployment_ttl_seconds)
        if info is None:
            if await loader.model_info(model) is None:
                raise Problem(404, "Not Found", f"model '{model}' does not exist; create it in the "
                                                f"registry (POST /v1/models)")
            raise Problem(404, "Not Found", f"version {version} of model '{model}' does not exist; list "
                                            f"them with GET /v1/models/{model}/versions on the registry")
    except RegistryUnavailable as exc:
        raise Problem(503, "Service Unavailable", exc.detail) from exc
    return info


async def why_not_deployed(loader: ModelLoader, model: str) -> Problem:
    try:
        known = await loader.model_info(model)
    except RegistryUnavailable as exc:
        return Problem(503, "Service Unavailable", exc.detail)
    if known is None:
        return Problem(404, "Not Found", f"model '{model}' does not exist; create it in the registry "
                                         f"(POST /v1/models) and deploy a version")
    return Problem(409, "Conflict", f"model '{model}' has no champion; set one with "
                                    f"PUT /v1/deployments/{model} {{\"champion\": <version>}}")


# -- shadows ----------------------------------------------------------------------------------


def shadows_of(rt: Runtime) -> ShadowQueue:
    if (queue := rt.extras.get("shadows")) is None:
        queue = rt.extras["shadows"] = ShadowQueue(MAX_PENDING_SHADOWS)
    return queue


def _start_shadows(rt: Runtime, metrics: ScoringMetrics, model: str, versions: list[int],
                   items: list[ScoreRequest], responses: list[ScoreResponse], cause: Cause,
                   trace_id: str | None) -> None:
    """After the responses are decided: shadow versions score the same inputs in the background,
    on this process's spare time (shadows.py); dropped and counted when too many wait."""
    job = functools.partial(_shadow, rt, metrics, model, versions, items, responses, cause, trace_id)
    if not shadows_of(rt).submit(job):
        for version in versions:
            metrics.shadows.labels(model, str(version), "dropped").inc(len(items))


async def _shadow(rt: Runtime, metrics: ScoringMetrics, model: str, versions: list[int],
                  items: list[ScoreRequest], responses: list[ScoreResponse], cause: Cause,
                  trace_id: str | None) -> None:
    for version in versions:
        try:
            await _shadow_one(rt, metrics, model, version, items, responses, cause, trace_id)
        except Exception:  # noqa: BLE001 - a shadow never affects anything but its own record
            log.exception("shadow version %s of %s failed", version, model)
            metrics.shadows.labels(model, str(version), "failed").inc(len(items))


async def _shadow_one(rt: Runtime, metrics: ScoringMetrics, model: str, version: int,
                      items: list[ScoreRequest], responses: list[ScoreResponse], cause: Cause,
                      trace_id: str | None) -> None:
    loaded = await loader_of(rt).get(model, version)
    fits = [i for i, item in enumerate(items) if not domain.check_features(loaded.schema, item.features)]
    if len(fits) < len(items):
        metrics.shadows.labels(model, str(version), "schema_mismatch").inc(len(items) - len(fits))
    if not fits:
        return
    started = time.perf_counter()
    results = await _decided(loaded, [items[i].features for i in fits])
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    events = [
        messaging.event(ShadowPredictionMade(
            decision_id=responses[i].decision_id, model=model, version=version,
            entity_id=items[i].entity_id, score=result.score, decision=result.decision,
            trace_id=trace_id, latency_ms=latency_ms), cause)
        for i, result in zip(fits, results, strict=True)
    ]
    await _recorder(rt).durable(events, model)
    metrics.shadows.labels(model, str(version), "recorded").inc(len(events))


# -- deployments ------------------------------------------------------------------------------


@router.get("/deployments/{model}", response_model=DeploymentPublic)
def get_deployment(model: ModelName, request: Request, who: DeploymentReader) -> DeploymentPublic:
    """What serves the model: champion, canary version and share, shadow versions."""
    found = deployment_of(runtime_of(request).engine, model)
    if found is None:
        raise Problem(404, "Not Found", f"model '{model}' has no deployment; set one with "
                                        f"PUT /v1/deployments/{model}")
    return found


@router.put("/deployments/{model}", response_model=DeploymentPublic)
async def put_deployment(model: ModelName, body: DeploymentSpec, request: Request,
                         who: DeploymentKeeper) -> DeploymentPublic:
    """Set champion, canary and shadows; every version is checked and loaded before it takes traffic."""
    rt = runtime_of(request)
    loader = loader_of(rt)
    try:
        if await loader.model_info(model) is None:
            raise Problem(404, "Not Found", f"model '{model}' does not exist in the registry")
        await _check_versions(loader, model, body)
        for version in _versions(body):
            await loader.get(model, version)  # pre-warm: the first request finds it loaded
    except (ArtifactMismatch, UnsafeArtifact) as exc:
        raise Problem(409, "Conflict", exc.detail) from exc
    except VersionMissing as exc:
        raise Problem(422, "Unprocessable Content", exc.detail) from exc
    except RegistryUnavailable as exc:
        raise Problem(503, "Service Unavailable", exc.detail) from exc
    cause = cause_of(request, who)
    changed = await asyncio.to_thread(_store_deployment, rt.engine, model, body, cause)
    if changed:
        _recorder(rt).notify()
    current = changed or deployment_of(rt.engine, model)
    deployments_of(rt).put(model, current)  # this replica routes by it from the next request on
    return current


async def _check_versions(loader: ModelLoader, model: str, spec: DeploymentSpec) -> None:
    deciding = [spec.champion, *([spec.canary.version] if spec.canary else [])]
    for version in _versions(spec):
        info = await loader.version_info(model, version)
        if info is None:
            raise VersionMissing(f"version {version} of model '{model}' does not exist; list them with "
                                 f"GET /v1/models/{model}/versions on the registry")
        if version in deciding and info.status not in SERVABLE:
            role = "champion" if version == spec.champion else "canary"
            raise Problem(409, "Conflict", f"version {version} of model '{model}' is {info.status}; a "
                                           f"{role} must be approved or deployed")


def _versions(spec: DeploymentSpec) -> list[int]:
    return [spec.champion, *([spec.canary.version] if spec.canary else []), *spec.shadow]


def _store_deployment(engine: Engine, model: str, spec: DeploymentSpec,
                      cause: Cause) -> DeploymentPublic | None:
    """One transaction: the row and its DeploymentChanged event; None when nothing changed."""
    try:
        with engine.begin() as conn:
            current = store.get_deployment(conn, model)
            if current is not None and DeploymentSpec(champion=current.champion, canary=current.canary,
                                                      shadow=current.shadow) == spec:
                return None
            store.put_deployment(conn, model, spec, cause.time, cause.actor, exists=current is not None)
            messaging.record(conn, DeploymentChanged(
                model=model, champion=spec.champion, canary=spec.canary, shadow=spec.shadow,
                previous_champion=current.champion if current else None), cause)
            return store.get_deployment(conn, model)
    except IntegrityError as exc:
        raise Problem(409, "Conflict", f"the deployment of '{model}' changed meanwhile; read it and "
                                       f"retry") from exc


# -- helpers ----------------------------------------------------------------------------------


def deployment_of(engine: Engine, model: str) -> DeploymentPublic | None:
    with engine.connect() as conn:
        return store.get_deployment(conn, model)


class DeploymentCache:
    """Deployments as the hot path reads them: a row (or its absence) is re-read once it is
    `ttl` seconds old, so a PUT on another replica applies within `ttl`; one on this replica
    applies at once (`put`). Concurrent requests for a stale model share one read."""

    def __init__(self, engine: Engine, ttl: float) -> None:
        self.engine, self.ttl = engine, ttl
        self._rows: dict[str, tuple[float, DeploymentPublic | None]] = {}
        self._reads: dict[str, asyncio.Future] = {}

    async def get(self, model: str) -> DeploymentPublic | None:
        found = self._rows.get(model)
        if found is not None and time.monotonic() - found[0] < self.ttl:
            return found[1]
        reading = self._reads.get(model)
        if reading is None:
            reading = asyncio.ensure_future(self._read(model))
            self._reads[model] = reading
            reading.add_done_callback(lambda _: self._reads.pop(model, None))
        return await asyncio.shield(reading)

    def put(self, model: str, deployment: DeploymentPublic | None) -> None:
        self._rows[model] = (time.monotonic(), deployment)

    async def refresh(self, model: str) -> None:
        """Re-read the model's row now (another replica announced a change): requests route by it
        from the next one on, rather than within `ttl`."""
        await self._read(model)

    async def _read(self, model: str) -> DeploymentPublic | None:
        read_at = time.monotonic()  # before the read: a row is never taken for fresher than it is
        row = await asyncio.to_thread(deployment_of, self.engine, model)
        newer = self._rows.get(model)
        if newer is not None and newer[0] > read_at:  # a PUT here landed meanwhile: it wins
            return newer[1]
        self._rows[model] = (read_at, row)
        return row


def deployments_of(rt: Runtime) -> DeploymentCache:
    return rt.extras["deployments"]


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


def metrics_of(request: Request) -> ScoringMetrics:
    return request.app.state.scoring_metrics


def loader_of(rt: Runtime) -> ModelLoader:
    return rt.extras["loader"]


def prewarmer_of(rt: Runtime) -> Prewarmer:
    return rt.extras["prewarmer"]


def _recorder(rt: Runtime) -> Recorder:
    return rt.extras["recorder"]


def _trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None
