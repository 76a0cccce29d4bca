"""One settings object for every service, read from MODELGOV_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELGOV_", extra="ignore")

    mode: Literal["local", "production"] = "local"
    var_dir: Path = Path("var")

    nats_url: str = "nats://127.0.0.1:4222"
    nats_monitor_port: int = 8222
    # How long the server drops a re-published Nats-Msg-Id. Consumers dedupe by event id as well,
    # because an outbox row can be retried after any window.
    nats_duplicate_window_seconds: float = 120
    decision_retention_seconds: float = 25 * 31 * 24 * 3600
    # 1 on the single-node stack; 3 on a JetStream cluster (R3: an acked event is on a quorum).
    nats_stream_replicas: int = Field(1, ge=1, le=5)
    temporal_address: str = "127.0.0.1:7233"
    temporal_ui_port: int = 8233

    registry_port: int = 8001
    scoring_port: int = 8002
    monitoring_port: int = 8003
    audit_port: int = 8004

    registry_database_url: str | None = None
    audit_database_url: str | None = None
    scoring_database_url: str | None = None
    # Where POST /v1/audit/replay rebuilds; a fresh SQLite file per run by default.
    audit_replay_dir: Path | None = None

    artifact_dir: Path | None = None
    max_artifact_bytes: int = 200 * 1024 * 1024
    # A version's metadata travels in its registered event: below NATS's 1 MiB message limit.
    max_metadata_bytes: int = Field(512 * 1024, gt=0)

    # Where scoring fetches versions and artifacts; unset: the local registry on registry_port.
    registry_url: str | None = None
    # Scoring's bearer token for the registry; unset: the tokens file's `service` principal.
    registry_token: str | None = None
    scoring_model_cache: int = 8  # loaded versions kept (LRU)
    # Scoring processes `make up` starts (uvicorn --workers): each is a replica with its own event
    # loop, NATS connection, model cache and outbox relay. Scoring is CPU-bound in one process;
    # on a host of its own, set it to the core count. (On Kubernetes, scale replicas instead.)
    scoring_workers: int = Field(1, ge=1)
    scoring_max_batch: int = 1000  # rows per batch request; more is 413
    scoring_max_body_bytes: int = 4 * 1024 * 1024  # request body; more is 413
    # How long a decision waits for JetStream's PubAck before it goes to the outbox instead.
    scoring_publish_timeout_seconds: float = 2.0
    # How stale a replica's cached deployment may be: a PUT on this replica applies at once, one on
    # another replica within this many seconds (each replica re-reads its row after this long).
    scoring_deployment_ttl_seconds: float = 1.0
    # How often each replica publishes its tally of refused score requests (requests.refused).
    scoring_refusal_tally_seconds: float = Field(10.0, gt=0)

    monitoring_database_url: str | None = None
    # How often monitoring closes windows that ran out of time and evaluates closed ones.
    monitoring_evaluate_interval_seconds: float = Field(1.0, gt=0)
    # Temporal task queue the governance workflows (RetrainWorkflow, ...) are served on.
    temporal_task_queue: str = "governance"
    temporal_namespace: str = "default"

    # role → bearer token (local) or [{token, name, roles}] (production); see runtime.auth
    tokens_file: Path | None = None

    outbox_batch: int = 256
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_endpoint: str | None = None

    @model_validator(mode="after")
    def _production_needs_explicit_secrets(self) -> Settings:
        if self.mode == "production" and self.tokens_file is None:
            raise ValueError("MODELGOV_TOKENS_FILE must be set in production mode")
        return self

    def database_url(self, service: str) -> str:
        explicit = getattr(self, f"{service}_database_url", None)
        return explicit or f"sqlite:///{(self.var_dir / f'{service}.db').resolve()}"

    @property
    def artifacts(self) -> Path:
        return self.artifact_dir or self.var_dir / "artifacts"

    @property
    def replay_dir(self) -> Path:
        return self.audit_replay_dir or self.var_dir / "replay"

    @property
    def tokens_path(self) -> Path:
        return self.tokens_file or self.var_dir / "local-tokens.json"

    @property
    def registry_base_url(self) -> str:
        return (self.registry_url or f"http://127.0.0.1:{self.registry_port}").rstrip("/")

    def port(self, service: str) -> int:
        return getattr(self, f"{service}_port")


@lru_cache
def get_settings() -> Settings:
    return Settings()
