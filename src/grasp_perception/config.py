"""Configuration of the perception node, read once from its ROS parameters (no rclpy here)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from grasp_common import topics
from grasp_perception.camera import pose_matrix
from grasp_perception.segmentation import SegmentationConfig, segmenter_names

#: Default camera: optical centre 1.1 m in front of the base, 0.6 m up, looking at (0.5, 0, 0).
DEFAULT_CAMERA_XYZ_M = (1.1, 0.0, 0.6)
#: Orientation (x, y, z, w) of that camera's optical frame = look_at((1.1, 0, 0.6), (0.5, 0, 0)).
DEFAULT_CAMERA_QUAT_XYZW = (0.653281, 0.653281, -0.270598, -0.270598)


@dataclass(frozen=True)
class PerceptionConfig:
    """Everything the perception node needs, validated once.

    Attributes:
        color_topic: sensor_msgs/Image RGB input (registered with the depth image).
        depth_topic: sensor_msgs/Image depth input (32FC1 metres or 16UC1 millimetres).
        camera_info_topic: sensor_msgs/CameraInfo of the color (= registered depth) image.
        cloud_topic: sensor_msgs/PointCloud2 output: target object, base frame, with each point's
            pixel (fields u, v) in the colour image.
        object_image_topic: sensor_msgs/Image output: the colour image each cloud was segmented
            from, republished unchanged (same stamp and encoding) for the planner's image network.
        mask_topic: sensor_msgs/Image mono8 output: 255 on the target's pixels.
        base_frame: robot base frame id of the output cloud.
        camera_xyz_m: camera optical frame origin in the base frame, metres.
        camera_quat_xyzw: camera optical frame orientation in the base frame (x, y, z, w).
        segmenter: registered segmenter name.
        max_rate_hz: frames are processed at most this often, Hz.
        sync_tolerance_s: color and depth stamps closer than this are paired, seconds (0 = exact).
        segmentation: settings of the segmenter.
    """

    color_topic: str = topics.COLOR_IMAGE
    depth_topic: str = topics.DEPTH_IMAGE
    camera_info_topic: str = topics.CAMERA_INFO
    cloud_topic: str = topics.OBJECT_CLOUD
    object_image_topic: str = topics.OBJECT_IMAGE
    mask_topic: str = topics.OBJECT_MASK
    base_frame: str = "panda_link0"
    camera_xyz_m: tuple[float, float, float] = DEFAULT_CAMERA_XYZ_M
    camera_quat_xyzw: tuple[float, float, float, float] = DEFAULT_CAMERA_QUAT_XYZW
    segmenter: str = "tabletop"
    max_rate_hz: float = 2.0
    sync_tolerance_s: float = 0.0
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)

    def __post_init__(self) -> None:
        for name in ("color_topic", "depth_topic", "camera_info_topic", "cloud_topic", "object_image_topic",
                     "mask_topic", "base_frame"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        object.__setattr__(self, "camera_xyz_m", tuple(float(v) for v in self.camera_xyz_m))
        object.__setattr__(self, "camera_quat_xyzw", tuple(float(v) for v in self.camera_quat_xyzw))
        pose_matrix(self.camera_xyz_m, self.camera_quat_xyzw)  # raises with the reason
        if self.segmenter not in segmenter_names():
            raise ValueError(f"unknown segmenter {self.segmenter!r}; known: {', '.join(segmenter_names())}")
        if not (math.isfinite(self.max_rate_hz) and self.max_rate_hz > 0.0):
            raise ValueError(f"max_rate_hz must be > 0, got {self.max_rate_hz}")
        if not 0.0 <= self.sync_tolerance_s <= 1.0:
            raise ValueError(f"sync_tolerance_s must be in [0, 1] s, got {self.sync_tolerance_s}")

    @property
    def T_base_camera(self) -> np.ndarray:  # noqa: N802 - transform naming
        """``(4, 4)`` pose of the camera optical frame in the base frame."""
        return pose_matrix(self.camera_xyz_m, self.camera_quat_xyzw)
