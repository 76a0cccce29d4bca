"""The audit consumer on a real JetStream: order, dead letters, crash recovery, replay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from deploy.servers import free_port, wait_port
from services.audit.app import create_app
from services.audit.domain import verify
from services.audit.store import AuditStore
from services.runtime import migrate
from services.runtime.db import make_engine
from tests.conftest import bearer
from tests.factories import model_created
from tests.nats_helpers import publish_events, publish_raw, stream_messages
from tests.waiting import wait_for


def chained_ids(client: TestClient) -> list[str]:
    ids, cursor = [], None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/audit/events", params=params, headers=bearer("regulator")).json()
        ids += [i["event_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


def ended(client: TestClient, job: str) -> dict:
    """A background replay's job, once it is no longer running."""
    def state():
        found = client.get(job, headers=bearer("admin")).json()
        return found if found["state"] != "running" else None

    return wait_for(state)


@pytest.fixture
def audit(nats_server, settings_factory, db_url):
    with TestClient(create_app(settings_factory(nats_server.url, audit_database_url=db_url))) as c:
        yield c


def test_published_events_are_chained_in_stream_order_and_verify(nats_server, audit):
    events = [model_created(f"m{i:03d}") for i in range(50)]
    publish_events(nats_server.url, events)
    # check: all 50, in publication order, verified
    wait_for(lambda: len(chained_ids(audit)) == 50)
    assert chained_ids(audit) == [e.id for e in events]
    report = audit.get("/v1/audit/verify", headers=bearer("regulator")).json()
    assert report["ok"] and report["streams"][0]["count"] == 50


def test_a_malformed_message_is_dead_lettered_with_its_reason_and_the_consumer_goes_on(
    nats_server, audit
):
    publish_raw(nats_server.url, "gov.registry.model.created", b'{"oops": true}', "bad-1")
    good = model_created()
    publish_events(nats_server.url, [good])
    # check: the good event is chained after the bad one
    wait_for(lambda: chained_ids(audit) == [good.id])
    letters = wait_for(lambda: stream_messages(nats_server.url, subject="gov.deadletter.audit"))
    assert letters[0].data == b'{"oops": true}'
    assert "not a modelgov CloudEvent" in letters[0].headers["Modelgov-Reason"]
    assert letters[0].headers["Modelgov-Stream-Seq"] == "1"


def test_a_republished_event_is_chained_once(nats_server, audit):
    event = model_created()
    publish_events(nats_server.url, [event])
    # act: the same event again under another message id: beyond the server's duplicate window
    publish_raw(nats_server.url, "gov.registry.model.created", event.canonical_bytes(), "other-id")
    follower = model_created("next-one")
    publish_events(nats_server.url, [follower])
    wait_for(lambda: len(chained_ids(audit)) == 2)
    assert chained_ids(audit) == [event.id, follower.id]
    assert len(stream_messages(nats_server.url)) == 3


def test_replay_into_a_fresh_store_gives_the_live_head(nats_server, audit):
    publish_events(nats_server.url, [model_created(f"m{i:03d}") for i in range(120)])
    wait_for(lambda: len(chained_ids(audit)) == 120)
    report = audit.post("/v1/audit/replay", headers=bearer("admin")).json()
    gov = next(s for s in report["streams"] if s["stream"] == "GOVERNANCE")
    # check: same head hash, same count, both streams match
    assert report["ok"], report
    assert gov["live_head"] == gov["rebuilt_head"] and gov["rebuilt_count"] == 120
    assert audit.post("/v1/audit/replay", headers=bearer("regulator")).status_code == 403


def test_the_warm_replay_builder_serves_replay_after_replay_and_is_replaced_when_it_dies(
    nats_server, audit
):
    publish_events(nats_server.url, [model_created(f"m{i:03d}") for i in range(30)])
    wait_for(lambda: len(chained_ids(audit)) == 30)
    worker = audit.app.state.runtime.extras["replayer"]
    first = audit.post("/v1/audit/replay", headers=bearer("admin")).json()
    builder_pid = worker._process.pid
    second = audit.post("/v1/audit/replay", headers=bearer("admin")).json()
    # check: the same process rebuilt both, each into its own fresh store
    assert first["ok"] and second["ok"] and worker._process.pid == builder_pid
    assert first["store"] != second["store"]
    # act: the builder dies between replays (OOM killer, say)
    os.kill(builder_pid, signal.SIGKILL)
    wait_for(lambda: not worker._process.is_alive())
    third = audit.post("/v1/audit/replay", headers=bearer("admin"))
    # check: a fresh builder does the work; the report is the same as before
    assert third.status_code == 200, third.text
    assert third.json()["ok"] and worker._process.pid != builder_pid
    assert [s["rebuilt_head"] for s in third.json()["streams"]] == \
        [s["rebuilt_head"] for s in first["streams"]]


