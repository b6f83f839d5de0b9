"""The data engine's validated dataset (:mod:`grasp_data.dataset`) as D(R,O) training examples.

``fgrasp train --data DIR`` accepts either a folder of example files
(:mod:`grasp_planner.network.data`) or a data-engine dataset folder (``index.json`` with format
``functional_grasp.dataset``); the latter is converted once into ``<out>/examples/``. This module
lives outside ``grasp_planner`` because the planner must not depend on the data engine.

Per shard, only grasps that were held *and* functional (``grasp_kept``) become examples, for the
shard's hand only. Each rendered view gives one example file: the object pixels of the depth image
back-projected into the render world (partial cloud), normals from the nearest mesh face, the RGB
image resized to the network's ``image_size`` with each point's pixel scaled alike, the grasps
moved into the render world, and 1024 samples of the whole mesh surface there (the training's
penetration loss measures the hand against the complete object, not only the view). A shard
without views gives one file with the full mesh surface in the object frame.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: ``format`` of a data-engine dataset's ``index.json``.
ENGINE_FORMAT = "functional_grasp.dataset"
#: Surface samples of a shard without views, and at most this many view points are kept.
SURFACE_POINTS = 2048
#: Dense surface samples whose faces give the view points' normals (nearest sample's face).
NORMAL_SAMPLES = 20000
#: Whole-surface samples stored with each view for the training's penetration loss.
WHOLE_SURFACE_POINTS = 1024


def is_engine_dataset(path: str | Path) -> bool:
    """True if ``path`` is a data-engine dataset folder."""
    index = Path(path) / "index.json"
    try:
        return index.is_file() and json.loads(index.read_text()).get("format") == ENGINE_FORMAT
    except ValueError:
        return False


def view_cloud(depth: np.ndarray, mask: np.ndarray, K: np.ndarray, T_world_camera: np.ndarray):
    """Object pixels of a rendered view → (M, 3) world points and their (M, 2) pixel (u, v)."""
    v, u = np.nonzero(mask & np.isfinite(depth) & (depth > 0))
    z = depth[v, u]
    cam = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], axis=1)
    return cam @ T_world_camera[:3, :3].T + T_world_camera[:3, 3], np.stack([u, v], axis=1).astype(np.float32)


def convert_engine_dataset(root: str | Path, hand, out_dir: str | Path,
                           image_size: tuple[int, int] | None = None, seed: int = 0) -> list[Path]:
    """Write example files for ``hand`` from a data-engine dataset (see the module docstring).

    Args:
        root: the dataset folder.
        hand: :class:`~grasp_planner.hands.HandDescription` to train for (shards of other hands are skipped).
        out_dir: folder for the example files (existing ones are kept: conversion resumes).
        image_size: (height, width) images are resized to; None = store no images (geometry only).
        seed: seed of the point subsampling.

    Returns:
        The example files (written or kept).
    """
    import trimesh
    from scipy.spatial import cKDTree

    from grasp_data.dataset import load_shard
    from grasp_planner.image_input import resize_view
    from grasp_planner.network.data import write_examples

    root, out_dir = Path(root), Path(out_dir)
    index = json.loads((root / "index.json").read_text())
    written: list[Path] = []
    rng = np.random.default_rng(seed)
    for name, entry in sorted(index.get("shards", {}).items()):
        if not entry.get("grasps_kept"):
            continue
        views = int(entry.get("views", 0))
        targets = [out_dir / f"{name}_view{v}.npz" for v in range(views)] or [out_dir / f"{name}_surface.npz"]
        if all(t.exists() for t in targets):
            written += targets
            continue
        shard = load_shard(root / entry["file"])
        meta = shard["meta"]
        if meta.get("hand") != hand.name:
            continue
        kept = np.asarray(shard["grasp_kept"], bool)
        names = list(meta["joint_names"])
        qs = [dict(zip(names, q.tolist())) for q in np.asarray(shard["grasp_q"])[kept]]
        poses = np.asarray(shard["grasp_root_pose"])[kept]
        mesh = trimesh.Trimesh(shard["mesh_vertices"], shard["mesh_faces"], process=False)
        if not views:
            pts, face = trimesh.sample.sample_surface(mesh, SURFACE_POINTS, seed=rng)
            written.append(write_examples(targets[0], hand, pts, mesh.face_normals[face], list(poses), qs,
                                          source="data_engine"))
            continue
        dense, dense_face = trimesh.sample.sample_surface(mesh, NORMAL_SAMPLES, seed=rng)
        dense_tree = cKDTree(dense)
        whole = np.arange(WHOLE_SURFACE_POINTS) * (NORMAL_SAMPLES // WHOLE_SURFACE_POINTS)   # already random
        for v, target in enumerate(targets):
            T_wo = shard["render_T_world_object"][v]
            pts_w, uv = view_cloud(shard["render_depth"][v], shard["render_mask"][v], shard["render_K"][v],
                                    shard["render_T_world_camera"][v])
            if len(pts_w) < 32:
                continue
            keep = rng.choice(len(pts_w), min(len(pts_w), SURFACE_POINTS), replace=False)
            pts_w, uv = pts_w[keep], uv[keep]
            local = (pts_w - T_wo[:3, 3]) @ T_wo[:3, :3]                           # world → object frame
            _, nearest = dense_tree.query(local)                                   # normal of the nearest face
            normals = mesh.face_normals[dense_face[nearest]] @ T_wo[:3, :3].T
            image = None
            if image_size is not None:
                image, uv = resize_view(shard["render_rgb"][v], uv, image_size)
                image = image.transpose(2, 0, 1)                                   # stored (3, h, w)
            written.append(write_examples(target, hand, pts_w, normals, [T_wo @ p for p in poses], qs,
                                          source="data_engine", image=image, pixel_uv=uv if image is not None else None,
                                          partial_view=True,
                                          surface_points=dense[whole] @ T_wo[:3, :3].T + T_wo[:3, 3],
                                          surface_normals=mesh.face_normals[dense_face[whole]] @ T_wo[:3, :3].T))
    return written
