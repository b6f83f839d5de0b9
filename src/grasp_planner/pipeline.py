"""The planner's pure core: object cloud → grasp candidates → Franka IK → a safe, timed trajectory.

Waypoints of a grasp: start → pre-grasp (hand open) → grasp (hand open) → grasp (hand squeezed)
[→ lift (hand squeezed), when ``lift_height_m`` > 0]. Every candidate is tried best-first until one passes IK (pre-grasp and
grasp on the same branch, a straight lift) and the motion backend (collision + safety checks).
With the network backend and ``network_fallback``, the optimiser's candidates are tried after the
network's when none of those passes. No trajectory is returned unless every check passed.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from grasp_planner.franka_ik import FrankaKinematics
from grasp_planner.grasp_predictor import (GRASP_BACKENDS, GraspPredictionError, GraspPredictor,
                                           NetworkPredictorConfig, OptimiserPredictor, make_grasp_predictor)
from grasp_planner.grasp_synthesis import GraspCandidate, GraspSynthesizer, SynthesisConfig
from grasp_planner.hands.description import HandDescription
from grasp_planner.motion.base import MotionBackend, MotionPlan, PlanningError, PlanningScene
from grasp_planner.motion.builtin import BuiltinJointPlanner, BuiltinPlannerConfig
from grasp_planner.object_model import ObjectModelError, build_object_proxy
from grasp_planner.robots import panda


@dataclass(frozen=True)
class PlannerConfig:
    """Planner parameters (metres, seconds, radians)."""

    approach_offset_m: float = 0.10       # pre-grasp stand-off along the approach direction
    lift_height_m: float = 0.0            # straight lift in +z after closing; 0 = none (the
                                          # D(R,O) protocol judges the grasp with gravity off)
    close_duration_s: float = 1.0         # time to close the fingers (D(R,O) protocol: 1 s)
    hold_duration_s: float = 0.3          # pause after closing before the lift
    table_z_m: float = 0.0                # table top height in the base frame
    num_candidates: int = 8               # grasp candidates tried (best first)
    camera_xyz: tuple[float, float, float] | None = None  # completes single-view clouds; the network's
                                                          # ranking tells the unseen side from free space
    grasp_backend: str = "network"        # grasp predictor: network (falls back to the optimiser) | optimiser
    grasp_checkpoint: str = ""            # network checkpoint; "" = config/checkpoints/<hand>.safetensors
    network_samples: int = 32             # CVAE samples recovered per request (network backend)
    completion_checkpoint: str = ""       # network backend: shape-completion checkpoint for the refinement's
                                          # surface ("" = none: the view alone)
    network_fallback: bool = True         # network backend: when none of its candidates passes IK and motion
                                          # planning (or it has none), try the optimiser's candidates

    def __post_init__(self) -> None:
        if self.grasp_backend not in GRASP_BACKENDS:
            raise ValueError(f"unknown grasp_backend '{self.grasp_backend}'; choose one of: "
                             f"{', '.join(GRASP_BACKENDS)}")
        if self.network_samples < 1:
            raise ValueError("network_samples must be >= 1")
        if self.approach_offset_m < 0 or self.lift_height_m < 0:
            raise ValueError("approach_offset_m and lift_height_m must be >= 0")
        if self.close_duration_s <= 0 or self.hold_duration_s < 0:
            raise ValueError("close_duration_s must be > 0 and hold_duration_s >= 0")
        if self.num_candidates < 1:
            raise ValueError("num_candidates must be >= 1")


@dataclass
class PlanResult:
    """Outcome of one planning request. ``plan`` is None unless every check passed."""

    success: bool
    reason: str = ""
    plan: MotionPlan | None = None
    candidate: GraspCandidate | None = None
    candidates: list = field(default_factory=list)
    arm_goal: dict = field(default_factory=dict)        # grasp configuration, arm joints
    hand_goal: dict = field(default_factory=dict)       # squeeze target, hand joints
    T_base_flange: np.ndarray | None = None
    timings_s: dict = field(default_factory=dict)
    rejections: list = field(default_factory=list)      # why each tried candidate failed

    @property
    def joint_goal(self) -> dict:
        """Arm + hand goal at the grasp (joint name → radians)."""
        return {**self.arm_goal, **self.hand_goal}


def builtin_backend(hand: HandDescription, config: PlannerConfig, velocity_scale: float = 0.3,
                    kinematics: FrankaKinematics | None = None) -> BuiltinJointPlanner:
    """The built-in motion planner set up for this planner's waypoints and hand.

    The object may be touched only in the trailing segments that approach it, close the hand
    and (if any) lift it; the arm envelope beyond the flange is the hand's planning capsule.
    """
    contact_segments = 2 + (1 if config.lift_height_m > 0 else 0)
    return BuiltinJointPlanner(BuiltinPlannerConfig(
        object_contact_segments=contact_segments, hand_length_m=hand.capsule_length_m,
        hand_radius_m=hand.capsule_radius_m, velocity_scale=velocity_scale),
        kinematics=kinematics, hand=hand)


class GraspPlanner:
    """Plans a grasp for one hand on a Franka; see the module docstring."""

    def __init__(self, hand: HandDescription, backend: MotionBackend,
                 config: PlannerConfig | None = None, synthesis: SynthesisConfig | None = None,
                 kinematics: FrankaKinematics | None = None, predictor: GraspPredictor | None = None,
                 warn: Callable[[str], None] | None = None):
        """Args: predictor: grasp predictor (default: built from ``config.grasp_backend``, see
        :func:`~grasp_planner.grasp_predictor.make_grasp_predictor`); warn: sink of its fallback warning."""
        self.hand = hand
        self.backend = backend
        self.config = config or PlannerConfig()
        self.synthesizer = GraspSynthesizer(hand, synthesis)
        self.kinematics = kinematics or FrankaKinematics()
        self.predictor = predictor or make_grasp_predictor(
            self.config.grasp_backend, hand, self.synthesizer, self.config.grasp_checkpoint or None,
            NetworkPredictorConfig(num_samples=self.config.network_samples,
                                   approach_offset_m=self.config.approach_offset_m), self.kinematics, warn,
            arm_check=self._arm_check(), completion=self.config.completion_checkpoint or None)
        self._root_to_flange = np.linalg.inv(hand.mount_transform)

    def scene(self, cloud: np.ndarray) -> PlanningScene:
        """The motion planner's world: the table (top at ``table_z_m``) and the object cloud (N, 3), metres."""
        return PlanningScene(table_center_m=(0.4, 0.0, self.config.table_z_m - 0.025),
                             table_size_m=(1.2, 1.2, 0.05), object_points_m=cloud)

    def _arm_check(self) -> Callable[[np.ndarray, np.ndarray | None], str] | None:
        """(arm configuration (7,), object cloud (N, 3) or None) → "" or which body the motion backend
        finds in the table or within its clearance of the object; None when the backend has no
        per-configuration check (MoveIt checks its own scene)."""
        first_collision = getattr(self.backend, "first_collision", None)
        if first_collision is None:
            return None

        def check(q_arm: np.ndarray, cloud: np.ndarray | None) -> str:
            scene = self.scene(np.zeros((0, 3)) if cloud is None else np.asarray(cloud, dtype=float).reshape(-1, 3))
            hit = first_collision(q_arm, scene, check_object=cloud is not None)
            return "" if hit is None else f"'{hit[0]}' in the {hit[1]}"
        return check

    def plan(self, cloud: np.ndarray, start: dict[str, float], image: np.ndarray | None = None,
             pixel_uv: np.ndarray | None = None) -> PlanResult:
        """Plan a grasp of the object seen as ``cloud``.

        Args:
            cloud: (N, 3) object points in the base frame, metres.
            start: current joint positions by name (must include the 7 arm joints).
            image: (H, W, 3) uint8 RGB frame the cloud was segmented from, any size; needed by a
                network trained with images (``predictor.uses_image``), ignored otherwise.
            pixel_uv: (N, 2) pixel (u, v) (column, row) of each cloud point in ``image``.

        Returns:
            PlanResult; ``success`` False with a ``reason`` when no candidate survives.
        """
        cfg = self.config
        timings: dict[str, float] = {}
        missing = [n for n in panda.ARM_JOINT_NAMES if n not in start]
        if missing:
            return PlanResult(False, f"start state lacks arm joints {missing}", timings_s=timings)
        t0 = time.perf_counter()
        try:
            proxy = build_object_proxy(cloud, cfg.table_z_m,
                                       None if cfg.camera_xyz is None else np.asarray(cfg.camera_xyz))
        except ObjectModelError as exc:
            return PlanResult(False, f"object model: {exc}", timings_s=timings)
        try:
            candidates = self.predictor.predict(cloud, proxy, cfg.num_candidates, image=image, pixel_uv=pixel_uv,
                                                camera_xyz=cfg.camera_xyz)
        except GraspPredictionError as exc:
            return PlanResult(False, f"grasp prediction ({self.predictor.name}): {exc}", timings_s=timings)
        timings["grasp_synthesis"] = time.perf_counter() - t0
        fallback = self.predictor.name == "network" and cfg.network_fallback
        if not candidates and not fallback:
            return PlanResult(False, f"no grasp candidate ({self.predictor.name}): "
                              f"{self.predictor.no_candidate_reason()}", timings_s=timings)
        none = [] if candidates else [f"network: no candidate ({self.predictor.no_candidate_reason()})"]
        result = self._first_feasible(candidates, cloud, start, timings, earlier=none)
        if result.success or not fallback:
            return result
        # None of the network's candidates can be executed: the optimiser's come next (each
        # candidate's info["backend"] says which backend planned it).
        backup = OptimiserPredictor(self.synthesizer)
        t1 = time.perf_counter()
        extra = backup.predict(cloud, proxy, cfg.num_candidates)
        timings = {**result.timings_s, "grasp_synthesis": timings["grasp_synthesis"] + time.perf_counter() - t1}
        if not extra:
            return PlanResult(False, f"{result.reason}; optimiser fallback: no grasp candidate: "
                              f"{backup.no_candidate_reason()}", candidates=candidates, timings_s=timings,
                              rejections=result.rejections)
        second = self._first_feasible(extra, cloud, start, timings, rank_offset=len(candidates),
                                      earlier=result.rejections)
        second.candidates = candidates + extra
        return second

    def _first_feasible(self, candidates: list[GraspCandidate], cloud: np.ndarray, start: dict[str, float],
                        timings: dict[str, float], rank_offset: int = 0,
                        earlier: list[str] | None = None) -> PlanResult:
        """Try ``candidates`` best first (IK, then the motion backend); the first that passes is the plan.

        Args:
            candidates: ranked grasp candidates.
            cloud: (N, 3) object points, base frame, metres (collision scene).
            start: current joint positions by name.
            timings: stage times so far (seconds), extended with ``ik`` and ``motion_plan``.
            rank_offset: number of candidates tried before these (rejection messages count on).
            earlier: rejections of candidates tried before these.
        """
        cfg = self.config
        timings = dict(timings)
        scene = self.scene(cloud)
        # Measured states sit a hair outside hard stops (soft contacts); clip them onto the limits.
        q_start = np.clip([start[n] for n in panda.ARM_JOINT_NAMES],
                          panda.JOINT_LIMITS_RAD[:, 0], panda.JOINT_LIMITS_RAD[:, 1])
        hand_lo = dict(zip(self.hand.joint_names, self.hand.joint_limits[:, 0]))
        hand_hi = dict(zip(self.hand.joint_names, self.hand.joint_limits[:, 1]))
        rejections: list[str] = list(earlier or [])
        t_ik, t_motion = timings.get("ik", 0.0), timings.get("motion_plan", 0.0)
        for rank, cand in enumerate(candidates, start=rank_offset):
            t1 = time.perf_counter()
            T_flange = cand.T_base_root @ self._root_to_flange
            axis_flange = T_flange[:3, :3].T @ cand.approach
            pre, grasp = self.kinematics.solve_pregrasp_grasp(
                T_flange, cfg.approach_offset_m, axis_flange, q_seed=q_start)
            lift = None
            if pre.success and grasp.success and cfg.lift_height_m > 0:
                lift = self.kinematics.cartesian_offset_ik(grasp.q, np.array([0.0, 0.0, cfg.lift_height_m]))
            t_ik += time.perf_counter() - t1
            failed = [r for r in (grasp, pre, lift) if r is not None and not r.success]
            if failed:
                why = failed[0].reason
                rejections.append(f"candidate {rank}: IK {why}")
                continue
            t2 = time.perf_counter()
            arm = lambda q: dict(zip(panda.ARM_JOINT_NAMES, q.tolist()))  # noqa: E731
            start_full = {**dict(zip(panda.ARM_JOINT_NAMES, q_start.tolist())),
                          **{n: float(np.clip(start.get(n, v), hand_lo[n], hand_hi[n]))
                             for n, v in cand.q_open.items()}}
            goals = [{**arm(pre.q), **cand.q_open}, {**arm(grasp.q), **cand.q_open},
                     {**arm(grasp.q), **cand.q_squeeze}]
            if lift is not None:
                goals.append({**arm(lift.q), **cand.q_squeeze})
            try:
                plan = self.backend.plan(start_full, goals, scene)
            except PlanningError as exc:
                t_motion += time.perf_counter() - t2
                rejections.append(f"candidate {rank}: motion {exc}")
                continue
            t_motion += time.perf_counter() - t2
            plan = _stretch_closing(plan, grasp.q, cfg.close_duration_s, cfg.hold_duration_s)
            timings.update(ik=t_ik, motion_plan=t_motion)
            return PlanResult(True, "", plan=plan, candidate=cand, candidates=candidates,
                              arm_goal=arm(grasp.q), hand_goal=dict(cand.q_squeeze),
                              T_base_flange=T_flange, timings_s=timings, rejections=rejections)
        timings.update(ik=t_ik, motion_plan=t_motion)
        return PlanResult(False, f"all {rank_offset + len(candidates)} candidates failed: " + "; ".join(rejections),
                          candidates=candidates, timings_s=timings, rejections=rejections)


