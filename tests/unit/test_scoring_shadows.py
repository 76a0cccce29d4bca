"""Shadow work on spare time: it waits for decisions in flight, runs one job at a time, drops
what does not fit, and survives a failing job."""

from __future__ import annotations

import asyncio

from services.scoring.shadows import ShadowQueue


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def recorder(log: list, name: str, gate: asyncio.Event | None = None):
    async def job() -> None:
        log.append(f"{name} starts")
        if gate is not None:
            await gate.wait()
        log.append(f"{name} ends")
    return job


async def test_a_shadow_job_waits_until_no_decision_is_in_flight():
    queue, log = ShadowQueue(limit=10), []
    with queue.deciding():
        with queue.deciding():
            assert queue.submit(recorder(log, "a"))
            await turns()
        await turns()
        # check: one decision is still in flight
        assert log == []
    await turns()
    assert log == ["a starts", "a ends"]


async def test_jobs_run_one_at_a_time_in_order_and_a_decision_holds_back_the_next():
    queue, log, gate = ShadowQueue(limit=10), [], asyncio.Event()
    queue.submit(recorder(log, "a", gate))
    queue.submit(recorder(log, "b"))
    await turns()
    assert log == ["a starts"]
    # act: a decision starts while a runs; a ends
    with queue.deciding():
        gate.set()
        await turns()
        # check: b waits for the decision
        assert log == ["a starts", "a ends"]
    await turns()
    assert log == ["a starts", "a ends", "b starts", "b ends"]


async def test_what_does_not_fit_is_refused_and_a_failing_job_does_not_stop_the_rest():
    queue, log = ShadowQueue(limit=2), []

    async def broken() -> None:
        raise RuntimeError("boom")

    with queue.deciding():
        assert queue.submit(broken) and queue.submit(recorder(log, "b"))
        # check: a third waits nowhere: refused, for the caller to count
        assert not queue.submit(recorder(log, "c"))
        assert queue.waiting == 2
    await turns()
    assert log == ["b starts", "b ends"] and queue.waiting == 0


async def test_close_lets_queued_jobs_finish_then_stops():
    queue, log = ShadowQueue(limit=10), []
    queue.submit(recorder(log, "a"))
    queue.submit(recorder(log, "b"))
    await queue.close(timeout=1)
    assert log == ["a starts", "a ends", "b starts", "b ends"]


async def test_close_gives_up_on_jobs_that_cannot_start_in_time():
    queue, log = ShadowQueue(limit=10), []
    with queue.deciding():  # a decision that never ends: the job cannot start
        queue.submit(recorder(log, "a"))
        await queue.close(timeout=0.05)
    assert log == [] and queue.waiting == 1
