"""A short governance story on real data, against the running stack (`make up` first).

Train a credit-default model on the UCI German Credit data, register it with its lineage,
validate and approve it as two different people, make it the champion, score holdout applicants
(/v1 and Open Inference Protocol v2), then read the audit trail a regulator sees.
"""

from __future__ import annotations

import csv
import hashlib
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from services.monitoring.reference import build_profile
from services.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "german_credit.csv"
MODEL = "credit-default"
TARGET = "creditability"
ADVERSE = "bad"  # score = probability of this outcome
# Sex and marital status are prohibited bases under ECOA / Reg B: the model never sees them; the
# fairness report still measures outcomes by sex.
EXCLUDED = ("personal_status_and_sex",)
SEED = 42
HOLDOUT = 0.3
POLICY = {"review_at": 0.35, "decline_at": 0.6}
AUDIT_WAIT_SECONDS = 20
SCORED = {"good": 3, "bad": 2}  # holdout applicants scored: repaid, defaulted
OIP_DATATYPES = {"int": "INT64", "float": "FP64", "string": "BYTES", "bool": "BOOL"}


def step(n: int, text: str) -> None:
    print(f"\n[{n}] {text}")


# --- the data and the model ---------------------------------------------------------------------

@dataclass
class Dataset:
    rows: list[dict[str, str]]
    features: list[str]
    numeric: set[str]
    fingerprint: str

    def matrix(self, idx: np.ndarray) -> np.ndarray:
        """Rows × features (feature_schema order) as an object array: the artifact's input."""
        out = np.empty((len(idx), len(self.features)), dtype=object)
        for i, r in enumerate(idx):
            row = self.rows[r]
            out[i] = [float(row[f]) if f in self.numeric else row[f] for f in self.features]
        return out

    def labels(self) -> np.ndarray:
        return np.array([int(r[TARGET] == ADVERSE) for r in self.rows])


def load(path: Path = DATA) -> Dataset:
    raw = path.read_bytes()
    rows = list(csv.DictReader(raw.decode().splitlines()))
    features = [c for c in rows[0] if c not in (TARGET, *EXCLUDED)]
    numeric = {f for f in features if all(r[f].lstrip("-").isdigit() for r in rows)}
    return Dataset(rows, features, numeric, "sha256:" + hashlib.sha256(raw).hexdigest())


def split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Train and holdout row indices: stratified, seeded, the same on every run."""
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(len(y)), test_size=HOLDOUT, random_state=SEED, stratify=y)


def holdout_applicants(data: Dataset, schema: list[dict]) -> list[tuple[str, dict, str]]:
    """A few holdout applicants who repaid and a few who defaulted: (entity id, features, outcome)."""
    _, holdout = split(data.labels())
    picked: list[tuple[str, dict, str]] = []
    for outcome, wanted in SCORED.items():
        rows = [i for i in holdout if data.rows[i][TARGET] == outcome][:wanted]
        picked += [(f"german-credit-{i}", {s["name"]: int(data.rows[i][s["name"]]) if s["dtype"] == "int"
                                           else data.rows[i][s["name"]] for s in schema}, outcome)
                   for i in rows]
    return picked


def build_pipeline(data: Dataset):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num = [i for i, f in enumerate(data.features) if f in data.numeric]
    cat = [i for i, f in enumerate(data.features) if f not in data.numeric]
    prep = ColumnTransformer([
        ("categorical", OneHotEncoder(handle_unknown="ignore"), cat),
        ("numeric", StandardScaler(), num),
    ])
    return Pipeline([("prep", prep), ("model", LogisticRegression(C=1.0, max_iter=1000))])


def protected_groups(rows: list[dict[str, str]]) -> dict[str, list[str]]:
    """Each applicant's group per protected attribute (sex and age group; neither is a feature)."""
    return {
        "sex": [r["personal_status_and_sex"].split(":")[0].strip() for r in rows],
        "age_group": ["<25" if int(r["age_in_years"]) < 25 else ">=25" for r in rows],
    }


