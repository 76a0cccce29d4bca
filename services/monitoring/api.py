"""Monitoring routes: outcomes in; reports, version comparisons and policies out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import Engine, func, insert, select, update

from contracts.monitoring.api import (
    Comparison,
    MonitoringPolicy,
    MonitoringReport,
    OutcomeBatch,
    OutcomeIn,
    OutcomeReport,
    OutcomeResult,
    PolicyPublic,
    RetrainTrigger,
    WindowReport,
)
from contracts.monitoring.events import PolicyChanged
from contracts.registry.api import MAX_VERSION
from services.monitoring import domain, messaging, report, store
from services.runtime.auth import Role, principal_of
from services.runtime.causes import cause_of
from services.runtime.errors import Problem
from services.runtime.params import ModelName

router = APIRouter(prefix="/v1", tags=["monitoring"])

R = Role
Reporter = principal_of(R.scoring_client, R.service, R.operator, R.admin)
Reader = principal_of(R.model_risk, R.compliance, R.operator, R.regulator, R.data_scientist,
                      R.service, R.admin)
PolicyKeeper = principal_of(R.model_risk, R.admin)


def engine_of(request: Request) -> Engine:
    return request.app.state.runtime.engine


@router.post("/outcomes", response_model=OutcomeReport, status_code=201,
             responses={200: {"model": OutcomeReport}, 207: {"model": OutcomeReport}})
async def record_outcomes(
    body: Annotated[OutcomeIn | OutcomeBatch, Body()], request: Request, who: Reporter
):
    """Record what happened after decisions (one, or `{"outcomes": [...]}`): 201 when recorded,
    200 for a repeat; a batch answers per item, 207 when some items failed."""
    items = body.outcomes if isinstance(body, OutcomeBatch) else [body]
    cause, now = cause_of(request, who), datetime.now(UTC)

    def write():
        with engine_of(request).begin() as conn:
            return messaging.record_outcomes(conn, items, cause, now)

    results = [OutcomeResult(index=i, decision_id=item.decision_id, status=status, code=code,
                             detail=detail)
               for i, (item, (status, code, detail)) in enumerate(zip(items, await asyncio.to_thread(write),
                                                                      strict=True))]
    if isinstance(body, OutcomeIn):
        only = results[0]
        if only.code >= 400:
            title = "Not Found" if only.code == 404 else "Conflict"
            raise Problem(only.code, title, only.detail or title)
    recorded = sum(r.status == "recorded" for r in results)
    duplicates = sum(r.status == "duplicate" for r in results)
    failed = len(results) - recorded - duplicates
    status = 207 if failed and isinstance(body, OutcomeBatch) else 201 if recorded else 200
    out = OutcomeReport(recorded=recorded, duplicates=duplicates, failed=failed, results=results)
    return JSONResponse(out.model_dump(mode="json"), status_code=status)


@router.get("/monitoring/{model}/report", response_model=MonitoringReport,
            responses={200: {"content": {"text/html": {}}}})
async def get_report(
    model: ModelName, request: Request, who: Reader,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION, description="only this version")] = None,
    windows: Annotated[int, Query(ge=1, le=500, description="newest windows to include")] = 20,
    format: Annotated[Literal["json", "html"], Query(description="html: charts for people")] = "json",
):
    """Drift, data quality, performance, fairness and operations per version and window."""
    found = await asyncio.to_thread(_report, engine_of(request), model, version, windows)
    if format == "html":
        return HTMLResponse(report.render(found))
    return found


def _report(engine: Engine, model: str, version: int | None, limit: int) -> MonitoringReport:
    w, t = store.windows, store.triggers
    with engine.connect() as conn:
        _known(conn, model)
        query = select(w).where(w.c.model == model)
        if version is not None:
            query = query.where(w.c.version == version)
        rows = conn.execute(query.order_by(w.c.start.desc(), w.c.index.desc())).all()
        versions = sorted({r.version for r in rows})
        evaluated = [r for r in rows if r.state == "evaluated"][:limit]
        trig = conn.execute(select(t).where(t.c.model == model).order_by(t.c.created_at.desc())).all()
        policy = messaging.policy_of(conn, model)
    return MonitoringReport(
        model=model, versions=versions,
        windows=[WindowReport.model_validate(r.report) for r in evaluated],
        open_windows={r.version: r.decisions for r in rows if r.state == "open"},
        triggers=[RetrainTrigger(workflow_id=r.workflow_id, reason=r.reason, status=r.status,
                                 detail=r.detail, created_at=store.as_utc(r.created_at)) for r in trig],
        policy=policy,
    )


def _known(conn, model: str) -> None:
    d, p = store.decisions, store.policies
    if conn.scalar(select(d.c.decision_id).where(d.c.model == model).limit(1)) is None and \
            conn.scalar(select(p.c.model).where(p.c.model == model)) is None:
        raise Problem(404, "Not Found", f"no decisions of model {model!r} have reached monitoring: "
                                        "check the name, or score with it first")


@router.get("/monitoring/{model}/compare", response_model=Comparison)
async def compare_versions(
    model: ModelName, request: Request, who: Reader,
    baseline: Annotated[int, Query(ge=1, le=MAX_VERSION, description="the version serving now (champion)")],
    candidate: Annotated[int, Query(ge=1, le=MAX_VERSION, description="the version on trial (canary)")],
    since: Annotated[datetime | None, Query(description="default: the candidate's first decision")] = None,
    until: Annotated[datetime | None, Query(description="default: now")] = None,
) -> Comparison:
    """The canary gate's figures: both versions over the same period, and whether the candidate
    may advance."""
    if baseline == candidate:
        raise Problem(422, "Unprocessable Content", "baseline and candidate must be different versions")
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise Problem(422, "Unprocessable Content", f"{name} needs a timezone offset (RFC 3339)")
    return await asyncio.to_thread(_compare, engine_of(request), model, baseline, candidate, since, until)


def _compare(engine: Engine, model: str, baseline: int, candidate: int, since, until) -> Comparison:
    d = store.decisions
    with engine.connect() as conn:
        _known(conn, model)
        if since is None:
            first = conn.scalar(select(func.min(d.c.made_at)).where(d.c.model == model,
                                                                     d.c.version == candidate))
            if first is None:
                raise Problem(409, "Conflict", f"version {candidate} of {model!r} has made no decisions "
                                               "yet: route canary traffic to it, then compare")
            since = store.as_utc(first)
        until = until or datetime.now(UTC)
        if since >= until:
            raise Problem(422, "Unprocessable Content", "since must be before until")
        policy = messaging.policy_of(conn, model)
        figures = {}
        refused = store.refused_between(conn, model, since, until)
        for version in (baseline, candidate):
            ref_row = store.reference(conn, model, version)
            rows = store.period_decisions(conn, model, version, since, until)
            ref = (domain.Reference.from_metadata(ref_row.metadata, ref_row.protected_attributes)
                   if ref_row else domain.Reference([], None, None, [], None))
            figures[version] = domain.figures(ref, rows, policy, refused)
    reasons, auc_diff, ratio = domain.gate(figures[baseline], figures[candidate], policy)
    return Comparison(model=model, since=since, until=until,
                      baseline=domain.version_figures(baseline, figures[baseline]),
                      candidate=domain.version_figures(candidate, figures[candidate]),
                      auc_difference=auc_diff, p99_latency_ratio=ratio, passed=not reasons,
                      reasons=reasons)


@router.get("/monitoring/{model}/policy", response_model=PolicyPublic)
async def get_policy(model: ModelName, request: Request, who: Reader) -> PolicyPublic:
    """The model's windows, thresholds and retrain triggers (defaults until one is set)."""
    def read():
        with engine_of(request).connect() as conn:
            return store.get_policy(conn, model)
    row = await asyncio.to_thread(read)
    if row is None:
        return PolicyPublic(model=model, policy=MonitoringPolicy(), updated_at=None, updated_by=None)
    return PolicyPublic(model=model, policy=MonitoringPolicy.model_validate(row.policy),
                        updated_at=store.as_utc(row.updated_at), updated_by=row.updated_by)


@router.put("/monitoring/{model}/policy", response_model=PolicyPublic)
async def put_policy(model: ModelName, body: MonitoringPolicy, request: Request,
                     who: PolicyKeeper) -> PolicyPublic:
    """Set the model's monitoring policy; it applies to windows opened from now on."""
    cause = cause_of(request, who)
    p = store.policies

    def write():
        values = {"policy": body.model_dump(mode="json"), "updated_at": cause.time,
                  "updated_by": cause.actor}
        with engine_of(request).begin() as conn:
            if conn.scalar(select(p.c.model).where(p.c.model == model)):
                conn.execute(update(p).where(p.c.model == model).values(**values))
            else:
                conn.execute(insert(p).values(model=model, **values))
            messaging.record(conn, PolicyChanged(model=model, policy=body), cause)

    await asyncio.to_thread(write)
    return PolicyPublic(model=model, policy=body, updated_at=cause.time, updated_by=cause.actor)
