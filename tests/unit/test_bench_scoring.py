"""The scoring bench's arithmetic: a cell measured in turns is summed, not averaged."""

from __future__ import annotations

from bench.scoring_vs_mlserver import merge_slices


def slice_(latencies: list[float], cpu: float) -> dict:
    return {"requests": len(latencies), "errors": 0, "first_error": None,
            "req_per_s": len(latencies) / 2, "latencies_ms": latencies,
            "client_cpu_ms_per_request": 0.1, "ok_including_warmup": len(latencies) + 5,
            "server_cpu_s": {"scoring": cpu, "nats": cpu / 4}}


def test_turns_merge_into_one_cell_over_the_whole_measured_time():
    fast, slow = slice_([1.0] * 300, 0.6), slice_([9.0] * 100, 0.2)
    cell = merge_slices([fast, slow], duration=2.0)
    assert cell["requests"] == 400 and cell["req_per_s"] == 100.0  # 400 over 4 s, not mean of 150 and 50
    assert cell["p50_ms"] == 1.0 and cell["p99_ms"] == 9.0  # percentiles over every latency
    assert cell["server_cpu_s"] == {"scoring": 0.8, "nats": 0.2}
    assert cell["server_cpu_ms_per_request"] == 2.5 and cell["server_cpu_cores_busy"] == 0.25
    assert cell["ok_including_warmup"] == 410 and cell["req_per_s_by_slice"] == [150.0, 50.0]
    assert "latencies_ms" not in cell


def test_a_failed_turn_is_the_cell_s_result():
    failed = {"error": "load generator exited with 1: boom"}
    assert merge_slices([slice_([1.0], 0.1), failed], duration=2.0) == failed
