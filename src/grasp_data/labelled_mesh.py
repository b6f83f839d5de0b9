"""A watertight triangle mesh with a functional-region label on every face (and vertex).

Object frame convention (generators follow it; user meshes are expected to, see
:mod:`grasp_data.mesh_io`): metres, **+z up**, the object **rests on the plane z = 0** (its
lowest point at z = 0) in its natural pose on a table, the **x–y origin at the centre of its
bounding box**, and **+x toward the working end** (drill bit, nozzle, needle, hammer head;
the mug's handle).

Labels index :attr:`LabelledMesh.region_names` (label 0 = ``body``); see
:mod:`grasp_data.regions` for the meaning per category.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import trimesh

from grasp_data.regions import BODY_LABEL


class MeshValidationError(ValueError):
    """A mesh or its labels break an invariant; the message says which and what to do."""


@dataclass(frozen=True, eq=False)
class LabelledMesh:
    """A triangle mesh plus one region label per face.

    Attributes:
        mesh: the surface, metres, object frame (see module docstring).
        face_labels: ``(F,)`` int16, index into ``region_names`` per face.
        region_names: region name per label id; ``region_names[0] == "body"``.
        category: object category (a key of :data:`grasp_data.regions.CATEGORY_REGIONS`), or
            None for a user mesh without one.
        params: generator parameters that reproduce the instance (empty for imported meshes).
        seed: generator seed, or None.
    """

    mesh: trimesh.Trimesh
    face_labels: np.ndarray
    region_names: tuple[str, ...]
    category: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None

    def __post_init__(self) -> None:
        labels = np.asarray(self.face_labels)
        if labels.shape != (len(self.mesh.faces),):
            raise MeshValidationError(f"face_labels has shape {labels.shape}; the mesh has "
                                      f"{len(self.mesh.faces)} faces: give one label per face")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.region_names)):
            raise MeshValidationError(f"face labels span {labels.min()}..{labels.max()} but only "
                                      f"{len(self.region_names)} region names are given")
        if not self.region_names or self.region_names[BODY_LABEL] != "body":
            raise MeshValidationError(f"region_names must start with 'body', got {self.region_names}")
        object.__setattr__(self, "face_labels", labels.astype(np.int16))
        object.__setattr__(self, "region_names", tuple(self.region_names))

    # -- labels ---------------------------------------------------------------------------------
    def label(self, region: str) -> int:
        """Label id of ``region``; ValueError naming the mesh's regions otherwise."""
        try:
            return self.region_names.index(region)
        except ValueError:
            raise ValueError(f"mesh has no region '{region}'; its regions are: "
                             f"{', '.join(self.region_names)}") from None

    def face_mask(self, region: str) -> np.ndarray:
        """``(F,)`` bool: faces of ``region``."""
        return self.face_labels == self.label(region)

    def region_area_m2(self, region: str) -> float:
        """Surface area of ``region``, square metres."""
        return float(self.mesh.area_faces[self.face_mask(region)].sum())

    @cached_property
    def vertex_labels(self) -> np.ndarray:
        """``(V,)`` int16 label per vertex.

        A vertex takes the most frequent *non-body* label among its faces (body only if all its
        faces are body), so a region's boundary vertices belong to the region; ties go to the
        smaller label id.
        """
        n_labels = len(self.region_names)
        counts = np.zeros((len(self.mesh.vertices), n_labels), np.int32)
        faces = np.asarray(self.mesh.faces)
        for corner in range(3):
            np.add.at(counts, (faces[:, corner], self.face_labels), 1)
        nonbody = counts.copy()
        nonbody[:, BODY_LABEL] = 0
        labels = np.where(nonbody.max(axis=1) > 0, nonbody.argmax(axis=1), BODY_LABEL)
        return labels.astype(np.int16)

    def sample_surface(self, count: int, seed: int | np.random.Generator = 0,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Area-uniform random points on the surface.

        Args:
            count: number of points.
            seed: integer seed or generator (reproducible sampling).

        Returns:
            ``points (count, 3)`` float64 metres, ``normals (count, 3)`` unit outward face
            normals, ``labels (count,)`` int16 region label of the face each point lies on.
        """
        rng = np.random.default_rng(seed)
        points, face_index = trimesh.sample.sample_surface(self.mesh, count, seed=rng)
        return (np.asarray(points, np.float64), np.asarray(self.mesh.face_normals[face_index]),
                self.face_labels[face_index])

    # -- checks ---------------------------------------------------------------------------------
    def validate(self, required_regions: tuple[str, ...] = ()) -> None:
        """Raise :class:`MeshValidationError` unless the mesh is a closed, outward-facing solid
        and every region in ``required_regions`` (default: all named regions) has faces."""
        m = self.mesh
        if not m.is_watertight:
            raise MeshValidationError("mesh is not watertight (it has open edges); repair it, e.g. "
                                      "trimesh.repair.fill_holes, or re-export it as a closed solid")
        if not m.is_winding_consistent:
            raise MeshValidationError("mesh face winding is inconsistent; fix the normals "
                                      "(trimesh.repair.fix_normals) before use")
        if not m.volume > 0:
            raise MeshValidationError(f"mesh volume is {m.volume:.3g} m³; faces point inwards — "
                                      "invert them (mesh.invert()) or fix the normals")
        for name in required_regions or self.region_names:
            if not self.face_mask(name).any():
                raise MeshValidationError(f"region '{name}' has no faces")
