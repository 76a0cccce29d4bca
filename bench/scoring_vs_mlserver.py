"""Online scoring against MLServer: the same models, the same load generator, side by side.

    make bench-scoring    # or: .venv/bin/python -m bench.scoring_vs_mlserver [--duration S]
                          #     [--warmup S] [--concurrency 1,16,64] [--omp-threads N]

Trains two fraud models on seeded synthetic transactions (30 numeric features): a logistic-regression
pipeline and a HistGradientBoostingClassifier. MLServer 1.7 + mlserver-sklearn serves their joblib
files from its own venv (var/bench/mlserver-venv, created on first use) over OIP v2
`/v2/models/<name>/infer`; modelgov's registry and scoring services (with their own nats-server)
serve the same models, saved as skops, over `POST /v1/score/<name>`. A closed-loop HTTP/1.1
keep-alive client, in its own process, sends single-row requests at each concurrency for a fixed
time; server CPU comes from psutil over each server's process tree. Writes
bench/results/scoring_vs_mlserver.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.report import cpu_seconds
from deploy.servers import NatsServer, binary, free_port, stop
from deploy.stack import SCORING_HTTP
from services.monitoring.reference import build_profile

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "scoring_vs_mlserver.json"
MLSERVER_VENV = ROOT / "var" / "bench" / "mlserver-venv"
# uvloop 0.23 crashes MLServer 1.7.1's inference workers (SeldonIO/MLServer#2286)
MLSERVER_PINS = ("mlserver==1.7.*", "mlserver-sklearn==1.7.*", "uvloop==0.21.0")
SEED = 20240611
TRAIN_ROWS = 20_000
REQUEST_ROWS = 2_000  # distinct feature rows the load generator cycles through
ENTITY = b"@ENTITY@"  # placeholder in modelgov bodies: each request gets a distinct entity id
POLICY = {"review_at": 0.3, "decline_at": 0.7}  # fraud: allow / review / block
READY_TIMEOUT = 180.0

# Fraud-like card transactions: amounts, velocity, distances, ages, risk scores and flags.
FEATURES = [
    "amount", "amount_vs_avg_30d", "hour_sin", "hour_cos", "txn_count_1h", "txn_count_24h",
    "txn_count_7d", "distinct_merchants_24h", "distance_from_home_km", "distance_from_last_txn_km",
    "minutes_since_last_txn", "card_age_days", "account_age_days", "merchant_risk", "mcc_risk",
    "country_risk", "device_age_days", "ip_risk", "failed_auth_24h", "declines_7d",
    "chargebacks_365d", "avg_amount_30d", "std_amount_30d", "card_present", "online",
    "international", "billing_shipping_mismatch", "email_age_days", "amount_24h",
    "credit_utilisation",
]
MODELS = {
    "fraud-lr": "StandardScaler -> LogisticRegression(max_iter=1000)",
    "fraud-hgb": "HistGradientBoostingClassifier(max_iter=100, early_stopping=False)",
}


# -- data and models ------------------------------------------------------------------------------

def transactions(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n rows × 30 features in FEATURES order, and a fraud label (~3 % positive)."""
    hour = rng.integers(0, 24, n)
    avg = rng.lognormal(3.5, 0.8, n)
    amount = avg * rng.lognormal(0, 0.7, n)
    c1 = rng.poisson(0.3, n)
    c24 = c1 + rng.poisson(2.0, n)
    cols = {
        "amount": amount, "amount_vs_avg_30d": amount / avg,
        "hour_sin": np.sin(2 * np.pi * hour / 24), "hour_cos": np.cos(2 * np.pi * hour / 24),
        "txn_count_1h": c1, "txn_count_24h": c24, "txn_count_7d": c24 + rng.poisson(10, n),
        "distinct_merchants_24h": np.minimum(c24, rng.poisson(1.5, n)),
        "distance_from_home_km": rng.exponential(15, n),
        "distance_from_last_txn_km": rng.exponential(10, n),
        "minutes_since_last_txn": rng.exponential(600, n),
        "card_age_days": rng.uniform(1, 3000, n), "account_age_days": rng.uniform(1, 5000, n),
        "merchant_risk": rng.beta(2, 8, n), "mcc_risk": rng.beta(2, 10, n),
        "country_risk": rng.beta(1, 12, n), "device_age_days": rng.exponential(200, n),
        "ip_risk": rng.beta(1, 9, n), "failed_auth_24h": rng.poisson(0.1, n),
        "declines_7d": rng.poisson(0.2, n), "chargebacks_365d": rng.poisson(0.05, n),
        "avg_amount_30d": avg, "std_amount_30d": avg * rng.uniform(0.2, 1.2, n),
        "card_present": rng.random(n) < 0.55, "online": rng.random(n) < 0.4,
        "international": rng.random(n) < 0.08, "billing_shipping_mismatch": rng.random(n) < 0.1,
        "email_age_days": rng.exponential(900, n), "amount_24h": amount + rng.lognormal(3, 1, n) * c24,
        "credit_utilisation": rng.beta(2, 5, n),
    }
    x = np.column_stack([np.asarray(cols[f], dtype=float) for f in FEATURES])
    logit = (-5.2 + 0.9 * np.log1p(cols["amount_vs_avg_30d"]) + 0.5 * cols["txn_count_1h"]
             + 2.5 * cols["merchant_risk"] + 3.0 * cols["ip_risk"] + 4.0 * cols["country_risk"]
             + 0.8 * cols["failed_auth_24h"] + 0.9 * cols["international"]
             + 1.1 * cols["billing_shipping_mismatch"] - 0.6 * cols["card_present"]
             + 0.6 * (cols["distance_from_last_txn_km"] > 30) - 0.0003 * cols["card_age_days"]
             + 0.4 * (np.abs(hour - 3) <= 2))
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return np.round(x, 6), y


