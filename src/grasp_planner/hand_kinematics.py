"""Hand kinematics from the hand's model (MJCF, or URDF converted in memory): surface points of
every collision geom, fingertips, palm frame.

MuJoCo is used here as a kinematics library only (``mj_kinematics`` on a hand-only model whose
root body is fixed at the origin). All poses are in the hand ROOT frame (e.g. ``rh_forearm``);
callers place the hand with ``T_base_root = T_base_flange @ hand.mount_transform``.
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from grasp_planner.hands.description import HandDescription

#: Surface sample spacing for hand collision points (metres).
POINT_SPACING_M = 0.006
#: At most this many points per body (large palm/forearm boxes are thinned, seeded).
MAX_POINTS_PER_BODY = 120


def _geom_local_points(model: mujoco.MjModel, gid: int, spacing: float) -> np.ndarray:
    """(K, 3) points on the surface of geom ``gid`` in the geom's own frame."""
    gtype = int(model.geom_type[gid])
    size = model.geom_size[gid]
    if gtype == int(mujoco.mjtGeom.mjGEOM_MESH):
        mesh = model.geom_dataid[gid]
        start, count = model.mesh_vertadr[mesh], model.mesh_vertnum[mesh]
        verts = model.mesh_vert[start:start + count].astype(float)
        step = max(1, count // 40)
        return verts[::step]
    if gtype == int(mujoco.mjtGeom.mjGEOM_SPHERE):
        r = size[0]
        dirs = _fibonacci_sphere(max(8, int(4 * np.pi * r * r / spacing**2)))
        return r * dirs
    if gtype in (int(mujoco.mjtGeom.mjGEOM_CAPSULE), int(mujoco.mjtGeom.mjGEOM_CYLINDER)):
        r, half = size[0], size[1]
        n_ring = max(6, int(2 * np.pi * r / spacing))
        n_len = max(2, int(2 * half / spacing) + 1)
        ang = np.linspace(0, 2 * np.pi, n_ring, endpoint=False)
        zs = np.linspace(-half, half, n_len)
        ring = np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
        pts = [np.column_stack([np.tile(ring, (n_len, 1)), np.repeat(zs, n_ring)])]
        if gtype == int(mujoco.mjtGeom.mjGEOM_CAPSULE):
            caps = r * _fibonacci_sphere(max(8, n_ring * 2))
            pts += [caps[caps[:, 2] > 0] + [0, 0, half], caps[caps[:, 2] < 0] - [0, 0, half]]
        return np.concatenate(pts)
    if gtype == int(mujoco.mjtGeom.mjGEOM_BOX):
        grids = []
        for axis in range(3):
            others = [a for a in range(3) if a != axis]
            u = np.linspace(-size[others[0]], size[others[0]], max(2, int(2 * size[others[0]] / spacing) + 1))
            v = np.linspace(-size[others[1]], size[others[1]], max(2, int(2 * size[others[1]] / spacing) + 1))
            uu, vv = np.meshgrid(u, v)
            for sign in (-1.0, 1.0):
                face = np.zeros((uu.size, 3))
                face[:, others[0]], face[:, others[1]] = uu.ravel(), vv.ravel()
                face[:, axis] = sign * size[axis]
                grids.append(face)
        return np.unique(np.concatenate(grids).round(6), axis=0)
    return np.zeros((1, 3))


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    return np.column_stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)])


@dataclass(frozen=True)
class HandPose:
    """Hand state after forward kinematics, all in the hand root frame (metres)."""

    points: np.ndarray        # (P, 3) collision-surface points
    point_body: np.ndarray    # (P,) int body index of each point
    fingertips: dict          # finger -> (3,) pad point
    palm: np.ndarray          # (4, 4) pose of the palm body


