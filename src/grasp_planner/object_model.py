"""A solid proxy of the target object from a single-view partial cloud, for contact and penetration tests.

Single-view clouds only show the camera-facing side. The proxy completes the object with three
assumptions that hold for objects resting on a table (mugs, drills, bottles, boxes): it is
roughly symmetric about a vertical axis, its unseen depth along the view is about its visible
width, and it is supported down to the table. The proxy is the
convex hull of the cloud, its point reflection through that vertical axis, and their projections
onto the table plane. Signed distance: negative inside, positive outside (metres).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError

MIN_OBJECT_POINTS = 30
#: Cloud points kept for the hull (random subset): bounds facet count and so query cost.
MAX_HULL_INPUT_POINTS = 96


class ObjectModelError(ValueError):
    """The object cloud cannot be turned into a solid proxy (too few points, degenerate)."""


@dataclass(frozen=True)
class ObjectProxy:
    """Convex solid proxy of an object (base frame, metres)."""

    hull_points: np.ndarray   # (M, 3) points whose convex hull is the proxy
    equations: np.ndarray     # (F, 4) facet planes n·x + d (n outward unit normals)
    center: np.ndarray        # (3,) estimated centre of the solid
    top_z: float              # highest point (metres)
    table_z: float            # support plane height (metres)

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """(N,) signed distance of (N, 3) points; < 0 inside. Exact inside, a lower bound outside."""
        return (points @ self.equations[:, :3].T + self.equations[:, 3]).max(axis=1)

    def normal_at(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) outward normal of the facet nearest to each point (by signed distance)."""
        k = (points @ self.equations[:, :3].T + self.equations[:, 3]).argmax(axis=1)
        return self.equations[k, :3]

    @property
    def extent(self) -> np.ndarray:
        """(3,) axis-aligned size of the proxy (metres)."""
        return self.hull_points.max(axis=0) - self.hull_points.min(axis=0)


def build_object_proxy(cloud: np.ndarray, table_z: float,
                       camera_xyz: np.ndarray | None = None) -> ObjectProxy:
    """Complete a partial object cloud into a convex solid proxy.

    Args:
        cloud: (N, 3) object points in the base frame (metres), N >= 30.
        table_z: height of the supporting table plane in the base frame (metres).
        camera_xyz: (3,) camera position in the base frame; the unseen back is assumed to lie
            away from it. ``None`` assumes a complete cloud (no completion).

    Raises:
        ObjectModelError: fewer than 30 finite points, or a degenerate (flat) cloud.
    """
    cloud = np.asarray(cloud, dtype=float).reshape(-1, 3)
    cloud = cloud[np.isfinite(cloud).all(axis=1)]
    if len(cloud) < MIN_OBJECT_POINTS:
        raise ObjectModelError(f"object cloud has {len(cloud)} finite points; need at least "
                               f"{MIN_OBJECT_POINTS} to model the object")
    if len(cloud) > MAX_HULL_INPUT_POINTS:
        keep = np.random.default_rng(0).choice(len(cloud), MAX_HULL_INPUT_POINTS, replace=False)
        extremes = np.concatenate([cloud.argmin(axis=0), cloud.argmax(axis=0)])
        cloud = cloud[np.union1d(keep, extremes)]
    centroid = cloud.mean(axis=0)
    axis_xy = np.array([centroid[0], centroid[1]])
    parts = [cloud]
    if camera_xyz is not None:
        view = centroid[:2] - np.asarray(camera_xyz, dtype=float)[:2]
        if np.linalg.norm(view) > 1e-6:
            view /= np.linalg.norm(view)
            side = np.array([-view[1], view[0]])
            along = cloud[:, :2] @ view
            width = np.ptp(cloud[:, :2] @ side)
            # Unseen depth assumed equal to the visible width (round/square footprint); an
            # elevated camera may already see the far rim, then the visible depth wins.
            depth = max(width, np.ptp(along))
            center_along = along.min() + 0.5 * depth
            axis_xy = centroid[:2] + view * (center_along - centroid[:2] @ view)
            mirrored = cloud.copy()
            mirrored[:, :2] = 2 * axis_xy - cloud[:, :2]
            parts.append(mirrored)
    solid = np.concatenate(parts)
    floor = solid.copy()
    floor[:, 2] = table_z
    hull_input = np.concatenate([solid, floor])
    try:
        hull = ConvexHull(hull_input, qhull_options="Qt C0.001")  # merge facets within 1 mm
    except QhullError as exc:
        raise ObjectModelError(f"object cloud is degenerate (extent {np.ptp(cloud, axis=0).round(3)} m): {exc}") from exc
    pts = hull_input[hull.vertices]
    center = np.array([axis_xy[0], axis_xy[1], 0.5 * (table_z + solid[:, 2].max())])
    return ObjectProxy(hull_points=pts, equations=hull.equations, center=center,
                       top_z=float(solid[:, 2].max()), table_z=float(table_z))
