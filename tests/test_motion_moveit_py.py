"""moveit_py adapter: pure translation functions and the backend against a fake moveit_py surface."""
from __future__ import annotations

import sys
import types
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest

from grasp_planner.motion import PlanningError, PlanningScene, make_backend
from grasp_planner.motion.moveit_py_backend import (CollisionObjectSpec, MoveItPyBackend, MoveItPyConfig,
                                                    load_moveit_py_api, moving_groups,
                                                    scene_to_collision_specs, spec_to_collision_object,
                                                    split_goal_by_group, stitch_segments)
from grasp_planner.robots import panda
from grasp_planner.safety import SafetyLimits

ARM = panda.ARM_JOINT_NAMES
HAND = ("rh_FFJ3", "rh_THJ4")
GROUPS = {"panda_arm": ARM, "hand": HAND}


# --------------------------------------------------------------------------- fake moveit_py
class _Msg:
    """Bare message object: attributes are set freely, like rclpy message fields."""


class FakeCollisionObject(_Msg):
    ADD = 0

    def __init__(self):
        self.header = SimpleNamespace(frame_id="")
        self.id, self.primitives, self.primitive_poses, self.meshes, self.mesh_poses = "", [], [], [], []
        self.operation = None


class FakeSolidPrimitive(_Msg):
    BOX = 1

    def __init__(self):
        self.type, self.dimensions = 0, []


class FakeMesh(_Msg):
    def __init__(self):
        self.triangles, self.vertices = [], []


class FakeMeshTriangle(_Msg):
    def __init__(self):
        self.vertex_indices = []


class FakePoint(_Msg):
    def __init__(self):
        self.x = self.y = self.z = 0.0


class FakePose(_Msg):
    def __init__(self):
        self.position = FakePoint()
        self.orientation = SimpleNamespace(x=0.0, y=0.0, z=0.0, w=1.0)


class FakeRobotState:
    def __init__(self, robot_model):
        self.robot_model = robot_model
        self.joint_positions: dict[str, float] = {}
        self.updated = False

    def update(self):
        self.updated = True


class FakeTrajectory:
    """Five evenly timed points from the start to the goal state, for the group's joints."""

    def __init__(self, names, q0, q1):
        self.names, self.q0, self.q1 = names, np.asarray(q0), np.asarray(q1)

    def get_robot_trajectory_msg(self):
        points = []
        for k, s in enumerate(np.linspace(0.0, 1.0, 5)):
            t = 0.25 * k
            stamp = SimpleNamespace(sec=int(t), nanosec=int(round((t % 1) * 1e9)))
            points.append(SimpleNamespace(positions=list(self.q0 + s * (self.q1 - self.q0)),
                                          time_from_start=stamp))
        return SimpleNamespace(joint_trajectory=SimpleNamespace(joint_names=list(self.names), points=points))


class FakePlanningComponent:
    def __init__(self, robot, group):
        self.robot, self.group = robot, group
        self.start = self.goal = None

    def set_start_state(self, robot_state=None):
        self.start = robot_state

    def set_goal_state(self, robot_state=None):
        self.goal = robot_state

    def plan(self):
        self.robot.requests.append((self.group, dict(self.start.joint_positions), dict(self.goal.joint_positions)))
        if self.group in self.robot.fail_groups:
            return None                    # moveit_py: a falsy result when planning fails
        names = GROUPS[self.group]
        return SimpleNamespace(trajectory=FakeTrajectory(
            names, [self.start.joint_positions[n] for n in names], [self.goal.joint_positions[n] for n in names]))


class FakeScene:
    def __init__(self, robot):
        self.robot = robot
        self.current_state = FakeRobotState(None)

    def apply_collision_object(self, co):
        self.robot.scene_objects[co.id] = co


class FakeSceneMonitor:
    def __init__(self, robot):
        self.robot = robot

    @contextmanager
    def read_write(self):
        self.robot.locks += 1
        yield FakeScene(self.robot)


