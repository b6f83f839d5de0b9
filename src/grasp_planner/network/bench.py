"""Benchmark of the D(R,O) network on this CPU: forward pass + grasp recovery, 1 and 32 candidates.

The recovery needs the hand's batched point FK. Until the project's batched torch hand FK is
wired in, :class:`MujocoHandChain` provides it from the hand's MJCF (MuJoCo kinematics, analytic
body Jacobians), one configuration at a time in a loop.
"""
from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence

import numpy as np
import torch

from grasp_planner.network.config import NetworkConfig
from grasp_planner.network.model import DROBatch, DRONetwork
from grasp_planner.network.recovery import HandChain, axis_angle_to_matrix, recover_grasps

#: Distance noise added to the true matrices timed by the recovery (metres): a trained network's error.
BENCH_DISTANCE_NOISE_M = 0.003


class MujocoHandChain:
    """Batched point FK + analytic Jacobian of a hand from its MJCF, for :class:`HandChain`.

    Uses ``num_points`` of :class:`~grasp_planner.hand_kinematics.HandKinematics`' surface points
    (a seeded subset), the hand's planned joints (fixed joints held at their values).
    """

    def __init__(self, hand_name: str, num_points: int, seed: int = 0):
        import mujoco

        from grasp_planner.hand_kinematics import HandKinematics
        from grasp_planner.hands.description import load_hand

        self._mj = mujoco
        self.hand = load_hand(hand_name)
        self.kin = HandKinematics(self.hand)
        model = self.kin.model
        rest = self.kin.forward(self.hand.full_pose({}))
        if len(rest.points) < num_points:
            raise ValueError(f"hand '{hand_name}' has {len(rest.points)} surface points, fewer than {num_points}")
        pick = np.sort(np.random.default_rng(seed).choice(len(rest.points), num_points, replace=False))
        self.body = rest.point_body[pick]
        data = self.kin.data
        rot = data.xmat[self.body].reshape(-1, 3, 3)
        self.local = np.einsum("pji,pj->pi", rot, rest.points[pick] - data.xpos[self.body])    # body frame
        self.joint_names = self.hand.planned_joints
        self.bodies = np.unique(self.body)
        self.link_index = torch.as_tensor(np.searchsorted(self.bodies, self.body))
        self._qadr = np.array([model.jnt_qposadr[model.joint(n).id] for n in self.joint_names])
        self._jnt = np.array([model.joint(n).id for n in self.joint_names])
        if any(int(model.jnt_type[j]) != int(mujoco.mjtJoint.mjJNT_HINGE) for j in self._jnt):
            raise ValueError(f"hand '{hand_name}': only hinge joints are supported by this FK")
        # (P, nA): joint k moves point p when the joint's body is the point's body or an ancestor of it.
        ancestors = [{b} for b in range(model.nbody)]
        for b in range(1, model.nbody):
            ancestors[b] = ancestors[model.body_parentid[b]] | {b}
        self._moves = np.array([[model.jnt_bodyid[j] in ancestors[b] for j in self._jnt] for b in self.body], float)
        self._base_qpos = self.kin.qpos(self.hand.full_pose({}))
        limits = dict(zip(self.hand.joint_names, self.hand.joint_limits))
        self.lower = torch.tensor([limits[n][0] for n in self.joint_names], dtype=torch.float64)
        self.upper = torch.tensor([limits[n][1] for n in self.joint_names], dtype=torch.float64)

    def _kinematics(self, q_row: np.ndarray) -> None:
        data = self.kin.data
        data.qpos[:] = self._base_qpos
        data.qpos[self._qadr] = q_row
        self._mj.mj_kinematics(self.kin.model, data)

    def _points(self) -> np.ndarray:
        data = self.kin.data
        return np.einsum("pij,pj->pi", data.xmat[self.body].reshape(-1, 3, 3), self.local) + data.xpos[self.body]

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        """(B, nA) joints (radians, ``joint_names`` order) → (B, P, 3) points, hand root frame."""
        out = np.empty((q.shape[0], len(self.body), 3))
        for i, row in enumerate(q.detach().double().numpy()):
            self._kinematics(row)
            out[i] = self._points()
        return torch.as_tensor(out, dtype=q.dtype)

    def jacobian(self, q: torch.Tensor) -> torch.Tensor:
        """(B, nA) → (B, P, 3, nA) point Jacobians: ``axis_k × (p - anchor_k)`` for each hinge k moving p."""
        out = np.empty((q.shape[0], len(self.body), 3, len(self._jnt)))
        data = self.kin.data
        for i, row in enumerate(q.detach().double().numpy()):
            self._kinematics(row)
            pts = self._points()
            axis, anchor = data.xaxis[self._jnt], data.xanchor[self._jnt]
            lever = pts[:, None, :] - anchor[None]                                # (P, nA, 3)
            out[i] = (np.cross(axis[None], lever) * self._moves[:, :, None]).transpose(0, 2, 1)
        return torch.as_tensor(out, dtype=q.dtype)

    def chain(self) -> HandChain:
        """The :class:`HandChain` of this hand (canonical pose: the hand's open pose)."""
        open_q = [self.hand.open_pose.get(n, 0.0) for n in self.joint_names]
        return HandChain(fk=self, lower=self.lower, upper=self.upper, link_index=self.link_index,
                         joint_names=self.joint_names, jacobian=self.jacobian,
                         canonical_q=torch.tensor(open_q, dtype=torch.float64).clamp(self.lower, self.upper))


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
                  threads: int = 2, seed: int = 0) -> dict[str, float]:
    """Time forward pass + grasp recovery of the default network on this CPU.

    Per run and candidate count K: the network predicts K distance matrices for one scene (prior
    samples; untrained weights cost the same as trained ones), then the recovery (multilateration,
    per-link Kabsch, joint solve with the MuJoCo FK) runs on K *true* distance matrices of random
    in-limit hand grasps plus ``BENCH_DISTANCE_NOISE_M`` noise, against the network's sampled object
    points (an untrained network's matrices would make the solve run its worst case, not a typical one).

    Args:
        config: network config (default :class:`NetworkConfig`, hand from it).
        samples: candidate counts K to time.
        runs: timed runs per K (after one warm-up).
        threads: torch intra-op threads.
        seed: scene and grasp seed.

    Returns:
        ``{forward,recovery,total}_k{K}_{median,p95}_ms``, ``solve_iterations_k{K}``, ``fit_error_k{K}_m``
        (median distance of fitted to true hand points), ``parameters``, ``parameter_mb``,
        ``peak_rss_mb`` (whole process), ``threads``, ``load_average_1min``.
    """
    config = config or NetworkConfig()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(seed)
        hand = MujocoHandChain(config.hand, config.hand_points, seed=seed)
        chain = hand.chain()
        model = DRONetwork(config).eval()
        batch = _scene(config, gen)
        batch.hand_points = chain.canonical_points.float()
        result: dict[str, float] = {"parameters": float(model.parameter_count()),
                                    "parameter_mb": sum(p.numel() * 4 for p in model.parameters()) / 2 ** 20}
        for k in samples:
            times: dict[str, list[float]] = {"forward": [], "recovery": [], "total": []}
            iterations, errors = [], []
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
                if run == 0:
                    continue                                            # warm-up
                times["forward"].append(t1 - t0)
                times["recovery"].append(t3 - t2)
                times["total"].append(t1 - t0 + t3 - t2)
                iterations.append(rec.solution.iterations)
                errors.append(float((rec.solution.points.double() - true_pts).norm(dim=-1).median()))
            for name, values in times.items():
                result.update(_stats(values, f"{name}_k{k}"))
            result[f"solve_iterations_k{k}"] = float(np.median(iterations))
            result[f"fit_error_k{k}_m"] = float(np.median(errors))
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["threads"] = float(threads)
        result["load_average_1min"] = os.getloadavg()[0]
        return result
    finally:
        torch.set_num_threads(before)
