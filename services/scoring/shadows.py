"""Shadow work runs on this process's spare time only, one job at a time, so its cost to decisions
stays small and bounded.

A shadow prediction scores a decision's inputs with another version and records its own event,
fsynced on the same stream as the decisions. Run as soon as its decision was answered (as it was
until 2026-11-24), every shadowed decision cost the next decisions a model call on the same
cores and a second write on the stream's one-at-a-time store: with a HistGradientBoosting shadow
behind the LR pipeline, 2,017 → 1,167 decisions a second at c = 16, p50 1.2 → 1.9 ms at c = 1
(bench/scoring_shadow.py). Here a job starts only while no decision is in flight in this
process, and the next waits for the one before: a decision can find at most one shadow job of
this process ahead of it, on the cores or on the stream. Under sustained load the process is
never idle, the queue fills, and what does not fit is dropped and counted (best effort, as model
servers mirror traffic); every shadow prediction that is made is recorded. A job's model call
for a few rows runs on the event loop, as a decision's does (api._decided): through a worker
thread, the hop and its contention for the GIL cost the next decision more than the call did.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


class ShadowQueue:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._jobs: deque[Job] = deque()
        self._deciding = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._queued = asyncio.Event()
        self._runner: asyncio.Task | None = None
        self._working = False  # a job is under way (popped from the queue, not yet done)

    @contextmanager
    def deciding(self) -> Iterator[None]:
        """`with queue.deciding():` around a decision, from its start until it is answered."""
        self._deciding += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._deciding -= 1
            if self._deciding == 0:
                self._idle.set()

    def submit(self, job: Job) -> bool:
        """Queue a job; False (dropped) when `limit` jobs already wait."""
        if len(self._jobs) >= self.limit:
            return False
        self._jobs.append(job)
        self._queued.set()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="scoring-shadows")
        return True

    @property
    def waiting(self) -> int:
        return len(self._jobs)

    async def _run(self) -> None:
        while True:
            await self._queued.wait()
            await self._idle.wait()
            if not self._jobs:
                self._queued.clear()
                continue
            job, self._working = self._jobs.popleft(), True
            try:
                await job()
            except Exception:  # noqa: BLE001 - a shadow never affects anything but its own record
                log.exception("a shadow job failed")
            finally:
                self._working = False

    async def close(self, timeout: float) -> None:
        """Give the job under way and the queued ones `timeout` seconds to finish (they are
        answered decisions' shadows), then stop."""
        if self._runner is None:
            return
        deadline = asyncio.get_running_loop().time() + timeout
        while (self._jobs or self._working) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        self._runner.cancel()
        await asyncio.gather(self._runner, return_exceptions=True)