class FakeMoveItPy:
    instances: list = []

    def __init__(self, node_name="moveit_py", config_dict=None):
        self.node_name, self.config_dict = node_name, config_dict
        self.requests, self.scene_objects, self.executed, self.fail_groups = [], {}, [], set()
        self.locks, self.shut_down = 0, False
        self.model = object()
        FakeMoveItPy.instances.append(self)

    def get_robot_model(self):
        return self.model

    def get_planning_component(self, name):
        return FakePlanningComponent(self, name)

    def get_planning_scene_monitor(self):
        return FakeSceneMonitor(self)

    def execute(self, robot_trajectory, blocking=True, controllers=None):
        assert controllers is not None, "moveit_py requires the controllers argument"
        self.executed.append((robot_trajectory, list(controllers)))
        return True

    def shutdown(self):
        self.shut_down = True


def fake_api() -> SimpleNamespace:
    return SimpleNamespace(MoveItPy=FakeMoveItPy, RobotState=FakeRobotState, CollisionObject=FakeCollisionObject,
                           SolidPrimitive=FakeSolidPrimitive, Mesh=FakeMesh, MeshTriangle=FakeMeshTriangle,
                           Pose=FakePose, Point=FakePoint)


@pytest.fixture
def backend() -> MoveItPyBackend:
    cfg = MoveItPyConfig(hand_group="hand", hand_joint_names=HAND, controllers=("panda_arm_controller",))
    return MoveItPyBackend(cfg, api=fake_api())


def _start() -> dict[str, float]:
    return {**dict(zip(ARM, panda.READY_Q.tolist())), "rh_FFJ3": 0.0, "rh_THJ4": 0.2}


# --------------------------------------------------------------------------- pure functions
def test_split_goal_by_group_maps_joints_by_name():
    goal = {"rh_THJ4": 0.5, "panda_joint2": 0.1, "panda_joint1": -0.2}
    out = split_goal_by_group(goal, GROUPS)
    assert list(out) == ["panda_arm", "hand"]
    assert out["panda_arm"] == {"panda_joint2": 0.1, "panda_joint1": -0.2}
    assert out["hand"] == {"rh_THJ4": 0.5}
    assert split_goal_by_group({"panda_joint1": 0.0}, GROUPS) == {"panda_arm": {"panda_joint1": 0.0}}
    with pytest.raises(ValueError, match=r"\['rh_WRJ1'\] belong to no planning group"):
        split_goal_by_group({"rh_WRJ1": 0.0}, GROUPS)


def test_moving_groups_skips_groups_that_do_not_move():
    current = _start()
    goal = {**current, "rh_FFJ3": 1.0}
    assert moving_groups(current, goal, GROUPS) == {"hand": {"rh_FFJ3": 1.0, "rh_THJ4": 0.2}}


def test_scene_becomes_table_box_and_object_hull():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(200, 3)) * 0.03 + [0.5, 0.0, 0.1]
    specs = scene_to_collision_specs(PlanningScene(table_center_m=(0.5, 0, -0.02), table_size_m=(1, 1, 0.04),
                                                   object_points_m=pts))
    table, obj = specs
    assert (table.id, table.kind, table.frame_id) == ("table", "box", "panda_link0")
    np.testing.assert_allclose(table.dimensions_m, (1, 1, 0.04))
    np.testing.assert_allclose(table.pose[:3, 3], (0.5, 0, -0.02))
    assert obj.id == "target_object" and obj.kind == "mesh"
    assert obj.triangles.max() < len(obj.vertices_m)
    # Every hull vertex is one of the object points; the hull bounds all points.
    assert all(np.any(np.all(np.isclose(pts, v), axis=1)) for v in obj.vertices_m)
    np.testing.assert_allclose(obj.vertices_m.min(0), pts.min(0))


def test_flat_object_falls_back_to_a_box_and_no_object_gives_only_the_table():
    flat = np.array([[0.4, 0.0, 0.1], [0.5, 0.0, 0.1], [0.4, 0.1, 0.1], [0.5, 0.1, 0.1]])
    specs = scene_to_collision_specs(PlanningScene(object_points_m=flat))
    assert specs[1].kind == "box"
    np.testing.assert_allclose(specs[1].pose[:3, 3], [0.45, 0.05, 0.1])
    assert len(scene_to_collision_specs(PlanningScene())) == 1


