"""Evidently's per-column drift verdicts on an .npz data set; runs in the peers venv (var/peers).

    var/peers/bin/python bench/evidently_drift.py DATA.npz SPEC_JSON

DATA.npz holds `reference/<column>` and `current/<column>` arrays (float for numerical columns,
str for categorical ones). SPEC_JSON: {"categorical": [...], "repeats": 1, "runs": [{"name": ...,
plus any DataDriftPreset keyword: method, num_method, num_threshold, per_column_method, ...}]}.
Prints JSON: the peer's versions and, per run, the seconds of each repeat (Dataset.from_pandas +
Report.run, the data frames already built) and per column the method, threshold, drift score
and Evidently's own verdict (its per-column drift test). Imports only what the peers venv holds.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import time

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def frames(path: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    data = np.load(path)
    parts: dict[str, dict[str, np.ndarray]] = {"reference": {}, "current": {}}
    for key in data.files:
        side, column = key.split("/", 1)
        parts[side][column] = data[key]
    return pd.DataFrame(parts["reference"]), pd.DataFrame(parts["current"])


def verdicts(snapshot) -> dict[str, dict]:
    """Column → method, threshold, drift score and verdict, from the snapshot's metrics and tests."""
    doc = snapshot.dict()
    columns, by_metric = {}, {}
    for metric in doc["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            by_metric[metric["id"]] = config["column"]
            columns[config["column"]] = {"method": config.get("method"), "threshold": config.get("threshold"),
                                         "score": float(metric["value"])}
    for test in doc["tests"]:
        column = by_metric.get(test["metric_config"]["metric_id"])
        if column is not None:
            columns[column]["drifted"] = test["status"] == "FAIL"
    return columns


def run(reference: pd.DataFrame, current: pd.DataFrame, categorical: list[str], options: dict) -> tuple:
    definition = DataDefinition(numerical_columns=[c for c in reference if c not in categorical],
                                categorical_columns=[c for c in reference if c in categorical])
    started = time.perf_counter()
    report = Report([DataDriftPreset(**options)], include_tests=True)
    snapshot = report.run(Dataset.from_pandas(current, data_definition=definition),
                          Dataset.from_pandas(reference, data_definition=definition))
    return time.perf_counter() - started, snapshot


def main() -> int:
    path, spec = sys.argv[1], json.loads(sys.argv[2])
    reference, current = frames(path)
    out = {"versions": {p: importlib.metadata.version(p) for p in ("evidently", "pandas", "numpy", "scipy")},
           "runs": {}}
    for options in spec["runs"]:
        name = options.pop("name")
        seconds = []
        for _ in range(spec.get("repeats", 1)):
            elapsed, snapshot = run(reference, current, spec.get("categorical", []), options)
            seconds.append(round(elapsed, 4))
        out["runs"][name] = {"options": options, "seconds": seconds, "columns": verdicts(snapshot)}
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
