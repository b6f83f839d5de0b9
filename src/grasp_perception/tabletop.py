"""Default segmenter: objects standing on a table, found geometrically.

Pipeline: back-project into the base frame (cached per-pixel rays, the same pinhole model as
``camera.backproject``) → workspace crop → voxel downsample → RANSAC near-horizontal
table plane (fitted on voxels of every PLANE_POINT_STRIDE-th point) → full-resolution points above
the plane → their voxels → Euclidean clusters of the voxels → pick the target → full-resolution
points of the target (each point takes the cluster of the voxel it fell into, i.e. of a
downsampled point closer than the voxel diagonal, below the cluster tolerance) and their mask.
"""
from __future__ import annotations

import time

import numpy as np

from grasp_perception.camera import CameraIntrinsics
from grasp_perception.cloud_ops import euclidean_clusters, ransac_plane, voxel_downsample
from grasp_perception.errors import NoObjectError, NoPlaneError
from grasp_perception.segmentation import (ClusterSummary, SegmentationConfig, SegmentationResult,
                                           Segmenter, check_frame)

#: Fewest voxels a table plane must have (≈ 12 cm² at 5 mm voxels).
MIN_PLANE_VOXELS = 50
#: The plane is fitted on every n-th valid point (≈ 2 px spacing at 4); objects use all points.
PLANE_POINT_STRIDE = 4


