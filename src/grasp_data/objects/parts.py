"""Building blocks of the object generators: convex primitives, labelled boolean composition,
and parameter sampling from documented ranges.

Booleans run in ``manifold3d`` (the engine trimesh uses for ``engine="manifold"``), called
directly so every output triangle keeps the id of the part it came from: that id gives the
face its region label, exactly, with no nearest-surface guessing at part seams.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import manifold3d
import numpy as np
import trimesh

#: Facets around a round cross-section (a 4 cm cylinder then has ~4 mm chords).
ROUND_SECTIONS = 32


@dataclass(frozen=True)
class Part:
    """One solid of an object.

    Attributes:
        mesh: watertight solid, metres.
        label: region label its surviving faces get.
        subtract: cut this solid out of the union of the others (faces it leaves behind,
            e.g. the inside of a mug, carry its label).
    """

    mesh: trimesh.Trimesh
    label: int
    subtract: bool = False


def _frame(axis: np.ndarray, up_hint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors ``(u, v)`` perpendicular to ``axis``; ``v`` as close to ``up_hint`` as possible."""
    v = up_hint - axis * float(up_hint @ axis)
    if np.linalg.norm(v) < 1e-9:  # up_hint parallel to the axis: any perpendicular will do
        v = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
    v = v / np.linalg.norm(v)
    return np.cross(v, axis), v


def rod(p0: Sequence[float], p1: Sequence[float], half_width_m: float, half_height_m: float,
        exponent: float = 2.0, end_scale: float = 1.0, up: Sequence[float] = (0.0, 0.0, 1.0),
        sections: int = ROUND_SECTIONS) -> trimesh.Trimesh:
    """A straight convex solid swept from ``p0`` to ``p1`` with a superellipse cross-section.

    ``exponent`` 2 gives an ellipse (a cylinder when the half sizes are equal), 4 a rounded
    rectangle, ≥ 10 nearly a box. ``end_scale`` scales the cross-section at ``p1`` (≠ 1: a
    frustum / tapered grip).

    Args:
        p0, p1: end centres, metres.
        half_width_m: cross-section half size along the horizontal-ish axis ``u``, metres.
        half_height_m: half size along ``v`` (the component of ``up`` perpendicular to the
            axis), metres.
        exponent: superellipse exponent, ≥ 1 (convex).
        end_scale: cross-section scale at ``p1`` relative to ``p0``, > 0.
        up: direction that ``v`` follows.
        sections: points around the cross-section.
    """
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    axis = p1 - p0
    length = np.linalg.norm(axis)
    if length <= 0 or half_width_m <= 0 or half_height_m <= 0 or end_scale <= 0 or exponent < 1:
        raise ValueError(f"rod needs p0 != p1, positive half sizes and end_scale, exponent >= 1; got "
                         f"length {length:.3g}, half sizes {half_width_m:.3g}/{half_height_m:.3g}, "
                         f"end_scale {end_scale:.3g}, exponent {exponent:.3g}")
    axis = axis / length
    u, v = _frame(axis, np.asarray(up, float))
    t = np.linspace(0.0, 2 * np.pi, sections, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    cu = half_width_m * np.sign(c) * np.abs(c) ** (2.0 / exponent)
    cv = half_height_m * np.sign(s) * np.abs(s) ** (2.0 / exponent)
    ring = cu[:, None] * u + cv[:, None] * v
    points = np.concatenate([p0 + ring, p1 + end_scale * ring])
    return trimesh.Trimesh(points).convex_hull


def box(centre: Sequence[float], size: Sequence[float]) -> trimesh.Trimesh:
    """Axis-aligned box with full edge lengths ``size`` (metres) centred at ``centre``."""
    return trimesh.creation.box(extents=np.asarray(size, float),
                                transform=trimesh.transformations.translation_matrix(centre))


def loop(centre: Sequence[float], radius_x_m: float, radius_z_m: float, tube_radius_m: float,
         ) -> trimesh.Trimesh:
    """A ring in the x–z plane (axis along y), stretched to radii ``radius_x_m`` × ``radius_z_m``."""
    ring = trimesh.creation.torus(1.0, tube_radius_m / max(radius_x_m, radius_z_m),
                                  major_sections=48, minor_sections=16)
    ring.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1.0, 0.0, 0.0]))
    # scale the centreline radii, keep the tube round-ish by scaling y with the larger radius
    scale = np.diag([radius_x_m, max(radius_x_m, radius_z_m), radius_z_m, 1.0])
    ring.apply_transform(scale)
    ring.apply_translation(centre)
    return ring


