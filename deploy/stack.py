"""The local stack: NATS, Temporal and the services in the background, all state under var/.

    python -m deploy.stack up       start what is not running, return once every service is ready
    python -m deploy.stack down     stop exactly what `up` started
    python -m deploy.stack status   what runs, with readiness

A NATS or Temporal that already answers on the configured address is reused and never stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from deploy.servers import NatsServer, TemporalDevServer, port_open, stop_pid
from services.runtime.auth import Role
from services.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("registry", "scoring", "monitoring", "audit")
ROLES = tuple(role.value for role in Role)
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


@dataclass
class Component:
    """One running part of the stack, as recorded in var/stack.json."""

    name: str
    port: int
    owned: bool  # started by `up` (so `down` stops it) or reused (left alone)
    pid: int | None = None
    # /proc start time of `pid`, so `down` never signals a recycled pid
    start_ticks: int | None = None

    def running(self) -> bool:
        if self.pid is None:
            return port_open(self.port)
        return _start_ticks(self.pid) == self.start_ticks if self.start_ticks else _pid_alive(self.pid)


@dataclass
class Paths:
    var: Path
    log: Path
    stack: Path
    tokens: Path

    @classmethod
    def of(cls, settings: Settings) -> Paths:
        var = settings.var_dir.resolve()
        return cls(var, var / "log", var / "stack.json", settings.tokens_path.resolve())


# --- state file ---------------------------------------------------------------------------------

def load_state(paths: Paths) -> list[Component]:
    if not paths.stack.exists():
        return []
    doc = json.loads(paths.stack.read_text())
    return [Component(**c) for c in doc.get("components", [])]


def save_state(paths: Paths, components: list[Component]) -> None:
    paths.var.mkdir(parents=True, exist_ok=True)
    tmp = paths.stack.with_suffix(".json.tmp")
    doc = {"var_dir": str(paths.var), "components": [asdict(c) for c in components]}
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(paths.stack)


def _start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time); None when the process is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


# --- tokens -------------------------------------------------------------------------------------

def ensure_tokens(path: Path) -> dict[str, str]:
    """role → random bearer token, created once (mode 0600); missing roles are added."""
    tokens: dict[str, str] = {}
    if path.exists():
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            return {}  # a production-style [{token, name, roles}] file: not ours to touch
        tokens = doc
    missing = [r for r in ROLES if r not in tokens]
    if not missing:
        return tokens
    tokens.update({role: secrets.token_urlsafe(32) for role in missing})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(tokens, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return tokens


# --- starting the parts -------------------------------------------------------------------------

def _host_port(address: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(address if "://" in address else f"//{address}")
    return parts.hostname or "127.0.0.1", parts.port or default_port


def _owned(name: str, port: int, proc: subprocess.Popen) -> Component:
    return Component(name, port, owned=True, pid=proc.pid, start_ticks=_start_ticks(proc.pid))


def reuse_or_start(name: str, address: str, default_port: int,
                   make: Callable[[int], NatsServer | TemporalDevServer], note: str) -> Component:
    """Reuse what answers on `address`; otherwise start the bundled server there."""
    host, port = _host_port(address, default_port)
    if port_open(port, host):
        print(f"  {name:<10} reusing the server at {address}")
        return Component(name, port, owned=False)
    if host not in LOCAL_HOSTS:
        raise RuntimeError(f"{name} at {address} does not answer, and it is not local to start it")
    server = make(port)
    try:
        server.start()
    except BaseException:
        server.stop()  # nothing of ours is left running unrecorded
        raise
    print(f"  {name:<10} started (pid {server.proc.pid}, {note})")
    return _owned(name, port, server.proc)


def start_nats(settings: Settings, paths: Paths) -> Component:
    return reuse_or_start(
        "nats", settings.nats_url, 4222,
        lambda port: NatsServer(store_dir=paths.var / "nats", port=port,
                                monitor_port=settings.nats_monitor_port, sync_always=True,
                                log_file=paths.log / "nats.log"),
        "JetStream, fsync per write",
    )


def start_temporal(settings: Settings, paths: Paths) -> Component:
    return reuse_or_start(
        "temporal", settings.temporal_address, 7233,
        lambda port: TemporalDevServer(db_file=paths.var / "temporal.db", port=port,
                                       ui_port=settings.temporal_ui_port,
                                       log_file=paths.log / "temporal.log"),
        "search attributes ModelName, ModelVersion, GovernanceStage",
    )


def present_services() -> list[str]:
    return [name for name in SERVICES if (ROOT / "services" / name / "app.py").exists()]


def child_env(settings: Settings, paths: Paths) -> dict[str, str]:
    """The launcher's MODELGOV_* settings, with every path made absolute for the children."""
    env = dict(os.environ)
    env.update(
        MODELGOV_VAR_DIR=str(paths.var),
        MODELGOV_TOKENS_FILE=str(paths.tokens),
        MODELGOV_NATS_URL=settings.nats_url,
        MODELGOV_TEMPORAL_ADDRESS=settings.temporal_address,
        PYTHONUNBUFFERED="1",
    )
    for name in ("artifact_dir", "audit_replay_dir"):
        value = getattr(settings, name)
        if value is not None:
            env[f"MODELGOV_{name.upper()}"] = str(value.resolve())
    return env