def _stretch_closing(plan: MotionPlan, q_grasp_arm: np.ndarray, close_s: float, hold_s: float) -> MotionPlan:
    """Slow the finger-closing segment to at least ``close_s`` and hold ``hold_s`` before lifting.

    The closing segment is where the arm sits at the grasp configuration while the hand moves.
    """
    arm_cols = [plan.joint_names.index(n) for n in panda.ARM_JOINT_NAMES]
    at_grasp = np.all(np.abs(plan.positions[:, arm_cols] - q_grasp_arm) < 1e-6, axis=1)
    idx = np.flatnonzero(at_grasp)
    if len(idx) < 2:
        return plan
    first, last = idx[0], idx[-1]
    t = plan.times_s.copy()
    span = t[last] - t[first]
    scale = max(1.0, close_s / span) if span > 0 else 1.0
    new_t = t.copy()
    new_t[first:last + 1] = t[first] + (t[first:last + 1] - t[first]) * scale
    new_t[last + 1:] = t[last + 1:] + (new_t[last] - t[last]) + hold_s
    positions = plan.positions
    if hold_s > 0:
        positions = np.insert(positions, last + 1, positions[last], axis=0)
        new_t = np.insert(new_t, last + 1, new_t[last] + hold_s)
    return MotionPlan(joint_names=plan.joint_names, positions=positions, times_s=new_t)
