"""Data engine benchmark (the ``data`` section of ``fgrasp bench``; also ``python -m grasp_data.bench_data``).

Measured in one run on this machine (the load average is printed with the numbers: on the shared
2-core machine a busy neighbour halves every wall-clock figure):

- **disturbance trials per second**, per hand (Shadow, OYMotion, Inspire by default) — one trial =
  one grasp's closing + 6 × 1 s disturbance (3500 physics steps at 2 ms), every step simulated
  (the initial-penetration and contactless shortcuts are off). The same adapted grasps of one hammer are validated
  by the batched path (``mujoco.rollout``, ``threads`` MjData in parallel) and by the naive
  one-trial-at-a-time ``mj_step`` loop; both must agree (``outcomes_match``). ``cpu_s_per_trial``
  is the process CPU time per trial of the batched path (what the load does not change much);
- **grasps validated per second without the trials of contactless grasps** (the validator's
  default, ``skip_contactless``): ``skip_contactless_simulated_fraction`` is the share of the
  full protocol's steps still simulated, ``skip_contactless_verdicts_match`` that every kept
  verdict and reason equals the full run's;
- **grasps validated per second with early stop** (``stop_when_decided``: a grasp displaced
  within the 0.35 s probe ends there) — a different unit from trials/s: ``early_stop_trials_per_s``
  counts only the physics really simulated (simulated steps / 3500 per second),
  ``early_stop_simulated_fraction`` the share of the full protocol's steps, and
  ``early_stop_verdicts_match`` that every held / kept verdict equals the full run's;
- **adaptation time per batch** (``grasps`` grasps, ``iterations`` Adam steps);
- **kept fraction per category** — one object per category through the whole engine
  (:func:`grasp_data.engine.make_object`, no renders).
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

#: Hands whose disturbance throughput the benchmark measures.
DISTURBANCE_HANDS = ("shadow", "oymotion", "inspire")


def _load_1min() -> float:
    return os.getloadavg()[0]


def _timed(fn, *args):
    """(result, wall s, process CPU s) of ``fn(*args)``."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w0, time.process_time() - c0


def bench_disturbance(hand: str, quick: bool = False, threads: int = 2, collision: str = "coacd",
                      iterations: int | None = None) -> dict[str, float]:
    """Disturbance throughput of one hand on adapted hammer grasps (module docstring).

    Args:
        hand: hand name.
        quick: 4 trials instead of 16.
        threads: simulation threads of the batched path.
        collision: ``coacd`` (the engine's default: convex pieces, cached) or ``hull``.
        iterations: adaptation steps (default 30 quick, 150 full).

    Returns:
        ``{metric: value}``, keys ``disturbance_<hand>_…`` and ``adaptation_<hand>_…``.
    """
    import torch

    from grasp_data.adaptation import AdaptationConfig, adapt_grasps
    from grasp_data.collision import convex_decomposition
    from grasp_data.demonstrations import load_demonstration
    from grasp_data.engine import _hand_model
    from grasp_data.objects import generate
    from grasp_data.transfer import transfer_contacts
    from grasp_data.validation import FloatingHandScene, GraspValidator, ValidationConfig
    from sim_bridge.mesh_objects import mesh_object

    torch.set_num_threads(1)
    grasps, iterations = (8, iterations or 30) if quick else (32, iterations or 150)
    trials = 4 if quick else 16
    model = _hand_model(hand)
    obj = generate("hammer", 5)
    demo = load_demonstration("hammer")
    batch = adapt_grasps(model, obj, transfer_contacts(demo, obj, seed=5),
                         AdaptationConfig(batch_size=grasps, iterations=iterations))
    key = f"disturbance_{hand}"
    out = {f"adaptation_{hand}_batch_s": batch.wall_time_s, f"adaptation_{hand}_grasps": float(grasps),
           f"adaptation_{hand}_iterations": float(iterations),
           f"adaptation_{hand}_per_grasp_ms": 1000.0 * batch.wall_time_s / grasps}

    spec = (convex_decomposition(obj.mesh).spec if collision == "coacd"
            else mesh_object(obj.mesh, name="bench_hammer_5_hull", collision="hull"))
    config = ValidationConfig(max_initial_penetration_m=np.inf, threads=threads, skip_contactless=False)
    full_v = GraspValidator(FloatingHandScene(model, obj, spec, config), demo)
    skip_v = GraspValidator(FloatingHandScene(model, obj, spec, replace(config, skip_contactless=True)), demo)
    early_v = GraspValidator(FloatingHandScene(model, obj, spec, replace(config, stop_when_decided=True)), demo)
    idx = np.arange(trials) % len(batch)
    subset = replace(batch, root_pose=batch.root_pose[idx], q=batch.q[idx])
    load0 = _load_1min()
    fast, t_batched, cpu_batched = _timed(full_v.validate, subset)
    naive, t_naive, _ = _timed(full_v.validate_naive, subset)
    early, t_early, _ = _timed(early_v.validate, subset)
    skipped, t_skip, _ = _timed(skip_v.validate, subset)
    full_steps = sum(o.steps for o in fast)
    match = ([o.reason for o in fast] == [o.reason for o in naive]
             and np.allclose([o.displacement_m for o in fast], [o.displacement_m for o in naive], atol=1e-9))
    same_verdict = all((a.held, a.kept) == (b.held, b.kept) for a, b in zip(fast, early))
    skip_verdict = all((a.kept, a.reason) == (b.kept, b.reason) for a, b in zip(fast, skipped))
    out.update({
        f"{key}_trials": float(trials), f"{key}_threads": float(threads),
        f"{key}_skipped_self_pairs": float(len(full_v.scene.skipped_pairs)),
        f"{key}_batched_trials_per_s": trials / t_batched,
        f"{key}_naive_trials_per_s": trials / t_naive,
        f"{key}_batched_vs_naive_x": t_naive / t_batched,
        f"{key}_batched_cpu_s_per_trial": cpu_batched / trials,
        f"{key}_outcomes_match": float(match),
        f"{key}_held_fraction": float(np.mean([o.held for o in fast])),
        f"{key}_contactless_fraction": float(np.mean([o.hand_contacts == 0 for o in fast])),
        f"{key}_skip_contactless_grasps_per_s": trials / t_skip,
        f"{key}_skip_contactless_simulated_fraction": sum(o.steps for o in skipped) / full_steps,
        f"{key}_skip_contactless_verdicts_match": float(skip_verdict),
        f"{key}_early_stop_grasps_per_s": trials / t_early,
        f"{key}_early_stop_trials_per_s": sum(o.steps for o in early) / (full_steps / trials) / t_early,
        f"{key}_early_stop_simulated_fraction": sum(o.steps for o in early) / full_steps,
        f"{key}_early_stop_verdicts_match": float(same_verdict),
        f"{key}_load_1min": 0.5 * (load0 + _load_1min()),
    })
    return out


