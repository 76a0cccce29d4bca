"""Artifacts, metadata and calls the registry tests share."""

from __future__ import annotations

import io
import json
import os
import pickle
from functools import cache
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from tests.conftest import bearer

FEATURES = ["income", "debt_ratio", "age"]


@cache
def training_set() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, len(FEATURES)))
    y = (x[:, 1] - x[:, 0] + rng.normal(scale=0.5, size=200) > 0).astype(int)
    return x, y


@cache
def fitted_model() -> LogisticRegression:
    return LogisticRegression().fit(*training_set())


@cache
def reference_profile() -> dict[str, Any]:
    """The version's reference profile, as build_profile computes it from the training rows."""
    from services.monitoring.reference import build_profile

    x, y = training_set()
    return build_profile({f: x[:, j] for j, f in enumerate(FEATURES)},
                         [{"name": f, "dtype": "float"} for f in FEATURES],
                         scores=fitted_model().predict_proba(x)[:, 1], labels=y,
                         groups={"age_band": np.where(x[:, 2] < 0, "under-40", "40+").tolist()},
                         decision_threshold=0.7).model_dump(mode="json")


@cache
def pickle_bytes() -> bytes:
    return pickle.dumps(fitted_model())


@cache
def skops_bytes(obj: Any = None) -> bytes:
    """A skops file of `obj` (the fitted model by default); cached: zip entries carry timestamps."""
    import skops.io

    return skops.io.dumps(fitted_model() if obj is None else obj)


class RunsAShell:
    """What an attacker uploads: unpickling it would run a shell command."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def malicious_pickle() -> bytes:
    return pickle.dumps(RunsAShell())


def joblib_bytes() -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(fitted_model(), buf)
    return buf.getvalue()


def metadata(**changes: Any) -> dict[str, Any]:
    doc = {
        "feature_schema": [{"name": f, "dtype": "float"} for f in FEATURES],
        "training_data": {"fingerprint": "sha256:" + "ab" * 32, "rows": 200,
                          "profile": reference_profile()},
        "params": {"C": 1.0},
        "metrics": {"auc": 0.91, "brier": 0.12},
        "fairness": {"demographic_parity_difference": {"age_band": 0.03}},
        "environment": {"scikit-learn": "1.9.1"},
        "code_ref": "git:0123abc",
        "decision_policy": {"review_at": 0.4, "decline_at": 0.7},
    }
    doc.update(changes)
    return doc


def model_body(name: str = "credit-default", **changes: Any) -> dict[str, Any]:
    return {"name": name, "description": "Probability of default within 12 months",
            "owner": "credit-risk-team", "use_case": "credit", "risk_tier": "high",
            "protected_attributes": ["age_band"], **changes}


def create_model(client, name: str = "credit-default", role: str = "data_scientist"):
    return client.post("/v1/models", json=model_body(name), headers=bearer(role))


def register(
    client,
    name: str = "credit-default",
    artifact: bytes | None = None,
    meta: dict | str | None = None,
    role: str = "data_scientist",
):
    """POST a version as multipart; `artifact=b""` is sent empty, None sends the fitted model."""
    files = {
        "artifact": ("model.pkl", pickle_bytes() if artifact is None else artifact,
                     "application/octet-stream"),
        "metadata": (None, meta if isinstance(meta, str) else json.dumps(meta or metadata()),
                     "application/json"),
    }
    return client.post(f"/v1/models/{name}/versions", files=files, headers=bearer(role))


def move(client, version: int, to: str, role: str, name: str = "credit-default", comment: str = ""):
    return client.post(f"/v1/models/{name}/versions/{version}/transitions",
                       json={"to": to, "comment": comment}, headers=bearer(role))


def approve(client, version: int, name: str = "credit-default") -> None:
    """registered → validated → approved, by a data scientist then a model-risk reviewer."""
    assert move(client, version, "validated", "data_scientist", name).status_code == 200
    assert move(client, version, "approved", "model_risk", name, "meets policy").status_code == 200