@dataclass
class Trained:
    name: str
    estimator: object
    metadata: dict


def train(seed: int) -> tuple[list[Trained], np.ndarray]:
    """Both models fitted on the same rows, and the (unseen) rows requests are built from."""
    import sklearn
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    x, y = transactions(rng, TRAIN_ROWS)
    x_hold, y_hold = transactions(rng, REQUEST_ROWS)
    estimators = {
        "fraud-lr": Pipeline([("scale", StandardScaler()),
                              ("model", LogisticRegression(max_iter=1000))]),
        "fraud-hgb": HistGradientBoostingClassifier(max_iter=100, early_stopping=False,
                                                    random_state=seed),
    }
    fingerprint = "sha256:" + hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
    schema = [{"name": f, "dtype": "float"} for f in FEATURES]
    out = []
    for name, est in estimators.items():
        est.fit(x, y)
        scores = est.predict_proba(x_hold)[:, 1]
        auc = float(roc_auc_score(y_hold, scores))
        # 1,000-value samples: the registered event carries the profile, and 30 features × 5,000
        # values would exceed NATS's default 1 MiB message limit
        profile = build_profile({f: x[:, j] for j, f in enumerate(FEATURES)}, schema, scores=scores,
                                labels=y_hold, decision_threshold=POLICY["decline_at"], sample_size=1000)
        out.append(Trained(name, est, {
            "feature_schema": schema,
            "training_data": {"fingerprint": fingerprint, "rows": TRAIN_ROWS,
                              "profile": profile.model_dump(mode="json")},
            "params": {"estimator": MODELS[name], "seed": seed,
                       "input": "2-D array, one column per feature in feature_schema order"},
            "metrics": {"auc": round(auc, 4), "fraud_rate": round(float(y.mean()), 4)},
            "environment": {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
                            "numpy": np.__version__},
            "code_ref": "bench/scoring_vs_mlserver.py",
            "decision_policy": POLICY,
        }))
    return out, x_hold


def save(models: list[Trained], work: Path, max_batch_size: int, max_batch_time: float) -> Path:
    """skops per model for modelgov; an MLServer repository (joblib + model-settings.json)."""
    import joblib
    import skops.io

    repo = work / "mlserver-models"
    for m in models:
        skops.io.dump(m.estimator, work / f"{m.name}.skops")
        folder = repo / m.name
        folder.mkdir(parents=True)
        joblib.dump(m.estimator, folder / "model.joblib")
        settings = {"name": m.name, "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib", "version": "v1",
                                   # requests name the output too; this makes it the default
                                   "extra": {"predict_fn": "predict_proba"}}}
        if max_batch_size > 1:  # MLServer's adaptive batching; off by default, as shipped
            settings.update(max_batch_size=max_batch_size, max_batch_time=max_batch_time)
        (folder / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return repo


# -- request bodies -------------------------------------------------------------------------------

def oip_body(row: np.ndarray, output: str = "predict_proba") -> bytes:
    """One row as MLServer's scikit-learn runtime takes it: an [1, F] tensor; modelgov takes the
    same body and names its output `score` (MLServer names it after the predict function)."""
    return json.dumps({"inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64",
                                   "data": [float(v) for v in row]}],
                       "outputs": [{"name": output}]}, separators=(",", ":")).encode()


def score_body(row: np.ndarray) -> bytes:
    features = json.dumps({f: float(v) for f, v in zip(FEATURES, row, strict=True)},
                          separators=(",", ":"))
    return b'{"entity_id":"' + ENTITY + b'","features":' + features.encode() + b"}"


def write_bodies(path: Path, bodies: list[bytes]) -> Path:
    path.write_text("\n".join(b.decode() for b in bodies) + "\n")
    return path


# -- process trees and CPU ------------------------------------------------------------------------

def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def http_get(url: str, headers: dict | None = None, timeout: float = 2.0):
    import httpx

    return httpx.get(url, headers=headers, timeout=timeout)


def wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before {url} answered:\n{tail(log)}")
        try:
            if http_get(url).status_code == 200:
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f}s:\n{tail(log)}")


# -- MLServer -------------------------------------------------------------------------------------

def venv_versions(python: Path) -> dict:
    code = ("import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            "('mlserver', 'mlserver-sklearn', 'scikit-learn', 'numpy', 'joblib', 'uvloop', 'uvicorn', "
            "'fastapi')}))")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"cannot read the MLServer venv's versions: {done.stderr[-500:]}")
    return json.loads(done.stdout)


