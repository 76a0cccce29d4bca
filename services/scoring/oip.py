"""Open Inference Protocol v2 routes (KServe / Triton / MLServer clients work unchanged).

An infer request is N rows sent column-wise: one input tensor per feature, shape [N]; or, as
MLServer's and KServe's scikit-learn servers take them, one [N, F] tensor under any other name
(e.g. `input-0`) whose F columns are the deciding version's features in its feature_schema order.
Its rows take the same path as `POST /v1/score/{model}/batch` (routing, feature checks, one durable
`decision.made` per row before the response), then come back as output tensors. Tensors may be
JSON (`data`) or Triton's binary tensor data extension (`binary_data_size`, the JSON header's
length in `Inference-Header-Content-Length`), which tritonclient uses by default.

A request may name the version (`/v2/models/{model}/versions/{version}/...`, tritonclient's
`model_version=`): its rows are then decided by exactly that version, route "direct", whatever the
deployment says (see api.check_pinned for which versions may decide).

Errors are the protocol's `{"error": "..."}` (status 400-599): invalid input is 400 as in KServe
(422 on /v1), the other statuses are /v1's (401, 403, 404 unknown model, 409 no champion, 413,
503), and the message names what to fix.
"""

from __future__ import annotations

import math
import struct
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError

from contracts.envelope import new_event_id
from contracts.scoring.api import ScoreRequest, ScoreResponse
from contracts.scoring.oip import (
    InferenceError,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    RequestInput,
    ServerLive,
    ServerMetadata,
    ServerNotReady,
    ServerReady,
    TensorMetadata,
)
from services.runtime.auth import Principal, Role, principal_of
from services.runtime.errors import Problem, describe_validation
from services.runtime.health import readiness, why_not_ready
from services.runtime.params import ModelName, VersionNumber
from services.scoring import api, domain

HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "scikit-learn"
ROWS_SHOWN = 5
R = Role
Reader = principal_of(R.scoring_client, R.service, R.operator, R.admin, R.regulator, R.model_risk,
                      R.compliance, R.data_scientist)

DATATYPE_OF = {"float": "FP64", "int": "INT64", "string": "BYTES", "bool": "BOOL"}
NUMPY_OF = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "<i1",
            "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
OUTPUTS = [TensorMetadata(name="score", datatype="FP64", shape=[-1]),
           TensorMetadata(name="decision", datatype="BYTES", shape=[-1]),
           TensorMetadata(name="decision_id", datatype="BYTES", shape=[-1]),
           TensorMetadata(name="model_version", datatype="INT64", shape=[-1])]
# decision_id links each row to its decision.made event: it is returned even when not asked for.
ALWAYS = "decision_id"


class InvalidInput(ValueError):
    """The request cannot be read as N rows; the message says what to change."""


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def error_of(exc: Problem) -> JSONResponse:
    """A /v1 problem in the protocol's shape: invalid input is 400 here, as in KServe."""
    return _error(400 if exc.status == 422 else exc.status, exc.detail, exc.headers)


