"""Hardware command interface: the planner's arm/hand controller commands over real rclpy, and its pure core.

The node tests give the real PlannerNode a short, hand-made plan (a fixed "planner" instead of
grasp synthesis, so every case takes well under a second) and listen on the controller topics
with a separate node; one test plans a real grasp end to end.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from grasp_common import qos  # noqa: E402
from grasp_planner import hardware  # noqa: E402
from grasp_planner.franka_ik import FrankaKinematics  # noqa: E402
from grasp_planner.grasp_synthesis import GraspCandidate  # noqa: E402
from grasp_planner.motion.base import MotionPlan  # noqa: E402
from grasp_planner.node import PlannerNode  # noqa: E402
from grasp_planner.pipeline import PlanResult  # noqa: E402
from grasp_planner.robots import panda  # noqa: E402
from grasp_planner.safety import SafetyLimits  # noqa: E402
from test_planner_node import (HAND, PLAN_TIMEOUT_S, START, Harness, cloud_msg,  # noqa: E402
                               cylinder_cloud)

ARM_TOPIC, HAND_TOPIC = "/test_arm_controller/joint_trajectory", "/test_hand/command"
HAND_TYPES = {hardware.JOINT_TRAJECTORY: JointTrajectory, hardware.JOINT_STATE: JointState,
              hardware.FLOAT64_MULTI_ARRAY: Float64MultiArray}
#: A driver order unlike the hand description's (reversed, first four joints only).
DRIVER_ORDER = list(HAND.joint_names[:4])[::-1]
PLAN_TIMES_S = np.array([0.0, 0.4, 0.8])
NO_OUTPUT_GRACE_S = 0.5


def short_plan(arm_delta: dict[str, float] | None = None, times_s=PLAN_TIMES_S) -> MotionPlan:
    """START → arm moved by ``arm_delta`` (hand as is) → hand 30 % closed; columns hand-first (not arm-first)."""
    names = list(HAND.joint_names) + list(panda.ARM_JOINT_NAMES)
    q0 = np.array([START[n] for n in names])
    q1 = q0.copy()
    for n, d in (arm_delta or {"panda_joint1": 0.05}).items():
        q1[names.index(n)] += d
    closed = HAND.full_pose(HAND.closed_pose)
    q2 = q1.copy()
    for i, n in enumerate(names[:len(HAND.joint_names)]):
        q2[i] = 0.3 * closed[n]
    return MotionPlan(joint_names=tuple(names), positions=np.stack([q0, q1, q2]), times_s=np.asarray(times_s))


def fixed_result(plan: MotionPlan) -> PlanResult:
    """A successful PlanResult around ``plan`` with one candidate at the arm's current flange."""
    T_root = FrankaKinematics().fk(np.array([START[n] for n in panda.ARM_JOINT_NAMES])) @ HAND.mount_transform
    q_open = {n: 0.0 for n in HAND.joint_names}
    last = dict(zip(plan.joint_names, plan.positions[-1]))
    cand = GraspCandidate(T_base_root=T_root, approach=np.array([0.0, 0.0, -1.0]), q_open=q_open,
                          q_grasp={n: last[n] for n in HAND.joint_names},
                          q_squeeze={n: last[n] for n in HAND.joint_names}, contacts={}, score=1.0)
    return PlanResult(True, plan=plan, candidate=cand, candidates=[cand],
                      arm_goal={n: last[n] for n in panda.ARM_JOINT_NAMES},
                      hand_goal={n: last[n] for n in HAND.joint_names}, T_base_flange=T_root,
                      timings_s={"grasp_synthesis": 0.0, "ik": 0.0, "motion_plan": 0.0})


class FixedPlanner:
    """Stands in for GraspPlanner: returns the same result for any cloud."""

    class _Predictor:
        name = "fixed"

        @staticmethod
        def describe() -> dict:
            return {"backend": "fixed", "checkpoint": None, "checkpoint_sha256": None, "fallback_reason": None}

    def __init__(self, result: PlanResult) -> None:
        self.result = result
        self.predictor = self._Predictor()

    def plan(self, cloud, start, image=None, pixel_uv=None):
        return self.result


