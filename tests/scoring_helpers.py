"""Credit models for the scoring tests: a linear pipeline and a gradient-boosted one on the same
synthetic applicants, their schema and training profile, and a registry served over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import httpx
import numpy as np
import uvicorn
from fastapi.testclient import TestClient

from deploy.servers import free_port
from services.registry.app import create_app as create_registry
from services.runtime.settings import Settings
from services.scoring.app import create_app as create_scoring
from tests.conftest import bearer
from tests.registry_helpers import approve, model_body, register

PURPOSES = ["business", "car", "education", "other"]
SCHEMA = [
    {"name": "income", "dtype": "float", "min": 0, "max": 1_000_000},
    {"name": "debt_ratio", "dtype": "float", "min": 0, "max": 5},
    {"name": "age", "dtype": "int", "min": 18, "max": 100},
    {"name": "purpose", "dtype": "string", "categories": PURPOSES},
]
POLICY = {"review_at": 0.35, "decline_at": 0.6}
PROTECTED = ["sex", "age_group"]  # as the German Credit demo declares them; neither is a feature


@cache
def training_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    n = 2000
    income = rng.gamma(4, 12_000, n).clip(0, 1_000_000)
    debt = rng.uniform(0, 3, n)
    age = rng.integers(18, 80, n)
    purpose = rng.choice(PURPOSES, n, p=[0.2, 0.4, 0.25, 0.15])
    logit = -1.0 + 2.0 * debt - income / 40_000 - (age - 40) / 40 + 1.2 * (purpose == "business")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    x = np.empty((n, 4), dtype=object)
    x[:, 0], x[:, 1], x[:, 2], x[:, 3] = income, debt, age.astype(float), purpose
    return x, y


@cache
def linear_pipeline():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    prep = ColumnTransformer([("categorical", OneHotEncoder(handle_unknown="ignore"), [3]),
                              ("numeric", StandardScaler(), [0, 1, 2])])
    return Pipeline([("prep", prep), ("model", LogisticRegression(max_iter=1000))]).fit(*training_data())


@cache
def boosted_pipeline():
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    prep = ColumnTransformer([("categorical", OrdinalEncoder(), [3])], remainder="passthrough")
    model = HistGradientBoostingClassifier(max_iter=60, random_state=0)
    return Pipeline([("prep", prep), ("model", model)]).fit(*training_data())


@cache
def skops_of(kind: str) -> bytes:
    import skops.io

    return skops.io.dumps(linear_pipeline() if kind == "linear" else boosted_pipeline())


def profile() -> dict[str, Any]:
    """The reference profile as deploy/demo.py writes it: build_profile over the training rows."""
    from services.monitoring.reference import build_profile

    x, y = training_data()
    columns = {spec["name"]: x[:, j] for j, spec in enumerate(SCHEMA)}
    scores = linear_pipeline().predict_proba(x)[:, 1]
    return build_profile(columns, SCHEMA, scores=scores, labels=y,
                         decision_threshold=POLICY["decline_at"]).model_dump(mode="json")


def version_metadata(kind: str = "linear") -> dict[str, Any]:
    return {
        "feature_schema": SCHEMA,
        "training_data": {"fingerprint": "sha256:" + "cd" * 32, "rows": 2000, "profile": profile()},
        "params": {"estimator": kind, "input": "2-D array, one column per feature in feature_schema order"},
        "metrics": {"auc": 0.8},
        "decision_policy": POLICY,
    }


def applicant(i: int = 0, **changes: Any) -> dict[str, Any]:
    """A valid feature dict; varied by i so that some are approved and some declined."""
    rng = np.random.default_rng(1000 + i)
    features = {"income": round(float(rng.uniform(5_000, 120_000)), 2),
                "debt_ratio": round(float(rng.uniform(0, 3)), 3), "age": int(rng.integers(18, 80)),
                "purpose": PURPOSES[i % len(PURPOSES)]}
    return {**features, **changes}


RISKY = {"income": 6_000.0, "debt_ratio": 2.9, "age": 19, "purpose": "business"}
SAFE = {"income": 150_000.0, "debt_ratio": 0.1, "age": 60, "purpose": "car"}


def register_versions(registry, name: str = "credit-default", kinds=("linear", "boosted"),
                      approved: bool = True) -> list[int]:
    """Create the model (if needed; protected attributes PROTECTED) and register one version per
    kind; approve them."""
    registry.post("/v1/models", json=model_body(name, protected_attributes=PROTECTED),
                  headers=bearer("data_scientist"))
    versions = []
    for kind in kinds:
        response = register(registry, name, artifact=skops_of(kind), meta=version_metadata(kind))
        assert response.status_code == 201, response.text
        versions.append(response.json()["version"])
        if approved:
            approve(registry, versions[-1], name)
    return versions


def deploy(scoring, body: dict, name: str = "credit-default", role: str = "operator"):
    return scoring.put(f"/v1/deployments/{name}", json=body, headers=bearer(role))


def score(scoring, entity_id: str, features: dict, name: str = "credit-default",
          role: str = "scoring_client"):
    return scoring.post(f"/v1/score/{name}", json={"entity_id": entity_id, "features": features},
                        headers=bearer(role))


@contextmanager
def served(app) -> Iterator[str]:
    """Run an ASGI app (with its lifespan) under uvicorn on a free port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def replica(settings: Settings, registry: httpx.Client) -> Iterator[TestClient]:
    """One more scoring replica beside scoring_stack's: the same database, NATS and registry."""
    app = create_scoring(settings.model_copy(update={"registry_url": str(registry.base_url)}))
    with TestClient(app) as scoring:
        yield scoring


def metric(client, name: str, **labels: str) -> float | None:
    """A sample's value on the client's /metrics (labels matched exactly), or None when absent."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


@contextmanager
def scoring_stack(settings: Settings, live: bool = False) -> Iterator[tuple[httpx.Client, Any]]:
    """The registry served over real HTTP, and scoring: in-process (a TestClient) or, when `live`,
    under uvicorn on its own port (an httpx client on its base URL); yields (registry, scoring)."""
    with served(create_registry(settings)) as registry_url, \
            httpx.Client(base_url=registry_url, timeout=30) as registry:
        scoring_app = create_scoring(settings.model_copy(update={"registry_url": registry_url}))
        if not live:
            with TestClient(scoring_app) as scoring:
                yield registry, scoring
            return
        with served(scoring_app) as scoring_url, httpx.Client(base_url=scoring_url, timeout=30) as scoring:
            yield registry, scoring
