"""Human hand keypoints → robot hand grasp by keypoint position optimisation (AnyTeleop style).

Correspondence (``retarget:`` in ``config/hands/<hand>.yaml``, :class:`Correspondence`): the human
wrist keypoint ↔ the origin of a wrist body; human MCP/PIP/DIP (thumb CMC/MCP/IP) keypoints ↔
origins of finger bodies (where their joints sit); human fingertips ↔ the robot's fingertip pad
points (``fingertips`` + ``fingertip_offset`` of the hand description, all five fingers).

Optimised per record: the hand root pose in the object frame (translation + 6D rotation) and the
actuated joints (couplings through :class:`~grasp_data.adaptation.HandModel`, projected into
their limits after every step), a batch of records at once with Adam on
:class:`~grasp_planner.hand_fk_torch.TorchHandKinematics`. The cost (centimetres²):

* **task vectors** wrist → keypoint, robot vs ``s ×`` human, for every mapped keypoint
  (fingertips weight ``w_tip``, inner joints ``w_joint``); ``s`` is the hand's scale factor
  (robot/human size: the robot's wrist → middle fingertip bone length over the record's, or a fixed
  ``scale`` from the YAML);
* **pinch vectors** thumb tip → finger tip, unscaled, weight ``w_pinch``, for the fingers whose
  human tip is within ``pinch_distance_m`` of the thumb tip (so a pinch stays closed on a bigger
  hand, as AnyTeleop/DexPilot do);
* **anchor**: the centroid of the robot fingertips (those of the fingers touching the object, or
  all) on the human one — vectors fix shape and orientation, this fixes where the hand is, so the
  fingertips land where the human's touched the object (with the object given: on the human
  tips' nearest surface points, since a keypoint sits inside the finger, not on its pad);
* **regulariser** ``w_regularise × |q − q_mid|²`` towards the middle of the hand's synergy.

With the record's object (``objects``; surface samples with outward normals, object frame) two
more terms make the result a grasp rather than a pose next to one — a robot hand is proportioned
differently (OYMotion: wrist → knuckles 11.6 cm vs a human's ~9.3, fingers 7.3 vs 9.5 cm), so
matching the human keypoints alone puts its palm inside the object:

* **penetration** ``w_penetration ×`` the summed depth (cm) of the hand's surface points
  (:class:`~grasp_planner.hand_fk_torch.TorchHandKinematics`, on the links' real geometry)
  inside the object grown by ``penetration_margin_m``, at the grasp and with the fingers
  ``start_open_fraction`` opened, where the validator starts closing them;
* **contact** ``w_contact ×`` Σ over the fingers touching the object of the squared distance
  (cm²) of the robot fingertip pad from the surface.

Distances to the object are to the tangent plane of the nearest surface sample (negative inside):
smooth near the surface and without the sample-spacing floor of a point distance.

Initialisation: the robot's wrist and MCP/CMC points at ``q_mid`` are fitted to the human's
(scaled about the wrist) by Kabsch, which gives the wrist orientation and position. With the
object, the first half of the iterations fits the keypoint terms alone; the hand is then moved
out of the object against its palm normal (the smallest ``clear_step_m`` multiple that takes
every surface point out, at most ``clear_max_m``) and the second half fits all terms from there:
started deep inside, the nearest-sample distance of a thin wall (a mug's) can pull a link further
in, through to the cavity.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import yaml

from scipy.spatial import cKDTree

from grasp_data.adaptation import HandModel, ObjectSamples, kabsch, rotation_from_6d
from grasp_data.human_records import FINGER_KEYPOINTS, KEYPOINT_NAMES, TIP_INDEX, bone_length_m
from grasp_planner.hand_fk_torch import HandFK

#: Distances inside the cost are in centimetres (metres × this).
_CM = 100.0


class RetargetError(ValueError):
    """A hand's retargeting correspondence is missing or wrong; the message names the file and key."""


