"""Safety checks on joint trajectories before they become motion goals (joints looked up by name)."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

import numpy as np

from grasp_planner.robots import panda

#: Default shrink of every joint range on both sides, radians.
JOINT_LIMIT_MARGIN_RAD = 0.01
#: Default velocity limit of hand joints (the hand MJCFs carry none), rad/s.
HAND_VELOCITY_LIMIT_RAD_S = 2.0
#: Default flange workspace box in the base frame (x, y, z), metres.
WORKSPACE_MIN_M = (-0.90, -0.90, -0.05)
WORKSPACE_MAX_M = (0.90, 0.90, 1.20)
#: Default lowest flange height in the base frame, metres (the table top is at z = 0).
MIN_HEIGHT_M = 0.0
#: At most this many violation messages per kind, so one bad plan does not flood the log.
MAX_MESSAGES_PER_KIND = 3

#: Forward kinematics for the safety check: (7,) arm radians in ``arm_joint_names`` order →
#: (4, 4) flange pose or (K, 3) points that must stay in the workspace, base frame, metres.
FkFn = Callable[[np.ndarray], np.ndarray]


class SafetyError(RuntimeError):
    """A trajectory violates the safety limits; ``violations`` lists every problem found."""

    def __init__(self, violations: Sequence[str]) -> None:
        self.violations = list(violations)
        super().__init__("unsafe trajectory: " + "; ".join(self.violations))


@dataclass(frozen=True)
class SafetyLimits:
    """Limits every commanded trajectory must respect.

    Attributes:
        joint_limits_rad: joint name → (lower, upper) radians (URDF/model limits).
        max_velocity_rad_s: joint name → largest |velocity| allowed, rad/s.
        limit_margin_rad: the usable range is [lower + margin, upper − margin], radians.
        margin_overrides_rad: joint name → margin replacing ``limit_margin_rad`` for that joint
            (hand joints rest at their stops, e.g. fully open at 0 rad, so they get 0).
        workspace_min_m: (3,) lower corner of the allowed flange box, base frame, metres.
        workspace_max_m: (3,) upper corner of the allowed flange box, base frame, metres.
        min_height_m: lowest allowed flange height (z, base frame), metres; above the table.
        arm_joint_names: joints whose values ``fk_fn`` receives, in this order.
    """

    joint_limits_rad: Mapping[str, tuple[float, float]]
    max_velocity_rad_s: Mapping[str, float]
    limit_margin_rad: float = JOINT_LIMIT_MARGIN_RAD
    margin_overrides_rad: Mapping[str, float] = field(default_factory=dict)
    workspace_min_m: tuple[float, float, float] = WORKSPACE_MIN_M
    workspace_max_m: tuple[float, float, float] = WORKSPACE_MAX_M
    min_height_m: float = MIN_HEIGHT_M
    arm_joint_names: tuple[str, ...] = panda.ARM_JOINT_NAMES

    def __post_init__(self) -> None:
        limits = {str(k): (float(v[0]), float(v[1])) for k, v in dict(self.joint_limits_rad).items()}
        vel = {str(k): float(v) for k, v in dict(self.max_velocity_rad_s).items()}
        overrides = {str(k): float(v) for k, v in dict(self.margin_overrides_rad).items()}
        if self.limit_margin_rad < 0 or any(v < 0 for v in overrides.values()):
            raise ValueError(f"joint limit margins must be >= 0, got {self.limit_margin_rad} and "
                             f"overrides {overrides}")
        for name, (lo, hi) in limits.items():
            m = overrides.get(name, self.limit_margin_rad)
            if not lo + m < hi - m:
                raise ValueError(f"joint '{name}': range [{lo}, {hi}] rad is empty after the "
                                 f"{m} rad margin")
        bad_vel = [n for n, v in vel.items() if not v > 0]
        if bad_vel:
            raise ValueError(f"max velocity must be > 0 rad/s for joints {bad_vel}")
        no_vel = sorted(set(limits) - set(vel))
        if no_vel:
            raise ValueError(f"joints {no_vel} have position limits but no velocity limit")
        lo_ws, hi_ws = np.asarray(self.workspace_min_m, float), np.asarray(self.workspace_max_m, float)
        if lo_ws.shape != (3,) or hi_ws.shape != (3,) or np.any(lo_ws >= hi_ws):
            raise ValueError(f"workspace box min {self.workspace_min_m} m must be below max "
                             f"{self.workspace_max_m} m on every axis")
        object.__setattr__(self, "joint_limits_rad", MappingProxyType(limits))
        object.__setattr__(self, "max_velocity_rad_s", MappingProxyType(vel))
        object.__setattr__(self, "margin_overrides_rad", MappingProxyType(overrides))
        object.__setattr__(self, "workspace_min_m", tuple(lo_ws.tolist()))
        object.__setattr__(self, "workspace_max_m", tuple(hi_ws.tolist()))
        object.__setattr__(self, "arm_joint_names", tuple(self.arm_joint_names))

    def margin_rad(self, name: str) -> float:
        """Limit margin of joint ``name``, radians."""
        return self.margin_overrides_rad.get(name, self.limit_margin_rad)

    def usable_range_rad(self, name: str) -> tuple[float, float]:
        """(lower + margin, upper − margin) of joint ``name``, radians; KeyError if unknown."""
        lo, hi = self.joint_limits_rad[name]
        m = self.margin_rad(name)
        return lo + m, hi - m

    @classmethod
    def for_panda(cls, hand_joint_names: Sequence[str] = (), hand_joint_limits_rad: np.ndarray | None = None,
                  *, hand_velocity_rad_s: float = HAND_VELOCITY_LIMIT_RAD_S,
                  hand_limit_margin_rad: float = 0.0, velocity_scale: float = 1.0,
                  **kwargs) -> SafetyLimits:
        """Limits of the Panda arm (datasheet values) plus, optionally, a hand.

        Args:
            hand_joint_names: hand joint names (e.g. ``HandDescription.joint_names``).
            hand_joint_limits_rad: (len(hand_joint_names), 2) radians (``HandDescription.joint_limits``).
            hand_velocity_rad_s: velocity limit of every hand joint, rad/s.
            hand_limit_margin_rad: limit margin of the hand joints, radians.
            velocity_scale: fraction (0, 1] of the datasheet velocities to allow.
            **kwargs: other :class:`SafetyLimits` fields (margin, workspace, min height).
        """
        if not 0 < velocity_scale <= 1:
            raise ValueError(f"velocity_scale must be in (0, 1], got {velocity_scale}")
        limits = {n: tuple(lim) for n, lim in zip(panda.ARM_JOINT_NAMES, panda.JOINT_LIMITS_RAD)}
        vel = {n: float(v) * velocity_scale for n, v in zip(panda.ARM_JOINT_NAMES, panda.VELOCITY_LIMITS_RAD_S)}
        if len(hand_joint_names):
            hl = np.asarray(hand_joint_limits_rad, dtype=float)
            if hl.shape != (len(hand_joint_names), 2):
                raise ValueError(f"hand_joint_limits_rad shape {hl.shape} does not match "
                                 f"{len(hand_joint_names)} hand joint names")
            for n, lim in zip(hand_joint_names, hl):
                limits[n] = (float(lim[0]), float(lim[1]))
                vel[n] = hand_velocity_rad_s * velocity_scale
        overrides = {n: hand_limit_margin_rad for n in hand_joint_names}
        overrides.update(kwargs.pop("margin_overrides_rad", {}))
        return cls(joint_limits_rad=limits, max_velocity_rad_s=vel, margin_overrides_rad=overrides,
                   **kwargs)


def _summarise(kind: str, items: list[str]) -> list[str]:
    if len(items) <= MAX_MESSAGES_PER_KIND:
        return items
    return items[:MAX_MESSAGES_PER_KIND] + [f"... and {len(items) - MAX_MESSAGES_PER_KIND} more {kind} violations"]


def check_trajectory(joint_names: Sequence[str], positions: np.ndarray, times_s: np.ndarray,
                     limits: SafetyLimits, fk_fn: FkFn | None = None) -> list[str]:
    """Every way a trajectory breaks the limits (an empty list means it is safe).

    Checks: known joint names (no duplicates), shapes, finite values, strictly increasing times,
    joint limits (with margin), joint velocities between consecutive waypoints (|Δq|/Δt), and,
    when ``fk_fn`` is given and the trajectory moves the arm, that the flange (or the points
    ``fk_fn`` returns) stays inside the workspace box and above ``min_height_m``.

    Args:
        joint_names: n joint names, the columns of ``positions``.
        positions: (T, n) radians.
        times_s: (T,) seconds from the trajectory start.
        limits: the limits to enforce.
        fk_fn: optional forward kinematics; see :data:`FkFn`.

    Returns:
        Human-readable violations, each naming the joint/waypoint and the value found.
    """
    names = [str(n) for n in joint_names]
    q = np.asarray(positions, dtype=float)
    t = np.asarray(times_s, dtype=float).reshape(-1)
    out: list[str] = []
    if q.ndim != 2 or q.shape[1] != len(names):
        return [f"positions shape {q.shape} does not match {len(names)} joint names (expected (T, {len(names)}))"]
    if q.shape[0] != t.shape[0]:
        return [f"{q.shape[0]} waypoints but {t.shape[0]} times"]
    if q.shape[0] == 0:
        return ["trajectory has no waypoints"]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        out.append(f"duplicate joint names {dup}")
    unknown = [n for n in names if n not in limits.joint_limits_rad]
    if unknown:
        out.append(f"unknown joints {unknown} (no safety limits configured for them)")
    if not np.all(np.isfinite(q)) or not np.all(np.isfinite(t)):
        out.append("positions or times contain NaN/inf")
        return out
    dt = np.diff(t)
    bad_t = np.nonzero(dt <= 0)[0]
    if bad_t.size:
        i = int(bad_t[0])
        out.append(f"times not strictly increasing: t[{i}]={t[i]:.4f} s, t[{i + 1}]={t[i + 1]:.4f} s "
                   f"({bad_t.size} such steps)")

    lim_msgs, vel_msgs = [], []
    for j, name in enumerate(names):
        if name not in limits.joint_limits_rad:
            continue
        lo, hi = limits.joint_limits_rad[name]
        m = limits.margin_rad(name)
        col = q[:, j]
        bad = np.nonzero((col < lo + m) | (col > hi - m))[0]
        if bad.size:
            i = int(bad[np.argmax(np.maximum(lo + m - col[bad], col[bad] - hi + m))])
            lim_msgs.append(f"joint '{name}' outside [{lo + m:.4f}, {hi - m:.4f}] rad (limit ± {m} rad "
                            f"margin) at {bad.size} waypoints; worst {col[i]:.4f} rad at waypoint {i} "
                            f"(t={t[i]:.3f} s)")
        if q.shape[0] > 1 and not bad_t.size:
            v = np.abs(np.diff(col)) / dt
            vmax = limits.max_velocity_rad_s[name]
            bad_v = np.nonzero(v > vmax * (1 + 1e-9))[0]
            if bad_v.size:
                i = int(bad_v[np.argmax(v[bad_v])])
                vel_msgs.append(f"joint '{name}' velocity {v[i]:.3f} rad/s exceeds {vmax:.3f} rad/s "
                                f"between waypoints {i} and {i + 1} (t={t[i]:.3f}–{t[i + 1]:.3f} s)")
    out += _summarise("joint-limit", lim_msgs) + _summarise("velocity", vel_msgs)

    if fk_fn is not None:
        arm = list(limits.arm_joint_names)
        present = [n for n in arm if n in names]
        if present and len(present) != len(arm):
            out.append(f"cannot check the workspace: trajectory has arm joints {present} but lacks "
                       f"{[n for n in arm if n not in names]}")
        elif present:
            cols = [names.index(n) for n in arm]
            ws_lo, ws_hi = np.asarray(limits.workspace_min_m), np.asarray(limits.workspace_max_m)
            ws_msgs = []
            for i in range(q.shape[0]):
                pts = np.asarray(fk_fn(q[i, cols]), dtype=float)
                pts = pts[:3, 3][None] if pts.shape == (4, 4) else pts.reshape(-1, 3)
                outside = np.any((pts < ws_lo) | (pts > ws_hi), axis=1)
                low = pts[:, 2] < limits.min_height_m
                if np.any(outside):
                    p = pts[int(np.argmax(outside))]
                    ws_msgs.append(f"flange at {np.round(p, 3).tolist()} m leaves the workspace box "
                                   f"{list(limits.workspace_min_m)}–{list(limits.workspace_max_m)} m at "
                                   f"waypoint {i} (t={t[i]:.3f} s)")
                elif np.any(low):
                    p = pts[int(np.argmax(low))]
                    ws_msgs.append(f"flange at height {p[2]:.3f} m is below the minimum "
                                   f"{limits.min_height_m:.3f} m at waypoint {i} (t={t[i]:.3f} s)")
            out += _summarise("workspace", ws_msgs)
    return out


def assert_safe(joint_names: Sequence[str], positions: np.ndarray, times_s: np.ndarray,
                limits: SafetyLimits, fk_fn: FkFn | None = None) -> None:
    """:func:`check_trajectory`, raising :class:`SafetyError` listing the violations if any."""
    violations = check_trajectory(joint_names, positions, times_s, limits, fk_fn)
    if violations:
        raise SafetyError(violations)
