"""contracts.canonical writes the bytes rfc8785 writes, for every value, or raises as it does."""

from __future__ import annotations

import math
import random
import struct
from enum import IntEnum

import pytest
import rfc8785

from contracts import canonical

EDGE_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.1, 1e-4, 9.999e-5, 1e-6, 1e-7, 1.5e-7, 1e15, 1e16, 9.99e15,
               123456789012345680000.0, 1e20, 1e21, 1e22, 5e-324, 2.2250738585072014e-308,
               1.7976931348623157e308, 0.30000000000000004, 333333333.3333333, -12.5, 2**53 + 0.0]
EDGE_STRINGS = ["", "plain", 'quote " and \\ backslash', "\b\f\n\r\t", "\x00\x01\x1f\x7f", "é ü 漢字",
                "emoji 😀", "\u2028\u2029", "/slash/"]
KEYS = ["a", "B", "b", "_", "10", "1", "", "é", "\u20ac", "😀", "\ufb33", "z" * 40]


def _float(rng: random.Random) -> float:
    pick = rng.random()
    if pick < 0.3:
        return rng.choice(EDGE_FLOATS) * rng.choice([1, -1])
    if pick < 0.6:
        return round(rng.uniform(-1e6, 1e6), rng.randint(0, 9))
    while True:  # any finite double, by its bits
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            return value


def _value(rng: random.Random, depth: int = 0):
    pick = rng.randint(0, 9 if depth < 3 else 6)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.choice([0, 1, -1, 2**53 - 1, -(2**53) + 1, rng.randint(-10**9, 10**9)])
    if pick in (3, 4):
        return _float(rng)
    if pick in (5, 6):
        tail = "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 5)))
        return rng.choice(EDGE_STRINGS) + tail
    if pick in (7, 8):
        return {rng.choice(KEYS) + rng.choice(["", "x", "é"]): _value(rng, depth + 1)
                for _ in range(rng.randint(0, 6))}
    return [_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]


def test_the_bytes_are_rfc8785s_for_20000_random_documents():
    rng = random.Random(8785)
    for _ in range(20_000):
        doc = _value(rng)
        assert canonical.dumps(doc) == rfc8785.dumps(doc), doc


@pytest.mark.parametrize("value", [EDGE_FLOATS, EDGE_STRINGS, {k: k for k in KEYS}, (1, 2.5, "x"),
                                   {"n": 2**53 - 1}])
def test_edge_values_match(value):
    assert canonical.dumps(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, 2**53, {"k": -(2**60)}, "\ud800", {1: "x"},
                                   object()])
def test_what_rfc8785_refuses_is_refused_the_same_way(value):
    with pytest.raises(Exception) as reference:
        rfc8785.dumps(value)
    with pytest.raises(type(reference.value)):
        canonical.dumps(value)


def _decision_like(rng: random.Random) -> dict:
    """A document of the shape scoring publishes, every value one orjson is given."""
    def number() -> float | int:
        pick = rng.random()
        if pick < 0.15:
            return rng.randint(-(2**53) + 1, 2**53 - 1)
        if pick < 0.3:  # counts and flags sent as 0.0, 3.0: written as ints
            return float(rng.choice([0, 1, 2, 3, rng.randint(-(2**53) + 1, 2**53 - 1)])) * rng.choice([1, -1])
        while True:
            value = rng.uniform(-1, 1) * 10 ** rng.uniform(-5, 16)
            if not value.is_integer() and 1e-5 <= abs(value) < 1e16:
                return value
    def text() -> str:
        return rng.choice(EDGE_STRINGS) + "".join(chr(rng.randint(0, 0x2FF)) for _ in range(3))

    return {"id": text(), "data": {"inputs": {f"f{i}": number() for i in range(30)},
                                   "codes": [{"feature": text(), "impact": number()} for _ in range(4)],
                                   "flag": rng.choice([True, False, None]), "note": text()}}


def _taken(value) -> bool:
    return canonical._for_orjson(value) is not canonical._NOT


def test_documents_orjson_writes_are_rfc8785s_bytes():
    rng = random.Random(2025)
    for _ in range(3000):
        doc = _decision_like(rng)
        assert _taken(doc)
        assert canonical.dumps(doc) == rfc8785.dumps(doc), doc


def test_floats_orjson_writes_have_rfc8785s_digits_and_the_rest_are_left_to_the_writers():
    rng = random.Random(7)
    floats = [rng.uniform(-1, 1) * 10 ** rng.uniform(-7, 17) for _ in range(100_000)]
    floats += [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(50_000)]
    floats += [float(rng.randint(-(2**53), 2**53)) for _ in range(10_000)]
    floats += [*EDGE_FLOATS, 1e-5, math.nextafter(1e-5, 0), 1.5e-6, 9.5e-6, 2.0**52 + 0.5, 4503599627370495.5,
               2.0**53 - 1, -(2.0**53) + 1, 2.0**53 + 2]
    taken = 0
    for value in floats:
        if _taken(value):
            taken += 1
            assert canonical.dumps(value) == rfc8785.dumps(value), repr(value)
        else:
            assert (value.is_integer() and abs(value) > canonical.MAX_EXACT_INT
                    or not 1e-5 <= abs(value) < 1e16), repr(value)
    assert taken > 90_000


@pytest.mark.parametrize("value", [{"k": 2.0}, {"k": -0.0}, [0.5, {"k": -0.0}], {"n": {"m": [3.0, 0.25]}},
                                   2.0**53 - 1, 0.0])
def test_whole_floats_go_to_orjson_as_the_ints_jcs_writes_and_the_value_is_left_as_it_was(value):
    before = repr(value)
    assert _taken(value)
    assert canonical.dumps(value) == rfc8785.dumps(value)
    assert repr(value) == before


@pytest.mark.parametrize("value", [{"k": 1.5e-6}, {"k": 1e16 + 2}, {"k": 2.0**53 + 2}, {"é": 0.5}, ("x", 0.5),
                                   {"k": IntEnum("E", "a").a}, [0.5, {"k": 1e-7}]])
def test_what_orjson_would_write_otherwise_is_left_to_the_writers(value):
    # exponent forms, whole floats past 2**53, non-ASCII keys, tuples, subclasses: JCS's bytes all the same
    assert not _taken(value)
    assert canonical.dumps(value) == rfc8785.dumps(value)
