"""Message <-> numpy conversions of the sim bridge (the only module besides the node that knows messages)."""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, Image, JointState
from trajectory_msgs.msg import JointTrajectory

from sim_bridge.world import CameraIntrinsics


def rgb_to_msg(rgb: np.ndarray, stamp: Time, frame_id: str) -> Image:
    """(H, W, 3) uint8 -> ``sensor_msgs/Image`` rgb8."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb image must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    h, w, _ = rgb.shape
    msg = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg


def depth_to_msg(depth: np.ndarray, stamp: Time, frame_id: str) -> Image:
    """(H, W) float32 metres (NaN = no return) -> ``sensor_msgs/Image`` 32FC1."""
    if depth.ndim != 2:
        raise ValueError(f"depth image must be (H, W), got {depth.shape}")
    h, w = depth.shape
    msg = Image(height=h, width=w, encoding="32FC1", is_bigendian=0, step=4 * w)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.data = np.ascontiguousarray(depth, dtype="<f4").tobytes()
    return msg


def image_to_numpy(msg: Image) -> np.ndarray:
    """``rgb8`` -> (H, W, 3) uint8; ``32FC1`` -> (H, W) float32 (for tests and tools)."""
    if msg.encoding == "rgb8":
        return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, :3 * msg.width] \
            .reshape(msg.height, msg.width, 3)
    if msg.encoding == "32FC1":
        dt = ">f4" if msg.is_bigendian else "<f4"
        return np.frombuffer(bytes(msg.data), dt).reshape(msg.height, msg.step // 4)[:, :msg.width] \
            .astype(np.float32)
    raise ValueError(f"image encoding '{msg.encoding}' is not supported here (use rgb8 or 32FC1)")


def camera_info_msg(k: CameraIntrinsics, stamp: Time, frame_id: str) -> CameraInfo:
    """Pinhole ``CameraInfo`` without distortion (plumb_bob, D = 0)."""
    msg = CameraInfo(height=k.height, width=k.width, distortion_model="plumb_bob")
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.d = [0.0] * 5
    msg.k = [k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def joint_state_msg(names: list[str] | tuple[str, ...], positions: np.ndarray,
                    velocities: np.ndarray, stamp: Time) -> JointState:
    """``sensor_msgs/JointState`` (radians, rad/s)."""
    msg = JointState(name=list(names), position=[float(v) for v in positions],
                     velocity=[float(v) for v in velocities])
    msg.header.stamp = stamp
    return msg


def pose_stamped_msg(pos: np.ndarray, quat_wxyz: np.ndarray, stamp: Time, frame_id: str) -> PoseStamped:
    """Position (3,) metres and quaternion (w, x, y, z) -> ``geometry_msgs/PoseStamped``."""
    msg = PoseStamped()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in pos)
    w, x, y, z = (float(v) for v in quat_wxyz)
    msg.pose.orientation.x, msg.pose.orientation.y = x, y
    msg.pose.orientation.z, msg.pose.orientation.w = z, w
    return msg


def trajectory_from_msg(msg: JointTrajectory) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``JointTrajectory`` -> ``(joint_names, positions (T, n) rad, times_s (T,))``.

    Raises:
        ValueError: no joints or points, a point whose positions do not match the joint names.
            Name and time checks against the robot are done by ``SimWorld.execute_trajectory``.
    """
    names = list(msg.joint_names)
    if not names or not msg.points:
        raise ValueError(f"trajectory has {len(names)} joint names and {len(msg.points)} points; "
                         "need at least one of each")
    positions, times = [], []
    for i, p in enumerate(msg.points):
        if len(p.positions) != len(names):
            raise ValueError(f"trajectory point {i} has {len(p.positions)} positions for "
                             f"{len(names)} joint names")
        positions.append(list(p.positions))
        times.append(p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec)
    return names, np.asarray(positions, dtype=float), np.asarray(times, dtype=float)