def chain_thirty(nats_server, audit) -> None:
    publish_events(nats_server.url, [model_created(f"m{i:03d}") for i in range(30)])
    wait_for(lambda: len(chained_ids(audit)) == 30)


def nats_goes_after_ten(monkeypatch):
    """Replay's stream read fails (a NATS timeout) once the builder got its first ten messages;
    returns what puts the real read back."""
    from nats.errors import TimeoutError as NatsTimeout

    from services.audit import replay

    reader = replay.read_batches

    async def one_batch_then_nats_goes(*args, **kwargs):
        async for batch in reader(*args, **kwargs):
            yield batch[:10]
            raise NatsTimeout

    monkeypatch.setattr(replay, "read_batches", one_batch_then_nats_goes)
    return lambda: monkeypatch.setattr(replay, "read_batches", reader)


def test_a_replay_broken_off_part_way_leaves_no_half_job_for_the_next_one(
    nats_server, audit, monkeypatch
):
    chain_thirty(nats_server, audit)
    # act: the stream read fails after the builder got its first batch
    mend = nats_goes_after_ten(monkeypatch)
    broken = audit.post("/v1/audit/replay", headers=bearer("admin"))
    assert broken.status_code == 503, broken.text
    assert "reading the streams failed" in broken.json()["detail"]
    assert "run the replay again" in broken.json()["detail"]
    mend()
    # check: the next replay gets a builder with no job half done, and the heads match
    report = audit.post("/v1/audit/replay", headers=bearer("admin"))
    assert report.status_code == 200, report.text
    assert report.json()["ok"] and report.json()["streams"][0]["rebuilt_count"] == 30


