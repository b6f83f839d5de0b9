"""A simulated check of candidate grasps on the object shape estimated from one view.

The ranking's terms read penetration and contact off a partial cloud; the judge that decides
whether a grasp holds is physics. This module runs that physics before a grasp leaves the
planner, on what the planner knows of the object:

1. **shape** (:func:`estimate_shape`): the view's points, each extended ``thickness_m`` away
   from the camera (a solid skin behind what was seen), plus — with a shape-completion model —
   the guessed points of the unseen side that lie behind the visible surface, each extended the
   same depth inward along its normal. The points are split into ``pieces`` k-means clusters
   and each cluster's convex hull becomes one MuJoCo collision piece, so concave objects (a
   drill's gap between handle and body, a mug's cup) are not filled the way one hull fills them.
   Mass: ``density × mass_fraction × hull volume`` of the whole estimate (a hull over-fills;
   the fraction takes that back).
2. **judge** (:class:`SimCheck`): the data engine's floating-hand validator
   (:class:`grasp_data.validation.GraspValidator`: start 25 % open, at most 5 mm deep, close, six
   0.5 × mass N disturbance trials, held if ≤ 2 cm) with that shape as the object and no
   functional test (the estimate has no regions).

The planner puts the candidates that hold on the estimate first, in their ranking order
(:class:`~grasp_planner.grasp_predictor.NetworkPredictor`, ``sim_check``). On held-out OYMotion
tools (seeds 0–3) 70 % of the candidates that hold on the estimate hold in the judge, against
7.7 % of all candidates; the top-ranked grasp holds on 165 instead of 114 of 480 objects (README,
"Simulated check").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from grasp_data.validation import GraspOutcome
    from grasp_planner.hands import HandDescription


class ShapeEstimateError(ValueError):
    """The cloud cannot give an object shape (too few or non-finite points, a flat cloud)."""


@dataclass(frozen=True)
class SimCheckConfig:
    """Settings of the simulated check.

    Attributes:
        pieces: k-means clusters of the estimate's points; each cluster's hull is one collision piece.
        thickness_m: how far each surface point is extended into the object, metres.
        mass_fraction: mass = density × this × hull volume of the estimate (a hull over-fills).
        density_kg_m3: the judge's density (500 kg/m³, as the data engine's).
        hidden_m: a guessed point is kept only this far behind the visible surface on its camera ray, metres.
        chunk: grasps judged per batch (:meth:`SimCheck.judge` can stop after a batch in which one holds).
        threads: MjData stepped in parallel.
    """

    pieces: int = 48
    thickness_m: float = 0.01
    mass_fraction: float = 0.6
    density_kg_m3: float = 500.0
    hidden_m: float = 0.005
    chunk: int = 8
    threads: int = 1

    def __post_init__(self) -> None:
        if self.pieces < 1:
            raise ValueError(f"pieces must be >= 1, got {self.pieces}")
        if not 0.0 < self.thickness_m <= 0.05:
            raise ValueError(f"thickness_m must be in (0, 0.05] m, got {self.thickness_m}")
        if not 0.0 < self.mass_fraction <= 1.0:
            raise ValueError(f"mass_fraction must be in (0, 1], got {self.mass_fraction}")
        if self.density_kg_m3 <= 0 or self.hidden_m < 0 or self.threads < 1 or self.chunk < 1:
            raise ValueError(f"density_kg_m3 ({self.density_kg_m3}) must be > 0, hidden_m ({self.hidden_m}) >= 0, "
                             f"threads ({self.threads}) and chunk ({self.chunk}) >= 1")


@dataclass(frozen=True)
class EstimatedShape:
    """Convex pieces of an estimated object, in the cloud's frame shifted by ``centre``.

    Attributes:
        pieces: vertex arrays, each (n_i, 3) float64, metres (MuJoCo takes each one's convex hull).
        centre: (3,) where the shape's frame origin lies in the cloud's frame, metres.
        mass_kg: the object's mass.
        guessed_points: how many points of the unseen side (completion) went into the pieces.
    """

    pieces: tuple[np.ndarray, ...]
    centre: np.ndarray
    mass_kg: float
    guessed_points: int = 0

    def add_to_spec(self, spec, *, pos: np.ndarray, quat_wxyz: np.ndarray, density_kg_m3: float,
                    friction: float):
        """Add the object body (free joint, one mesh geom per piece) to a MuJoCo ``spec``, as
        :meth:`sim_bridge.objects.ObjectSpec.add_to_spec` does; ``density_kg_m3`` is ignored: the
        pieces share ``mass_kg``."""
        import mujoco
        from scipy.spatial import ConvexHull

        from sim_bridge.objects import OBJECT_BODY, OBJECT_CONDIM, OBJECT_JOINT

        volume = sum(ConvexHull(p, qhull_options="QJ").volume for p in self.pieces)
        density = self.mass_kg / volume
        body = spec.worldbody.add_body(name=OBJECT_BODY, pos=list(map(float, pos)), quat=list(map(float, quat_wxyz)))
        body.add_freejoint(name=OBJECT_JOINT)
        fric = [float(friction), 0.005, 0.0001]
        for i, piece in enumerate(self.pieces):
            mesh = spec.add_mesh(name=f"estimate_{i}")
            mesh.uservert = np.asarray(piece, np.float64).reshape(-1).tolist()
            body.add_geom(name=f"object_collision_{i}", type=mujoco.mjtGeom.mjGEOM_MESH, meshname=mesh.name,
                          density=float(density), friction=fric, condim=OBJECT_CONDIM)
        return body

    def hull_mesh(self):
        """The convex hull of every piece as a ``trimesh.Trimesh`` (same frame)."""
        import trimesh

        return trimesh.convex.convex_hull(np.concatenate(self.pieces))


def inward_directions(cloud: np.ndarray, camera_xyz: np.ndarray | None) -> np.ndarray:
    """(N, 3) unit directions into the object at each cloud point: along the camera ray, or, without
    a camera (a full-surface cloud), against the local-PCA normal pointing away from the centroid."""
    if camera_xyz is not None:
        ray = cloud - np.asarray(camera_xyz, np.float64)[None]
        return ray / np.maximum(np.linalg.norm(ray, axis=1, keepdims=True), 1e-12)
    import torch

    from grasp_planner.network.recovery import estimate_normals

    return -estimate_normals(torch.from_numpy(cloud)).numpy()


def estimate_shape(cloud: np.ndarray, inward: np.ndarray, guess: tuple[np.ndarray, np.ndarray] | None = None,
                   config: SimCheckConfig = SimCheckConfig(), seed: int = 0) -> EstimatedShape:
    """The object's convex pieces from its surface points (module docstring, step 1).

    Args:
        cloud: (N, 3) seen surface points, metres.
        inward: (N, 3) unit directions into the object at them (:func:`inward_directions`).
        guess: ``(points (M, 3), outward normals (M, 3))`` of the unseen side, or None.
        config: settings.
        seed: seed of the clustering.

    Raises:
        ShapeEstimateError: fewer than 8 finite points, or they span no volume.
    """
    from scipy.cluster.vq import kmeans2
    from scipy.spatial import ConvexHull, QhullError

    cloud = np.asarray(cloud, np.float64).reshape(-1, 3)
    inward = np.asarray(inward, np.float64).reshape(-1, 3)
    finite = np.isfinite(cloud).all(axis=1) & np.isfinite(inward).all(axis=1)
    surface, deeper = cloud[finite], cloud[finite] + config.thickness_m * inward[finite]
    guessed = 0
    if guess is not None and len(guess[0]):
        g, n = (np.asarray(a, np.float64).reshape(-1, 3) for a in guess)
        guessed = len(g)
        surface, deeper = np.concatenate([surface, g]), np.concatenate([deeper, g - config.thickness_m * n])
    if len(surface) < 8:
        raise ShapeEstimateError(f"the object cloud has {len(surface)} finite points; the shape estimate needs 8")
    centre = surface.mean(axis=0)
    surface, deeper = surface - centre, deeper - centre
    try:
        volume = ConvexHull(np.concatenate([surface, deeper]), qhull_options="QJ").volume
    except QhullError as exc:
        raise ShapeEstimateError(f"the object cloud spans no volume: {exc}") from exc
    k = int(min(config.pieces, max(1, len(surface) // 8)))
    _, label = kmeans2(surface, k, minit="++", seed=np.random.default_rng(seed))
    pieces = []
    for c in np.unique(label):
        verts = np.concatenate([surface[label == c], deeper[label == c]])
        try:
            hull = ConvexHull(verts, qhull_options="QJ")
        except QhullError:          # a cluster of a few collinear points: no piece
            continue
        if hull.volume > 0:
            pieces.append(verts[hull.vertices])
    if not pieces:
        raise ShapeEstimateError("no cluster of the object cloud spans a volume")
    mass = config.density_kg_m3 * config.mass_fraction * volume
    return EstimatedShape(tuple(pieces), centre, float(mass), guessed)


class SimCheck:
    """Judges candidate grasps on an :class:`EstimatedShape` (module docstring, step 2).

    Args:
        hand: the hand.
        config: settings.
    """

    def __init__(self, hand: HandDescription, config: SimCheckConfig = SimCheckConfig()):
        from grasp_data.contact_filter import unreachable_hand_pairs
        from grasp_data.engine import _hand_model
        from grasp_data.validation import ValidationConfig

        self.hand, self.config = hand, config
        self.hand_model = _hand_model(hand.name)
        # The scene's hand link pairs that never touch (cached per process): found here, at start-up,
        # not in the first request (about 2 s for the Shadow Hand).
        unreachable_hand_pairs(hand, ValidationConfig.self_pair_samples, ValidationConfig.self_pair_margin_m)

    def judge(self, shape: EstimatedShape, root_poses: np.ndarray, q: np.ndarray,
              stop_after_held: bool = False) -> list[GraspOutcome | None]:
        """Validate grasps on ``shape``, in order, ``config.chunk`` at a time.

        Args:
            shape: the estimate.
            root_poses: (K, 4, 4) hand root poses in the cloud's frame.
            q: (K, J) joint angles, radians, ``hand.joint_names`` order.
            stop_after_held: stop after the first chunk in which a grasp holds (the grasps after it
                are not judged: None).

        Returns:
            K outcomes (``held``, ``hand_contacts``, ``reason``; ``functional`` is not tested: True
            for a grasp that held), None for a grasp not judged.
        """
        from grasp_data.adaptation import AdaptationResult
        from grasp_data.labelled_mesh import LabelledMesh
        from grasp_data.validation import FloatingHandScene, GraspValidator, ValidationConfig

        mesh = shape.hull_mesh()
        instance = LabelledMesh(mesh, np.zeros(len(mesh.faces), np.int16), ("body",))
        vconfig = ValidationConfig(threads=self.config.threads, density_kg_m3=self.config.density_kg_m3)
        validator = GraspValidator(FloatingHandScene(self.hand_model, instance, shape, vconfig), None,
                                   region_samples=64)
        poses = np.array(root_poses, np.float64).reshape(-1, 4, 4).copy()
        poses[:, :3, 3] -= shape.centre
        q = np.asarray(q, np.float64).reshape(len(poses), -1)
        out: list[GraspOutcome | None] = [None] * len(poses)
        for start in range(0, len(poses), self.config.chunk):
            part = slice(start, start + self.config.chunk)
            n = len(poses[part])
            zeros = np.zeros(n)
            out[part] = validator.validate(AdaptationResult(self.hand.name, tuple(self.hand.joint_names), poses[part],
                                                            q[part], zeros, zeros, np.zeros((n, 6)), np.zeros((n, 6)),
                                                            zeros))
            if stop_after_held and any(holds(o) for o in out[part]):
                break
        return out


def holds(outcome: GraspOutcome | None) -> bool:
    """The grasp was judged, held through the disturbances and touched the object."""
    return outcome is not None and bool(outcome.held and outcome.hand_contacts > 0)
