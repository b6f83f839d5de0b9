"""The grasp a bag's outputs describe, and its difference to a reference within stated tolerances.

Pure module (rosbags decoding + numpy; no rclpy). ``fgrasp replay --expect REF`` uses
:func:`grasp_outputs` on both bags and :func:`compare_outputs`; any failed check is a regression.

What is compared (the last message of each topic, i.e. the plan the stack settled on):

- planner outcome (``/grasp_planner/status`` ``success``): must be equal;
- joint goal (``/grasp_planner/joint_goal``): same joint names, every joint within
  ``joint_rad``;
- wrist (flange) pose at the grasp (``/grasp_planner/grasp_pose``): position within
  ``position_m``, rotation within ``rotation_deg``;
- perceived object (first successful ``/grasp_perception/status``): centroid within ``centroid_m``.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from functional_grasp.bags.bagfile import BagError, bag_folder, decode, read_messages
from functional_grasp.bags.catalog import GRASP_POSE, PERCEPTION_STATUS
from grasp_common import topics

#: Default tolerances (see :class:`Tolerances` for why these values).
JOINT_TOLERANCE_RAD = 0.01
POSITION_TOLERANCE_M = 0.002
ROTATION_TOLERANCE_DEG = 1.0
CENTROID_TOLERANCE_M = 0.002


@dataclass(frozen=True)
class Tolerances:
    """How far a replayed grasp may be from the reference and still count as the same grasp.

    Measured run-to-run spread on the shipped sample bag (same bag, same seed) is zero: the
    perception RANSAC and the planner's IK restarts are seeded and every input byte is the
    same. The tolerances leave room for other CPUs and BLAS builds (the IK stops within 1 mm /
    ~0.6 deg of its target, so two machines can land a hair apart) while a different grasp
    candidate moves the wrist by centimetres and joints by tenths of a radian.

    Attributes:
        joint_rad: largest difference of any joint of the goal, radians.
        position_m: largest wrist (flange) position difference at the grasp, metres.
        rotation_deg: largest wrist rotation difference at the grasp, degrees.
        centroid_m: largest difference of the perceived object centroid, metres.
    """

    joint_rad: float = JOINT_TOLERANCE_RAD
    position_m: float = POSITION_TOLERANCE_M
    rotation_deg: float = ROTATION_TOLERANCE_DEG
    centroid_m: float = CENTROID_TOLERANCE_M

    def __post_init__(self) -> None:
        for name in ("joint_rad", "position_m", "rotation_deg", "centroid_m"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"tolerance {name} must be a finite number >= 0, got {value}")


@dataclass(frozen=True)
class GraspOutputs:
    """The stack's result as one output bag holds it.

    Attributes:
        planner_status: the last planner status (parsed JSON), None if there was none.
        joint_goal: joint name -> radians of the last joint goal, None if none was published.
        wrist_xyz_m: (3,) flange position at the grasp, base frame, metres; None if none.
        wrist_quat_xyzw: (4,) flange orientation at the grasp; None if none.
        centroid_m: (3,) centroid of the first successfully segmented object, metres; None if none.
    """

    planner_status: dict | None
    joint_goal: dict[str, float] | None
    wrist_xyz_m: np.ndarray | None
    wrist_quat_xyzw: np.ndarray | None
    centroid_m: np.ndarray | None

    @property
    def planned(self) -> bool | None:
        """The planner's ``success``, None without a status."""
        return None if self.planner_status is None else bool(self.planner_status.get("success"))


@dataclass(frozen=True)
class Check:
    """One comparison: values shown to the user, the difference, its tolerance and the verdict."""

    quantity: str
    reference: str
    replay: str
    difference: str
    tolerance: str
    ok: bool


def grasp_outputs(path: str | Path) -> GraspOutputs:
    """Read the grasp outputs of a bag written by ``fgrasp replay`` or ``fgrasp record``.

    Raises:
        BagError: the bag cannot be read or a status is not valid JSON.
    """
    folder = bag_folder(path)
    wanted = (topics.PLANNER_STATUS, topics.JOINT_GOAL, GRASP_POSE, PERCEPTION_STATUS)
    status = goal = xyz = quat = centroid = None
    for msg in read_messages(folder, wanted):
        data = decode(msg)
        if msg.topic == topics.PLANNER_STATUS:
            status = _json(data.data, folder, msg.topic)
        elif msg.topic == topics.JOINT_GOAL:
            goal = {str(n): float(q) for n, q in zip(data.name, data.position)}
        elif msg.topic == GRASP_POSE:
            p, o = data.pose.position, data.pose.orientation
            xyz, quat = np.array([p.x, p.y, p.z]), np.array([o.x, o.y, o.z, o.w])
        elif centroid is None:
            perception = _json(data.data, folder, msg.topic)
            if perception.get("ok") and perception.get("centroid_m") is not None:
                centroid = np.asarray(perception["centroid_m"], dtype=float)
    return GraspOutputs(status, goal, xyz, quat, centroid)


