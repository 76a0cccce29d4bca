"""Replay: rebuild a stream's chain into a fresh store and compare heads with the live one.

The work splits over two processes: this one reads the stream and validates each message, a
child chains and writes them into the fresh store, so each gets a core of its own.
Both run the same planning code as the live consumer, so the same stream gives the same chain.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from nats.aio.client import Client
from nats.errors import Error as NatsError

from services.audit import builder
from services.audit.domain import ChainHead, inspect
from services.audit.messaging import Gap, read_batches
from services.audit.store import AuditStore

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stream, read to sequence, of)


def no_progress(_stream: str, _read: int, _of: int) -> None:
    """A Progress for callers that do not follow one (the synchronous route, the bench)."""


class ReplayFailed(RuntimeError):
    """The builder process died during a replay (its log says why); the replay can be run again."""


class ReplayWorker:
    """The builder process, kept warm: spawning one costs about a second of imports, a sixth of
    a 200k-event replay. Started with the service; replays take turns on it."""

    def __init__(self) -> None:
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._ready = False
        self._lock = asyncio.Lock()

    def start(self) -> None:
        """Spawn the builder (it imports in the background); a dead one is replaced."""
        if self._process is not None and self._process.is_alive():
            return
        self.close()
        context = multiprocessing.get_context("spawn")  # no fork: this process runs threads
        self._conn, theirs = context.Pipe()
        self._process = context.Process(target=builder.serve, args=(theirs,), daemon=True,
                                        name="audit-replay-builder")
        self._process.start()
        theirs.close()
        self._ready = False

    async def wait_ready(self) -> Connection:
        self.start()
        if not self._ready:
            if await asyncio.to_thread(self._conn.recv) != builder.READY:
                raise ReplayFailed("the replay builder did not start")
            self._ready = True
        return self._conn

    def close(self, graceful: bool = True) -> None:
        """Stop the builder: between jobs, by asking it; otherwise (a replay broke off in the
        middle, so it still waits for that job's batches) by killing it."""
        if self._process is None:
            return
        if graceful and self._process.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()
        self._process = self._conn = None

    async def rebuild(self, nc: Client, live: AuditStore, fresh_url: str,
                      stream: str, progress: Progress = no_progress) -> dict:
        """Replay `stream` from its first message into the store at `fresh_url` (migrated,
        empty), up to where `live` has read it; `progress(stream, read_to_seq, of)` after each
        batch. A replay that fails part-way (NATS gone, the builder dead, cancelled) discards
        the builder: the next replay starts a fresh one."""
        async with self._lock:
            try:
                return await self._rebuild(nc, live, fresh_url, stream, progress)
            except BaseException as exc:
                self.close(graceful=False)
                # The stream's read broke off (a timeout is an OSError too): the caller says so.
                if isinstance(exc, NatsError | TimeoutError):
                    raise
                if isinstance(exc, EOFError | OSError):  # the pipe to the builder broke
                    raise ReplayFailed(f"the replay builder stopped during {stream}: {exc!r}") from exc
                raise

    async def _rebuild(self, nc: Client, live: AuditStore, fresh_url: str,
                       stream: str, progress: Progress) -> dict:
        live_seq, live_head = await asyncio.to_thread(live.snapshot, stream)
        info = await nc.jetstream().stream_info(stream)
        until = min(live_seq, info.state.last_seq)
        progress(stream, 0, until)
        conn = await self.wait_ready()
        conn.send((fresh_url, stream))
        sent = 0
        while until >= max(info.state.first_seq, 1) and sent < until:
            try:
                async for messages in read_batches(nc, stream, sent + 1, until_seq=until):
                    # Validation is pure, so this process does it (the builder has the insert)
                    # and sends each message's verdict along.
                    batch = builder.pack(messages, list(map(inspect, messages)))
                    await asyncio.to_thread(conn.send, batch)
                    sent = messages[-1].stream_seq
                    progress(stream, sent, until)
                break
            except Gap as exc:
                log.info("replay of %s resumes after %d: %s", stream, sent, exc)
        conn.send(None)
        position, digest = await asyncio.to_thread(conn.recv)
        rebuilt = ChainHead(position, digest)
        return {
            "stream": stream, "live_head": live_head.hash, "rebuilt_head": rebuilt.hash,
            "live_count": live_head.position, "rebuilt_count": rebuilt.position,
            "read_to_seq": until, "match": live_head == rebuilt,
        }
