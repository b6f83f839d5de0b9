"""Benchmark of the Franka IK: success rate and solve times on reachable and unreachable targets."""
from __future__ import annotations

import time

import numpy as np

from grasp_planner.franka_ik import FrankaKinematics

#: Distance of the "unreachable" targets from the base origin, metres (beyond the 0.86 m reach).
UNREACHABLE_DISTANCE_M = 2.0


def run(n: int = 1000, seed: int = 0) -> dict[str, float]:
    """Solve ``n`` reachable and ``n // 10`` unreachable targets and time them.

    Reachable targets are FK of uniform in-limit configurations (seed from ``READY_Q``);
    unreachable ones are random orientations ``UNREACHABLE_DISTANCE_M`` from the base, plus
    targets inside the base column (the solver's keep-out).

    Args:
        n: number of reachable targets.
        seed: seed of the target generator (the solver uses its own fixed seed).

    Returns:
        ``success_rate`` (fraction of all targets), ``success_rate_outside_base_keepout`` (targets
        whose flange is not inside the base column, which the solver refuses by design),
        ``base_keepout_fraction``, ``median_ms``, ``p95_ms``, ``max_ms`` on reachable targets;
        ``max_position_error_m`` over successes; ``refuse_median_ms``, ``refuse_max_ms`` and
        ``refused_fraction`` on unreachable targets; ``fk_us`` mean FK time.
    """
    kin = FrankaKinematics()
    rng = np.random.default_rng(seed)
    targets = [kin.fk(rng.uniform(kin.lower_rad, kin.upper_rad)).copy() for _ in range(n)]
    times_ms, ok, pos_err, keepout = [], 0, [], 0
    for T in targets:
        keepout += bool(kin.refusal_reason(T))
        t0 = time.perf_counter()
        res = kin.solve(T)
        times_ms.append((time.perf_counter() - t0) * 1e3)
        if res.success:
            ok += 1
            pos_err.append(res.position_error_m)
    unreachable = []
    for i in range(max(1, n // 10)):
        T = np.eye(4)
        T[:3, :3] = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        if np.linalg.det(T[:3, :3]) < 0:
            T[:3, 0] *= -1
        d = rng.normal(size=3)
        T[:3, 3] = d / np.linalg.norm(d) * UNREACHABLE_DISTANCE_M if i % 2 == 0 else [0.02, -0.03, 0.1]
        unreachable.append(T)
    refuse_ms, refused = [], 0
    for T in unreachable:
        t0 = time.perf_counter()
        res = kin.solve(T)
        refuse_ms.append((time.perf_counter() - t0) * 1e3)
        refused += not res.success
    q = rng.uniform(kin.lower_rad, kin.upper_rad)
    t0 = time.perf_counter()
    for _ in range(1000):
        kin.fk(q)
    fk_us = (time.perf_counter() - t0) * 1e3
    t_arr = np.asarray(times_ms)
    return {
        "n": float(n),
        "success_rate": ok / n,
        "success_rate_outside_base_keepout": ok / max(1, n - keepout),
        "base_keepout_fraction": keepout / n,
        "median_ms": float(np.median(t_arr)),
        "p95_ms": float(np.percentile(t_arr, 95)),
        "max_ms": float(np.max(t_arr)),
        "max_position_error_m": float(np.max(pos_err)) if pos_err else float("nan"),
        "refused_fraction": refused / len(unreachable),
        "refuse_median_ms": float(np.median(refuse_ms)),
        "refuse_max_ms": float(np.max(refuse_ms)),
        "fk_us": fk_us,
    }


if __name__ == "__main__":  # pragma: no cover - manual benchmark
    for key, value in run().items():
        print(f"{key}: {value:.4g}")  # noqa: T201 - CLI benchmark output
