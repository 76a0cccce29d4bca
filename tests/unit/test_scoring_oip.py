"""OIP v2 tensors to rows and back: no server, just the protocol's arithmetic."""

from __future__ import annotations

import pytest

from contracts.scoring.oip import InferenceRequest
from services.scoring.oip import InvalidInput, entity_ids, parse_request, rows_of, to_binary


def request(*inputs: dict, **fields) -> InferenceRequest:
    return InferenceRequest.model_validate({"inputs": list(inputs), **fields})


def test_nested_and_flat_data_give_the_same_rows():
    flat = request({"name": "age", "shape": [2], "datatype": "INT64", "data": [30, 41]},
                   {"name": "purpose", "shape": [2], "datatype": "BYTES", "data": ["car", "other"]})
    nested = request({"name": "age", "shape": [2, 1], "datatype": "INT64", "data": [[30], [41]]},
                     {"name": "purpose", "shape": [2, 1], "datatype": "BYTES", "data": [["car"], ["other"]]})
    expected = [{"age": 30, "purpose": "car"}, {"age": 41, "purpose": "other"}]
    assert rows_of(flat, b"") == rows_of(nested, b"") == expected


def test_binary_tensors_after_the_json_header_decode_to_the_same_values():
    numbers, words = to_binary("FP64", [0.5, 2.25]), to_binary("BYTES", ["car", "é"])
    header = request(
        {"name": "x", "shape": [2], "datatype": "FP64", "parameters": {"binary_data_size": len(numbers)}},
        {"name": "w", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(words)}},
    ).model_dump_json(exclude_none=True).encode()
    body, blobs = parse_request(header + numbers + words, str(len(header)))
    assert rows_of(body, blobs) == [{"x": 0.5, "w": "car"}, {"x": 2.25, "w": "é"}]


def test_entity_ids_come_from_the_parameters_or_the_request_id():
    tensor = {"name": "x", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}
    assert entity_ids(request(tensor), "req-1", 2) == ["req-1-0", "req-1-1"]
    assert entity_ids(request(tensor, parameters={"entity_ids": ["a", "b"]}), "r", 2) == ["a", "b"]
    with pytest.raises(InvalidInput, match="a list of 2 strings"):
        entity_ids(request(tensor, parameters={"entity_ids": ["a"]}), "r", 2)


def test_a_header_length_beyond_the_body_is_named():
    with pytest.raises(InvalidInput, match="Inference-Header-Content-Length is '999'"):
        parse_request(b'{"inputs": []}', "999")