@dataclass(frozen=True)
class RetargetConfig:
    """Settings of :class:`Retargeter` (weights unitless; the cost is in cm²).

    Attributes:
        iterations: Adam steps.
        learning_rate: initial Adam step (metres, 6D entries, radians); cosine-annealed to 5 %.
        w_tip: weight of the wrist → fingertip vectors.
        w_joint: weight of the wrist → MCP/PIP/DIP vectors.
        w_pinch: weight of a pinch vector (thumb tip → finger tip).
        pinch_distance_m: a finger pinches when its human tip is this close to the thumb tip.
        w_anchor: weight of the fingertip-centroid anchor.
        w_regularise: weight of the joint regulariser, cm² per rad².
        w_penetration: weight of the hand–object penetration (per cm of summed sphere depth).
        w_contact: weight of the touching fingertips' squared distance from the surface (cm²).
        penetration_margin_m: the penetration term treats the object as this much thicker.
        start_open_fraction: the penetration term also holds for the fingers this fraction of
            the way towards the open pose, where the validator starts closing the hand
            (:class:`grasp_data.validation.ValidationConfig` ``open_fraction``); 0 turns it off.
        clear_step_m, clear_max_m: step and longest move of the hand against its palm normal
            that takes it out of the object between the two stages (module docstring).
    """

    iterations: int = 300
    learning_rate: float = 0.02
    w_tip: float = 1.0
    w_joint: float = 0.3
    w_pinch: float = 2.0
    pinch_distance_m: float = 0.03
    w_anchor: float = 3.0
    w_regularise: float = 0.01
    w_penetration: float = 100.0
    w_contact: float = 30.0
    penetration_margin_m: float = 0.001
    start_open_fraction: float = 0.25
    clear_step_m: float = 0.005
    clear_max_m: float = 0.08

    def __post_init__(self) -> None:
        if self.iterations < 0 or not self.learning_rate > 0:
            raise ValueError(f"iterations must be ≥ 0 (got {self.iterations}) and learning_rate > 0 "
                             f"(got {self.learning_rate})")
        bad = [n for n in ("w_tip", "w_joint", "w_pinch", "pinch_distance_m", "w_anchor", "w_regularise",
                           "w_penetration", "w_contact", "penetration_margin_m", "start_open_fraction")
               if getattr(self, n) < 0]
        if bad:
            raise ValueError(f"must be ≥ 0: {', '.join(f'{n}={getattr(self, n)}' for n in bad)}")
        if not 0.0 < self.clear_step_m <= self.clear_max_m:
            raise ValueError(f"need 0 < clear_step_m ≤ clear_max_m, got {self.clear_step_m} and {self.clear_max_m}")


@dataclass(frozen=True)
class Correspondence:
    """Human keypoints ↔ robot bodies of one hand (``retarget:`` of its YAML).

    Attributes:
        wrist: body whose origin matches the human wrist keypoint.
        points: human keypoint name → body whose origin matches it (fingertips excluded: they map
            to the fingertip pad points).
        scale: fixed robot/human size ratio, or None to measure it per record.
    """

    wrist: str
    points: dict[str, str]
    scale: float | None = None

    @classmethod
    def of_hand(cls, hand_name: str) -> "Correspondence":
        """Read ``retarget:`` from ``config/hands/<hand_name>.yaml``.

        Raises:
            RetargetError: no ``retarget`` key, or unknown keypoint names or a bad scale.
        """
        from grasp_common.rosenv import config_dir

        path = config_dir() / "hands" / f"{hand_name}.yaml"
        cfg = (yaml.safe_load(path.read_text()) or {}).get("retarget") if path.is_file() else None
        if not (isinstance(cfg, dict) and isinstance(cfg.get("wrist"), str) and isinstance(cfg.get("points"), dict)):
            raise RetargetError(f"{path}: needs a 'retarget:' block with 'wrist' (a body) and 'points' "
                                "(human keypoint → body); see config/hands/shadow.yaml")
        unknown = set(cfg["points"]) - set(KEYPOINT_NAMES)
        tips = {KEYPOINT_NAMES[i] for i in TIP_INDEX.values()} | {"wrist"}
        if unknown or set(cfg["points"]) & tips:
            raise RetargetError(f"{path}: retarget.points names {sorted(unknown | (set(cfg['points']) & tips))}: "
                                "use MCP/PIP/DIP (thumb CMC/MCP/IP) keypoints of "
                                "grasp_data.human_records.KEYPOINT_NAMES (wrist and tips map by themselves)")
        scale = cfg.get("scale", "auto")
        if scale != "auto" and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0):
            raise RetargetError(f"{path}: retarget.scale must be 'auto' or a positive number, got {scale!r}")
        return cls(cfg["wrist"], dict(cfg["points"]), None if scale == "auto" else float(scale))


