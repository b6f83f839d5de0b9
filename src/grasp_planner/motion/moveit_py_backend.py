"""MoveIt 2 backend through moveit_py (imported lazily: it exists only on a full ROS 2 + MoveIt install).

The translation logic is pure and tested here without MoveIt:

* :func:`split_goal_by_group` — a joint waypoint → per-planning-group joint dicts;
* :func:`scene_to_collision_specs` — :class:`PlanningScene` → :class:`CollisionObjectSpec` list;
* :func:`spec_to_collision_object` — a spec → ``moveit_msgs/CollisionObject`` (message classes
  passed in);
* :func:`trajectory_msg_to_arrays` / :func:`stitch_segments` — planned trajectories → one
  :class:`MotionPlan` over the start-state joints.

moveit_py surface used (MoveIt 2 Humble/Jazzy Python bindings): ``moveit.planning.MoveItPy``
(``node_name``, ``config_dict``, ``get_robot_model``, ``get_planning_component``,
``get_planning_scene_monitor``, ``execute(trajectory, controllers=[...])``, ``shutdown``),
``PlanningSceneMonitor.read_write()`` context manager yielding a scene with
``apply_collision_object`` and ``current_state.update()``, ``moveit.core.robot_state.RobotState``
(``joint_positions`` dict property, ``update``), ``PlanningComponent.set_start_state(robot_state=)``,
``set_goal_state(robot_state=)``, ``plan()`` → result with ``trajectory`` (falsy on failure),
``RobotTrajectory.get_robot_trajectory_msg()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from grasp_planner.motion.base import (BASE_FRAME, JointDict, MotionBackend, MotionPlan, PlanningError,
                                       PlanningScene, resolve_goals)
from grasp_planner.robots import panda
from grasp_planner.safety import SafetyLimits, check_trajectory

#: Joint change below which a group is considered not to move in a waypoint, radians.
GROUP_MOVE_TOLERANCE_RAD = 1e-6
#: Largest start mismatch between consecutive planned segments, radians.
STITCH_TOLERANCE_RAD = 1e-4
#: Default id of the table collision object.
TABLE_ID = "table"

_INSTALL_HINT = ("moveit_py is not installed here: on a ROS 2 Jazzy machine install MoveIt 2 "
                 "(`apt install ros-jazzy-moveit-py`) and source /opt/ros/jazzy/setup.bash, or use "
                 "the 'builtin' motion backend")


# --------------------------------------------------------------------------- pure translation
@dataclass(frozen=True)
class CollisionObjectSpec:
    """A collision object, independent of message types.

    Attributes:
        id: object name in the planning scene.
        frame_id: frame the pose is expressed in.
        kind: ``"box"`` (``dimensions_m`` used) or ``"mesh"`` (``vertices_m``/``triangles`` used).
        pose: (4, 4) pose of the shape in ``frame_id``, metres.
        dimensions_m: (3,) box extents x, y, z, metres.
        vertices_m: (V, 3) mesh vertices in the shape frame, metres.
        triangles: (F, 3) int vertex indices.
    """

    id: str
    frame_id: str
    kind: str
    pose: np.ndarray
    dimensions_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    vertices_m: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    triangles: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=int))

    def __post_init__(self) -> None:
        if self.kind not in ("box", "mesh"):
            raise ValueError(f"collision object '{self.id}': kind must be 'box' or 'mesh', got '{self.kind}'")
        if self.kind == "mesh" and (len(self.vertices_m) < 3 or len(self.triangles) < 1):
            raise ValueError(f"collision object '{self.id}': a mesh needs >= 3 vertices and >= 1 triangle")


def split_goal_by_group(goal: JointDict, groups: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """Split a waypoint into one joint dict per planning group.

    Args:
        goal: joint name → radians.
        groups: planning group name → its joint names (e.g. ``{"panda_arm": ARM_JOINT_NAMES,
            "hand": hand joints}``).

    Returns:
        group → {joint: radians} for every group that ``goal`` names at least one joint of
        (groups keep their order in ``groups``).

    Raises:
        ValueError: ``goal`` names a joint that belongs to no group (the message lists the groups).
    """
    owner: dict[str, str] = {}
    for g, names in groups.items():
        for n in names:
            owner.setdefault(n, g)
    orphans = [n for n in goal if n not in owner]
    if orphans:
        raise ValueError(f"joints {orphans} belong to no planning group "
                         f"({', '.join(f'{g}: {len(j)} joints' for g, j in groups.items())})")
    out: dict[str, dict[str, float]] = {}
    for g in groups:
        part = {n: float(v) for n, v in goal.items() if owner[n] == g}
        if part:
            out[g] = part
    return out


def moving_groups(current: JointDict, goal: JointDict, groups: Mapping[str, Sequence[str]],
                  tol_rad: float = GROUP_MOVE_TOLERANCE_RAD) -> dict[str, dict[str, float]]:
    """Like :func:`split_goal_by_group`, keeping only groups whose joints change from ``current``."""
    return {g: part for g, part in split_goal_by_group(goal, groups).items()
            if any(abs(v - float(current[n])) > tol_rad for n, v in part.items())}


def _load_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    mesh = trimesh.load(str(path), force="mesh")
    return np.asarray(mesh.vertices, dtype=float), np.asarray(mesh.faces, dtype=int)


def scene_to_collision_specs(scene: PlanningScene, frame_id: str = BASE_FRAME, table_id: str = TABLE_ID,
                             mesh_loader: Callable[[Path], tuple[np.ndarray, np.ndarray]] | None = None
                             ) -> list[CollisionObjectSpec]:
    """Collision objects for a planning scene: the table box, then the object.

    The object is its mesh file (posed by ``scene.object_mesh_pose``) when given, else the convex
    hull of its points, else (degenerate points) their bounding box; no object when there are
    no points and no mesh.

    Args:
        scene: the scene, base frame.
        frame_id: frame of the poses (the scene's base frame).
        table_id: id of the table object.
        mesh_loader: path → (vertices (V, 3) m, faces (F, 3)); default trimesh.

    Returns:
        Specs in the order table, object.
    """
    table_pose = np.eye(4)
    table_pose[:3, 3] = scene.table_center_m
    specs = [CollisionObjectSpec(table_id, frame_id, "box", table_pose, dimensions_m=scene.table_size_m)]
    if scene.object_mesh_path is not None:
        vertices, faces = (mesh_loader or _load_mesh)(scene.object_mesh_path)
        specs.append(CollisionObjectSpec(scene.object_id, frame_id, "mesh", scene.object_mesh_pose.copy(),
                                         vertices_m=vertices, triangles=faces))
        return specs
    pts = scene.object_points_m
    if len(pts) == 0:
        return specs
    try:
        from scipy.spatial import ConvexHull

        hull = ConvexHull(pts)
        used = np.unique(hull.simplices)
        remap = -np.ones(len(pts), dtype=int)
        remap[used] = np.arange(len(used))
        specs.append(CollisionObjectSpec(scene.object_id, frame_id, "mesh", np.eye(4),
                                         vertices_m=pts[used].copy(), triangles=remap[hull.simplices]))
    except Exception:  # noqa: BLE001 - qhull raises for flat/colinear clouds: fall back to a box
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        pose = np.eye(4)
        pose[:3, 3] = (lo + hi) / 2.0
        dims = np.maximum(hi - lo, 1e-3)
        specs.append(CollisionObjectSpec(scene.object_id, frame_id, "box", pose,
                                         dimensions_m=tuple(dims.tolist())))
    return specs


def _pose_msg(T: np.ndarray, msgs: Any) -> Any:
    pose = msgs.Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in T[:3, 3])
    x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (
        float(x), float(y), float(z), float(w))
    return pose


def spec_to_collision_object(spec: CollisionObjectSpec, msgs: Any) -> Any:
    """A ``moveit_msgs/CollisionObject`` (operation ADD) for a spec.

    Args:
        spec: the object.
        msgs: namespace with the message classes ``CollisionObject``, ``SolidPrimitive``, ``Mesh``,
            ``MeshTriangle``, ``Pose``, ``Point`` (see :func:`load_moveit_py_api`).

    Returns:
        The message; the shape pose goes into ``primitive_poses``/``mesh_poses`` (object ``pose``
        left at identity).
    """
    co = msgs.CollisionObject()
    co.header.frame_id = spec.frame_id
    co.id = spec.id
    if spec.kind == "box":
        prim = msgs.SolidPrimitive()
        prim.type = msgs.SolidPrimitive.BOX
        prim.dimensions = [float(d) for d in spec.dimensions_m]
        co.primitives = [prim]
        co.primitive_poses = [_pose_msg(spec.pose, msgs)]
    else:
        mesh = msgs.Mesh()
        triangles = []
        for f in spec.triangles:
            tri = msgs.MeshTriangle()
            tri.vertex_indices = [int(i) for i in f]
            triangles.append(tri)
        vertices = []
        for v in spec.vertices_m:
            p = msgs.Point()
            p.x, p.y, p.z = (float(c) for c in v)
            vertices.append(p)
        mesh.triangles = triangles
        mesh.vertices = vertices
        co.meshes = [mesh]
        co.mesh_poses = [_pose_msg(spec.pose, msgs)]
    co.operation = msgs.CollisionObject.ADD
    return co


def trajectory_msg_to_arrays(msg: Any) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """(joint names, (T, n) radians, (T,) seconds) of a ``moveit_msgs/RobotTrajectory``."""
    jt = msg.joint_trajectory
    names = tuple(jt.joint_names)
    if not jt.points:
        return names, np.zeros((0, len(names))), np.zeros(0)
    q = np.array([list(p.positions) for p in jt.points], dtype=float)
    t = np.array([p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in jt.points])
    return names, q, t


def stitch_segments(names: Sequence[str], start: np.ndarray,
                    segments: Sequence[tuple[Sequence[str], np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-group segments into one timed trajectory over ``names``.

    Joints a segment does not name hold their latest value; each segment's first point (its start
    state, which must equal the previous end) is dropped, and times are offset to follow on.

    Args:
        names: n joint names of the combined plan.
        start: (n,) radians, the start state.
        segments: [(segment joint names, (T_k, m) radians, (T_k,) seconds from segment start)].

    Returns:
        ((T, n) radians, (T,) seconds), starting with ``start`` at t = 0.

    Raises:
        PlanningError: a segment names a joint outside ``names`` or does not start where the
            previous one ended.
    """
    index = {n: i for i, n in enumerate(names)}
    rows = [np.asarray(start, dtype=float).copy()]
    times = [0.0]
    for seg_names, q, t in segments:
        unknown = [n for n in seg_names if n not in index]
        if unknown:
            raise PlanningError(f"MoveIt returned joints {unknown} that are not in the start state")
        cols = [index[n] for n in seg_names]
        t0 = times[-1]
        for k in range(len(t)):
            if k == 0:
                if not np.allclose(q[0], rows[-1][cols], atol=STITCH_TOLERANCE_RAD):
                    raise PlanningError(
                        f"segment {len(times)} starts {float(np.max(np.abs(q[0] - rows[-1][cols]))):.4f} rad "
                        "away from where the previous one ended; MoveIt did not use the given start state")
                continue
            row = rows[-1].copy()
            row[cols] = q[k]
            rows.append(row)
            times.append(t0 + float(t[k]))
    return np.asarray(rows), np.asarray(times)


# --------------------------------------------------------------------------- backend
def load_moveit_py_api() -> SimpleNamespace:
    """Import moveit_py and the message classes it needs.

    Returns:
        Namespace with ``MoveItPy``, ``RobotState``, ``CollisionObject``, ``SolidPrimitive``,
        ``Mesh``, ``MeshTriangle``, ``Pose``, ``Point``.

    Raises:
        ImportError: moveit_py or a message package is missing (the message says how to get it).
    """
    try:
        from geometry_msgs.msg import Point, Pose
        from moveit.core.robot_state import RobotState
        from moveit.planning import MoveItPy
        from moveit_msgs.msg import CollisionObject
        from shape_msgs.msg import Mesh, MeshTriangle, SolidPrimitive
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    return SimpleNamespace(MoveItPy=MoveItPy, RobotState=RobotState, CollisionObject=CollisionObject,
                           SolidPrimitive=SolidPrimitive, Mesh=Mesh, MeshTriangle=MeshTriangle,
                           Pose=Pose, Point=Point)


@dataclass(frozen=True)
class MoveItPyConfig:
    """Parameters of :class:`MoveItPyBackend`.

    Attributes:
        node_name: name of the node MoveItPy creates.
        arm_group: SRDF planning group of the arm.
        arm_joint_names: joints of ``arm_group``.
        hand_group: SRDF planning group of the hand ("" when the hand is not planned by MoveIt).
        hand_joint_names: joints of ``hand_group``.
        controllers: controller names passed to ``MoveItPy.execute`` (empty: MoveIt chooses).
        config_dict: MoveItPy parameters (None: taken from the launch parameters file).
        table_id: collision object id of the table.
    """

    node_name: str = "functional_grasp_moveit_py"
    arm_group: str = "panda_arm"
    arm_joint_names: tuple[str, ...] = panda.ARM_JOINT_NAMES
    hand_group: str = "hand"
    hand_joint_names: tuple[str, ...] = ()
    controllers: tuple[str, ...] = ()
    config_dict: Mapping[str, Any] | None = None
    table_id: str = TABLE_ID

    @property
    def groups(self) -> dict[str, tuple[str, ...]]:
        """Planning group → joint names (the hand group only when it has joints)."""
        out = {self.arm_group: tuple(self.arm_joint_names)}
        if self.hand_group and self.hand_joint_names:
            out[self.hand_group] = tuple(self.hand_joint_names)
        return out


class MoveItPyBackend(MotionBackend):
    """Plans each waypoint with MoveIt (one planning group at a time) and executes via MoveItPy."""

    def __init__(self, config: MoveItPyConfig | None = None, *, api: SimpleNamespace | None = None,
                 limits: SafetyLimits | None = None) -> None:
        """Create the backend; MoveItPy itself starts on the first ``plan``.

        Args:
            config: groups, joints, node name, controllers.
            api: moveit_py classes (tests pass a fake); default :func:`load_moveit_py_api`.
            limits: when given, every plan must also pass ``check_trajectory`` (no FK check).
        """
        self.config = config or MoveItPyConfig()
        self._api = api
        self.limits = limits
        self._robot: Any = None

    @property
    def api(self) -> SimpleNamespace:
        if self._api is None:
            self._api = load_moveit_py_api()
        return self._api

    @property
    def robot(self) -> Any:
        """The MoveItPy instance (started on first use)."""
        if self._robot is None:
            kwargs: dict[str, Any] = {"node_name": self.config.node_name}
            if self.config.config_dict is not None:
                kwargs["config_dict"] = dict(self.config.config_dict)
            self._robot = self.api.MoveItPy(**kwargs)
        return self._robot

    def apply_scene(self, scene: PlanningScene) -> list[str]:
        """Add/replace the table and object in MoveIt's planning scene; returns the object ids."""
        specs = scene_to_collision_specs(scene, table_id=self.config.table_id)
        objects = [spec_to_collision_object(s, self.api) for s in specs]
        monitor = self.robot.get_planning_scene_monitor()
        with monitor.read_write() as ps:
            for co in objects:
                ps.apply_collision_object(co)
            ps.current_state.update()
        return [s.id for s in specs]

    def _state(self, robot_model: Any, positions: Mapping[str, float]) -> Any:
        state = self.api.RobotState(robot_model)
        # moveit_py RobotState.joint_positions is a dict property (name → value); joints not named
        # keep the model defaults. (Humble code often uses set_joint_group_positions instead.)
        state.joint_positions = {n: float(v) for n, v in positions.items()}
        state.update()
        return state

    def plan(self, start: JointDict, goals: Sequence[JointDict], scene: PlanningScene) -> MotionPlan:
        """Plan every goal in order, one MoveIt request per moving group; see :meth:`MotionBackend.plan`."""
        names, waypoints = resolve_goals(start, goals)
        groups = self.config.groups
        try:
            split_goal_by_group(dict(start), groups)
        except ValueError as exc:
            raise PlanningError(f"cannot plan with MoveIt: {exc}") from exc
        self.apply_scene(scene)
        robot = self.robot
        robot_model = robot.get_robot_model()
        current = dict(zip(names, waypoints[0].tolist()))
        segments, native = [], []
        for g in range(1, len(waypoints)):
            goal = dict(zip(names, waypoints[g].tolist()))
            for group, part in moving_groups(current, goal, groups).items():
                component = robot.get_planning_component(group)
                component.set_start_state(robot_state=self._state(robot_model, current))
                component.set_goal_state(robot_state=self._state(robot_model, {**current, **part}))
                result = component.plan()
                if not result:
                    raise PlanningError(f"MoveIt found no plan for group '{group}' to goal {g - 1} "
                                        f"({ {k: round(v, 3) for k, v in part.items()} })")
                segments.append(trajectory_msg_to_arrays(result.trajectory.get_robot_trajectory_msg()))
                native.append(result.trajectory)
                current.update(part)
        positions, times = stitch_segments(names, waypoints[0], segments)
        if self.limits is not None:
            violations = check_trajectory(names, positions, times, self.limits)
            if violations:
                raise PlanningError("MoveIt plan violates the safety limits: " + "; ".join(violations))
        return MotionPlan(joint_names=names, positions=positions, times_s=times, native=tuple(native))

    def execute(self, plan: MotionPlan) -> None:
        """Execute the MoveIt trajectories of a plan made by this backend, in order.

        Raises:
            ValueError: the plan was not made by a MoveItPyBackend.
            RuntimeError: MoveIt reports a failed execution.
        """
        if not plan.native:
            raise ValueError("this plan carries no MoveIt trajectories; plan it with MoveItPyBackend")
        for i, trajectory in enumerate(plan.native):
            status = self.robot.execute(trajectory, controllers=list(self.config.controllers))
            # Jazzy returns an ExecutionStatus (truthy on success, `.status` string); older code a bool.
            if status is not None and not bool(status):
                raise RuntimeError(f"MoveIt execution of segment {i} failed: "
                                   f"{getattr(status, 'status', status)}")

    def close(self) -> None:
        """Shut MoveItPy down if it was started."""
        if self._robot is not None:
            self._robot.shutdown()
            self._robot = None
