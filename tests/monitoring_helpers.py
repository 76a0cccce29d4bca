"""A fraud model with ten numeric features for the monitoring tests: its training data and
reference profile, traffic drawn from the same distribution or shifted, and the three services
(registry over real HTTP, scoring, monitoring) on one NATS."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import httpx
import numpy as np
from fastapi.testclient import TestClient

from services.monitoring.app import create_app as create_monitoring
from services.monitoring.reference import build_profile
from services.registry.app import create_app as create_registry
from services.runtime.settings import Settings
from services.scoring.app import create_app as create_scoring
from tests.conftest import bearer
from tests.registry_helpers import approve, register
from tests.scoring_helpers import served

MODEL = "card-fraud"
FEATURES = [f"f{i}" for i in range(10)]
MEANS = np.arange(10) * 10.0 + 50
SDS = np.arange(10) + 5.0
SCHEMA = [{"name": f, "dtype": "float"} for f in FEATURES]
POLICY = {"review_at": 0.5, "decline_at": 0.8}


def draw(n: int, seed: int, shift_sd: dict[str, float] | None = None) -> np.ndarray:
    """n rows from the training distribution; `shift_sd` moves features by that many sds."""
    x = np.random.default_rng(seed).normal(MEANS, SDS, (n, len(FEATURES)))
    for name, k in (shift_sd or {}).items():
        j = FEATURES.index(name)
        x[:, j] += k * SDS[j]
    return x


@cache
def fitted() -> tuple[Any, dict]:
    """The pipeline and its version metadata, with the reference profile of its training data."""
    import skops.io
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    x = draw(5000, seed=1)
    z = (x - MEANS) / SDS
    y = (np.random.default_rng(2).random(5000) < 1 / (1 + np.exp(-(z[:, 0] + z[:, 1] - 2.5)))).astype(int)
    pipeline = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(x, y)
    scores = pipeline.predict_proba(x)[:, 1]
    profile = build_profile({f: x[:, j] for j, f in enumerate(FEATURES)}, SCHEMA, scores, labels=y,
                            adverse=scores >= POLICY["decline_at"],
                            decision_threshold=POLICY["decline_at"])
    metadata = {
        "feature_schema": SCHEMA,
        "training_data": {"fingerprint": "sha256:" + "ef" * 32, "rows": 5000,
                          "profile": profile.model_dump(mode="json")},
        "params": {"estimator": "LogisticRegression",
                   "input": "2-D array, one column per feature in feature_schema order"},
        "metrics": {"auc": 0.75},
        "decision_policy": POLICY,
    }
    return skops.io.dumps(pipeline), metadata


def requests_for(x: np.ndarray, prefix: str) -> list[dict]:
    return [{"entity_id": f"{prefix}-{i}", "features": dict(zip(FEATURES, map(float, row), strict=True))}
            for i, row in enumerate(x)]


@contextmanager
def monitoring_stack(settings: Settings) -> Iterator[tuple[httpx.Client, TestClient, TestClient]]:
    """Registry (uvicorn, real HTTP), scoring and monitoring (in-process); the fraud model
    registered, approved and deployed as champion v1. Yields (registry, scoring, monitoring)."""
    with served(create_registry(settings)) as registry_url, \
            httpx.Client(base_url=registry_url, timeout=30) as registry:
        settings = settings.model_copy(update={"registry_url": registry_url})
        body = {"name": MODEL, "description": "card-not-present fraud", "owner": "fraud-team",
                "use_case": "fraud", "risk_tier": "high", "protected_attributes": []}
        assert registry.post("/v1/models", json=body, headers=bearer("data_scientist")).status_code == 201
        artifact, metadata = fitted()
        created = register(registry, MODEL, artifact=artifact, meta=metadata)
        assert created.status_code == 201, created.text
        approve(registry, 1, MODEL)
        with TestClient(create_scoring(settings)) as scoring, \
                TestClient(create_monitoring(settings)) as monitoring:
            deployed = scoring.put(f"/v1/deployments/{MODEL}", json={"champion": 1},
                                   headers=bearer("operator"))
            assert deployed.status_code == 200, deployed.text
            yield registry, scoring, monitoring


def score_all(scoring: TestClient, items: list[dict], chunk: int = 500) -> list[dict]:
    out = []
    for i in range(0, len(items), chunk):
        response = scoring.post(f"/v1/score/{MODEL}/batch", json={"items": items[i:i + chunk]},
                                headers=bearer("scoring_client"))
        assert response.status_code == 200, response.text
        out += response.json()["items"]
    return out
