"""User meshes (OBJ / STL / PLY) with functional-region labels from a JSON sidecar.

Sidecar format (``<mesh stem>.labels.json`` beside the mesh, or any path you pass)::

    {
      "format": "functional_grasp.labels/1",
      "category": "drill",                      # optional; a category of grasp_data.regions
      "region_names": ["body", "handle", "trigger", "bit"],   # label id = index; [0] = "body"
      "face_labels": [0, 0, 2, ...],            # one per face, in the file's face order, or
      "vertex_labels": [0, 1, 1, ...]           # one per vertex, in the file's vertex order
    }

Give ``face_labels`` (exact) or ``vertex_labels`` (a face then takes the label most of its
three vertices have; three different labels: the face's first vertex's). Orders are those of
the file as written: for STL, whose triangles share no vertices, use ``face_labels``. With
``category`` set, region names must be that category's (any order, any subset that includes
``body``); labels are renumbered to the category's order.

A mesh without a sidecar can get its labels by correspondence from the category's
demonstration reference instance (:func:`grasp_data.transfer.transfer_labels`).

Meshes are expected in the object frame convention of :mod:`grasp_data.labelled_mesh`
(metres, z up); ``scale`` converts units (0.001 for millimetres). Files whose triangles do
not close a solid are refused unless ``require_watertight=False``.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from grasp_data.labelled_mesh import LabelledMesh, MeshValidationError
from grasp_data.regions import category_regions
from sim_bridge.mesh_objects import MESH_SUFFIXES, MeshLoadError
from sim_bridge.mesh_objects import load_mesh as read_mesh_file

#: Value of the sidecar's ``format`` key.
LABELS_FORMAT = "functional_grasp.labels/1"


class MeshFileError(ValueError):
    """A mesh or label file is missing, unreadable or unusable; the message names the file."""


def labels_path_for(mesh_path: str | Path) -> Path:
    """Default sidecar path of a mesh file: ``drill.obj`` -> ``drill.labels.json``."""
    path = Path(mesh_path)
    return path.with_name(path.stem + ".labels.json")


def _edge_use(mesh: trimesh.Trimesh) -> tuple[int, int]:
    """(open edges: used by one face, non-manifold edges: used by more than two)."""
    _, counts = np.unique(mesh.edges_sorted, axis=0, return_counts=True)
    return int((counts == 1).sum()), int((counts > 2).sum())


def load_mesh(path: str | Path, scale: float = 1.0) -> trimesh.Trimesh:
    """Read a triangle mesh file, keeping the file's face order (vertices are merged).

    Raises:
        MeshFileError: missing file, unsupported type, unreadable content, no triangles, or a
            size that suggests the wrong unit.
    """
    return _merged(_read_mesh(Path(path), scale))


def _read_mesh(path: Path, scale: float) -> trimesh.Trimesh:
    """The file's triangles as written (file vertex and face order), scaled and size-checked
    by the simulator's mesh reader."""
    try:
        return read_mesh_file(path, scale)
    except MeshLoadError as exc:
        raise MeshFileError(str(exc)) from None


