"""Event ids: RFC 9562 UUIDv7, strictly increasing within a process, their time on the clock."""

from __future__ import annotations

import time
import uuid

from contracts import uuid7 as ids
from contracts.envelope import new_event_id


def test_ids_are_version_7_rfc_9562_and_strictly_increasing():
    made = [ids.uuid7() for _ in range(50_000)]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in made)
    assert all(a.int < b.int for a, b in zip(made, made[1:], strict=False))
    assert len({u.int & 0xFFFF_FFFF for u in made}) > 49_000  # the random tail varies
    assert uuid.UUID(new_event_id()).version == 7


def test_many_ids_in_a_millisecond_keep_their_time_on_the_clock():
    # the uuid6 package moved the time 1 ms ahead per id within a millisecond: 100,000 ids made
    # in 0.3 s carried a time 100 s ahead
    before = time.time_ns() // 1_000_000
    made = [ids.uuid7() for _ in range(100_000)]
    after = time.time_ns() // 1_000_000
    stamps = [u.int >> 80 for u in made]
    assert before <= stamps[0] <= stamps[-1] <= after


def test_a_clock_that_goes_back_still_gives_increasing_ids(monkeypatch):
    first = ids.uuid7()
    monkeypatch.setattr(time, "time_ns", lambda: (first.int >> 80) * 1_000_000 - 5_000_000_000)
    second, third = ids.uuid7(), ids.uuid7()
    assert first.int < second.int < third.int
    assert second.int >> 80 == first.int >> 80  # the last millisecond, counted on


def test_a_full_counter_borrows_the_next_millisecond(monkeypatch):
    first = ids.uuid7()
    monkeypatch.setattr(ids, "_last_counter", ids._COUNTER_MAX)
    monkeypatch.setattr(time, "time_ns", lambda: (first.int >> 80) * 1_000_000)
    second = ids.uuid7()
    assert second.int >> 80 == (first.int >> 80) + 1 and second.int > first.int


def test_ids_made_on_several_threads_at_once_are_distinct_and_each_threads_increase():
    # decisions make ids on the event loop while commits make theirs in worker threads; two
    # threads taking the same counter value would make ids that differ only in their random tail
    import sys
    import threading

    made: list[list[uuid.UUID]] = [[] for _ in range(4)]
    start = threading.Barrier(len(made))

    def make(into: list[uuid.UUID]) -> None:
        start.wait()
        into.extend(ids.uuid7() for _ in range(30_000))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        threads = [threading.Thread(target=make, args=(into,)) for into in made]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    every = [u.int >> 32 for into in made for u in into]  # time and counter, without the tail
    assert len(set(every)) == len(every)
    assert all(all(a.int < b.int for a, b in zip(into, into[1:], strict=False)) for into in made)