def ensure_mlserver_venv(sklearn_version: str) -> dict:
    """MLServer in its own venv (its pins never touch the project's), reused when present."""
    python, mlserver = MLSERVER_VENV / "bin" / "python", MLSERVER_VENV / "bin" / "mlserver"
    if python.exists() and mlserver.exists():
        return {"venv": str(MLSERVER_VENV), "created": False, **venv_versions(python)}
    print(f"creating {MLSERVER_VENV} (MLServer's own venv; takes a few minutes)", flush=True)
    subprocess.run(["python3", "-m", "venv", str(MLSERVER_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", *MLSERVER_PINS]
    # the same scikit-learn as the project, so both sides load the same estimator code
    done = subprocess.run([*pip, f"scikit-learn=={sklearn_version}"], capture_output=True, text=True)
    note = None
    if done.returncode != 0:
        note = f"scikit-learn=={sklearn_version} refused by MLServer's pins; its own choice is used"
        subprocess.run(pip, check=True)
    return {"venv": str(MLSERVER_VENV), "created": True, **({"note": note} if note else {}),
            **venv_versions(python)}


@dataclass
class MLServer:
    repo: Path
    env: dict
    log: Path
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def settings(self) -> dict:
        # debug=False turns off uvicorn's per-request access log, as on the modelgov side
        return {"debug": False, "host": "127.0.0.1", "http_port": self.http_port,
                "grpc_port": self.grpc_port, "metrics_port": self.metrics_port,
                "parallel_workers": 1}

    def start(self) -> MLServer:
        (self.repo / "settings.json").write_text(json.dumps(self.settings(), indent=2))
        self.proc = spawn_env([str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(self.repo)],
                              self.log, self.env)
        wait_http(f"{self.url}/v2/health/ready", READY_TIMEOUT, self.proc, self.log)
        for name in MODELS:
            wait_http(f"{self.url}/v2/models/{name}/ready", READY_TIMEOUT, self.proc, self.log)
        return self

    def stop(self) -> None:
        self.proc = stop(self.proc)


def spawn_env(cmd: list[str], log: Path, env: dict) -> subprocess.Popen:
    """deploy.servers.spawn with an environment (own session, output to `log`)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env, cwd=ROOT)


# -- modelgov -------------------------------------------------------------------------------------

ROLES = ("data_scientist", "model_risk", "compliance", "operator", "regulator", "scoring_client",
         "service", "admin")


@dataclass
class Modelgov:
    work: Path
    env: dict
    registry_port: int = field(default_factory=free_port)
    scoring_port: int = field(default_factory=free_port)
    nats: NatsServer | None = None
    registry: subprocess.Popen | None = None
    scoring: subprocess.Popen | None = None
    tokens: dict = field(default_factory=dict)
    workers: int = 1  # scoring's uvicorn worker processes (MODELGOV_SCORING_WORKERS in `make up`)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.scoring_port}"

    def start(self) -> Modelgov:
        import secrets

        # fsync per write, as `make up` runs it: a decision is durable when it is answered
        self.nats = NatsServer(self.work / "nats", sync_always=True,
                               log_file=self.work / "log" / "nats.log").start()
        self.tokens = {r: secrets.token_urlsafe(24) for r in ROLES}
        tokens_file = self.work / "tokens.json"
        tokens_file.write_text(json.dumps(self.tokens))
        var = self.work / "var"
        env = {**self.env, "MODELGOV_VAR_DIR": str(var), "MODELGOV_TOKENS_FILE": str(tokens_file),
               "MODELGOV_NATS_URL": self.nats.url,
               "MODELGOV_NATS_MONITOR_PORT": str(self.nats.monitor_port),
               # never the developer's Temporal on 7233; nothing here starts a workflow
               "MODELGOV_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
               "MODELGOV_REGISTRY_PORT": str(self.registry_port),
               "MODELGOV_SCORING_PORT": str(self.scoring_port), "PYTHONUNBUFFERED": "1"}
        var.mkdir(parents=True, exist_ok=True)
        migrated = subprocess.run([sys.executable, "-m", "services.runtime.migrate", "registry", "scoring"],
                                  cwd=ROOT, env=env, capture_output=True, text=True)
        if migrated.returncode != 0:
            raise RuntimeError(f"migrations failed:\n{migrated.stderr[-1500:]}")
        self.registry = self._uvicorn("registry", self.registry_port, env)
        wait_http(f"http://127.0.0.1:{self.registry_port}/readyz", 60, self.registry,
                  self.work / "log" / "registry.log")
        if not (ROOT / "services" / "scoring" / "app.py").exists():
            raise RuntimeError("services/scoring/app.py does not exist yet")
        self.scoring = self._uvicorn("scoring", self.scoring_port, env)
        wait_http(f"{self.url}/readyz", 60, self.scoring, self.work / "log" / "scoring.log")
        return self

    def _uvicorn(self, name: str, port: int, env: dict) -> subprocess.Popen:
        # no access log, as MLServer with debug=False
        cmd = [sys.executable, "-m", "uvicorn", f"services.{name}.app:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
        if name == "scoring":
            cmd += ["--workers", str(self.workers), *SCORING_HTTP]
        return spawn_env(cmd, self.work / "log" / f"{name}.log", env)

    def auth(self, role: str) -> dict:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def deploy(self, models: list[Trained]) -> None:
        """Each model under its own name, its version 1 the champion."""
        for m in models:
            self.register(m.name, f"card fraud, {MODELS[m.name]} (benchmark)", [m], {"champion": 1})

    def register(self, name: str, description: str, versions: list[Trained], deployment: dict) -> None:
        """Create model `name`, register each artifact as a version (1, 2, ...), validate and
        approve (two people) version 1, and deploy it as `deployment` says."""
        import httpx

        with httpx.Client(base_url=f"http://127.0.0.1:{self.registry_port}", timeout=60) as reg:
            call(reg, "POST", "/v1/models", self.auth("data_scientist"), json={
                "name": name, "description": description, "owner": "fraud-analytics",
                "use_case": "fraud", "risk_tier": "medium", "protected_attributes": []})
            for m in versions:
                artifact = (self.work / f"{m.name}.skops").read_bytes()
                call(reg, "POST", f"/v1/models/{name}/versions", self.auth("data_scientist"),
                     files={"artifact": (f"{m.name}.skops", artifact, "application/octet-stream"),
                            "metadata": (None, json.dumps(m.metadata), "application/json")})
            base = f"/v1/models/{name}/versions/1/transitions"
            call(reg, "POST", base, self.auth("data_scientist"), json={"to": "validated"})
            call(reg, "POST", base, self.auth("model_risk"),
                 json={"to": "approved", "comment": "benchmark model"})
        with httpx.Client(base_url=self.url, timeout=60) as scoring:
            call(scoring, "PUT", f"/v1/deployments/{name}", self.auth("operator"), json=deployment)

    def decisions_in_stream(self) -> int | None:
        try:
            doc = http_get(f"http://127.0.0.1:{self.nats.monitor_port}/jsz?streams=true").json()
        except Exception:  # noqa: BLE001 - a figure for the report, not a failure
            return None
        for account in doc.get("account_details", []):
            for stream in account.get("stream_detail", []):
                if stream.get("name") == "DECISIONS":
                    return stream["state"]["messages"]
        return None

    def pids(self) -> dict[str, int]:
        procs = {"scoring": self.scoring, "nats": self.nats.proc if self.nats else None,
                 "registry": self.registry}
        return {k: p.pid for k, p in procs.items() if p is not None and p.poll() is None}

    def stop(self) -> None:
        """Stop what started; returns None to clear the caller's handle."""
        self.scoring = stop(self.scoring)
        self.registry = stop(self.registry)
        if self.nats:
            self.nats.stop()


def call(client, method: str, path: str, headers: dict, **kw):
    response = client.request(method, path, headers=headers, **kw)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
    return response


# -- the load generator (runs in its own process) ------------------------------------------------

class Recorder:
    """What the workers share: the bodies, the measured window, and what they counted in it."""

    def __init__(self, bodies: list[tuple[bytes, bytes | None]], start: float, end: float) -> None:
        self.bodies, self.start, self.end = bodies, start, end
        self.latencies: list[float] = []
        self.errors = 0
        self.ok_total = 0
        self.first_error: str | None = None

    def body(self, worker: int, i: int) -> bytes:
        """Row i (workers walk the rows in different orders); a distinct entity id where wanted."""
        head, tail_ = self.bodies[(worker + 97 * i) % len(self.bodies)]
        return head if tail_ is None else head + b"w%d-%d" % (worker, i) + tail_

    def record(self, t0: float, t1: float, status: int, payload: bytes) -> None:
        ok = status == 200
        self.ok_total += ok
        if t0 < self.start:
            return  # warm-up
        if ok:
            self.latencies.append(t1 - t0)
        else:
            self.errors += 1
            self.first_error = self.first_error or f"{status}: {payload[:300].decode(errors='replace')}"


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: status, body, and whether the server keeps the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked, keep = None, False, True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            keep = False
    if chunked:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            body += await reader.readexactly(size + 2)
            if size == 0:
                break
        return status, body, keep
    return status, await reader.readexactly(length or 0), keep


async def raw_worker(host: str, port: int, path: str, headers: bytes, worker: int, rec: Recorder) -> None:
    """Closed loop on one keep-alive connection until the measured window ends."""
    reader, writer = await asyncio.open_connection(host, port)
    prefix = b"POST %s HTTP/1.1\r\nHost: %s:%d\r\n%sContent-Type: application/json\r\n" % (
        path.encode(), host.encode(), port, headers)
    i = 0
    try:
        while True:
            body = rec.body(worker, i)
            request = prefix + b"Content-Length: %d\r\n\r\n" % len(body) + body
            t0 = time.perf_counter()
            if t0 >= rec.end:
                return
            writer.write(request)
            status, payload, keep = await read_response(reader)
            rec.record(t0, time.perf_counter(), status, payload)
            if not keep:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            i += 1
    finally:
        writer.close()


async def httpx_worker(client, url: str, headers: dict, worker: int, rec: Recorder) -> None:
    """The same loop through httpx.AsyncClient (to compare the client's own cost)."""
    i = 0
    while True:
        body = rec.body(worker, i)
        t0 = time.perf_counter()
        if t0 >= rec.end:
            return
        response = await client.post(url, content=body, headers=headers)
        rec.record(t0, time.perf_counter(), response.status_code, response.content)
        i += 1


async def generate(args) -> dict:
    """Warm up, print `measuring`, measure for the duration, print `done`; return the figures."""
    from urllib.parse import urlsplit

    # modelgov bodies get a `{prefix}w{worker}-{n}` entity id: distinct per request and per run
    prefix, bodies = args.entity_prefix.encode(), []
    for line in filter(None, Path(args.bodies).read_bytes().splitlines()):
        head, found, tail_ = line.partition(ENTITY)
        bodies.append((head + prefix, tail_) if found else (line, None))
    headers = json.loads(args.headers)
    url = urlsplit(args.url)
    now = time.perf_counter()
    rec = Recorder(bodies, now + args.warmup, now + args.warmup + args.duration)
    loop = asyncio.get_running_loop()
    marks = {}

    def mark(name: str) -> None:
        marks[name] = time.process_time()
        print(name, flush=True)

    loop.call_at(loop.time() + args.warmup, mark, "measuring")
    loop.call_at(loop.time() + args.warmup + args.duration, mark, "done")
    if args.http_client == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            hdrs = {**headers, "Content-Type": "application/json"}
            target = f"{args.url}{args.path}"
            await asyncio.gather(*(httpx_worker(client, target, hdrs, w, rec)
                                   for w in range(args.concurrency)))
    else:
        header_bytes = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
        await asyncio.gather(*(raw_worker(url.hostname, url.port, args.path, header_bytes, w, rec)
                               for w in range(args.concurrency)))
    while "done" not in marks:  # the last response can land before the timer fires
        await asyncio.sleep(0.01)
    lat = np.array(rec.latencies) * 1000
    ok = len(lat)
    client_cpu = marks["done"] - marks["measuring"]
    return {
        "requests": ok, "errors": rec.errors, "first_error": rec.first_error,
        "req_per_s": round(ok / args.duration, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 3) if ok else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 3) if ok else None,
        "max_ms": round(float(lat.max()), 3) if ok else None,
        "client_cpu_ms_per_request": round(client_cpu * 1000 / ok, 4) if ok else None,
        "ok_including_warmup": rec.ok_total,
        "latencies_ms": [round(float(v), 3) for v in lat],  # merged over a cell's slices, then dropped
    }


def client_main(args) -> None:
    result = asyncio.run(generate(args))
    print(json.dumps(result), flush=True)


# -- one cell -------------------------------------------------------------------------------------

def run_cell(url: str, path: str, headers: dict, bodies: Path, concurrency: int, warmup: float,
             duration: float, pids: dict[str, int], env: dict, http_client: str, entity_prefix: str) -> dict:
    """Start the load generator process; server CPU is read when it starts and stops measuring."""
    cmd = [sys.executable, "-m", "bench.scoring_vs_mlserver", "--client", "--url", url, "--path", path,
           "--headers", json.dumps(headers), "--bodies", str(bodies), "--concurrency", str(concurrency),
           "--warmup", str(warmup), "--duration", str(duration), "--http-client", http_client,
           "--entity-prefix", entity_prefix]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    out = None
    for line in proc.stdout:
        line = line.strip()
        if line == "measuring":
            before = {k: cpu_seconds(p) for k, p in pids.items()}
        elif line == "done":
            after = {k: cpu_seconds(p) for k, p in pids.items()}
        elif line.startswith("{"):
            out = json.loads(line)
    stderr = proc.stderr.read()
    proc.wait()
    if out is None:
        return {"error": f"load generator exited with {proc.returncode}: {stderr[-1500:]}"}
    n = max(out["requests"], 1)
    used = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in pids}
    out["server_cpu_s"] = {k: round(v, 3) for k, v in used.items()}
    out["server_cpu_ms_per_request"] = round(sum(used.values()) * 1000 / n, 4)
    out["server_cpu_cores_busy"] = round(sum(used.values()) / duration, 2)
    return out


def merge_slices(slices: list[dict], duration: float) -> dict:
    """One cell from the slices it was measured in (each `duration` seconds): counts and CPU
    summed, rates over the whole measured time, percentiles over every latency."""
    failed = next((s for s in slices if "error" in s), None)
    if failed is not None:
        return failed
    lat = np.array([v for s in slices for v in s["latencies_ms"]])
    ok, seconds = len(lat), duration * len(slices)
    cpu = {k: sum(s["server_cpu_s"][k] for s in slices) for k in slices[0]["server_cpu_s"]}
    client_cpu = sum((s["client_cpu_ms_per_request"] or 0) * s["requests"] for s in slices)
    return {
        "requests": ok, "errors": sum(s["errors"] for s in slices),
        "first_error": next((s["first_error"] for s in slices if s["first_error"]), None),
        "req_per_s": round(ok / seconds, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 3) if ok else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 3) if ok else None,
        "max_ms": round(float(lat.max()), 3) if ok else None,
        "client_cpu_ms_per_request": round(client_cpu / ok, 4) if ok else None,
        "ok_including_warmup": sum(s["ok_including_warmup"] for s in slices),
        "server_cpu_s": {k: round(v, 3) for k, v in cpu.items()},
        "server_cpu_ms_per_request": round(sum(cpu.values()) * 1000 / max(ok, 1), 4),
        "server_cpu_cores_busy": round(sum(cpu.values()) / seconds, 2),
        "req_per_s_by_slice": [s["req_per_s"] for s in slices],
    }


