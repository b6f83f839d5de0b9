"""The ``eval`` section of ``fgrasp bench``: whole-pipeline trials per second, 1 vs 2 workers."""
from __future__ import annotations

import tempfile
from pathlib import Path

#: Worker counts compared (the machine's cores bound the useful maximum).
WORKER_COUNTS = (1, 2)


def _rate_key(workers: int) -> str:
    return f"pipeline_trials_{workers}_worker{'s' if workers > 1 else ''}_per_s"


def run(object_name: str, hand: str, trials: int, seed: int) -> dict[str, float]:
    """Run ``trials`` eval trials of ``object_name`` with 1 and with 2 workers (same tasks).

    Returns:
        ``pipeline_trials_<n>_worker(s)_per_s`` (set-up included: worlds, planners and, for 2, spawning
        the workers), ``speedup_2_vs_1_workers_x``, ``success_rate`` (of the 1-worker run),
        ``same_outcomes_rate`` (fraction of trials with identical outcome in both runs) and,
        over the 1-worker trials, ``stage_<stage>_median_s`` / ``_p95_s`` of every stage.
    """
    from functional_grasp.eval import EvalConfig, run_eval

    out: dict[str, float] = {"trials": float(trials)}
    runs = {}
    with tempfile.TemporaryDirectory(prefix="fgrasp_bench_eval_") as tmp:
        for workers in WORKER_COUNTS:
            config = EvalConfig(objects=(object_name,), trials=trials, seed=seed, hand=hand, workers=workers,
                                out_dir=Path(tmp) / f"w{workers}", gallery=False)
            runs[workers] = run_eval(config, progress=False)
            out[_rate_key(workers)] = float(runs[workers]["trials_per_s"])
    one, two = runs[1], runs[2]
    out["speedup_2_vs_1_workers_x"] = out[_rate_key(2)] / out[_rate_key(1)]
    out["success_rate"] = float(one["overall"]["success"]["rate"])
    same = [a["outcome"] == b["outcome"] for a, b in zip(one["trials"], two["trials"])]
    out["same_outcomes_rate"] = sum(same) / len(same)
    for stage, stats in one["overall"]["latency"].items():
        if stats["n"]:
            out[f"stage_{stage}_median_s"] = float(stats["median_s"])
            out[f"stage_{stage}_p95_s"] = float(stats["p95_s"])
    return out
