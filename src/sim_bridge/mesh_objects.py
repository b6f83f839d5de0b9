"""Simulator objects from any triangle mesh (OBJ, STL, PLY file or an in-memory ``trimesh.Trimesh``).

:func:`mesh_object` loads and validates a mesh, scales it, writes the MuJoCo-readable files
(visual mesh + convex collision pieces) into a cache folder outside the repository, and returns
an :class:`~sim_bridge.objects.ObjectSpec` registered in the catalogue, so
``SceneConfig(object=spec.name)`` places it on the table like ``mug`` or ``drill``::

    spec = mesh_object("my_part.stl", scale=0.001)          # a CAD file in millimetres
    world = SimWorld(SceneConfig(object=spec.name))

The object's frame is the mesh's own frame (scaled), so per-vertex labels
(:func:`load_regions`) stay valid. Mass: MuJoCo computes density × volume of the collision
pieces (``SceneConfig.object_density_kg_m3``, 500 kg/m³ as in the D(R,O) protocol).

Collision geometry: ``"hull"`` (default) — the convex hull, one piece, instant; ``"coacd"`` —
an approximate convex decomposition with CoACD (seconds to a minute per mesh; concave objects
such as a mug's handle keep their holes). Both are cached by the mesh's content hash, the scale
and the method under :func:`cache_dir` (``$FGRASP_CACHE_DIR``, default
``~/.cache/functional_grasp/meshes``).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim_bridge.objects import ObjectSpec, register_object

#: File types :func:`load_mesh` reads.
MESH_SUFFIXES = (".obj", ".stl", ".ply")
#: Collision methods of :func:`mesh_object`.
COLLISION_METHODS = ("hull", "coacd")
#: Accepted largest extent of a scaled object, metres (it must fit on the 1.2 m table; a
#: smaller one is most likely a unit error, e.g. millimetres read as metres).
MIN_EXTENT_M = 0.005
MAX_EXTENT_M = 1.0
#: CoACD concavity threshold (smaller = more pieces) and the smallest piece kept, m³.
COACD_THRESHOLD = 0.05
MIN_PIECE_VOLUME_M3 = 1e-9
#: Bump when the cached files change meaning (invalidates old cache entries).
_CACHE_VERSION = 1
#: Default colour of mesh objects (they carry no texture).
MESH_RGBA = (0.75, 0.55, 0.25, 1.0)


class MeshLoadError(ValueError):
    """A mesh that cannot become a simulator object; the message says what is wrong and what to do."""


def cache_dir() -> Path:
    """Folder of processed meshes: ``$FGRASP_CACHE_DIR`` or ``~/.cache/functional_grasp/meshes``."""
    env = os.environ.get("FGRASP_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "functional_grasp" / "meshes"


def load_mesh(source: str | os.PathLike | "trimesh.Trimesh", scale: float = 1.0):
    """Read and validate a triangle mesh, scaled about its own origin.

    Args:
        source: path of an OBJ, STL or PLY file, or a ``trimesh.Trimesh``.
        scale: factor applied to the vertices (e.g. 0.001 for a file in millimetres).

    Returns:
        ``trimesh.Trimesh`` in metres, the source's frame; vertices in file order (not merged),
        so per-vertex labels keep their indices.

    Raises:
        MeshLoadError: missing or unreadable file, unsupported type, no triangles, non-finite
            vertices, a flat mesh, or a size outside ``MIN_EXTENT_M``..``MAX_EXTENT_M``.
    """
    import trimesh

    if not (np.isfinite(scale) and scale > 0):
        raise MeshLoadError(f"scale must be a finite number > 0, got {scale}")
    what = "the mesh"
    if isinstance(source, trimesh.Trimesh):
        mesh = source.copy()
    else:
        path = Path(source)
        what = str(path)
        if not path.is_file():
            raise MeshLoadError(f"mesh file not found: {path} (give an existing .obj, .stl or .ply file)")
        if path.suffix.lower() not in MESH_SUFFIXES:
            raise MeshLoadError(f"{path}: unsupported mesh type '{path.suffix}'; use "
                                f"{', '.join(MESH_SUFFIXES)}")
        try:
            mesh = trimesh.load(str(path), force="mesh", process=False)
        except Exception as exc:  # noqa: BLE001 - trimesh raises many types for a bad file
            raise MeshLoadError(f"{path} could not be read as a {path.suffix[1:].upper()} mesh: "
                                f"{type(exc).__name__}: {exc}") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0 or len(mesh.vertices) < 4:
        raise MeshLoadError(f"{what} has no triangles (is it a mesh file? point clouds and empty "
                            "scenes cannot be simulated)")
    vertices = np.asarray(mesh.vertices, dtype=float)
    if not np.all(np.isfinite(vertices)):
        bad = int(np.sum(~np.all(np.isfinite(vertices), axis=1)))
        raise MeshLoadError(f"{what} has {bad} vertices with NaN or infinite coordinates; repair the mesh")
    mesh = trimesh.Trimesh(vertices=vertices * float(scale), faces=np.asarray(mesh.faces), process=False)
    extent = float(np.max(mesh.extents))
    if not MIN_EXTENT_M <= extent <= MAX_EXTENT_M:
        raise MeshLoadError(
            f"{what} scaled by {scale:g} is {extent:.4g} m across; a graspable object is "
            f"{MIN_EXTENT_M}..{MAX_EXTENT_M} m (is the file in millimetres? then use scale 0.001)")
    try:
        with np.errstate(all="ignore"):
            hull_volume = float(mesh.convex_hull.volume)
    except Exception:  # noqa: BLE001 - qhull fails on flat input
        hull_volume = 0.0
    if hull_volume <= (1e-3 * extent) ** 3:
        raise MeshLoadError(f"{what} is flat (its convex hull has no volume); a simulated object "
                            "needs thickness")
    return mesh


def _content_hash(source, mesh, scale: float, collision: str) -> str:
    h = hashlib.sha256()
    if isinstance(source, (str, os.PathLike)):
        h.update(Path(source).read_bytes())
    else:
        h.update(np.ascontiguousarray(mesh.vertices, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(mesh.faces, dtype=np.int64).tobytes())
    h.update(f"|scale={float(scale)!r}|collision={collision}|v{_CACHE_VERSION}".encode())
    return h.hexdigest()[:20]


def _convex_pieces(mesh, collision: str) -> list:
    """Convex collision pieces of ``mesh`` (trimesh.Trimesh list)."""
    import trimesh

    if collision == "hull":
        return [mesh.convex_hull]
    import coacd

    coacd.set_log_level("error")
    parts = coacd.run_coacd(coacd.Mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces)),
                            threshold=COACD_THRESHOLD, seed=0)
    pieces = [trimesh.Trimesh(v, f, process=True).convex_hull for v, f in parts]
    pieces = [p for p in pieces if p.volume > MIN_PIECE_VOLUME_M3]
    return pieces or [mesh.convex_hull]


def _write_cache_entry(folder: Path, mesh, pieces: list, meta: dict) -> None:
    """Write the entry into a temporary sibling folder, then rename it (no half-written entries)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        mesh.export(str(tmp / "visual.obj"))
        for i, piece in enumerate(pieces):
            piece.export(str(tmp / f"collision_{i}.stl"))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.rename(tmp, folder)
        except OSError:  # another process wrote the same entry first: keep theirs
            if not (folder / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _object_name(source, name: str | None) -> str:
    if name is None:
        name = Path(source).stem if isinstance(source, (str, os.PathLike)) else "mesh"
    clean = re.sub(r"[^A-Za-z0-9_-]+", "_", str(name)).strip("_") or "mesh"
    return clean


def mesh_object(source: str | os.PathLike | "trimesh.Trimesh", scale: float = 1.0,
                name: str | None = None, *, collision: str = "hull",
                cache: Path | None = None) -> ObjectSpec:
    """A simulator object from a mesh, registered under ``name`` (see the module docstring).

    Args:
        source: OBJ/STL/PLY path or a ``trimesh.Trimesh`` (e.g. a generated mesh).
        scale: vertex scale to metres.
        name: catalogue name (default: the file's stem, or ``"mesh"``); characters other than
            letters, digits, ``_`` and ``-`` become ``_``.
        collision: ``"hull"`` or ``"coacd"``.
        cache: folder of processed meshes (default :func:`cache_dir`).

    Returns:
        The registered :class:`ObjectSpec` (kind ``"mesh"``, absolute paths into the cache).

    Raises:
        MeshLoadError: see :func:`load_mesh`; also an unknown ``collision``.
        ValueError: ``name`` is taken by a different object.
    """
    if collision not in COLLISION_METHODS:
        raise MeshLoadError(f"unknown collision method '{collision}'; use {', '.join(COLLISION_METHODS)}")
    mesh = load_mesh(source, scale)
    key = _content_hash(source, mesh, scale, collision)
    folder = Path(cache or cache_dir()) / key
    if not (folder / "meta.json").is_file():
        pieces = _convex_pieces(mesh, collision)
        meta = {"source": str(source) if isinstance(source, (str, os.PathLike)) else "<trimesh>",
                "scale": float(scale), "collision": collision, "pieces": len(pieces),
                "extents_m": [float(v) for v in mesh.extents],
                "collision_volume_m3": float(sum(p.volume for p in pieces))}
        _write_cache_entry(folder, mesh, pieces, meta)
    meta = json.loads((folder / "meta.json").read_text())
    n = int(meta["pieces"])
    ext = " x ".join(f"{100 * v:.1f}" for v in meta["extents_m"])
    spec = ObjectSpec(
        name=_object_name(source, name), kind="mesh",
        description=f"mesh {meta['source']} x{scale:g} ({ext} cm; {collision}, {n} convex piece(s))",
        visual_mesh=str((folder / "visual.obj").resolve()),
        collision_meshes=tuple(str((folder / f"collision_{i}.stl").resolve()) for i in range(n)),
        rgba=MESH_RGBA)
    return register_object(spec)


@dataclass(frozen=True)
class MeshRegions:
    """Functional and avoidance regions of a mesh object, as labelled vertices.

    Attributes:
        vertices_m: (V, 3) float64, every vertex of the scaled mesh in the object frame.
        functional: (V,) bool, vertices of the functional region (where a fingertip should be).
        avoid: (V,) bool, vertices no part of the hand may touch.
    """

    vertices_m: np.ndarray
    functional: np.ndarray
    avoid: np.ndarray

    def labels_at(self, points_obj_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(functional, avoid) flags of the nearest labelled-mesh vertex of each point.

        Args:
            points_obj_m: (N, 3) points in the object frame, metres.

        Returns:
            Two (N,) bool arrays.
        """
        from scipy.spatial import cKDTree

        pts = np.asarray(points_obj_m, dtype=float).reshape(-1, 3)
        if len(pts) == 0:
            return np.zeros(0, bool), np.zeros(0, bool)
        _, idx = cKDTree(self.vertices_m).query(pts)
        return self.functional[idx], self.avoid[idx]


def load_regions(path: str | os.PathLike, mesh) -> MeshRegions:
    """Read per-vertex region labels for ``mesh`` (the mesh :func:`load_mesh` returned).

    File format (JSON)::

        {"functional": [12, 13, 57, ...],   # vertex indices (0-based, file order of the mesh)
         "avoid": [3, 4, ...]}              # optional; may be empty

    Vertex indices refer to the mesh file exactly as written (``process=False``: no merging or
    reordering). A vertex may not be in both lists.

    Raises:
        MeshLoadError: missing/unreadable file, not JSON, no ``functional`` list, indices that are
            not integers, out of range, or in both lists.
    """
    path = Path(path)
    if not path.is_file():
        raise MeshLoadError(f"regions file not found: {path}")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MeshLoadError(f"regions file {path} is not JSON: {exc}") from None
    n = len(mesh.vertices)
    if not isinstance(doc, dict) or not isinstance(doc.get("functional"), list):
        raise MeshLoadError(f"regions file {path} must be a JSON object with a 'functional' list of "
                            "vertex indices (and optionally 'avoid')")
    masks = {}
    for key in ("functional", "avoid"):
        items = doc.get(key, [])
        if not isinstance(items, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            raise MeshLoadError(f"regions file {path}: '{key}' must be a list of integer vertex indices")
        idx = np.asarray(items, dtype=int)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise MeshLoadError(f"regions file {path}: '{key}' has indices outside 0..{n - 1} (the mesh "
                                f"has {n} vertices)")
        mask = np.zeros(n, dtype=bool)
        mask[idx] = True
        masks[key] = mask
    if not masks["functional"].any():
        raise MeshLoadError(f"regions file {path}: 'functional' is empty; label at least one vertex")
    if np.any(masks["functional"] & masks["avoid"]):
        raise MeshLoadError(f"regions file {path}: vertices {np.flatnonzero(masks['functional'] & masks['avoid'])[:5].tolist()}"
                            " are in both 'functional' and 'avoid'")
    return MeshRegions(np.asarray(mesh.vertices, dtype=float).copy(), masks["functional"], masks["avoid"])
