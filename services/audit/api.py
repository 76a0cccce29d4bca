"""Audit routes: read-only for regulators; replay for admins."""

from __future__ import annotations

import asyncio
import functools
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from nats.aio.client import Client
from nats.errors import Error as NatsError

from contracts.audit.api import (
    ChainVerdict,
    EventPage,
    ModelHistory,
    ReplayJob,
    ReplayReport,
    ReplayStream,
    VerifyReport,
)
from contracts.streams import DECISIONS, GOVERNANCE
from services.audit import replay
from services.audit.domain import verify
from services.audit.jobs import KEEP, ReplayJobs
from services.audit.store import AuditStore, EventFilter
from services.runtime import migrate
from services.runtime.auth import Role, principal_of
from services.runtime.bus import BusUnavailable
from services.runtime.errors import Problem
from services.runtime.params import ModelName

router = APIRouter(prefix="/v1/audit", tags=["audit"])

Reader = principal_of(Role.regulator, Role.model_risk, Role.compliance, Role.operator, Role.admin)
Admin = principal_of(Role.admin)
STREAMS = (GOVERNANCE, DECISIONS)


def _store(request: Request) -> AuditStore:
    return request.app.state.runtime.extras["store"]


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise Problem(422, "Unprocessable Content",
                      f"{name} must be RFC 3339 with a timezone, e.g. 2026-01-31T12:00:00Z")
    return value.astimezone(UTC) if value else None


def _cursor(value: str | None) -> int:
    if value is None:
        return 0
    if not value.isdigit():
        raise Problem(422, "Unprocessable Content",
                      "cursor must be the next_cursor value of a previous page")
    return int(value)


@router.get("/events", response_model=EventPage)
def list_events(
    request: Request,
    _who: Reader,
    subject: str | None = None,
    type: str | None = None,
    actor: str | None = None,
    stream: Annotated[str | None, Query(pattern=f"^({GOVERNANCE}|{DECISIONS})$")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> EventPage:
    """Chained events in ingestion order, filtered by subject, type, actor, stream and time."""
    f = EventFilter(subject=subject, type=type, actor=actor, stream=stream,
                    since=_aware("since", since), until=_aware("until", until))
    items, after = _store(request).events(f, limit, _cursor(cursor))
    return EventPage(items=items, next_cursor=str(after) if after else None)


@router.get("/models/{name}/history", response_model=ModelHistory)
def get_model_history(
    request: Request,
    name: ModelName,
    _who: Reader,
) -> ModelHistory:
    """Every event about a model, its versions, aliases and deployments, in chain order."""
    store = _store(request)
    # the model, its versions and aliases, and where scoring deployed it
    f = EventFilter(subject_prefixes=(f"model/{name}", f"deployment/{name}"))
    after, events = 0, []
    while True:
        items, after = store.events(f, 1000, after)
        events.extend(items)
        if after is None:
            break
    if not events:
        raise Problem(404, "Not Found", f"the audit trail holds no events for model {name!r}")
    return ModelHistory(model=name, events=events)


@router.get("/verify", response_model=VerifyReport)
def verify_chains(request: Request, _who: Reader) -> VerifyReport:
    """Recompute each stream's hash chain; name the first broken position, if any."""
    store = _store(request)
    verdicts = []
    for stream in STREAMS:
        v = verify(store.chain(stream))
        verdicts.append(ChainVerdict(stream=stream, count=v.count, head_hash=v.head_hash, ok=v.ok,
                                     first_broken_position=v.first_broken_position, reason=v.reason))
    return VerifyReport(ok=all(v.ok for v in verdicts), streams=verdicts)


REPLAY_JOB = "/v1/audit/replay/{job_id}"


def _respond_async(prefer: str | None) -> bool:
    """Whether a Prefer header (RFC 7240) asks for respond-async, e.g. `respond-async, wait=5`."""
    if not prefer:
        return False
    return any(p.split(";")[0].split("=")[0].strip().lower() == "respond-async" for p in prefer.split(","))


@router.post("/replay", response_model=ReplayReport, responses={
    202: {"model": ReplayJob, "description": "with `Prefer: respond-async`: the replay runs in the "
                                             "background; follow it at the Location"},
})
async def replay_streams(
    request: Request, _who: Admin,
    prefer: Annotated[str | None, Header(description="`respond-async` to run the replay in the "
                                                     "background (202 and a job to follow)")] = None,
):
    """Rebuild both chains into a fresh store from each stream's first message; compare heads.

    On a long log this takes minutes or more: send `Prefer: respond-async` to get 202 at once
    and follow the job at `GET /v1/audit/replay/{job_id}` (409 with its Location while another
    background replay runs). 503 when NATS or the replay's builder fails: nothing is lost, run
    it again."""
    runtime = request.app.state.runtime
    jobs: ReplayJobs = runtime.extras["replay_jobs"]
    background = _respond_async(prefer)
    if background and (running := jobs.running()) is not None:
        where = REPLAY_JOB.format(job_id=running.id)
        raise Problem(409, "Conflict", f"replay {running.id} is still running: follow it at {where}, "
                                       "and start another once it is done", headers={"Location": where})
    nc, url, target = await _prepare(runtime)
    run = functools.partial(_replay, runtime.extras["replayer"], nc, _store(request), url, target)
    if not background:
        return await run()
    job = jobs.start(run)
    return JSONResponse(job.model_dump(mode="json"), status_code=202, headers={
        "Location": REPLAY_JOB.format(job_id=job.id), "Preference-Applied": "respond-async"})


@router.get("/replay/{job_id}", response_model=ReplayJob)
def get_replay_job(request: Request, job_id: str, _who: Admin) -> ReplayJob:
    """A background replay: running (with where it is), done (with its report) or failed (why)."""
    job = request.app.state.runtime.extras["replay_jobs"].get(job_id)
    if job is None:
        raise Problem(404, "Not Found", f"no replay job {job_id!r}: the service keeps the last "
                                        f"{KEEP} in memory and forgets them when it restarts (the "
                                        "stores they rebuilt stay on disk); run the replay again")
    return job


async def _prepare(runtime) -> tuple[Client, str, Path]:
    """The connection to read with (503 when NATS is down) and a fresh, migrated store."""
    try:
        nc = runtime.bus.client()
    except BusUnavailable as exc:
        raise Problem(503, "Service Unavailable",
                      f"{exc}; replay reads the streams, retry later") from exc
    target_dir = runtime.settings.replay_dir
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"audit-replay-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.db"
    url = f"sqlite:///{target.resolve()}"
    await asyncio.to_thread(migrate.upgrade, "audit", url)
    return nc, url, target


async def _replay(replayer: replay.ReplayWorker, nc: Client, live: AuditStore, url: str, target: Path,
                  progress: replay.Progress = replay.no_progress) -> ReplayReport:
    started = time.perf_counter()
    try:
        results = [await replayer.rebuild(nc, live, url, s, progress) for s in STREAMS]
    except replay.ReplayFailed as exc:
        raise Problem(503, "Service Unavailable", f"{exc}; run the replay again") from exc
    except (NatsError, TimeoutError) as exc:  # the stream read broke off (NATS restarting, say)
        raise Problem(503, "Service Unavailable", f"reading the streams failed ({exc!r}); run the "
                                                  f"replay again") from exc
    seconds = time.perf_counter() - started
    total = sum(r["rebuilt_count"] for r in results)
    return ReplayReport(
        ok=all(r["match"] for r in results), store=str(target), seconds=round(seconds, 3),
        events_per_second=round(total / seconds, 1) if seconds else 0.0,
        streams=[ReplayStream(**r) for r in results],
    )
