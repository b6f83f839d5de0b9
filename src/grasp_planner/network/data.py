"""Training examples of the D(R,O) network: storage, the bootstrap generator, and the torch Dataset.

An example is one grasp of one object view: object points + outward normals (a partial view or the
full surface), optionally an RGB image with each point's pixel, the hand's joints by name and the
wrist pose (hand root → cloud frame). The targets — hand points at the grasp (torch FK), the
distance matrix and the ground-truth importance — are computed from these in the training loop.

Storage (``functional_grasp.dro_examples/1``): a folder of ``.npz`` files (loaded with
``allow_pickle=False``), one per object, each holding

- ``format``, ``hand``, ``source`` (0-d strings), ``joint_names`` (nq,) strings;
- ``object_points``, ``object_normals`` (M, 3) float32, metres, cloud frame (the robot base);
- ``wrist_pose`` (G, 4, 4) float64 hand root → cloud frame; ``q`` (G, nq) float64 radians;
- optional ``image`` (3, H, W) uint8 and ``pixel_uv`` (M, 2) float32 (one view per file);
- optional ``partial_view`` 0-d bool: the points are one camera's view (absent = a whole surface);
- optional ``surface_points``, ``surface_normals`` (S, 3) float32: the object's whole surface, cloud
  frame, for the penetration loss (a view cannot show the back the hand must not enter).

:func:`bootstrap_examples` writes such a folder from the project's optimisation-based synthesiser
on generated :mod:`grasp_data.objects` instances. Those grasps are *stable* power grasps (thumb
opposing fingers), not functional ones: a network trained on them learns where the optimiser puts
the hand, not CorDex's functional contacts. Train on the data engine's validated grasps
(``fgrasp data generate``) for functional grasping.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from grasp_planner.hands.description import HandDescription

#: Format tag of every example file.
EXAMPLES_FORMAT = "functional_grasp.dro_examples/1"
#: Where the bootstrap puts the objects in the robot base frame: x, y ranges (metres), as the demo does.
BOOTSTRAP_XY_RANGE_M = ((0.42, 0.58), (-0.12, 0.12))
#: Whole-surface samples per training item for the penetration loss (when the examples carry them).
SURFACE_LOSS_POINTS = 512
#: Views the dataset can present: the full surface, a partial view from a random camera, or either.
VIEWS = ("full", "partial", "mixed")


class ExampleFormatError(ValueError):
    """An example file is not in :data:`EXAMPLES_FORMAT` or holds inconsistent arrays."""


def write_examples(path: str | Path, hand: HandDescription, object_points: np.ndarray, object_normals: np.ndarray,
                   wrist_poses: Sequence[np.ndarray], q_by_name: Sequence[dict[str, float]], source: str,
                   image: np.ndarray | None = None, pixel_uv: np.ndarray | None = None,
                   partial_view: bool = False, surface_points: np.ndarray | None = None,
                   surface_normals: np.ndarray | None = None) -> Path:
    """Write the grasps of one object view to ``path`` (``.npz``, atomically: temp file + rename).

    Args:
        path: destination file.
        hand: the hand of the grasps.
        object_points, object_normals: (M, 3) metres / unit outward normals, cloud frame.
        wrist_poses: G (4, 4) hand root → cloud frame.
        q_by_name: G joint dicts (radians); every joint of ``hand.joint_names`` is looked up by
            name after expanding couplings (:meth:`HandDescription.expand`).
        source: what produced the grasps (e.g. ``"optimiser"``, ``"data_engine"``).
        image: optional (3, H, W) uint8 RGB of the view; ``pixel_uv`` (M, 2) then gives each point's pixel.
        partial_view: the points are one camera's view already (a rendered view), not the whole
            surface: training uses them as stored instead of cutting a random partial view out of them.
        surface_points, surface_normals: optional (S, 3) samples of the object's *whole* surface and
            their outward normals, cloud frame: the penetration loss then measures the hand against
            the complete object, unseen back included (training only; the network never sees them).

    Returns:
        The path written.
    """
    pts = np.asarray(object_points, np.float32).reshape(-1, 3)
    nrm = np.asarray(object_normals, np.float32).reshape(-1, 3)
    if pts.shape != nrm.shape or not len(pts) or not np.isfinite(pts).all():
        raise ExampleFormatError(f"object_points {pts.shape} and object_normals {nrm.shape} must be equal, "
                                 "non-empty (M, 3) arrays of finite values")
    if len(wrist_poses) != len(q_by_name) or not len(wrist_poses):
        raise ExampleFormatError(f"need one wrist pose per joint dict, got {len(wrist_poses)} and {len(q_by_name)}")
    q = np.array([[hand.expand(dict(g))[n] for n in hand.joint_names] for g in q_by_name], np.float64)
    arrays = {"format": np.array(EXAMPLES_FORMAT), "hand": np.array(hand.name), "source": np.array(source),
              "joint_names": np.array(hand.joint_names), "object_points": pts, "object_normals": nrm,
              "wrist_pose": np.asarray(wrist_poses, np.float64).reshape(-1, 4, 4), "q": q,
              "partial_view": np.array(bool(partial_view))}
    if (surface_points is None) != (surface_normals is None):
        raise ExampleFormatError("surface_points and surface_normals go together")
    if surface_points is not None:
        spts = np.asarray(surface_points, np.float32).reshape(-1, 3)
        snrm = np.asarray(surface_normals, np.float32).reshape(-1, 3)
        if spts.shape != snrm.shape or not len(spts) or not np.isfinite(spts).all():
            raise ExampleFormatError(f"surface_points {spts.shape} and surface_normals {snrm.shape} must be equal, "
                                     "non-empty (S, 3) arrays of finite values")
        arrays["surface_points"], arrays["surface_normals"] = spts, snrm
    if image is not None:
        if pixel_uv is None or np.shape(pixel_uv) != (len(pts), 2) or np.ndim(image) != 3 or np.shape(image)[0] != 3:
            raise ExampleFormatError("an image needs shape (3, H, W) and pixel_uv (M, 2), one pixel per point")
        arrays["image"] = np.asarray(image, np.uint8)
        arrays["pixel_uv"] = np.asarray(pixel_uv, np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class ExampleFile:
    """One loaded example file (arrays as stored; ``q`` already in the dataset hand's joint order)."""

    path: Path
    source: str
    object_points: np.ndarray
    object_normals: np.ndarray
    wrist_pose: np.ndarray
    q: np.ndarray
    image: np.ndarray | None
    pixel_uv: np.ndarray | None
    partial_view: bool = False
    surface_points: np.ndarray | None = None
    surface_normals: np.ndarray | None = None


def _read_file(path: Path, hand: HandDescription) -> ExampleFile | str:
    """The file's examples for ``hand``, or the name of the hand it holds (another hand)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ExampleFormatError(f"{path}: not a readable .npz example file ({exc})") from exc
    if str(data.get("format", "")) != EXAMPLES_FORMAT:
        raise ExampleFormatError(f"{path}: format {str(data.get('format', 'missing'))!r}, expected {EXAMPLES_FORMAT!r}")
    if str(data["hand"]) != hand.name:
        return str(data["hand"])
    names = [str(n) for n in data["joint_names"]]
    missing = sorted(set(hand.joint_names) - set(names))
    if missing:
        raise ExampleFormatError(f"{path}: joints {missing} of hand '{hand.name}' are not in the file")
    cols = [names.index(n) for n in hand.joint_names]                                # map joints by name
    q, pose = np.asarray(data["q"])[:, cols], np.asarray(data["wrist_pose"])
    if q.shape[0] != pose.shape[0] or pose.shape[1:] != (4, 4):
        raise ExampleFormatError(f"{path}: {q.shape[0]} joint vectors but wrist poses of shape {pose.shape}")
    return ExampleFile(path=path, source=str(data["source"]), object_points=data["object_points"],
                       object_normals=data["object_normals"], wrist_pose=pose, q=q,
                       image=data.get("image"), pixel_uv=data.get("pixel_uv"),
                       partial_view=bool(data.get("partial_view", False)),
                       surface_points=data.get("surface_points"), surface_normals=data.get("surface_normals"))


def load_example_files(root: str | Path, hand: HandDescription) -> list[ExampleFile]:
    """Every example file of ``hand`` under ``root`` (recursively, sorted by path).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ExampleFormatError: a file is unreadable or inconsistent, or no file is for ``hand``
            (the message lists the hands found).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"training data folder not found: {root}")
    files, others = [], set()
    for path in sorted(root.rglob("*.npz")):
        if path.name.endswith(".tmp.npz"):
            continue
        got = _read_file(path, hand)
        if isinstance(got, str):
            others.add(got)
        else:
            files.append(got)
    if not files:
        found = f"; it holds examples for {sorted(others)}" if others else " (no .npz example files)"
        raise ExampleFormatError(f"{root}: no training examples for hand '{hand.name}'{found}. Make some with "
                                 f"`fgrasp train --bootstrap N` or the data engine")
    return files


