"""Scoring tables: one deployment row per model, and the outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)

from contracts.scoring.api import Canary, DeploymentPublic, DeploymentSpec
from services.runtime.db import utc
from services.runtime.outbox import outbox_table

metadata = MetaData()

deployments = Table(
    "deployments",
    metadata,
    Column("model", String(100), primary_key=True),
    Column("champion", Integer, nullable=False),
    Column("canary_version", Integer),
    Column("canary_percent", Float),
    Column("shadow", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(200), nullable=False),
)

outbox = outbox_table(metadata)


def get_deployment(conn: Connection, model: str) -> DeploymentPublic | None:
    row = conn.execute(select(deployments).where(deployments.c.model == model)).first()
    return None if row is None else _public(row)


def list_deployments(conn: Connection) -> list[DeploymentPublic]:
    return [_public(r) for r in conn.execute(select(deployments).order_by(deployments.c.model))]


def put_deployment(conn: Connection, model: str, spec: DeploymentSpec, at: datetime, by: str,
                   exists: bool) -> None:
    """Insert or replace the model's row; a concurrent first insert fails on the primary key."""
    values = {
        "champion": spec.champion,
        "canary_version": spec.canary.version if spec.canary else None,
        "canary_percent": spec.canary.percent if spec.canary else None,
        "shadow": list(spec.shadow),
        "updated_at": at,
        "updated_by": by,
    }
    if exists:
        conn.execute(update(deployments).where(deployments.c.model == model).values(**values))
    else:
        conn.execute(insert(deployments).values(model=model, **values))


def _public(row) -> DeploymentPublic:
    canary = None if row.canary_version is None else Canary(version=row.canary_version,
                                                            percent=row.canary_percent)
    return DeploymentPublic(model=row.model, champion=row.champion, canary=canary,
                            shadow=list(row.shadow), updated_at=utc(row.updated_at),
                            updated_by=row.updated_by)
