"""The container and cluster files (docker-compose.yml, deploy/Dockerfile, deploy/k8s/) agree with the code.

No Docker engine or cluster runs them here, so these checks are what keeps them honest: the
commands name modules that import, ports and settings are the ones `Settings` defines, each
service uses its own database, and NATS and Temporal are configured like the local stack.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from deploy.servers import SEARCH_ATTRIBUTES
from deploy.stack import SCORING_HTTP
from services.runtime.auth import TokenBook
from services.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
K8S_FILES = sorted((ROOT / "deploy" / "k8s").rglob("*.yaml"))
K8S = [doc for path in K8S_FILES for doc in yaml.safe_load_all(path.read_text()) if doc]
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()
APP = re.compile(r"^services\.(\w+)\.app:create_app$")


def _ids(value) -> str:
    """Test ids from the `where` and `service` parameters only."""
    return value if isinstance(value, str) else ""


def default(field: str):
    """A setting's default, whatever MODELGOV_* the test process happens to run with."""
    return Settings.model_fields[field].default


def service_port(name: str) -> int:
    return default(f"{name}_port")


def uvicorn_target(command: list[str]) -> tuple[str, int] | None:
    """(service name, --port) of a `uvicorn services.<name>.app:create_app --factory` command."""
    if not command or command[0] != "uvicorn":
        return None
    match = APP.match(command[1])
    assert match, f"uvicorn runs {command[1]!r}, not services.<name>.app:create_app"
    assert "--factory" in command, f"{command}: create_app is a factory"
    host = command[command.index("--host") + 1]
    assert host == "0.0.0.0", f"{command}: a container listens on all addresses"
    return match.group(1), int(command[command.index("--port") + 1])


def compose_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def k8s(kind: str) -> list[dict]:
    return [doc for doc in K8S if doc["kind"] == kind]


def containers(deployment: dict) -> list[dict]:
    spec = deployment["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def all_env_names() -> dict[str, str]:
    """Every MODELGOV_* name the deploy files set, with where it is set."""
    names: dict[str, str] = {}
    for svc_name, svc in COMPOSE["services"].items():
        names.update({k: f"docker-compose.yml: {svc_name}" for k in compose_env(svc)})
    for cm in k8s("ConfigMap"):
        names.update({k: f"ConfigMap {cm['metadata']['name']}" for k in cm["data"]})
    for secret in k8s("Secret"):
        names.update({k: f"Secret {secret['metadata']['name']}" for k in secret.get("stringData", {})})
    for dep in k8s("Deployment"):
        for c in containers(dep):
            for e in c.get("env", []):
                names[e["name"]] = f"Deployment {dep['metadata']['name']}"
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    names[ref["key"]] = f"Deployment {dep['metadata']['name']} (secret key)"
    names.update({m: "deploy/Dockerfile" for m in re.findall(r"\bMODELGOV_\w+", DOCKERFILE)})
    return {k: where for k, where in names.items() if k.startswith("MODELGOV_")}


def database_urls() -> list[tuple[str, str, str]]:
    """(service, url, where) for every MODELGOV_<SERVICE>_DATABASE_URL the deploy files set."""
    found = []
    for svc_name, svc in COMPOSE["services"].items():
        found += [(k, v, f"compose {svc_name}") for k, v in compose_env(svc).items()]
    for secret in k8s("Secret"):
        where = f"Secret {secret['metadata']['name']}"
        found += [(k, v, where) for k, v in secret.get("stringData", {}).items()]
    pattern = re.compile(r"^MODELGOV_(\w+)_DATABASE_URL$")
    return [(m.group(1).lower(), v, where) for k, v, where in found if (m := pattern.match(k))]


# --- commands ---------------------------------------------------------------------------------

def all_commands() -> list[tuple[str, list[str]]]:
    commands = [(f"compose {n}", s["command"]) for n, s in COMPOSE["services"].items()
                if isinstance(s.get("command"), list) and s["command"][0] in ("uvicorn", "python")]
    commands += [(f"Deployment {d['metadata']['name']}", c["command"])
                 for d in k8s("Deployment") for c in containers(d)]
    cmd = re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.M)
    assert cmd, "deploy/Dockerfile has an exec-form CMD"
    commands.append(("Dockerfile CMD", json.loads(cmd.group(1))))
    return commands


