"""Segmenter interface, its configuration and result types, and the segmenter registry.

A :class:`Segmenter` turns one registered RGB-D frame into the target object's points in the
robot base frame. ``tabletop`` (geometric: table plane + Euclidean clusters) is the default;
``prompt`` (Grounded-SAM style, text prompt + local checkpoint) is reserved and not built yet.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from grasp_perception.camera import DEFAULT_MAX_DEPTH_M, CameraIntrinsics, valid_depth_mask
from grasp_perception.errors import InvalidDepthError, SegmenterUnavailableError, SizeMismatchError

#: Target selection rules of :class:`SegmentationConfig`.
TARGET_RULES = ("largest", "nearest", "index")


def _vec3(name: str, value) -> tuple[float, float, float]:
    vec = tuple(float(v) for v in value)
    if len(vec) != 3 or not all(math.isfinite(v) for v in vec):
        raise ValueError(f"{name} must be 3 finite numbers (x, y, z), got {value!r}")
    return vec


@dataclass(frozen=True)
class SegmentationConfig:
    """Settings of the tabletop segmenter (all lengths in metres, base frame).

    Attributes:
        workspace_min_m: lower corner (x, y, z) of the crop box; must include the table surface.
        workspace_max_m: upper corner (x, y, z) of the crop box.
        voxel_size_m: voxel edge for downsampling before plane fit and clustering.
        plane_distance_m: RANSAC inlier distance to the table plane.
        plane_iterations: RANSAC hypotheses.
        plane_max_tilt_deg: largest angle between the table normal and base +z, degrees.
        object_min_height_m: a point belongs to an object if it is this far above the table.
        cluster_tolerance_m: Euclidean clustering link distance (> voxel_size_m).
        min_cluster_points: smallest cluster kept, in voxels (downsampled points).
        max_cluster_points: largest cluster kept, in voxels.
        target: ``largest`` (most voxels), ``nearest`` (centroid nearest ``target_point_m``) or
            ``index`` (``target_index`` in the cluster order: increasing horizontal distance of
            the centroid from the base origin, ties by x then y).
        target_point_m: reference point (x, y, z) for ``nearest``.
        target_index: cluster index for ``index``.
        seed: RANSAC random seed (results are deterministic per seed).
        max_depth_m: depth beyond this is invalid, metres.
        max_invalid_fraction: a frame with a larger fraction of invalid depth pixels is rejected.
    """

    workspace_min_m: tuple[float, float, float] = (0.2, -0.6, -0.1)
    workspace_max_m: tuple[float, float, float] = (1.0, 0.6, 0.35)
    voxel_size_m: float = 0.005
    plane_distance_m: float = 0.01
    plane_iterations: int = 200
    plane_max_tilt_deg: float = 20.0
    object_min_height_m: float = 0.01
    cluster_tolerance_m: float = 0.015
    min_cluster_points: int = 30
    max_cluster_points: int = 100_000
    target: str = "largest"
    target_point_m: tuple[float, float, float] = (0.5, 0.0, 0.0)
    target_index: int = 0
    seed: int = 0
    max_depth_m: float = DEFAULT_MAX_DEPTH_M
    max_invalid_fraction: float = 0.9

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen
        lo = _vec3("workspace_min_m", self.workspace_min_m)
        hi = _vec3("workspace_max_m", self.workspace_max_m)
        if not all(a < b for a, b in zip(lo, hi)):
            raise ValueError(f"workspace_min_m {lo} must be below workspace_max_m {hi} on every axis")
        put("workspace_min_m", lo)
        put("workspace_max_m", hi)
        put("target_point_m", _vec3("target_point_m", self.target_point_m))
        for name in ("voxel_size_m", "plane_distance_m", "cluster_tolerance_m", "max_depth_m"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be > 0, got {value}")
            put(name, value)
        if self.cluster_tolerance_m <= self.voxel_size_m:
            raise ValueError(f"cluster_tolerance_m ({self.cluster_tolerance_m}) must exceed voxel_size_m "
                             f"({self.voxel_size_m}) or neighbouring voxels never link")
        if not 0.0 <= float(self.object_min_height_m) < 1.0:
            raise ValueError(f"object_min_height_m must be in [0, 1) m, got {self.object_min_height_m}")
        if not 0.0 <= float(self.plane_max_tilt_deg) <= 90.0:
            raise ValueError(f"plane_max_tilt_deg must be in [0, 90], got {self.plane_max_tilt_deg}")
        if not 0.0 < float(self.max_invalid_fraction) <= 1.0:
            raise ValueError(f"max_invalid_fraction must be in (0, 1], got {self.max_invalid_fraction}")
        for name, lowest in (("plane_iterations", 1), ("min_cluster_points", 1), ("target_index", 0),
                             ("seed", 0)):
            value = getattr(self, name)
            if int(value) != value or value < lowest:
                raise ValueError(f"{name} must be an integer >= {lowest}, got {value!r}")
            put(name, int(value))
        if int(self.max_cluster_points) < self.min_cluster_points:
            raise ValueError(f"max_cluster_points ({self.max_cluster_points}) must be >= "
                             f"min_cluster_points ({self.min_cluster_points})")
        if self.target not in TARGET_RULES:
            raise ValueError(f"target must be one of {', '.join(TARGET_RULES)}, got {self.target!r}")


@dataclass(frozen=True)
class ClusterSummary:
    """One object candidate standing on the table.

    Attributes:
        centroid_m: ``(3,)`` mean of its full-resolution points, metres, base frame.
        extent_m: ``(3,)`` axis-aligned size (max − min) of its voxels, metres, base frame.
        n_voxels: number of downsampled points.
        n_points: number of full-resolution points assigned to it.
    """

    centroid_m: tuple[float, float, float]
    extent_m: tuple[float, float, float]
    n_voxels: int
    n_points: int


@dataclass(frozen=True)
class SegmentationResult:
    """The target object of one frame.

    Attributes:
        mask: ``(H, W)`` bool, True on the target's pixels.
        points: ``(N, 3)`` float32 full-resolution target points, metres, base frame.
        colors: ``(N, 3)`` uint8 RGB of each point.
        pixels: ``(N, 2)`` int32 ``(row, col)`` of each point in the image.
        clusters: every candidate, in the documented order (see ``SegmentationConfig.target``).
        chosen: index of the target in ``clusters``.
        plane: ``(4,)`` table plane ``(a, b, c, d)``, unit normal up, base frame, metres.
        timings_ms: wall time of each pipeline stage, milliseconds.
    """

    mask: np.ndarray
    points: np.ndarray
    colors: np.ndarray
    pixels: np.ndarray
    clusters: tuple[ClusterSummary, ...]
    chosen: int
    plane: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)


class Segmenter(abc.ABC):
    """Turns one registered RGB-D frame into the target object's points in the base frame."""

    @abc.abstractmethod
    def segment(self, rgb: np.ndarray, depth_m: np.ndarray, intrinsics: CameraIntrinsics,
                T_base_camera: np.ndarray) -> SegmentationResult:  # noqa: N803 - transform name
        """Segment the target object.

        Args:
            rgb: ``(H, W, 3)`` uint8 RGB image registered to the depth image.
            depth_m: ``(H, W)`` float32 depth along the optical axis, metres (NaN/0/inf invalid).
            intrinsics: pinhole intrinsics of both images.
            T_base_camera: ``(4, 4)`` pose of the camera optical frame in the base frame.

        Raises:
            PerceptionError: bad input, or no target found (see ``grasp_perception.errors``).
        """


