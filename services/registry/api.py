"""Registry routes: models, versions and their artifacts and cards, lifecycle, aliases."""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import ValidationError
from rfc8785 import CanonicalizationError
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from contracts import canonical
from contracts.registry.api import (
    AliasPublic,
    AliasSet,
    ModelCreate,
    ModelPublic,
    TransitionRequest,
    VersionCreated,
    VersionMetadata,
    VersionPublic,
    VersionStatus,
)
from services.registry import artifacts, card, domain, messaging, store
from services.registry.domain import Artifact, Step
from services.runtime.auth import Role, principal_of
from services.runtime.causes import Cause, cause_of
from services.runtime.errors import Problem, describe_validation, uncanonical
from services.runtime.params import ModelName, VersionNumber

router = APIRouter(prefix="/v1", tags=["registry"])

R = Role
# Scoring clients never touch the registry; regulators only read it.
Reader = principal_of(
    R.data_scientist, R.model_risk, R.compliance, R.operator, R.regulator, R.service, R.admin
)
ModelCreator = principal_of(R.data_scientist, R.service, R.admin)
Registrar = principal_of(R.data_scientist, R.service)
# Who may ask for some transition; the domain then checks the one asked for.
Mover = principal_of(R.data_scientist, R.service, R.model_risk, R.compliance, R.operator, R.admin)
AliasKeeper = principal_of(R.service, R.admin)

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["artifact", "metadata"],
                    "properties": {
                        "artifact": {"type": "string", "format": "binary",
                                     "description": "the model file: skops (preferred) or pickle"},
                        "metadata": {"type": "string", "description": "VersionMetadata as JSON"},
                    },
                }
            }
        },
    }
}
FILE_SUFFIX = {artifacts.SKOPS: "skops", artifacts.PICKLE: "pkl"}


# -- models -----------------------------------------------------------------------------------


@router.post("/models", status_code=201, response_model=ModelPublic)
def create_model(body: ModelCreate, request: Request, who: ModelCreator) -> ModelPublic:
    """Create a model: the governed unit (use case, risk tier, owner) its versions belong to."""
    cause = _origin(request, who)
    try:
        with _engine(request).begin() as conn:
            if store.get_model(conn, body.name) is not None:
                raise _duplicate(body.name)
            store.insert_model(conn, body, cause.time, who.actor)
            messaging.record(conn, cause, domain.create_model(body))
            created = store.get_model(conn, body.name)
    except IntegrityError as exc:  # created concurrently between our check and insert
        raise _duplicate(body.name) from exc
    messaging.published(request)
    return created


@router.get("/models", response_model=list[ModelPublic])
def list_models(request: Request, who: Reader) -> list[ModelPublic]:
    """List every model with its latest version and aliases."""
    with _engine(request).connect() as conn:
        return store.list_models(conn)


@router.get("/models/{name}", response_model=ModelPublic)
def get_model(name: ModelName, request: Request, who: Reader) -> ModelPublic:
    """One model with its latest version and aliases."""
    with _engine(request).connect() as conn:
        return _model(conn, name)


# -- versions ---------------------------------------------------------------------------------


@router.post("/models/{name}/versions", status_code=201, response_model=VersionCreated,
             openapi_extra=UPLOAD_BODY)
async def register_version(name: ModelName, request: Request, who: Registrar) -> VersionCreated:
    """Register a version: multipart `artifact` (scanned before acceptance) and `metadata` (JSON)."""
    # Async because it streams the upload; database and file work go to the thread pool.
    settings = request.app.state.settings
    await run_in_threadpool(_check_model_exists, _engine(request), name)
    vault = artifacts.ArtifactStore(settings.artifacts)
    upload = await artifacts.receive(request, vault, settings.max_artifact_bytes)
    try:
        spool = upload.artifact
        if spool is None:
            raise _unprocessable("multipart part 'artifact' is missing; send the model file in it")
        metadata = _parse_metadata(upload.metadata, settings.max_metadata_bytes)
        if spool.size == 0:
            raise _unprocessable("multipart part 'artifact' is empty")
        artifact_format = await run_in_threadpool(artifacts.scan, spool.path)
        # Kept before the row commits: a failed commit leaves an unreferenced immutable file, never a
        # version without its bytes.
        artifact = await run_in_threadpool(vault.keep, spool, artifact_format)
    finally:
        upload.discard()
    cause = _origin(request, who)
    version = await run_in_threadpool(_register, _engine(request), cause, name, artifact, metadata)
    messaging.published(request)
    return VersionCreated(version=version, artifact_sha256=artifact.sha256, status=VersionStatus.registered)


