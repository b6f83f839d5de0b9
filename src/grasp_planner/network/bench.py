"""Benchmark of the D(R,O) network on this CPU: forward pass + grasp recovery, 1 and 32 candidates.

The recovery runs on the hand's batched torch FK (:func:`~grasp_planner.network.hand_chain.torch_hand_chain`).
"""
from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence

import numpy as np
import torch

from grasp_planner.network.config import NetworkConfig
from grasp_planner.network.hand_chain import cached_hand_chain
from grasp_planner.network.model import DROBatch, DRONetwork
from grasp_planner.network.recovery import (ObjectSurface, axis_angle_to_matrix, estimate_normals, recover_grasps,
                                            refine_grasps)

#: Distance noise added to the true matrices timed by the recovery (metres): a trained network's error.
BENCH_DISTANCE_NOISE_M = 0.003


def _stats(values: Sequence[float], key: str) -> dict[str, float]:
    arr = np.asarray(values, dtype=float) * 1e3
    return {f"{key}_median_ms": float(np.median(arr)), f"{key}_p95_ms": float(np.percentile(arr, 95))}


def _scene(config: NetworkConfig, gen: torch.Generator) -> DROBatch:
    """One synthetic scene: a 5 cm ellipsoid shell cloud 0.5 m in front of the camera, random image."""
    d = torch.randn(1, config.object_points, 3, generator=gen)
    obj = d / d.norm(dim=-1, keepdim=True) * torch.tensor([0.05, 0.04, 0.08]) + torch.tensor([0.0, 0.0, 0.5])
    h, w = config.image_size
    uv = torch.rand(1, config.object_points, 2, generator=gen) * torch.tensor([w - 1.0, h - 1.0])
    return DROBatch(object_points=obj, hand_points=torch.zeros(config.hand_points, 3),
                    image=torch.rand(1, 3, h, w, generator=gen), pixel_uv=uv)


def bench_network(config: NetworkConfig | None = None, samples: Sequence[int] = (1, 32), runs: int = 10,
                  threads: int = 1, seed: int = 0) -> dict[str, float]:
    """Time forward pass + grasp recovery of the default network on this CPU.

    Per run and candidate count K: the network predicts K distance matrices for one scene (prior
    samples; untrained weights cost the same as trained ones), then the recovery (multilateration,
    per-link Kabsch, joint solve with the torch hand FK) runs on K *true* distance matrices of random
    in-limit hand grasps plus ``BENCH_DISTANCE_NOISE_M`` noise, against the network's sampled object
    points (an untrained network's matrices would make the solve run its worst case, not a typical one),
    then the contact/penetration refinement against the object cloud (normals estimated from it, as
    the planner does; all its iterations run, as the random grasps are far from the surface).

    Args:
        config: network config (default :class:`NetworkConfig`, hand from it).
        samples: candidate counts K to time.
        runs: timed runs per K (after one warm-up).
        threads: torch intra-op threads (1, as the planner predicts: on 2 cores with one busy, 2 threads
            made the same work 10-16x slower).
        seed: scene and grasp seed.

    Returns:
        ``{forward,recovery,refine,total}_k{K}_{median,p95}_ms`` (recovery without, total with the
        refinement), ``solve_iterations_k{K}``, ``refine_iterations_k{K}``, ``fit_error_k{K}_m``
        (median distance of fitted to true hand points), ``parameters``, ``parameter_mb``,
        ``peak_rss_mb`` (whole process), ``threads``, ``load_average_1min``.
    """
    config = config or NetworkConfig()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(seed)
        _, _, chain = cached_hand_chain(config.hand, config.hand_points)
        model = DRONetwork(config).eval()
        batch = _scene(config, gen)
        batch.hand_points = chain.canonical_points.float()
        result: dict[str, float] = {"parameters": float(model.parameter_count()),
                                    "parameter_mb": sum(p.numel() * 4 for p in model.parameters()) / 2 ** 20}
        for k in samples:
            times: dict[str, list[float]] = {"forward": [], "recovery": [], "refine": [], "total": []}
            iterations, errors, refine_iterations = [], [], []
            for run in range(runs + 1):
                u = torch.rand(k, len(chain.joint_names), generator=gen, dtype=torch.float64)
                q_true = chain.lower + u * (chain.upper - chain.lower)
                rot = axis_angle_to_matrix(torch.randn(k, 3, generator=gen, dtype=torch.float64))
                centre = batch.object_points[0].mean(0).double()
                true_pts = (chain.points(q_true) - chain.points(q_true).mean(1, keepdim=True)) @ rot.transpose(-1, -2)
                true_pts = true_pts + centre + torch.tensor([0.0, 0.0, -0.09], dtype=torch.float64)
                t0 = time.perf_counter()
                with torch.no_grad():
                    out = model(batch, num_samples=k)
                t1 = time.perf_counter()
                obj = out.object_points[0]
                dist = torch.cdist(true_pts.float(), obj.expand(k, -1, -1))
                dist = (dist + BENCH_DISTANCE_NOISE_M * torch.randn(dist.shape, generator=gen)).clamp_min(0)
                t2 = time.perf_counter()
                rec = recover_grasps(dist, obj, chain)
                t3 = time.perf_counter()
                surface = ObjectSurface(obj.double(), estimate_normals(obj.double()))
                refined = refine_grasps(rec, chain, surface)
                t4 = time.perf_counter()
                if run == 0:
                    continue                                            # warm-up
                times["forward"].append(t1 - t0)
                times["recovery"].append(t3 - t2)
                times["refine"].append(t4 - t3)
                times["total"].append(t1 - t0 + t4 - t2)
                iterations.append(rec.solution.iterations)
                refine_iterations.append(refined.refinement.iterations)
                errors.append(float((rec.solution.points.double() - true_pts).norm(dim=-1).median()))
            for name, values in times.items():
                result.update(_stats(values, f"{name}_k{k}"))
            result[f"solve_iterations_k{k}"] = float(np.median(iterations))
            result[f"refine_iterations_k{k}"] = float(np.median(refine_iterations))
            result[f"fit_error_k{k}_m"] = float(np.median(errors))
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["threads"] = float(threads)
        result["load_average_1min"] = os.getloadavg()[0]
        return result
    finally:
        torch.set_num_threads(before)