def fairness(scores: np.ndarray, rows: list[dict[str, str]]) -> dict:
    """Approval rate per group and disparate impact (lowest rate / highest; < 0.8 fails 4/5ths)."""
    approved = scores < POLICY["decline_at"]
    report = {"favorable_outcome": f"score < decline_at ({POLICY['decline_at']})",
              "evaluated_on": "holdout"}
    for attribute, labels in protected_groups(rows).items():
        labels = np.array(labels)
        rates = {g: round(float(approved[labels == g].mean()), 4) for g in sorted(set(labels))}
        counts = {g: int((labels == g).sum()) for g in rates}
        low, high = min(rates.values()), max(rates.values())
        report[attribute] = {
            "approval_rate": rates,
            "count": counts,
            "disparate_impact": round(low / high, 4) if high else None,
            "demographic_parity_difference": round(high - low, 4),
            "passes_four_fifths": bool(high and low / high >= 0.8),
        }
    return report


def profile(data: Dataset, schema: list[dict], train: np.ndarray, holdout: np.ndarray,
            holdout_scores: np.ndarray) -> dict:
    """What monitoring compares live traffic against (contracts.monitoring.profile.ReferenceProfile):
    the features as the model learned them (training rows), and the scores, decisions, defaults
    and group rates of the holdout it was evaluated on."""
    X = data.matrix(train)
    columns = {name: X[:, j] for j, name in enumerate(data.features)}
    reference = build_profile(
        columns, schema, scores=holdout_scores, labels=data.labels()[holdout],
        groups=protected_groups([data.rows[i] for i in holdout]),
        adverse=holdout_scores >= POLICY["decline_at"], decision_threshold=POLICY["decline_at"], seed=SEED,
    )
    return reference.model_dump(mode="json")


def feature_schema(data: Dataset) -> list[dict]:
    schema = []
    for name in data.features:
        values = [r[name] for r in data.rows]
        if name in data.numeric:
            ints = [int(v) for v in values]
            schema.append({"name": name, "dtype": "int", "min": min(ints), "max": max(ints)})
        else:
            schema.append({"name": name, "dtype": "string", "categories": sorted(set(values))})
    return schema


def code_ref() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"deploy/demo.py@{sha}" if sha else "deploy/demo.py"


