"""JetStream streams and the subjects that event types map to."""

from __future__ import annotations

from dataclasses import dataclass

GOVERNANCE = "GOVERNANCE"
DECISIONS = "DECISIONS"
DEADLETTER_PREFIX = "gov.deadletter."

# ECOA / Reg B keep adverse-action records 25 months; decisions default to that.
DECISION_RETENTION_SECONDS = 25 * 31 * 24 * 3600


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    max_age_seconds: float  # 0 keeps messages forever


def stream_specs(decision_retention_seconds: float = DECISION_RETENTION_SECONDS) -> list[StreamSpec]:
    return [
        StreamSpec(GOVERNANCE, ("gov.>",), 0),
        StreamSpec(DECISIONS, ("dec.>",), decision_retention_seconds),
    ]


# Events about one decision: they share the decisions' stream and record-keeping period.
PER_DECISION = {("scoring", "decision"), ("scoring", "shadow_prediction"), ("scoring", "requests"),
                ("monitoring", "outcome")}


def subject_for(event_type: str, model: str | None = None) -> str:
    """`modelgov.registry.model_version.registered.v1` → `gov.registry.model_version.registered`.

    Decisions travel apart, `dec.<model>.<verb>`, so a consumer can take one model's decisions.
    """
    _, service, aggregate, verb, _version = event_type.split(".")
    if (service, aggregate) in PER_DECISION:
        if not model:
            raise ValueError(f"{event_type} needs the model name for its subject")
        return f"dec.{model}.{aggregate}_{verb}"
    return f"gov.{service}.{aggregate}.{verb}"


def stream_for(subject: str) -> str:
    return DECISIONS if subject.startswith("dec.") else GOVERNANCE


def deadletter_subject(consumer_name: str) -> str:
    return f"{DEADLETTER_PREFIX}{consumer_name}"