@router.get("/models/{name}/versions", response_model=list[VersionPublic])
def list_versions(name: ModelName, request: Request, who: Reader) -> list[VersionPublic]:
    """Every version of a model, oldest first."""
    with _engine(request).connect() as conn:
        _model(conn, name)
        return store.list_versions(conn, name)


@router.get("/models/{name}/versions/{version}", response_model=VersionPublic)
def get_version(name: ModelName, version: VersionNumber, request: Request, who: Reader) -> VersionPublic:
    """One version: status, artifact digest, metadata, aliases."""
    with _engine(request).connect() as conn:
        return _version(conn, name, version)


@router.get("/models/{name}/versions/{version}/artifact", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}}})
def get_artifact(name: ModelName, version: VersionNumber, request: Request, who: Reader) -> FileResponse:
    """The version's artifact bytes, with their sha256 as ETag and Digest."""
    with _engine(request).connect() as conn:
        found = _version(conn, name, version)
    path = artifacts.ArtifactStore(request.app.state.settings.artifacts).path_for(found.artifact_sha256)
    if not path.exists():
        raise Problem(500, "Internal Server Error",
                      f"artifact sha256:{found.artifact_sha256} of {_label(name, version)} is missing "
                      f"from the artifact store; restore it from backup")
    b64 = base64.b64encode(bytes.fromhex(found.artifact_sha256)).decode()
    headers = {
        "ETag": f'"sha256:{found.artifact_sha256}"',
        "Digest": f"sha-256={b64}",
        "Repr-Digest": f"sha-256=:{b64}:",
        "X-Artifact-Format": found.artifact_format,
    }
    filename = f"{name}-v{version}.{FILE_SUFFIX.get(found.artifact_format, 'bin')}"
    return FileResponse(path, media_type="application/octet-stream", filename=filename, headers=headers)


@router.get("/models/{name}/versions/{version}/card", response_class=Response,
            responses={200: {"content": {"text/markdown": {}, "text/html": {}}}})
def get_card(
    name: ModelName,
    version: VersionNumber,
    request: Request,
    who: Reader,
    card_format: Annotated[Literal["markdown", "html"], Query(alias="format")] = "markdown",
) -> Response:
    """The version's model card: purpose, data, features, metrics, fairness, policy, history."""
    with _engine(request).connect() as conn:
        model = _model(conn, name)
        found = _version(conn, name, version)
        history = store.version_history(conn, name, version)
    if card_format == "html":
        return Response(card.to_html(model, found, history), media_type="text/html; charset=utf-8")
    return Response(card.markdown(model, found, history), media_type="text/markdown; charset=utf-8")


@router.post("/models/{name}/versions/{version}/transitions", response_model=VersionPublic)
def transition_version(
    name: ModelName, version: VersionNumber, body: TransitionRequest, request: Request, who: Mover
) -> VersionPublic:
    """Move a version along its lifecycle: validated, approved, rejected, deployed or retired."""
    cause = _origin(request, who)
    with _engine(request).begin() as conn:
        lock = _lock(conn, name)
        current = _version(conn, name, version)
        event = domain.transition(current, body.to, who, body.comment)
        step = Step(body.to, cause.time, who.actor, body.comment)
        if not store.set_status(conn, lock, version, current.status, step):
            raise Problem(409, "Conflict", f"{_label(name, version)} changed meanwhile; read it and retry")
        messaging.record(conn, cause, event)
        moved = store.get_version(conn, name, version)
    messaging.published(request)
    return moved


# -- aliases ----------------------------------------------------------------------------------

# The pattern is documented, not enforced here: domain.check_alias_name refuses a bad alias with a
# message that says what an alias may be, clearer than a pattern mismatch.
AliasName = Annotated[str, Path(description="an alias, e.g. champion: a lowercase letter, then up to 62 "
                                            "lowercase letters, digits, '_' or '-'",
                                json_schema_extra={"pattern": domain.ALIAS_PATTERN.pattern})]


@router.get("/models/{name}/aliases/{alias}", response_model=VersionPublic)
def get_alias(name: ModelName, alias: AliasName, request: Request, who: Reader) -> VersionPublic:
    """The version an alias (champion, challenger, ...) names."""
    domain.check_alias_name(alias)
    with _engine(request).connect() as conn:
        model = _model(conn, name)
        if alias not in model.aliases:
            raise _alias_not_set(name, alias)
        return _version(conn, name, model.aliases[alias])


