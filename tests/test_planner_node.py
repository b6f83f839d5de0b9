"""PlannerNode over real rclpy on an isolated domain: a seen cylinder gives a goal, bad input never does."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")
from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import JointState, PointCloud2  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from grasp_common import qos, topics  # noqa: E402
from grasp_common.rosenv import child_env, config_dir  # noqa: E402
from grasp_perception.conversions import numpy_to_cloud  # noqa: E402
from grasp_planner.hands import load_hand  # noqa: E402
from grasp_planner.node import PlannerNode  # noqa: E402
from grasp_planner.robots import panda  # noqa: E402

BASE = "panda_link0"
_SHARED = yaml.safe_load((config_dir() / "functional_grasp.yaml").read_text())["/**"]["ros__parameters"]
CAMERA_XYZ = np.array(_SHARED["camera_xyz"], dtype=float)
HAND = load_hand("shadow")
START = {**dict(zip(panda.ARM_JOINT_NAMES, panda.OBSERVE_Q.tolist())), **{n: 0.0 for n in HAND.joint_names}}
CYLINDER_XY, CYLINDER_R_M, CYLINDER_H_M = (0.5, 0.0), 0.04, 0.10

RESULTS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
DISCOVERY_TIMEOUT_S = 5.0
PLAN_TIMEOUT_S = 60.0        # planning takes 1-5 s alone, much longer on a loaded 2-core machine
FAST_FAILURE_TIMEOUT_S = 3.0
NO_OUTPUT_GRACE_S = 0.5
JOINT_STATE_PERIOD_S = 0.05


def cylinder_cloud(spacing_m: float = 0.005) -> np.ndarray:
    """(N, 3) points of an upright cylinder on the table (z = 0) visible from CAMERA_XYZ: front side + top."""
    cx, cy = CYLINDER_XY
    ang = np.linspace(0, 2 * np.pi, int(2 * np.pi * CYLINDER_R_M / spacing_m), endpoint=False)
    a, z = (g.ravel() for g in np.meshgrid(ang, np.linspace(0.0, CYLINDER_H_M, int(CYLINDER_H_M / spacing_m) + 1)))
    side = np.column_stack([cx + CYLINDER_R_M * np.cos(a), cy + CYLINDER_R_M * np.sin(a), z])
    normals = np.column_stack([np.cos(a), np.sin(a), np.zeros_like(a)])
    side = side[np.einsum("ij,ij->i", normals, CAMERA_XYZ - side) > 0]   # faces the camera
    g = np.arange(-CYLINDER_R_M, CYLINDER_R_M + 1e-9, spacing_m)
    gx, gy = (v.ravel() for v in np.meshgrid(g, g))
    inside = gx ** 2 + gy ** 2 <= CYLINDER_R_M ** 2
    top = np.column_stack([cx + gx[inside], cy + gy[inside], np.full(inside.sum(), CYLINDER_H_M)])
    return np.concatenate([side, top])


def cloud_msg(xyz: np.ndarray, stamp_s: int, frame_id: str = BASE) -> PointCloud2:
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    if np.all(np.isfinite(xyz)):
        return numpy_to_cloud(xyz, np.full((len(xyz), 3), 200, np.uint8), frame_id, Time(sec=stamp_s))
    msg = numpy_to_cloud(np.zeros_like(xyz), np.zeros((len(xyz), 3), np.uint8), frame_id, Time(sec=stamp_s))
    data = np.frombuffer(msg.data, np.uint8).copy().view(np.float32).reshape(-1, 4)
    data[:, :3] = xyz
    msg.data, msg.is_dense = data.view(np.uint8).tobytes(), False
    return msg


class Harness:
    """The node under test plus a driver node: publishes joint states and clouds, records every output."""

    def __init__(self, context, publish_joints: bool = True, **params):
        overrides = {"camera_xyz": CAMERA_XYZ.tolist(), **params}
        self.node = PlannerNode(context=context, parameter_overrides=[
            Parameter(k, value=v) for k, v in overrides.items()])
        self.driver = rclpy.create_node("planner_test_driver", context=context)
        self.cloud_pub = self.driver.create_publisher(PointCloud2, topics.OBJECT_CLOUD, qos.LATCHED)
        self.joint_pub = self.driver.create_publisher(JointState, topics.JOINT_STATES, qos.STATE)
        self.publish_joints = publish_joints
        self.driver.create_timer(JOINT_STATE_PERIOD_S, self._send_joints)
        self.goals: list[JointState] = []
        self.trajectories: list[JointTrajectory] = []
        self.markers: list[MarkerArray] = []
        self.statuses: list[dict] = []
        self.driver.create_subscription(JointState, topics.JOINT_GOAL, self.goals.append, RESULTS_QOS)
        self.driver.create_subscription(JointTrajectory, topics.GRASP_TRAJECTORY, self.trajectories.append,
                                        qos.COMMAND)
        self.driver.create_subscription(MarkerArray, topics.GRASP_MARKERS, self.markers.append, RESULTS_QOS)
        self.driver.create_subscription(String, topics.PLANNER_STATUS,
                                        lambda m: self.statuses.append(json.loads(m.data)), RESULTS_QOS)
        self.replan_client = self.driver.create_client(Trigger, "/grasp_planner/replan")
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.driver)
        assert self.spin_until(lambda: self.cloud_pub.get_subscription_count() > 0
                               and self.joint_pub.get_subscription_count() > 0
                               and self.node.count_subscribers(topics.GRASP_TRAJECTORY) > 0
                               and self.node.count_subscribers(topics.PLANNER_STATUS) > 0
                               and self.replan_client.service_is_ready(),
                               DISCOVERY_TIMEOUT_S), "planner node and driver did not discover each other"

    def _send_joints(self) -> None:
        if self.publish_joints:
            self.joint_pub.publish(JointState(name=list(START), position=list(START.values())))

    def spin_until(self, condition, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not condition() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
        return condition()

    def spin_for(self, duration_s: float) -> None:
        self.spin_until(lambda: False, duration_s)

    def status_for(self, stamp_s: int, timeout_s: float = PLAN_TIMEOUT_S) -> dict:
        """The status of the plan of the cloud stamped ``stamp_s`` (waits for it, bounded)."""
        def found():
            return next((s for s in self.statuses if s["stamp"] == {"sec": stamp_s, "nanosec": 0}), None)
        assert self.spin_until(lambda: found() is not None, timeout_s), \
            f"no planner status for the cloud stamped {stamp_s} s; got {self.statuses}"
        return found()

    def replan(self) -> Trigger.Response:
        future = self.replan_client.call_async(Trigger.Request())
        assert self.spin_until(future.done, 2.0), "~/replan did not answer"
        return future.result()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.driver.destroy_node()


@pytest.fixture
def make_harness(ros_context):
    made = []

    def make(**kwargs):
        made.append(Harness(ros_context, **kwargs))
        return made[-1]

    yield make
    for h in made:
        h.close()


def assert_goal_within_limits(goal: JointState) -> dict:
    q = dict(zip(goal.name, goal.position))
    assert list(goal.name) == list(panda.ARM_JOINT_NAMES) + list(HAND.joint_names)
    assert len(goal.name) == 7 + 24 and goal.header.frame_id == BASE
    for name, (lo, hi) in zip(panda.ARM_JOINT_NAMES, panda.JOINT_LIMITS_RAD):
        assert lo <= q[name] <= hi, name
    for name, (lo, hi) in zip(HAND.joint_names, HAND.joint_limits):
        assert lo - 1e-9 <= q[name] <= hi + 1e-9, name
    return q


def assert_grasp_markers(array: MarkerArray, stamp_s: int, chosen_contacts: dict) -> None:
    first, rest = array.markers[0], array.markers[1:]
    assert first.action == Marker.DELETEALL
    namespaces = [m.ns for m in rest]
    assert namespaces[:2] == ["grasp_0", "grasp_1"] and {"pregrasp", "contacts", "approach"} <= set(namespaces)
    assert all(m.id == 0 and m.header.frame_id == BASE and m.header.stamp.sec == stamp_s for m in rest)
    by_ns = {m.ns: m for m in rest}
    best = np.array([[p.x, p.y, p.z] for p in by_ns["grasp_0"].points])
    assert by_ns["grasp_0"].type == Marker.SPHERE_LIST and len(best) > 100
    assert by_ns["grasp_0"].color.g > by_ns["grasp_1"].color.g       # best is greener
    # The predicted hand wraps the cylinder: its points come within 2 cm of the cylinder surface.
    radial = np.hypot(best[:, 0] - CYLINDER_XY[0], best[:, 1] - CYLINDER_XY[1])
    assert np.min(np.abs(radial - CYLINDER_R_M)[best[:, 2] < CYLINDER_H_M]) < 0.02
    # The contact marker shows the chosen grasp's fingertip contacts (the status lists them), on the cylinder.
    contacts = np.array([[p.x, p.y, p.z] for p in by_ns["contacts"].points]).reshape(-1, 3)
    expected = np.array([p for p in chosen_contacts.values() if p is not None]).reshape(-1, 3)
    np.testing.assert_allclose(contacts, expected, atol=1e-9)
    assert np.all(np.abs(np.hypot(contacts[:, 0] - 0.5, contacts[:, 1]) - CYLINDER_R_M) < 0.02)
    assert by_ns["approach"].type == Marker.ARROW and len(by_ns["approach"].points) == 2


def test_seen_cylinder_gives_goal_trajectory_markers_and_status(make_harness):
    h = make_harness(execute=True)
    h.cloud_pub.publish(cloud_msg(cylinder_cloud(), stamp_s=1))
    status = h.status_for(1)
    assert status["success"] is True, status["reason"]
    assert status["execute"] is True and status["trajectory_sent"] is True
    assert all(isinstance(status["timings_s"][k], float) and status["timings_s"][k] > 0
               for k in ("grasp_synthesis", "ik", "motion_plan", "total"))
    assert status["n_candidates"] >= 1 and isinstance(status["chosen"]["score"], float)
    assert len(status["chosen"]["approach"]) == 3

    assert h.spin_until(lambda: h.goals and h.trajectories and h.markers, 2.0)
    goal = assert_goal_within_limits(h.goals[-1])
    assert status["joint_goal"] == pytest.approx(goal)

    traj = h.trajectories[-1]
    names = list(traj.joint_names)
    assert set(names) == set(START)
    q = np.array([list(p.positions) for p in traj.points])
    t = np.array([p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in traj.points])
    assert t[0] == 0.0 and np.all(np.diff(t) > 0)
    np.testing.assert_allclose(q[0], [START[n] for n in names], atol=1e-6)    # starts at the robot
    arm = [names.index(n) for n in panda.ARM_JOINT_NAMES]
    goal_arm = np.array([goal[n] for n in panda.ARM_JOINT_NAMES])
    assert np.min(np.abs(q[:, arm] - goal_arm).max(axis=1)) < 1e-6          # passes through the grasp

    assert status["grasp_backend"]["backend"] == "network"                # the default predictor
    assert_grasp_markers(h.markers[-1], stamp_s=1, chosen_contacts=status["chosen"]["contacts"])

    h.cloud_pub.publish(cloud_msg(cylinder_cloud(), stamp_s=2))  # a later cloud is only stored
    h.spin_for(NO_OUTPUT_GRACE_S)
    assert all(s["stamp"]["sec"] == 1 for s in h.statuses) and len(h.goals) == 1


BAD_CLOUDS = {  # name -> (cloud message, words the reason must contain)
    "empty": (lambda s: cloud_msg(np.zeros((0, 3)), s), ["empty", "0 points"]),
    "wrong_frame": (lambda s: cloud_msg(cylinder_cloud(), s, frame_id="camera_color_optical_frame"),
                    ["camera_color_optical_frame", "base_frame", BASE]),
    "nan_only": (lambda s: cloud_msg(np.full((500, 3), np.nan), s), ["none is finite", "NaN"]),
    "too_few": (lambda s: cloud_msg(cylinder_cloud()[:10], s), ["10 finite points", "at least"]),
}


def test_bad_clouds_report_why_publish_nothing_then_replan_plans_without_executing(make_harness):
    # execute=false: the good cloud at the end must give a goal and markers but no trajectory.
    # plan_on_cloud=false: nothing is planned until ~/replan, which (with no cloud yet) arms the next one.
    h = make_harness(execute=False, plan_on_cloud=False)
    answer = h.replan()
    assert answer.success and "no object cloud received yet" in answer.message
    for stamp_s, (name, (make, words)) in enumerate(BAD_CLOUDS.items(), start=1):
        h.cloud_pub.publish(make(stamp_s))
        if stamp_s > 1:  # the armed first cloud is planned on arrival, later ones on ~/replan
            assert h.spin_until(lambda: h.node._latest_cloud is not None
                                and h.node._latest_cloud.header.stamp.sec == stamp_s, 2.0)
            assert h.replan().success
        status = h.status_for(stamp_s, FAST_FAILURE_TIMEOUT_S)
        assert status["success"] is False, name
        assert all(w in status["reason"] for w in words), (name, status["reason"])
        assert status["joint_goal"] is None and status["trajectory_sent"] is False
    assert h.markers and all(m.markers[0].action == Marker.DELETEALL and len(m.markers) == 1 for m in h.markers)
    h.spin_for(NO_OUTPUT_GRACE_S)
    assert h.goals == [] and h.trajectories == []

    h.cloud_pub.publish(cloud_msg(cylinder_cloud(), stamp_s=10))
    assert h.spin_until(lambda: h.node._latest_cloud.header.stamp.sec == 10, 2.0)
    answer = h.replan()
    assert answer.success and "planning the latest object cloud" in answer.message
    status = h.status_for(10)
    assert status["success"] is True, status["reason"]
    assert status["execute"] is False and status["trajectory_sent"] is False
    assert h.spin_until(lambda: h.goals and len(h.markers) > len(BAD_CLOUDS), 2.0)
    assert_goal_within_limits(h.goals[-1])
    assert_grasp_markers(h.markers[-1], stamp_s=10, chosen_contacts=status["chosen"]["contacts"])
    h.spin_for(NO_OUTPUT_GRACE_S)
    assert h.trajectories == []


def test_missing_joint_states_fail_after_the_bounded_wait(make_harness):
    h = make_harness(publish_joints=False, joint_state_timeout_s=0.3)
    started = time.monotonic()
    h.cloud_pub.publish(cloud_msg(cylinder_cloud(), stamp_s=3))
    status = h.status_for(3, FAST_FAILURE_TIMEOUT_S)
    assert time.monotonic() - started < FAST_FAILURE_TIMEOUT_S
    assert status["success"] is False
    assert topics.JOINT_STATES in status["reason"] and "panda_joint1" in status["reason"]
    h.spin_for(NO_OUTPUT_GRACE_S)
    assert h.goals == [] and h.trajectories == []


def test_parameters_are_described_ranged_and_read_once(ros_context):
    node = PlannerNode(context=ros_context)
    try:
        for name in ("hand", "base_frame", "camera_xyz", "camera_quat_xyzw", "motion_backend", "execute",
                     "approach_offset_m", "lift_height_m", "num_candidates", "seed", "velocity_scale",
                     "table_z_m", "cloud_topic", "plan_on_cloud"):
            assert node.describe_parameter(name).description, name
        assert node.describe_parameter("velocity_scale").floating_point_range[0].to_value == pytest.approx(1.0)
        assert node.describe_parameter("num_candidates").integer_range[0].from_value == 1
        assert node.get_parameter("cloud_topic").value == topics.OBJECT_CLOUD
        result = node.set_parameters([Parameter("execute", value=True)])[0]
        assert not result.successful and "read once" in result.reason
        assert node.config.execute is False
    finally:
        node.destroy_node()


def test_shipped_params_file_loads_with_the_declared_types(ros_context):
    params_file = config_dir() / "functional_grasp.yaml"
    node = PlannerNode(context=ros_context, cli_args=["--ros-args", "--params-file", str(params_file)])
    try:
        cfg = node.config
        assert (cfg.hand, cfg.base_frame, cfg.motion_backend) == ("shadow", BASE, "builtin")
        assert cfg.camera_xyz == pytest.approx(tuple(CAMERA_XYZ)) and cfg.velocity_scale == pytest.approx(0.2)
        assert cfg.num_candidates == 16 and cfg.execute is True
    finally:
        node.destroy_node()


def test_unknown_backend_is_refused_naming_the_options(ros_context):
    with pytest.raises(ValueError, match="unknown motion_backend 'ompl'; choose one of: builtin, moveit_py"):
        PlannerNode(context=ros_context, parameter_overrides=[Parameter("motion_backend", value="ompl")])


def test_main_exits_1_naming_an_unknown_hand(ros_domain_id):
    proc = subprocess.run([sys.executable, "-m", "grasp_planner.node", "--ros-args", "-p", "hand:=nohand"],
                          env=child_env(ros_domain_id), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=30)
    assert proc.returncode == 1, proc.stdout
    assert "unknown hand 'nohand'" in proc.stdout and "shadow" in proc.stdout
    assert "Traceback" not in proc.stdout