def check_frame(rgb: np.ndarray, depth_m: np.ndarray, intrinsics: CameraIntrinsics,
                max_depth_m: float, max_invalid_fraction: float) -> np.ndarray:
    """Validate a frame's shapes and depth quality; return its ``(H, W)`` bool valid-depth mask.

    Raises:
        SizeMismatchError: depth vs intrinsics, or color vs depth, sizes differ.
        InvalidDepthError: more than ``max_invalid_fraction`` of the depth pixels are invalid.
    """
    if depth_m.ndim != 2:
        raise SizeMismatchError(f"depth image must be 2-D (H, W), got shape {depth_m.shape}")
    h, w = depth_m.shape
    if (h, w) != (intrinsics.height, intrinsics.width):
        raise SizeMismatchError(f"depth image {w}×{h} does not match CameraInfo {intrinsics.size_text}; "
                                "publish the CameraInfo of the depth-registered color stream")
    if rgb.shape != (h, w, 3):
        raise SizeMismatchError(f"color image {rgb.shape[1] if rgb.ndim > 1 else '?'}×{rgb.shape[0]} "
                                f"does not match depth {w}×{h}; use depth aligned to color")
    valid = valid_depth_mask(depth_m, max_depth_m)
    invalid_fraction = 1.0 - float(valid.mean())
    if invalid_fraction > max_invalid_fraction:
        raise InvalidDepthError(
            f"depth image has {invalid_fraction:.0%} invalid pixels (NaN/0/inf or > {max_depth_m:g} m; "
            f"limit {max_invalid_fraction:.0%}): check the depth encoding and units (32FC1 metres, "
            "16UC1 millimetres), that the camera is running and sees the table, and max_depth_m")
    return valid


def _make_tabletop(config: SegmentationConfig | None) -> Segmenter:
    from grasp_perception.tabletop import TabletopSegmenter

    return TabletopSegmenter(config or SegmentationConfig())


def _make_prompt(config) -> Segmenter:
    raise SegmenterUnavailableError(
        "segmenter 'prompt' (text-prompted, Grounded-SAM style) is not built yet: it will load a "
        "detector/segmenter from a local checkpoint path (no pretrained weights can be downloaded "
        "here). Use segmenter 'tabletop' for now, or register your own with register_segmenter().")


_REGISTRY: dict[str, Callable[..., Segmenter]] = {"tabletop": _make_tabletop, "prompt": _make_prompt}


def register_segmenter(name: str, factory: Callable[..., Segmenter]) -> None:
    """Make ``make_segmenter(name, config)`` call ``factory(config)``; heavy imports belong inside it."""
    if not name or not isinstance(name, str):
        raise ValueError(f"segmenter name must be a non-empty string, got {name!r}")
    _REGISTRY[name] = factory


def segmenter_names() -> tuple[str, ...]:
    """Registered segmenter names, sorted."""
    return tuple(sorted(_REGISTRY))


def make_segmenter(name: str = "tabletop", config=None) -> Segmenter:
    """Build a registered segmenter.

    Args:
        name: ``tabletop`` (default) or another registered name; ``prompt`` is reserved.
        config: the segmenter's config (``SegmentationConfig`` for ``tabletop``; None = defaults).

    Raises:
        ValueError: unknown name (the message lists the known ones).
        SegmenterUnavailableError: the segmenter exists but cannot run here (``prompt``).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown segmenter {name!r}; known: {', '.join(segmenter_names())}")
    return _REGISTRY[name](config)