# -- orchestration --------------------------------------------------------------------------------

def check_same_scores(mlserver_url: str, mg: Modelgov | None, rows: np.ndarray) -> dict:
    """Both sides give the same probability for the same rows (and modelgov's decisions)."""
    import httpx

    report = {}
    for name in MODELS:
        ml = []
        for row in rows:
            r = httpx.post(f"{mlserver_url}/v2/models/{name}/infer", content=oip_body(row),
                           headers={"Content-Type": "application/json"}, timeout=30)
            r.raise_for_status()
            ml.append(r.json()["outputs"][0]["data"][1])
        entry = report[name] = {"rows": len(rows), "mlserver_mean_score": round(float(np.mean(ml)), 6)}
        if mg is None:
            continue
        scores, decisions = [], {}
        headers = {**mg.auth("scoring_client"), "Content-Type": "application/json"}
        for i, row in enumerate(rows):
            body = score_body(row).replace(ENTITY, f"check-{name}-{i}".encode())
            s = httpx.post(f"{mg.url}/v1/score/{name}", content=body, headers=headers, timeout=30)
            if s.status_code != 200:  # the cells will measure (and count) the failures
                entry["modelgov_error"] = f"{s.status_code}: {s.text[:500]}"
                break
            scores.append(s.json()["score"])
            decisions[s.json()["decision"]] = decisions.get(s.json()["decision"], 0) + 1
        entry["modelgov_ok"] = len(scores)
        if len(scores) == len(ml):
            entry["max_abs_score_difference"] = float(np.max(np.abs(np.array(ml) - np.array(scores))))
            entry["modelgov_decisions"] = decisions
    return report