@dataclass(frozen=True)
class RetargetResult:
    """Retargeted grasps of a batch of B records.

    Attributes:
        root_pose: (B, 4, 4) hand root in the object frame, metres.
        q_act: (B, n_act) actuated joints, radians (``hand.actuated_joints``).
        q: (B, n_joints) every joint (``hand.joint_names``).
        tip_error_m: (B, 5) distance of each robot fingertip from its scaled human target
            (``kin.fingers`` order), metres.
        scale: (B,) robot/human scale used.
        cost: (B,) final cost, cm².
        wall_time_s: time of the whole batch.
        penetration_m: (B,) summed depth of the hand's collision spheres inside the object, metres
            (zeros without objects).
        surface_distance_m: (B, 5) signed distance of each robot fingertip pad from the object
            surface (negative inside; NaN without objects).
    """

    root_pose: np.ndarray
    q_act: np.ndarray
    q: np.ndarray
    tip_error_m: np.ndarray
    scale: np.ndarray
    cost: np.ndarray
    wall_time_s: float
    penetration_m: np.ndarray
    surface_distance_m: np.ndarray


class ObjectSurfaces:
    """Signed distance of points to the object of each record of a batch (records may share objects).

    The distance is to the tangent plane of the nearest surface sample (negative behind its outward
    normal): smooth near the surface, where contact and penetration are decided.

    Args:
        objects: one :class:`~grasp_data.adaptation.ObjectSamples` per record, object frame; the
            same object given for several records is searched once.
    """

    def __init__(self, objects: list[ObjectSamples]) -> None:
        index: dict[int, int] = {}
        self.record_object = np.array([index.setdefault(id(o), len(index)) for o in objects], int)
        unique = list({id(o): o for o in objects}.values())
        self.trees = [cKDTree(o.points) for o in unique]
        self.points = [torch.as_tensor(o.points, dtype=torch.float64) for o in unique]
        self.normals = [torch.as_tensor(o.normals, dtype=torch.float64) for o in unique]
        self.rows = [torch.as_tensor(np.flatnonzero(self.record_object == k)) for k in range(len(unique))]

    def __len__(self) -> int:
        return len(self.record_object)

    def nearest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The nearest surface sample of every point of ``x`` (B, …, 3) (metres, object frame of
        each record): its position and outward normal, each (B, …, 3) (no gradient)."""
        flat = x.detach().reshape(x.shape[0], -1, 3)
        p, n = torch.empty_like(flat), torch.empty_like(flat)
        for tree, pts, nrm, rows in zip(self.trees, self.points, self.normals, self.rows):
            _, idx = tree.query(flat[rows].reshape(-1, 3).numpy())
            idx = torch.as_tensor(idx).reshape(len(rows), -1)
            p[rows], n[rows] = pts.to(x.dtype)[idx], nrm.to(x.dtype)[idx]
        return p.reshape(x.shape), n.reshape(x.shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, …) metres: signed distance of the points ``x`` (B, …, 3) (metres, object frame of
        each record; differentiable w.r.t. ``x``)."""
        p, n = self.nearest(x)
        return ((x - p) * n).sum(-1)