class HardwareHarness(Harness):
    """Planner node with command_target hardware plus listeners on the arm and hand controller topics."""

    def __init__(self, context, hand_command_type: str = hardware.JOINT_TRAJECTORY, **params):
        super().__init__(context, command_target="hardware", arm_command_topic=ARM_TOPIC,
                         hand_command_topic=HAND_TOPIC, hand_command_type=hand_command_type, **params)
        self.arm: list[JointTrajectory] = []
        self.hand: list = []
        self.driver.create_subscription(JointTrajectory, ARM_TOPIC, self.arm.append, qos.COMMAND)
        self.driver.create_subscription(HAND_TYPES[hand_command_type], HAND_TOPIC, self.hand.append, qos.COMMAND)
        assert self.spin_until(lambda: self.node.count_subscribers(ARM_TOPIC) > 0
                               and self.node.count_subscribers(HAND_TOPIC) > 0, 5.0)

    def run(self, result: PlanResult | None, stamp_s: int = 1) -> dict:
        """Plan the cylinder cloud (with ``result`` instead of grasp synthesis unless None); the status."""
        if result is not None:
            self.node.planner = FixedPlanner(result)
        self.cloud_pub.publish(cloud_msg(cylinder_cloud(), stamp_s=stamp_s))
        return self.status_for(stamp_s, PLAN_TIMEOUT_S if result is None else 5.0)


@pytest.fixture
def make_hw(ros_context):
    made = []

    def make(**kwargs):
        made.append(HardwareHarness(ros_context, **kwargs))
        return made[-1]

    yield make
    for h in made:
        h.close()


def times_of(msg: JointTrajectory) -> np.ndarray:
    return np.array([p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in msg.points])


def positions_of(msg: JointTrajectory) -> np.ndarray:
    return np.array([list(p.positions) for p in msg.points])


# --------------------------------------------------------------------------------------------
# Over real rclpy


def test_execute_false_sends_nothing_to_the_controllers(make_hw):
    h = make_hw(execute=False)
    status = h.run(fixed_result(short_plan()))
    assert status["success"] is True and status["trajectory_sent"] is False
    assert status["command_target"] == "hardware"
    h.spin_for(NO_OUTPUT_GRACE_S)
    assert h.goals and h.arm == [] and h.hand == [] and h.trajectories == []


def test_execute_true_sends_arm_and_hand_trajectories_by_joint_name(make_hw):
    h = make_hw(execute=True, hand_joint_order=DRIVER_ORDER)
    plan = short_plan()
    status = h.run(fixed_result(plan))
    assert status["success"] is True and status["trajectory_sent"] is True, status["reason"]
    assert h.spin_until(lambda: h.arm and h.hand, 2.0)
    arm, hand = h.arm[-1], h.hand[-1]
    assert list(arm.joint_names) == list(panda.ARM_JOINT_NAMES)
    assert list(hand.joint_names) == DRIVER_ORDER
    for msg, names in ((arm, panda.ARM_JOINT_NAMES), (hand, DRIVER_ORDER)):
        np.testing.assert_allclose(times_of(msg), PLAN_TIMES_S, atol=1e-9)   # time_from_start of the plan
        cols = [plan.joint_names.index(n) for n in names]
        np.testing.assert_allclose(positions_of(msg), plan.positions[:, cols], atol=1e-12)
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (0, 0)     # start on receipt
    assert h.trajectories == []   # nothing on the simulator's trajectory topic


@pytest.mark.parametrize("hand_type", [hardware.JOINT_STATE, hardware.FLOAT64_MULTI_ARRAY])
def test_setpoint_hand_drivers_get_streamed_positions_in_the_configured_order(make_hw, hand_type):
    h = make_hw(execute=True, hand_command_type=hand_type, hand_joint_order=DRIVER_ORDER,
                hand_setpoint_rate_hz=50.0)
    plan = short_plan()
    status = h.run(fixed_result(plan))
    assert status["trajectory_sent"] is True, status["reason"]
    final = dict(zip(plan.joint_names, plan.positions[-1]))
    expected_final = [final[n] for n in DRIVER_ORDER]

    def values(msg):
        return list(msg.position) if hand_type == hardware.JOINT_STATE else list(msg.data)

    assert h.spin_until(lambda: h.hand and values(h.hand[-1]) == pytest.approx(expected_final), 3.0), \
        "the streamed set-points never reached the plan's last hand waypoint"
    assert h.arm and list(h.arm[-1].joint_names) == list(panda.ARM_JOINT_NAMES)
    assert all(isinstance(m, HAND_TYPES[hand_type]) for m in h.hand)
    assert 5 <= len(h.hand) <= 80          # streamed over the 0.8 s plan at ~50 Hz, then stopped
    first = values(h.hand[0])
    assert first == pytest.approx([START[n] for n in DRIVER_ORDER])
    if hand_type == hardware.JOINT_STATE:
        assert list(h.hand[0].name) == DRIVER_ORDER
    else:
        assert h.hand[0].layout.dim[0].size == len(DRIVER_ORDER)
    count = len(h.hand)
    h.spin_for(NO_OUTPUT_GRACE_S)
    assert len(h.hand) == count            # streaming stopped after the last waypoint


