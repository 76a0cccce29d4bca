"""Data drift on 100,000 × 20 reference vs current: modelgov's monitoring against Evidently, one run.

    make bench-drift      # or: .venv/bin/python -m bench.drift_vs_evidently [--rows N] [--features K]
                          #     [--repeats R] [--peer-repeats P]

Seeded synthetic credit/fraud-like numeric features (normal, log-normal, exponential, uniform,
beta, Poisson counts); a few current columns are shifted by a fraction of their standard
deviation, the rest are fresh draws from the reference distribution. Timed on the same data:
- modelgov warm: `feature_drift` against a reference profile built beforehand, as the service
  does (one profile per version, many windows); cold: `build_profile` of the reference plus it;
- Evidently 0.7.23 (its own venv, var/peers: `make peers`) `DataDriftPreset()` with its default
  methods (normed Wasserstein ≥ 0.1 at this size), and with ours: a `ks` report at alpha / k and
  a `wasserstein` report at 0.1, a feature drifting when both say so (our rule);
- a plain numpy PSI + scipy.stats.ks_2samp per column, for scale.
Verdicts are compared feature by feature; speed-ups compare the best run of each side (on a
shared machine the slower runs measure the neighbours). Writes bench/results/drift_vs_evidently.json
and exits 1 when a verdict differs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
from scipy import stats

from bench import report
from bench.peers import run_evidently
from contracts.monitoring.policy import DriftPolicy
from services.monitoring.drift import feature_drift
from services.monitoring.reference import build_profile

SEED = 20240611
# feature index → shift in reference standard deviations; the others are not shifted
SHIFTS = {2: 0.2, 5: 0.3, 9: 0.5, 13: 0.75, 17: 1.0}


def columns(rng: np.random.Generator, rows: int, features: int, shifted: bool) -> dict[str, np.ndarray]:
    """`features` columns of six distribution families; shifted by SHIFTS × the family's std."""
    families: list[tuple[Callable[[], np.ndarray], float]] = [
        (lambda: rng.normal(50, 10, rows), 10.0),
        (lambda: rng.lognormal(3.5, 0.8, rows), float(np.sqrt((np.exp(0.64) - 1) * np.exp(7 + 0.64)))),
        (lambda: rng.exponential(15, rows), 15.0),
        (lambda: rng.uniform(0, 3000, rows), 3000 / np.sqrt(12)),
        (lambda: rng.beta(2, 8, rows), float(np.sqrt(2 * 8 / (10**2 * 11)))),
        (lambda: rng.poisson(2.0, rows).astype(float), float(np.sqrt(2.0))),
    ]
    out = {}
    for j in range(features):
        draw, std = families[j % len(families)]
        out[f"f{j:02d}"] = draw() + (SHIFTS.get(j, 0.0) * std if shifted else 0.0)
    return out


def timed(fn: Callable[[], object], repeats: int) -> tuple[dict, object]:
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - started)
    return {"median": round(statistics.median(seconds), 4), "min": round(min(seconds), 4),
            "runs": [round(s, 4) for s in seconds]}, result


def naive(reference: dict[str, np.ndarray], current: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """numpy PSI on reference deciles + scipy ks_2samp on the full columns: the obvious baseline."""
    out = {}
    for name, ref in reference.items():
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)[1:-1]))
        r = np.bincount(np.searchsorted(edges, ref), minlength=len(edges) + 1) / len(ref)
        c = np.bincount(np.searchsorted(edges, current[name]), minlength=len(edges) + 1) / len(current[name])
        r, c = np.clip(r, 1e-4, None), np.clip(c, 1e-4, None)
        out[name] = (float(np.sum((r - c) * np.log(r / c))), float(stats.ks_2samp(ref, current[name]).pvalue))
    return out


