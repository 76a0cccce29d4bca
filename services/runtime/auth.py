"""Bearer tokens → principals with roles; every route declares the roles it admits."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from services.runtime.errors import Problem


class Role(StrEnum):
    data_scientist = "data_scientist"
    model_risk = "model_risk"
    compliance = "compliance"
    operator = "operator"
    regulator = "regulator"
    scoring_client = "scoring_client"
    service = "service"
    admin = "admin"


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[Role]

    @property
    def actor(self) -> str:
        """The CloudEvents `actor` extension: who caused a change."""
        kind = "service" if Role.service in self.roles else "user"
        return f"{kind}:{self.name}"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenBook:
    """Looks principals up by a digest of their token, so the book holds no usable secrets."""

    def __init__(self, principals: dict[str, Principal]) -> None:
        self._by_digest = {_digest(t): p for t, p in principals.items()}

    def find(self, token: str) -> Principal | None:
        return self._by_digest.get(_digest(token))

    @classmethod
    def from_file(cls, path: Path) -> TokenBook:
        """Accepts `{role: token}` (the local stack's file) or `[{token, name, roles}]`."""
        if not path.exists():
            return cls({})
        return cls.from_json(json.loads(path.read_text()))

    @classmethod
    def from_json(cls, doc: dict | list) -> TokenBook:
        if isinstance(doc, dict):
            return cls({tok: Principal(f"local-{r}", frozenset({Role(r)})) for r, tok in doc.items()})
        return cls(
            {e["token"]: Principal(e["name"], frozenset(Role(r) for r in e["roles"])) for e in doc}
        )


def require(*roles: Role) -> Callable[[Request], Principal]:
    """A dependency admitting a bearer token whose principal has one of `roles`."""
    allowed = frozenset(roles)

    # async, though it awaits nothing: FastAPI runs a sync dependency in a worker thread, a hop
    # that cost more than the check itself on the scoring hot path
    async def dependency(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Problem(401, "Unauthorized", "send 'Authorization: Bearer <token>'",
                          headers={"WWW-Authenticate": "Bearer"})
        principal = request.app.state.tokens.find(token.strip())
        if principal is None:
            raise Problem(401, "Unauthorized", "the bearer token is not known",
                          headers={"WWW-Authenticate": "Bearer"})
        if not principal.roles & allowed:
            needed = ", ".join(sorted(allowed))
            raise Problem(403, "Forbidden", f"this action needs one of the roles: {needed}")
        return principal

    return dependency


def principal_of(*roles: Role) -> type[Principal]:
    """`Annotated` alias so a route reads `who: principal_of(Role.admin)`."""
    return Annotated[Principal, Depends(require(*roles))]  # type: ignore[return-value]