def train(out_dir: Path) -> tuple[Path, dict]:
    """Fit, evaluate and describe the model; returns the skops file and the version metadata."""
    import sklearn
    import skops
    import skops.io
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    data = load()
    y = data.labels()
    idx_train, idx_hold = split(y)
    pipeline = build_pipeline(data).fit(data.matrix(idx_train), y[idx_train])
    scores = pipeline.predict_proba(data.matrix(idx_hold))[:, 1]
    declined = (scores >= POLICY["decline_at"]).astype(int)
    metrics = {
        "auc": round(float(roc_auc_score(y[idx_hold], scores)), 4),
        "precision": round(float(precision_score(y[idx_hold], declined, zero_division=0)), 4),
        "recall": round(float(recall_score(y[idx_hold], declined, zero_division=0)), 4),
        "bad_rate": round(float(y[idx_hold].mean()), 4),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = out_dir / f"{MODEL}.skops"
    skops.io.dump(pipeline, artifact)
    schema = feature_schema(data)
    metadata = {
        "feature_schema": schema,
        "training_data": {"fingerprint": data.fingerprint, "rows": len(data.rows),
                          "profile": profile(data, schema, idx_train, idx_hold, scores)},
        "params": {
            "estimator": "LogisticRegression", "C": 1.0, "max_iter": 1000,
            "preprocessing": "OneHotEncoder(handle_unknown=ignore) + StandardScaler",
            "input": "2-D array, one column per feature in feature_schema order",
            "target": f"{TARGET} == {ADVERSE!r}", "excluded_features": list(EXCLUDED),
            "split_seed": SEED, "holdout_fraction": HOLDOUT,
        },
        "metrics": metrics,
        "fairness": fairness(scores, [data.rows[i] for i in idx_hold]),
        "environment": {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
                        "numpy": np.__version__, "skops": skops.__version__},
        "code_ref": code_ref(),
        "decision_policy": POLICY,
    }
    # Beside the artifact, so the README's curl tour can register a version of its own.
    artifact.with_suffix(".metadata.json").write_text(json.dumps(metadata, indent=1))
    return artifact, metadata


# --- the story over HTTP ------------------------------------------------------------------------

class Api:
    """One httpx client per service; every call as a named role, errors shown as their detail."""

    def __init__(self, base: str, tokens: dict[str, str]) -> None:
        self.http = httpx.Client(base_url=base, timeout=30)
        self.tokens = tokens

    def call(self, method: str, path: str, role: str, ok: tuple[int, ...] = (200, 201), **kw):
        response = self.http.request(method, path, headers={"Authorization": f"Bearer {self.tokens[role]}"},
                                     **kw)
        if response.status_code not in ok:
            raise DemoError(f"{method} {self.http.base_url}{path} as {role}: {response.status_code} "
                            f"{_detail(response)}")
        return response


class DemoError(RuntimeError):
    pass


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    return body.get("detail", body) if isinstance(body, dict) else body


def wait_for_audit(audit: Api, version: int) -> list[dict]:
    """The audit service consumes the stream asynchronously: wait until it holds the approval."""
    subject = f"model/{MODEL}/version/{version}"
    deadline = time.monotonic() + AUDIT_WAIT_SECONDS
    while True:
        found = audit.call("GET", f"/v1/audit/models/{MODEL}/history", "regulator", ok=(200, 404))
        events = found.json()["events"] if found.status_code == 200 else []
        if any(e["subject"] == subject and e["type"].endswith(".approved.v1") for e in events):
            return events
        if time.monotonic() > deadline:
            raise DemoError(f"the audit service did not record {subject} as approved within "
                            f"{AUDIT_WAIT_SECONDS}s (see var/log/audit.log)")
        time.sleep(0.25)


def wait_for_decisions(audit: Api, decision_ids: list[str]) -> None:
    """Wait until the audit service has chained every decision the demo made."""
    deadline = time.monotonic() + AUDIT_WAIT_SECONDS
    pending = list(decision_ids)
    while pending:
        found = audit.call("GET", "/v1/audit/events", "regulator",
                           params={"subject": f"decision/{pending[0]}"}).json()["items"]
        if found:
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise DemoError(f"the audit service did not chain decision {pending[0]} within "
                            f"{AUDIT_WAIT_SECONDS}s (see var/log/audit.log)")
        time.sleep(0.25)


def _utc(text: str) -> datetime:
    """Event times are UTC; a time read back from SQLite may have lost its zone."""
    when = datetime.fromisoformat(text)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def print_timeline(events: list[dict]) -> None:
    print(f"    {'time (UTC)':<24} {'type':<40} {'actor':<26} {'hash':<13} subject")
    for e in events:
        when = _utc(e["time"]).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        short = e["type"].removeprefix("modelgov.")
        print(f"    {when:<24} {short:<40} {e['actor'] or '-':<26} {e['hash'][:12]:<13} {e['subject']}")


def score_applicants(scoring: Api, applicants: list[tuple[str, dict, str]]) -> list[str]:
    """Each applicant over /v1/score: decision, score and (for declines) the principal reasons."""
    ids = []
    for entity, features, outcome in applicants:
        d = scoring.call("POST", f"/v1/score/{MODEL}", "scoring_client",
                         json={"entity_id": entity, "features": features}).json()
        reasons = ", ".join(f"{r['feature']}={r['value']} (+{r['impact']:.2f})" for r in d["reason_codes"])
        print(f"    {entity:<18} {d['decision']:<8} score {d['score']:.3f}  v{d['model_version']} "
              f"{d['route']:<9} actual: {outcome:<5} decision {d['decision_id']}")
        if reasons:
            print(f"    {'':<18} principal reasons: {reasons}")
        ids.append(d["decision_id"])
    return ids


def infer_v2(scoring: Api, applicants: list[tuple[str, dict, str]], schema: list[dict]) -> list[str]:
    """The same applicants as one Open Inference Protocol v2 request: one tensor per feature."""
    inputs = [{"name": s["name"], "datatype": OIP_DATATYPES[s["dtype"]], "shape": [len(applicants)],
               "data": [features[s["name"]] for _, features, _ in applicants]} for s in schema]
    body = {"id": "demo-v2", "inputs": inputs,
            "parameters": {"entity_ids": [entity for entity, _, _ in applicants]}}
    answer = scoring.call("POST", f"/v2/models/{MODEL}/infer", "scoring_client", json=body).json()
    out = {o["name"]: o["data"] for o in answer["outputs"]}
    print(f"    POST /v2/models/{MODEL}/infer: {len(inputs)} input tensors of shape [{len(applicants)}] "
          f"→ model_version {answer['model_version']}")
    print(f"    score    {[round(x, 3) for x in out['score']]}")
    print(f"    decision {out['decision']}   (each row a decision.made event too)")
    return list(out["decision_id"])


def report_outcomes(monitoring: Api, applicants: list[tuple[str, dict, str]], decided: list[str]) -> None:
    """What actually happened to the scored applicants, as a lender learns it months later."""
    observed = datetime.now(UTC).isoformat()
    outcomes = [{"decision_id": d, "label": int(outcome == ADVERSE), "observed_at": observed}
                for d, (_, _, outcome) in zip(decided, applicants * 2, strict=True)]
    deadline = time.monotonic() + 20
    while True:  # decisions reach monitoring through NATS within moments of being made
        answer = monitoring.call("POST", "/v1/outcomes", "service", ok=(200, 201, 207),
                                 json={"outcomes": outcomes}).json()
        if not answer["failed"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    print(f"    POST /v1/outcomes: {answer['recorded']} recorded, {answer['duplicates']} repeats, "
          f"{answer['failed']} failed (each recorded one an outcome.recorded event)")
    report = monitoring.call("GET", f"/v1/monitoring/{MODEL}/report", "model_risk").json()
    window = report["policy"]["window_size"]
    print(f"    monitoring holds {sum(report['open_windows'].values())} decisions in the open window of "
          f"v{', v'.join(map(str, report['open_windows']))}; a window is judged for drift, quality, "
          f"performance and fairness once it holds {window} decisions")


def run(settings: Settings) -> int:
    started = time.monotonic()
    tokens = json.loads(settings.tokens_path.read_text())
    registry_url = f"http://127.0.0.1:{settings.registry_port}"
    audit_url = f"http://127.0.0.1:{settings.audit_port}"
    scoring_url = f"http://127.0.0.1:{settings.scoring_port}"
    monitoring_url = f"http://127.0.0.1:{settings.monitoring_port}"
    registry, audit, scoring = Api(registry_url, tokens), Api(audit_url, tokens), Api(scoring_url, tokens)
    monitoring = Api(monitoring_url, tokens)

    step(1, f"Train on {DATA.relative_to(ROOT)} (UCI Statlog German Credit, 1,000 applicants)")
    artifact, metadata = train(settings.var_dir.resolve() / "demo")
    m, fair = metadata["metrics"], metadata["fairness"]
    print(f"    training data   {metadata['training_data']['fingerprint'][:23]}…  "
          f"({metadata['training_data']['rows']} rows, holdout {HOLDOUT:.0%}, seed {SEED})")
    print(f"    holdout         AUC {m['auc']:.3f}   precision {m['precision']:.3f}   "
          f"recall {m['recall']:.3f}   (declined = score >= {POLICY['decline_at']})")
    for attribute in ("sex", "age_group"):
        f = fair[attribute]
        rates = ", ".join(f"{g} {r:.0%}" for g, r in f["approval_rate"].items())
        verdict = "passes" if f["passes_four_fifths"] else "FAILS"
        print(f"    fairness {attribute:<9} approval {rates}; disparate impact "
              f"{f['disparate_impact']:.2f} ({verdict} the four-fifths rule)")
    print(f"    artifact        {artifact} ({artifact.stat().st_size:,} bytes, skops)")
    print(f"    metadata        {artifact.with_suffix('.metadata.json')}")

    step(2, f"Create model '{MODEL}' in the registry (high risk tier, protected: sex, age_group)")
    body = {"name": MODEL, "description": "Probability of default for consumer loan applications",
            "owner": "credit-risk-analytics", "use_case": "credit", "risk_tier": "high",
            "protected_attributes": ["sex", "age_group"]}
    created = registry.call("POST", "/v1/models", "data_scientist", ok=(201, 409), json=body)
    print("    created" if created.status_code == 201 else "    exists already: continuing with it")

    step(3, "Register a version: the artifact plus its lineage (schema, data fingerprint, metrics)")
    with artifact.open("rb") as f:
        registered = registry.call(
            "POST", f"/v1/models/{MODEL}/versions", "data_scientist",
            files={"artifact": (artifact.name, f, "application/octet-stream")},
            data={"metadata": json.dumps(metadata)},
        ).json()
    version = registered["version"]
    print(f"    version {version}  status {registered['status']}  artifact {registered['artifact_sha256']}")
    base = f"/v1/models/{MODEL}/versions/{version}"

    step(4, "Validate it (data scientist), then approve it (model risk: a different person)")
    for to, role, comment in (
        ("validated", "data_scientist", "holdout metrics and fairness report attached"),
        ("approved", "model_risk", f"AUC {m['auc']:.3f} on holdout; disparate impact reviewed"),
    ):
        moved = registry.call("POST", f"{base}/transitions", role, json={"to": to, "comment": comment})
        print(f"    -> {moved.json().get('status', to):<10} as {role}")
    print(f"    model card: {registry_url}{base}/card   (HTML: add ?format=html)")

    step(5, f"Make version {version} the champion (operator): scoring fetches, checks and loads it")
    deployed = scoring.call("PUT", f"/v1/deployments/{MODEL}", "operator", json={"champion": version}).json()
    print(f"    champion v{deployed['champion']}  set by {deployed['updated_by']}")

    step(6, "Score holdout applicants the model never saw (scoring client), each decision on the record")
    applicants = holdout_applicants(load(), metadata["feature_schema"])
    decided = score_applicants(scoring, applicants)
    decided += infer_v2(scoring, applicants, metadata["feature_schema"])

    step(7, "Report the applicants' actual outcomes to monitoring (a service, later in life)")
    report_outcomes(monitoring, applicants, decided)

    step(8, "Audit trail: the model's history, rebuilt by the audit service from the event stream")
    print_timeline(wait_for_audit(audit, version))
    wait_for_decisions(audit, decided)
    print(f"    and {len(decided)} decisions chained in DECISIONS, e.g. "
          f"GET /v1/audit/events?subject=decision/{decided[0]}")

    step(9, "Verify the hash chains (one per stream)")
    verify = audit.call("GET", "/v1/audit/verify", "regulator").json()
    for s in verify["streams"]:
        state = "ok" if s["ok"] else f"BROKEN at {s['first_broken_position']}: {s['reason']}"
        print(f"    {s['stream']:<11} {s['count']:>5} events  head {s['head_hash'] or '-'}  {state}")
    print(f"    chain verification: {'ok' if verify['ok'] else 'FAILED'}")

    print(f"\nDone in {time.monotonic() - started:.1f}s. Where to look next:")
    print(f"  registry API      {registry_url}/docs")
    print(f"  scoring API       {scoring_url}/docs   (OIP v2: {scoring_url}/v2/models/{MODEL})")
    print(f"  monitoring API    {monitoring_url}/docs   "
          f"(report: {monitoring_url}/v1/monitoring/{MODEL}/report?format=html)")
    print(f"  audit API         {audit_url}/docs")
    print(f"  Temporal UI       http://127.0.0.1:{settings.temporal_ui_port}")
    print(f"  NATS monitoring   http://127.0.0.1:{settings.nats_monitor_port}/jsz?streams=true")
    read_token = f"import json; print(json.load(open('{settings.tokens_path}'))['regulator'])"
    auth = 'curl -H "Authorization: Bearer $TOKEN"'
    print(f'  TOKEN=$(python -c "{read_token}")')
    print(f"  {auth} {audit_url}/v1/audit/models/{MODEL}/history")
    print(f"  {auth} '{audit_url}/v1/audit/events?subject=model/{MODEL}/version/{version}'")
    print(f"  {auth} {registry_url}{base}/card")
    return 0 if verify["ok"] else 1


def main() -> int:
    settings = Settings()
    if not settings.tokens_path.exists():
        print(f"no tokens at {settings.tokens_path}: start the stack first (make up)", file=sys.stderr)
        return 1
    try:
        return run(settings)
    except httpx.ConnectError as exc:
        print(f"\nthe stack does not answer ({exc}): start it with `make up`", file=sys.stderr)
    except DemoError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