def partial_view_mask(points: np.ndarray, normals: np.ndarray, camera_dir: np.ndarray) -> np.ndarray:
    """(M,) bool: points whose outward normal faces a distant camera in direction ``camera_dir`` (unit, from object)."""
    return normals @ camera_dir > 0.0


def random_camera_direction(rng: np.random.Generator, elevation_deg: tuple[float, float] = (15.0, 65.0)) -> np.ndarray:
    """Unit direction object → camera: any azimuth, elevation above the table in the given range."""
    az = rng.uniform(0.0, 2 * np.pi)
    el = np.radians(rng.uniform(*elevation_deg))
    return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])


class DROExampleDataset(Dataset):
    """Grasp examples of one hand as network inputs (see the module docstring for the storage).

    Item ``i`` is a dict of tensors: ``object_points`` / ``object_normals`` (N, 3) float32 (N points
    drawn from the stored view, with replacement when it has fewer), ``q`` (nq,) float32 in
    ``hand.joint_names`` order, ``wrist_pose`` (4, 4) float32, and with images ``image`` (3, H, W)
    float32 in [0, 1] and ``pixel_uv`` (N, 2). The point draw (and the partial view) depends on
    ``(seed, epoch, i)`` only, so a resumed run sees the same data as an uninterrupted one.

    Args:
        root: folder of example files.
        hand: the hand to train for (files of other hands are skipped).
        num_points: N points per example (the network's ``object_points``).
        view: "full" surface, "partial" (points facing a random camera), or "mixed" (either, 50/50);
            files that carry an image or are a ``partial_view`` already (rendered views) are always
            used as stored.
        seed: seed of the draws.
        indices: optional subset of example indices (e.g. a train/validation split).
    """

    def __init__(self, root: str | Path, hand: HandDescription, num_points: int, view: str = "mixed",
                 seed: int = 0, indices: Sequence[int] | None = None, yaw_augment: bool = False):
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {num_points}")
        self.hand, self.num_points, self.view, self.seed = hand, num_points, view, seed
        self.yaw_augment = yaw_augment
        self.files = load_example_files(root, hand)
        index = [(f, g) for f, ex in enumerate(self.files) for g in range(len(ex.q))]
        self.index = index if indices is None else [index[i] for i in indices]
        self.epoch = 0
        with_image = {ex.image is not None for ex in self.files}
        if len(with_image) > 1:
            raise ExampleFormatError(f"{root}: some example files have images and some do not; "
                                     "train on one kind at a time")
        self.has_images = with_image == {True}
        #: Every file carries whole-surface samples: items then hold ``surface_points``/``surface_normals``.
        self.has_surface = all(ex.surface_points is not None for ex in self.files)

    def set_epoch(self, epoch: int) -> None:
        """Select the draws of ``epoch`` (call before each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        f, g = self.index[i]
        ex = self.files[f]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        pts, nrm = ex.object_points, ex.object_normals
        keep = np.arange(len(pts))
        cut = self.view == "partial" or (self.view == "mixed" and rng.random() < 0.5)
        if ex.image is None and not ex.partial_view and cut:                 # a whole surface: cut a view
            visible = np.flatnonzero(partial_view_mask(pts, nrm, random_camera_direction(rng)))
            keep = visible if len(visible) >= 32 else keep
        pick = keep[rng.choice(len(keep), self.num_points, replace=len(keep) < self.num_points)]
        pts, nrm, wrist = pts[pick], nrm[pick], ex.wrist_pose[g]
        yaw = rng.uniform(-np.pi, np.pi) if self.yaw_augment else 0.0
        surface = None
        if self.has_surface:                   # drawn after the view's draws: those stay as they were
            spick = rng.choice(len(ex.surface_points), SURFACE_LOSS_POINTS,
                               replace=len(ex.surface_points) < SURFACE_LOSS_POINTS)
            surface = ex.surface_points[spick], ex.surface_normals[spick]
        if self.yaw_augment:
            centre = pts.mean(axis=0)
            if surface is not None:
                surface = rotate_about_vertical(*surface, np.eye(4), yaw, centre=centre)[:2]
            pts, nrm, wrist = rotate_about_vertical(pts, nrm, wrist, yaw, centre=centre)
        item = {"object_points": torch.from_numpy(pts.astype(np.float32)),
                "object_normals": torch.from_numpy(nrm.astype(np.float32)),
                "q": torch.from_numpy(ex.q[g].astype(np.float32)),
                "wrist_pose": torch.from_numpy(wrist.astype(np.float32))}
        if surface is not None:
            item["surface_points"] = torch.from_numpy(surface[0].astype(np.float32))
            item["surface_normals"] = torch.from_numpy(surface[1].astype(np.float32))
        if ex.image is not None:
            item["image"] = torch.from_numpy(ex.image.astype(np.float32) / 255.0)
            item["pixel_uv"] = torch.from_numpy(ex.pixel_uv[pick].astype(np.float32))
        return item


def rotate_about_vertical(points: np.ndarray, normals: np.ndarray, wrist_pose: np.ndarray,
                          yaw: float, centre: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn an example (object and grasp together) by ``yaw`` radians about the vertical axis through the
    points' centroid: the object stays upright on the same table, so the grasp stays as valid.

    Args:
        points, normals: (N, 3) object points (metres) and unit normals.
        wrist_pose: (4, 4) hand root pose in the points' frame.
        yaw: rotation angle about +z, radians.
        centre: (3,) a point of the axis instead of the centroid (to turn other points of the same example alike).

    Returns:
        The rotated ``(points, normals, wrist_pose)``.
    """
    c, s = np.cos(yaw), np.sin(yaw)
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    centre = points.mean(axis=0) if centre is None else np.asarray(centre, dtype=float)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = turn, centre - turn @ centre
    return (points - centre) @ turn.T + centre, normals @ turn.T, T @ wrist_pose