class Retargeter:
    """Fits one robot hand to human keypoints (module docstring).

    Args:
        model: the prepared hand (:class:`~grasp_data.adaptation.HandModel`).
        correspondence: its keypoint mapping (default: read from the hand's YAML).
        config: weights and optimiser settings.

    Raises:
        RetargetError: a body of the correspondence is not in the hand model.
    """

    def __init__(self, model: HandModel, correspondence: Correspondence | None = None,
                 config: RetargetConfig = RetargetConfig()) -> None:
        self.model, self.config = model, config
        self.corr = correspondence or Correspondence.of_hand(model.hand.name)
        kin = model.kin
        missing = sorted({self.corr.wrist, *self.corr.points.values()} - set(kin.link_names))
        if missing:
            raise RetargetError(f"hand '{model.hand.name}': retarget bodies {missing} are not in its model; "
                                f"bodies: {', '.join(kin.link_names)}")
        self.wrist_link = kin.link_names.index(self.corr.wrist)
        names = list(self.corr.points)
        self.point_human = np.array([KEYPOINT_NAMES.index(n) for n in names], int)
        self.point_link = np.array([kin.link_names.index(self.corr.points[n]) for n in names], int)
        self.fingers = tuple(kin.fingers)
        self.tip_human = np.array([TIP_INDEX[f] for f in self.fingers], int)
        self.tip_link = np.asarray(kin.fingertip_link, int)
        self.tip_offset = torch.tensor(np.array([model.hand.tip_offset(f) for f in self.fingers]))
        self.q_mid = 0.5 * (model.q_open + model.q_closed)
        self.thumb = self.fingers.index("thumb")
        # Kabsch points for the initial wrist pose: the wrist and the palm-side joint of every finger.
        base = {f: KEYPOINT_NAMES[FINGER_KEYPOINTS[f][0]] for f in self.fingers}
        self.init_rows = [i for i, n in enumerate(names) if n in base.values()]

    # ------------------------------------------------------------------ robot keypoints
    def keypoints(self, root_pose: torch.Tensor,
                  q_act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Robot keypoints of a batch: ``wrist (B, 3), points (B, K, 3), tips (B, F, 3)``, metres,
        in the frame of ``root_pose`` (B, 4, 4)."""
        return self._robot_points(root_pose, q_act)[:3]

    def _robot_points(self, root_pose: torch.Tensor, q_act: torch.Tensor, surface: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, HandFK | None]:
        """:meth:`keypoints` and, with ``surface``, its forward kinematics (surface points)."""
        fk = None
        if surface:
            fk = self.model.kin.forward(self.model.full(q_act), root_pose)
            world = fk.link_poses
        else:
            world = root_pose[:, None] @ self.model.kin.link_poses(self.model.full(q_act))   # (B, L, 4, 4)
        tip_frames = world[:, self.tip_link]
        offset = self.tip_offset.to(world.dtype)[None, :, :, None]
        tips = (tip_frames[..., :3, :3] @ offset)[..., 0] + tip_frames[..., :3, 3]
        return world[:, self.wrist_link, :3, 3], world[:, self.point_link, :3, 3], tips, fk

    def _penetration(self, fk: HandFK, surfaces: ObjectSurfaces) -> torch.Tensor:
        """(B,) metres: summed depth of the hand's surface points inside the object grown by
        ``penetration_margin_m``."""
        return torch.relu(self.config.penetration_margin_m - surfaces(fk.points)).sum(-1)

    @cached_property
    def robot_length_m(self) -> float:
        """Wrist → middle fingertip length of the robot along its mapped points (q = mid synergy, metres)."""
        with torch.no_grad():
            w, p, t = self.keypoints(torch.eye(4, dtype=torch.float64)[None],
                                     torch.as_tensor(self.q_mid[None]))
        names = [KEYPOINT_NAMES[i] for i in self.point_human]
        chain = [w[0]] + [p[0, names.index(KEYPOINT_NAMES[i])] for i in FINGER_KEYPOINTS["middle"][:-1]
                          if KEYPOINT_NAMES[i] in names] + [t[0, self.fingers.index("middle")]]
        return float(sum((b - a).norm() for a, b in zip(chain, chain[1:])))

    def scale_for(self, keypoints: np.ndarray) -> float:
        """Robot/human size ratio for one record's (21, 3) keypoints."""
        if self.corr.scale is not None:
            return self.corr.scale
        return self.robot_length_m / bone_length_m(keypoints)

    # ------------------------------------------------------------------ optimisation
    def retarget(self, keypoints: np.ndarray, contact: np.ndarray | None = None,
                 objects: list[ObjectSamples] | None = None) -> RetargetResult:
        """Retarget a batch of human hands.

        Args:
            keypoints: (B, 21, 3) human keypoints (:data:`KEYPOINT_NAMES` order), object frame, metres.
            contact: (B, 5) bool, fingers (``fingers`` order) whose human tip touches the object
                (the anchor and the contact term use their tips; default all).
            objects: per record, its object's surface samples (object frame), or None for the
                keypoint terms alone (no penetration or contact term).

        Returns:
            The fitted grasps (:class:`RetargetResult`).

        Raises:
            ValueError: wrong shapes, or ``objects`` not one per record.
        """
        t0 = time.perf_counter()
        c, m = self.config, self.model
        kp = np.asarray(keypoints, np.float64)
        if kp.ndim != 3 or kp.shape[1:] != (len(KEYPOINT_NAMES), 3):
            raise ValueError(f"keypoints must be (B, {len(KEYPOINT_NAMES)}, 3), got {kp.shape}")
        B = len(kp)
        if objects is not None and len(objects) != B:
            raise ValueError(f"objects must hold one ObjectSamples per record ({B}), got {len(objects)}")
        mask = np.ones((B, len(self.fingers)), bool) if contact is None else np.asarray(contact, bool).copy()
        if mask.shape != (B, len(self.fingers)):
            raise ValueError(f"contact must be ({B}, {len(self.fingers)}) bool, got {mask.shape}")
        mask[~mask.any(axis=1)] = True
        surfaces = ObjectSurfaces(objects) if objects is not None else None
        scale = np.array([self.scale_for(k) for k in kp])
        H = torch.as_tensor(kp * _CM)
        s = torch.as_tensor(scale)[:, None, None]
        h_wrist = H[:, 0]
        target_pts = s * (H[:, self.point_human] - h_wrist[:, None])               # (B, K, 3) cm
        target_tips = s * (H[:, self.tip_human] - h_wrist[:, None])                # (B, F, 3)
        h_tips = H[:, self.tip_human]
        pinch_vec = h_tips - h_tips[:, self.thumb:self.thumb + 1]                  # (B, F, 3), unscaled
        pinch_w = torch.as_tensor(c.w_pinch * (pinch_vec.norm(dim=-1).numpy() < c.pinch_distance_m * _CM))
        pinch_w[:, self.thumb] = 0.0
        w_anchor = torch.as_tensor(mask / mask.sum(axis=1, keepdims=True))
        anchor_tips = h_tips if surfaces is None else self._on_surface(h_tips, surfaces)
        anchor = (w_anchor[..., None] * anchor_tips).sum(1)                         # (B, 3) cm
        touching = torch.as_tensor(mask, dtype=torch.float64)
        q_mid, q_open = torch.as_tensor(self.q_mid), torch.as_tensor(m.q_open)
        lo, hi = m.act_limits[:, 0], m.act_limits[:, 1]

        poses = self._initial_poses(kp, scale)
        t = torch.tensor(poses[:, :3, 3] * _CM, requires_grad=True)                # cm
        r6 = torch.tensor(np.concatenate([poses[:, :3, 0], poses[:, :3, 1]], axis=1), requires_grad=True)
        q = torch.tensor(np.tile(self.q_mid, (B, 1)), requires_grad=True)

        def pose(t: torch.Tensor, r6: torch.Tensor) -> torch.Tensor:
            T = torch.zeros(B, 4, 4, dtype=t.dtype)
            T[:, :3, :3] = rotation_from_6d(r6)
            T[:, :3, 3] = t / _CM
            T[:, 3, 3] = 1.0
            return T

        def cost(t: torch.Tensor, r6: torch.Tensor, q: torch.Tensor, with_object: bool = True
                 ) -> tuple[torch.Tensor, ...]:
            with_object = with_object and surfaces is not None
            w, p, tips, fk = self._robot_points(pose(t, r6), q, surface=with_object)
            w, p, tips = w * _CM, p * _CM, tips * _CM
            e_pts = ((p - w[:, None] - target_pts) ** 2).sum(-1).sum(-1)
            e_tip = ((tips - w[:, None] - target_tips) ** 2).sum(-1).sum(-1)
            e_pinch = (pinch_w * ((tips - tips[:, self.thumb:self.thumb + 1] - pinch_vec) ** 2).sum(-1)).sum(-1)
            e_anchor = (((w_anchor[..., None] * tips).sum(1) - anchor) ** 2).sum(-1)
            e_reg = ((q - q_mid) ** 2).sum(-1)
            total = (c.w_joint * e_pts + c.w_tip * e_tip + e_pinch + c.w_anchor * e_anchor
                     + c.w_regularise * e_reg)
            if not with_object:
                return total, tips, t.new_zeros(B), torch.full((B, len(self.fingers)), float("nan"))
            pen = self._penetration(fk, surfaces)
            if c.start_open_fraction > 0:         # the start of the validator's closing
                q_start = q + c.start_open_fraction * (q_open - q)
                pen = pen + self._penetration(self._robot_points(pose(t, r6), q_start, surface=True)[3], surfaces)
            tip_d = surfaces(tips / _CM)                                            # (B, F) m
            e_contact = (touching * (tip_d * _CM) ** 2).sum(-1)
            return total + c.w_penetration * pen * _CM + c.w_contact * e_contact, tips, pen, tip_d

        # Stage 1 fits the keypoints alone; the hand is then moved out of the object along its palm
        # normal (a start from outside: from deep inside, the penetration gradient of a thin wall
        # can point the wrong way), and stage 2 fits everything from there.
        stages = [(c.iterations, False)] if surfaces is None else [(c.iterations // 2, False),
                                                                    (c.iterations - c.iterations // 2, True)]
        for steps, with_object in stages:
            if with_object:
                with torch.no_grad():
                    t.copy_(self._clear(pose(t, r6), q, surfaces) * _CM)
            opt = torch.optim.Adam([t, r6, q], lr=c.learning_rate)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1), eta_min=0.05 * c.learning_rate)
            for _ in range(steps):
                opt.zero_grad()
                total = cost(t, r6, q, with_object)[0]
                total.sum().backward()
                opt.step()
                sched.step()
                with torch.no_grad():
                    q.copy_(torch.maximum(torch.minimum(q, hi), lo))
        with torch.no_grad():
            total, tips, pen, tip_d = cost(t, r6, q)
            T = np.tile(np.eye(4), (B, 1, 1))
            T[:, :3, :3], T[:, :3, 3] = rotation_from_6d(r6).numpy(), t.numpy() / _CM
            # Fingertip targets in the object frame: the scaled human hand placed by the anchor.
            w = self.keypoints(torch.as_tensor(T), q)[0] * _CM
            goal = w[:, None] + target_tips
            goal = goal + (anchor - (w_anchor[..., None] * goal).sum(1))[:, None]
            err = (tips - goal).norm(dim=-1).numpy() / _CM
            q_full = m.full(q).numpy()
        return RetargetResult(root_pose=T, q_act=q.detach().numpy().copy(), q=q_full, tip_error_m=err,
                              scale=scale, cost=total.numpy(), wall_time_s=time.perf_counter() - t0,
                              penetration_m=pen.numpy(), surface_distance_m=tip_d.numpy())

    def _clear(self, T: torch.Tensor, q_act: torch.Tensor, surfaces: ObjectSurfaces) -> torch.Tensor:
        """(B, 3) metres: root positions of ``T`` (B, 4, 4) moved against the palm normal by the
        smallest multiple of ``clear_step_m`` (up to ``clear_max_m``) that takes every hand surface
        point out of the object (the least penetrating shift when none does)."""
        c, m = self.config, self.model
        shifts = torch.arange(0.0, c.clear_max_m + 1e-9, c.clear_step_m, dtype=T.dtype)           # (N,)
        palm = m.kin.link_poses(m.full(q_act))[:, m.kin.link_names.index(m.hand.palm_body)]
        normal = T[:, :3, :3] @ palm[:, :3, :3] @ torch.as_tensor(m.hand.palm_normal, dtype=T.dtype)   # (B, 3)
        best = T[:, :3, 3].clone()
        depth_best = torch.full((len(T),), float("inf"), dtype=T.dtype)
        for d in shifts:
            Ts = T.clone()
            Ts[:, :3, 3] -= d * normal
            depth = torch.relu(-surfaces(self._robot_points(Ts, q_act, surface=True)[3].points)).sum(-1)
            better = depth < depth_best - 1e-6
            best[better], depth_best[better] = Ts[better, :3, 3], depth[better]
            if bool((depth_best <= 0).all()):
                break
        return best

    @staticmethod
    def _on_surface(points_cm: torch.Tensor, surfaces: ObjectSurfaces) -> torch.Tensor:
        """(B, F, 3) cm: each point moved along its nearest sample's normal onto the tangent plane."""
        x = points_cm / _CM
        return (x - surfaces(x)[..., None] * surfaces.nearest(x)[1]) * _CM

    def _initial_poses(self, kp: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """(B, 4, 4) initial root poses: Kabsch of the robot's wrist + finger-base points at
        ``q_mid`` onto the human's (scaled about the wrist)."""
        with torch.no_grad():
            w, p, _ = self.keypoints(torch.eye(4, dtype=torch.float64)[None], torch.as_tensor(self.q_mid[None]))
        src = np.vstack([w.numpy(), p[0, self.init_rows].numpy()])
        rows = self.point_human[self.init_rows]
        out = np.empty((len(kp), 4, 4))
        for i, (k, s) in enumerate(zip(kp, scale)):
            dst = k[0] + s * (np.vstack([k[:1], k[rows]]) - k[0])
            out[i] = kabsch(src, dst, np.ones(len(src)))
        return out
