"""Pictures of labelled meshes: faces coloured by region, two views per object, a legend.

A small z-buffer rasteriser in numpy (flat Lambert shading, orthographic views) so the
pictures need no GL context. Colours follow the region kind (:mod:`grasp_data.regions`):
body grey, grip blue, functional green/orange, avoid red.

    from grasp_data.gallery import render_gallery
    render_gallery([generate("drill", 0), generate("mug", 0)], "gallery.png")
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from grasp_data.labelled_mesh import LabelledMesh
from grasp_data.regions import CATEGORY_REGIONS

#: RGB per region kind; a kind's n-th region takes the n-th colour.
KIND_COLOURS = {
    "body": [(170, 170, 170)],
    "grip": [(60, 110, 220), (120, 80, 200)],
    "functional": [(40, 170, 70), (240, 150, 20), (200, 200, 40)],
    "avoid": [(220, 40, 40), (150, 30, 90)],
}
#: Colour of a region whose kind is unknown (user meshes without a category).
OTHER_COLOURS = [(40, 170, 70), (240, 150, 20), (60, 110, 220), (220, 40, 40), (150, 30, 90)]
#: Viewing directions (from the camera toward the object is minus these), object frame.
VIEWS = {"front-left": (0.9, 1.0, 0.7), "back-right": (-0.9, -1.0, 0.6)}
#: Light direction (toward the light), camera frame: from the upper left, in front.
_LIGHT = np.array([-0.3, 0.5, 0.8]) / np.linalg.norm([-0.3, 0.5, 0.8])
_BACKGROUND = (255, 255, 255)
#: A marked point this far behind the visible surface is still drawn, metres.
POINT_DEPTH_TOLERANCE_M = 0.004


def region_colours(instance: LabelledMesh) -> list[tuple[int, int, int]]:
    """RGB colour of each label of ``instance`` (see :data:`KIND_COLOURS`)."""
    regions = CATEGORY_REGIONS.get(instance.category or "")
    colours, used = [], {}
    for i, name in enumerate(instance.region_names):
        if i == 0:
            colours.append(KIND_COLOURS["body"][0])
            continue
        kind = regions.regions[i].kind if regions is not None else "other"
        palette = KIND_COLOURS.get(kind, OTHER_COLOURS)
        n = used.get(kind, 0)
        used[kind] = n + 1
        colours.append(palette[n % len(palette)])
    return colours


def _camera(view_dir: Sequence[float]) -> np.ndarray:
    """(3, 3) rows = camera right, up, toward-viewer axes in the object frame."""
    back = np.asarray(view_dir, float) / np.linalg.norm(view_dir)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(back, right), back])


def render_view(instance: LabelledMesh, view_dir: Sequence[float], size_px: int = 320,
                points: np.ndarray | None = None) -> Image.Image:
    """One orthographic view of ``instance`` with faces coloured by region.

    Args:
        instance: the mesh to draw.
        view_dir: direction from the object toward the camera, object frame.
        size_px: image width and height, pixels.
        points: optional ``(K, 3)`` metres, object frame: drawn as black dots (e.g. contacts).
    """
    rot = _camera(view_dir)
    verts = np.asarray(instance.mesh.vertices) @ rot.T
    lo, hi = verts[:, :2].min(axis=0), verts[:, :2].max(axis=0)
    scale = 0.9 * size_px / max(hi - lo)
    centre = (lo + hi) / 2

    def to_px(xyz: np.ndarray) -> np.ndarray:
        px = (xyz[:, :2] - centre) * scale + size_px / 2
        return np.column_stack([px[:, 0], size_px - px[:, 1], xyz[:, 2]])

    v = to_px(verts)
    faces = np.asarray(instance.mesh.faces)
    normals = np.asarray(instance.mesh.face_normals) @ rot.T
    colours = np.asarray(region_colours(instance), float)[instance.face_labels]
    shade = 0.35 + 0.65 * np.clip(normals @ _LIGHT, 0.0, 1.0)
    rgb = np.full((size_px, size_px, 3), _BACKGROUND, float)
    depth = np.full((size_px, size_px), -np.inf)
    for f in np.flatnonzero(normals[:, 2] > 0):  # back faces culled
        tri = v[faces[f]]
        x0, y0 = np.maximum(np.floor(tri[:, :2].min(axis=0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(tri[:, :2].max(axis=0)).astype(int), size_px - 1)
        if x1 < x0 or y1 < y0:
            continue
        xs, ys = np.meshgrid(np.arange(x0, x1 + 1) + 0.5, np.arange(y0, y1 + 1) + 0.5)
        (ax, ay, az), (bx, by, bz), (cx, cy, cz) = tri
        den = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
        if abs(den) < 1e-12:
            continue
        w0 = ((by - cy) * (xs - cx) + (cx - bx) * (ys - cy)) / den
        w1 = ((cy - ay) * (xs - cx) + (ax - cx) * (ys - cy)) / den
        w2 = 1.0 - w0 - w1
        inside = (w0 >= -1e-6) & (w1 >= -1e-6) & (w2 >= -1e-6)
        z = w0 * az + w1 * bz + w2 * cz
        block = depth[y0:y1 + 1, x0:x1 + 1]
        closer = inside & (z > block)
        block[closer] = z[closer]
        rgb[y0:y1 + 1, x0:x1 + 1][closer] = colours[f] * shade[f]
    image = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    if points is not None and len(points):
        draw = ImageDraw.Draw(image)
        for x, y, z in to_px(np.asarray(points, float) @ rot.T):
            col, row = int(np.clip(x, 0, size_px - 1)), int(np.clip(y, 0, size_px - 1))
            if z < depth[row, col] - POINT_DEPTH_TOLERANCE_M:
                continue  # hidden behind the surface in this view
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=(0, 0, 0), outline=(255, 255, 255))
    return image


def render_gallery(instances: Sequence[LabelledMesh], out_path: str | Path, size_px: int = 320,
                   points: Sequence[np.ndarray | None] | None = None) -> Path:
    """One row per instance (its views side by side, a legend on the right); writes a PNG.

    Args:
        instances: meshes to draw, one row each.
        out_path: PNG file to write (parent folders are created).
        size_px: size of each view, pixels.
        points: optional per-instance ``(K, 3)`` points to mark (or None).

    Returns:
        The path written.
    """
    if not instances:
        raise ValueError("render_gallery needs at least one instance")
    legend_w = 190
    width = len(VIEWS) * size_px + legend_w
    sheet = Image.new("RGB", (width, size_px * len(instances)), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for row, inst in enumerate(instances):
        top = row * size_px
        marks = points[row] if points is not None else None
        for col, view in enumerate(VIEWS.values()):
            sheet.paste(render_view(inst, view, size_px, marks), (col * size_px, top))
        x = len(VIEWS) * size_px + 10
        ext = inst.mesh.extents
        draw.text((x, top + 10), f"{inst.category or 'mesh'}" + (f"  seed {inst.seed}" if inst.seed is not None
                                                                 else ""), fill=(0, 0, 0))
        draw.text((x, top + 26), f"{ext[0] * 100:.1f} x {ext[1] * 100:.1f} x {ext[2] * 100:.1f} cm",
                  fill=(80, 80, 80))
        for i, (name, colour) in enumerate(zip(inst.region_names, region_colours(inst))):
            y = top + 50 + 18 * i
            draw.rectangle([x, y, x + 12, y + 12], fill=colour)
            draw.text((x + 18, y), name, fill=(0, 0, 0))
        draw.line([(0, top), (width, top)], fill=(220, 220, 220))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