def bench_predictor(cloud: np.ndarray, hand_name: str, checkpoint: str | None = None,
                    samples: Sequence[int] = (1, 32), runs: int = 10, threads: int = 1,
                    table_z_m: float = 0.0, camera_xyz: Sequence[float] | None = None,
                    completion: str | None = None, collision_points: int = 0) -> dict[str, float]:
    """Time the planner's network backend end to end: object cloud → ranked grasp candidates.

    Per run and K: object proxy, network forward with K prior samples, recovery, ranking
    (penetration, table, fingertip contact) and the simulated check of every candidate, then the arm check best first (hand capsule vs table, Franka
    IK of grasp and pre-grasp) until min(K, the planner's ``num_candidates``) are kept or none is left —
    everything the planner's
    ``grasp_synthesis`` stage does with ``grasp_backend: network``.

    Args:
        cloud: (N, 3) object cloud, base frame, metres (e.g. the segmented simulator cloud).
        hand_name: the hand.
        checkpoint: network checkpoint (default: the shipped one; an untrained default network
            when there is none — its recovery runs its worst case, so the numbers are upper bounds).
        samples: candidate counts K.
        runs: timed runs per K (after one warm-up).
        threads: torch intra-op threads of the predictor (``NetworkPredictorConfig.threads``; the
            planner's default is 1).
        table_z_m, camera_xyz: the proxy's table height and camera (single-view completion).
        completion: shape-completion checkpoint: each K is timed again with it (keys ``…_completion``).
        collision_points: when > 0, each K is timed again with that many collision points, 30
            refinement iterations and a 3 mm margin (the opt-in refinement; keys ``…_collision``).

    Returns:
        ``predict_k{K}[_sim_check|_no_sim_check|_completion|_collision]_{median,p95}_ms`` (the hand's
        default, then with the simulated check switched the other way), ``candidates_k{K}`` (median kept after ranking),
        ``trained_checkpoint`` (1 shipped/given, 0 untrained), ``peak_rss_mb``.
    """
    import tempfile
    from pathlib import Path

    from grasp_planner.grasp_predictor import NetworkPredictor, NetworkPredictorConfig, default_checkpoint
    from grasp_planner.hands.description import load_hand
    from grasp_planner.network.checkpoint import save_checkpoint
    from grasp_planner.object_model import build_object_proxy
    from grasp_planner.pipeline import PlannerConfig

    hand = load_hand(hand_name)
    path = Path(checkpoint) if checkpoint else default_checkpoint(hand_name)
    trained = path.is_file()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if not trained:
                path = save_checkpoint(Path(tmp) / "untrained.safetensors",
                                       DRONetwork(NetworkConfig(hand=hand_name, use_image=False)))
            result: dict[str, float] = {"trained_checkpoint": float(trained)}
            other = not hand.network_sim_check             # the hand's default, then the other way
            variants = [("", None, {}), ("_sim_check" if other else "_no_sim_check", None, {"sim_check": other})]
            if completion:
                variants.append(("_completion", completion, {}))
            if collision_points > 0:
                variants.append(("_collision", None, {"collision_points": collision_points, "refine_iterations": 30,
                                                      "refine_margin_m": 0.003}))
            for k, (suffix, with_completion, extra) in [(k, v) for k in samples for v in variants]:
                predictor = NetworkPredictor(hand, path, NetworkPredictorConfig(num_samples=k, threads=threads, **extra),
                                             completion=with_completion)
                key = f"k{k}{suffix}"
                wanted = min(k, PlannerConfig().num_candidates)      # the planner asks for its num_candidates
                times, kept = [], []
                for run in range(runs + 1):
                    t0 = time.perf_counter()
                    proxy = build_object_proxy(cloud, table_z_m, None if camera_xyz is None else np.asarray(camera_xyz))
                    candidates = predictor.predict(cloud, proxy, max_results=wanted, camera_xyz=camera_xyz)
                    if run:
                        times.append(time.perf_counter() - t0)
                        kept.append(len(candidates))
                result.update(_stats(times, f"predict_{key}"))
                result[f"candidates_{key}"] = float(np.median(kept))
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return result
    finally:
        torch.set_num_threads(before)