def targets(cells: list[dict], probes: list[dict] = ()) -> list[dict]:
    """At concurrency >= 16: modelgov throughput / MLServer's (target 2x) and p99 no worse; and
    beside it what the disk allowed at that concurrency (`probes`: fsync_publish_rate()s), the
    most decisions per second any recorder waiting for an fsynced PubAck could answer."""
    by = {(c["server"], c["model"], c["concurrency"]): c for c in cells if "req_per_s" in c}
    out = []
    for (server, model, conc), ml in by.items():
        mg = by.get(("modelgov", model, conc))
        if server != "mlserver" or conc < 16 or mg is None:
            continue
        ratio = mg["req_per_s"] / ml["req_per_s"] if ml["req_per_s"] else None
        p99_ok = mg["p99_ms"] is not None and ml["p99_ms"] is not None and mg["p99_ms"] <= ml["p99_ms"]
        out.append({"model": model, "concurrency": conc,
                    "throughput_ratio": round(ratio, 2) if ratio else None,
                    "modelgov_p99_ms": mg["p99_ms"], "mlserver_p99_ms": ml["p99_ms"],
                    "at_least_2x": bool(ratio and ratio >= 2), "p99_no_worse": p99_ok,
                    "met": bool(ratio and ratio >= 2 and p99_ok), **_over_oip(by, model, conc, ml),
                    **_ceiling(probes, conc, ml)})
    return out


