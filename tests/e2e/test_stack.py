"""The local stack as a client sees it: `python -m deploy.stack up`, the demo, `down`.

Every port is a free one and all state lives under a temporary var dir, so the suite never
touches a developer's running stack.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from deploy.servers import NatsServer, free_port, port_open
from services.runtime.db import make_engine
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
ROLES = {"data_scientist", "model_risk", "compliance", "operator", "regulator", "scoring_client",
         "service", "admin"}
SERVICES = ("registry", "scoring", "monitoring", "audit")
PORTS = ("NATS", "NATS_MONITOR", "TEMPORAL", "TEMPORAL_UI", "REGISTRY", "SCORING", "MONITORING", "AUDIT")
needs_services = pytest.mark.skipif(
    not all((ROOT / "services" / s / "app.py").exists() for s in ("registry", "audit")),
    reason="the demo needs the registry and audit services",
)


@dataclass
class Stack:
    env: dict[str, str]
    var: Path
    ports: dict[str, int]
    up: subprocess.CompletedProcess

    def state(self) -> list[dict]:
        return json.loads((self.var / "stack.json").read_text())["components"]

    def token(self, role: str) -> str:
        return json.loads((self.var / "local-tokens.json").read_text())[role]


def stack_env(base: Path, nats_port: int | None = None) -> tuple[dict[str, str], dict[str, int]]:
    """The launcher's environment: a private var dir and a distinct free port for everything
    (free_port() hands out no port twice within a minute)."""
    ports = {name: free_port() for name in PORTS}
    if nats_port is not None:
        ports["NATS"] = nats_port
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELGOV_")}
    env.update({f"MODELGOV_{k}_PORT": str(v) for k, v in ports.items() if k not in ("NATS", "TEMPORAL")})
    env.update(
        MODELGOV_VAR_DIR=str(base / "var"),
        MODELGOV_NATS_URL=f"nats://127.0.0.1:{ports['NATS']}",
        MODELGOV_TEMPORAL_ADDRESS=f"127.0.0.1:{ports['TEMPORAL']}",
    )
    return env, ports


def run(module: str, *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def explain(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


@contextmanager
def started(base: Path, databases: dict[str, str] | None = None) -> Iterator[Stack]:
    env, ports = stack_env(base)
    env.update(databases or {})
    up = run("deploy.stack", "up", env=env)
    try:
        assert up.returncode == 0, explain(up)
        yield Stack(env, base / "var", ports, up)
    finally:
        run("deploy.stack", "down", env=env)  # safe when a test already took it down


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """The stack as `make up` starts it: every service on SQLite."""
    with started(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory, new_pg_database) -> Iterator[Stack]:
    """The stack with every service's database on PostgreSQL, and the demo run on it."""
    databases = {f"MODELGOV_{name.upper()}_DATABASE_URL": new_pg_database() for name in SERVICES}
    with started(tmp_path_factory.mktemp("pg-stack"), databases) as pg:
        demo = run("deploy.demo", env=pg.env, timeout=90)
        assert demo.returncode == 0, explain(demo)
        # check the demo's model went to PostgreSQL, not to a SQLite file under var/
        engine = make_engine(databases["MODELGOV_REGISTRY_DATABASE_URL"])
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM models WHERE name = 'credit-default'")) == 1
        engine.dispose()
        yield pg


def test_up_starts_everything_and_waits_for_readiness(stack):
    components = {c["name"]: c for c in stack.state()}

    # check NATS and Temporal were started by this run, on the ports asked for
    assert components["nats"]["owned"] and components["nats"]["port"] == stack.ports["NATS"]
    assert components["temporal"]["owned"] and components["temporal"]["port"] == stack.ports["TEMPORAL"]
    assert port_open(stack.ports["NATS_MONITOR"]) and port_open(stack.ports["TEMPORAL_UI"])

    # check every service present answers /readyz, and the URLs are printed
    services = [n for n in SERVICES if n in components]
    assert services == [s for s in SERVICES
                        if (ROOT / "services" / s / "app.py").exists()]
    for name in services:
        port = stack.ports[name.upper()]
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {
            "status": "ok", "service": name}
        assert f"http://127.0.0.1:{port}/docs" in stack.up.stdout
    assert f"http://127.0.0.1:{stack.ports['TEMPORAL_UI']}" in stack.up.stdout
    assert (stack.var / "log" / "nats.log").exists()


