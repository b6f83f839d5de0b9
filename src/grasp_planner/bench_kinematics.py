"""Kinematics benchmark: Franka IK (single and batched) and the torch hand FK of every hand.

Reachable IK targets are the flange poses of uniform in-limit configurations whose flange is
outside the base keep-out. Those inside it (flange within 10 cm of the base axis below 0.30 m:
the hand would be inside link0/link1) are configurations the arm cannot safely take, and
:meth:`FrankaKinematics.solve` refuses them by design, so the sampler skips them like the planner
would and reports how often that happened (``keepout_rejected_fraction``).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
from tqdm import tqdm

from grasp_planner.franka_ik import FrankaKinematics

#: Distance of the "unreachable" targets from the base origin, metres (beyond the 0.86 m reach).
UNREACHABLE_DISTANCE_M = 2.0
#: Batched-IK candidate sets: candidates per set, and the joint-space spread (radians, std) of
#: the configurations whose flange poses form one set (nearby reachable wrist poses).
BATCH_CANDIDATES = 64
BATCH_SPREAD_RAD = 0.15
#: FK batch sizes timed per hand, and timed repetitions of each.
FK_BATCHES = (1, 1024)
FK_REPEATS = 30
#: torch threads the FK timings use (this machine's core count).
FK_THREADS = 2


def reachable_targets(kin: FrankaKinematics, n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], int]:
    """``n`` flange poses of random in-limit configurations outside the base keep-out.

    Returns:
        (targets, number of samples rejected because the flange was inside the keep-out).
    """
    targets, rejected = [], 0
    while len(targets) < n:
        T = kin.fk(rng.uniform(kin.lower_rad, kin.upper_rad)).copy()
        if kin.refusal_reason(T):
            rejected += 1
            continue
        targets.append(T)
    return targets, rejected


def _unreachable_targets(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Random orientations 2 m from the base, alternating with poses inside the base column."""
    out = []
    for i in range(n):
        T = np.eye(4)
        T[:3, :3] = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        if np.linalg.det(T[:3, :3]) < 0:
            T[:3, 0] *= -1
        d = rng.normal(size=3)
        T[:3, 3] = d / np.linalg.norm(d) * UNREACHABLE_DISTANCE_M if i % 2 == 0 else [0.02, -0.03, 0.1]
        out.append(T)
    return out


def _candidate_set(kin: FrankaKinematics, rng: np.random.Generator) -> list[np.ndarray]:
    """``BATCH_CANDIDATES`` reachable wrist poses close to each other (like one object's grasp
    candidates): flange poses of configurations scattered around one random configuration."""
    q0 = rng.uniform(kin.lower_rad, kin.upper_rad)
    out = []
    while len(out) < BATCH_CANDIDATES:
        T = kin.fk(np.clip(q0 + rng.normal(0.0, BATCH_SPREAD_RAD, 7), kin.lower_rad, kin.upper_rad)).copy()
        if not kin.refusal_reason(T):
            out.append(T)
    return out


