"""Small builders for test events."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.envelope import CloudEvent, make_event
from contracts.registry.events import ModelCreated


def model_created(name: str = "credit-default", actor: str = "user:alice", **kw) -> CloudEvent:
    data = ModelCreated(name=name, description="test model", owner="risk-team", use_case="credit",
                        risk_tier="high", protected_attributes=["sex"])
    return make_event(data, subject=f"model/{name}", actor=actor, time=datetime.now(UTC), **kw)
