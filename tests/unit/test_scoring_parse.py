"""The hot route's body parser (fastpath._parse) builds what FastAPI builds, or hands the body on."""

from __future__ import annotations

import json
import math
import random
from types import SimpleNamespace

from contracts.scoring.api import ScoreRequest
from services.scoring import fastpath

JSON = SimpleNamespace(headers={"content-type": "application/json"})
EDGES = [
    b'{"entity_id":"a","features":{"x":1}}', b'\xef\xbb\xbf{"entity_id":"a","features":{"x":1}}',
    b'{"entity_id":"a","features":{"x":NaN,"y":Infinity,"z":-Infinity,"w":1e400}}',
    b'{"entity_id":"a","features":{"x":1,"x":2.5}}', b'{"entity_id":"a","entity_id":"b","features":{}}',
    b'{"entity_id":"\\ud800","features":{"x":1}}',
    b'{"entity_id":"a","features":{"x":123456789012345678901234567890}}',
    b'{"entity_id":"a","features":{"x":-0.0,"y":1.0,"z":0.1e1,"v":1E2,"u":2.5e-324,"t":1.7976931348623159e308}}',
    b'{"entity_id":"a","features":{"x":[1,2],"y":{"k":1},"z":true,"v":null,"u":"\\u0000"}}',
    '{"entity_id":"a","features":{"x":1}}'.encode("utf-16"), b' {"entity_id":"a","features":{"x":1}}\n',
    b'{"entity_id":"a","features":{"x":1}}x', b'{"entity_id":"a","features":{"x":"\xff"}}',
    b'{"entity_id":"a","features":{"x":01}}', b'{"entity_id":"a","features":{"x":1.00000000000000000001}}',
    b'{"entity_id":"a","features":{},"attributes":{"sex":"f"}}', b'{"entity_id":"","features":{}}',
    b'{"entity_id":"a","features":{},"extra":1}', b'{"entity_id":7,"features":{}}', b'[]', b'',
    b'{"entity_id":"a","features":{"\xc3\xa9":"\xe6\xbc\xa2"}}', b'[' * 5000 + b']' * 5000,
]


def framework(body: bytes) -> ScoreRequest | None:
    """What FastAPI builds: json.loads, then validation in Python mode."""
    try:
        return ScoreRequest.model_validate(json.loads(body))
    except (ValueError, RecursionError):
        return None


def same(a: ScoreRequest, b: ScoreRequest) -> bool:
    def typed(request):
        values = [(k, type(v), "nan" if isinstance(v, float) and math.isnan(v) else repr(v))
                  for k, v in request.features.items()]
        return request.entity_id, values, request.attributes
    return typed(a) == typed(b)


def random_body(rng: random.Random) -> bytes:
    values = [1, -3, 2**60, 0.1, -2.5e-7, 1e22, "card", True, None, math.nan, math.inf, [1], {"a": 1}]
    features = {f"f{i}": rng.choice(values) for i in range(rng.randint(0, 8))}
    text = json.dumps({"entity_id": rng.choice(["e1", "", "é"]), "features": features,
                       **({"attributes": {"sex": "f"}} if rng.random() < 0.3 else {})})
    return text.encode()


def test_the_parser_builds_the_frameworks_request_or_hands_the_body_on():
    rng = random.Random(8)
    for body in [*EDGES, *(random_body(rng) for _ in range(2000))]:
        parsed, expected = fastpath._parse(JSON, body), framework(body)
        if parsed is None:
            continue  # FastAPI answers it: decided or refused exactly as before
        assert expected is not None and same(parsed, expected), body[:120]


def test_the_common_bodies_are_parsed_here_not_handed_on():
    assert fastpath._parse(JSON, EDGES[0]) is not None
    assert fastpath._parse(SimpleNamespace(headers={}), EDGES[0]) is not None
    assert fastpath._parse(SimpleNamespace(headers={"content-type": "text/plain"}), EDGES[0]) is None