def _over_oip(by: dict, model: str, concurrency: int, mlserver: dict) -> dict:
    """The same comparison on both servers' OIP route, with the same request body."""
    oip = by.get(("modelgov-oip", model, concurrency))
    if oip is None or not mlserver["req_per_s"]:
        return {}
    return {"oip_throughput_ratio": round(oip["req_per_s"] / mlserver["req_per_s"], 2),
            "modelgov_oip_p99_ms": oip["p99_ms"]}


def machine() -> dict:
    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def _ceiling(probes, concurrency: int, mlserver: dict) -> dict:
    rates = [p["closed_loop"][str(concurrency)]["events_per_second"] for p in probes
             if str(concurrency) in p.get("closed_loop", {})]
    if not rates:
        return {}
    return {"twice_mlserver_req_per_s": round(2 * mlserver["req_per_s"], 1),
            "fsynced_publishes_per_s_closed_loop": rates}


def fsync_publish_rate(work: Path, concurrencies: list[int]) -> dict:
    """What this disk allows now: JetStream publishes per second with an fsync per write, the
    ceiling on decisions recorded per second on one stream. Pipelined (async, as
    bench.audit_ingest measures it), and in a closed loop at each concurrency of the cells: that
    many publishers each waiting for its PubAck before the next, as that many clients' decisions
    do, with no model, no HTTP and nothing else on the CPU. Taken before and after the cells:
    this VM's disk speed drifts."""
    from bench.audit_ingest import events, publish_all

    server = NatsServer(work / f"fsync-probe-{time.monotonic_ns()}", sync_always=True).start()
    try:
        items = events(3000)
        out = asyncio.run(publish_all(server.url, items))
        out["closed_loop"] = {str(c): asyncio.run(closed_loop_publish(server.url, items, c, server.proc.pid))
                              for c in concurrencies if c > 1}
        return out
    finally:
        server.stop()


async def closed_loop_publish(url: str, items: list, concurrency: int, server_pid: int,
                              seconds: float = 3.0) -> dict:
    """`concurrency` publishers on one connection, each awaiting its PubAck before the next; and
    the server's CPU per message, which on 2 cores the scoring service has to share."""
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    taken, latencies, stop = itertools.count(), [], False

    async def publisher() -> None:
        while not stop:
            subject, payload, _ = items[next(taken) % len(items)]
            started = time.perf_counter()
            await js.publish(subject, payload, headers={"Nats-Msg-Id": f"closed-{time.monotonic_ns()}"})
            latencies.append(time.perf_counter() - started)

    tasks = [asyncio.create_task(publisher()) for _ in range(concurrency)]
    await asyncio.sleep(0.5)  # warm-up
    latencies.clear()
    cpu = cpu_seconds(server_pid)
    await asyncio.sleep(seconds)
    done, stop, cpu = len(latencies), True, cpu_seconds(server_pid) - cpu
    await asyncio.gather(*tasks)
    await nc.close()
    latencies.sort()
    return {"events_per_second": round(done / seconds, 1),
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2) if latencies else None,
            "server_cpu_ms_per_event": round(cpu * 1000 / done, 3) if done else None}