def test_the_consumer_killed_mid_batch_resumes_without_gap_or_duplicate(
    nats_server, db_url, tmp_path
):
    events = [model_created(f"m{i:04d}") for i in range(3000)]
    publish_events(nats_server.url, events)
    migrate.upgrade("audit", db_url)
    store = AuditStore(make_engine(db_url))
    port = free_port()
    env = {**os.environ, "MODELGOV_NATS_URL": nats_server.url, "MODELGOV_VAR_DIR": str(tmp_path),
           "MODELGOV_AUDIT_DATABASE_URL": db_url}
    cmd = [sys.executable, "-m", "uvicorn", "services.audit.app:create_app", "--factory",
           "--port", str(port), "--log-level", "warning"]

    proc = subprocess.Popen(cmd, env=env)
    wait_port(port, 30, proc)
    # act: SIGKILL as soon as part of the stream is chained
    wait_for(lambda: store.count("GOVERNANCE") > 0, interval=0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = store.count("GOVERNANCE")
    proc = subprocess.Popen(cmd, env=env)
    try:
        wait_for(lambda: store.count("GOVERNANCE") == 3000, timeout=60)
        time.sleep(0.5)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # check: every event exactly once, in stream order, chain intact
    chain = list(store.chain("GOVERNANCE"))
    assert 0 < partial < 3000, "the kill must land while the stream is half read"
    assert [r.position for r in chain] == list(range(1, 3001))
    assert [json.loads(r.payload)["id"] for r in chain] == [e.id for e in events]
    assert verify(chain).ok
    assert ready.status_code == 200
    store.engine.dispose()



def test_a_builder_that_dies_during_a_replay_is_reported_as_such_and_replaced(
    nats_server, audit, monkeypatch
):
    from services.audit import replay

    chain_thirty(nats_server, audit)
    worker, reader = audit.app.state.runtime.extras["replayer"], replay.read_batches

    async def ten_then_the_builder_dies(*args, **kwargs):
        async for batch in reader(*args, **kwargs):
            yield batch[:10]
            os.kill(worker._process.pid, signal.SIGKILL)  # the OOM killer, say
            wait_for(lambda: not worker._process.is_alive())
            yield batch[10:]

    monkeypatch.setattr(replay, "read_batches", ten_then_the_builder_dies)
    broken = audit.post("/v1/audit/replay", headers=bearer("admin"))
    # check: 503 that names the builder, not NATS, and says what to do
    assert broken.status_code == 503, broken.text
    assert "the replay builder stopped during GOVERNANCE" in broken.json()["detail"]
    assert "run the replay again" in broken.json()["detail"]
    monkeypatch.setattr(replay, "read_batches", reader)
    report = audit.post("/v1/audit/replay", headers=bearer("admin"))
    assert report.status_code == 200 and report.json()["ok"], report.text

def test_a_replay_asked_to_respond_async_runs_in_the_background_and_reports_as_a_job(
    nats_server, audit, monkeypatch
):
    import asyncio
    import threading

    from services.audit import replay

    chain_thirty(nats_server, audit)
    reader, gate = replay.read_batches, threading.Event()

    async def ten_then_wait_for_the_gate(*args, **kwargs):
        async for batch in reader(*args, **kwargs):
            yield batch[:10]
            await asyncio.to_thread(gate.wait, 30)
            if batch[10:]:
                yield batch[10:]

    monkeypatch.setattr(replay, "read_batches", ten_then_wait_for_the_gate)
    admin = {**bearer("admin"), "Prefer": "respond-async"}
    # act: ask for a background replay
    accepted = audit.post("/v1/audit/replay", headers=admin)
    # check: 202 at once, the job to follow, and where it is while it runs
    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["Preference-Applied"] == "respond-async"
    where = accepted.headers["Location"]
    assert where == f"/v1/audit/replay/{accepted.json()['id']}" and accepted.json()["state"] == "running"
    running = wait_for(lambda: (j := audit.get(where, headers=bearer("admin")).json())["progress"]
                       and j["progress"]["read_to_seq"] == 10 and j)
    assert running["state"] == "running"
    assert running["progress"] == {"stream": "GOVERNANCE", "read_to_seq": 10, "of": 30}
    # check: a second background replay is refused while this one runs, and told where it is
    second = audit.post("/v1/audit/replay", headers=admin)
    assert second.status_code == 409 and second.headers["Location"] == where
    assert where in second.json()["detail"]
    # act: let the replay go on
    gate.set()
    done = ended(audit, where)
    # check: the same report a synchronous replay gives
    assert done["state"] == "done" and done["error"] is None and done["finished_at"], done
    gov = next(s for s in done["report"]["streams"] if s["stream"] == "GOVERNANCE")
    assert done["report"]["ok"] and gov["rebuilt_count"] == 30 and gov["live_head"] == gov["rebuilt_head"]
    # check: only admins follow jobs; an unknown job is a 404 that says why
    assert audit.get(where, headers=bearer("regulator")).status_code == 403
    unknown = audit.get("/v1/audit/replay/no-such-job", headers=bearer("admin"))
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
    assert "no replay job 'no-such-job'" in unknown.json()["detail"]


def test_a_background_replay_that_breaks_off_fails_its_job_with_the_reason(
    nats_server, audit, monkeypatch
):
    chain_thirty(nats_server, audit)
    mend = nats_goes_after_ten(monkeypatch)
    accepted = audit.post("/v1/audit/replay", headers={**bearer("admin"), "Prefer": "respond-async"})
    assert accepted.status_code == 202, accepted.text
    where = accepted.headers["Location"]
    failed = ended(audit, where)
    # check: failed, with the reason a synchronous replay would have answered 503 with
    assert failed["state"] == "failed" and failed["report"] is None
    assert "reading the streams failed" in failed["error"] and "run the replay again" in failed["error"]
    # check: the next background replay runs, and matches
    mend()
    again = audit.post("/v1/audit/replay", headers={**bearer("admin"), "Prefer": "respond-async"})
    assert again.status_code == 202, again.text
    done = ended(audit, again.headers["Location"])
    assert done["state"] == "done" and done["report"]["ok"], done