def _to_manifold(mesh: trimesh.Trimesh) -> manifold3d.Manifold:
    solid = manifold3d.Manifold(manifold3d.Mesh(
        vert_properties=np.asarray(mesh.vertices, np.float32),
        tri_verts=np.asarray(mesh.faces, np.uint32)))
    if solid.status() != manifold3d.Error.NoError:
        raise ValueError(f"part is not a closed manifold solid ({solid.status()})")
    return solid.as_original()


def compose(parts: Sequence[Part]) -> tuple[trimesh.Trimesh, np.ndarray]:
    """Union of the added parts minus the subtracted ones, with a label per output face.

    Returns:
        ``(mesh, face_labels)``: a watertight mesh (metres) and ``(F,)`` int16 labels.
    """
    added = [p for p in parts if not p.subtract]
    if not added:
        raise ValueError("compose needs at least one part that is not subtracted")
    label_of: dict[int, int] = {}
    solids = {}
    for flag in (False, True):
        group = [p for p in parts if p.subtract == flag]
        manifolds = []
        for part in group:
            solid = _to_manifold(part.mesh)
            label_of[solid.original_id()] = part.label
            manifolds.append(solid)
        if manifolds:
            solids[flag] = manifold3d.Manifold.batch_boolean(manifolds, manifold3d.OpType.Add)
    result = solids[False] - solids[True] if True in solids else solids[False]
    out = result.to_mesh()
    tri = np.asarray(out.tri_verts, np.int64)
    labels = np.zeros(len(tri), np.int16)
    bounds = np.asarray(out.run_index, np.int64) // 3
    for run, original in enumerate(np.asarray(out.run_original_id)):
        labels[bounds[run]:bounds[run + 1]] = label_of[int(original)]
    mesh = trimesh.Trimesh(np.asarray(out.vert_properties[:, :3], np.float64), tri, process=False)
    mesh.merge_vertices()  # float32 output can hold vertices closer than trimesh's merge tolerance
    f = mesh.faces
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    mesh.update_faces(keep)
    mesh.remove_unreferenced_vertices()
    return mesh, labels[keep]


def rest_on_ground(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Translate ``mesh`` in place to the object frame convention: lowest point at z = 0,
    bounding-box centre at x = y = 0. Returns the mesh."""
    lo, hi = mesh.bounds
    mesh.apply_translation([-(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2, -lo[2]])
    return mesh


#: A parameter's range: ``(low, high)`` floats (uniform) or a tuple of string choices.
ParamRange = tuple[float, float] | tuple[str, ...]


def sample_params(space: Mapping[str, ParamRange], rng: np.random.Generator,
                  overrides: Mapping[str, Any], category: str) -> dict[str, Any]:
    """Draw every parameter of ``space`` from its range; ``overrides`` replace draws.

    Every parameter is drawn (even when overridden), so a seed gives the same draws whatever
    is overridden. Overrides must name known parameters and lie in their documented range.

    Raises:
        ValueError: unknown parameter name, or a value outside its range / not a choice.
    """
    unknown = sorted(set(overrides) - set(space))
    if unknown:
        raise ValueError(f"{category}: unknown parameter(s) {', '.join(unknown)}; known: "
                         f"{', '.join(space)}")
    params: dict[str, Any] = {}
    for name, rng_def in space.items():
        is_choice = isinstance(rng_def[0], str)
        draw = str(rng.choice(rng_def)) if is_choice else float(rng.uniform(*rng_def))
        if name not in overrides:
            params[name] = draw
            continue
        value = overrides[name]
        if is_choice:
            if value not in rng_def:
                raise ValueError(f"{category}: {name}={value!r} is not one of {rng_def}")
        else:
            lo, hi = rng_def
            if not lo - 1e-12 <= float(value) <= hi + 1e-12:
                raise ValueError(f"{category}: {name}={value} is outside its range [{lo}, {hi}]")
            value = float(value)
        params[name] = value
    return params