class OipRoute(APIRoute):
    """Every error on a v2 route, auth and body validation included, in the protocol's shape."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Problem as exc:
                return error_of(exc)
            except RequestValidationError as exc:
                return _error(400, describe_validation(list(exc.errors())))

        return route


router = APIRouter(tags=["inference v2"], route_class=OipRoute, responses={
    "default": {"model": InferenceError, "description": "an error; error says what to do"},
})
# Bad input (a path parameter, a request body) is 400 on routes that take any.
_INVALID = {400: {"model": InferenceError, "description": "the request is invalid; error says how"}}
_NOT_READY = {400: {"model": InferenceError,
                   "description": "not ready, or the request is invalid; error says which"}}


# -- health and metadata ------------------------------------------------------------------------


@router.get("/v2/health/live", response_model=ServerLive)
def get_server_live() -> ServerLive:
    """The process is up (as /healthz)."""
    return ServerLive(live=True)


@router.get("/v2/health/ready", response_model=ServerReady,
            responses={400: {"model": ServerNotReady, "description": "not ready; error says why"}})
async def get_server_ready(request: Request) -> Response:
    """Ready when the database answers and NATS is connected (as /readyz); 400 when not, per the spec."""
    checks = await readiness(request)
    if all(checks.values()):
        return JSONResponse(ServerReady(ready=True).model_dump())
    not_ready = ServerNotReady(ready=False, error=why_not_ready(checks))
    return JSONResponse(not_ready.model_dump(), status_code=400)


@router.get("/v2", response_model=ServerMetadata)
def get_server_metadata(request: Request) -> ServerMetadata:
    """Server name, version and the protocol extensions it supports."""
    return ServerMetadata(name="modelgov-scoring", version=request.app.version, extensions=EXTENSIONS)


@router.get("/v2/models/{model}", response_model=ModelMetadata, responses=_INVALID)
async def get_model_metadata(model: ModelName, request: Request, who: Reader) -> ModelMetadata:
    """The champion's inputs (one per feature of its feature_schema) and the decision outputs."""
    deployment = await _deployment(request, model)
    rt = api.runtime_of(request)
    champion = await api.loaded_version(rt, api.metrics_of(request), model, deployment.champion)
    versions = [deployment.champion, *([deployment.canary.version] if deployment.canary else [])]
    inputs = [TensorMetadata(name=s.name, datatype=DATATYPE_OF[s.dtype], shape=[-1]) for s in champion.schema]
    return ModelMetadata(name=model, versions=[str(v) for v in versions], platform=PLATFORM, inputs=inputs,
                         outputs=OUTPUTS)


@router.get("/v2/models/{model}/ready", response_model=ModelReady,
            responses=_NOT_READY)
async def get_model_ready(model: ModelName, request: Request, who: Reader) -> ModelReady:
    """200 when the champion (and canary) are loaded; 4xx with the reason otherwise."""
    deployment = await _deployment(request, model)
    loader = api.loader_of(api.runtime_of(request))
    for version in [deployment.champion, *([deployment.canary.version] if deployment.canary else [])]:
        if loader.cached(model, version) is None:
            raise Problem(400, "Bad Request", f"version {version} of model '{model}' is not loaded yet; "
                                              f"retry shortly, or see the scoring log if it stays so")
    return ModelReady(name=model, ready=True)


@router.get("/v2/models/{model}/versions/{version}", response_model=ModelMetadata,
            responses=_INVALID)
async def get_version_metadata(model: ModelName, version: VersionNumber, request: Request,
                               who: Reader) -> ModelMetadata:
    """That version's inputs (one per feature of its feature_schema) and the decision outputs."""
    info = await api.pinned_record(api.runtime_of(request), model, version)
    inputs = [TensorMetadata(name=s.name, datatype=DATATYPE_OF[s.dtype], shape=[-1])
              for s in info.metadata.feature_schema]
    return ModelMetadata(name=model, versions=[str(version)], platform=PLATFORM, inputs=inputs,
                         outputs=OUTPUTS)


@router.get("/v2/models/{model}/versions/{version}/ready", response_model=ModelReady,
            responses=_NOT_READY)
async def get_version_ready(model: ModelName, version: VersionNumber, request: Request,
                            who: Reader) -> ModelReady:
    """200 when that version is loaded; 4xx with the reason otherwise (asking starts its load)."""
    rt = api.runtime_of(request)
    refused = domain.why_not_pinned(await api.pinned_record(rt, model, version))
    if refused:
        raise Problem(400, "Bad Request", f"version {version} of model '{model}' {refused}")
    if api.loader_of(rt).cached(model, version) is None:
        # Clients poll readiness before they infer (tritonclient's is_model_ready): load it now.
        api.prewarmer_of(rt).versions(model, [version])
        raise Problem(400, "Bad Request", f"version {version} of model '{model}' is loading; retry "
                                          f"shortly, or see the scoring log if it stays so")
    return ModelReady(name=model, ready=True)


async def _deployment(request: Request, model: str):
    rt = api.runtime_of(request)
    deployment = await api.deployments_of(rt).get(model)
    if deployment is None:
        raise await api.why_not_deployed(api.loader_of(rt), model)
    return deployment