@router.put("/models/{name}/aliases/{alias}", response_model=AliasPublic)
def set_alias(name: ModelName, alias: AliasName, body: AliasSet, request: Request,
              who: AliasKeeper) -> AliasPublic:
    """Point an alias at a version: a workflow with approval evidence, or an admin with a reason."""
    domain.check_alias_name(alias)
    cause = _origin(request, who)
    with _engine(request).begin() as conn:
        lock = _lock(conn, name)
        target = _version(conn, name, body.version)
        current = store.get_alias(conn, lock, alias)
        event = domain.set_alias(alias, target, current, who, body.evidence, body.reason)
        if event is not None:
            store.put_alias(conn, lock, alias, body.version, cause.time, who.actor,
                            event.evidence, event.reason)
            messaging.record(conn, cause, event)
    if event is not None:
        messaging.published(request)
    return AliasPublic(name=name, alias=alias, version=body.version)


@router.delete("/models/{name}/aliases/{alias}", status_code=204, response_class=Response)
def remove_alias(
    name: ModelName, alias: AliasName, request: Request, who: AliasKeeper, reason: str | None = None
) -> Response:
    """Remove an alias; an admin (break-glass) must give `?reason=`."""
    domain.check_alias_name(alias)
    cause = _origin(request, who)
    with _engine(request).begin() as conn:
        lock = _lock(conn, name)
        current = store.get_alias(conn, lock, alias)
        if current is None:
            raise _alias_not_set(name, alias)
        event = domain.remove_alias(name, alias, current, who, reason)
        store.delete_alias(conn, lock, alias)
        messaging.record(conn, cause, event)
    messaging.published(request)
    return Response(status_code=204)


# -- helpers ----------------------------------------------------------------------------------


def _engine(request: Request) -> Engine:
    return request.app.state.runtime.engine


def _origin(request: Request, who) -> Cause:
    return cause_of(request, who)


def _register(engine: Engine, cause: Cause, name: str, artifact: Artifact, metadata: VersionMetadata) -> int:
    with engine.begin() as conn:
        lock = _lock(conn, name)
        version = store.insert_version(conn, lock, artifact, metadata, cause.time, cause.actor)
        messaging.record(conn, cause, domain.register_version(name, version, artifact, metadata))
    return version


def _parse_metadata(raw: bytes | None, limit: int) -> VersionMetadata:
    if raw is None:
        raise _unprocessable("multipart part 'metadata' is missing; send the version's metadata as JSON")
    try:
        metadata = VersionMetadata.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise _unprocessable(f"multipart part 'metadata' is not valid JSON ({errors[0]['msg']})") from exc
        located = [{**e, "loc": ("metadata", *e["loc"])} for e in errors]
        raise _unprocessable(describe_validation(located)) from exc
    # The registered event carries the metadata, and one NATS message holds 1 MiB by default:
    # an oversized event would stall the outbox, so it is refused here, where the caller can act.
    try:
        size = len(canonical.dumps(metadata.model_dump(mode="json", exclude_none=True)))
    except CanonicalizationError as exc:
        raise _unprocessable(f"metadata: {uncanonical(exc)}") from exc
    if size > limit:
        raise Problem(413, "Content Too Large",
                      f"the metadata is {size:,} bytes as canonical JSON; the limit is {limit:,} "
                      "(MODELGOV_MAX_METADATA_BYTES): shrink training_data.profile, e.g. build it "
                      "with a smaller sample_size, or fewer fairness / params details")
    return metadata


def _check_model_exists(engine: Engine, name: str) -> None:
    with engine.connect() as conn:
        _model(conn, name)


def _model(conn: Connection, name: str) -> ModelPublic:
    found = store.get_model(conn, name)
    if found is None:
        raise _no_model(name)
    return found


def _lock(conn: Connection, name: str) -> store.ModelLock:
    lock = store.lock_model(conn, name)
    if lock is None:
        raise _no_model(name)
    return lock


def _version(conn: Connection, name: str, version: int) -> VersionPublic:
    found = store.get_version(conn, name, version)
    if found is None:
        _model(conn, name)
        raise Problem(404, "Not Found", f"{_label(name, version)} does not exist; list them with "
                                        f"GET /v1/models/{name}/versions")
    return found


def _label(name: str, version: int) -> str:
    return f"version {version} of model '{name}'"


def _no_model(name: str) -> Problem:
    return Problem(404, "Not Found", f"model '{name}' does not exist; create it with POST /v1/models")


def _duplicate(name: str) -> Problem:
    return Problem(409, "Conflict", f"model '{name}' already exists; register a new version with "
                                    f"POST /v1/models/{name}/versions")


def _alias_not_set(name: str, alias: str) -> Problem:
    return Problem(404, "Not Found", f"alias '{alias}' is not set on model '{name}'")


def _unprocessable(detail: str) -> Problem:
    return Problem(422, "Unprocessable Content", detail)
