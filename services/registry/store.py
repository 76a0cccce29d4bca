"""Registry tables and queries: models, their numbered versions, aliases, and the outbox.

Queries take an open Connection, so a command's state rows and its outbox row share one
transaction. They return contract models (`ModelPublic`, `VersionPublic`) or domain values,
never rows. Every write to a model starts with `lock_model`, an UPDATE of the model's row: on
PostgreSQL it holds the row lock, on SQLite the write lock, until commit, so concurrent commands on
one model run one after the other (version numbers 1, 2, 3... without gaps or duplicates).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    insert,
    select,
    update,
)

from contracts.registry.api import (
    ModelCreate,
    ModelPublic,
    VersionMetadata,
    VersionPublic,
    VersionStatus,
)
from services.registry.domain import Artifact, Step
from services.runtime.db import BigId, utc
from services.runtime.outbox import outbox_table

metadata = MetaData()

models = Table(
    "models",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False),
    Column("description", Text, nullable=False),
    Column("owner", String(200), nullable=False),
    Column("use_case", String(16), nullable=False),
    Column("risk_tier", String(16), nullable=False),
    Column("protected_attributes", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("latest_version", Integer),
    # Bumped by every command on the model: the statement that takes the model's lock.
    Column("revision", Integer, nullable=False),
    UniqueConstraint("name", name="uq_models_name"),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("model_id", BigId, ForeignKey("models.id", name="fk_model_versions_model"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("artifact_sha256", String(64), nullable=False),
    Column("artifact_size", BigInteger, nullable=False),
    Column("artifact_format", String(16), nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("history", JSON, nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("registered_by", String(255), nullable=False),
    UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model_id", BigId, primary_key=True),
    Column("alias", String(63), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("set_at", DateTime(timezone=True), nullable=False),
    Column("set_by", String(255), nullable=False),
    Column("evidence", Text),
    Column("reason", Text),
    ForeignKeyConstraint(
        ["model_id", "version"],
        ["model_versions.model_id", "model_versions.version"],
        name="fk_model_aliases_version",
    ),
)

outbox = outbox_table(metadata)


@dataclass(frozen=True)
class ModelLock:
    """A model row locked for the rest of the transaction."""

    id: int
    latest_version: int | None

    @property
    def next_version(self) -> int:
        return (self.latest_version or 0) + 1


# -- models -----------------------------------------------------------------------------------


def insert_model(conn: Connection, command: ModelCreate, at: datetime, by: str) -> None:
    conn.execute(
        insert(models).values(**command.model_dump(mode="json"), created_at=at, created_by=by, revision=0)
    )


def get_model(conn: Connection, name: str) -> ModelPublic | None:
    row = conn.execute(select(models).where(models.c.name == name)).one_or_none()
    if row is None:
        return None
    return _model_public(row, _aliases_by_model(conn, [row.id])[row.id])


def list_models(conn: Connection) -> list[ModelPublic]:
    rows = conn.execute(select(models).order_by(models.c.name)).all()
    aliases = _aliases_by_model(conn, [r.id for r in rows])
    return [_model_public(r, aliases[r.id]) for r in rows]


def lock_model(conn: Connection, name: str) -> ModelLock | None:
    """Lock the model's row until commit; None when there is no such model."""
    row = conn.execute(
        update(models)
        .where(models.c.name == name)
        .values(revision=models.c.revision + 1)
        .returning(models.c.id, models.c.latest_version)
    ).one_or_none()
    return None if row is None else ModelLock(row.id, row.latest_version)


def _model_public(row, aliases: dict[str, int]) -> ModelPublic:
    return ModelPublic(
        name=row.name,
        description=row.description,
        owner=row.owner,
        use_case=row.use_case,
        risk_tier=row.risk_tier,
        protected_attributes=row.protected_attributes,
        created_at=utc(row.created_at),
        created_by=row.created_by,
        latest_version=row.latest_version,
        aliases=aliases,
    )


def _aliases_by_model(conn: Connection, model_ids: list[int]) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = defaultdict(dict)
    if model_ids:
        query = (
            select(model_aliases.c.model_id, model_aliases.c.alias, model_aliases.c.version)
            .where(model_aliases.c.model_id.in_(model_ids))
            .order_by(model_aliases.c.alias)
        )
        for row in conn.execute(query):
            out[row.model_id][row.alias] = row.version
    return out


# -- versions ---------------------------------------------------------------------------------