def _timed(fn: Callable[[], object]) -> tuple[object, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1e3


def run_ik(n: int = 1000, seed: int = 0, batch_sets: int = 8) -> dict[str, float]:
    """Franka IK figures.

    Args:
        n: reachable targets.
        seed: seed of the target generator (the solver uses its own fixed seed).
        batch_sets: candidate sets of ``BATCH_CANDIDATES`` poses for the batched solve.

    Returns:
        ``success_rate``, ``median_ms``, ``p95_ms``, ``max_ms`` on reachable targets,
        ``max_position_error_m`` over successes, ``keepout_rejected_fraction`` of the sampled
        configurations; ``refused_fraction``, ``refuse_median_ms``, ``refuse_max_ms`` on
        unreachable targets; batched IK ``batch_poses_per_s`` and ``batch_success_rate`` (and
        ``sequential_poses_per_s`` / ``sequential_success_rate`` for the same candidates solved one
        by one from ``READY_Q``);
        ``fk_us`` mean FK time.
    """
    kin = FrankaKinematics()
    rng = np.random.default_rng(seed)
    targets, rejected = reachable_targets(kin, n, rng)
    times_ms, pos_err = [], []
    for T in tqdm(targets, desc="IK reachable", unit="pose", leave=False):
        res, ms = _timed(lambda: kin.solve(T))
        times_ms.append(ms)
        if res.success:
            pos_err.append(res.position_error_m)
    unreachable = _unreachable_targets(rng, max(1, n // 10))
    refuse_ms, refused = [], 0
    for T in unreachable:
        res, ms = _timed(lambda: kin.solve(T))
        refuse_ms.append(ms)
        refused += not res.success
    sets = [_candidate_set(kin, rng) for _ in range(batch_sets)]
    batch_ms, seq_ms, batch_ok, seq_ok = 0.0, 0.0, 0, 0
    for cands in tqdm(sets, desc="IK batches", unit="set", leave=False):
        res, ms = _timed(lambda: kin.solve_batch(cands))
        batch_ms += ms
        batch_ok += sum(r.success for r in res)
        res, ms = _timed(lambda: [kin.solve(T) for T in cands])
        seq_ms += ms
        seq_ok += sum(r.success for r in res)
    n_batch = batch_sets * BATCH_CANDIDATES
    q = rng.uniform(kin.lower_rad, kin.upper_rad)
    _, fk_ms = _timed(lambda: [kin.fk(q) for _ in range(1000)])
    t_arr = np.asarray(times_ms)
    return {
        "n": float(n),
        "success_rate": len(pos_err) / n,
        "keepout_rejected_fraction": rejected / (n + rejected),
        "median_ms": float(np.median(t_arr)),
        "p95_ms": float(np.percentile(t_arr, 95)),
        "max_ms": float(np.max(t_arr)),
        "max_position_error_m": float(np.max(pos_err)) if pos_err else float("nan"),
        "refused_fraction": refused / len(unreachable),
        "refuse_median_ms": float(np.median(refuse_ms)),
        "refuse_max_ms": float(np.max(refuse_ms)),
        "batch_success_rate": batch_ok / n_batch,
        "sequential_success_rate": seq_ok / n_batch,
        "batch_poses_per_s": n_batch / (batch_ms / 1e3),
        "sequential_poses_per_s": n_batch / (seq_ms / 1e3),
        "fk_us": fk_ms,
    }


def run_hand_fk(hands: list[str] | None = None, repeats: int = FK_REPEATS) -> dict[str, float]:
    """Torch hand FK time per hand: link poses + all point sets (surface points, contact points,
    fingertips, sphere centres), float32, no autograd, ``FK_THREADS`` torch threads.

    Returns:
        ``fk_<hand>_b<B>_median_ms`` / ``_p95_ms`` for B in ``FK_BATCHES``,
        ``fk_<hand>_b1024_1thread_median_ms`` (one torch thread), and ``fk_<hand>_points``
        (surface points per configuration).
    """
    import torch

    from grasp_planner.hand_fk_torch import TorchHandKinematics
    from grasp_planner.hands import available_hands, load_hand

    threads = torch.get_num_threads()
    torch.set_num_threads(FK_THREADS)
    out: dict[str, float] = {}
    try:
        for name in tqdm(hands or available_hands(), desc="hand FK", unit="hand", leave=False):
            hand = load_hand(name)
            fk = TorchHandKinematics(hand)
            lim = hand.joint_limits
            rng = np.random.default_rng(0)
            out[f"fk_{name}_points"] = float(len(fk.point_link))
            for B in FK_BATCHES:
                q = torch.as_tensor(rng.uniform(lim[:, 0], lim[:, 1], size=(B, hand.dof)), dtype=torch.float32)
                with torch.no_grad():
                    for _ in range(3):
                        fk.forward(q)
                    ms = [_timed(lambda: fk.forward(q))[1] for _ in range(repeats)]
                out[f"fk_{name}_b{B}_median_ms"] = float(np.median(ms))
                out[f"fk_{name}_b{B}_p95_ms"] = float(np.percentile(ms, 95))
            # One thread as well: on a loaded machine two torch threads contend badly.
            torch.set_num_threads(1)
            with torch.no_grad():
                ms = [_timed(lambda: fk.forward(q))[1] for _ in range(repeats)]
            out[f"fk_{name}_b{FK_BATCHES[-1]}_1thread_median_ms"] = float(np.median(ms))
            torch.set_num_threads(FK_THREADS)
    finally:
        torch.set_num_threads(threads)
    return out


def run(n: int = 1000, seed: int = 0, fk_repeats: int = FK_REPEATS) -> dict[str, float]:
    """Both parts: :func:`run_ik` (``n`` reachable targets) then :func:`run_hand_fk`."""
    return {**run_ik(n=n, seed=seed), **run_hand_fk(repeats=fk_repeats)}


if __name__ == "__main__":  # pragma: no cover - manual benchmark
    for key, value in run().items():
        print(f"{key}: {value:.4g}")  # noqa: T201 - CLI benchmark output