def test_up_again_is_safe(stack):
    before = stack.state()

    again = run("deploy.stack", "up", env=stack.env)

    # check it says so and starts nothing new
    assert again.returncode == 0, explain(again)
    assert "already running" in again.stdout
    assert stack.state() == before


def test_a_second_launcher_reuses_the_running_stack_and_its_down_leaves_it(stack, tmp_path):
    env = {**stack.env, "MODELGOV_VAR_DIR": str(tmp_path / "var")}

    up = run("deploy.stack", "up", env=env)

    # check it reused every part on the ports asked for, owning none
    assert up.returncode == 0, explain(up)
    components = json.loads((tmp_path / "var" / "stack.json").read_text())["components"]
    assert {c["name"] for c in components} == {c["name"] for c in stack.state()}
    assert not any(c["owned"] for c in components)
    assert up.stdout.count("reusing") == len(components)

    down = run("deploy.stack", "down", env=env)

    # check the first stack still runs, every service ready
    assert down.returncode == 0, explain(down)
    assert all(httpx.get(f"http://127.0.0.1:{c['port']}/readyz", timeout=5).status_code == 200
               for c in stack.state() if c["name"] in SERVICES)


def test_up_refuses_a_service_port_held_by_something_else(tmp_path):
    env, ports = stack_env(tmp_path)
    with socket.socket() as stranger:
        stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        stranger.bind(("127.0.0.1", ports["REGISTRY"]))
        stranger.listen()

        up = run("deploy.stack", "up", env=env)

    # check it says whose port and how to fix it, and stops what it had started
    assert up.returncode == 1, explain(up)
    assert (f"registry's port {ports['REGISTRY']} is taken by something other than modelgov's "
            f"registry" in up.stderr), explain(up)
    assert "MODELGOV_REGISTRY_PORT" in up.stderr
    assert not port_open(ports["NATS"]) and not port_open(ports["TEMPORAL"])
    assert not (tmp_path / "var" / "stack.json").exists()


def test_up_refuses_a_service_port_held_by_another_modelgov_service(stack, tmp_path):
    audit = stack.ports["AUDIT"]
    env = {**stack.env, "MODELGOV_VAR_DIR": str(tmp_path / "var"), "MODELGOV_REGISTRY_PORT": str(audit)}

    up = run("deploy.stack", "up", env=env)

    # check it names the service holding the port instead of reusing it, and the stack runs on
    assert up.returncode == 1, explain(up)
    assert f"registry's port {audit} is taken by modelgov's audit" in up.stderr, explain(up)
    assert httpx.get(f"http://127.0.0.1:{audit}/healthz", timeout=5).json()["service"] == "audit"
    assert all(httpx.get(f"http://127.0.0.1:{c['port']}/readyz", timeout=5).status_code == 200
               for c in stack.state() if c["name"] in SERVICES)


def test_tokens_file_holds_every_role_for_its_owner_only(stack):
    path = stack.var / "local-tokens.json"
    tokens = json.loads(path.read_text())

    assert set(tokens) == ROLES
    assert len(set(tokens.values())) == len(ROLES)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_status_reports_readiness(stack):
    status = run("deploy.stack", "status", env=stack.env)

    assert status.returncode == 0, explain(status)
    assert "nats" in status.stdout and "temporal" in status.stdout