class TabletopSegmenter(Segmenter):
    """Segment the target object standing on the dominant near-horizontal plane of the workspace."""

    def __init__(self, config: SegmentationConfig | None = None) -> None:
        """Args: config: pipeline settings; None uses the defaults of :class:`SegmentationConfig`."""
        self.config = config or SegmentationConfig()
        self._rays_key: tuple | None = None
        self._rays = np.zeros((3, 0, 0), np.float32)

    def segment(self, rgb: np.ndarray, depth_m: np.ndarray, intrinsics: CameraIntrinsics,
                T_base_camera: np.ndarray) -> SegmentationResult:  # noqa: N803
        """See :meth:`Segmenter.segment`.

        Raises:
            SizeMismatchError: image sizes disagree with each other or with the intrinsics.
            InvalidDepthError: too many invalid depth pixels.
            NoObjectError: nothing valid in the workspace, nothing above the table, no cluster of
                acceptable size, or ``target_index`` beyond the number of clusters.
            NoPlaneError: no near-horizontal table plane in the workspace.
        """
        cfg = self.config
        clock = _Stopwatch()
        rgb = np.asarray(rgb)
        depth_m = np.asarray(depth_m)
        keep = check_frame(rgb, depth_m, intrinsics, cfg.max_depth_m, cfg.max_invalid_fraction)

        # Back-project straight into the base frame: p = origin + depth · (R · ray), ray z = 1.
        rays = self._base_rays(intrinsics, T_base_camera)
        origin = np.asarray(T_base_camera, dtype=np.float32)[:3, 3]
        z = np.where(keep, depth_m, 0.0).astype(np.float32)
        for axis in range(3):
            coord = z * rays[axis] + origin[axis]
            keep &= (coord >= cfg.workspace_min_m[axis]) & (coord <= cfg.workspace_max_m[axis])
        rows, cols = np.nonzero(keep)
        base = rays[:, rows, cols].T * z[rows, cols, None] + origin
        clock.lap("backproject_crop")
        if len(base) == 0:
            raise NoObjectError(
                f"no valid depth point inside the workspace box {cfg.workspace_min_m}..{cfg.workspace_max_m} m "
                "(base frame): check the camera extrinsics (camera_xyz, camera_quat_xyzw of the optical "
                "frame) and the workspace limits")

        # The table plane is fitted on voxels of a strided subset: a plane needs no full coverage.
        voxels, _ = voxel_downsample(base[::PLANE_POINT_STRIDE], cfg.voxel_size_m)
        clock.lap("voxel")
        fit = ransac_plane(voxels, cfg.plane_distance_m, cfg.plane_iterations,
                           max_tilt_deg=cfg.plane_max_tilt_deg, seed=cfg.seed, min_inliers=MIN_PLANE_VOXELS)
        if fit is None:
            raise NoPlaneError(
                f"no table plane within {cfg.plane_max_tilt_deg:g}° of horizontal with >= {MIN_PLANE_VOXELS} "
                f"voxels among {len(voxels)} in the workspace: make the table visible inside the "
                "workspace box (its z range must include the table) and check the camera extrinsics")
        plane = fit[0]
        clock.lap("plane")

        above = np.flatnonzero(base @ plane[:3].astype(np.float32) + np.float32(plane[3])
                               > cfg.object_min_height_m)
        if len(above) == 0:
            raise NoObjectError(
                f"no object cluster above the table plane in the workspace (no point higher than "
                f"{cfg.object_min_height_m:g} m above it): place an object in the workspace box or "
                "lower object_min_height_m")
        # Every full-resolution point above the table belongs to exactly one voxel, and takes
        # that voxel's cluster (its voxel centroid is its nearest downsampled point, well within
        # the cluster tolerance).
        above_vox, inverse = voxel_downsample(base[above], cfg.voxel_size_m)
        labels, count = euclidean_clusters(above_vox, cfg.cluster_tolerance_m)
        sizes = np.bincount(labels, minlength=count)
        keep = np.flatnonzero((sizes >= cfg.min_cluster_points) & (sizes <= cfg.max_cluster_points))
        if len(keep) == 0:
            raise NoObjectError(
                f"no object cluster above the table plane in the workspace: {count} cluster(s) of "
                f"{sorted(sizes.tolist(), reverse=True)[:5]} voxels, none within "
                f"[{cfg.min_cluster_points}, {cfg.max_cluster_points}] (min/max_cluster_points)")
        full_label = labels[inverse]
        full_counts = np.bincount(full_label, minlength=count)
        full_sums = np.stack([np.bincount(full_label, weights=base[above, axis], minlength=count)
                              for axis in range(3)], axis=1)
        clock.lap("cluster")

        clusters = []
        for label in keep:
            members = above_vox[labels == label]
            clusters.append((label, ClusterSummary(
                centroid_m=tuple(float(v) for v in full_sums[label] / full_counts[label]),
                extent_m=tuple(float(v) for v in members.max(axis=0) - members.min(axis=0)),
                n_voxels=int(sizes[label]), n_points=int(full_counts[label]))))
        clusters.sort(key=lambda item: _order_key(item[1].centroid_m))
        chosen = self._choose([c for _, c in clusters])
        target = above[full_label == clusters[chosen][0]]

        mask = np.zeros(depth_m.shape, dtype=bool)
        mask[rows[target], cols[target]] = True
        pixels = np.stack((rows[target], cols[target]), axis=1).astype(np.int32)
        colors = rgb[rows[target], cols[target]].astype(np.uint8)
        clock.lap("assign")
        return SegmentationResult(mask=mask, points=base[target].astype(np.float32), colors=colors,
                                  pixels=pixels, clusters=tuple(c for _, c in clusters), chosen=chosen,
                                  plane=plane, timings_ms=clock.laps_ms)

    def _base_rays(self, intrinsics: CameraIntrinsics, T_base_camera: np.ndarray) -> np.ndarray:  # noqa: N803
        """``(3, H, W)`` float32 per-pixel ray directions (optical z = 1) rotated into the base frame.

        Cached for the last (intrinsics, rotation): both are fixed for a running camera.
        """
        rotation = np.asarray(T_base_camera, dtype=np.float64)[:3, :3]
        key = (intrinsics, rotation.tobytes())
        if self._rays_key != key:
            cols = (np.arange(intrinsics.width) - intrinsics.cx) / intrinsics.fx
            rows = (np.arange(intrinsics.height) - intrinsics.cy) / intrinsics.fy
            rays_cam = np.stack(np.broadcast_arrays(cols[None, :], rows[:, None], 1.0))  # (3, H, W)
            self._rays = np.einsum("ij,jhw->ihw", rotation, rays_cam).astype(np.float32)
            self._rays_key = key
        return self._rays

    def _choose(self, clusters: list[ClusterSummary]) -> int:
        """Index of the target among the ordered ``clusters`` according to ``config.target``."""
        cfg = self.config
        if cfg.target == "largest":
            return int(np.argmax([c.n_voxels for c in clusters]))
        if cfg.target == "nearest":
            ref = np.asarray(cfg.target_point_m)
            return int(np.argmin([np.linalg.norm(np.asarray(c.centroid_m) - ref) for c in clusters]))
        if cfg.target_index >= len(clusters):
            raise NoObjectError(
                f"target_index {cfg.target_index} but only {len(clusters)} object cluster(s) found "
                "(ordered by horizontal distance from the base origin, nearest first)")
        return cfg.target_index


def _order_key(centroid_m) -> tuple[float, float, float]:
    """Cluster order: horizontal distance from the base origin (mm resolution), then x, then y."""
    x, y, _ = centroid_m
    return (round(float(np.hypot(x, y)), 3), x, y)


class _Stopwatch:
    """Named wall-clock laps in milliseconds."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.laps_ms: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps_ms[name] = (now - self._last) * 1e3
        self._last = now
