"""Motion backend interface: planning scene, joint-space plan, and the ABC every planner implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

#: Frame every PlanningScene quantity is expressed in.
BASE_FRAME = "panda_link0"

#: A joint configuration or waypoint: joint name → radians.
JointDict = Mapping[str, float]


class PlanningError(RuntimeError):
    """No acceptable plan: collision, unreachable goal, safety violation or backend failure.

    Attributes:
        time_s: plan time of the first offending sample, seconds (None if not applicable).
        sample_index: index of that sample in the densified plan (None if not applicable).
        link: collision body involved (e.g. ``"hand"``), or None.
    """

    def __init__(self, message: str, *, time_s: float | None = None, sample_index: int | None = None,
                 link: str | None = None) -> None:
        super().__init__(message)
        self.time_s = time_s
        self.sample_index = sample_index
        self.link = link


@dataclass(frozen=True)
class PlanningScene:
    """Obstacles around the robot, all in the base frame ``panda_link0``.

    Attributes:
        table_center_m: (3,) centre of the table box, metres.
        table_size_m: (3,) full extents of the table box along x, y, z, metres.
        object_points_m: (N, 3) float, points sampled on the target object, metres (may be empty).
        object_mesh_path: optional mesh file of the object (used by backends that take meshes).
        object_mesh_pose: (4, 4) pose of the mesh frame in the base frame, metres.
        object_id: name of the object in backends that keep named collision objects.
    """

    table_center_m: tuple[float, float, float] = (0.5, 0.0, -0.025)
    table_size_m: tuple[float, float, float] = (1.2, 1.6, 0.05)
    object_points_m: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    object_mesh_path: Path | None = None
    object_mesh_pose: np.ndarray = field(default_factory=lambda: np.eye(4))
    object_id: str = "target_object"

    def __post_init__(self) -> None:
        c = np.asarray(self.table_center_m, dtype=float)
        s = np.asarray(self.table_size_m, dtype=float)
        if c.shape != (3,) or s.shape != (3,) or np.any(s <= 0):
            raise ValueError(f"table needs a (3,) centre and a (3,) positive size in metres, got "
                             f"{self.table_center_m} / {self.table_size_m}")
        pts = np.asarray(self.object_points_m, dtype=float).reshape(-1, 3) \
            if np.size(self.object_points_m) else np.zeros((0, 3))
        if not np.all(np.isfinite(pts)):
            raise ValueError("object_points_m contains NaN/inf")
        pose = np.asarray(self.object_mesh_pose, dtype=float)
        if pose.shape != (4, 4):
            raise ValueError(f"object_mesh_pose must be (4, 4), got {pose.shape}")
        object.__setattr__(self, "table_center_m", tuple(c.tolist()))
        object.__setattr__(self, "table_size_m", tuple(s.tolist()))
        object.__setattr__(self, "object_points_m", pts)
        object.__setattr__(self, "object_mesh_pose", pose)
        if self.object_mesh_path is not None:
            object.__setattr__(self, "object_mesh_path", Path(self.object_mesh_path))

    @property
    def table_top_z_m(self) -> float:
        """Height of the table's upper face in the base frame, metres."""
        return self.table_center_m[2] + self.table_size_m[2] / 2.0


@dataclass(frozen=True)
class MotionPlan:
    """A timed joint-space trajectory.

    Attributes:
        joint_names: n joint names, the columns of ``positions``.
        positions: (T, n) float64 radians.
        times_s: (T,) float64 seconds from the start, strictly increasing.
        native: backend-specific trajectories kept for ``execute`` (e.g. moveit_py
            RobotTrajectory objects); not compared, not shown.
    """

    joint_names: tuple[str, ...]
    positions: np.ndarray
    times_s: np.ndarray
    native: tuple = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.joint_names)
        q = np.asarray(self.positions, dtype=float)
        t = np.asarray(self.times_s, dtype=float).reshape(-1)
        if q.ndim != 2 or q.shape[1] != len(names) or q.shape[0] != t.shape[0] or q.shape[0] == 0:
            raise ValueError(f"MotionPlan: positions {q.shape} must be (T, {len(names)}) with T = "
                             f"len(times_s) = {t.shape[0]} > 0")
        if len(set(names)) != len(names):
            raise ValueError(f"MotionPlan: duplicate joint names in {names}")
        object.__setattr__(self, "joint_names", names)
        object.__setattr__(self, "positions", q)
        object.__setattr__(self, "times_s", t)

    @property
    def duration_s(self) -> float:
        """Time of the last waypoint, seconds."""
        return float(self.times_s[-1])

    def waypoint(self, i: int) -> dict[str, float]:
        """Waypoint ``i`` as joint name → radians."""
        return dict(zip(self.joint_names, self.positions[i].tolist()))


class MotionBackend(ABC):
    """Plans (and optionally executes) joint-space motions through a list of waypoints.

    Usable as a context manager; ``close`` releases backend resources.
    """

    @abstractmethod
    def plan(self, start: JointDict, goals: Sequence[JointDict], scene: PlanningScene) -> MotionPlan:
        """Plan from ``start`` through every goal in order.

        Args:
            start: joint name → radians; every joint the plan may move.
            goals: waypoints, joint name → radians; a goal may name a subset of the joints
                (the others hold their previous value).
            scene: obstacles, base frame.

        Returns:
            MotionPlan over the joints of ``start`` (in ``start``'s order).

        Raises:
            PlanningError: no acceptable plan; the message says why and where.
        """

    def execute(self, plan: MotionPlan) -> None:
        """Run a plan on the robot.

        Raises:
            NotImplementedError: this backend only plans (send the plan to the controllers or the
                simulator yourself).
        """
        raise NotImplementedError(f"{type(self).__name__} only plans; send the MotionPlan to the "
                                  "arm/hand controllers or to sim_bridge to execute it")

    def close(self) -> None:
        """Release backend resources (default: nothing to release)."""

    def __enter__(self) -> MotionBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resolve_goals(start: JointDict, goals: Sequence[JointDict]) -> tuple[tuple[str, ...], np.ndarray]:
    """Full waypoint table from a start and partial goals.

    Args:
        start: joint name → radians.
        goals: partial waypoints; each may only name joints of ``start``.

    Returns:
        (joint names in ``start`` order, (len(goals) + 1, n) radians: start then each goal with
        unspecified joints held).

    Raises:
        PlanningError: no goals, a goal names a joint missing from ``start``, or a value is not finite.
    """
    names = tuple(start)
    if not names:
        raise PlanningError("start state names no joints")
    if not goals:
        raise PlanningError("no goals given: pass at least one waypoint")
    index = {n: i for i, n in enumerate(names)}
    rows = [np.array([float(start[n]) for n in names])]
    for g, goal in enumerate(goals):
        unknown = [n for n in goal if n not in index]
        if unknown:
            raise PlanningError(f"goal {g} names joints {unknown} that are not in the start state "
                                f"(start has {list(names)})")
        row = rows[-1].copy()
        for n, v in goal.items():
            row[index[n]] = float(v)
        rows.append(row)
    table = np.asarray(rows)
    if not np.all(np.isfinite(table)):
        raise PlanningError("start or goal contains NaN/inf joint values")
    return names, table
