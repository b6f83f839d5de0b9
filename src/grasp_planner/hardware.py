"""Hardware command interface: how a planned grasp becomes arm and hand controller commands.

Pure core (numpy only; messages are built in :mod:`grasp_planner.conversions`, published by the
node). On the real robot the planner sends

* the arm part of the plan as one ``trajectory_msgs/JointTrajectory`` (the 7 Franka joints, by
  name) to the arm controller's topic (franka_ros2's ``joint_trajectory_controller``), and
* the hand part on a configurable topic in the message type the hand driver takes:
  ``trajectory_msgs/JointTrajectory`` (one message, same timing as the arm),
  ``sensor_msgs/JointState`` or ``std_msgs/Float64MultiArray`` (position set-points streamed at
  ``setpoint_rate_hz`` along the plan's hand waypoints; Float64MultiArray in ``hand_joint_order``,
  since OYMotion and Inspire drivers take positions without names).

Nothing is sent unless the node's ``execute`` parameter is true, and :func:`command_violations`
(joint limits, joint velocities, flange workspace of :mod:`grasp_planner.safety`, plus "the plan
starts where the robot is") must come back empty immediately before the first message goes out.
Streamed hand set-points are linear interpolations of checked waypoints, so they stay inside the
same position and velocity limits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from grasp_planner.motion.base import MotionPlan
from grasp_planner.robots import panda
from grasp_planner.safety import FkFn, SafetyLimits, check_trajectory

#: Where an executed plan goes: ``sim`` = the whole arm + hand trajectory on the planner's
#: trajectory topic (sim_bridge executes it); ``hardware`` = arm and hand controller topics.
COMMAND_TARGETS = ("sim", "hardware")
#: Message types a hand driver may take (ROS interface names).
JOINT_TRAJECTORY, JOINT_STATE, FLOAT64_MULTI_ARRAY = (
    "trajectory_msgs/JointTrajectory", "sensor_msgs/JointState", "std_msgs/Float64MultiArray")
HAND_COMMAND_TYPES = (JOINT_TRAJECTORY, JOINT_STATE, FLOAT64_MULTI_ARRAY)
#: Default arm controller topic (franka_ros2 FR3 joint_trajectory_controller).
ARM_COMMAND_TOPIC = "/fr3_arm_controller/joint_trajectory"
#: Default hand command topic.
HAND_COMMAND_TOPIC = "/hand_controller/joint_trajectory"
#: Default rate of streamed hand set-points (JointState / Float64MultiArray drivers), Hz.
HAND_SETPOINT_RATE_HZ = 50.0
#: Largest difference between the plan's first point and the measured joints, radians.
START_TOLERANCE_RAD = 0.05


class HardwareConfigError(ValueError):
    """The hardware command configuration is unusable; the message says what to change."""


@dataclass(frozen=True)
class HardwareConfig:
    """Controller topics and the hand command format (validated on construction).

    Attributes:
        arm_topic: ``trajectory_msgs/JointTrajectory`` topic of the arm controller.
        hand_topic: topic of the hand driver's position command.
        hand_command_type: one of :data:`HAND_COMMAND_TYPES`.
        hand_joint_order: hand joints in the order the driver expects (Float64MultiArray has no
            names, so the order is the only mapping); empty = the hand description's order.
            Hand joints left out are not commanded.
        setpoint_rate_hz: rate of streamed set-points for JointState / Float64MultiArray, Hz.
    """

    arm_topic: str = ARM_COMMAND_TOPIC
    hand_topic: str = HAND_COMMAND_TOPIC
    hand_command_type: str = JOINT_TRAJECTORY
    hand_joint_order: tuple[str, ...] = ()
    setpoint_rate_hz: float = HAND_SETPOINT_RATE_HZ

    def __post_init__(self) -> None:
        if self.hand_command_type not in HAND_COMMAND_TYPES:
            raise HardwareConfigError(
                f"unknown hand_command_type '{self.hand_command_type}'; the hand driver's command must be one of: "
                f"{', '.join(HAND_COMMAND_TYPES)}")
        for name in ("arm_topic", "hand_topic"):
            if not getattr(self, name):
                raise HardwareConfigError(f"{name} must not be empty (a controller command topic)")
        if self.arm_topic == self.hand_topic:
            raise HardwareConfigError(f"arm and hand commands cannot share the topic '{self.arm_topic}'")
        order = tuple(str(n) for n in self.hand_joint_order)
        dup = sorted({n for n in order if order.count(n) > 1})
        if dup:
            raise HardwareConfigError(f"hand_joint_order names {dup} more than once")
        if not (np.isfinite(self.setpoint_rate_hz) and 1.0 <= self.setpoint_rate_hz <= 1000.0):
            raise HardwareConfigError(f"hand set-point rate must be 1..1000 Hz, got {self.setpoint_rate_hz}")
        object.__setattr__(self, "hand_joint_order", order)

    @property
    def streams_setpoints(self) -> bool:
        """True when the hand driver takes position set-points (streamed) rather than a trajectory."""
        return self.hand_command_type != JOINT_TRAJECTORY

    def resolve_hand_order(self, hand_joint_names: Sequence[str]) -> tuple[str, ...]:
        """The hand joints commanded, in command order.

        Raises:
            HardwareConfigError: ``hand_joint_order`` names a joint the hand does not have.
        """
        names = tuple(hand_joint_names)
        if not self.hand_joint_order:
            return names
        unknown = [n for n in self.hand_joint_order if n not in names]
        if unknown:
            raise HardwareConfigError(f"hand_joint_order names {unknown}, which the hand does not have; "
                                      f"its joints are: {', '.join(names)}")
        return self.hand_joint_order


@dataclass(frozen=True)
class HardwareCommand:
    """A plan split by controller, joints in command order, both parts on the same time axis.

    Attributes:
        arm: the 7 arm joints' plan (radians, seconds from the start of execution).
        hand: the commanded hand joints' plan (:meth:`HardwareConfig.resolve_hand_order` order).
    """

    arm: MotionPlan
    hand: MotionPlan

    def hand_setpoint(self, t_s: float) -> np.ndarray:
        """(n,) hand positions (radians) ``t_s`` seconds after the start: linear between waypoints,
        the first/last waypoint before/after the plan."""
        t = self.hand.times_s
        return np.array([np.interp(float(t_s), t, col) for col in self.hand.positions.T])


def split_plan(plan: MotionPlan, hand_joint_order: Sequence[str],
               arm_joint_names: Sequence[str] = panda.ARM_JOINT_NAMES) -> HardwareCommand:
    """Split a plan into the arm and hand commands, columns looked up by joint name.

    Raises:
        ValueError: the plan lacks an arm joint or a commanded hand joint.
    """
    names = list(plan.joint_names)
    missing = [n for n in [*arm_joint_names, *hand_joint_order] if n not in names]
    if missing:
        raise ValueError(f"plan has no column for joints {missing} (it has {names})")

    def part(joints: Sequence[str]) -> MotionPlan:
        cols = [names.index(n) for n in joints]
        return MotionPlan(joint_names=tuple(joints), positions=plan.positions[:, cols], times_s=plan.times_s)

    return HardwareCommand(arm=part(arm_joint_names), hand=part(hand_joint_order))


def command_violations(plan: MotionPlan, limits: SafetyLimits, measured: Mapping[str, float],
                       fk_fn: FkFn | None = None,
                       start_tolerance_rad: float = START_TOLERANCE_RAD) -> list[str]:
    """The last gate before commands leave the planner: every reason not to send ``plan``.

    Joint limits (with margin), joint velocities and the flange workspace
    (:func:`grasp_planner.safety.check_trajectory`), and that the first waypoint is within
    ``start_tolerance_rad`` of the measured joint positions.

    Args:
        plan: the timed joint-space plan (radians, seconds).
        limits: the limits to enforce.
        measured: latest measured joint positions by name, radians.
        fk_fn: forward kinematics for the workspace check (None: no workspace check).
        start_tolerance_rad: largest allowed start mismatch per joint, radians.

    Returns:
        Human-readable violations; empty means safe to send.
    """
    violations = check_trajectory(plan.joint_names, plan.positions, plan.times_s, limits, fk_fn=fk_fn)
    first = np.asarray(plan.positions, dtype=float)[0] if len(plan.times_s) else []
    for name, q0 in zip(plan.joint_names, first):
        if name in measured and abs(q0 - measured[name]) > start_tolerance_rad:
            violations.append(f"trajectory starts at {name}={q0:.3f} rad but the robot is at "
                              f"{measured[name]:.3f} rad (more than {start_tolerance_rad} rad away: it moved "
                              "while planning; call ~/replan)")
    return violations
