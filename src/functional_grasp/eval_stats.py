"""Statistics of ``fgrasp eval``: success rates with Wilson intervals, failure counts, stage latencies.

Pure functions over trial dicts (:meth:`functional_grasp.eval_trial.TrialResult.to_dict`).
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from functional_grasp.eval_trial import FAILURE_REASONS, STAGES

#: z of a two-sided 95 % normal interval.
Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default).

    Args:
        successes: k, 0 ≤ k ≤ n.
        n: trials; ``(0.0, 1.0)`` when 0 (nothing is known).

    Returns:
        ``(low, high)`` fractions in [0, 1].

    Raises:
        ValueError: k outside 0..n.
    """
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in 0..n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(successes: int, n: int) -> dict:
    """``{"successes", "trials", "rate", "ci95"}`` (rate None when n = 0)."""
    lo, hi = wilson_interval(successes, n)
    return {"successes": int(successes), "trials": int(n), "rate": (successes / n) if n else None,
            "ci95": [lo, hi]}


def latency_stats(trials: Iterable[Mapping]) -> dict[str, dict]:
    """Per stage of :data:`STAGES`: ``{"n", "median_s", "p95_s"}`` over the trials that reached it."""
    out = {}
    trials = list(trials)
    for stage in STAGES:
        values = [t["timings_s"][stage] for t in trials
                  if isinstance((t.get("timings_s") or {}).get(stage), (int, float))]
        out[stage] = {"n": len(values),
                      "median_s": float(np.median(values)) if values else None,
                      "p95_s": float(np.percentile(values, 95)) if values else None}
    return out


def summarize(trials: Sequence[Mapping], functional_objects: Iterable[str] = ()) -> dict:
    """Success (stable; stable + functional where regions are known), failures and latency.

    Args:
        trials: trial dicts of one object or of all.
        functional_objects: objects that have functional regions; ``stable_functional`` counts
            only their trials (None when no trial is of such an object).

    Returns:
        ``{"trials", "stable", "stable_functional", "failures": {reason: count}, "latency"}``.
    """
    functional_objects = set(functional_objects)
    n = len(trials)
    held = sum(1 for t in trials if t.get("held"))
    func = [t for t in trials if t["object"] in functional_objects]
    failures = Counter(t["outcome"] for t in trials if t["outcome"] != "success")
    return {
        "trials": n,
        "stable": rate(held, n),
        "stable_functional": (rate(sum(1 for t in func if t.get("success")), len(func)) if func else None),
        "success": rate(sum(1 for t in trials if t.get("success")), n),
        "failures": {r: failures.get(r, 0) for r in FAILURE_REASONS},
        "latency": latency_stats(trials),
    }


def percent_ci(summary_rate: Mapping | None) -> str:
    """``"70.0 % [39.7, 89.2]"`` for a :func:`rate` dict; ``-`` when None or no trials."""
    if not summary_rate or summary_rate.get("rate") is None:
        return "-"
    lo, hi = summary_rate["ci95"]
    return f"{100 * summary_rate['rate']:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"
