"""numpy / MotionPlan ↔ ROS messages for the planner node: JointState, JointTrajectory, PoseStamped, MarkerArray,
and the object's colour image and per-point pixels (input of a network trained with images).

The only module besides ``grasp_planner/node.py`` that imports message types; everything else in
``grasp_planner`` stays numpy-only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, PoseStamped
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import Image, JointState, PointCloud2
from std_msgs.msg import ColorRGBA, Float64MultiArray, MultiArrayDimension
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from visualization_msgs.msg import Marker, MarkerArray

from grasp_perception.conversions import COLOR_ENCODINGS, PIXEL_FIELDS, cloud_pixel_uv, image_to_rgb
from grasp_perception.errors import PerceptionError
from grasp_planner.markers import MarkerSpec
from grasp_planner.motion.base import MotionPlan

NS_PER_S = 1_000_000_000

#: Encodings accepted as the network's colour image (grey mono8 is a colour *stream* for perception, not for it).
NETWORK_COLOR_ENCODINGS = tuple(e for e, channels in COLOR_ENCODINGS.items() if channels >= 3)

#: MarkerSpec.kind → visualization_msgs/Marker type.
_MARKER_TYPES = {"sphere_list": Marker.SPHERE_LIST, "arrow": Marker.ARROW}


def seconds_to_duration(t_s: float) -> Duration:
    """Seconds (>= 0) → ``builtin_interfaces/Duration``, rounded to the nearest nanosecond.

    Raises:
        ValueError: negative or non-finite ``t_s``.
    """
    t_s = float(t_s)
    if not np.isfinite(t_s) or t_s < 0:
        raise ValueError(f"time_from_start must be a finite number of seconds >= 0, got {t_s}")
    sec, nanosec = divmod(round(t_s * NS_PER_S), NS_PER_S)
    return Duration(sec=int(sec), nanosec=int(nanosec))


def duration_to_seconds(d: Duration) -> float:
    """``builtin_interfaces/Duration`` (or Time) → seconds."""
    return d.sec + d.nanosec / NS_PER_S


def joint_state_msg(names: Sequence[str], positions: Sequence[float], stamp: Time | None = None,
                    frame_id: str = "") -> JointState:
    """``sensor_msgs/JointState`` with positions only (radians).

    Args:
        names: n joint names.
        positions: (n,) radians, in ``names`` order.
        stamp: header stamp (None: zero).
        frame_id: header frame id.

    Raises:
        ValueError: lengths differ or a position is not finite.
    """
    q = np.asarray(positions, dtype=float).reshape(-1)
    if len(q) != len(names):
        raise ValueError(f"{len(names)} joint names but {len(q)} positions")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"joint positions contain NaN/inf: {dict(zip(names, q.tolist()))}")
    msg = JointState(name=[str(n) for n in names], position=q.tolist())
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


def joint_positions_from_msg(msg: JointState) -> dict[str, float]:
    """Finite joint positions of a ``JointState`` by name (joints with NaN/inf are left out).

    Raises:
        ValueError: ``position`` and ``name`` have different lengths.
    """
    if len(msg.position) != len(msg.name):
        raise ValueError(f"JointState has {len(msg.name)} names but {len(msg.position)} positions")
    return {str(n): float(v) for n, v in zip(msg.name, msg.position) if np.isfinite(v)}


def trajectory_msg(plan: MotionPlan, frame_id: str = "", stamp: Time | None = None) -> JointTrajectory:
    """``trajectory_msgs/JointTrajectory`` of a plan: every joint, ``time_from_start`` = ``times_s``.

    Args:
        plan: the timed joint-space plan (radians, seconds from the start).
        frame_id: header frame id.
        stamp: header stamp; None (zero) means "start on receipt" to trajectory controllers.
    """
    msg = JointTrajectory(joint_names=list(plan.joint_names))
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    msg.points = [JointTrajectoryPoint(positions=row.tolist(), time_from_start=seconds_to_duration(t))
                  for row, t in zip(plan.positions, plan.times_s)]
    return msg


def hand_setpoint_msg(command_type: str, names: Sequence[str], positions: Sequence[float],
                      stamp: Time | None = None) -> JointState | Float64MultiArray:
    """One hand position set-point in a driver's message type (see ``grasp_planner.hardware``).

    Args:
        command_type: ``"sensor_msgs/JointState"`` (named positions) or
            ``"std_msgs/Float64MultiArray"`` (positions in ``names`` order, one labelled dimension).
        names: n hand joint names, the command order.
        positions: (n,) radians.
        stamp: JointState header stamp (None: zero).

    Raises:
        ValueError: another command type, length mismatch or non-finite positions.
    """
    msg = joint_state_msg(names, positions, stamp)  # validates length and finiteness
    if command_type == "sensor_msgs/JointState":
        return msg
    if command_type == "std_msgs/Float64MultiArray":
        out = Float64MultiArray(data=list(msg.position))
        out.layout.dim = [MultiArrayDimension(label="hand_joints", size=len(msg.position), stride=len(msg.position))]
        return out
    raise ValueError(f"'{command_type}' is not a set-point type (sensor_msgs/JointState, std_msgs/Float64MultiArray)")


def pose_stamped_msg(T: np.ndarray, frame_id: str, stamp: Time | None = None) -> PoseStamped:
    """(4, 4) homogeneous transform (metres) → ``geometry_msgs/PoseStamped`` in ``frame_id``."""
    T = np.asarray(T, dtype=float)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError(f"pose must be a finite (4, 4) transform, got shape {T.shape}")
    msg = PoseStamped()
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    p = msg.pose.position
    p.x, p.y, p.z = (float(v) for v in T[:3, 3])
    x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = float(x), float(y), float(z), float(w)
    return msg


def marker_array_msg(specs: Sequence[MarkerSpec], frame_id: str, stamp: Time | None = None) -> MarkerArray:
    """``visualization_msgs/MarkerArray`` from marker descriptions, all in ``frame_id`` at ``stamp``."""
    out = MarkerArray()
    for spec in specs:
        m = Marker(ns=spec.ns, id=int(spec.id))
        m.header.frame_id = frame_id
        if stamp is not None:
            m.header.stamp = stamp
        if spec.kind == "delete_all":
            m.action = Marker.DELETEALL
            out.markers.append(m)
            continue
        m.type = _MARKER_TYPES[spec.kind]
        m.action = Marker.ADD
        m.pose.orientation.w = 1.0
        m.scale.x, m.scale.y, m.scale.z = (float(v) for v in spec.scale)
        m.color = ColorRGBA(r=float(spec.rgba[0]), g=float(spec.rgba[1]), b=float(spec.rgba[2]),
                            a=float(spec.rgba[3]))
        m.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in np.asarray(spec.points, float)]
        out.markers.append(m)
    return out



def network_color_image(msg: Image) -> np.ndarray:
    """The colour image an object cloud was segmented from, as the network's RGB input.

    Args:
        msg: Image in one of :data:`NETWORK_COLOR_ENCODINGS` (rgb8, bgr8, rgba8, bgra8; any row padding).

    Returns:
        (H, W, 3) uint8 RGB.

    Raises:
        ValueError: grey or depth encodings and any other (the message names the encoding and the
            accepted ones), or a malformed message.
    """
    if msg.encoding not in NETWORK_COLOR_ENCODINGS:
        kind = ("a grey image" if msg.encoding.startswith("mono") else
                "a depth image" if msg.encoding in ("16UC1", "32FC1") else "not a colour image")
        raise ValueError(f"object image has encoding '{msg.encoding}' ({kind}); the network needs the colour "
                         f"frame the cloud was segmented from, one of {', '.join(NETWORK_COLOR_ENCODINGS)}: point "
                         "perception's color_topic at the camera's colour stream")
    try:
        return image_to_rgb(msg)
    except PerceptionError as exc:
        raise ValueError(f"object image is malformed: {exc}") from exc


def cloud_pixels(msg: PointCloud2) -> np.ndarray | None:
    """Pixel (u, v) of every point of an object cloud, or None when the cloud has no ``u``, ``v`` fields.

    Returns:
        (N, 2) float32 (column, row) in the colour image the cloud came from, one row per point
        in message order (non-finite points included, as ``cloud_to_numpy(msg, skip_nans=False)``).

    Raises:
        ValueError: malformed pixel fields.
    """
    try:
        return cloud_pixel_uv(msg, skip_nans=False)
    except PerceptionError as exc:
        raise ValueError(f"object cloud fields {', '.join(PIXEL_FIELDS)} are malformed: {exc}") from exc
