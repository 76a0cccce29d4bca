"""Concurrent requests' rows decided in one model call, only where the scores cannot change."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from services.scoring.coalesce import MAX_ROWS, Coalescer, row_wise


def test_requests_of_one_turn_share_one_call_and_each_gets_its_own_rows():
    calls = []

    def decide_many(rows):
        calls.append(list(rows))
        return [r * 10 for r in rows]

    async def scenario():
        coalescer = Coalescer(decide_many)
        return await asyncio.gather(*(coalescer.decide([i, i + 100]) for i in range(5)))

    results = asyncio.run(scenario())
    assert calls == [[0, 100, 1, 101, 2, 102, 3, 103, 4, 104]]
    assert results == [[i * 10, (i + 100) * 10] for i in range(5)]


def test_a_lone_request_waits_for_no_one_and_calls_are_capped():
    calls = []

    def decide_many(rows):
        calls.append(len(rows))
        return list(rows)

    async def scenario():
        coalescer = Coalescer(decide_many)
        alone = await coalescer.decide([1])
        many = await asyncio.gather(*(coalescer.decide([i]) for i in range(MAX_ROWS + 6)))
        return alone, many

    alone, many = asyncio.run(scenario())
    assert alone == [1] and many == [[i] for i in range(MAX_ROWS + 6)]
    assert calls == [1, MAX_ROWS, 6]


def test_when_the_shared_call_fails_only_the_failing_request_fails():
    def decide_many(rows):
        if "bad" in rows:
            raise ValueError("cannot score")
        return [r.upper() for r in rows]

    async def scenario():
        coalescer = Coalescer(decide_many)
        return await asyncio.gather(coalescer.decide(["a"]), coalescer.decide(["bad"]),
                                    coalescer.decide(["c"]), return_exceptions=True)

    first, failed, third = asyncio.run(scenario())
    assert first == ["A"] and third == ["C"] and isinstance(failed, ValueError)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, 6)) * [1, 5, 50, 0.1, 2, 3]
    y = (x[:, 0] + x[:, 1] / 5 + rng.normal(size=400) > 0).astype(int)
    return x, y


def test_tree_models_score_each_row_the_same_to_the_bit_in_any_batch(data):
    x, y = data
    model = make_pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=30)).fit(x, y)
    assert row_wise(model)
    alone = np.array([model.predict_proba(x[i:i + 1])[0, 1] for i in range(len(x))])
    for size in (2, 7, 16, 64):
        batched = np.concatenate([model.predict_proba(x[i:i + size])[:, 1]
                                  for i in range(0, len(x), size)])
        assert np.array_equal(batched, alone), size


def test_models_whose_rounding_depends_on_the_batch_are_not_coalesced(data):
    x, y = data
    assert not row_wise(make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y))
    assert not row_wise(RandomForestClassifier(n_estimators=5).fit(x, y))
    assert not row_wise(object())


def test_the_lr_fast_path_gives_every_row_its_one_row_score_in_any_batch(data):
    from contracts.registry.api import FeatureSpec
    from services.scoring.exact import ScaledLogistic

    x, y = data
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    schema = [FeatureSpec(name=f"f{i}", dtype="float") for i in range(x.shape[1])]
    fast = ScaledLogistic.of(model, schema, adverse_index=1)
    alone = np.array([model.predict_proba(x[i:i + 1])[0, 1] for i in range(len(x))])
    for size in (1, 2, 7, 16, 64):
        batched = np.concatenate([fast.scores(x[i:i + size]) for i in range(0, len(x), size)])
        assert np.array_equal(batched, alone), size


def test_shared_calls_and_their_rows_are_on_the_metrics_page():
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry, generate_latest

    from services.scoring.metrics import ScoringMetrics

    registry = CollectorRegistry()
    metrics = ScoringMetrics(registry)
    coalescer = Coalescer(lambda rows: list(rows))
    loaded = [SimpleNamespace(model="fraud", version=3, coalescer=coalescer),
              SimpleNamespace(model="credit", version=1, coalescer=None)]
    metrics.watch_coalescing(lambda: loaded)

    async def scenario():
        await asyncio.gather(coalescer.decide([1]), coalescer.decide([2, 3]))
        await coalescer.decide([4])

    asyncio.run(scenario())
    page = generate_latest(registry).decode()
    assert 'modelgov_scoring_coalesced_calls_total{model="fraud",version="3"} 2.0' in page
    assert 'modelgov_scoring_coalesced_rows_total{model="fraud",version="3"} 4.0' in page
    assert 'model="credit"' not in page
