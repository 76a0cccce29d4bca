"""What a shadow version costs the decisions it shadows: the same champion with and without one.

    .venv/bin/python -m bench.scoring_shadow [--duration S] [--concurrency 1,16,64]

modelgov alone (no peer): the scoring bench's LR pipeline is `fraud-lr`'s champion, and also
`fraud-lr-shadowed`'s, which has the bench's HistGradientBoosting model as its shadow (a
challenger of another kind, as a bank would shadow one). The two sides take turns within each
cell, as in bench/scoring_vs_mlserver.py, with the same load generator. A shadow scores after
its decision's response is decided and records its own fsynced `shadow_prediction.made`, so it
cannot change an answer; this measures what it costs the answers' rate and latency, checks that
the DECISIONS stream holds a `decision.made` per response, and counts the shadow predictions made
(shadows run on spare time and are dropped, counted, under load: services/scoring/shadows.py).
Writes bench/results/scoring_shadow.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats

from bench.scoring_vs_mlserver import (
    SEED,
    Modelgov,
    code_state,
    machine,
    merge_slices,
    run_cell,
    save,
    score_body,
    train,
    write_bodies,
)

RESULTS = Path(__file__).parent / "results" / "scoring_shadow.json"
SHADOWED = "fraud-lr-shadowed"


def shadow_counter(mg: Modelgov) -> dict[str, float]:
    """modelgov_scoring_shadow_predictions_total by its labels, from one worker's /metrics (the
    service's workers share nothing: a figure for the report, not a check)."""
    text = httpx.get(f"{mg.url}/metrics", timeout=10).text
    return {labels: float(value) for labels, value in
            re.findall(r"^modelgov_scoring_shadow_predictions_total\{(.*)\} (\S+)$", text, re.M)}


def messages_by_subject(mg: Modelgov) -> dict[str, int]:
    """The DECISIONS stream's message count per subject (`dec.<model>.<verb>`)."""
    async def count() -> dict[str, int]:
        nc = await nats.connect(mg.nats.url)
        try:
            info = await nc.jetstream().stream_info("DECISIONS", subjects_filter="dec.>")
            return dict(sorted((info.state.subjects or {}).items()))
        finally:
            await nc.close()

    return asyncio.run(count())


def main(args) -> dict:
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="modelgov-bench-shadow-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    trained, rows = train(args.seed)
    by_name = {m.name: m for m in trained}
    save(trained, work, 0, 0.002)
    bodies = write_bodies(work / "score.jsonl", [score_body(r) for r in rows])
    mg = Modelgov(work, env, workers=args.scoring_workers)
    cells = []
    try:
        mg.start().deploy(trained)
        # version 1 the champion's artifact (approved), version 2 the shadow's (registered is
        # enough for a shadow)
        mg.register(SHADOWED, "card fraud, LR champion with an HGB shadow (benchmark)",
                    [by_name["fraud-lr"], by_name["fraud-hgb"]], {"champion": 1, "shadow": [2]})
        run_id = datetime.now(UTC).strftime("%H%M%S")
        sides = [("no shadow", "fraud-lr"), ("HGB shadow", SHADOWED)]
        for conc in concurrencies:
            slices: dict[str, list[dict]] = {side: [] for side, _ in sides}
            each = args.duration / args.rounds
            for turn in range(args.rounds):
                for side, model in sides:
                    slices[side].append(run_cell(
                        mg.url, f"/v1/score/{model}", mg.auth("scoring_client"), bodies, conc,
                        args.warmup, each, mg.pids(), env, "raw", f"{run_id}-{model}-c{conc}-t{turn}-"))
            for side, model in sides:
                cell = {"side": side, "model": model, "concurrency": conc,
                        **merge_slices(slices[side], each)}
                cells.append(cell)
                print(f"  c={conc} {side}: {cell.get('req_per_s', cell.get('error'))} req/s, "
                      f"p50 {cell.get('p50_ms')} / p99 {cell.get('p99_ms')} ms", flush=True)
        answered = {model: sum(c.get("ok_including_warmup", 0) for c in cells if c["model"] == model)
                    for _, model in sides}
        subjects = messages_by_subject(mg)
        made = {model: subjects.get(f"dec.{model}.decision_made", 0) for _, model in sides}
        shadowed = subjects.get(f"dec.{SHADOWED}.shadow_prediction_made", 0)
        record = {"responses": answered, "decision_made_in_stream": made,
                  "every_response_recorded": made == answered,
                  "shadow_predictions_in_stream": shadowed,
                  "shadowed_share": round(shadowed / answered[SHADOWED], 3) if answered[SHADOWED] else None,
                  "messages_by_subject": subjects,
                  "shadow_predictions_total_one_worker": shadow_counter(mg)}
    finally:
        mg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "benchmark": "scoring_shadow", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(), "code": code_state(),
        "command": "python -m bench.scoring_shadow " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "output"),
        "setup": {"champion": "fraud-lr v1 (StandardScaler -> LogisticRegression), on both sides",
                  "shadow": f"{SHADOWED} v2: HistGradientBoostingClassifier, scored after the "
                            "response is decided, its event fsynced like the decision's",
                  "order": f"per concurrency, {args.rounds} turns of each side, each "
                           f"{args.duration / args.rounds:g} s measured after {args.warmup:g} s warm-up"},
        "cells": cells, "record_keeping": record,
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scoring_shadow", description=__doc__)
    parser.add_argument("--duration", type=float, default=6.0, help="measured seconds per side and cell")
    parser.add_argument("--warmup", type=float, default=1.5, help="warm-up seconds per turn")
    parser.add_argument("--rounds", type=int, default=3, help="turns per side and cell")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--scoring-workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    result = main(arguments)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["record_keeping"], indent=2))
    print(f"wrote {arguments.output}")
