"""Batched, differentiable hand forward kinematics in torch, with the hand's point sets and spheres.

Built once from a :class:`~grasp_planner.hands.HandDescription` (its hand-only MuJoCo model, the
one :class:`~grasp_planner.hand_kinematics.HandKinematics` compiles: root body fixed at the
origin), everything is precomputed into tensors, and :meth:`TorchHandKinematics.forward` maps a
batch of joint configurations to

- link poses (B, L, 4, 4): MuJoCo's body kinematics (hinge and slide joints, ``ref``, joint
  ``pos``/``axis``, several joints per body, bodies without joints), so the result equals
  ``mj_kinematics``;
- a fixed surface point set (D(R,O): 512 points by default) spread over the links by surface
  area and chosen by seeded farthest point sampling from the collision geoms, with normals;
- candidate contact points on the middle and distal finger links (CorDex contact losses) and the
  fingertip frames;
- sphere centres of a collision approximation, for the differentiable hand–object and
  self-penetration penalties of :meth:`object_penetration` and :meth:`self_penetration`.

All outputs are in the hand root frame (``hand.root_body``), or in the frame of the optional
``root_pose``; everything is differentiable w.r.t. ``q`` and ``root_pose``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import mujoco
import numpy as np
import torch

from grasp_planner.hand_kinematics import HandKinematics, _geom_local_points
from grasp_planner.hands.description import HandDescription

#: Batches up to this size move their points with one padded batched matmul (:meth:`TorchHandKinematics._transform_points`).
SMALL_BATCH = 64
#: Spacing of the dense candidate points that the surface points are sampled from, metres.
CANDIDATE_SPACING_M = 0.002


@dataclass(frozen=True)
class HandPointConfig:
    """How the hand's point sets and collision spheres are built.

    Attributes:
        num_points: total surface points over all links (D(R,O) uses 512).
        contact_points_per_link: candidate contact points on each middle and distal finger link.
        include_forearm: also put surface points on the bodies above the palm (forearm, wrist);
            off by default so the points describe the hand itself. Spheres always cover them.
        sphere_min_radius_fraction: a box, cylinder or mesh is filled with spheres of radius at
            least ``max(smallest half-size, fraction × middle half-size)``, unitless.
        max_spheres_per_geom: the radius grows until a geom needs at most this many spheres.
        seed: seed of the farthest point sampling starts (same seed, same points).
    """

    num_points: int = 512
    contact_points_per_link: int = 16
    include_forearm: bool = False
    sphere_min_radius_fraction: float = 1.0 / 3.0
    max_spheres_per_geom: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_points < 1 or self.contact_points_per_link < 0:
            raise ValueError(f"num_points must be >= 1 (got {self.num_points}) and "
                             f"contact_points_per_link >= 0 (got {self.contact_points_per_link})")
        if self.max_spheres_per_geom < 1:
            raise ValueError(f"max_spheres_per_geom must be >= 1, got {self.max_spheres_per_geom}")
        if not 0.0 < self.sphere_min_radius_fraction <= 1.0:
            raise ValueError("sphere_min_radius_fraction must be in (0, 1], got "
                             f"{self.sphere_min_radius_fraction}")


@dataclass(frozen=True)
class HandFK:
    """Result of :meth:`TorchHandKinematics.forward` for a batch of B configurations.

    Attributes:
        link_poses: (B, L, 4, 4) pose of every link (body) in ``link_names`` order.
        points: (B, P, 3) surface points, metres (link of each: ``point_link``).
        normals: (B, P, 3) outward unit normals of ``points``, or None when not requested.
        contact_points: (B, C, 3) candidate contact points on middle/distal finger links.
        fingertip_frames: (B, F, 4, 4) distal-link frames moved to the fingertip pad point, fingers
            in ``fingers`` order.
        sphere_centers: (B, S, 3) centres of the collision spheres, metres.
    """

    link_poses: torch.Tensor
    points: torch.Tensor
    normals: torch.Tensor | None
    contact_points: torch.Tensor
    fingertip_frames: torch.Tensor
    sphere_centers: torch.Tensor

    @property
    def fingertips(self) -> torch.Tensor:
        """(B, F, 3) fingertip pad points, metres."""
        return self.fingertip_frames[..., :3, 3]


# --------------------------------------------------------------------------- geometry helpers
def _quat_matrix(quat: np.ndarray) -> np.ndarray:
    R = np.zeros(9)
    mujoco.mju_quat2Mat(R, np.asarray(quat, dtype=float))
    return R.reshape(3, 3)


def _mesh_surface(model: mujoco.MjModel, gid: int, spacing: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Area-weighted samples on a mesh geom's triangles: (K, 3) points, (K, 3) normals, area m²."""
    mesh = model.geom_dataid[gid]
    verts = model.mesh_vert[model.mesh_vertadr[mesh]:model.mesh_vertadr[mesh] + model.mesh_vertnum[mesh]]
    faces = model.mesh_face[model.mesh_faceadr[mesh]:model.mesh_faceadr[mesh] + model.mesh_facenum[mesh]]
    tri = verts[faces].astype(float)                                       # (F, 3, 3)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    areas = 0.5 * np.linalg.norm(cross, axis=1)
    area = float(areas.sum())
    n = int(np.clip(area / spacing**2, 64, 20000))
    face = rng.choice(len(tri), n, p=areas / area)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[face]
    pts = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    normals = cross[face] / np.maximum(np.linalg.norm(cross[face], axis=1, keepdims=True), 1e-12)
    return pts, normals, area


