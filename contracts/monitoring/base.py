"""The base of monitoring's figure, profile and policy models: frozen, strict, finite numbers only."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Figure(BaseModel):
    # allow_inf_nan=False: these models go into events hashed as RFC 8785 JSON, which has no NaN or
    # Infinity; an undefined figure is None, never a non-finite float.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
