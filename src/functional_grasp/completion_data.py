"""Training data for shape completion: rendered partial views paired with the whole object surface.

Per generated object (:func:`grasp_data.objects.generate`, category + seed) one ``<category>_<seed>.npz``:

- ``views (V, P, 3)`` float32: each rendered view's object points (depth back-projected, subsampled
  to P with replacement when fewer), world frame, metres;
- ``surface (V, S, 3)`` / ``normals (V, S, 3)`` float32: S area-uniform samples of the whole mesh and
  their outward face normals, moved by that view's object pose into the same world frame;
- ``category``, ``seed``.

No grasp is validated, so this is cheap (~0.1–0.2 s per view). Seeds come from
:func:`grasp_data.engine.object_seed` with a base the held-out evaluation never uses (held-out
instances add ``2**32``). Files are written atomically; a re-run skips the objects already written.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

#: View points stored per view.
VIEW_POINTS = 2048
#: Whole-surface samples stored per view.
SURFACE_POINTS = 2048


class NoObjectViewError(ValueError):
    """No rendered view of an object saw it."""


def object_views(category: str, seed: int, views: int, width: int = 320, height: int = 240,
                 view_points: int = VIEW_POINTS, surface_points: int = SURFACE_POINTS) -> dict[str, np.ndarray]:
    """Render ``views`` views of one generated object and pair each with the whole surface.

    Returns:
        The arrays of one ``.npz`` (module docstring). Views that see fewer than 3 object points are left out.

    Raises:
        ValueError: unknown category (from the generator).
        NoObjectViewError: no view saw the object.
    """
    from functional_grasp.train_data import view_cloud
    from grasp_data.objects import generate
    from grasp_data.renders import RenderConfig, render_views
    from grasp_planner.network.completion import subsample

    instance = generate(category, seed)
    rng = np.random.default_rng(seed)
    pts, normals, _ = instance.sample_surface(surface_points, seed=rng)
    out = {"views": [], "surface": [], "normals": []}
    for v in render_views(instance, views, seed=seed % 2 ** 31, config=RenderConfig(width=width, height=height)):
        cloud, _ = view_cloud(v.depth, v.mask, v.K, v.T_world_camera)
        if len(cloud) < 3:
            continue
        R, t = v.T_world_object[:3, :3], v.T_world_object[:3, 3]
        out["views"].append(subsample(cloud, view_points, rng))
        out["surface"].append((pts @ R.T + t).astype(np.float32))
        out["normals"].append((normals @ R.T).astype(np.float32))
    if not out["views"]:
        raise NoObjectViewError(f"no view of {category} seed {seed} saw the object")
    return {k: np.stack(v) for k, v in out.items()} | {"category": np.array(category), "seed": np.array(seed)}


def generate_completion_data(out_dir: str | Path, categories: list[str], objects: int, views: int,
                             seed: int = 0, progress: Callable[[int, int, str], None] | None = None) -> list[Path]:
    """Write ``objects`` objects per category (``views`` views each) to ``out_dir``.

    Args:
        out_dir: destination folder (created).
        categories: generator categories.
        objects: objects per category.
        views: views per object.
        seed: base of :func:`grasp_data.engine.object_seed` (use different bases for training and
            validation sets).
        progress: optional ``progress(done, total, name)`` after each object.

    Returns:
        The files of this set (written now or already there); an object the generator makes
        invalid (e.g. an open mesh) is skipped.
    """
    from grasp_data.engine import object_seed
    from grasp_data.labelled_mesh import MeshValidationError

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(c, object_seed(seed, c, i)) for c in categories for i in range(objects)]
    files = []
    for done, (category, s) in enumerate(jobs, 1):
        path = out_dir / f"{category}_{s}.npz"
        if not path.exists():
            try:
                arrays = object_views(category, s, views)
                tmp = path.with_name(path.name + ".tmp.npz")
                np.savez_compressed(tmp, **arrays)
                os.replace(tmp, path)
            except (MeshValidationError, NoObjectViewError):    # the generator's rare open mesh, or unseen: skip
                pass
        if path.exists():
            files.append(path)
        if progress:
            progress(done, len(jobs), path.stem)
    return files
