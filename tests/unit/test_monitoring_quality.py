"""Data quality of a window against the feature schema: missing, out of range, unseen categories."""

from __future__ import annotations

import pytest

from contracts.monitoring.policy import QualityPolicy
from services.monitoring.quality import data_quality

SCHEMA = [{"name": "age", "dtype": "int", "min": 18, "max": 100},
          {"name": "income", "dtype": "float", "min": 0},
          {"name": "purpose", "dtype": "string", "categories": ["car", "home"]},
          {"name": "note", "dtype": "string"}]


def window(n: int = 100) -> dict[str, list]:
    return {"age": [30] * n, "income": [1000.0] * n, "purpose": ["car"] * n, "note": ["x"] * n}


def test_a_clean_window_is_within_policy_on_every_feature():
    # act
    figures = data_quality(SCHEMA, window(), QualityPolicy())
    # check
    assert [(f.feature, f.degraded, f.reason) for f in figures] == [
        (s["name"], False, "within policy") for s in SCHEMA]
    assert figures[0].out_of_range_rate == 0.0 and figures[0].unseen_rate is None
    assert figures[2].unseen_rate == 0.0 and figures[3].unseen_rate is None  # no categories to check


def test_missing_out_of_range_and_unseen_values_are_counted_and_judged():
    current = window()
    current["age"][:10] = [None, float("nan"), "n/a", float("inf")] + [17, 101] * 3
    current["income"][:3] = [-1.0, -5.0, None]
    current["purpose"][:5] = ["boat", "boat", "plane", None, None]
    # act
    age, income, purpose, _ = data_quality(SCHEMA, current, QualityPolicy())
    # check: missing counts None, NaN, ±inf and non-numbers; ranges are over the present values
    assert age.missing_rate == pytest.approx(0.04) and age.out_of_range_rate == pytest.approx(6 / 96)
    assert age.degraded and age.reason == "out of range 0.0625 > 0.01"
    assert income.out_of_range_rate == pytest.approx(2 / 99) and income.degraded
    assert purpose.unseen_categories == ["boat", "plane"] and purpose.unseen_rate == pytest.approx(3 / 98)
    assert purpose.reason == "unseen categories 0.0306 > 0.01"


def test_a_feature_absent_from_the_window_is_all_missing():
    current = window()
    del current["income"]
    # act
    income = data_quality(SCHEMA, current, QualityPolicy())[1]
    # check
    assert (income.missing_rate, income.out_of_range_rate, income.degraded) == (1.0, None, True)


def test_an_empty_window_has_no_rates_and_no_verdict():
    figures = data_quality(SCHEMA, {name: [] for name in window()}, QualityPolicy())
    assert all(f.missing_rate is None and not f.degraded and f.reason == "no values in the window"
               for f in figures)
