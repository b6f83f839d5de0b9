"""Data engine benchmark (the ``data`` section of ``fgrasp bench``; also ``python -m grasp_data.bench_data``).

Measured in one run on this machine:

- **disturbance trials per second** — one trial = one grasp's closing + 6 × 1 s disturbance
  (3500 physics steps at 2 ms); the same adapted grasps validated by the batched path
  (``mujoco.rollout``, ``threads`` MjData in parallel) and by the naive one-trial-at-a-time
  ``mj_step`` loop; every grasp is simulated (the initial-penetration shortcut is off) and both
  paths must agree (``outcomes_match``);
- **adaptation time per batch** (``grasps`` grasps, ``iterations`` Adam steps);
- **kept fraction per category** — one object per category through the whole engine
  (:func:`grasp_data.engine.make_object`, no renders).
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np


def bench_data(hand: str = "oymotion", quick: bool = False, threads: int = 2,
               collision: str = "coacd") -> dict[str, float]:
    """Run the benchmark; returns ``{metric: value}`` with unit-suffixed keys.

    Args:
        hand: hand name.
        quick: small sizes (seconds).
        threads: simulation threads of the batched path.
        collision: collision geometry of the kept-fraction runs (``coacd``: realistic, the
            first run per object pays the decomposition; ``hull``: fast, fills concavities).
    """
    import torch

    from grasp_data.adaptation import AdaptationConfig, adapt_grasps
    from grasp_data.demonstrations import load_demonstration
    from grasp_data.engine import GenerateSettings, _hand_model, make_object
    from grasp_data.objects import categories, generate
    from grasp_data.transfer import transfer_contacts
    from grasp_data.validation import FloatingHandScene, GraspValidator, ValidationConfig
    from sim_bridge.mesh_objects import mesh_object

    torch.set_num_threads(1)
    grasps, iterations = (8, 30) if quick else (32, 150)
    trials = 4 if quick else 16
    model = _hand_model(hand)
    obj = generate("hammer", 5)
    demo = load_demonstration("hammer")
    transfer = transfer_contacts(demo, obj, seed=5)
    batch = adapt_grasps(model, obj, transfer, AdaptationConfig(batch_size=grasps, iterations=iterations))
    out = {"adaptation_batch_s": batch.wall_time_s, "adaptation_grasps": float(grasps),
           "adaptation_iterations": float(iterations),
           "adaptation_per_grasp_ms": 1000.0 * batch.wall_time_s / grasps}

    spec = mesh_object(obj.mesh, name="bench_hammer_5_hull", collision="hull")
    config = ValidationConfig(max_initial_penetration_m=np.inf, threads=threads)
    validator = GraspValidator(FloatingHandScene(model, obj, spec, config), demo)
    idx = np.arange(trials) % len(batch)
    subset = replace(batch, root_pose=batch.root_pose[idx], q=batch.q[idx])
    t0 = time.perf_counter()
    fast = validator.validate(subset)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive = validator.validate_naive(subset)
    t_naive = time.perf_counter() - t0
    out.update({"disturbance_trials": float(trials), "disturbance_threads": float(threads),
                "disturbance_batched_trials_per_s": trials / t_batched,
                "disturbance_naive_trials_per_s": trials / t_naive,
                "disturbance_batched_vs_naive_x": t_naive / t_batched,
                "disturbance_outcomes_match": float([o.reason for o in fast] == [o.reason for o in naive])})

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
    parser.add_argument("--hand", default="oymotion")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--collision", choices=("coacd", "hull"), default="coacd")
    args = parser.parse_args()
    for key, value in bench_data(args.hand, args.quick, collision=args.collision).items():
        print(f"{key:40s} {value:.4g}")  # noqa: T201 - developer tool output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