def migrate(names: list[str], env: dict[str, str], paths: Paths) -> None:
    with_migrations = [n for n in names if (ROOT / "migrations" / n).is_dir()]
    if not with_migrations:
        return
    done = subprocess.run([sys.executable, "-m", "services.runtime.migrate", *with_migrations],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    log = paths.log / "migrate.log"
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"migrations failed ({log}):\n{_tail(log)}")
    print(f"  migrations {', '.join(with_migrations)} at head")


# Scoring's HTTP protocol: uvicorn's httptools one, writing each response in one send()
# (services/scoring/http.py).
SCORING_HTTP = ["--http", "services.scoring.http:HttpToolsOneWrite"]


def service_on(port: int) -> str | None:
    """Which modelgov service answers on `port`, by its /healthz; None for anything else."""
    try:
        body = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None
    return body.get("service") if isinstance(body, dict) else None


def start_service(name: str, settings: Settings, paths: Paths, env: dict[str, str]) -> Component:
    port = settings.port(name)
    if port_open(port):
        found = service_on(port)
        if found != name:
            holder = f"modelgov's {found}" if found else f"something other than modelgov's {name}"
            raise RuntimeError(f"{name}'s port {port} is taken by {holder}: stop it, or give "
                               f"{name} a free port with MODELGOV_{name.upper()}_PORT")
        print(f"  {name:<10} already answers on port {port}: reusing it")
        return Component(name, port, owned=False)
    log = open(paths.log / f"{name}.log", "ab")
    workers = ["--workers", str(settings.scoring_workers), *SCORING_HTTP] if name == "scoring" else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", f"services.{name}.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), *workers],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    print(f"  {name:<10} starting (pid {proc.pid}, port {port})")
    return _owned(name, port, proc)