class HandKinematics:
    """Forward kinematics of one hand (fixed root) with collision-surface points per body."""

    def __init__(self, hand: HandDescription, spacing_m: float = POINT_SPACING_M,
                 max_points_per_body: int = MAX_POINTS_PER_BODY):
        self.hand = hand
        spec = hand.model_spec()
        root = spec.body(hand.root_body)
        for joint in list(root.joints):
            spec.delete(joint)
        root.pos, root.quat = [0, 0, 0], [1, 0, 0, 0]
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self.joint_names = tuple(self.model.joint(i).name for i in range(self.model.njnt))
        missing = set(hand.joint_names) ^ set(self.joint_names)
        if missing:
            raise ValueError(f"hand '{hand.name}': joints differ between description and model: {missing}")
        self._qadr = {n: self.model.jnt_qposadr[self.model.joint(n).id] for n in self.joint_names}
        self.body_names = tuple(self.model.body(i).name for i in range(self.model.nbody))
        gids, local, counts = [], [], []
        for gid in range(self.model.ngeom):
            if self.model.geom_contype[gid] == 0 and self.model.geom_conaffinity[gid] == 0:
                continue
            pts = _geom_local_points(self.model, gid, spacing_m)
            gids.append(gid)
            local.append(pts)
            counts.append(len(pts))
        geom_of_point = np.repeat(np.arange(len(gids)), counts)
        body_of_point = self.model.geom_bodyid[np.asarray(gids)][geom_of_point]
        rng = np.random.default_rng(0)
        keep = []
        for body in np.unique(body_of_point):
            idx = np.flatnonzero(body_of_point == body)
            if len(idx) > max_points_per_body:
                idx = np.sort(rng.choice(idx, max_points_per_body, replace=False))
            keep.append(idx)
        keep = np.concatenate(keep)
        self._geom_ids = np.asarray(gids)
        self._local = np.concatenate(local)[keep]
        self._geom_of_point = geom_of_point[keep]
        self.point_body = self.model.geom_bodyid[self._geom_ids][self._geom_of_point]
        self._tip_ids = {f: self.model.body(b).id for f, b in hand.fingertips.items()}
        self._tip_offset = {f: hand.tip_offset(f) for f in hand.fingertips}
        self._palm_id = self.model.body(hand.palm_body).id

    def qpos(self, q: dict[str, float]) -> np.ndarray:
        """Joint dict (radians, by name; missing joints = 0) → model qpos, clipped to limits."""
        unknown = set(q) - set(self._qadr)
        if unknown:
            raise ValueError(f"unknown joints for hand '{self.hand.name}': {sorted(unknown)}")
        qpos = np.zeros(self.model.nq)
        for name, value in q.items():
            qpos[self._qadr[name]] = value
        lo, hi = self.model.jnt_range[:, 0], self.model.jnt_range[:, 1]
        return np.clip(qpos, lo, hi)

    def forward(self, q: dict[str, float]) -> HandPose:
        """Forward kinematics for one configuration (joint dict, radians)."""
        self.data.qpos[:] = self.qpos(q)
        mujoco.mj_kinematics(self.model, self.data)
        xpos = self.data.geom_xpos[self._geom_ids]                 # (G, 3)
        xmat = self.data.geom_xmat[self._geom_ids].reshape(-1, 3, 3)
        g = self._geom_of_point
        points = np.einsum("pij,pj->pi", xmat[g], self._local) + xpos[g]
        tips = {}
        for finger, bid in self._tip_ids.items():
            R = self.data.xmat[bid].reshape(3, 3)
            tips[finger] = R @ self._tip_offset[finger] + self.data.xpos[bid]
        palm = np.eye(4)
        palm[:3, :3] = self.data.xmat[self._palm_id].reshape(3, 3)
        palm[:3, 3] = self.data.xpos[self._palm_id]
        return HandPose(points=points, point_body=self.point_body, fingertips=tips, palm=palm)

    def finger_of_body(self) -> np.ndarray:
        """(nbody,) int: index into ``list(hand.fingertips)`` of the finger a body belongs to, -1 for palm/forearm."""
        fingers = list(self.hand.fingertips)
        owner = np.full(self.model.nbody, -1)
        for k, finger in enumerate(fingers):
            bid = self._tip_ids[finger]
            while bid > 0 and self.body_names[bid] not in (self.hand.palm_body, self.hand.root_body):
                owner[bid] = k
                bid = self.model.body_parentid[bid]
        return owner
