"""Open Inference Protocol v2 (KServe / Triton / MLServer) REST wire types for scoring.

Field names follow the protocol's JSON objects ($inference_request, $inference_response,
$metadata_model_response, ...) so a stock client reads them unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Datatype = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                   "FP16", "FP32", "FP64", "BYTES"]
# The protocol's parameters are name → scalar; scoring also reads `entity_ids`, a list of N ids.
Parameters = dict[str, Any]


class Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerLive(Wire):
    live: bool


class ServerReady(Wire):
    ready: bool


class ServerNotReady(Wire):
    """/v2/health/ready's 400: not ready, and why."""

    ready: Literal[False]
    error: str


class ModelReady(Wire):
    name: str
    ready: bool


class ServerMetadata(Wire):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(Wire):
    name: str
    datatype: Datatype
    shape: list[int] = Field(description="-1 for a dimension of any size")


class ModelMetadata(Wire):
    name: str
    versions: list[str] = Field(description="the versions that decide: champion, then canary")
    platform: str
    inputs: list[TensorMetadata] = Field(description="one per feature of the champion's feature_schema")
    outputs: list[TensorMetadata]


class RequestInput(Wire):
    name: str = Field(description="a feature name from the version's feature_schema")
    shape: list[int] = Field(description="[N] (or [N, 1]): one element per row")
    datatype: Datatype
    parameters: Parameters | None = None
    data: Any = Field(default=None, description="flat or nested lists in row-major order; absent "
                                                "when the tensor is sent as binary data")


class RequestOutput(Wire):
    name: str
    parameters: Parameters | None = None


class InferenceRequest(Wire):
    id: str | None = Field(default=None, max_length=200)
    parameters: Parameters | None = Field(
        default=None, description="`entity_ids`: N ids for sticky routing; else `<id>-<row>`")
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(Wire):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferenceResponse(Wire):
    model_name: str
    model_version: str = Field(description="the version that decided every row; several joined by "
                                           "',' when a canary took some (see output model_version)")
    id: str
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class InferenceError(Wire):
    """Every error on a /v2 route ($inference_error_response): what to fix, or why not."""

    error: str
