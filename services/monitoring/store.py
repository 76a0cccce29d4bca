"""Monitoring tables: decisions and outcomes as monitoring sees them, windows, references,
policies, retrain triggers, label counters, refusal tallies and the outbox. The consumer needs no
processed-ids table: decisions and tallies are keyed by their event ids."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    func,
    insert,
    select,
    update,
)

from services.runtime.db import insert_rows, sqlite_time, utc
from services.runtime.outbox import outbox_table

metadata = MetaData()

decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", String(64), primary_key=True),
    Column("model", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("window_index", Integer, nullable=False),
    Column("route", String(20), nullable=False),
    Column("made_at", DateTime(timezone=True), nullable=False),
    Column("score", Float, nullable=False),
    Column("decision", String(40), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("attributes", JSON, nullable=False),
    Index("ix_decisions_window", "model", "version", "window_index"),
    Index("ix_decisions_time", "model", "made_at"),
)

outcomes = Table(
    "outcomes",
    metadata,
    Column("decision_id", String(64), primary_key=True),
    Column("model", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("label", Integer, nullable=False),
    Column("observed_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

# One row per (model, version, index); the highest index of a version is its open window.
windows = Table(
    "windows",
    metadata,
    Column("model", String(100), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("index", Integer, primary_key=True),
    Column("state", String(10), nullable=False),  # open → closed → evaluated
    Column("start", DateTime(timezone=True), nullable=False),
    Column("end", DateTime(timezone=True)),
    Column("decisions", Integer, nullable=False),
    Column("labelled", Integer, nullable=False),
    Column("closed_by", String(10)),
    Column("labels_seen", Integer, nullable=False),  # labelled count the report was computed at
    Column("report", JSON),
    Index("ix_windows_state", "state"),
)

# What a version is judged against, fetched from the registry once per version.
references = Table(
    "references",
    metadata,
    Column("model", String(100), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("metadata", JSON, nullable=False),
    Column("protected_attributes", JSON, nullable=False),
    Column("fetched_at", DateTime(timezone=True), nullable=False),
)

policies = Table(
    "policies",
    metadata,
    Column("model", String(100), primary_key=True),
    Column("policy", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(200), nullable=False),
)

triggers = Table(
    "triggers",
    metadata,
    Column("workflow_id", String(200), primary_key=True),
    Column("model", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("reason", String(1000), nullable=False),
    Column("input", JSON, nullable=False),
    Column("status", String(20), nullable=False),  # pending → started | already_started
    Column("detail", String(1000)),
    Column("attempts", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_triggers_status", "status"),
)

# Each scoring replica's periodic tally of refused requests (requests.refused), for error rates.
refusals = Table(
    "refusals",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("model", String(100), nullable=False),
    Column("since", DateTime(timezone=True), nullable=False),
    Column("until", DateTime(timezone=True), nullable=False),
    Column("total", Integer, nullable=False),
    Column("counts", JSON, nullable=False),
    Index("ix_refusals_model_until", "model", "until"),
)

label_counters = Table(
    "label_counters",
    metadata,
    Column("model", String(100), primary_key=True),
    Column("positives", Integer, nullable=False),
)

outbox = outbox_table(metadata)


_DECISION_COLUMNS = ("decision_id", "model", "version", "window_index", "route", "made_at", "score",
                     "decision", "latency_ms", "inputs", "attributes")


def insert_decisions(conn: Connection, rows: list[dict]) -> None:
    """The consumer's hot path: plain rows with the JSON already encoded (SQLAlchemy's per-row
    bind processing cost more than the rest of a decision's handling)."""
    if conn.dialect.name != "sqlite":
        conn.execute(insert(decisions), rows)  # psycopg adapts the JSON columns itself
        return
    insert_rows(conn, "decisions", _DECISION_COLUMNS, [
        (r["decision_id"], r["model"], r["version"], r["window_index"], r["route"],
         sqlite_time(r["made_at"]), r["score"], r["decision"], r["latency_ms"],
         json.dumps(r["inputs"]), json.dumps(r["attributes"])) for r in rows])


def known_events(conn: Connection, ids: set[str]) -> set[str]:
    """Which of these event ids are already stored: a decision's id is its event's id."""
    found = set(conn.scalars(select(decisions.c.decision_id).where(decisions.c.decision_id.in_(ids))))
    return found | set(conn.scalars(select(refusals.c.event_id).where(refusals.c.event_id.in_(ids))))


def refused_between(conn: Connection, model: str, start: datetime, end: datetime) -> int:
    """Requests refused for the model in tallies that ended within (start, end]."""
    r = refusals
    return conn.scalar(select(func.coalesce(func.sum(r.c.total), 0)).where(
        r.c.model == model, r.c.until > start, r.c.until <= end)) or 0


def open_windows(conn: Connection, pairs: set[tuple[str, int]]) -> dict[tuple[str, int], dict]:
    """The open window of each (model, version) that has one."""
    if not pairs:
        return {}
    w = windows
    rows = conn.execute(select(w).where(w.c.state == "open", w.c.model.in_({m for m, _ in pairs})))
    return {(r.model, r.version): dict(r._mapping) for r in rows if (r.model, r.version) in pairs}


def last_index(conn: Connection, model: str, version: int) -> int:
    w = windows
    return conn.scalar(select(func.max(w.c.index)).where(w.c.model == model, w.c.version == version)) or 0


def window_key(model: str, version: int, index: int):
    w = windows
    return and_(w.c.model == model, w.c.version == version, w.c.index == index)


def save_window(conn: Connection, window: dict, new: bool) -> None:
    if new:
        conn.execute(insert(windows).values(**window))
    else:
        values = {k: v for k, v in window.items() if k not in ("model", "version", "index")}
        conn.execute(update(windows).where(
            window_key(window["model"], window["version"], window["index"])).values(**values))


def window_decisions(conn: Connection, model: str, version: int, index: int) -> list:
    """A window's decisions with their outcome label, if known."""
    return _labelled(conn, model, version, decisions.c.window_index == index)


def period_decisions(conn: Connection, model: str, version: int, since: datetime,
                     until: datetime) -> list:
    """A version's decisions made in [since, until), with their outcome label, if known."""
    return _labelled(conn, model, version, decisions.c.made_at >= since, decisions.c.made_at < until)


def _labelled(conn: Connection, model: str, version: int, *where) -> list:
    d, o = decisions, outcomes
    query = (select(d.c.decision_id, d.c.made_at, d.c.score, d.c.decision, d.c.latency_ms,
                    d.c.inputs, d.c.attributes, o.c.label)
             .select_from(d.outerjoin(o, o.c.decision_id == d.c.decision_id))
             .where(d.c.model == model, d.c.version == version, *where))
    return conn.execute(query).all()


def closed_without_reference(conn: Connection) -> list[tuple[str, int]]:
    """The versions with a window waiting to be judged and no reference fetched yet."""
    w, r = windows, references
    fetched = select(r.c.model).where(r.c.model == w.c.model, r.c.version == w.c.version).exists()
    query = select(w.c.model, w.c.version).where(w.c.state == "closed", ~fetched).distinct()
    return [(m, v) for m, v in conn.execute(query)]


def reference(conn: Connection, model: str, version: int):
    r = references
    return conn.execute(select(r).where(r.c.model == model, r.c.version == version)).first()


def get_policy(conn: Connection, model: str):
    return conn.execute(select(policies).where(policies.c.model == model)).first()


def as_utc(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)
