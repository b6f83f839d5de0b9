"""Pinhole camera model: intrinsics, back-projection, projection and rigid transforms.

Camera points are in the camera *optical* frame (REP-103 / REP-105 optical convention):
z forward, x right, y down. Pixel ``(row, col)`` has its centre at image coordinates
``(u, v) = (col, row)`` as in ROS CameraInfo and OpenCV. Images are assumed rectified
(the depth registered to the color image), so the distortion coefficients are not used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

#: Depth beyond this is treated as invalid unless the caller says otherwise (metres).
DEFAULT_MAX_DEPTH_M = 3.0


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of a rectified image.

    Attributes:
        width: image width in pixels (> 0).
        height: image height in pixels (> 0).
        fx: focal length along x in pixels (> 0).
        fy: focal length along y in pixels (> 0).
        cx: principal point column in pixels.
        cy: principal point row in pixels.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if int(value) != value or value <= 0:
                raise ValueError(f"camera {name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("fx", "fy", "cx", "cy"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"camera {name} must be finite, got {value!r}")
            object.__setattr__(self, name, value)
        if self.fx <= 0.0 or self.fy <= 0.0:
            raise ValueError(f"camera focal lengths must be > 0 px, got fx={self.fx}, fy={self.fy}"
                             " (an all-zero K means the camera is not calibrated)")

    @classmethod
    def from_k(cls, k, width: int, height: int) -> "CameraIntrinsics":
        """Build from a 3×3 intrinsic matrix (or the 9 row-major values of CameraInfo.k).

        Args:
            k: ``(3, 3)`` or ``(9,)`` intrinsic matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``, pixels.
            width: image width in pixels.
            height: image height in pixels.
        """
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size != 9:
            raise ValueError(f"K must have 9 values (3×3), got {k.size}")
        return cls(width=width, height=height, fx=k[0], fy=k[4], cx=k[2], cy=k[5])

    @property
    def k(self) -> np.ndarray:
        """The ``(3, 3)`` float64 intrinsic matrix, pixels."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def size_text(self) -> str:
        """``"W×H"`` for messages."""
        return f"{self.width}×{self.height}"


def valid_depth_mask(depth_m: np.ndarray, max_depth_m: float = DEFAULT_MAX_DEPTH_M) -> np.ndarray:
    """Pixels with a usable depth: finite, > 0 and <= ``max_depth_m``.

    Args:
        depth_m: ``(H, W)`` depth along the optical axis, metres.
        max_depth_m: largest depth kept, metres.

    Returns:
        ``(H, W)`` bool.
    """
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth_m) & (depth_m > 0.0) & (depth_m <= max_depth_m)


def backproject(depth_m: np.ndarray, intrinsics: CameraIntrinsics,
                max_depth_m: float = DEFAULT_MAX_DEPTH_M) -> tuple[np.ndarray, np.ndarray]:
    """Back-project a depth image into camera-frame points, skipping invalid pixels.

    Args:
        depth_m: ``(H, W)`` float depth along the optical axis (z), metres; NaN, inf, <= 0
            and > ``max_depth_m`` are invalid and skipped.
        intrinsics: camera intrinsics; ``H, W`` must equal ``height, width``.
        max_depth_m: largest depth kept, metres.

    Returns:
        ``points``: ``(N, 3)`` float32, metres, camera optical frame (z forward, x right, y down).
        ``pixels``: ``(N, 2)`` int32 ``(row, col)`` of each point, in row-major order.

    Raises:
        ValueError: ``depth_m`` is not 2-D or its size differs from the intrinsics.
    """
    depth_m = np.asarray(depth_m)
    if depth_m.ndim != 2 or depth_m.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(f"depth shape {depth_m.shape} does not match intrinsics "
                         f"{intrinsics.size_text} (expected ({intrinsics.height}, {intrinsics.width}))")
    rows, cols = np.nonzero(valid_depth_mask(depth_m, max_depth_m))
    z = depth_m[rows, cols].astype(np.float32)
    x = (cols.astype(np.float32) - np.float32(intrinsics.cx)) * (z / np.float32(intrinsics.fx))
    y = (rows.astype(np.float32) - np.float32(intrinsics.cy)) * (z / np.float32(intrinsics.fy))
    points = np.stack((x, y, z), axis=1)
    pixels = np.stack((rows, cols), axis=1).astype(np.int32)
    return points, pixels