@pytest.mark.parametrize(("arm_delta", "times_s", "words"), [
    ({"panda_joint4": 0.03 - START["panda_joint4"]}, [0.0, 2.0, 2.4], ["panda_joint4", "outside"]),  # limit
    ({"panda_joint1": 0.3}, [0.0, 0.01, 0.8], ["panda_joint1", "velocity", "exceeds"]),  # velocity
])
def test_goal_over_a_limit_sends_nothing_and_says_why(make_hw, arm_delta, times_s, words):
    h = make_hw(execute=True)
    status = h.run(fixed_result(short_plan(arm_delta, times_s)))
    assert status["success"] is False and status["trajectory_sent"] is False
    assert "final safety check refused" in status["reason"]
    assert all(w in status["reason"] for w in words), status["reason"]
    h.spin_for(NO_OUTPUT_GRACE_S)
    assert h.arm == [] and h.hand == [] and h.trajectories == []


def test_real_grasp_plan_reaches_the_arm_controller(make_hw):
    h = make_hw(execute=True)
    status = h.run(None)
    assert status["success"] is True and status["trajectory_sent"] is True, status["reason"]
    assert h.spin_until(lambda: h.arm and h.hand, 2.0)
    arm, hand = h.arm[-1], h.hand[-1]
    goal = status["joint_goal"]
    assert list(arm.joint_names) == list(panda.ARM_JOINT_NAMES) and list(hand.joint_names) == list(HAND.joint_names)
    np.testing.assert_allclose(times_of(arm), times_of(hand))
    q_arm = positions_of(arm)
    np.testing.assert_allclose(q_arm[0], [START[n] for n in panda.ARM_JOINT_NAMES], atol=1e-6)
    assert np.min(np.abs(q_arm - [goal[n] for n in panda.ARM_JOINT_NAMES]).max(axis=1)) < 1e-6
    np.testing.assert_allclose(positions_of(hand)[-1], [goal[n] for n in HAND.joint_names], atol=1e-6)


@pytest.mark.parametrize(("params", "message"), [
    ({"hand_command_type": "inspire_msgs/SetAngle"},
     "unknown hand_command_type 'inspire_msgs/SetAngle'; the hand driver's command must be one of: "
     "trajectory_msgs/JointTrajectory, sensor_msgs/JointState, std_msgs/Float64MultiArray"),
    ({"hand_joint_order": ["rh_FFJ4", "thumb_rotation"]}, r"hand_joint_order names \['thumb_rotation'\]"),
    ({"command_target": "robot"}, "unknown command_target 'robot'; choose one of: sim, hardware"),
])
def test_bad_command_configuration_is_a_startup_error(ros_context, params, message):
    with pytest.raises(ValueError, match=message):
        PlannerNode(context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


# --------------------------------------------------------------------------------------------
# Pure core


def test_split_plan_maps_columns_by_name_and_interpolates_hand_setpoints():
    plan = short_plan()
    cmd = hardware.split_plan(plan, DRIVER_ORDER)
    assert cmd.arm.joint_names == panda.ARM_JOINT_NAMES and cmd.hand.joint_names == tuple(DRIVER_ORDER)
    np.testing.assert_allclose(cmd.hand.positions[:, 0], plan.positions[:, plan.joint_names.index(DRIVER_ORDER[0])])
    mid = cmd.hand_setpoint(0.6)   # halfway between waypoints 1 and 2
    np.testing.assert_allclose(mid, 0.5 * (cmd.hand.positions[1] + cmd.hand.positions[2]))
    np.testing.assert_allclose(cmd.hand_setpoint(5.0), cmd.hand.positions[-1])
    with pytest.raises(ValueError, match=r"no column for joints \['rh_missing'\]"):
        hardware.split_plan(plan, ["rh_missing"])


def test_command_violations_include_the_start_mismatch():
    limits = SafetyLimits.for_panda(HAND.joint_names, HAND.joint_limits)
    plan = short_plan()
    assert hardware.command_violations(plan, limits, START) == []
    moved = dict(START, panda_joint2=START["panda_joint2"] + 0.2)
    (msg,) = hardware.command_violations(plan, limits, moved)
    assert "panda_joint2" in msg and "call ~/replan" in msg


def test_hardware_config_rejects_shared_topics_and_bad_rates():
    with pytest.raises(hardware.HardwareConfigError, match="cannot share the topic"):
        hardware.HardwareConfig(arm_topic="/x", hand_topic="/x")
    with pytest.raises(hardware.HardwareConfigError, match="1..1000 Hz"):
        hardware.HardwareConfig(setpoint_rate_hz=0.0)
    cfg = hardware.HardwareConfig(hand_command_type=hardware.FLOAT64_MULTI_ARRAY)
    assert cfg.streams_setpoints and cfg.resolve_hand_order(HAND.joint_names) == tuple(HAND.joint_names)
    assert dataclasses.replace(cfg, hand_command_type=hardware.JOINT_TRAJECTORY).streams_setpoints is False
