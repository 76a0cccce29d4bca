"""Every event type modelgov publishes, and their JSON Schemas as checked in under schemas/."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

from contracts.envelope import CloudEvent, EventData
from contracts.monitoring import events as monitoring_events
from contracts.registry import events as registry_events
from contracts.scoring import events as scoring_events

SCHEMA_DIR = Path(__file__).parent / "schemas"

EVENT_TYPES: dict[str, type[EventData]] = {
    cls.event_type: cls
    for cls in [*registry_events.ALL, *scoring_events.ALL, *monitoring_events.ALL]
}


def event_schema(cls: type[EventData]) -> dict[str, Any]:
    """The full envelope's schema with `type` pinned and `data` typed by the payload model."""
    envelope = CloudEvent[cls]  # type: ignore[valid-type]
    schema = envelope.model_json_schema(mode="serialization")
    schema["title"] = cls.event_type
    schema["properties"]["type"] = {"const": cls.event_type, "type": "string"}
    schema["$id"] = f"https://modelgov.dev/schemas/{cls.event_type}.json"
    return schema


def all_schemas() -> dict[str, str]:
    """File name → schema text, deterministic so a diff means a contract change."""
    out = {"cloudevent.json": CloudEvent[dict[str, Any]].model_json_schema()}
    out.update({f"{t}.json": event_schema(cls) for t, cls in sorted(EVENT_TYPES.items())})
    return {name: json.dumps(s, indent=2, sort_keys=True) + "\n" for name, s in out.items()}


def write(mode: Literal["write", "check"] = "write") -> list[str]:
    """Write the schemas, or in check mode return the names that differ from the files."""
    differ = []
    expected = all_schemas()
    for name, text in expected.items():
        path = SCHEMA_DIR / name
        if not path.exists() or path.read_text() != text:
            differ.append(name)
            if mode == "write":
                path.write_text(text)
    stale = {p.name for p in SCHEMA_DIR.glob("*.json")} - set(expected)
    differ.extend(sorted(stale))
    if mode == "write":
        for name in stale:
            (SCHEMA_DIR / name).unlink()
    return differ


if __name__ == "__main__":
    changed = write("check" if "--check" in sys.argv else "write")
    print("\n".join(changed) or "schemas up to date")
    sys.exit(1 if changed and "--check" in sys.argv else 0)