@needs_services
def test_demo_registers_approves_and_audits(stack):
    demo = run("deploy.demo", env=stack.env, timeout=90)

    # check the story ran to its end with an intact audit chain
    assert demo.returncode == 0, explain(demo)
    assert "chain verification: ok" in demo.stdout
    # check the approved version became the champion and decided, over /v1 and OIP v2
    assert "champion v" in demo.stdout and "/v2/models/credit-default/infer" in demo.stdout
    assert sum(line.lstrip().startswith("german-credit-") for line in demo.stdout.splitlines()) == 5

    # check as a regulator would: the approval is in the model's history and every chain verifies
    audit = f"http://127.0.0.1:{stack.ports['AUDIT']}"
    headers = {"Authorization": f"Bearer {stack.token('regulator')}"}
    def history_types():
        history = httpx.get(f"{audit}/v1/audit/models/credit-default/history", headers=headers)
        return [e["type"] for e in history.json()["events"]]

    # the model's timeline includes where scoring deployed it
    types = wait_for(lambda: (t := history_types()) and
                     "modelgov.scoring.deployment.changed.v1" in t and t)
    assert "modelgov.registry.model_version.approved.v1" in types
    verify = httpx.get(f"{audit}/v1/audit/verify", headers=headers).json()
    assert verify["ok"], verify

    # check the demo leaves the files the README's curl tour registers a version with, and they do
    demo_dir = stack.var / "demo"
    with (demo_dir / "credit-default.skops").open("rb") as artifact:
        registered = httpx.post(
            f"http://127.0.0.1:{stack.ports['REGISTRY']}/v1/models/credit-default/versions",
            headers={"Authorization": f"Bearer {stack.token('data_scientist')}"},
            files={"artifact": artifact,
                   "metadata": (demo_dir / "credit-default.metadata.json").read_bytes()})
    assert registered.status_code == 201, registered.text


CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


@needs_services
@pytest.mark.parametrize("on", ["stack", "pg_stack"])
def test_no_route_answers_a_fuzzed_request_with_a_server_error(on, request, tmp_path):
    """Every operation in every service's OpenAPI, fuzzed by schemathesis as admin: its
    examples, the edges of each schema (coverage) and random inputs, with the demo's model named
    in the path. Bad input must get a 4xx; a 5xx is a bug (it found some, mended since). Every
    answer must also be what the OpenAPI says, body and content type (errors: problem+json), so
    a client generated from it reads them. On SQLite and on PostgreSQL, which refuses values
    SQLite keeps (text with NUL, integers past 64 bits)."""
    stack = request.getfixturevalue(on)
    st = Path(sys.executable).with_name("st")
    # admin may do all but steer deployments, so the service role fuzzes those
    passes = [(s, "admin", []) for s in ("REGISTRY", "SCORING", "MONITORING", "AUDIT")]
    passes.append(("SCORING", "service", ["--include-path-regex", "^/v1/deployments/"]))
    failures = []
    for service, role, only in passes:
        url = f"http://127.0.0.1:{stack.ports[service]}/openapi.json"
        done = subprocess.run(
            [str(st), "--config-file", str(ROOT / "tests" / "e2e" / "fuzz.toml"), "run", url,
             "--header", f"Authorization: Bearer {stack.token(role)}", *only,
             "--checks", CHECKS, "--phases", "examples,coverage,fuzzing",
             "--max-examples", "40", "--seed", "20261124", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,  # its .schemathesis/ there
        )
        if done.returncode != 0:
            failures.append(f"{service} as {role} ({url}):\n{done.stdout[-6000:]}{done.stderr[-2000:]}")
    assert not failures, "\n\n".join(failures)


def test_down_stops_exactly_what_up_started(stack):
    started = [c for c in stack.state() if c["owned"]]

    down = run("deploy.stack", "down", env=stack.env)

    # check every process is gone, its port closed, and the record removed
    assert down.returncode == 0, explain(down)
    assert started and all(gone(c["pid"]) for c in started)
    assert not any(port_open(c["port"]) for c in started)
    assert not (stack.var / "stack.json").exists()
    # check a second down is harmless
    assert run("deploy.stack", "down", env=stack.env).returncode == 0


def test_up_reuses_a_running_nats_and_down_leaves_it(tmp_path):
    nats = NatsServer(tmp_path / "own-nats", sync_always=False).start()
    env, _ = stack_env(tmp_path, nats_port=nats.port)
    try:
        up = run("deploy.stack", "up", env=env)
        assert up.returncode == 0, explain(up)
        components = {c["name"]: c for c in json.loads((tmp_path / "var" / "stack.json").read_text())
                      ["components"]}

        # check NATS is recorded as reused, not owned
        assert components["nats"] == {**components["nats"], "owned": False, "pid": None}
        assert "reusing" in up.stdout

        down = run("deploy.stack", "down", env=env)

        # check the stack's own processes stopped and the test's NATS still runs
        assert down.returncode == 0, explain(down)
        assert all(gone(c["pid"]) for c in components.values() if c["owned"])
        assert nats.proc.poll() is None and port_open(nats.port)
    finally:
        run("deploy.stack", "down", env=env)
        nats.stop()
