"""The CloudEvents 1.0 envelope every modelgov event travels in, and its canonical bytes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, GetPydanticSchema, field_validator
from pydantic_core import core_schema

from contracts import canonical
from contracts.uuid7 import uuid7

SPEC_VERSION = "1.0"


class EventData(BaseModel):
    """Base of every event payload: frozen, strict about unknown fields, typed by `event_type`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]


DataT = TypeVar("DataT")


class CloudEvent(BaseModel, Generic[DataT]):
    """CloudEvents 1.0 structured-mode envelope with modelgov's extension attributes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: str = Field(SPEC_VERSION, pattern=r"^1\.0$")
    id: str = Field(min_length=1, description="time-ordered unique id (UUIDv7)")
    source: str = Field(pattern=r"^modelgov/[a-z]+$")
    type: str = Field(pattern=r"^modelgov\.[a-z]+\.[a-z_]+\.[a-z_]+\.v[0-9]+$")
    subject: str = Field(min_length=1, description="the aggregate, e.g. model/credit-default")
    time: datetime
    datacontenttype: str = "application/json"
    data: DataT
    actor: str = Field(pattern=r"^(user|service|workflow):.+$")
    correlationid: str | None = None
    causationid: str | None = None
    traceparent: str | None = None

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must carry a timezone (RFC 3339)")
        return value.astimezone(UTC)

    @property
    def service(self) -> str:
        return self.type.split(".")[1]

    def canonical_bytes(self) -> bytes:
        """RFC 8785 bytes: the one serialization that is published, stored and hashed."""
        iso = self.time.isoformat()
        if type(self.data) is dict and iso.endswith("+00:00"):
            # What model_dump gives, without its walk over data (a decision's 30 inputs): data is
            # already JSON when made by make_event or parsed, and the time is UTC, written "Z".
            doc = {name: value for name in _FIELDS if (value := getattr(self, name)) is not None}
            doc["time"] = iso[:-6] + "Z"
            try:
                return canonical.dumps(doc)
            except (ValueError, TypeError):  # data holding what only model_dump turns into JSON
                pass
        return canonical.dumps(self.model_dump(mode="json", exclude_none=True))


_FIELDS = tuple(CloudEvent.model_fields)

# Parametrized once: pydantic's generic-class lookup would otherwise cost more than the parse.
AnyEvent = CloudEvent[dict[str, Any]]


def new_event_id() -> str:
    return str(uuid7())


def make_event(
    data: EventData,
    *,
    subject: str,
    actor: str,
    time: datetime,
    correlationid: str | None = None,
    causationid: str | None = None,
    traceparent: str | None = None,
    event_id: str | None = None,
) -> AnyEvent:
    """Wrap a typed payload in its envelope; the payload's class names the event type."""
    event_type = type(data).event_type
    return AnyEvent(
        id=event_id or new_event_id(),
        source=f"modelgov/{event_type.split('.')[1]}",
        type=event_type,
        subject=subject,
        time=time,
        data=data.model_dump(mode="json"),
        actor=actor,
        correlationid=correlationid,
        causationid=causationid,
        traceparent=traceparent,
    )


# The validator itself: model_validate_json's argument handling costs a third of a parse, and
# the audit chain parses every event (live and on replay).
_validate_json = AnyEvent.__pydantic_validator__.validate_json


def parse_event(raw: bytes) -> AnyEvent:
    """Parse and validate an envelope; raises ValueError with the reason when it is not one."""
    return _validate_json(raw)


# `data` checked to be a JSON object, as dict[str, Any] checks it, but left as parsed JSON: an
# object with no declared keys and extra keys ignored is never turned into Python objects.
_ANY_OBJECT = GetPydanticSchema(lambda _t, _h: core_schema.typed_dict_schema({}, extra_behavior="ignore"))
_validate_envelope = CloudEvent[Annotated[dict, _ANY_OBJECT]].__pydantic_validator__.validate_json


def parse_envelope(raw: bytes) -> CloudEvent:
    """parse_event's verdict on `raw`, for readers of the envelope alone (the audit chain): the
    same events pass and the same errors are raised, but the result's `data` is {}. Building
    data's objects is a fifth of a registry event's parse, more for a decision's inputs."""
    return _validate_envelope(raw)