# -- inference ----------------------------------------------------------------------------------


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """A JSON Schema with its `$defs` references replaced by their (non-recursive) definitions."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    return [_inline(v, defs) for v in schema] if isinstance(schema, list) else schema


# The body is read by hand (JSON, or JSON then binary tensors), so OpenAPI is told its shape.
_REQUEST_SCHEMA = InferenceRequest.model_json_schema()
_REQUEST_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": _inline(_REQUEST_SCHEMA, _REQUEST_SCHEMA.get("$defs", {}))}}}}


@router.post("/v2/models/{model}/infer", response_model=InferenceResponse, responses=_INVALID,
             openapi_extra=_REQUEST_BODY)
async def infer(model: ModelName, request: Request, who: api.Scorer) -> Response:
    """Decide for N rows sent as tensors, exactly as /v1/score batch: one decision.made per row."""
    return await infer_rows(model, request, who, version=None)


@router.post("/v2/models/{model}/versions/{version}/infer", response_model=InferenceResponse,
             responses=_INVALID, openapi_extra=_REQUEST_BODY)
async def infer_version(model: ModelName, version: VersionNumber, request: Request,
                        who: api.Scorer) -> Response:
    """Decide with exactly that version (route "direct"): one decision.made per row, no shadows."""
    return await infer_rows(model, request, who, version=version)


async def infer_rows(model: str, request: Request, who: Principal, version: int | None,
                     raw: bytes | None = None) -> Response:
    """Both infer routes' work (also called by the scoring fast path, with the body it read);
    raises Problem."""
    if raw is None:
        raw = await request.body()
    try:
        body, blobs = parse_request(raw, request.headers.get(HEADER_LENGTH))
        features = await _matrix_columns(request, model, version) if _one_matrix(body) else None
        rows = rows_of(body, blobs, features)
        outputs = requested_outputs(body)
    except InvalidInput as exc:
        raise Problem(400, "Bad Request", str(exc)) from exc
    limit = request.app.state.settings.scoring_max_batch
    if len(rows) > limit:
        raise Problem(413, "Content Too Large", f"the request holds {len(rows)} rows; the limit is {limit}: "
                                                f"split it")
    request_id = body.id or new_event_id()
    try:
        entities = entity_ids(body, request_id, len(rows))
        items = [ScoreRequest(entity_id=e, features=f) for e, f in zip(entities, rows, strict=True)]
    except (InvalidInput, ValidationError) as exc:
        raise Problem(400, "Bad Request", f"parameters.entity_ids: {exc}") from exc
    try:
        decided = await api.decide(request, who, model, items, batch=True, version=version)
    except Problem as exc:
        if exc.status == 422 and exc.extra.get("errors"):
            raise Problem(400, "Bad Request", describe_rows(exc.extra["errors"], model)) from exc
        raise
    return encode_response(model, request_id, outputs, decided)


def _one_matrix(body: InferenceRequest) -> bool:
    """Whether the request could be a single [N, F] tensor of rows (a column's may be [N, 1] too)."""
    return len(body.inputs) == 1 and len(body.inputs[0].shape) == 2


async def _matrix_columns(request: Request, model: str, version: int | None) -> Sequence[str]:
    """The features a [N, F] tensor's columns stand for: the named version's, else the champion's
    (a canary with other features needs one tensor per feature)."""
    rt = api.runtime_of(request)
    if version is not None:
        return [s.name for s in (await api.pinned_record(rt, model, version)).metadata.feature_schema]
    deployment = await _deployment(request, model)
    champion = await api.loaded_version(rt, api.metrics_of(request), model, deployment.champion)
    return champion.feature_names


def parse_request(raw: bytes, header_length: str | None) -> tuple[InferenceRequest, bytes]:
    """The JSON header, and the binary tensors that follow it when the client sent any."""
    size = len(raw)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(raw):
            raise InvalidInput(f"{HEADER_LENGTH} is {header_length!r}; it must be the JSON header's "
                               f"length in bytes, at most the body's {len(raw)}")
        size = int(header_length)
    try:
        body = InferenceRequest.model_validate_json(raw[:size])
    except ValidationError as exc:
        errors = [{k: v for k, v in e.items() if k != "input"} for e in exc.errors()]
        raise InvalidInput(describe_validation(errors)) from exc
    return body, raw[size:]


def rows_of(body: InferenceRequest, blobs: bytes,
            features: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The tensors turned into N feature dicts, as /v1/score takes them: one tensor per feature,
    or, given the deciding version's `features`, a single [N, F] tensor not named after one."""
    columns = _tensor_values(body, blobs)
    if features is not None and _one_matrix(body) and body.inputs[0].name not in features:
        return _matrix_rows(body.inputs[0], columns[body.inputs[0].name], features)
    for tensor in body.inputs:
        _check_shape(tensor, len(columns[tensor.name]))
    counts = {name: len(values) for name, values in columns.items()}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"'{k}' {v}" for k, v in counts.items())
        raise InvalidInput(f"inputs hold different numbers of rows ({shown}); every feature needs one "
                           f"value per row")
    n = next(iter(counts.values()))
    if n == 0:
        raise InvalidInput("the inputs hold no rows; send shape [N] with N >= 1")
    return [{name: values[i] for name, values in columns.items()} for i in range(n)]


def _tensor_values(body: InferenceRequest, blobs: bytes) -> dict[str, list[Any]]:
    """Each input's values, row-major, from its JSON `data` or its share of the binary tail."""
    columns: dict[str, list[Any]] = {}
    offset = 0
    for tensor in body.inputs:
        if tensor.name in columns:
            raise InvalidInput(f"input '{tensor.name}' is sent twice; send one tensor per feature")
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(blobs):
                raise InvalidInput(f"input '{tensor.name}': binary_data_size {size!r} does not fit the "
                                   f"{len(blobs) - offset} binary bytes left in the body")
            columns[tensor.name] = from_binary(tensor, blobs[offset:offset + size])
            offset += size
        elif tensor.data is None:
            raise InvalidInput(f"input '{tensor.name}' has no data; send `data` or binary_data_size")
        else:
            columns[tensor.name] = flatten(tensor.data)
    if offset != len(blobs):
        raise InvalidInput(f"{len(blobs) - offset} binary bytes follow the tensors; check "
                           f"{HEADER_LENGTH} and each input's binary_data_size")
    return columns


def _matrix_rows(tensor: RequestInput, values: list[Any], features: Sequence[str]) -> list[dict[str, Any]]:
    n, width = tensor.shape
    if width != len(features) or n < 1:
        raise InvalidInput(f"input '{tensor.name}' has shape {tensor.shape}; a single tensor of rows "
                           f"needs shape [N, {len(features)}] with N >= 1, its columns the features "
                           f"{', '.join(features)} in that order (or send one tensor per feature)")
    if len(values) != n * width:
        raise InvalidInput(f"input '{tensor.name}' has shape {tensor.shape} but {len(values)} values; "
                           f"they must agree")
    return [dict(zip(features, values[i * width:(i + 1) * width], strict=True)) for i in range(n)]


def _check_shape(tensor: RequestInput, count: int) -> None:
    shape = tensor.shape
    if not shape or any(d < 0 for d in shape) or math.prod(shape[1:]) != 1:
        raise InvalidInput(f"input '{tensor.name}' has shape {shape}; send [N] (or [N, 1]): one value "
                           f"per row")
    if shape[0] != count:
        raise InvalidInput(f"input '{tensor.name}' has shape {shape} but {count} values; they must agree")


def flatten(data: Any) -> list[Any]:
    """Row-major values from flat or nested lists (the spec allows both); a scalar is one value."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(item, list) for item in data):
        return list(data)  # flat already (a row's values, as clients send them)
    out: list[Any] = []
    for item in data:
        out.extend(flatten(item) if isinstance(item, list) else [item])
    return out


def from_binary(tensor: RequestInput, raw: bytes) -> list[Any]:
    """A binary tensor's values: little-endian numbers, or BYTES as 4-byte length + UTF-8."""
    if tensor.datatype != "BYTES":
        width = np.dtype(NUMPY_OF[tensor.datatype]).itemsize
        if len(raw) % width:
            raise InvalidInput(f"input '{tensor.name}': {len(raw)} bytes is not a whole number of "
                               f"{tensor.datatype} values")
        return np.frombuffer(raw, dtype=NUMPY_OF[tensor.datatype]).tolist()
    values, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise InvalidInput(f"input '{tensor.name}': BYTES data ends inside a length prefix")
        (length,) = struct.unpack_from("<I", raw, at)
        chunk = raw[at + 4:at + 4 + length]
        if len(chunk) != length:
            raise InvalidInput(f"input '{tensor.name}': a BYTES element claims {length} bytes, "
                               f"{len(chunk)} are left")
        try:
            values.append(chunk.decode())
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"input '{tensor.name}': a BYTES element is not UTF-8 text") from exc
        at += 4 + length
    return values


