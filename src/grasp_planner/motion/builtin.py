"""Built-in joint-space planner: time-scaled interpolation through waypoints, sphere-swept collision checks.

No sampling-based search: the planner interpolates straight lines in joint space between the
given waypoints (so the caller chooses the waypoints: pre-grasp, grasp, lift…) and refuses the plan
when any densified sample collides. It is the default backend wherever MoveIt is not installed.

Collision model: each Panda link is a capsule between two link-frame origins (radii from the
link meshes, rounded up), and the hand is a capsule from the flange along the flange +z axis
(the Shadow Hand forearm + hand is about 0.45 m long, 0.05 m in radius). Capsules are checked
against the table box and the object point cloud. Self-collision is not checked.

Object contact: the trailing ``object_contact_segments`` segments (default 1: the final
pre-grasp → grasp approach) are allowed to touch the object — that is where the hand closes
around it — so only the table is checked there. Every earlier segment must keep the whole arm
and hand ``object_clearance_m`` away from the object points.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from grasp_planner.franka_ik import FrankaKinematics
from grasp_planner.hands import HandDescription
from grasp_planner.motion.base import (JointDict, MotionBackend, MotionPlan, PlanningError,
                                       PlanningScene, resolve_goals)
from grasp_planner.robots import panda
from grasp_planner.safety import SafetyLimits, check_trajectory

#: Peak of ds/dτ for the quintic (minimum-jerk) time scaling s(τ) = 10τ³ − 15τ⁴ + 6τ⁵.
QUINTIC_PEAK_VELOCITY = 1.875


@dataclass(frozen=True)
class LinkCapsule:
    """A capsule between a point fixed in one frame and a point fixed in another.

    Attributes:
        name: body name used in error messages (e.g. ``"panda_link4"``, ``"hand"``).
        frame_a: URDF frame of the first end point.
        point_a_m: (3,) first end point in ``frame_a``, metres.
        frame_b: URDF frame of the second end point.
        point_b_m: (3,) second end point in ``frame_b``, metres.
        radius_m: capsule radius, metres.
        check_table: False for bodies bolted to the table (the base column).
    """

    name: str
    frame_a: str
    point_a_m: tuple[float, float, float]
    frame_b: str
    point_b_m: tuple[float, float, float]
    radius_m: float
    check_table: bool = True


#: Panda arm capsules between consecutive link-frame origins (radii ≈ link mesh half-widths).
PANDA_CAPSULES: tuple[LinkCapsule, ...] = (
    LinkCapsule("panda_link1", "panda_link1", (0.0, 0.0, -0.19), "panda_link1", (0.0, 0.0, 0.0), 0.08,
                check_table=False),
    LinkCapsule("panda_link2", "panda_link2", (0.0, 0.0, 0.0), "panda_link3", (0.0, 0.0, 0.0), 0.075),
    LinkCapsule("panda_link3", "panda_link3", (0.0, 0.0, 0.0), "panda_link4", (0.0, 0.0, 0.0), 0.07),
    LinkCapsule("panda_link4", "panda_link4", (0.0, 0.0, 0.0), "panda_link5", (0.0, 0.0, 0.0), 0.07),
    LinkCapsule("panda_link6", "panda_link5", (0.0, 0.0, 0.0), "panda_link7", (0.0, 0.0, 0.0), 0.065),
    LinkCapsule("panda_link7", "panda_link7", (0.0, 0.0, 0.0), "panda_link8", (0.0, 0.0, 0.0), 0.055),
)


@dataclass(frozen=True)
class BuiltinPlannerConfig:
    """Parameters of :class:`BuiltinJointPlanner` (validated in ``__post_init__``).

    Attributes:
        velocity_scale: fraction (0, 1] of each joint's velocity limit the peak velocity may reach.
        max_step_rad: largest joint change between consecutive plan samples, radians.
        min_segment_duration_s: shortest duration of a moving segment, seconds.
        hand_length_m: length of the hand capsule from the flange along flange +z, metres.
        hand_radius_m: radius of the hand capsule, metres.
        table_clearance_m: required gap between any checked capsule and the table, metres.
        object_clearance_m: required gap to the object points outside the contact segments, metres.
        object_contact_segments: trailing segments allowed to touch the object (see module doc).
    """

    velocity_scale: float = 0.3
    max_step_rad: float = 0.02
    min_segment_duration_s: float = 0.1
    hand_length_m: float = 0.45
    hand_radius_m: float = 0.05
    table_clearance_m: float = 0.0
    object_clearance_m: float = 0.01
    object_contact_segments: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.velocity_scale <= 1:
            raise ValueError(f"velocity_scale must be in (0, 1], got {self.velocity_scale}")
        if self.max_step_rad <= 0 or self.min_segment_duration_s <= 0:
            raise ValueError(f"max_step_rad ({self.max_step_rad} rad) and min_segment_duration_s "
                             f"({self.min_segment_duration_s} s) must be > 0")
        if self.hand_length_m < 0 or self.hand_radius_m <= 0:
            raise ValueError(f"hand capsule needs length >= 0 and radius > 0, got "
                             f"{self.hand_length_m} m / {self.hand_radius_m} m")
        if self.table_clearance_m < 0 or self.object_clearance_m < 0 or self.object_contact_segments < 0:
            raise ValueError("clearances and object_contact_segments must be >= 0")


def _segment_point_distances(a: np.ndarray, b: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(N,) distances, metres, from points (N, 3) to segment a–b ((3,) each)."""
    ab = b - a
    denom = float(ab @ ab)
    ap = pts - a
    s = np.clip(ap @ ab / denom, 0.0, 1.0) if denom > 1e-12 else np.zeros(len(pts))
    return np.linalg.norm(ap - s[:, None] * ab, axis=1)