def insert_version(
    conn: Connection,
    lock: ModelLock,
    artifact: Artifact,
    metadata_: VersionMetadata,
    at: datetime,
    by: str,
) -> int:
    """Add the model's next version (the model must be locked); returns its number."""
    version = lock.next_version
    first = Step(VersionStatus.registered, at, by)
    conn.execute(
        insert(model_versions).values(
            model_id=lock.id,
            version=version,
            status=VersionStatus.registered.value,
            artifact_sha256=artifact.sha256,
            artifact_size=artifact.size,
            artifact_format=artifact.format,
            metadata=metadata_.model_dump(mode="json"),
            history=[_step_json(first)],
            registered_at=at,
            registered_by=by,
        )
    )
    conn.execute(update(models).where(models.c.id == lock.id).values(latest_version=version))
    return version


def get_version(conn: Connection, name: str, version: int) -> VersionPublic | None:
    found = _versions(conn, name, version)
    return found[0] if found else None


def list_versions(conn: Connection, name: str) -> list[VersionPublic]:
    return _versions(conn, name)


def version_history(conn: Connection, name: str, version: int) -> list[Step]:
    query = (
        select(model_versions.c.history)
        .join(models, models.c.id == model_versions.c.model_id)
        .where(models.c.name == name, model_versions.c.version == version)
    )
    history = conn.scalar(query) or []
    return [_step(entry) for entry in history]


def set_status(
    conn: Connection,
    lock: ModelLock,
    version: int,
    expected: VersionStatus,
    step: Step,
) -> bool:
    """Move the version from `expected` to `step.status`; False if it was no longer `expected`."""
    where = (
        model_versions.c.model_id == lock.id,
        model_versions.c.version == version,
        model_versions.c.status == expected.value,
    )
    history = conn.scalar(select(model_versions.c.history).where(*where))
    if history is None:
        return False
    result = conn.execute(
        update(model_versions)
        .where(*where)
        .values(status=step.status.value, history=[*history, _step_json(step)])
    )
    return result.rowcount == 1


def _versions(conn: Connection, name: str, version: int | None = None) -> list[VersionPublic]:
    v = model_versions
    query = (
        select(v, models.c.name)
        .join(models, models.c.id == v.c.model_id)
        .where(models.c.name == name)
        .order_by(v.c.version)
    )
    if version is not None:
        query = query.where(v.c.version == version)
    rows = conn.execute(query).all()
    if not rows:
        return []
    aliases: dict[int, list[str]] = defaultdict(list)
    alias_rows = conn.execute(
        select(model_aliases.c.alias, model_aliases.c.version)
        .where(model_aliases.c.model_id == rows[0].model_id)
        .order_by(model_aliases.c.alias)
    )
    for row in alias_rows:
        aliases[row.version].append(row.alias)
    return [_version_public(r, aliases[r.version]) for r in rows]


def _version_public(row, aliases: list[str]) -> VersionPublic:
    return VersionPublic(
        name=row.name,
        version=row.version,
        status=row.status,
        artifact_sha256=row.artifact_sha256,
        artifact_size=row.artifact_size,
        artifact_format=row.artifact_format,
        metadata=VersionMetadata.model_validate(row.metadata),
        registered_at=utc(row.registered_at),
        registered_by=row.registered_by,
        aliases=aliases,
    )


def _step_json(step: Step) -> dict:
    return {"status": step.status.value, "at": step.at.isoformat(), "actor": step.actor,
            "comment": step.comment}


def _step(entry: dict) -> Step:
    return Step(VersionStatus(entry["status"]), datetime.fromisoformat(entry["at"]), entry["actor"],
                entry.get("comment", ""))


# -- aliases ----------------------------------------------------------------------------------


def get_alias(conn: Connection, lock: ModelLock, alias: str) -> int | None:
    return conn.scalar(
        select(model_aliases.c.version).where(
            model_aliases.c.model_id == lock.id, model_aliases.c.alias == alias
        )
    )


def put_alias(
    conn: Connection,
    lock: ModelLock,
    alias: str,
    version: int,
    at: datetime,
    by: str,
    evidence: str | None,
    reason: str | None,
) -> None:
    values = dict(version=version, set_at=at, set_by=by, evidence=evidence, reason=reason)
    key = (model_aliases.c.model_id == lock.id, model_aliases.c.alias == alias)
    if conn.execute(update(model_aliases).where(*key).values(**values)).rowcount == 0:
        conn.execute(insert(model_aliases).values(model_id=lock.id, alias=alias, **values))


def delete_alias(conn: Connection, lock: ModelLock, alias: str) -> None:
    conn.execute(
        delete(model_aliases).where(model_aliases.c.model_id == lock.id, model_aliases.c.alias == alias)
    )


