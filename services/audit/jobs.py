"""Replays in the background, for callers that cannot hold a request open while one runs.

A replay reads each stream from its first message, so on a long log it takes minutes to hours
(~50,000 events a second here): longer than proxies and HTTP clients wait. With
`Prefer: respond-async` (RFC 7240), POST /v1/audit/replay answers 202 at once and the job is
followed at GET /v1/audit/replay/{id}. Jobs live in this process's memory, the last KEEP of them:
a restart forgets them (the stores they rebuilt stay on disk), and a replay can always be run
again. One runs at a time, as the builder process takes one replay at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from contracts.audit.api import ReplayJob, ReplayProgress, ReplayReport
from contracts.envelope import new_event_id
from services.audit.replay import Progress
from services.runtime.errors import Problem

log = logging.getLogger(__name__)

KEEP = 20

Run = Callable[[Progress], Awaitable[ReplayReport]]  # the replay, told where to report progress


class ReplayJobs:
    def __init__(self) -> None:
        self._jobs: OrderedDict[str, ReplayJob] = OrderedDict()
        self._tasks: dict[str, asyncio.Task] = {}

    def running(self) -> ReplayJob | None:
        return next((job for job in self._jobs.values() if job.state == "running"), None)

    def get(self, job_id: str) -> ReplayJob | None:
        return self._jobs.get(job_id)

    def start(self, run: Run) -> ReplayJob:
        """Start `run(progress)` in the background; its outcome becomes the job's."""
        job = ReplayJob(id=new_event_id(), state="running", started_at=datetime.now(UTC))
        self._jobs[job.id] = job
        self._tasks[job.id] = asyncio.create_task(self._run(job.id, run), name=f"replay-{job.id}")
        while len(self._jobs) > KEEP:
            self._jobs.popitem(last=False)
        return job

    async def _run(self, job_id: str, run: Run) -> None:
        def progress(stream: str, read_to_seq: int, of: int) -> None:
            self._update(job_id, progress=ReplayProgress(stream=stream, read_to_seq=read_to_seq, of=of))

        try:
            report = await run(progress)
        except Problem as exc:  # what the synchronous call would have answered
            self._finish(job_id, error=exc.detail)
        except asyncio.CancelledError:
            self._finish(job_id, error="the audit service stopped during the replay; run it again")
            raise
        except Exception:  # noqa: BLE001 - a bug: logged, and the job says where to look
            log.exception("replay job %s failed", job_id)
            self._finish(job_id, error="the replay failed unexpectedly (the audit service's log "
                                       "says why); run it again")
        else:
            self._finish(job_id, report=report)
        finally:
            self._tasks.pop(job_id, None)

    def _finish(self, job_id: str, report: ReplayReport | None = None, error: str | None = None) -> None:
        self._update(job_id, state="done" if error is None else "failed", report=report,
                     error=error, finished_at=datetime.now(UTC))

    def _update(self, job_id: str, **changes) -> None:
        if (job := self._jobs.get(job_id)) is not None:  # None: forgotten (KEEP newer jobs)
            self._jobs[job_id] = job.model_copy(update=changes)  # keeps its place in the order

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
