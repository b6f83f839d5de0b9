"""Optimisation-based grasp synthesis: place the open hand around the object, close each finger
onto the surface without penetration, score by contact and opposition.

The search is over wrist poses (approach direction, roll about it, offset along the fingers);
for each pose the hand slides along the approach until it is ``clearance_m`` from the object
proxy, then each finger closes along the hand's open→closed synergy until first contact
(bisection on the closure parameter). The result predicts where the fingers touch; the
commanded squeeze target lies ``squeeze`` further along the synergy so the position-controlled
fingers press on the object. This is the planner's fallback until the learned D(R,O) network
is trained (a later issue).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from grasp_planner.hand_kinematics import HandKinematics
from grasp_planner.hands.description import HandDescription
from grasp_planner.object_model import ObjectProxy

UP = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class SynthesisConfig:
    """Search and scoring parameters (angles in degrees, lengths in metres)."""

    elevations_deg: tuple[float, ...] = (0.0, 30.0, 55.0, 90.0)   # approach angle below horizontal
    azimuths_deg: tuple[float, ...] = (-60.0, -30.0, 0.0, 30.0, 60.0)  # relative to base→object
    rolls_deg: tuple[float, ...] = (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)
    finger_offsets_m: tuple[float, ...] = (-0.02, 0.0, 0.03, 0.055)  # object centre shift along the fingers
    clearance_m: float = 0.008          # open hand stops this far from the object surface
    table_clearance_m: float = 0.005    # every hand point stays this far above the table
    closure_steps: int = 12             # coarse samples of the closure parameter
    bisection_steps: int = 4            # refinement of the contact closure
    squeeze: float = 0.6                # extra closure beyond contact for the commanded target
    min_contacts: int = 3               # fingers in contact, thumb included
    max_closure_candidates: int = 64    # poses that get the (costlier) finger-closure search
    self_contact_m: float = 0.006       # thumb surface samples this close to another finger = blocked
    from_above_weight: float = 0.15     # score bonus per unit of approach pointing down

    def __post_init__(self) -> None:
        if not 0.0 < self.squeeze <= 1.0:
            raise ValueError(f"squeeze {self.squeeze} must be in (0, 1]")
        if self.clearance_m < 0 or self.table_clearance_m < 0:
            raise ValueError("clearances must be >= 0 m")
        if self.min_contacts < 2:
            raise ValueError("min_contacts must be >= 2 (thumb + one finger)")


@dataclass(frozen=True)
class GraspCandidate:
    """One predicted grasp (base frame, metres, radians; joints by name)."""

    T_base_root: np.ndarray        # (4, 4) pose of the hand root body
    approach: np.ndarray           # (3,) unit direction the palm moves toward the object
    q_open: dict                   # pre-shape, all hand joints
    q_grasp: dict                  # predicted contact configuration
    q_squeeze: dict                # commanded target beyond contact
    contacts: dict                 # finger -> (3,) contact point or None
    score: float
    info: dict = field(default_factory=dict)


def _orthonormal(a: np.ndarray, f: np.ndarray) -> np.ndarray:
    """(3, 3) basis [a, f', a×f'] with f' = f made orthogonal to a."""
    a = a / np.linalg.norm(a)
    f = f - (f @ a) * a
    f /= np.linalg.norm(f)
    return np.column_stack([a, f, np.cross(a, f)])


