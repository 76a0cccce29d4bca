"""How services reach the registry's HTTP API: base URL and the service's bearer token."""

from __future__ import annotations

import json

import httpx

from services.runtime.settings import Settings


def registry_token(settings: Settings) -> str | None:
    """`registry_token`, else the tokens file's `service` principal (local stack and tests)."""
    if settings.registry_token:
        return settings.registry_token
    try:
        doc = json.loads(settings.tokens_path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(doc, dict):
        return doc.get("service")
    return next((e["token"] for e in doc if "service" in e.get("roles", [])), None)


def registry_http(settings: Settings, transport: httpx.AsyncBaseTransport | None = None,
                  timeout: float = 30) -> httpx.AsyncClient:
    token = registry_token(settings)
    return httpx.AsyncClient(
        base_url=settings.registry_base_url, timeout=timeout, transport=transport,
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