@pytest.mark.parametrize(("where", "command"), all_commands(), ids=_ids)
def test_every_command_runs_something_that_exists(where, command):
    if command[0] == "uvicorn":
        name, port = uvicorn_target(command)
        # check the factory imports and the port is the service's own
        assert callable(importlib.import_module(f"services.{name}.app").create_app), where
        assert port == service_port(name), f"{where}: {name} listens on {service_port(name)}, not {port}"
        # check scoring runs with the HTTP protocol `make up` gives it, and that protocol imports
        if name == "scoring":
            at = command.index("--http")
            assert command[at:at + 2] == SCORING_HTTP, where
            module, _, attr = command[at + 1].partition(":")
            assert getattr(importlib.import_module(module), attr), where
    else:
        assert command[:3] == ["python", "-m", "services.runtime.migrate"], f"{where}: {command}"
        importlib.import_module("services.runtime.migrate")
        # check every database it migrates has a script directory
        for name in command[3:]:
            assert (ROOT / "migrations" / name / "env.py").exists(), f"{where}: no migrations for {name}"


def test_the_services_that_exist_are_all_deployed():
    present = {p.parent.name for p in (ROOT / "services").glob("*/app.py")}
    in_compose = {uvicorn_target(s["command"])[0] for s in COMPOSE["services"].values()
                  if isinstance(s.get("command"), list) and s["command"][0] == "uvicorn"}
    in_k8s = {uvicorn_target(c["command"])[0] for d in k8s("Deployment")
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert in_compose == present
    assert in_k8s == present


# --- settings ---------------------------------------------------------------------------------

def test_every_modelgov_variable_is_a_setting():
    unknown = {k: where for k, where in all_env_names().items()
               if k.removeprefix("MODELGOV_").lower() not in Settings.model_fields}
    assert not unknown, f"not fields of Settings (services/runtime/settings.py): {unknown}"


def test_production_settings_are_complete():
    # check the services run in production mode with a tokens file (the mode refuses to start without)
    for name in ("registry", "audit"):
        env = compose_env(COMPOSE["services"][name])
        assert env["MODELGOV_MODE"] == "production"
        Settings(**{k.removeprefix("MODELGOV_").lower(): v for k, v in env.items()})
    config = k8s("ConfigMap")[0]["data"]
    assert config["MODELGOV_MODE"] == "production" and config["MODELGOV_TOKENS_FILE"]
    Settings(**{k.removeprefix("MODELGOV_").lower(): v for k, v in config.items()})


@pytest.mark.parametrize(("service", "url", "where"), database_urls(), ids=_ids)
def test_each_service_uses_its_own_database(service, url, where):
    parts = urlsplit(url)
    assert parts.scheme == "postgresql", f"{where}: {url}"
    assert parts.path == f"/{service}", f"{where}: {service} must use database {service!r}, not {parts.path}"
    assert parts.username == service, f"{where}: {service} must connect as role {service!r}"


def test_compose_database_roles_and_passwords_are_created_by_the_init_script():
    postgres = COMPOSE["services"]["postgres"]
    mounted = {v.split(":")[0] for v in postgres["volumes"]}
    assert "./deploy/postgres/init-databases.sql" in mounted
    sql = (ROOT / "deploy" / "postgres" / "init-databases.sql").read_text()
    for service, url, where in database_urls():
        if not where.startswith("compose"):
            continue
        parts = urlsplit(url)
        assert parts.hostname == "postgres" and parts.port == 5432, where
        assert f"CREATE ROLE {service} LOGIN PASSWORD '{parts.password}';" in sql, where
        assert f"CREATE DATABASE {service} OWNER {service};" in sql, where
    temporal = compose_env(COMPOSE["services"]["temporal"])
    assert f"CREATE ROLE temporal LOGIN PASSWORD '{temporal['POSTGRES_PWD']}';" in sql
    assert "CREATE DATABASE temporal OWNER temporal;" in sql
    assert "CREATE DATABASE temporal_visibility OWNER temporal;" in sql


def test_example_tokens_load_as_principals():
    book = TokenBook.from_json(json.loads((ROOT / "deploy" / "tokens.example.json").read_text()))
    principal = book.find("example-admin-token-replace-me")
    assert principal is not None and principal.name == "admin"
    # check the k8s placeholder is in the same shape and admits nobody
    [tokens] = [s for s in k8s("Secret") if s["metadata"]["name"] == "modelgov-tokens"]
    assert json.loads(tokens["stringData"]["tokens.json"]) == []


# --- ports ------------------------------------------------------------------------------------

def published(service: dict) -> dict[int, int]:
    """container port → host port, from compose `ports` ("[ip:]host:container")."""
    out = {}
    for spec in service.get("ports", []):
        *_, host, container = str(spec).split(":")
        out[int(container)] = int(host)
    return out


def test_compose_ports_are_the_architecture_ports():
    services = COMPOSE["services"]
    for name in ("registry", "audit"):
        port = service_port(name)
        assert published(services[name]) == {port: port}, name
        assert f"http://127.0.0.1:{port}/readyz" in " ".join(services[name]["healthcheck"]["test"])
    nats_port = urlsplit(default("nats_url")).port
    assert published(services["nats"]) == {nats_port: nats_port,
                                           default("nats_monitor_port"): default("nats_monitor_port")}
    temporal_port = int(default("temporal_address").rsplit(":", 1)[1])
    assert published(services["temporal"]) == {temporal_port: temporal_port}
    assert default("temporal_ui_port") in published(services["temporal-ui"]).values()
    assert published(services["postgres"]) == {5432: 5432}


def test_compose_services_reach_nats_and_temporal_by_their_compose_names():
    for name in ("registry", "audit"):
        env = compose_env(COMPOSE["services"][name])
        nats = urlsplit(env["MODELGOV_NATS_URL"])
        assert nats.hostname in COMPOSE["services"] and nats.port == urlsplit(default("nats_url")).port
        host, port = env["MODELGOV_TEMPORAL_ADDRESS"].rsplit(":", 1)
        assert host in COMPOSE["services"] and port == default("temporal_address").rsplit(":", 1)[1]
        tokens_mount = {v.split(":")[1]: v.split(":")[0] for v in COMPOSE["services"][name]["volumes"]}
        assert tokens_mount[env["MODELGOV_TOKENS_FILE"]] == "./deploy/tokens.example.json"


def test_dockerfile_builds_a_non_root_image_of_the_pinned_package():
    assert re.search(r"^FROM python:3\.11-slim$", DOCKERFILE, re.M)
    assert re.search(r"^RUN pip install \.( |$)", DOCKERFILE, re.M), "a plain install: no dev extras"
    user = re.search(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert user and user.group(1).split(":")[0] not in ("root", "0")
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", DOCKERFILE, re.M) for p in line.split()}
    assert exposed == {service_port(n) for n in ("registry", "scoring", "monitoring", "audit")}
    # check every package pyproject installs is copied into the build
    copied = set(re.findall(r"^COPY (\w+) ", DOCKERFILE, re.M))
    assert copied == {"contracts", "services", "workflows", "deploy", "bench", "migrations"}


def test_compose_waits_for_what_each_part_needs():
    services = COMPOSE["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            condition = cond["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} healthy: it has no check"
            else:
                assert condition == "service_completed_successfully", f"{name} -> {dep}: {condition}"
                restart = services[dep].get("restart", "no")
                assert restart == "no" or restart.startswith("on-failure"), f"{dep} is a one-shot"
    for name in ("registry", "audit"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["nats"]["condition"] == "service_healthy"


# --- NATS and Temporal, as the local stack runs them ------------------------------------------

def test_nats_runs_jetstream_with_fsync_per_write_on_a_volume():
    nats = COMPOSE["services"]["nats"]
    mounts = dict(v.split(":")[:2] for v in nats["volumes"])
    conf_path = nats["command"][nats["command"].index("-c") + 1]
    assert mounts["./deploy/nats/nats.conf"] == conf_path
    conf = (ROOT / "deploy" / "nats" / "nats.conf").read_text()
    jetstream = re.search(r"jetstream\s*\{(.*?)\}", conf, re.S)
    assert jetstream, "JetStream is on"
    settings = dict(re.findall(r"^\s*(\w+)\s*:\s*(\S+)", jetstream.group(1), re.M))
    assert settings["sync_interval"] == "always"
    # check the store is on a named volume, not in the container's writable layer
    volume_of = {target: source for source, target in mounts.items()}
    assert any(settings["store_dir"].startswith(target) and source in COMPOSE["volumes"]
               for target, source in volume_of.items()), settings["store_dir"]
    assert re.search(rf"^port:\s*{urlsplit(default('nats_url')).port}$", conf, re.M)
    assert re.search(rf"^http_port:\s*{default('nats_monitor_port')}$", conf, re.M)


def search_attributes(text: str) -> set[str]:
    return {f"{name}={kind}" for name, kind in re.findall(r"--name (\w+) --type (\w+)", text)}


def test_temporal_search_attributes_match_the_local_dev_server():
    setup = COMPOSE["services"]["temporal-setup"]
    assert setup["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert search_attributes(" ".join(setup["command"])) == set(SEARCH_ATTRIBUTES)
    assert search_attributes((ROOT / "deploy" / "k8s" / "README.md").read_text()) == set(SEARCH_ATTRIBUTES)


def test_temporal_setup_survives_compose_interpolation():
    # Compose substitutes $VAR itself; a shell variable has to be written $$VAR to reach the shell.
    script = " ".join(COMPOSE["services"]["temporal-setup"]["command"])
    assert not re.search(r"(?<!\$)\$(?!\$)", script.replace("$$", "")), "write $$ for the shell's $"
    for line in script.splitlines():
        shlex.split(line.replace("$$", "$"), comments=True)  # balanced quotes


# --- Kubernetes -------------------------------------------------------------------------------

def test_k8s_probes_hit_readyz_and_healthz_on_the_service_port():
    deployments = k8s("Deployment")
    assert deployments
    for dep in deployments:
        for c in dep["spec"]["template"]["spec"]["containers"]:
            name, port = uvicorn_target(c["command"])
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            assert ports == {"http": service_port(name)}
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                assert c[probe]["httpGet"]["port"] in ("http", service_port(name)), f"{name} {probe}"
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]


def test_k8s_services_and_deployments_agree():
    services = {s["metadata"]["name"]: s for s in k8s("Service")}
    for dep in k8s("Deployment"):
        name = dep["metadata"]["name"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert services[name]["spec"]["selector"].items() <= labels.items()
        assert services[name]["spec"]["ports"][0]["port"] == service_port(name)
        spec = dep["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        # check every mounted volume and every referenced ConfigMap / Secret is declared
        volumes = {v["name"] for v in spec["volumes"]}
        for c in containers(dep):
            assert {m["name"] for m in c.get("volumeMounts", [])} <= volumes, name
            for ref in c.get("envFrom", []):
                assert ref["configMapRef"]["name"] in {cm["metadata"]["name"] for cm in k8s("ConfigMap")}
            for e in c.get("env", []):
                ref = e["valueFrom"]["secretKeyRef"]
                [secret] = [s for s in k8s("Secret") if s["metadata"]["name"] == ref["name"]]
                assert ref["key"] in secret["stringData"], f"{name}: {ref}"


def test_audit_runs_exactly_one_writer():
    [audit] = [d for d in k8s("Deployment") if d["metadata"]["name"] == "audit"]
    assert audit["spec"]["replicas"] == 1
    assert audit["spec"]["strategy"]["type"] == "Recreate", "a rolling update runs two writers at once"


def test_every_k8s_object_is_in_the_modelgov_namespace():
    [namespace] = k8s("Namespace")
    for doc in K8S:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"], doc["metadata"]["name"]