def bench_data(hand: str = "oymotion", quick: bool = False, threads: int = 2, collision: str = "coacd",
               disturbance_hands: Sequence[str] = DISTURBANCE_HANDS) -> dict[str, float]:
    """Run the benchmark; returns ``{metric: value}`` with unit-suffixed keys.

    Args:
        hand: hand of the kept-fraction runs.
        quick: small sizes (seconds).
        threads: simulation threads of the batched path.
        collision: collision geometry of the disturbance and kept-fraction runs (``coacd``:
            realistic, the first run per object pays the decomposition; ``hull``: fast, fills
            concavities).
        disturbance_hands: hands whose disturbance throughput is measured.
    """
    from grasp_data.engine import GenerateSettings, make_object
    from grasp_data.objects import categories

    out: dict[str, float] = {}
    for name in disturbance_hands:
        out.update(bench_disturbance(name, quick, threads, collision))
    iterations = 30 if quick else 150
    settings = GenerateSettings(hand=hand, grasps_per_object=4 if quick else 16, iterations=iterations,
                                views=0, collision="hull" if quick else collision)
    for category in (("drill", "hammer") if quick else categories()):
        t0 = time.perf_counter()
        _, arrays = make_object(settings, category, 0, validation_threads=threads)
        out[f"kept_fraction_{category}"] = float(np.mean(arrays["grasp_kept"]))
        out[f"object_{category}_s"] = time.perf_counter() - t0
    return out


def main() -> int:
    """Print the benchmark as ``metric value`` lines."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hand", default="oymotion", help="hand of the kept-fraction runs")
    parser.add_argument("--disturbance-hands", nargs="+", default=list(DISTURBANCE_HANDS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--collision", choices=("coacd", "hull"), default="coacd")
    parser.add_argument("--skip-kept", action="store_true", help="only the disturbance throughput")
    args = parser.parse_args()
    if args.skip_kept:
        results: dict[str, float] = {}
        for name in args.disturbance_hands:
            results.update(bench_disturbance(name, args.quick, collision=args.collision))
    else:
        results = bench_data(args.hand, args.quick, collision=args.collision,
                             disturbance_hands=args.disturbance_hands)
    for key, value in results.items():
        print(f"{key:48s} {value:.4g}")  # noqa: T201 - developer tool output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