def _primitive_area(gtype: int, size: np.ndarray) -> float:
    r = size[0]
    if gtype == mujoco.mjtGeom.mjGEOM_SPHERE:
        return 4 * np.pi * r * r
    if gtype == mujoco.mjtGeom.mjGEOM_CAPSULE:
        return 4 * np.pi * r * size[1] + 4 * np.pi * r * r
    if gtype == mujoco.mjtGeom.mjGEOM_CYLINDER:
        return 4 * np.pi * r * size[1] + 2 * np.pi * r * r
    if gtype == mujoco.mjtGeom.mjGEOM_BOX:
        x, y, z = size
        return 8 * (x * y + y * z + x * z)
    if gtype == mujoco.mjtGeom.mjGEOM_ELLIPSOID:   # Knud Thomsen's approximation
        a, b, c = size
        p = 1.6075
        return 4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)
    raise ValueError(f"unsupported geom type {gtype} for surface points")


def _primitive_normals(gtype: int, size: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Outward normals of points lying on a primitive geom's surface (geom frame)."""
    if gtype == mujoco.mjtGeom.mjGEOM_SPHERE:
        n = pts.copy()
    elif gtype == mujoco.mjtGeom.mjGEOM_CAPSULE:
        n = pts - np.column_stack([np.zeros((len(pts), 2)), np.clip(pts[:, 2], -size[1], size[1])])
    elif gtype == mujoco.mjtGeom.mjGEOM_CYLINDER:
        radial = np.column_stack([pts[:, :2], np.zeros(len(pts))])
        on_cap = np.abs(np.abs(pts[:, 2]) - size[1]) < 1e-9
        n = np.where(on_cap[:, None], np.column_stack([np.zeros((len(pts), 2)), np.sign(pts[:, 2])]), radial)
    elif gtype == mujoco.mjtGeom.mjGEOM_BOX:
        axis = np.argmax(np.abs(pts) / size, axis=1)
        n = np.zeros_like(pts)
        n[np.arange(len(pts)), axis] = np.sign(pts[np.arange(len(pts)), axis])
    else:   # ellipsoid: gradient of sum (x_i / a_i)^2
        n = pts / size**2
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def _inside_primitive(gtype: int, size: np.ndarray, pts: np.ndarray, margin: float) -> np.ndarray:
    """(K,) bool: points (geom frame) strictly inside a primitive geom by more than ``margin``."""
    if gtype == mujoco.mjtGeom.mjGEOM_SPHERE:
        return np.linalg.norm(pts, axis=1) < size[0] - margin
    if gtype == mujoco.mjtGeom.mjGEOM_CAPSULE:
        axis_pt = np.column_stack([np.zeros((len(pts), 2)), np.clip(pts[:, 2], -size[1], size[1])])
        return np.linalg.norm(pts - axis_pt, axis=1) < size[0] - margin
    if gtype == mujoco.mjtGeom.mjGEOM_CYLINDER:
        return (np.linalg.norm(pts[:, :2], axis=1) < size[0] - margin) & (np.abs(pts[:, 2]) < size[1] - margin)
    if gtype == mujoco.mjtGeom.mjGEOM_BOX:
        return np.all(np.abs(pts) < size - margin, axis=1)
    if gtype == mujoco.mjtGeom.mjGEOM_ELLIPSOID:
        return np.sum((pts / np.maximum(size - margin, 1e-9)) ** 2, axis=1) < 1
    return np.zeros(len(pts), dtype=bool)     # meshes: no inside test


def farthest_point_indices(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``k`` points chosen by farthest point sampling from a seeded random start.

    Args:
        points: (N, 3) candidates.
        k: how many to choose (at most N).
        rng: generator for the first index.

    Returns:
        (k,) int indices into ``points``, in selection order.
    """
    k = min(k, len(points))
    chosen = np.empty(k, dtype=int)
    chosen[0] = rng.integers(len(points))
    dist = np.full(len(points), np.inf)
    for i in range(1, k):
        dist = np.minimum(dist, np.sum((points - points[chosen[i - 1]]) ** 2, axis=1))
        chosen[i] = int(np.argmax(dist))
    return chosen


def _allocate(total: int, areas: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``total`` proportional to ``areas`` (largest remainder, >= 1 each
    when ``total`` allows)."""
    n = len(areas)
    base = np.ones(n, dtype=int) if total >= n else np.zeros(n, dtype=int)
    rest = total - base.sum()
    share = rest * areas / areas.sum()
    counts = base + np.floor(share).astype(int)
    remainder = total - counts.sum()
    counts[np.argsort(-(share - np.floor(share)), kind="stable")[:remainder]] += 1
    return counts


def _geom_spheres(gtype: int, size: np.ndarray, center: np.ndarray, fraction: float, max_spheres: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Spheres covering one geom (geom frame): (K, 3) centres and (K,) radii, metres.

    Capsules become a chain of their own radius; spheres themselves; boxes, cylinders, ellipsoids
    and meshes (their bounding box ``size`` around ``center``) a grid of equal spheres in the
    mid-plane of the larger extents, 1.4 radii apart (so the grid leaves no hole). The radius
    starts at ``max(smallest half-size, fraction × middle half-size)`` and grows until at most
    ``max_spheres`` spheres are needed (thin plates get fewer, fatter spheres).
    """
    if gtype == mujoco.mjtGeom.mjGEOM_SPHERE:
        return np.zeros((1, 3)), np.array([size[0]])
    if gtype == mujoco.mjtGeom.mjGEOM_CAPSULE:
        r, half = size[0], size[1]
        z = np.linspace(-half, half, int(np.ceil(2 * half / r)) + 1)
        return np.column_stack([np.zeros((len(z), 2)), z]), np.full(len(z), r)
    ext = np.array([size[0], size[0], size[1]]) if gtype == mujoco.mjtGeom.mjGEOM_CYLINDER else np.asarray(size)
    order = np.sort(ext)
    rho = max(order[0], fraction * order[1])
    while True:
        axes = []
        for e in ext:
            span = max(e - rho, 0.0)
            axes.append(np.linspace(-span, span, int(np.ceil(2 * span / (1.4 * rho))) + 1)
                        if span > 0.1 * rho else np.zeros(1))
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        if gtype == mujoco.mjtGeom.mjGEOM_CYLINDER:
            grid = grid[np.linalg.norm(grid[:, :2], axis=1) <= max(size[0] - rho, 0) + 1e-9]
        elif gtype == mujoco.mjtGeom.mjGEOM_ELLIPSOID:
            grid = grid[np.sum((grid / np.maximum(ext, 1e-9)) ** 2, axis=1) <= 1 + 1e-9]
        if len(grid) <= max_spheres:
            return grid + center, np.full(len(grid), rho)
        rho *= 1.1


# --------------------------------------------------------------------------- the module
class TorchHandKinematics:
    """Batched differentiable FK of one hand, with surface points, contact points and spheres.

    Static tensors (numpy/torch, built once; CPU):

    - ``link_names`` (L,), ``joint_names`` (n_joints,) = ``hand.joint_names``;
    - ``point_link`` (P,) link index of each surface point, ``point_local`` /
      ``point_normal_local`` (P, 3) position and outward normal in the link frame;
      ``point_geom``/``point_geom_local`` (P,) geom id and (P, 3) position in that geom's frame;
    - ``contact_link`` (C,), ``contact_local`` (C, 3); ``fingers`` (F,) finger names with
      ``fingertip_link`` (F,);
    - ``sphere_link`` (S,), ``sphere_local`` (S, 3), ``sphere_radius`` (S,) metres;
      ``self_pairs`` (M, 2) sphere index pairs checked for self-penetration.

    Each point kind is grouped by link (links in tree-level order).

    Tensors are built lazily per dtype (float32/float64) on first use; not thread-safe.
    """

    def __init__(self, hand: HandDescription, config: HandPointConfig | None = None,
                 kinematics: HandKinematics | None = None) -> None:
        """Precompute the kinematic tree, point sets and spheres.

        Args:
            hand: the hand description.
            config: point and sphere settings; default :class:`HandPointConfig()`.
            kinematics: an existing :class:`HandKinematics` of ``hand`` to take the hand-only
                MuJoCo model from (built when None).

        Raises:
            ValueError: the model has a ball or free joint below the root, or a description joint
                is missing from the model.
        """
        self.hand = hand
        self.config = config or HandPointConfig()
        kin = kinematics or HandKinematics(hand)
        self.model = m = kin.model
        self.joint_names = tuple(hand.joint_names)
        self.link_names = tuple(m.body(b).name for b in range(1, m.nbody))
        self._build_tree(m)
        rng = np.random.default_rng(self.config.seed)
        cand = self._dense_candidates(m, rng)
        self._build_points(m, cand, rng)
        self._build_spheres(m)
        self._layout_points()
        self._cache: dict[torch.dtype, dict[str, torch.Tensor]] = {}
        self._drop_pairs_overlapping_at_reference()

    # ------------------------------------------------------------------ construction
    def _build_tree(self, m: mujoco.MjModel) -> None:
        hinge, slide = int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)
        bad = [m.joint(j).name for j in range(m.njnt) if int(m.jnt_type[j]) not in (hinge, slide)]
        if bad:
            raise ValueError(f"hand '{self.hand.name}': joints {bad} are ball/free joints; the torch "
                             "FK handles hinge and slide joints only")
        col = {n: i for i, n in enumerate(self.joint_names)}
        missing = [m.joint(j).name for j in range(m.njnt) if m.joint(j).name not in col]
        if missing:
            raise ValueError(f"hand '{self.hand.name}': model joints {missing} are not in the "
                             "description's joint_names")
        L = m.nbody - 1
        # Every body's local transform is parent->body offset times its joints' transforms; a
        # joint's transform is affine in (1, sin θ, 1 - cos θ, θ) with θ = q - ref:
        #   hinge about axis a through anchor p: I + sin θ G1 + (1 - cos θ) G2,
        #     G1 = [[K, -K p], [0, 0]], G2 = [[K², -K² p], [0, 0]], K = [a]x  (Rodrigues);
        #   slide along a: I + θ G3, G3 = [[0, a], [0, 0]]  — as mj_kinematics computes them.
        max_j = int(max(1, m.body_jntnum[1:].max()))
        self._slot_joint = np.full((max_j, L), -1)                  # joint of slot k of each link
        bases = np.zeros((max_j, 4, L, 4, 4))
        bases[:, 0] = np.eye(4)
        for b in range(1, m.nbody):
            offset = np.eye(4)
            offset[:3, :3] = _quat_matrix(m.body_quat[b])
            offset[:3, 3] = m.body_pos[b]
            for k in range(m.body_jntnum[b]):
                j = m.body_jntadr[b] + k
                self._slot_joint[k, b - 1] = j
                G = np.zeros((4, 4, 4))
                G[0] = np.eye(4)
                if int(m.jnt_type[j]) == hinge:
                    a, p = m.jnt_axis[j], m.jnt_pos[j]
                    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
                    G[1, :3, :3], G[1, :3, 3] = K, -K @ p
                    G[2, :3, :3], G[2, :3, 3] = K @ K, -K @ K @ p
                else:
                    G[3, :3, 3] = m.jnt_axis[j]
                bases[k, :, b - 1] = G
            bases[0, :, b - 1] = offset @ bases[0, :, b - 1]
        # Internal pose layout: (links, 4 columns, 3 rows, batch) — the top 3x4 block, transposed.
        self._slot_bases = bases[:, :, :, :3, :].transpose(0, 1, 2, 4, 3)     # (slots, 4, L, 4, 3)
        self._jnt_col = np.array([col[m.joint(j).name] for j in range(m.njnt)])
        self._jnt_q0 = np.array([m.qpos0[m.jnt_qposadr[j]] for j in range(m.njnt)])
        parent = np.array([m.body_parentid[b] - 1 for b in range(1, m.nbody)])   # -1: root frame
        self.link_parent = parent
        depth = np.zeros(L, dtype=int)
        for l in range(L):
            depth[l] = 0 if parent[l] < 0 else depth[parent[l]] + 1   # bodies come parents first
        self._levels = [np.flatnonzero(depth == d) for d in range(depth.max() + 1)]
        # Internally links are kept in level order (root level first), so a level is a slice.
        self._order = np.concatenate(self._levels)                    # level position -> link
        self._pos_of_link = np.argsort(self._order)                   # link -> level position
        pos_in_level = np.zeros(L, dtype=int)
        for lv in self._levels:
            pos_in_level[lv] = np.arange(len(lv))
        self._level_parent = [pos_in_level[parent[lv]] for lv in self._levels[1:]]
        self._level_bounds = np.cumsum([0] + [len(lv) for lv in self._levels])

    def _dense_candidates(self, m: mujoco.MjModel, rng: np.random.Generator) -> dict:
        """Dense surface samples of every collision geom, in body frames, outer surface only."""
        geoms = [g for g in range(m.ngeom) if m.geom_contype[g] or m.geom_conaffinity[g]]
        per_geom = {}
        for g in geoms:
            gtype = int(m.geom_type[g])
            if gtype == mujoco.mjtGeom.mjGEOM_MESH:
                pts, nrm, area = _mesh_surface(m, g, CANDIDATE_SPACING_M, rng)
            elif gtype == mujoco.mjtGeom.mjGEOM_PLANE or gtype == mujoco.mjtGeom.mjGEOM_HFIELD:
                continue
            else:
                pts = _geom_local_points(m, g, CANDIDATE_SPACING_M)
                nrm = _primitive_normals(gtype, m.geom_size[g], pts)
                area = _primitive_area(gtype, m.geom_size[g])
            per_geom[g] = (pts, nrm, area)
        out = {}
        for g, (pts, nrm, area) in per_geom.items():
            b = int(m.geom_bodyid[g])
            R, p = _quat_matrix(m.geom_quat[g]), m.geom_pos[g]
            body_pts = pts @ R.T + p
            keep = np.ones(len(pts), dtype=bool)
            for h in per_geom:     # drop points buried inside another geom of the same body
                if h == g or m.geom_bodyid[h] != b:
                    continue
                Rh, ph = _quat_matrix(m.geom_quat[h]), m.geom_pos[h]
                keep &= ~_inside_primitive(int(m.geom_type[h]), m.geom_size[h], (body_pts - ph) @ Rh, 1e-4)
            if keep.any():
                out.setdefault(b, []).append(dict(
                    geom=np.full(keep.sum(), g), local=pts[keep], body=body_pts[keep],
                    normal=nrm[keep] @ R.T, area=area * keep.mean()))
        return {b: {k: (np.concatenate([d[k] for d in v]) if k != "area" else sum(d[k] for d in v))
                    for k in v[0]} for b, v in out.items()}

    def _build_points(self, m: mujoco.MjModel, cand: dict, rng: np.random.Generator) -> None:
        cfg, hand = self.config, self.hand
        palm = m.body(hand.palm_body).id
        above_palm = set()
        b = int(m.body_parentid[palm])
        while b > 0:
            above_palm.add(b)
            b = int(m.body_parentid[b])
        # Every point kind is stored grouped by link in level order (see _layout_points).
        bodies = sorted((b for b in cand if cfg.include_forearm or b not in above_palm),
                        key=lambda b: self._pos_of_link[b - 1])
        if not bodies:
            raise ValueError(f"hand '{hand.name}': no collision geoms to put surface points on")
        counts = _allocate(cfg.num_points, np.array([cand[b]["area"] for b in bodies]))
        link, geom, local, body_pts, normal = [], [], [], [], []
        for b, k in zip(bodies, counts):
            if k == 0:
                continue
            c = cand[b]
            idx = np.sort(farthest_point_indices(c["body"], int(k), rng))
            link.append(np.full(len(idx), b - 1))
            geom.append(c["geom"][idx])
            local.append(c["local"][idx])
            body_pts.append(c["body"][idx])
            normal.append(c["normal"][idx])
        self.point_link = np.concatenate(link)
        self.point_geom = np.concatenate(geom)
        self.point_geom_local = np.concatenate(local)
        self.point_local = np.concatenate(body_pts)
        self.point_normal_local = np.concatenate(normal)
        # Contact candidates: middle and distal link of every finger (first ancestors with geoms).
        self.fingers = tuple(hand.fingertips)
        contact_links, c_link, c_local = [], [], []
        for finger in self.fingers:
            b = m.body(hand.fingertips[finger]).id
            found = []
            while b > 0 and len(found) < 2:
                if b in cand:
                    found.append(b)
                b = int(m.body_parentid[b])
            contact_links += found
        for b in sorted(contact_links, key=lambda b: self._pos_of_link[b - 1]):
            idx = farthest_point_indices(cand[b]["body"], cfg.contact_points_per_link, rng)
            c_link.append(np.full(len(idx), b - 1))
            c_local.append(cand[b]["body"][np.sort(idx)])
        self.contact_link = np.concatenate(c_link) if c_link else np.zeros(0, dtype=int)
        self.contact_local = np.concatenate(c_local) if c_local else np.zeros((0, 3))
        self.fingertip_link = np.array([m.body(hand.fingertips[f]).id - 1 for f in self.fingers])

    def _build_spheres(self, m: mujoco.MjModel) -> None:
        centers, radii, link = [], [], []
        for g in range(m.ngeom):
            if not (m.geom_contype[g] or m.geom_conaffinity[g]):
                continue
            gtype = int(m.geom_type[g])
            if gtype in (mujoco.mjtGeom.mjGEOM_PLANE, mujoco.mjtGeom.mjGEOM_HFIELD):
                continue
            size, center = m.geom_size[g], np.zeros(3)
            if gtype == mujoco.mjtGeom.mjGEOM_MESH:
                mesh = m.geom_dataid[g]
                v = m.mesh_vert[m.mesh_vertadr[mesh]:m.mesh_vertadr[mesh] + m.mesh_vertnum[mesh]]
                lo, hi = v.min(axis=0), v.max(axis=0)
                size, center = (hi - lo) / 2, (hi + lo) / 2
            c, r = _geom_spheres(gtype, np.asarray(size, dtype=float), center,
                                 self.config.sphere_min_radius_fraction, self.config.max_spheres_per_geom)
            R, p = _quat_matrix(m.geom_quat[g]), m.geom_pos[g]
            centers.append(c @ R.T + p)
            radii.append(r)
            link.append(np.full(len(r), m.geom_bodyid[g] - 1))
        link = np.concatenate(link)
        order = np.argsort(self._pos_of_link[link], kind="stable")
        self.sphere_local = np.concatenate(centers)[order]
        self.sphere_radius = np.concatenate(radii)[order]
        self.sphere_link = link[order]
        # Self-penetration pairs: spheres of different links that are not parent/child (after
        # welding jointless bodies to their parent, as MuJoCo's contact filter does), not in the
        # model's <exclude> list, and not already overlapping at the reference configuration.
        weld = m.body_weldid
        body = self.sphere_link + 1
        wb = weld[body]
        wparent = weld[m.body_parentid[wb]]
        excluded = {(int(s) >> 16, int(s) & 0xFFFF) for s in m.exclude_signature}
        i, j = np.triu_indices(len(body), k=1)
        ok = (wb[i] != wb[j]) & (wparent[i] != wb[j]) & (wparent[j] != wb[i])
        ok &= np.array([(min(a, b), max(a, b)) not in excluded for a, b in zip(body[i], body[j])],
                       dtype=bool).reshape(ok.shape)
        self.self_pairs = np.column_stack([i[ok], j[ok]])

    def _drop_pairs_overlapping_at_reference(self) -> None:
        """Keep only self-collision pairs that are apart at q = 0 (clipped into the limits)."""
        q_ref = np.clip(np.zeros(len(self.joint_names)), self.hand.joint_limits[:, 0], self.hand.joint_limits[:, 1])
        with torch.no_grad():
            c = self.forward(torch.as_tensor(q_ref[None], dtype=torch.float64)).sphere_centers[0].numpy()
        pairs = self.self_pairs
        gap = np.linalg.norm(c[pairs[:, 0]] - c[pairs[:, 1]], axis=1) - self.sphere_radius[pairs].sum(axis=1)
        self.self_pairs = pairs[gap > 0]
        self._cache.clear()

    def _layout_points(self) -> None:
        """Split every point kind into per-link blocks of homogeneous rows (w = 0 for normals).

        Each kind is stored grouped by link in level order, so concatenating ``block @ pose`` over
        its blocks gives the kind's points in their own order with one small matmul per link.
        """
        kinds = {"points": (self.point_link, self.point_local, 1.0),
                 "contact": (self.contact_link, self.contact_local, 1.0),
                 "spheres": (self.sphere_link, self.sphere_local, 1.0),
                 "normals": (self.point_link, self.point_normal_local, 0.0)}
        self._blocks = {}
        for name, (link, local, w) in kinds.items():
            pos = self._pos_of_link[link]
            if np.any(np.diff(pos) < 0):   # construction invariant, not a user error
                raise RuntimeError(f"hand '{self.hand.name}': {name} are not grouped by link")
            self._blocks[name] = [(int(p), np.column_stack([local[pos == p], np.full((pos == p).sum(), w)]))
                                  for p in np.unique(pos)]

    # ------------------------------------------------------------------ tensors per dtype
    def _tensors(self, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        if dtype not in self._cache:
            t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype)       # noqa: E731
            i = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.long)  # noqa: E731
            # Column of q and ref of each (slot, link); links without a joint read a zero column.
            n_j = len(self.joint_names)
            slot = self._slot_joint
            c = {"slot_col": i(np.where(slot >= 0, self._jnt_col[slot], n_j)),
                 "slot_q0": t(np.where(slot >= 0, self._jnt_q0[slot], 0.0)),
                 "slot_bases": t(self._slot_bases), "radius": t(self.sphere_radius),
                 "pairs": i(self.self_pairs)}
            for key in ("slot_col", "slot_q0"):
                c[key] = c[key][:, i(self._order)]
            c["slot_bases"] = c["slot_bases"][:, :, i(self._order)]
            c["level_parent"] = [i(p) for p in self._level_parent]
            c["pos_of_link"] = i(self._pos_of_link)
            c["tip_offset"] = t([np.append(self.hand.tip_offset(f), 1.0)[:, None] for f in self.fingers])
            for name, blocks in self._blocks.items():
                c[f"blocks_{name}"] = self._padded_blocks(blocks, t, i)
            self._cache[dtype] = c
        return self._cache[dtype]

    # ------------------------------------------------------------------ forward
    @staticmethod
    def _compose(A: torch.Tensor, Bm: torch.Tensor) -> torch.Tensor:
        """A @ B for poses in the internal layout (n, 4 columns, 3 rows, batch)."""
        C = Bm[:, :, 0:1] * A[:, None, 0] + Bm[:, :, 1:2] * A[:, None, 1] + Bm[:, :, 2:3] * A[:, None, 2]
        return torch.cat([C[:, :3], C[:, 3:] + A[:, 3:]], dim=1)

    def _world(self, q: torch.Tensor) -> torch.Tensor:
        """Link poses in the internal layout (L, 4, 3, B), links in level order, for (B, n_joints) ``q``."""
        q = self._check_q(q)
        c = self._tensors(q.dtype)
        qt = torch.cat([q.T, q.new_zeros(1, q.shape[0])])                 # (n_joints + 1, B)
        local = None
        for k, G in enumerate(c["slot_bases"]):                           # G: (4, L, 4, 3)
            theta = (qt[c["slot_col"][k]] - c["slot_q0"][k][:, None])[:, None, None, :]   # (L,1,1,B)
            factor = (G[0][..., None] + torch.sin(theta) * G[1][..., None]
                      + (1 - torch.cos(theta)) * G[2][..., None] + theta * G[3][..., None])
            local = factor if local is None else self._compose(local, factor)
        bounds = self._level_bounds
        world = [local[:bounds[1]]]
        for d in range(1, len(self._levels)):
            parent = world[-1].index_select(0, c["level_parent"][d - 1])
            world.append(self._compose(parent, local[bounds[d]:bounds[d + 1]]))
        return torch.cat(world)                                          # (L, 4, 3, B), level order

    @staticmethod
    def _to_matrices(X: torch.Tensor) -> torch.Tensor:
        """Internal (n, 4, 3, B) layout → (B, n, 4, 4) homogeneous matrices."""
        top = X.permute(3, 0, 2, 1)                                        # (B, n, 3, 4)
        bottom = torch.zeros_like(top[:, :, :1])
        bottom[..., 3] = 1.0
        return torch.cat([top, bottom], dim=2)

    def link_poses(self, q: torch.Tensor) -> torch.Tensor:
        """(B, L, 4, 4) link poses in the root frame for (B, n_joints) ``q`` (radians / metres)."""
        world = self._world(q)
        return self._to_matrices(world.index_select(0, self._tensors(world.dtype)["pos_of_link"]))

    @staticmethod
    def _padded_blocks(blocks: list, t, i) -> tuple[list, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-link row blocks, also as one zero-padded stack: (blocks, links, (n_links, rows, 4) rows,
        index of the real rows in the stacked result)."""
        rows = max(len(block) for _, block in blocks)
        padded = np.zeros((len(blocks), rows, 4))
        keep = []
        for k, (_, block) in enumerate(blocks):
            padded[k, :len(block)] = block
            keep.extend(k * rows + np.arange(len(block)))
        return [(pos, t(block)) for pos, block in blocks], i([pos for pos, _ in blocks]), t(padded), i(keep)

    @staticmethod
    def _transform_points(world: torch.Tensor, blocks: tuple) -> torch.Tensor:
        """(B, N, 3): per-link homogeneous rows moved by their link's pose.

        Small batches: one batched matmul over the zero-padded blocks (Python overhead dominates);
        large ones: one matmul per link (padding would multiply the arithmetic). Same values.
        """
        per_link, links, padded, keep = blocks
        L, _, _, B = world.shape
        W = world.reshape(L, 4, 3 * B)
        if B > SMALL_BATCH:
            return torch.cat([block @ W[pos] for pos, block in per_link]).reshape(-1, 3, B).permute(2, 0, 1)
        moved = torch.bmm(padded, W.index_select(0, links))                           # (n, rows, 3B)
        return moved.reshape(-1, 3 * B).index_select(0, keep).reshape(-1, 3, B).permute(2, 0, 1)

    def forward(self, q: torch.Tensor, root_pose: torch.Tensor | None = None, *,
                normals: bool = False) -> HandFK:
        """Forward kinematics of a batch.

        Args:
            q: (B, n_joints) joint values in ``hand.joint_names`` order (radians for hinges,
                metres for slides), float32 or float64.
            root_pose: optional (4, 4) or (B, 4, 4) pose of the hand root in an outer frame
                (e.g. ``T_base_flange @ hand.mount_transform``); outputs are then in that frame.
            normals: also return the surface normals.

        Returns:
            :class:`HandFK` (all tensors differentiable w.r.t. ``q`` and ``root_pose``).
        """
        world = self._world(q)
        c = self._tensors(world.dtype)
        if root_pose is not None:
            root = torch.as_tensor(root_pose, dtype=world.dtype)
            if root.shape[-2:] != (4, 4) or root.dim() not in (2, 3):
                raise ValueError(f"root_pose must be (4, 4) or (B, 4, 4), got {tuple(root.shape)}")
            root = root[:3].T[..., None] if root.dim() == 2 else root[:, :3].permute(2, 1, 0)
            world = self._compose(root[None].expand(-1, -1, -1, world.shape[-1]), world)
        poses = self._to_matrices(world.index_select(0, c["pos_of_link"]))
        tips = poses[:, self.fingertip_link]                                # (B, F, 4, 4)
        tip_pos = tips[..., :3, :] @ c["tip_offset"]                        # (B, F, 3, 1)
        frames = torch.cat([torch.cat([tips[..., :3, :3], tip_pos], dim=-1), tips[..., 3:, :]], dim=-2)
        return HandFK(link_poses=poses, points=self._transform_points(world, c["blocks_points"]),
                      normals=self._transform_points(world, c["blocks_normals"]) if normals else None,
                      contact_points=self._transform_points(world, c["blocks_contact"]),
                      fingertip_frames=frames, sphere_centers=self._transform_points(world, c["blocks_spheres"]))

    __call__ = forward

    def surface_points(self, q: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) surface points in the root frame for (B, n_joints) ``q``: :meth:`forward`'s
        ``points`` alone (the grasp recovery's inner loops call this; about half the cost of forward)."""
        world = self._world(q)
        return self._transform_points(world, self._tensors(world.dtype)["blocks_points"])

    def _check_q(self, q: torch.Tensor) -> torch.Tensor:
        q = torch.as_tensor(q)
        if not q.is_floating_point():
            q = q.to(torch.get_default_dtype())
        if q.dim() != 2 or q.shape[1] != len(self.joint_names):
            raise ValueError(f"q must be (B, {len(self.joint_names)}) joint values in hand "
                             f"'{self.hand.name}' joint_names order, got {tuple(q.shape)}")
        return q

    # ------------------------------------------------------------------ couplings
    def coupling(self, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        """``hand.coupling_matrix()`` as tensors: A (n_joints, n_actuated), b (n_joints,), with
        q_full = A @ q_act + b (followers of mimic joints and fixed joints filled in)."""
        A, b = self.hand.coupling_matrix()
        return torch.tensor(np.array(A), dtype=dtype), torch.tensor(np.array(b), dtype=dtype)

    def forward_actuated(self, q_act: torch.Tensor, root_pose: torch.Tensor | None = None, *,
                         normals: bool = False) -> HandFK:
        """:meth:`forward` from (B, n_actuated) actuated joint values (``hand.actuated_joints``
        order), expanded through the coupling: q_full = q_act @ Aᵀ + b."""
        q_act = torch.as_tensor(q_act)
        if not q_act.is_floating_point():
            q_act = q_act.to(torch.get_default_dtype())
        A, b = self.coupling(q_act.dtype)
        if q_act.dim() != 2 or q_act.shape[1] != A.shape[1]:
            raise ValueError(f"q_act must be (B, {A.shape[1]}) actuated joint values of hand "
                             f"'{self.hand.name}', got {tuple(q_act.shape)}")
        return self.forward(q_act @ A.T + b, root_pose, normals=normals)

    # ------------------------------------------------------------------ penalties
    def object_penetration(self, sphere_centers: torch.Tensor, object_points: torch.Tensor | None = None,
                           object_normals: torch.Tensor | None = None,
                           sdf: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Hand–object penetration depth summed over the hand spheres, per configuration.

        Three ways to describe the object (same frame as ``sphere_centers``):

        - ``sdf``: a function (…, 3) → (…) signed distance, metres, negative inside; a sphere
          penetrates by ``relu(radius - sdf(centre))``;
        - ``object_points`` with ``object_normals`` (outward): the signed distance of a centre
          is ±|centre − nearest point|, negative when the centre is behind that point's normal;
        - ``object_points`` alone: every object point inside a sphere adds
          ``radius − |point − centre|``.

        Args:
            sphere_centers: (B, S, 3) from :attr:`HandFK.sphere_centers`.
            object_points: (N, 3) or (B, N, 3) metres.
            object_normals: (N, 3) or (B, N, 3) unit outward normals, optional.
            sdf: signed distance function, optional (takes precedence).

        Returns:
            (B,) metres (sum of penetration depths), zero when nothing penetrates.
        """
        r = self._tensors(sphere_centers.dtype)["radius"]
        if sdf is not None:
            return torch.relu(r - sdf(sphere_centers)).sum(dim=-1)
        if object_points is None:
            raise ValueError("object_penetration needs object_points (optionally with normals) or an sdf")
        pts = torch.as_tensor(object_points, dtype=sphere_centers.dtype)
        d = torch.cdist(sphere_centers, pts if pts.dim() == 3 else pts.expand(sphere_centers.shape[0], -1, -1))
        if object_normals is None:
            return torch.relu(r[:, None] - d).sum(dim=(-1, -2))
        nrm = torch.as_tensor(object_normals, dtype=sphere_centers.dtype)
        if nrm.dim() == 2:
            nrm = nrm.expand(sphere_centers.shape[0], -1, -1)
        dist, idx = d.min(dim=-1)                                           # (B, S)
        near = torch.gather(pts.expand_as(nrm), 1, idx[..., None].expand(-1, -1, 3))
        n = torch.gather(nrm, 1, idx[..., None].expand(-1, -1, 3))
        side = torch.sign(((sphere_centers - near) * n).sum(-1))
        signed = torch.where(side < 0, -dist, dist)
        return torch.relu(r - signed).sum(dim=-1)

    def self_penetration(self, sphere_centers: torch.Tensor) -> torch.Tensor:
        """(B,) metres: summed overlap of sphere pairs on non-adjacent links (``self_pairs``)."""
        c = self._tensors(sphere_centers.dtype)
        p = c["pairs"]
        if p.numel() == 0:
            return sphere_centers.new_zeros(sphere_centers.shape[0])
        d = (sphere_centers[:, p[:, 0]] - sphere_centers[:, p[:, 1]]).norm(dim=-1)
        return torch.relu(c["radius"][p].sum(-1) - d).sum(dim=-1)