def _json(text: str, folder: Path, topic: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BagError(f"bag {folder}: a message on {topic} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise BagError(f"bag {folder}: a message on {topic} is not a JSON object")
    return value


def rotation_angle_deg(q1_xyzw: Sequence[float], q2_xyzw: Sequence[float]) -> float:
    """Angle of the rotation between two unit quaternions, degrees (0..180)."""
    q1 = np.asarray(q1_xyzw, float) / np.linalg.norm(q1_xyzw)
    q2 = np.asarray(q2_xyzw, float) / np.linalg.norm(q2_xyzw)
    return float(np.degrees(2.0 * math.acos(min(1.0, abs(float(np.dot(q1, q2)))))))


def _vec(v: np.ndarray | None) -> str:
    return "-" if v is None else "[" + ", ".join(f"{x:.4f}" for x in v) + "]"


def compare_outputs(reference: GraspOutputs, replay: GraspOutputs,
                    tol: Tolerances = Tolerances()) -> list[Check]:
    """Every check of the module docstring, in order; a regression is any ``ok`` False.

    Raises:
        ValueError: ``reference`` holds no planner status (it is not a reference bag).
    """
    if reference.planner_status is None:
        raise ValueError(f"the reference holds no {topics.PLANNER_STATUS}; make it with "
                         "`fgrasp replay BAG --out REF` (it records the planner's outputs)")
    checks = []
    same = reference.planned == replay.planned
    reason = "" if replay.planner_status is None else str(replay.planner_status.get("reason") or "")
    checks.append(Check("planner outcome", _outcome(reference), _outcome(replay),
                        "same" if same else "differs" + (f" ({reason[:120]})" if reason else ""), "equal", same))
    if reference.joint_goal is not None:
        checks.append(_joint_check(reference.joint_goal, replay.joint_goal, tol.joint_rad))
    if reference.wrist_xyz_m is not None:
        checks.extend(_wrist_checks(reference, replay, tol))
    if reference.centroid_m is not None:
        if replay.centroid_m is None:
            checks.append(Check("object centroid [m]", _vec(reference.centroid_m), "-", "missing",
                                f"{tol.centroid_m:g} m", False))
        else:
            d = float(np.linalg.norm(replay.centroid_m - reference.centroid_m))
            checks.append(Check("object centroid [m]", _vec(reference.centroid_m), _vec(replay.centroid_m),
                                f"{d * 1e3:.2f} mm", f"{tol.centroid_m * 1e3:g} mm", d <= tol.centroid_m))
    return checks


def _outcome(out: GraspOutputs) -> str:
    return {None: "no status", True: "grasp planned", False: "no grasp"}[out.planned]


def _joint_check(ref: dict[str, float], new: dict[str, float] | None, tol_rad: float) -> Check:
    if new is None:
        return Check("joint goal [rad]", f"{len(ref)} joints", "-", "missing", f"{tol_rad:g} rad", False)
    if set(new) != set(ref):
        extra, missing = sorted(set(new) - set(ref)), sorted(set(ref) - set(new))
        return Check("joint goal [rad]", f"{len(ref)} joints", f"{len(new)} joints",
                     f"names differ (extra {extra}, missing {missing})", "same names", False)
    diffs = {n: abs(new[n] - ref[n]) for n in ref}
    worst = max(diffs, key=diffs.get)
    return Check("joint goal [rad]", f"{worst}={ref[worst]:.4f}", f"{worst}={new[worst]:.4f}",
                 f"max {diffs[worst]:.4f} rad ({worst})", f"{tol_rad:g} rad", diffs[worst] <= tol_rad)


def _wrist_checks(ref: GraspOutputs, new: GraspOutputs, tol: Tolerances) -> list[Check]:
    if new.wrist_xyz_m is None:
        return [Check("wrist position [m]", _vec(ref.wrist_xyz_m), "-", "missing", f"{tol.position_m:g} m", False),
                Check("wrist rotation", "", "-", "missing", f"{tol.rotation_deg:g} deg", False)]
    d = float(np.linalg.norm(new.wrist_xyz_m - ref.wrist_xyz_m))
    angle = rotation_angle_deg(ref.wrist_quat_xyzw, new.wrist_quat_xyzw)
    return [Check("wrist position [m]", _vec(ref.wrist_xyz_m), _vec(new.wrist_xyz_m), f"{d * 1e3:.2f} mm",
                  f"{tol.position_m * 1e3:g} mm", d <= tol.position_m),
            Check("wrist rotation [xyzw]", _vec(ref.wrist_quat_xyzw), _vec(new.wrist_quat_xyzw),
                  f"{angle:.3f} deg", f"{tol.rotation_deg:g} deg", angle <= tol.rotation_deg)]


def check_rows(checks: Sequence[Check]) -> list[tuple[str, str, str, str, str, str]]:
    """Table rows (quantity, reference, replay, difference, tolerance, verdict) for the reporter."""
    return [(c.quantity, c.reference, c.replay, c.difference, c.tolerance, "ok" if c.ok else "REGRESSION")
            for c in checks]
