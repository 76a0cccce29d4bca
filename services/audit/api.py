"""Audit routes: read-only for regulators; replay for admins."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from nats.errors import Error as NatsError

from contracts.audit.api import (
    ChainVerdict,
    EventPage,
    ModelHistory,
    ReplayReport,
    ReplayStream,
    VerifyReport,
)
from contracts.streams import DECISIONS, GOVERNANCE
from services.audit import replay
from services.audit.domain import verify
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


@router.post("/replay", response_model=ReplayReport)
async def replay_streams(request: Request, _who: Admin) -> ReplayReport:
    """Rebuild both chains into a fresh store from each stream's first message; compare heads."""
    runtime = request.app.state.runtime
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
    started = time.perf_counter()
    replayer = runtime.extras["replayer"]
    try:
        results = [await replayer.rebuild(nc, _store(request), url, s) for s in STREAMS]
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