def code_state() -> dict:
    """The commit measured, and whether the scoring service had uncommitted changes then."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD") or None,
            "uncommitted_in_services_scoring": bool(git("status", "--porcelain", "services/scoring"))}


def project_versions() -> dict:
    import importlib.metadata as md

    out = {}
    for p in ("scikit-learn", "numpy", "skops", "fastapi", "uvicorn", "nats-py", "httpx", "psutil"):
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    for p in ("uvloop", "httptools"):  # uvicorn's fast paths: absent means asyncio loop and h11
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    try:
        out["nats-server"] = subprocess.run([binary("nats-server"), "--version"], capture_output=True,
                                            text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out["nats-server"] = None
    return out


def print_table(doc: dict) -> None:
    print(f"\n{'model':<10} {'c':>3}  {'server':<12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>6} {'srv CPU ms/req':>14} {'cli CPU ms/req':>14}")
    for c in doc["cells"]:
        if "req_per_s" not in c:
            print(f"{c['model']:<10} {c['concurrency']:>3}  {c['server']:<12} {c.get('error', '')[:80]}")
            continue
        print(f"{c['model']:<10} {c['concurrency']:>3}  {c['server']:<12} {c['req_per_s']:>8.1f} "
              f"{c['p50_ms'] or 0:>8.2f} {c['p99_ms'] or 0:>8.2f} {c['errors']:>6} "
              f"{c['server_cpu_ms_per_request']:>14.3f} {c['client_cpu_ms_per_request'] or 0:>14.3f}")
    m = doc["machine"]
    print(f"JetStream publishes/s with an fsync per write on this disk (the ceiling on recorded "
          f"decisions): {m['jetstream_fsync_publish_at_start']['events_per_second']:,.0f} before, "
          f"{m['jetstream_fsync_publish_at_end']['events_per_second']:,.0f} after the cells")
    mg = doc["modelgov"]
    if "error" in mg:
        print(f"\nmodelgov not measured: {mg['error'][:400]}")
    for t in doc["target_2x"]:
        print(f"target {t['model']} c={t['concurrency']}: {t['throughput_ratio']}x MLServer's throughput, "
              f"p99 {t['modelgov_p99_ms']} vs {t['mlserver_p99_ms']} ms -> "
              f"{'met' if t['met'] else 'not met'}")
        if "oip_throughput_ratio" in t:
            print(f"  on the OIP route with MLServer's body: {t['oip_throughput_ratio']}x, "
                  f"p99 {t['modelgov_oip_p99_ms']} ms")
        if "fsynced_publishes_per_s_closed_loop" in t:
            print(f"  2x MLServer = {t['twice_mlserver_req_per_s']:,.0f} req/s; this disk's fsynced "
                  f"publishes/s with {t['concurrency']} awaiting their acks and nothing else running: "
                  + " before, ".join(f"{r:,.0f}" for r in t["fsynced_publishes_per_s_closed_loop"])
                  + " after")


def main(args) -> dict:
    import sklearn

    concurrencies = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="modelgov-bench-scoring-"))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.omp_threads), "PYTHONUNBUFFERED": "1"}
    doc: dict = {
        "benchmark": "scoring_vs_mlserver",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "code": code_state(),
        "command": " ".join(["python -m bench.scoring_vs_mlserver", *sys.argv[1:]]),
        "settings": {
            "concurrency": concurrencies, "warmup_s": args.warmup, "duration_s": args.duration,
            "omp_num_threads": args.omp_threads, "seed": args.seed, "features": len(FEATURES),
            "mlserver_adaptive_batching": ({"max_batch_size": args.mlserver_max_batch_size,
                                            "max_batch_time": args.mlserver_max_batch_time}
                                           if args.mlserver_max_batch_size > 1 else "off (as shipped)"),
            "train_rows": TRAIN_ROWS, "request_rows": REQUEST_ROWS, "rows_per_request": 1,
            "load_generator": f"{args.http_client}: asyncio, closed loop, one HTTP/1.1 keep-alive "
                              "connection per concurrent client, its own process",
            "load_generator_cost": "client CPU per request is in each cell; raw streams cost "
                                   "0.1-0.2 ms, httpx.AsyncClient 2-3 ms (measured 2026-11-23), "
                                   "enough to throttle the servers on 2 cores",
            "order": f"per model and concurrency, {args.rounds} turns of MLServer, then modelgov's "
                     "/v1/score, then modelgov's OIP /v2 infer with MLServer's body (modelgov-oip), "
                     f"each {args.duration / args.rounds:g} s measured after its warm-up; a cell sums "
                     "its side's turns",
            "rounds": args.rounds,
            "access_logs": "off on both (MLServer debug=false; uvicorn --no-access-log)",
            "server_cpu": "psutil user+system over each server's process tree during the measured "
                          "window; modelgov counts scoring + nats-server + registry",
        },
        "models": MODELS,
        "record_keeping": {
            "modelgov": "every response is a decision.made event, durable in JetStream (PubAck, "
                        "nats-server sync_interval: always = fsync per write) before it is sent",
            "mlserver": "records no decisions",
        },
    }
    doc["machine"]["jetstream_fsync_publish_at_start"] = fsync_publish_rate(work, concurrencies)
    print(f"training models (seed {args.seed}) in {work}", flush=True)
    trained, request_rows = train(args.seed)
    repo = save(trained, work, args.mlserver_max_batch_size, args.mlserver_max_batch_time)
    oip = write_bodies(work / "oip.jsonl", [oip_body(r) for r in request_rows])
    oip_mg = write_bodies(work / "oip-modelgov.jsonl", [oip_body(r, "score") for r in request_rows])
    scores = write_bodies(work / "score.jsonl", [score_body(r) for r in request_rows])
    doc["models_detail"] = {m.name: m.metadata["metrics"] for m in trained}

    venv = ensure_mlserver_venv(sklearn.__version__)
    if venv.get("scikit-learn") != sklearn.__version__:
        venv["scikit_learn_differs"] = (f"MLServer's venv has scikit-learn {venv.get('scikit-learn')}, "
                                        f"the project {sklearn.__version__}, which wrote the joblib files")
    doc["versions"] = {"project": project_versions(), "mlserver_venv": venv}
    mls = MLServer(repo, env, work / "log" / "mlserver.log")
    mg: Modelgov | None = None
    cells: list[dict] = []
    try:
        print("starting MLServer", flush=True)
        mls.start()
        doc["mlserver"] = {"url": mls.url, "settings": mls.settings(),
                           "model_settings": {n: json.loads((repo / n / "model-settings.json").read_text())
                                              for n in MODELS}}
        print("starting modelgov (nats-server, registry, scoring)", flush=True)
        mg = Modelgov(work, env, workers=args.scoring_workers)
        try:
            mg.start().deploy(trained)
            doc["modelgov"] = {"url": mg.url,
                               "uvicorn": f"scoring: {mg.workers} worker process(es), --no-access-log",
                               "nats": "nats-server, JetStream file store, sync_interval: always"}
        except Exception as exc:  # noqa: BLE001 - MLServer is still measured, and the reason recorded
            logs = "\n".join(f"--- {n}.log\n{tail(work / 'log' / f'{n}.log', 15)}"
                             for n in ("registry", "scoring"))
            doc["modelgov"] = {"error": f"{type(exc).__name__}: {exc}\n{logs}"}
            print(f"modelgov side unavailable: {exc}", flush=True)
            mg = mg.stop()  # whatever of it did start
        doc["same_scores"] = check_same_scores(mls.url, mg, request_rows[:50])
        run_id = datetime.now(UTC).strftime("%H%M%S")
        for name in MODELS:
            for conc in concurrencies:
                sides = [("mlserver", mls.url, f"/v2/models/{name}/infer", {}, oip,
                          {"mlserver": mls.proc.pid})]
                if mg is not None:
                    sides.append(("modelgov", mg.url, f"/v1/score/{name}", mg.auth("scoring_client"),
                                  scores, mg.pids()))
                    sides.append(("modelgov-oip", mg.url, f"/v2/models/{name}/infer",
                                  mg.auth("scoring_client"), oip_mg, mg.pids()))
                # The sides take turns, a slice each, so that this VM's drift over the cell
                # (its speed moves within minutes) falls on every side alike.
                slices: dict[str, list[dict]] = {side[0]: [] for side in sides}
                each = args.duration / args.rounds
                for turn in range(args.rounds):
                    for server, url, path, headers, bodies, pids in sides:
                        slices[server].append(run_cell(
                            url, path, headers, bodies, conc, args.warmup, each, pids, env,
                            args.http_client, f"{run_id}-{name}-c{conc}-t{turn}-"))
                for server, measured in slices.items():
                    cell = merge_slices(measured, each)
                    cells.append({"model": name, "concurrency": conc, "server": server, **cell})
                    print(f"  {name} c={conc} {server}: {cell.get('req_per_s', cell.get('error'))} "
                          f"req/s (slices {cell.get('req_per_s_by_slice')})", flush=True)
        if mg is not None:
            ok = sum(c.get("ok_including_warmup", 0) for c in cells if c["server"].startswith("modelgov"))
            checked = sum(doc["same_scores"][n]["modelgov_ok"] for n in MODELS)
            doc["modelgov"]["decisions"] = {"responses_200": ok + checked,
                                            "decision_events_in_DECISIONS_stream": mg.decisions_in_stream()}
    finally:
        mls.stop()
        if mg is not None:
            mg.stop()
    doc["cells"] = cells
    doc["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["machine"]["jetstream_fsync_publish_at_end"] = fsync_publish_rate(work, concurrencies)
    doc["target_2x"] = targets(cells, [doc["machine"][f"jetstream_fsync_publish_at_{w}"]
                                       for w in ("start", "end")])
    shutil.rmtree(work, ignore_errors=True)
    return doc


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scoring_vs_mlserver", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per slice")
    parser.add_argument("--rounds", type=int, default=3,
                        help="slices per cell: the sides take turns, each measured duration/rounds "
                             "seconds a turn")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated client counts")
    parser.add_argument("--scoring-workers", type=int, default=2,
                        help="scoring's worker processes (MLServer as shipped runs two: its HTTP "
                             "front end and one inference worker)")
    parser.add_argument("--omp-threads", type=int, default=1, help="OMP_NUM_THREADS on both sides")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--http-client", choices=["raw", "httpx"], default="raw",
                        help="raw asyncio streams (default) or httpx.AsyncClient")
    parser.add_argument("--mlserver-max-batch-size", type=int, default=0,
                        help="MLServer adaptive batching: max requests per batch (0: off, its default)")
    parser.add_argument("--mlserver-max-batch-time", type=float, default=0.002,
                        help="MLServer adaptive batching: max seconds to wait for a batch to fill")
    parser.add_argument("--output", type=Path, default=RESULTS)
    # the load generator's own process
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--headers", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--bodies", help=argparse.SUPPRESS)
    parser.add_argument("--entity-prefix", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    if arguments.client:
        arguments.concurrency = int(arguments.concurrency)
        client_main(arguments)
        sys.exit(0)
    result = main(arguments)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nwrote {arguments.output}")
