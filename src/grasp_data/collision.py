"""Convex decomposition of object meshes for the simulator (CoACD), cached on disk.

MuJoCo collides a mesh through its convex hull, so a mug or a drill needs several convex
pieces. :func:`convex_decomposition` hands the mesh to the simulator's mesh loader
(:func:`sim_bridge.mesh_objects.mesh_object` with ``collision="coacd"``), which runs CoACD
once per mesh content and keeps the pieces in its cache folder (``$FGRASP_CACHE_DIR``, default
``~/.cache/functional_grasp/meshes``, outside the repository; safe to delete); later calls
read the files. The result also carries the registered simulator object, so the same instance
can be placed in a :class:`sim_bridge.world.SimWorld` by name.

If CoACD is missing or fails, the convex hull is used (one piece) and a warning says why.
Measured here: CoACD takes 6–50 s per generated instance on this 2-core machine (the mug's
hollow is the slowest), a cache hit a few milliseconds.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from sim_bridge.mesh_objects import MeshLoadError, cache_dir, mesh_object
from sim_bridge.objects import ObjectSpec


@dataclass(frozen=True)
class ConvexDecomposition:
    """Convex pieces of a mesh.

    Attributes:
        parts: convex pieces, same frame as the input, metres.
        method: ``"coacd"`` or ``"hull"`` (the fallback).
        from_cache: the pieces were already in the cache (not computed by this call).
        spec: the simulator object (visual mesh + these pieces), registered under its name.
    """

    parts: tuple[trimesh.Trimesh, ...]
    method: str
    from_cache: bool
    spec: ObjectSpec


def mesh_name(mesh: trimesh.Trimesh, method: str, cache: Path, prefix: str = "mesh") -> str:
    """A simulator object name unique to the mesh geometry, collision method and cache folder:
    ``<prefix>_<12 hex digits>_<method>`` (the catalogue refuses one name for two objects)."""
    digest = hashlib.sha256(np.ascontiguousarray(mesh.vertices, np.float64).tobytes())
    digest.update(np.ascontiguousarray(mesh.faces, np.int64).tobytes())
    digest.update(str(Path(cache).resolve()).encode())
    return f"{prefix}_{digest.hexdigest()[:12]}_{method}"


def convex_decomposition(mesh: trimesh.Trimesh, name: str | None = None,
                         cache: str | Path | None = None) -> ConvexDecomposition:
    """Convex collision pieces of ``mesh``: from the cache, else by CoACD, else its hull.

    Args:
        mesh: triangle mesh, metres, object frame.
        name: simulator object name (default :func:`mesh_name`); must differ between methods.
        cache: cache folder (default :func:`sim_bridge.mesh_objects.cache_dir`).

    Returns:
        The pieces, where they came from, and the registered simulator object.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    before = set(folder.iterdir()) if folder.is_dir() else set()
    method = "coacd"
    try:
        spec = mesh_object(mesh, name=name or mesh_name(mesh, method, folder), collision=method, cache=folder)
    except MeshLoadError:  # the mesh itself is unusable: no fallback helps
        raise
    except Exception as exc:  # noqa: BLE001 - CoACD missing or failing in any way: the fallback
        warnings.warn(f"CoACD failed ({type(exc).__name__}: {exc}); using the convex hull as the only "
                      "collision piece", stacklevel=2)
        method = "hull"
        spec = mesh_object(mesh, name=name or mesh_name(mesh, method, folder), collision=method, cache=folder)
    entry = Path(spec.visual_mesh).parent
    parts = tuple(trimesh.load(p, force="mesh") for p in spec.collision_meshes)
    return ConvexDecomposition(parts, method, entry in before, spec)