def _merged(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """A copy with duplicate vertices merged (STL shares none); face order is kept."""
    mesh = mesh.copy()
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    return mesh


def _read_sidecar(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MeshFileError(f"label file not found: {path} (see grasp_data.mesh_io for the format, "
                            "or label the mesh by transfer from a category demonstration)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MeshFileError(f"{path}: not a readable JSON label file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != LABELS_FORMAT:
        raise MeshFileError(f"{path}: 'format' must be '{LABELS_FORMAT}'")
    names = data.get("region_names")
    if not isinstance(names, list) or not names or names[0] != "body" or \
            not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise MeshFileError(f"{path}: 'region_names' must be a list of distinct names starting with 'body'")
    return data


def _face_labels_from(data: dict[str, Any], file_faces: np.ndarray, n_file_vertices: int,
                      path: Path) -> np.ndarray:
    """``(F,)`` face labels from the sidecar ``data`` (checked against the file's sizes)."""
    n_names = len(data["region_names"])
    key = "face_labels" if "face_labels" in data else "vertex_labels" if "vertex_labels" in data else None
    if key is None:
        raise MeshFileError(f"{path}: give 'face_labels' or 'vertex_labels'")
    try:
        labels = np.asarray(data[key], dtype=np.int64)
    except (TypeError, ValueError):
        raise MeshFileError(f"{path}: '{key}' must be a list of integers") from None
    expected = len(file_faces) if key == "face_labels" else n_file_vertices
    if labels.shape != (expected,):
        what = "faces" if key == "face_labels" else "vertices"
        raise MeshFileError(f"{path}: '{key}' has {labels.size} entries but the mesh has {expected} {what}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_names):
        raise MeshFileError(f"{path}: '{key}' values must be 0..{n_names - 1} (one per region name)")
    if key == "face_labels":
        return labels
    corners = labels[file_faces]  # (F, 3) labels of each face's corners, file order
    a, b, c = corners.T
    return np.where((b == c) & (a != b), b, a)


def load_labelled_mesh(path: str | Path, labels_path: str | Path | None = None,
                       category: str | None = None, scale: float = 1.0,
                       require_watertight: bool = True) -> LabelledMesh:
    """A mesh file plus its label sidecar as a :class:`LabelledMesh`.

    Args:
        path: OBJ / STL / PLY file.
        labels_path: sidecar JSON (default :func:`labels_path_for`).
        category: the object category; overrides the sidecar's. Region names are then
            checked against the category and renumbered to its order.
        scale: multiplies coordinates (0.001 for a file in millimetres).
        require_watertight: refuse meshes that do not close a solid (inside tests and volume
            need one; contact transfer and convex decomposition cope without).

    Raises:
        MeshFileError: any problem with either file (the message names the file and the fix).
    """
    path = Path(path)
    side = Path(labels_path) if labels_path is not None else labels_path_for(path)
    data = _read_sidecar(side)
    raw = _read_mesh(path, scale)
    face_labels = _face_labels_from(data, np.asarray(raw.faces), len(raw.vertices), side)
    mesh = _merged(raw)
    names = list(data["region_names"])
    category = category or data.get("category")
    if category is not None:
        try:
            regions = category_regions(category)
            remap = np.array([regions.label(n) for n in names], np.int64)
        except ValueError as exc:
            raise MeshFileError(f"{side}: {exc}") from None
        face_labels, names = remap[face_labels], list(regions.names)
    f = mesh.faces  # drop faces that merging collapsed (a repeated vertex) and exact duplicates
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2]) & mesh.unique_faces()
    mesh.update_faces(keep)
    face_labels = face_labels[keep]
    mesh.remove_unreferenced_vertices()
    return _checked(LabelledMesh(mesh, face_labels, tuple(names), category=category), path,
                    require_watertight)


def _checked(instance: LabelledMesh, path: Path, require_watertight: bool) -> LabelledMesh:
    mesh = instance.mesh
    open_edges, shared_edges = _edge_use(mesh)
    if open_edges or shared_edges:
        if require_watertight:
            raise MeshFileError(
                f"{path}: mesh is not watertight ({open_edges} open edges, {shared_edges} edges shared "
                "by more than two faces); repair it (e.g. close holes in a mesh editor) or load with "
                "require_watertight=False for transfer and convex decomposition only")
        return instance
    if not mesh.is_winding_consistent or mesh.volume < 0:
        trimesh.repair.fix_normals(mesh)  # keeps face order: labels stay valid
    try:
        instance.validate(required_regions=("body",))
    except MeshValidationError as exc:
        raise MeshFileError(f"{path}: {exc}") from None
    return instance


def save_labelled_mesh(instance: LabelledMesh, mesh_path: str | Path) -> tuple[Path, Path]:
    """Write the mesh (type from the suffix) and its label sidecar, each atomically.

    Returns:
        ``(mesh_path, labels_path)``.
    """
    mesh_path = Path(mesh_path)
    if mesh_path.suffix.lower() not in MESH_SUFFIXES:
        raise MeshFileError(f"{mesh_path}: unsupported mesh type; use one of {', '.join(MESH_SUFFIXES)}")
    side = labels_path_for(mesh_path)
    payload = {"format": LABELS_FORMAT, "category": instance.category,
               "region_names": list(instance.region_names),
               "face_labels": instance.face_labels.astype(int).tolist()}
    mesh_bytes = instance.mesh.export(file_type=mesh_path.suffix.lower()[1:])
    write_atomic(mesh_path, mesh_bytes if isinstance(mesh_bytes, bytes) else mesh_bytes.encode())
    write_atomic(side, json.dumps(payload).encode())
    return mesh_path, side


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling and a rename (no half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
