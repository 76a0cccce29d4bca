"""Background replays: what a job says while it runs and once it ended, and which Prefer asks."""

from __future__ import annotations

import asyncio

import pytest

from contracts.audit.api import ReplayReport
from services.audit import jobs as jobs_module
from services.audit.api import _respond_async
from services.audit.jobs import ReplayJobs
from services.runtime.errors import Problem

REPORT = ReplayReport(ok=True, store="var/replay/x.db", seconds=1.0, events_per_second=30.0, streams=[])


@pytest.mark.parametrize(("prefer", "asks"), [
    ("respond-async", True),
    ("Respond-Async", True),
    ("wait=10, respond-async", True),
    ("respond-async; foo=bar", True),
    (" respond-async ", True),
    (None, False),
    ("", False),
    ("handling=strict", False),
    ("respond-asyncx", False),
    ("return=minimal", False),
])
def test_respond_async_is_read_from_prefer_as_rfc_7240_writes_it(prefer, asks):
    assert _respond_async(prefer) is asks


async def settled(jobs: ReplayJobs, job_id: str):
    for _ in range(200):
        job = jobs.get(job_id)
        if job.state != "running":
            return job
        await asyncio.sleep(0.005)
    raise AssertionError("the job did not end")


async def test_a_job_runs_in_the_background_reports_progress_and_then_its_report():
    jobs, gate = ReplayJobs(), asyncio.Event()

    async def run(progress):
        progress("GOVERNANCE", 10, 30)
        await gate.wait()
        return REPORT

    job = jobs.start(run)
    await asyncio.sleep(0)
    # check: running, where it is, and the one running
    assert jobs.get(job.id).state == "running" and jobs.running().id == job.id
    assert jobs.get(job.id).progress.model_dump() == {"stream": "GOVERNANCE", "read_to_seq": 10, "of": 30}
    gate.set()
    done = await settled(jobs, job.id)
    assert done.state == "done" and done.report == REPORT and done.error is None
    assert done.finished_at >= done.started_at and jobs.running() is None


async def test_a_job_that_fails_says_why():
    jobs = ReplayJobs()

    async def unavailable(_progress):
        raise Problem(503, "Service Unavailable", "reading the streams failed; run the replay again")

    async def bug(_progress):
        raise KeyError("oops")

    refused = await settled(jobs, jobs.start(unavailable).id)
    crashed = await settled(jobs, jobs.start(bug).id)
    # check: the API's own reason, or where to look; never a report
    assert (refused.state, refused.error) == ("failed", "reading the streams failed; run the replay again")
    assert crashed.state == "failed" and "log says why" in crashed.error and crashed.report is None


async def test_closing_stops_a_running_job_and_it_says_so():
    jobs = ReplayJobs()

    async def forever(_progress):
        await asyncio.Event().wait()

    job = jobs.start(forever)
    await asyncio.sleep(0)
    await jobs.close()
    assert jobs.get(job.id).state == "failed" and "stopped" in jobs.get(job.id).error


async def test_only_the_last_jobs_are_kept(monkeypatch):
    monkeypatch.setattr(jobs_module, "KEEP", 3)
    jobs = ReplayJobs()

    async def quick(_progress):
        return REPORT

    started = [jobs.start(quick) for _ in range(5)]
    for job in started:
        await settled(jobs, job.id) if jobs.get(job.id) else None
    # check: the two oldest are forgotten, the three newest kept
    assert [jobs.get(j.id) is not None for j in started] == [False, False, True, True, True]
