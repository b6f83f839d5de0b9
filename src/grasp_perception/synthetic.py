"""Analytic RGB-D renderer of a tabletop scene (boxes and upright cylinders) for tests and demos.

A pinhole ray caster in numpy: every pixel's ray is intersected with a finite horizontal table
rectangle and each object; the nearest hit gives the depth, color and object label. Scene
geometry is in the robot base frame (metres, +z up).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grasp_perception.camera import CameraIntrinsics

#: Label of table pixels and of pixels that hit nothing in :class:`RenderedFrame`.
TABLE_LABEL = -1
BACKGROUND_LABEL = -2


@dataclass(frozen=True)
class Box:
    """Axis-aligned box: ``center_m`` (3,) and full ``size_m`` (3,), metres; RGB ``color``."""

    center_m: tuple[float, float, float]
    size_m: tuple[float, float, float]
    color: tuple[int, int, int] = (200, 40, 40)

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Ray parameter of the first hit per ray (inf = miss); rays are ``origin + t · dirs``."""
        lo = np.asarray(self.center_m) - np.asarray(self.size_m) / 2.0
        hi = np.asarray(self.center_m) + np.asarray(self.size_m) / 2.0
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (lo - origin) / dirs
            t2 = (hi - origin) / dirs
        t_near = np.nanmax(np.minimum(t1, t2), axis=1)
        t_far = np.nanmin(np.maximum(t1, t2), axis=1)
        return np.where((t_far >= t_near) & (t_near > 0.0), t_near, np.inf)

    def bounds_m(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` corners, metres."""
        half = np.asarray(self.size_m) / 2.0
        return np.asarray(self.center_m) - half, np.asarray(self.center_m) + half


@dataclass(frozen=True)
class Cylinder:
    """Upright cylinder: axis through ``center_xy_m``, from ``base_z_m`` up by ``height_m``; metres."""

    center_xy_m: tuple[float, float]
    base_z_m: float
    radius_m: float
    height_m: float
    color: tuple[int, int, int] = (40, 160, 40)

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Ray parameter of the first hit per ray (inf = miss); rays are ``origin + t · dirs``."""
        cx, cy = self.center_xy_m
        z0, z1 = self.base_z_m, self.base_z_m + self.height_m
        ox, oy = origin[0] - cx, origin[1] - cy
        a = dirs[:, 0] ** 2 + dirs[:, 1] ** 2
        b = 2.0 * (dirs[:, 0] * ox + dirs[:, 1] * oy)
        c = ox * ox + oy * oy - self.radius_m ** 2
        disc = b * b - 4.0 * a * c
        with np.errstate(divide="ignore", invalid="ignore"):
            t_side = (-b - np.sqrt(disc)) / (2.0 * a)
            z_side = origin[2] + t_side * dirs[:, 2]
            side_ok = (disc >= 0.0) & (a > 1e-12) & (t_side > 0.0) & (z_side >= z0) & (z_side <= z1)
            best = np.where(side_ok, t_side, np.inf)
            for zc in (z0, z1):
                t_cap = (zc - origin[2]) / dirs[:, 2]
                px = ox + t_cap * dirs[:, 0]
                py = oy + t_cap * dirs[:, 1]
                cap_ok = (t_cap > 0.0) & (px * px + py * py <= self.radius_m ** 2)
                best = np.minimum(best, np.where(cap_ok, t_cap, np.inf))
        return best

    def bounds_m(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` corners of the bounding box, metres."""
        cx, cy = self.center_xy_m
        r = self.radius_m
        return (np.array([cx - r, cy - r, self.base_z_m]),
                np.array([cx + r, cy + r, self.base_z_m + self.height_m]))


@dataclass(frozen=True)
class Scene:
    """A table rectangle at height ``table_z_m`` spanning ``table_min_xy_m``..``table_max_xy_m``, and objects."""

    objects: tuple = ()
    table_z_m: float = 0.0
    table_min_xy_m: tuple[float, float] = (0.0, -0.8)
    table_max_xy_m: tuple[float, float] = (1.2, 0.8)
    table_color: tuple[int, int, int] = (150, 120, 90)


@dataclass(frozen=True)
class RenderedFrame:
    """Output of :func:`render`.

    Attributes:
        rgb: ``(H, W, 3)`` uint8 RGB.
        depth_m: ``(H, W)`` float32 depth along the optical axis, metres; NaN where nothing is hit.
        labels: ``(H, W)`` int32: object index, ``TABLE_LABEL`` or ``BACKGROUND_LABEL``.
    """

    rgb: np.ndarray
    depth_m: np.ndarray
    labels: np.ndarray


def render(scene: Scene, intrinsics: CameraIntrinsics, T_base_camera: np.ndarray, *,  # noqa: N803
           noise_std_m: float = 0.0, seed: int = 0) -> RenderedFrame:
    """Ray-cast the scene from a pinhole camera.

    Args:
        scene: table and objects, base frame.
        intrinsics: camera intrinsics.
        T_base_camera: ``(4, 4)`` pose of the camera optical frame in the base frame.
        noise_std_m: standard deviation of Gaussian noise added to valid depths, metres.
        seed: noise seed.

    Returns:
        The rendered frame.
    """
    h, w = intrinsics.height, intrinsics.width
    rows, cols = np.mgrid[0:h, 0:w]
    # Ray direction with optical-frame z = 1, so the ray parameter t is the depth.
    d_cam = np.stack(((cols.ravel() - intrinsics.cx) / intrinsics.fx,
                      (rows.ravel() - intrinsics.cy) / intrinsics.fy, np.ones(h * w)), axis=1)
    transform = np.asarray(T_base_camera, dtype=np.float64)
    dirs = d_cam @ transform[:3, :3].T
    origin = transform[:3, 3]

    with np.errstate(divide="ignore", invalid="ignore"):
        t_table = (scene.table_z_m - origin[2]) / dirs[:, 2]
    hx = origin[0] + t_table * dirs[:, 0]
    hy = origin[1] + t_table * dirs[:, 1]
    on_table = ((t_table > 0.0) & (hx >= scene.table_min_xy_m[0]) & (hx <= scene.table_max_xy_m[0])
                & (hy >= scene.table_min_xy_m[1]) & (hy <= scene.table_max_xy_m[1]))
    depth = np.where(on_table, t_table, np.inf)
    labels = np.where(on_table, TABLE_LABEL, BACKGROUND_LABEL).astype(np.int32)
    for index, obj in enumerate(scene.objects):
        t_obj = obj.intersect(origin, dirs)
        closer = t_obj < depth
        depth[closer] = t_obj[closer]
        labels[closer] = index

    palette = np.array([scene.table_color] + [o.color for o in scene.objects] + [(0, 0, 0)], np.uint8)
    rgb = palette[np.where(labels == BACKGROUND_LABEL, len(palette) - 1, labels + 1)]
    depth = np.where(np.isfinite(depth), depth, np.nan)
    if noise_std_m > 0.0:
        depth = depth + np.random.default_rng(seed).normal(0.0, noise_std_m, depth.shape)
    return RenderedFrame(rgb=rgb.reshape(h, w, 3), depth_m=depth.reshape(h, w).astype(np.float32),
                         labels=labels.reshape(h, w))


def demo_scene() -> Scene:
    """Three objects on a table at z = 0 inside the default workspace (base frame, metres).

    0: red box 8×6×12 cm at (0.45, 0.15); 1: green cylinder r 4.5 cm, h 18 cm at (0.55, −0.12)
    (the largest visible surface); 2: blue box 5×5×6 cm at (0.65, 0.02). Their horizontal
    distances from the base origin increase with the index (0.47, 0.56, 0.65 m).
    """
    return Scene(objects=(
        Box(center_m=(0.45, 0.15, 0.06), size_m=(0.08, 0.06, 0.12), color=(200, 40, 40)),
        Cylinder(center_xy_m=(0.55, -0.12), base_z_m=0.0, radius_m=0.045, height_m=0.18, color=(40, 160, 40)),
        Box(center_m=(0.65, 0.02, 0.03), size_m=(0.05, 0.05, 0.06), color=(40, 40, 200)),
    ))


def demo_camera(width: int = 640, height: int = 480) -> tuple[CameraIntrinsics, np.ndarray]:
    """Intrinsics (≈ 58° horizontal field of view) and ``T_base_camera`` of the node's default camera.

    The optical frame sits at (1.1, 0, 0.6) m looking at (0.5, 0, 0) — the defaults of
    ``grasp_perception.config``.
    """
    from grasp_perception.camera import look_at

    f_px = 580.0 * width / 640.0
    intrinsics = CameraIntrinsics(width=width, height=height, fx=f_px, fy=f_px,
                                  cx=(width - 1) / 2.0, cy=(height - 1) / 2.0)
    return intrinsics, look_at((1.1, 0.0, 0.6), (0.5, 0.0, 0.0))