def entity_ids(body: InferenceRequest, request_id: str, n: int) -> list[str]:
    """`parameters.entity_ids` (N ids: sticky routing per entity), else `<request id>-<row>`."""
    given = (body.parameters or {}).get("entity_ids")
    if given is None:
        return [f"{request_id}-{i}" for i in range(n)]
    if not isinstance(given, list) or len(given) != n or not all(isinstance(e, str) for e in given):
        raise InvalidInput(f"send a list of {n} strings, one entity id per row")
    return given


def describe_rows(errors: Sequence[dict[str, Any]], model: str) -> str:
    """/v1's per-row feature problems as one line per input and problem, naming the rows."""
    rows: dict[tuple[str, str], list[int]] = defaultdict(list)
    for e in errors:
        rows[(e["feature"], e["problem"])].append(e["row"])
    parts = []
    for (feature, problem), where in rows.items():
        shown = ", ".join(map(str, where[:ROWS_SHOWN])) + (", …" if len(where) > ROWS_SHOWN else "")
        parts.append(f"input '{feature}' {problem} (row{'s' if len(where) > 1 else ''} {shown})")
    return "; ".join(parts) + f"; see GET /v2/models/{model} for the inputs expected"


# -- the response ---------------------------------------------------------------------------------


def requested_outputs(body: InferenceRequest) -> dict[str, bool]:
    """Output name → binary or not: those asked for (all by default), decision_id always."""
    binary_default = bool((body.parameters or {}).get("binary_data_output", False))
    wanted = {o.name: bool((o.parameters or {}).get("binary_data", binary_default))
              for o in body.outputs or []} or {o.name: binary_default for o in OUTPUTS}
    unknown = sorted(set(wanted) - {o.name for o in OUTPUTS})
    if unknown:
        raise InvalidInput(f"unknown output(s) {', '.join(unknown)}; this model has "
                           f"{', '.join(o.name for o in OUTPUTS)}")
    wanted.setdefault(ALWAYS, binary_default)
    return wanted


def encode_response(model: str, request_id: str, wanted: dict[str, bool],
                    decided: list[ScoreResponse]) -> Response:
    """The decisions as output tensors, JSON or binary per output (each output is named after
    the ScoreResponse field it holds)."""
    datatypes = {o.name: o.datatype for o in OUTPUTS}
    outputs, blobs = [], []
    for name, binary in wanted.items():
        output = {"name": name, "shape": [len(decided)], "datatype": datatypes[name]}
        values = [getattr(d, name) for d in decided]
        if binary:
            blobs.append(to_binary(datatypes[name], values))
            output["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            output["data"] = values
        outputs.append(output)
    # The document InferenceResponse's model_dump_json writes (the same bytes, tested), by orjson
    # at a fifth of the cost of building the models first.
    versions = ",".join(map(str, sorted({d.model_version for d in decided})))
    header = orjson.dumps({"model_name": model, "model_version": versions, "id": request_id,
                           "outputs": outputs})
    if not blobs:
        return Response(header, media_type="application/json")
    return Response(header + b"".join(blobs), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(header))})


def to_binary(datatype: str, values: list[Any]) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in (str(v).encode() for v in values))
    return np.asarray(values, dtype=NUMPY_OF[datatype]).tobytes()
