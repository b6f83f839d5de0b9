"""What one camera view says about free space: points behind the visible surface may be inside the object.

A single-view cloud shows the object's near side only. A point on a camera ray that meets the cloud
and lies *farther* than that cloud point is hidden from the camera: it may be inside the object.
A point in front of the surface, or on a ray that misses the object, is in space the camera saw
empty. The grasp ranking uses this to demote hands that would start inside the unseen back of the
object (the validator's most common failure, ``initial_penetration``; README, "The ranking").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Smallest angular radius of the ray test, radians: ~2.4 mm at 0.4 m, a few pixels of a 320 × 240 view.
RAY_RADIUS_RAD = 0.006
#: The radius is at least this many times the cloud's median angular point spacing (sparse clouds).
RAY_RADIUS_SPACINGS = 1.5


@dataclass
class VisibleSurface:
    """A view's cloud with its camera, for distance and hidden-depth queries.

    Args:
        cloud: (N, 3) object points, metres (non-finite rows are dropped).
        camera_xyz: (3,) camera position, same frame, metres.
        ray_radius_rad: angular radius within which a cloud point is "on" a query's camera ray; None:
            the larger of :data:`RAY_RADIUS_RAD` and :data:`RAY_RADIUS_SPACINGS` × the cloud's median
            angular point spacing (so a ray between the points of a sparse cloud still meets it).

    Raises:
        ValueError: no finite point, or a camera position that is not 3 finite numbers.
    """

    cloud: np.ndarray
    camera_xyz: np.ndarray
    ray_radius_rad: float | None = None

    def __post_init__(self) -> None:
        from scipy.spatial import cKDTree

        cloud = np.asarray(self.cloud, dtype=np.float64).reshape(-1, 3)
        self.cloud = cloud[np.isfinite(cloud).all(axis=1)]
        self.camera_xyz = np.asarray(self.camera_xyz, dtype=np.float64).reshape(-1)
        if len(self.cloud) == 0:
            raise ValueError("the cloud has no finite point")
        if self.camera_xyz.shape != (3,) or not np.isfinite(self.camera_xyz).all():
            raise ValueError(f"camera_xyz must be 3 finite numbers, got {self.camera_xyz.tolist()}")
        rays = self.cloud - self.camera_xyz
        self._range = np.linalg.norm(rays, axis=1)
        self._tree = cKDTree(self.cloud)
        directions = rays / np.maximum(self._range, 1e-12)[:, None]
        self._rays = cKDTree(directions)
        if self.ray_radius_rad is None:
            probe = directions[::max(1, len(directions) // 512)]             # the median of ~512 points
            spacing = self._rays.query(probe, k=2)[0][:, 1] if len(directions) > 1 else np.zeros(1)
            self.ray_radius_rad = max(RAY_RADIUS_RAD, RAY_RADIUS_SPACINGS * float(np.median(spacing)))

    def nearest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Q,) distance to the nearest cloud point, metres, and (Q,) its index, for (Q, 3) ``points``."""
        return self._tree.query(np.asarray(points, dtype=np.float64).reshape(-1, 3))

    def depth_behind(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How far each point lies behind the visible surface along its camera ray.

        Args:
            points: (Q, 3) query points, metres.

        Returns:
            (Q,) range beyond the cloud point on the same ray, metres (negative: in front of it; 0
            where the ray misses the cloud), and (Q,) bool: the ray meets the cloud.
        """
        rays = np.asarray(points, dtype=np.float64).reshape(-1, 3) - self.camera_xyz
        ranges = np.linalg.norm(rays, axis=1)
        gap, hit = self._rays.query(rays / np.maximum(ranges, 1e-12)[:, None],
                                    distance_upper_bound=self.ray_radius_rad)
        found = np.isfinite(gap)
        behind = np.zeros(len(rays))
        behind[found] = ranges[found] - self._range[hit[found]]
        return behind, found

    def hidden_near(self, points: np.ndarray, near_m: float) -> np.ndarray:
        """(Q,) bool: behind the visible surface and within ``near_m`` of the cloud — likely inside the object."""
        behind, found = self.depth_behind(points)
        return found & (behind > 0.0) & (self.nearest(points)[0] < near_m)
