"""Which topics a bag holds: the stack's inputs (camera + joint states) and outputs, with types and QoS.

Pure module (no rclpy): QoS is named here (``sensor``, ``latched``, ``state``, ``command``, the
profiles of :mod:`grasp_common.qos`) and resolved by the rclpy side
(:func:`functional_grasp.bags.recorder.qos_profile`).
"""
from __future__ import annotations

from dataclasses import dataclass

from functional_grasp.demo import PERCEPTION_STATUS
from grasp_common import topics

#: The planner's flange pose at the grasp (its ``~/grasp_pose``), geometry_msgs/PoseStamped.
GRASP_POSE = "/grasp_planner/grasp_pose"


@dataclass(frozen=True)
class TopicSpec:
    """One topic a bag may hold.

    Attributes:
        name: absolute topic name.
        msgtype: ROS 2 type as rosbag2 stores it (``sensor_msgs/msg/Image``).
        qos: profile name in :mod:`grasp_common.qos` (``sensor``, ``latched``, ``state``, ``command``).
    """

    name: str
    msgtype: str
    qos: str


#: What ``fgrasp replay`` plays into perception + planner; every one must be in the bag.
INPUTS: tuple[TopicSpec, ...] = (
    TopicSpec(topics.COLOR_IMAGE, "sensor_msgs/msg/Image", "sensor"),
    TopicSpec(topics.DEPTH_IMAGE, "sensor_msgs/msg/Image", "sensor"),
    TopicSpec(topics.CAMERA_INFO, "sensor_msgs/msg/CameraInfo", "sensor"),
    TopicSpec(topics.JOINT_STATES, "sensor_msgs/msg/JointState", "state"),
)

#: What perception and planner publish (``fgrasp replay`` records these into its output bag).
STACK_OUTPUTS: tuple[TopicSpec, ...] = (
    TopicSpec(topics.OBJECT_CLOUD, "sensor_msgs/msg/PointCloud2", "latched"),
    TopicSpec(topics.OBJECT_MASK, "sensor_msgs/msg/Image", "latched"),
    TopicSpec(PERCEPTION_STATUS, "std_msgs/msg/String", "latched"),
    TopicSpec(topics.JOINT_GOAL, "sensor_msgs/msg/JointState", "latched"),
    TopicSpec(GRASP_POSE, "geometry_msgs/msg/PoseStamped", "latched"),
    TopicSpec(topics.GRASP_MARKERS, "visualization_msgs/msg/MarkerArray", "latched"),
    TopicSpec(topics.PLANNER_STATUS, "std_msgs/msg/String", "latched"),
    TopicSpec(topics.GRASP_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory", "command"),
)

#: Simulator outputs, recorded by default by ``fgrasp record`` (not needed for replay).
SIM_OUTPUTS: tuple[TopicSpec, ...] = (
    TopicSpec(topics.OBJECT_POSE, "geometry_msgs/msg/PoseStamped", "state"),
    TopicSpec(topics.GRASP_RESULT, "std_msgs/msg/String", "latched"),
)

#: Every topic the project knows, by name.
KNOWN: dict[str, TopicSpec] = {t.name: t for t in INPUTS + STACK_OUTPUTS + SIM_OUTPUTS}

#: Default topic list of ``fgrasp record``.
RECORD_DEFAULT: tuple[str, ...] = tuple(KNOWN)


def ros_type_parts(msgtype: str) -> tuple[str, str]:
    """``sensor_msgs/msg/Image`` → (``sensor_msgs.msg``, ``Image``).

    Raises:
        ValueError: not of the form ``<package>/msg/<Name>``.
    """
    parts = msgtype.split("/")
    if len(parts) != 3 or parts[1] != "msg" or not all(parts):
        raise ValueError(f"message type '{msgtype}' is not of the form <package>/msg/<Name>")
    return f"{parts[0]}.msg", parts[2]