def bootstrap_examples(out_dir: str | Path, hand: HandDescription, objects: int, seed: int = 0,
                       categories: Sequence[str] | None = None, grasps_per_object: int = 8,
                       surface_points: int = 2048, progress: bool = True) -> list[Path]:
    """Examples from the optimisation-based synthesiser on generated objects (always available).

    For object ``k`` (category ``categories[k % len]``, generator seed ``seed + k``): the instance is
    rotated by a random yaw and placed on the table at a random spot of :data:`BOOTSTRAP_XY_RANGE_M`
    in the robot base frame, its surface sampled, and :class:`~grasp_planner.grasp_synthesis.GraspSynthesizer`
    run on the complete cloud; its candidates (contact configuration ``q_grasp``) become the examples.
    Files already present are kept (an interrupted run continues where it stopped).

    These are stable, not functional grasps (see the module docstring).

    Args:
        out_dir: folder to write ``<hand>_<category>_<k>.npz`` into.
        hand: the hand.
        objects: number of object instances.
        seed: first generator seed (placement draws use it too).
        categories: generator categories (default: all of :func:`grasp_data.objects.categories`).
        grasps_per_object: synthesiser candidates kept per object at most.
        surface_points: surface samples stored per object.
        progress: show a tqdm bar.

    Returns:
        The files written or kept (objects where the synthesiser found no grasp have none).
    """
    from tqdm import tqdm

    from grasp_data.objects import categories as all_categories
    from grasp_data.labelled_mesh import MeshValidationError
    from grasp_data.objects import generate
    from grasp_planner.grasp_synthesis import GraspSynthesizer
    from grasp_planner.object_model import ObjectModelError, build_object_proxy

    cats = tuple(categories or all_categories())
    synthesizer = GraspSynthesizer(hand)
    out_dir = Path(out_dir)
    written = []
    for k in tqdm(range(objects), desc=f"bootstrap {hand.name}", unit="object", disable=not progress):
        cat = cats[k % len(cats)]
        path = out_dir / f"{hand.name}_{cat}_{k:05d}.npz"
        if path.exists():
            written.append(path)
            continue
        rng = np.random.default_rng([seed, k])
        try:
            mesh = generate(cat, seed=seed + k)
        except MeshValidationError:                   # a rare bad draw of the generator: skip that object
            continue
        pts, nrm, _ = mesh.sample_surface(surface_points, seed=rng)
        yaw = rng.uniform(-np.pi, np.pi)
        rot = np.array([[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
        xy = [rng.uniform(*BOOTSTRAP_XY_RANGE_M[0]), rng.uniform(*BOOTSTRAP_XY_RANGE_M[1])]
        pts, nrm = pts @ rot.T + np.array([*xy, 0.0]), nrm @ rot.T
        try:
            candidates = synthesizer.synthesize(build_object_proxy(pts, 0.0), max_results=grasps_per_object)
        except ObjectModelError:
            continue
        if candidates:
            written.append(write_examples(path, hand, pts, nrm, [c.T_base_root for c in candidates],
                                          [c.q_grasp for c in candidates], source="optimiser"))
    return written
