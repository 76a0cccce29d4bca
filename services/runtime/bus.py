"""The event bus: one NATS connection with JetStream, kept alive across outages."""

from __future__ import annotations

import asyncio
import logging

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError

from contracts.streams import StreamSpec, stream_specs
from services.runtime.settings import Settings

log = logging.getLogger(__name__)

MSG_ID = api.Header.MSG_ID  # "Nats-Msg-Id": the server drops a repeat inside its window


def without_credentials(url: str) -> str:
    """A server URL fit for logs and error messages: a NATS URL may carry `user:password@`."""
    scheme, sep, rest = url.rpartition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"


class BusUnavailable(RuntimeError):
    """NATS is not reachable now; the caller keeps the work and retries later."""


class Bus:
    """Connects in the background and reconnects forever: an outage delays work, never fails it."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.address = without_credentials(settings.nats_url)  # for logs and error messages
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self.generation = 0  # counts reconnections: server-side state (ephemeral consumers) may be gone
        self._next_reconnect = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected and self._ready.is_set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._connect_loop(), name=f"bus-connect-{self.name}")

    async def wait_ready(self, timeout: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout):  # not wait_for: see nats_wire.py
                await self._ready.wait()
            return True
        except TimeoutError:
            return False

    async def _connect_loop(self) -> None:
        while not self._closing:
            try:
                self.nc = await nats.connect(
                    self.settings.nats_url,
                    name=f"modelgov-{self.name}",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    error_cb=self._on_error,
                    reconnected_cb=self._on_reconnected,
                )
                self.js = self.nc.jetstream()
                await ensure_streams(self.js, self.settings)
                self._ready.set()
                log.info("connected to NATS at %s", self.address)
                return
            except Exception as exc:  # noqa: BLE001 - any failure means: try again shortly
                log.warning("NATS not reachable at %s (%s); retrying", self.address, exc)
                if self.nc is not None and not self.nc.is_closed:
                    await self.nc.close()
                self.nc = None
                await asyncio.sleep(1)

    async def _on_reconnected(self) -> None:
        self.generation += 1
        event, self._next_reconnect = self._next_reconnect, asyncio.Event()
        event.set()
        log.info("reconnected to NATS at %s", self.address)

    async def reconnected_since(self, generation: int) -> None:
        """Returns once the connection has been re-established after `generation`."""
        while self.generation == generation:
            await self._next_reconnect.wait()

    async def _on_error(self, exc: Exception) -> None:
        log.debug("nats: %s", exc)

    def jetstream(self) -> JetStreamContext:
        self._require_connected()
        return self.js

    def client(self) -> Client:
        """The connected client (for readers that open their own delivery connection)."""
        self._require_connected()
        return self.nc

    def _require_connected(self) -> None:
        if not self.connected or self.js is None:
            raise BusUnavailable(f"NATS is not reachable at {self.address}")

    async def publish(
        self, subject: str, payload: bytes, msg_id: str, headers: dict[str, str] | None = None,
        timeout: float = 5.0,
    ) -> api.PubAck:
        """Publish to JetStream and wait for the PubAck: after it, the event is durable."""
        js = self.jetstream()
        return await js.publish(
            subject, payload, timeout=timeout, headers={MSG_ID: msg_id, **(headers or {})}
        )

    async def close(self) -> None:
        self._closing = True
        if self._task:
            self._task.cancel()
        if self.nc is not None and not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:  # noqa: BLE001 - closing a broken connection
                await self.nc.close()


async def ensure_streams(js: JetStreamContext, settings: Settings) -> None:
    """Create GOVERNANCE and DECISIONS (file storage), or bring their config up to date."""
    for spec in stream_specs(settings.decision_retention_seconds):
        config = stream_config(spec, settings)
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)


def stream_config(spec: StreamSpec, settings: Settings) -> api.StreamConfig:
    return api.StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        max_age=spec.max_age_seconds,
        duplicate_window=settings.nats_duplicate_window_seconds,
        num_replicas=settings.nats_stream_replicas,
    )