class GraspSynthesizer:
    """Searches wrist poses and finger closures for one hand; see the module docstring."""

    def __init__(self, hand: HandDescription, config: SynthesisConfig | None = None):
        self.hand = hand
        self.config = config or SynthesisConfig()
        self.kin = HandKinematics(hand)
        self.q_open = hand.full_pose(hand.open_pose)
        self.q_closed = hand.full_pose(hand.closed_pose)
        open_pose = self.kin.forward(self.q_open)
        palm = open_pose.palm
        self._palm_center = palm[:3, :3] @ np.asarray(hand.palm_center) + palm[:3, 3]
        normal = palm[:3, :3] @ np.asarray(hand.palm_normal)
        tips = np.mean([p for f, p in open_pose.fingertips.items() if f != "thumb"], axis=0)
        self._root_basis = _orthonormal(normal, tips - self._palm_center)  # root frame
        self._open_points = open_pose.points
        owner = self.kin.finger_of_body()
        self._point_finger = owner[open_pose.point_body]           # (P,) finger index or -1
        self.fingers = list(hand.fingertips)
        self._thumb = self.fingers.index("thumb")
        self._finger_joints = self._joints_per_finger()

    def _joints_per_finger(self) -> list[list[str]]:
        owner = self.kin.finger_of_body()
        model = self.kin.model
        per = [[] for _ in self.fingers]
        for j in range(model.njnt):
            k = owner[model.jnt_bodyid[j]]
            name = model.joint(j).name
            if k >= 0 and name not in self.hand.fixed_joints:
                per[k].append(name)
        return per

    # ---------------------------------------------------------------- poses
    def _root_pose(self, approach: np.ndarray, finger_dir: np.ndarray, palm_target: np.ndarray) -> np.ndarray:
        R = _orthonormal(approach, finger_dir) @ self._root_basis.T
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = palm_target - R @ self._palm_center
        return T

    def _pose_candidates(self, proxy: ObjectProxy) -> list[tuple[np.ndarray, np.ndarray]]:
        """(approach, finger direction) pairs covering the configured angles."""
        cfg = self.config
        toward = proxy.center[:2] / max(np.linalg.norm(proxy.center[:2]), 1e-6)
        base_az = np.arctan2(toward[1], toward[0])
        out = []
        for el in np.radians(cfg.elevations_deg):
            azimuths = [0.0] if np.isclose(el, np.pi / 2) else np.radians(cfg.azimuths_deg)
            for az in azimuths:
                h = np.array([np.cos(base_az + az), np.sin(base_az + az), 0.0])
                a = np.cos(el) * h - np.sin(el) * UP
                ref = UP if abs(a @ UP) < 0.95 else h
                e1 = ref - (ref @ a) * a
                e1 /= np.linalg.norm(e1)
                e2 = np.cross(a, e1)
                for roll in np.radians(cfg.rolls_deg):
                    out.append((a, np.cos(roll) * e1 + np.sin(roll) * e2))
        return out

    def _slide(self, proxy: ObjectProxy, T: np.ndarray, approach: np.ndarray,
               points_root: np.ndarray) -> tuple[np.ndarray, float] | None:
        """Move the rigid hand along ``approach`` until it is ``clearance_m`` from the proxy."""
        pts = points_root @ T[:3, :3].T + T[:3, 3]
        lo, hi = -0.25, 0.15     # hand displacement along approach (m): back off / push in
        def gap(t):
            return proxy.signed_distance(pts + t * approach).min()
        if gap(lo) < self.config.clearance_m:
            return None
        for _ in range(11):     # 0.4 m / 2^11 ~ 0.2 mm
            mid = 0.5 * (lo + hi)
            if gap(mid) >= self.config.clearance_m:
                lo = mid
            else:
                hi = mid
        T2 = T.copy()
        T2[:3, 3] += lo * approach
        return T2, lo

    # ---------------------------------------------------------------- closure
    def _closure_config(self, s: np.ndarray) -> dict:
        q = dict(self.q_open)
        for k, joints in enumerate(self._finger_joints):
            for name in joints:
                q[name] = self.q_open[name] + s[k] * (self.q_closed[name] - self.q_open[name])
        return q

    def _finger_penetration(self, proxy: ObjectProxy, T: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """At closure ``s``: per finger min signed distance to the object (m) and the deepest
        point, and whether the thumb touches another finger (self-collision blocks it)."""
        pose = self.kin.forward(self._closure_config(s))
        owner = self._point_finger
        mask = owner >= 0
        fingers = owner[mask]
        thumb_pts = pose.points[mask][fingers == self._thumb]
        other_pts = pose.points[mask][fingers != self._thumb]
        gap, _ = cKDTree(other_pts).query(thumb_pts, k=1, distance_upper_bound=self.config.self_contact_m)
        thumb_blocked = bool(np.isfinite(gap).any())
        pts = pose.points[mask] @ T[:3, :3].T + T[:3, 3]
        sd = proxy.signed_distance(pts)
        mins = np.full(len(self.fingers), np.inf)
        where = np.zeros((len(self.fingers), 3))
        for k in range(len(self.fingers)):
            sel = fingers == k
            if sel.any():
                i = np.argmin(sd[sel])
                mins[k] = sd[sel][i]
                where[k] = pts[sel][i]
        return mins, where, thumb_blocked

    def _close(self, proxy: ObjectProxy, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Contact closure per finger (1.0 + no contact flag when the finger closes freely).

        A thumb that runs into another finger before it reaches the object is not in contact:
        it would press on the hand, not oppose the fingers across the object.
        """
        cfg = self.config
        n = len(self.fingers)
        contact_s = np.ones(n)
        touched = np.zeros(n, dtype=bool)
        levels = np.linspace(0.0, 1.0, cfg.closure_steps + 1)
        for s in levels[1:]:
            active = ~touched
            if not active.any():
                break
            trial = np.where(active, s, contact_s)
            mins, _, thumb_blocked = self._finger_penetration(proxy, T, trial)
            if thumb_blocked and active[self._thumb] and mins[self._thumb] >= 0.0:
                return contact_s, np.zeros(n, dtype=bool), np.zeros((n, 3))
            hit = active & (mins < 0.0)
            contact_s[hit] = s
            touched |= hit
        lo = np.where(touched, contact_s - 1.0 / cfg.closure_steps, 1.0)
        hi = np.where(touched, contact_s, 1.0)
        for _ in range(cfg.bisection_steps):
            mid = 0.5 * (lo + hi)
            mins, _, _ = self._finger_penetration(proxy, T, np.where(touched, mid, 1.0))
            inside = mins < 0.0
            hi = np.where(touched & inside, mid, hi)
            lo = np.where(touched & ~inside, mid, lo)
        contact_s = np.where(touched, lo, 1.0)
        mins, where, _ = self._finger_penetration(proxy, T, np.where(touched, hi, 1.0))
        return contact_s, touched, where

    # ---------------------------------------------------------------- search
    def synthesize(self, proxy: ObjectProxy, max_results: int = 8) -> list[GraspCandidate]:
        """Ranked grasp candidates (best first); empty when nothing satisfies the constraints."""
        cfg = self.config
        table_min = proxy.table_z + cfg.table_clearance_m
        coarse = []
        sub = self._open_points[::3]    # the slide needs the envelope, not every sample
        for approach, finger_dir in self._pose_candidates(proxy):
            for offset in cfg.finger_offsets_m:
                target = proxy.center - 0.0 * approach + offset * finger_dir
                T0 = self._root_pose(approach, finger_dir, target)
                slid = self._slide(proxy, T0, approach, sub)
                if slid is None:
                    continue
                T, _ = slid
                open_world = self._open_points @ T[:3, :3].T + T[:3, 3]
                if open_world[:, 2].min() < table_min:
                    continue
                palm = T[:3, :3] @ self._palm_center + T[:3, 3]
                palm_gap = float(proxy.signed_distance(palm[None])[0])
                axis_miss = np.linalg.norm(np.cross(proxy.center - palm, approach))
                coarse.append((palm_gap + 0.5 * axis_miss, T, approach))
        coarse.sort(key=lambda c: c[0])
        results = []
        for pre_cost, T, approach in coarse[:cfg.max_closure_candidates]:
            contact_s, touched, where = self._close(proxy, T)
            n_contact = int(touched.sum())
            thumb = self.fingers.index("thumb")
            if not touched[thumb] or n_contact < cfg.min_contacts:
                continue
            squeeze_s = np.minimum(1.0, contact_s + cfg.squeeze)
            _, _, thumb_blocked = self._finger_penetration(proxy, T, squeeze_s)
            if thumb_blocked:   # pressing further would push the thumb onto a finger, not the object
                continue
            q_squeeze = self._closure_config(np.where(touched, squeeze_s, contact_s))
            squeeze_pts = self.kin.forward(q_squeeze).points @ T[:3, :3].T + T[:3, 3]
            if squeeze_pts[:, 2].min() < proxy.table_z + 0.5 * cfg.table_clearance_m:
                continue
            others = [where[k] for k in range(len(self.fingers)) if touched[k] and k != thumb]
            # Opposition across the object, seen along the approach: thumb and fingers on
            # opposite sides of the object centre (cos -> -1) squeeze it against each other.
            perp = np.eye(3) - np.outer(approach, approach)
            v_thumb = perp @ (where[thumb] - proxy.center)
            v_fing = perp @ (np.mean(others, axis=0) - proxy.center)
            cos = float(v_thumb @ v_fing / (np.linalg.norm(v_thumb) * np.linalg.norm(v_fing) + 1e-9))
            opposition = 0.5 * (1.0 - cos)
            # Approaches from above envelop a resting object and keep the long forearm off the
            # table; in our MuJoCo trials they held more often than tilted ones (README).
            from_above = float(-approach @ UP)
            score = (opposition + 0.25 * n_contact / len(self.fingers) - 2.0 * pre_cost
                     + cfg.from_above_weight * from_above)
            results.append(GraspCandidate(
                T_base_root=T, approach=approach, q_open=dict(self.q_open),
                q_grasp=self._closure_config(contact_s), q_squeeze=q_squeeze,
                contacts={f: (where[k].copy() if touched[k] else None) for k, f in enumerate(self.fingers)},
                score=score,
                info={"fingers_in_contact": n_contact, "opposition": opposition,
                      "palm_gap_m": float(pre_cost), "from_above": from_above,
                      "contact_closure": contact_s.round(3).tolist()}))
        results.sort(key=lambda c: -c.score)
        return results[:max_results]