def _segment_box_distance(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                          step_m: float) -> float:
    """Approximate distance, metres, from segment a–b to an axis-aligned box (0 when touching)."""
    n = max(2, int(np.ceil(np.linalg.norm(b - a) / step_m)) + 1)
    pts = a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)
    d = np.maximum(np.maximum(lo - pts, pts - hi), 0.0)
    return float(np.min(np.linalg.norm(d, axis=1)))


class BuiltinJointPlanner(MotionBackend):
    """Joint-space interpolation with minimum-jerk time scaling and capsule collision checks."""

    def __init__(self, config: BuiltinPlannerConfig | None = None, *,
                 kinematics: FrankaKinematics | None = None, limits: SafetyLimits | None = None,
                 hand: HandDescription | None = None) -> None:
        """Build the planner.

        Args:
            config: planner parameters; default :class:`BuiltinPlannerConfig()`.
            kinematics: Panda kinematics (created when None).
            limits: safety limits for the plan check and the velocity limits used for time
                scaling; default Panda limits plus ``hand``'s joints when given.
            hand: hand whose joints may appear in the plan (only used to build default limits).
        """
        self.config = config or BuiltinPlannerConfig()
        self.kinematics = kinematics or FrankaKinematics()
        if limits is None:
            limits = (SafetyLimits.for_panda(hand.joint_names, hand.joint_limits) if hand is not None
                      else SafetyLimits.for_panda())
        self.limits = limits
        cfg = self.config
        self.capsules: tuple[LinkCapsule, ...] = PANDA_CAPSULES + (
            LinkCapsule("hand", panda.FLANGE_FRAME, (0.0, 0.0, 0.0), panda.FLANGE_FRAME,
                        (0.0, 0.0, cfg.hand_length_m), cfg.hand_radius_m),)
        frames = sorted({c.frame_a for c in self.capsules} | {c.frame_b for c in self.capsules})
        self._frames = frames
        self._frame_ids = self.kinematics.frame_ids(frames)
        self._frame_index = {f: i for i, f in enumerate(frames)}

    # ----------------------------------------------------------------- collision model
    def capsule_segments(self, q_arm: np.ndarray) -> list[tuple[LinkCapsule, np.ndarray, np.ndarray]]:
        """World end points of every capsule.

        Args:
            q_arm: (7,) radians, ``ARM_JOINT_NAMES`` order.

        Returns:
            [(capsule, a (3,), b (3,))], base frame, metres.
        """
        poses = self.kinematics.frame_poses_by_id(np.asarray(q_arm, dtype=float), self._frame_ids)
        out = []
        for c in self.capsules:
            Ta, Tb = poses[self._frame_index[c.frame_a]], poses[self._frame_index[c.frame_b]]
            a = Ta[:3, :3] @ np.asarray(c.point_a_m) + Ta[:3, 3]
            b = Tb[:3, :3] @ np.asarray(c.point_b_m) + Tb[:3, 3]
            out.append((c, a, b))
        return out

    def first_collision(self, q_arm: np.ndarray, scene: PlanningScene, check_object: bool
                        ) -> tuple[str, str, float] | None:
        """First collision of one arm configuration, or None.

        Args:
            q_arm: (7,) radians, ``ARM_JOINT_NAMES`` order.
            scene: table and object, base frame.
            check_object: also check the object points.

        Returns:
            (body name, "table" or "object", penetration incl. clearance in metres) or None.
        """
        cfg = self.config
        c = np.asarray(scene.table_center_m)
        half = np.asarray(scene.table_size_m) / 2.0
        lo, hi = c - half, c + half
        pts = scene.object_points_m
        for cap, a, b in self.capsule_segments(q_arm):
            if cap.check_table:
                d = _segment_box_distance(a, b, lo, hi, step_m=cap.radius_m / 2.0)
                if d < cap.radius_m + cfg.table_clearance_m:
                    return cap.name, "table", cap.radius_m + cfg.table_clearance_m - d
            if check_object and len(pts):
                d = float(np.min(_segment_point_distances(a, b, pts)))
                if d < cap.radius_m + cfg.object_clearance_m:
                    return cap.name, "object", cap.radius_m + cfg.object_clearance_m - d
        return None

    # ----------------------------------------------------------------- planning
    def _velocity_limits(self, names: Sequence[str]) -> np.ndarray:
        missing = [n for n in names if n not in self.limits.max_velocity_rad_s]
        if missing:
            raise PlanningError(f"no velocity limit for joints {missing}; pass SafetyLimits (or a "
                                "HandDescription) that include them")
        return np.array([self.limits.max_velocity_rad_s[n] for n in names])

    def time_parameterize(self, waypoints: np.ndarray, vmax_rad_s: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Densify and time a piecewise-linear joint path with minimum-jerk segments.

        Each segment starts and ends at rest; its duration makes the peak velocity of every joint
        ``velocity_scale`` × its limit at most. Waypoints equal to the previous one are skipped.

        Args:
            waypoints: (W, n) radians.
            vmax_rad_s: (n,) velocity limits, rad/s.

        Returns:
            (positions (T, n) radians, times (T,) seconds, segment index (T,) of each sample;
            the first sample has segment -1).
        """
        cfg = self.config
        q_out = [waypoints[0]]
        t_out = [0.0]
        seg_out = [-1]
        t0 = 0.0
        for s in range(len(waypoints) - 1):
            dq = waypoints[s + 1] - waypoints[s]
            span = float(np.max(np.abs(dq)))
            if span < 1e-9:
                continue
            duration = max(cfg.min_segment_duration_s,
                           float(np.max(np.abs(dq) * QUINTIC_PEAK_VELOCITY / (cfg.velocity_scale * vmax_rad_s))))
            n = max(2, int(np.ceil(QUINTIC_PEAK_VELOCITY * span / cfg.max_step_rad)))
            tau = np.arange(1, n + 1) / n
            sv = tau ** 3 * (10.0 - 15.0 * tau + 6.0 * tau ** 2)
            q_out.extend(waypoints[s] + sv[:, None] * dq)
            t_out.extend((t0 + tau * duration).tolist())
            seg_out.extend([s] * n)
            t0 += duration
        return np.asarray(q_out), np.asarray(t_out), np.asarray(seg_out)

    def plan(self, start: JointDict, goals: Sequence[JointDict], scene: PlanningScene) -> MotionPlan:
        """Plan through ``goals`` in order; see :meth:`MotionBackend.plan`.

        ``start`` must contain all seven Panda arm joints (hand joints are optional and are
        interpolated with the arm). Raises :class:`PlanningError` on the first colliding sample
        (with its time, index and body) and when the timed plan fails ``check_trajectory``.
        When every goal equals the start, the plan is the single start waypoint at t = 0.
        """
        names, waypoints = resolve_goals(start, goals)
        missing = [n for n in panda.ARM_JOINT_NAMES if n not in names]
        if missing:
            raise PlanningError(f"start state lacks arm joints {missing}; the built-in planner needs "
                                f"all of {list(panda.ARM_JOINT_NAMES)}")
        arm_cols = [names.index(n) for n in panda.ARM_JOINT_NAMES]
        positions, times, segments = self.time_parameterize(waypoints, self._velocity_limits(names))
        n_segments = len(waypoints) - 1
        first_contact_segment = n_segments - self.config.object_contact_segments
        for i in range(len(times)):
            seg = int(segments[i])
            hit = self.first_collision(positions[i, arm_cols], scene,
                                       check_object=seg < first_contact_segment)
            if hit is not None:
                body, what, depth = hit
                where = "the start state" if seg < 0 else f"segment {seg} (waypoint {seg} → {seg + 1})"
                raise PlanningError(
                    f"collision at t={times[i]:.3f} s (sample {i}, {where}): '{body}' is "
                    f"{depth:.3f} m inside the {what} (including clearance); move the waypoint or "
                    "add an intermediate one", time_s=float(times[i]), sample_index=i, link=body)
        violations = check_trajectory(names, positions, times, self.limits, fk_fn=self.kinematics.fk)
        if violations:
            raise PlanningError("plan violates the safety limits: " + "; ".join(violations))
        return MotionPlan(joint_names=names, positions=positions, times_s=times)