def ready(component: Component) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{component.port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(services: list[Component], timeout: float) -> Component | None:
    """None once every service answers /readyz with 200; else the first one that did not."""
    waiting = list(services)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for c in list(waiting):
            if c.owned and not c.running():
                return c  # exited: no point waiting
            if ready(c):
                print(f"  {c.name:<10} ready on http://127.0.0.1:{c.port}")
                waiting.remove(c)
        time.sleep(0.2)
    return waiting[0] if waiting else None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


# --- commands -----------------------------------------------------------------------------------

def up(settings: Settings, timeout: float) -> int:
    paths = Paths.of(settings)
    paths.log.mkdir(parents=True, exist_ok=True)
    previous = {c.name: c for c in load_state(paths) if c.owned and c.running()}
    names = present_services()
    if previous and all(n in previous for n in ("nats", "temporal", *names)):
        services = [previous[n] for n in names]
        if all(ready(c) for c in services):
            print(f"modelgov stack already running (state in {paths.stack})")
            print_urls(settings, paths, list(previous.values()))
            return 0

    ensure_tokens(paths.tokens)
    print(f"modelgov stack: state under {paths.var}")
    components: list[Component] = []
    started: list[Component] = []  # by this run: what a failure stops again

    def recorded() -> list[Component]:
        """What runs now: this run's components, and the earlier ones not yet passed over."""
        return components + [c for c in previous.values() if c not in components]

    def keep(component: Component) -> Component:
        components.append(component)
        if component.owned and component.name not in previous:
            started.append(component)
        save_state(paths, recorded())
        return component

    try:
        for name, start in (("nats", start_nats), ("temporal", start_temporal)):
            if name in previous:
                print(f"  {name:<10} already running (pid {previous[name].pid})")
                keep(previous[name])
            else:
                keep(start(settings, paths))
        env = child_env(settings, paths)
        migrate([n for n in names if n not in previous], env, paths)
        services = []
        for name in names:
            if name in previous:
                print(f"  {name:<10} already running (pid {previous[name].pid})")
                services.append(keep(previous[name]))
            else:
                services.append(keep(start_service(name, settings, paths, env)))
        failed = wait_ready(services, timeout)
        if failed is not None:
            log = paths.log / f"{failed.name}.log"
            why = "exited" if failed.owned and not failed.running() else f"not ready after {timeout:.0f}s"
            raise RuntimeError(f"{failed.name} {why}; tail of {log}:\n{_tail(log)}")
    except (Exception, KeyboardInterrupt) as exc:
        print(f"\nmodelgov stack failed to start: {exc}", file=sys.stderr)
        for c in reversed(started):
            print(f"  stopping {c.name} (pid {c.pid})", file=sys.stderr)
            stop_pid(c.pid)
        survivors = [c for c in recorded() if c not in started]
        if survivors:
            save_state(paths, survivors)
        else:
            paths.stack.unlink(missing_ok=True)
        return 1

    if not names:
        print("  (no service packages with an app.py yet: only NATS and Temporal run)")
    print_urls(settings, paths, components)
    return 0


def down(settings: Settings) -> int:
    paths = Paths.of(settings)
    components = load_state(paths)
    for c in reversed(components):
        if not c.owned:
            print(f"  {c.name:<10} left running (reused, not started by modelgov)")
        elif c.running():
            stop_pid(c.pid)
            print(f"  {c.name:<10} stopped (pid {c.pid})")
        else:
            print(f"  {c.name:<10} was not running")
    print("modelgov stack: down" if components else "modelgov stack: nothing to stop")
    paths.stack.unlink(missing_ok=True)
    return 0


def status(settings: Settings) -> int:
    paths = Paths.of(settings)
    components = load_state(paths)
    if not components:
        print("modelgov stack: not started by `make up` (no var/stack.json)")
        return 1
    healthy = True
    print(f"{'component':<11}{'pid':>8}  {'port':>5}  {'origin':<7} state")
    for c in components:
        if c.name in SERVICES:
            up_now = ready(c)
            state = "ready" if up_now else ("running, not ready" if c.running() else "down")
        else:
            up_now = port_open(c.port) and (not c.owned or c.running())
            state = "answering" if up_now else "down"
        healthy &= up_now
        origin = "owned" if c.owned else "reused"
        print(f"{c.name:<11}{c.pid or '-':>8}  {c.port:>5}  {origin:<7} {state}")
    return 0 if healthy else 1


def print_urls(settings: Settings, paths: Paths, components: list[Component]) -> None:
    by_name = {c.name: c for c in components}
    print("\nAPIs")
    for name in SERVICES:
        if name in by_name:
            url = f"http://127.0.0.1:{by_name[name].port}"
            print(f"  {name:<10} {url}   docs: {url}/docs")
    print(f"NATS         {settings.nats_url}   monitoring: http://127.0.0.1:{settings.nats_monitor_port}")
    print(f"Temporal     {settings.temporal_address}   UI: http://127.0.0.1:{settings.temporal_ui_port}")
    tokens = _display(paths.tokens)
    print(f"Tokens       {tokens} (role -> bearer token, mode 0600)")
    examples = {"registry": "/v1/models", "audit": "/v1/audit/verify"}
    for name, route in examples.items():
        if name in by_name:
            print("\nTry:")
            print(f"  TOKEN=$(python -c \"import json; print(json.load(open('{tokens}'))['admin'])\")")
            print(f"  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:{by_name[name].port}{route}")
            break
    print("Stop with: make down")


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.stack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for readiness")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "up":
        return up(settings, args.timeout)
    if args.command == "down":
        return down(settings)
    return status(settings)


if __name__ == "__main__":
    sys.exit(main())
