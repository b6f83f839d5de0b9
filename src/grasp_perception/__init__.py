"""RGB-D + CameraInfo → segmented target object point cloud in the robot base frame.

Pure core (numpy/scipy only): ``camera`` (pinhole model), ``cloud_ops`` (crop, voxels, RANSAC,
clusters), ``segmentation`` (Segmenter ABC, config, result, registry), ``tabletop`` (default
segmenter), ``sync`` (stamp pairing), ``synthetic`` (analytic RGB-D renderer), ``errors``,
``config`` (node settings). ``conversions`` (message ↔ numpy) and ``node`` import ROS.
"""
from grasp_perception.camera import CameraIntrinsics, backproject, look_at, pose_matrix, project, transform_points
from grasp_perception.errors import (InvalidDepthError, NoObjectError, NoPlaneError, PerceptionError,
                                     SizeMismatchError, UnsupportedEncodingError)
from grasp_perception.segmentation import (ClusterSummary, SegmentationConfig, SegmentationResult, Segmenter,
                                           make_segmenter, register_segmenter)

__all__ = [
    "CameraIntrinsics", "ClusterSummary", "InvalidDepthError", "NoObjectError", "NoPlaneError",
    "PerceptionError", "SegmentationConfig", "SegmentationResult", "Segmenter", "SizeMismatchError",
    "UnsupportedEncodingError", "backproject", "look_at", "make_segmenter", "pose_matrix", "project",
    "register_segmenter", "transform_points",
]
