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


FEATURES = ["income", "debt_ratio", "age"]


def test_one_matrix_of_rows_maps_its_columns_to_the_features_in_schema_order():
    """MLServer's and KServe's scikit-learn servers take one [N, F] tensor: so does scoring."""
    nested = request({"name": "input-0", "shape": [2, 3], "datatype": "FP64",
                      "data": [[5000.0, 0.5, 30], [7000.0, 1.5, 41]]})
    flat = request({"name": "input-0", "shape": [2, 3], "datatype": "FP64",
                    "data": [5000.0, 0.5, 30, 7000.0, 1.5, 41]})
    numbers = to_binary("FP64", [5000.0, 0.5, 30, 7000.0, 1.5, 41])
    header = request({"name": "input-0", "shape": [2, 3], "datatype": "FP64",
                      "parameters": {"binary_data_size": len(numbers)}}).model_dump_json(exclude_none=True)
    binary, blobs = parse_request(header.encode() + numbers, str(len(header)))
    expected = [{"income": 5000.0, "debt_ratio": 0.5, "age": 30},
                {"income": 7000.0, "debt_ratio": 1.5, "age": 41}]
    assert rows_of(nested, b"", FEATURES) == rows_of(flat, b"", FEATURES) == expected
    assert rows_of(binary, blobs, FEATURES) == expected


def test_a_matrix_of_the_wrong_width_or_size_says_what_is_expected():
    wide = request({"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(InvalidInput, match=r"shape \[1, 4\]; a single tensor of rows needs shape \[N, 3\] "
                                           r"with N >= 1, its columns the features income, debt_ratio, age"):
        rows_of(wide, b"", FEATURES)
    short = request({"name": "input-0", "shape": [2, 3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]})
    with pytest.raises(InvalidInput, match=r"shape \[2, 3\] but 3 values"):
        rows_of(short, b"", FEATURES)
    # check: without the features (no version to read them from) a matrix is refused as before
    with pytest.raises(InvalidInput, match=r"send \[N\] \(or \[N, 1\]\)"):
        rows_of(wide, b"")


def test_a_single_column_named_after_a_feature_is_still_that_feature():
    column = request({"name": "age", "shape": [2, 1], "datatype": "INT64", "data": [[30], [41]]})
    assert rows_of(column, b"", ["age"]) == [{"age": 30}, {"age": 41}]
    # and one under another name is the matrix of a one-feature model
    unnamed = request({"name": "input-0", "shape": [2, 1], "datatype": "INT64", "data": [[30], [41]]})
    assert rows_of(unnamed, b"", ["age"]) == [{"age": 30}, {"age": 41}]
    # but a one-dimensional tensor under another name is a column, refused by the feature checks later
    flat = request({"name": "input-0", "shape": [2], "datatype": "INT64", "data": [30, 41]})
    assert rows_of(flat, b"", ["age"]) == [{"input-0": 30}, {"input-0": 41}]


def test_the_openapi_documents_v2_errors_in_the_protocols_shape():
    """A client generated from /openapi.json reads /v2 errors as they come: 400 for bad input and
    every other status as {"error": ...}, no FastAPI 422 and no problem+json, while /v1 keeps its
    problem+json."""
    from services.scoring.app import create_app

    schema = create_app().openapi()
    error = {"$ref": "#/components/schemas/InferenceError"}
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            responses = operation["responses"]
            if path.startswith("/v2"):
                assert "422" not in responses, path
                assert responses["default"]["content"]["application/json"]["schema"] == error, path
                # 400 where there is input to refuse, or readiness to deny; not on /v2/health/live
                assert ("400" in responses) == ("{model}" in path or path.endswith("/ready")), path
            else:
                assert "application/problem+json" in responses["default"]["content"], path
    infer = schema["paths"]["/v2/models/{model}/infer"]["post"]["responses"]
    assert infer["400"]["content"]["application/json"]["schema"] == error


@pytest.mark.parametrize("outputs", [["score", "decision_id"], ["decision", "model_version", "decision_id"],
                                     ["score", "decision", "decision_id", "model_version"]])
@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("binary", [(), ("score",), ("decision", "decision_id")])
def test_a_response_is_the_document_the_protocol_models_write(outputs, rows, binary):
    from contracts.scoring.api import ScoreResponse
    from contracts.scoring.oip import InferenceResponse, ResponseOutput
    from services.scoring.oip import HEADER_LENGTH, OUTPUTS, encode_response

    decided = [ScoreResponse(decision_id=f"d{i}", score=[0.1234567890123, 1e-7, 0.5][i], decision="allow",
                             model_version=1 + i % 2, route="champion", reason_codes=[]) for i in range(rows)]
    answer = encode_response("fraud", "req-1", {n: n in binary for n in outputs}, decided)
    datatypes = {o.name: o.datatype for o in OUTPUTS}
    versions = ",".join(map(str, sorted({d.model_version for d in decided})))
    tensors, blobs = [], b""
    for n in outputs:
        values = [getattr(d, n) for d in decided]
        if n in binary:
            raw = to_binary(datatypes[n], values)
            blobs += raw
            tensors.append(ResponseOutput(name=n, shape=[rows], datatype=datatypes[n],
                                          parameters={"binary_data_size": len(raw)}))
        else:
            tensors.append(ResponseOutput(name=n, shape=[rows], datatype=datatypes[n], data=values))
    expected = InferenceResponse(model_name="fraud", model_version=versions, id="req-1", outputs=tensors)
    header = expected.model_dump_json(exclude_none=True).encode()
    if not set(binary) & set(outputs):
        assert answer.body == header
        assert answer.media_type == "application/json"
    else:
        assert answer.body == header + blobs and answer.headers[HEADER_LENGTH] == str(len(header))
        assert answer.media_type == "application/octet-stream"


def test_flat_and_nested_data_flatten_alike():
    from services.scoring.oip import flatten

    assert flatten([1.5, 2, "x"]) == flatten([[1.5], [2, ["x"]]]) == [1.5, 2, "x"]
    assert flatten(7) == [7]
