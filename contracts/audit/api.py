"""Audit HTTP response models: chained events, verification and replay reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Public(BaseModel):
    model_config = ConfigDict(frozen=True)


class AuditEventPublic(Public):
    stream: str
    position: int = Field(description="the event's place in its stream's chain, from 1")
    stream_seq: int = Field(description="the JetStream sequence it was read from")
    event_id: str
    type: str
    subject: str
    time: datetime
    actor: str
    prev_hash: str
    hash: str = Field(description="sha256(prev_hash bytes || canonical event bytes), hex")
    event: dict[str, Any] = Field(description="the CloudEvent, as stored (RFC 8785 canonical)")


class EventPage(Public):
    items: list[AuditEventPublic]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class ModelHistory(Public):
    model: str
    events: list[AuditEventPublic]


class ChainVerdict(Public):
    stream: str
    count: int
    head_hash: str
    ok: bool
    first_broken_position: int | None = None
    reason: str | None = None


class VerifyReport(Public):
    ok: bool
    streams: list[ChainVerdict]


class ReplayStream(Public):
    stream: str
    live_head: str
    rebuilt_head: str
    live_count: int
    rebuilt_count: int
    read_to_seq: int = Field(description="stream sequence both chains were compared at")
    match: bool


class ReplayReport(Public):
    ok: bool
    store: str = Field(description="where the rebuilt store was written")
    seconds: float
    events_per_second: float
    streams: list[ReplayStream]


class ReplayProgress(Public):
    stream: str = Field(description="the stream being rebuilt")
    read_to_seq: int = Field(description="the stream sequence read and sent to the builder so far")
    of: int = Field(description="the sequence this stream's replay reads to")


class ReplayJob(Public):
    """A replay run in the background (POST /v1/audit/replay with `Prefer: respond-async`)."""

    id: str
    state: Literal["running", "done", "failed"]
    started_at: datetime
    finished_at: datetime | None = None
    progress: ReplayProgress | None = Field(None, description="where it is, or where it ended")
    report: ReplayReport | None = Field(None, description="once done: the replay's report")
    error: str | None = Field(None, description="once failed: why (run the replay again)")