def evidently(reference: dict, current: dict, alpha: float, policy: DriftPolicy, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as work:
        data = Path(work) / "data.npz"
        np.savez(data, **{f"reference/{k}": v for k, v in reference.items()},
                 **{f"current/{k}": v for k, v in current.items()})
        spec = {"repeats": repeats, "runs": [
            {"name": "default"},
            {"name": "ks", "num_method": "ks", "num_threshold": alpha},
            {"name": "wasserstein", "num_method": "wasserstein",
             "num_threshold": policy.wasserstein_threshold},
        ]}
        return run_evidently(data, spec, timeout=3600)


def main(rows: int, features: int, repeats: int, peer_repeats: int) -> dict:
    rng = np.random.default_rng(SEED)
    reference, current = columns(rng, rows, features, False), columns(rng, rows, features, True)
    schema = [{"name": name, "dtype": "float"} for name in reference]
    scores = rng.random(rows)
    # Evidently's preset judges 100,000 rows by normed Wasserstein ≥ 0.1: the same threshold here,
    # so verdicts compare like for like (modelgov's default, 0.2, suits 1,000-decision windows).
    policy = DriftPolicy(wasserstein_threshold=0.1)

    def cold():
        return feature_drift(build_profile(reference, schema, scores), current, policy)

    profile_time, profile = timed(lambda: build_profile(reference, schema, scores), repeats)
    warm_time, ours = timed(lambda: feature_drift(profile, current, policy), repeats)
    cold_time, _ = timed(cold, repeats)
    naive_time, _ = timed(lambda: naive(reference, current), max(1, repeats // 2))
    print(f"modelgov: warm {warm_time['min']} s, cold {cold_time['min']} s; running Evidently "
          f"({3 * peer_repeats} reports of {rows:,} × {features})…", flush=True)
    peer = evidently(reference, current, ours.alpha_corrected, policy, peer_repeats)

    runs = peer["runs"]
    # best of the runs on each side: on a shared machine the slower runs measure the neighbours
    default_s = min(runs["default"]["seconds"])
    same_s = min(runs["ks"]["seconds"]) + min(runs["wasserstein"]["seconds"])
    mine = {f.feature: f.drifted for f in ours.features}
    theirs_default = {c: v["drifted"] for c, v in runs["default"]["columns"].items()}
    theirs_same = {c: runs["ks"]["columns"][c]["drifted"] and runs["wasserstein"]["columns"][c]["drifted"]
                   for c in mine}
    shifted = sorted(f"f{j:02d}" for j in SHIFTS if j < features)
    return {
        "data": {"rows_reference": rows, "rows_current": rows, "features": features, "seed": SEED,
                 "shifted_sd": {f"f{j:02d}": s for j, s in SHIFTS.items() if j < features}},
        "policy": policy.model_dump(),
        "alpha_corrected": ours.alpha_corrected,
        "seconds": {
            "modelgov_warm": warm_time, "modelgov_cold": cold_time, "modelgov_build_profile": profile_time,
            "evidently_default": runs["default"]["seconds"],
            "evidently_same_methods": {"ks": runs["ks"]["seconds"],
                                       "wasserstein": runs["wasserstein"]["seconds"]},
            "naive_numpy_psi_scipy_ks": naive_time,
        },
        "speedup_best_of_runs": {
            "default_preset_vs_warm": round(default_s / warm_time["min"], 1),
            "default_preset_vs_cold": round(default_s / cold_time["min"], 1),
            "same_methods_vs_warm": round(same_s / warm_time["min"], 1),
            "same_methods_vs_cold": round(same_s / cold_time["min"], 1),
            "naive_vs_warm": round(naive_time["min"] / warm_time["min"], 1),
        },
        "verdicts": {
            "shifted": shifted,
            "modelgov": sorted(c for c, d in mine.items() if d),
            "evidently_default": sorted(c for c, d in theirs_default.items() if d),
            "evidently_default_methods": sorted({v["method"] for v in runs["default"]["columns"].values()}),
            "evidently_same_methods": sorted(c for c, d in theirs_same.items() if d),
            "agree_with_default": mine == theirs_default,
            "agree_with_same_methods": mine == theirs_same,
        },
        "figures": {f.feature: {
            "ks_pvalue": f.ks_pvalue, "wasserstein_norm": round(f.wasserstein_norm, 6),
            "psi": round(f.psi, 6),
            "evidently_ks_pvalue": runs["ks"]["columns"][f.feature]["score"],
            "evidently_wasserstein_norm": round(runs["wasserstein"]["columns"][f.feature]["score"], 6),
        } for f in ours.features},
        "peer_versions": peer["versions"],
        "target": "≥ 20× faster than Evidently's DataDriftPreset, the same verdicts",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the reference and in the current")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of ours (median reported)")
    parser.add_argument("--peer-repeats", type=int, default=2, help="timed runs of each Evidently report")
    args = parser.parse_args()
    measured = main(args.rows, args.features, args.repeats, args.peer_repeats)
    report.write("drift_vs_evidently", measured, "make bench-drift", numpy=np.__version__,
                 scipy=scipy.__version__)
    agreed = measured["verdicts"]["agree_with_default"] and measured["verdicts"]["agree_with_same_methods"]
    sys.exit(0 if agreed else 1)
