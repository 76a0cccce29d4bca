"""A task cancelled in the same loop turn as the thing it waits for arrives must still end.

Python 3.11's asyncio.wait_for returns normally in that case and the cancel is lost (CPython
gh-86296): the audit consumer, cancelled at shutdown as a heartbeat came in, read on and the
service never stopped. Each wait below is one the services make in a loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.runtime.bus import Bus
from services.runtime.jetstream_reader import DeliveryParser, OrderedReader
from services.runtime.nats_wire import WireProtocol
from services.runtime.settings import Settings


async def cancelled_as_it_arrives(wait, arrive) -> bool:
    task = asyncio.create_task(wait())
    await asyncio.sleep(0)  # the task is now waiting
    arrive()
    task.cancel()  # the same turn
    for _ in range(5):
        await asyncio.sleep(0)
    if not task.done():
        task.cancel()  # the bug: it went on waiting; end it for the test's sake
        await asyncio.gather(task, return_exceptions=True)
        return False
    return task.cancelled()


async def test_a_stream_reader_waiting_for_deliveries_ends_when_cancelled():
    reader = OrderedReader(None, "GOVERNANCE", "gov.>", 1)
    reader._protocol = protocol = WireProtocol(DeliveryParser())  # nothing arrives but a wake-up

    assert await cancelled_as_it_arrives(lambda: reader.take(10, 60), protocol.arrived.set)


async def test_waiting_for_the_bus_ends_when_cancelled():
    bus = Bus(Settings(), "test")

    assert await cancelled_as_it_arrives(lambda: bus.wait_ready(60), bus._ready.set)


def test_no_service_code_waits_with_wait_for():
    root = Path(__file__).resolve().parents[2]
    uses = [f"{path.relative_to(root)}:{n}" for folder in ("services", "workflows", "deploy")
            for path in (root / folder).rglob("*.py")
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if "wait_for(" in line.split("#")[0]]
    assert uses == [], "use asyncio.timeout(): wait_for loses cancels on Python 3.11"