def project(points_cam: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """Project camera-frame points to image coordinates.

    Args:
        points_cam: ``(N, 3)`` metres, camera optical frame; points with z <= 0 give NaN.
        intrinsics: camera intrinsics.

    Returns:
        ``(N, 2)`` float64 ``(u, v)`` = (column, row) image coordinates, pixels.
    """
    p = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    z = np.where(p[:, 2] > 0.0, p[:, 2], np.nan)
    u = intrinsics.fx * p[:, 0] / z + intrinsics.cx
    v = intrinsics.fy * p[:, 1] / z + intrinsics.cy
    return np.stack((u, v), axis=1)


def transform_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a rigid transform to points.

    Args:
        transform: ``(4, 4)`` homogeneous transform ``T_target_source``.
        points: ``(N, 3)`` points in the source frame, metres.

    Returns:
        ``(N, 3)`` points in the target frame, same float dtype as ``points`` (float32 stays float32).
    """
    transform = np.asarray(transform)
    if transform.shape != (4, 4):
        raise ValueError(f"transform must be 4×4, got shape {transform.shape}")
    points = np.asarray(points)
    dtype = points.dtype if np.issubdtype(points.dtype, np.floating) else np.float64
    rot = transform[:3, :3].astype(dtype)
    trans = transform[:3, 3].astype(dtype)
    # einsum is several times faster than float32 matmul for (N, 3) × (3, 3).
    return np.einsum("ij,nj->ni", rot, points.reshape(-1, 3).astype(dtype, copy=False)) + trans


def pose_matrix(xyz, quat_xyzw) -> np.ndarray:
    """A ``(4, 4)`` float64 transform from a translation (metres) and a unit quaternion (x, y, z, w).

    Raises:
        ValueError: wrong lengths, non-finite values or a zero quaternion.
    """
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1)
    quat = np.asarray(quat_xyzw, dtype=np.float64).reshape(-1)
    if xyz.size != 3 or quat.size != 4:
        raise ValueError(f"pose needs 3 translation and 4 quaternion values, got {xyz.size} and {quat.size}")
    if not (np.all(np.isfinite(xyz)) and np.all(np.isfinite(quat))):
        raise ValueError(f"pose values must be finite, got xyz={xyz.tolist()} quat={quat.tolist()}")
    norm = float(np.linalg.norm(quat))
    if norm < 1e-9:
        raise ValueError("quaternion (x, y, z, w) is all zeros; the identity is [0, 0, 0, 1]")
    transform = np.eye(4)
    transform[:3, :3] = Rotation.from_quat(quat / norm).as_matrix()
    transform[:3, 3] = xyz
    return transform


def look_at(eye_m, target_m, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Pose of a camera optical frame at ``eye_m`` looking at ``target_m`` (z forward, y down).

    Args:
        eye_m: ``(3,)`` optical centre in the base frame, metres.
        target_m: ``(3,)`` point the optical axis passes through, base frame, metres.
        up: ``(3,)`` world direction that appears "up" in the image (−y of the optical frame).

    Returns:
        ``(4, 4)`` float64 ``T_base_optical``.

    Raises:
        ValueError: the eye equals the target or the view direction is parallel to ``up``.
    """
    eye = np.asarray(eye_m, dtype=np.float64)
    forward = np.asarray(target_m, dtype=np.float64) - eye
    if np.linalg.norm(forward) < 1e-9:
        raise ValueError("look_at: eye and target coincide")
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-6:
        raise ValueError("look_at: view direction is parallel to 'up'; pass another up vector")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    transform = np.eye(4)
    transform[:3, :3] = np.column_stack((right, down, forward))
    transform[:3, 3] = eye
    return transform