def test_object_mesh_path_is_loaded_with_its_pose(tmp_path):
    pose = np.eye(4)
    pose[:3, 3] = [0.6, 0.1, 0.05]
    loaded = []

    def loader(path):
        loaded.append(path)
        return np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.0]]), np.array([[0, 1, 2]])

    scene = PlanningScene(object_mesh_path=tmp_path / "drill.stl", object_mesh_pose=pose)
    spec = scene_to_collision_specs(scene, mesh_loader=loader)[1]
    assert loaded == [tmp_path / "drill.stl"] and spec.kind == "mesh"
    np.testing.assert_allclose(spec.pose, pose)


def test_spec_to_collision_object_fills_box_and_mesh_messages():
    pose = np.eye(4)
    pose[:3, :3] = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])     # 90 deg about z
    pose[:3, 3] = [0.1, 0.2, 0.3]
    box = spec_to_collision_object(CollisionObjectSpec("table", "panda_link0", "box", pose, (1, 2, 3)), fake_api())
    assert box.header.frame_id == "panda_link0" and box.id == "table" and box.operation == FakeCollisionObject.ADD
    assert box.primitives[0].type == FakeSolidPrimitive.BOX and box.primitives[0].dimensions == [1, 2, 3]
    p = box.primitive_poses[0]
    assert (p.position.x, p.position.y, p.position.z) == (0.1, 0.2, 0.3)
    assert p.orientation.z == pytest.approx(np.sqrt(0.5)) and p.orientation.w == pytest.approx(np.sqrt(0.5))
    mesh_spec = CollisionObjectSpec("obj", "panda_link0", "mesh", np.eye(4),
                                    vertices_m=np.eye(3), triangles=np.array([[0, 1, 2]]))
    mesh = spec_to_collision_object(mesh_spec, fake_api())
    assert mesh.meshes[0].triangles[0].vertex_indices == [0, 1, 2]
    assert [(v.x, v.y, v.z) for v in mesh.meshes[0].vertices] == [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    assert mesh.primitives == []


def test_stitch_segments_holds_other_joints_and_chains_times():
    names = ("a", "b")
    seg1 = (("a",), np.array([[0.0], [0.5], [1.0]]), np.array([0.0, 0.5, 1.0]))
    seg2 = (("b",), np.array([[0.0], [2.0]]), np.array([0.0, 2.0]))
    q, t = stitch_segments(names, np.array([0.0, 0.0]), [seg1, seg2])
    np.testing.assert_allclose(q, [[0, 0], [0.5, 0], [1, 0], [1, 2]])
    np.testing.assert_allclose(t, [0, 0.5, 1.0, 3.0])
    bad = (("b",), np.array([[0.7], [2.0]]), np.array([0.0, 1.0]))
    with pytest.raises(PlanningError, match="did not use the given start state"):
        stitch_segments(names, np.array([0.0, 0.0]), [seg1, bad])


# --------------------------------------------------------------------------- backend with the fake
def test_backend_plans_each_moving_group_and_applies_the_scene(backend):
    start = _start()
    arm_goal = {n: v + 0.1 for n, v in start.items() if n in ARM}
    pts = np.random.default_rng(1).normal(size=(50, 3)) * 0.02 + [0.5, 0, 0.1]
    plan = backend.plan(start, [arm_goal, {"rh_FFJ3": 1.2}], PlanningScene(object_points_m=pts))
    robot = backend.robot
    assert robot.node_name == "functional_grasp_moveit_py"
    assert set(robot.scene_objects) == {"table", "target_object"} and robot.locks == 1
    assert [r[0] for r in robot.requests] == ["panda_arm", "hand"]
    # The hand request starts where the arm request ended (states passed by name).
    _, hand_start, hand_goal = robot.requests[1]
    assert hand_start["panda_joint1"] == pytest.approx(arm_goal["panda_joint1"])
    assert hand_goal["rh_FFJ3"] == 1.2 and hand_goal["rh_THJ4"] == 0.2
    assert plan.joint_names == tuple(start)
    assert plan.waypoint(len(plan.times_s) - 1) == pytest.approx({**start, **arm_goal, "rh_FFJ3": 1.2})
    assert np.all(np.diff(plan.times_s) > 0) and plan.duration_s == pytest.approx(2.0)
    assert len(plan.native) == 2


def test_backend_execute_sends_each_trajectory_to_moveit(backend):
    plan = backend.plan(_start(), [{"panda_joint1": 0.3}], PlanningScene())
    backend.execute(plan)
    assert backend.robot.executed == [(plan.native[0], ["panda_arm_controller"])]
    robot = backend.robot
    backend.close()
    assert robot.shut_down


def test_backend_reports_planning_failure_and_unmapped_joints(backend):
    backend.robot.fail_groups.add("hand")
    with pytest.raises(PlanningError, match="no plan for group 'hand'"):
        backend.plan(_start(), [{"rh_FFJ3": 1.0}], PlanningScene())
    with pytest.raises(PlanningError, match="belong to no planning group"):
        backend.plan({**_start(), "rh_WRJ1": 0.0}, [{"rh_FFJ3": 1.0}], PlanningScene())


def test_backend_applies_safety_limits_to_moveit_plans():
    limits = SafetyLimits.for_panda(HAND, np.array([[-0.26, 1.57], [0.0, 1.22]]), velocity_scale=0.1)
    backend = MoveItPyBackend(MoveItPyConfig(hand_joint_names=HAND), api=fake_api(), limits=limits)
    with pytest.raises(PlanningError, match="velocity"):
        backend.plan(_start(), [{"panda_joint1": 1.0}], PlanningScene())   # 1 rad in 1 s > 0.2175 rad/s


def test_plans_from_other_backends_cannot_be_executed(backend):
    from grasp_planner.motion import MotionPlan

    with pytest.raises(ValueError, match="no MoveIt trajectories"):
        backend.execute(MotionPlan(("panda_joint1",), np.zeros((1, 1)), np.zeros(1)))


def test_real_import_path_uses_moveit_modules_from_sys_modules(monkeypatch):
    api = fake_api()
    modules = {
        "moveit": types.ModuleType("moveit"), "moveit.planning": types.ModuleType("moveit.planning"),
        "moveit.core": types.ModuleType("moveit.core"),
        "moveit.core.robot_state": types.ModuleType("moveit.core.robot_state"),
        "moveit_msgs": types.ModuleType("moveit_msgs"), "moveit_msgs.msg": types.ModuleType("moveit_msgs.msg"),
        "shape_msgs": types.ModuleType("shape_msgs"), "shape_msgs.msg": types.ModuleType("shape_msgs.msg"),
        "geometry_msgs": types.ModuleType("geometry_msgs"),
        "geometry_msgs.msg": types.ModuleType("geometry_msgs.msg"),
    }
    modules["moveit.planning"].MoveItPy = api.MoveItPy
    modules["moveit.core.robot_state"].RobotState = api.RobotState
    modules["moveit_msgs.msg"].CollisionObject = api.CollisionObject
    for name in ("SolidPrimitive", "Mesh", "MeshTriangle"):
        setattr(modules["shape_msgs.msg"], name, getattr(api, name))
    modules["geometry_msgs.msg"].Pose, modules["geometry_msgs.msg"].Point = api.Pose, api.Point
    for name, mod in modules.items():
        monkeypatch.setitem(sys.modules, name, mod)
    loaded = load_moveit_py_api()
    assert loaded.MoveItPy is FakeMoveItPy and loaded.RobotState is FakeRobotState
    backend = make_backend("moveit_py")             # no import until first use
    plan = backend.plan(dict(zip(ARM, panda.READY_Q.tolist())), [{"panda_joint7": 1.0}], PlanningScene())
    assert plan.positions[-1, -1] == pytest.approx(1.0)


def test_missing_moveit_gives_an_actionable_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "moveit", None)
    monkeypatch.setitem(sys.modules, "moveit.planning", None)
    backend = make_backend("moveit_py")
    with pytest.raises(ImportError, match="builtin"):
        backend.plan(dict(zip(ARM, panda.READY_Q.tolist())), [{"panda_joint1": 0.1}], PlanningScene())
