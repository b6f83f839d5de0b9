"""Physics-informed grasp adaptation (CorDex Sec. IV-C): many grasps per object, optimised at once.

A grasp is ``g = (T, q)``: the pose ``T`` of the hand root (``hand.root_body``) in the object
frame and the hand's actuated joints ``q`` (``hand.actuated_joints`` order; followers and fixed
joints through ``hand.coupling_matrix()``). A batch of B grasps is optimised with Adam over
``(translation (B, 3) m, rotation (B, 6) — the first two columns of R, q (B, n_act) rad)``,
with the joints projected back into their limits after every step. The energy is CorDex's
weighted sum of six terms (distances in centimetres so the weights are O(1)):

* **contact prior** — every demonstrated finger ``f`` has one transferred target ``(o_f, n_f)``
  per grasp, drawn from its ≤ 3 candidates with probability ∝ confidence; the term is
  ``conf_f · min_i (|h_i − o_f|² + α (1 + n_hi · n_f))`` over the hand surface points ``h_i`` of
  the finger's middle and distal links (outward normals ``n_hi`` face the object: ``n_h·n_o = −1``);
* **stability contact** — every finger (demonstrated or not): squared distance of its closest
  contact-link point to the nearest object surface sample;
* **auxiliary contact** — the same for the palm and the other links (weight smaller);
* **joint limits** — squared violation of the full joint vector's limits (couplings included);
* **hand–object penetration** — :meth:`TorchHandKinematics.object_penetration` of the hand's
  collision spheres against the object samples with normals, at the grasp and with the fingers
  ``start_open_fraction`` of the way toward the open pose (where the validator starts closing
  them: opening can swing a finger into the object);
* **self-penetration** — :meth:`TorchHandKinematics.self_penetration`.

Initialisation from the demonstration: the hand is put at a random closure between its open
and closed synergy poses, its designated fingertip pads are aligned with the grasp's sampled
targets (lifted ``init_standoff_m`` off the surface along their normals) by a weighted Kabsch
fit, and the wrist pose gets Gaussian noise — so every grasp of the batch starts near a
different plausible reading of the demonstration. Each grasp draws ``init_hypotheses`` such
starts and keeps the one of lowest energy (a start with the palm inside the object is dropped
before any optimisation is spent on it).

Two phases of Adam (the translation has its own step size, ``translation_learning_rate_m``:
Adam moves every variable by about its step size each iteration, and a 4 mm wrist jitter
would keep the fingers millimetres off the surface):

1. ``iterations`` steps of the six-term energy above;
2. the **closing phase** (``closing_iterations`` steps, step sizes × ``closing_learning_rate_fraction``
   decaying linearly to zero): the stability term becomes the squared *surface* distance of
   every finger's closest contact-link point (tangent plane of the nearest sample,
   :meth:`_Energy.plane_distance`, which has no floor from the sample spacing) with weight
   ``w_closing``, and the penetration margin becomes ``closing_margin_m`` — so the fingertips
   end on the surface, not 2–5 mm above it, and the validator's closing ramp makes every finger
   touch at about the same time instead of the first one pushing the free object away.
   The reported energy and terms (initial and final) are those of this phase when it runs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from scipy.spatial import cKDTree

from grasp_data.labelled_mesh import LabelledMesh
from grasp_data.transfer import TransferResult
from grasp_planner.hand_fk_torch import TorchHandKinematics
from grasp_planner.hands import HandDescription

#: Distances inside the energy are in centimetres (metres × this).
_CM = 100.0


@dataclass(frozen=True)
class AdaptationConfig:
    """Settings of :func:`adapt_grasps` (weights are unitless; distances in the energy are cm).

    Attributes:
        batch_size: grasps optimised together.
        iterations: Adam steps.
        learning_rate: Adam step size of the 6D rotation entries and the joints (radians).
        object_points: object surface samples the contact and penetration terms use.
        normal_alpha: α of the contact prior's normal term, cm².
        w_prior, w_stability, w_auxiliary, w_joint_limits, w_penetration, w_self_penetration:
            weights of the six terms.
        penetration_margin_m: the penetration term treats the object as this much thicker (the
            simulator collides with convex pieces, not with the surface samples).
        start_open_fraction: the penetration term also holds for the fingers this fraction of
            the way toward the open pose, where the validator starts closing the hand
            (:class:`grasp_data.validation.ValidationConfig` ``open_fraction``); 0 turns it off.
        init_standoff_m: fingertip targets of the initial Kabsch fit lie this far outside the surface.
        init_closure: range of the initial closure (0 open synergy pose … 1 closed).
        init_rotation_sigma_rad, init_translation_sigma_m: noise on the initial wrist pose.
        init_hypotheses: initial starts drawn per grasp; the one of lowest energy is kept.
        translation_learning_rate_m: Adam step size of the wrist translation, metres.
        closing_iterations: steps of the closing phase (0: none; module docstring).
        closing_learning_rate_fraction: the closing phase's step sizes, fraction of the main ones
            (decaying linearly to zero over the phase).
        w_closing: weight of the closing phase's surface-distance stability term.
        closing_margin_m: the closing phase's penetration margin.
        seed: seed of the candidate draws, initial closures and noise.
    """

    batch_size: int = 32
    iterations: int = 200
    learning_rate: float = 4e-3
    translation_learning_rate_m: float = 1e-3
    object_points: int = 2048
    normal_alpha: float = 0.5
    w_prior: float = 1.0
    w_stability: float = 0.5
    w_auxiliary: float = 0.05
    w_joint_limits: float = 100.0
    w_penetration: float = 50.0
    w_self_penetration: float = 20.0
    penetration_margin_m: float = 0.002
    start_open_fraction: float = 0.25
    init_standoff_m: float = 0.005
    init_closure: tuple[float, float] = (0.2, 0.6)
    init_rotation_sigma_rad: float = 0.15
    init_translation_sigma_m: float = 0.01
    init_hypotheses: int = 8
    closing_iterations: int = 60
    closing_learning_rate_fraction: float = 0.5
    w_closing: float = 5.0
    closing_margin_m: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.init_hypotheses < 1:
            raise ValueError(f"init_hypotheses must be ≥ 1, got {self.init_hypotheses}")
        if self.closing_iterations < 0 or not self.closing_learning_rate_fraction > 0:
            raise ValueError(f"closing_iterations must be ≥ 0 (got {self.closing_iterations}) and "
                             f"closing_learning_rate_fraction > 0 (got {self.closing_learning_rate_fraction})")
        if self.batch_size < 1 or self.iterations < 0 or self.object_points < 16:
            raise ValueError(f"batch_size must be ≥ 1 (got {self.batch_size}), iterations ≥ 0 "
                             f"(got {self.iterations}) and object_points ≥ 16 (got {self.object_points})")
        if not (self.learning_rate > 0 and self.translation_learning_rate_m > 0):
            raise ValueError(f"learning_rate ({self.learning_rate}) and translation_learning_rate_m "
                             f"({self.translation_learning_rate_m}) must be > 0")
        lo, hi = self.init_closure
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"init_closure must be 0 ≤ low ≤ high ≤ 1, got {self.init_closure}")
        if not 0.0 <= self.start_open_fraction <= 1.0:
            raise ValueError(f"start_open_fraction must be in 0..1, got {self.start_open_fraction}")
        weights = ("w_prior", "w_stability", "w_auxiliary", "w_joint_limits", "w_penetration",
                   "w_self_penetration", "normal_alpha", "w_closing")
        bad = [w for w in weights if getattr(self, w) < 0]
        if bad:
            raise ValueError(f"weights must be ≥ 0: {', '.join(f'{w}={getattr(self, w)}' for w in bad)}")


#: Names of the energy terms, in the order of :attr:`AdaptationResult.terms` columns.
TERMS = ("prior", "stability", "auxiliary", "joint_limits", "penetration", "self_penetration")


@dataclass(frozen=True)
class AdaptationResult:
    """A batch of adapted grasps of one object.

    Attributes:
        hand: hand name.
        joint_names: ``hand.joint_names`` (the columns of ``q``).
        root_pose: (B, 4, 4) float64 pose of the hand root in the object frame, metres.
        q: (B, n_joints) float64 every hand joint, radians, ``joint_names`` order.
        energy: (B,) final weighted energy; ``energy_initial`` (B,) before optimisation.
        terms: (B, 6) final unweighted terms (:data:`TERMS` order; distances in cm, cm²).
        terms_initial: (B, 6) the same at the start.
        penetration_m: (B,) final hand–object penetration, summed sphere depths at the grasp and
            at its opened start (``start_open_fraction``), metres.
        targets: finger → (B, 3) metres: the transferred target each grasp was pulled to.
        wall_time_s: wall-clock time of the batch (initialisation + optimisation).
    """

    hand: str
    joint_names: tuple[str, ...]
    root_pose: np.ndarray
    q: np.ndarray
    energy: np.ndarray
    energy_initial: np.ndarray
    terms: np.ndarray
    terms_initial: np.ndarray
    penetration_m: np.ndarray
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    wall_time_s: float = 0.0

    def __len__(self) -> int:
        return len(self.q)

    def joints_by_name(self, i: int) -> dict[str, float]:
        """Grasp ``i``'s joints as ``{name: radians}``."""
        return dict(zip(self.joint_names, self.q[i].tolist()))


def rotation_from_6d(r6: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotation matrices from (B, 6) = two column vectors, by Gram–Schmidt."""
    a, b = r6[:, :3], r6[:, 3:]
    x = torch.nn.functional.normalize(a, dim=-1)
    y = torch.nn.functional.normalize(b - (x * b).sum(-1, keepdim=True) * x, dim=-1)
    return torch.stack([x, y, torch.cross(x, y, dim=-1)], dim=-1)


def kabsch(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(4, 4) rigid transform minimising Σ w |T src − dst|² (weighted Kabsch, no scaling).

    Args:
        src, dst: (K, 3) corresponding points; weights: (K,) ≥ 0, not all zero.
    """
    w = weights / weights.sum()
    cs, cd = w @ src, w @ dst
    H = ((src - cs) * w[:, None]).T @ (dst - cd)
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(Vt.T @ U.T)) or 1.0
    R = Vt.T @ np.diag([1.0, 1.0, d]) @ U.T
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, cd - R @ cs
    return T


class HandModel:
    """One hand prepared for adaptation: torch FK, point groups per finger, limits (built once).

    Attributes:
        hand: the description; ``kin``: its :class:`TorchHandKinematics`.
        finger_points: finger → indices into the surface points of its middle and distal links.
        aux_points: indices of the surface points on the palm and the link below each finger's
            contact links (the proximal phalanges): the auxiliary contact links.
    """

    def __init__(self, hand: HandDescription, kin: TorchHandKinematics | None = None) -> None:
        self.hand = hand
        self.kin = kin or TorchHandKinematics(hand)
        k = self.kin
        has_points = set(np.unique(k.point_link).tolist())
        self.finger_points: dict[str, np.ndarray] = {}
        aux = {k.link_names.index(hand.palm_body)}
        for finger, tip_link in zip(k.fingers, k.fingertip_link):
            links, link = [], int(tip_link)
            while link >= 0 and len(links) < 3:
                if link in has_points:
                    links.append(link)
                link = int(k.link_parent[link])
            self.finger_points[finger] = np.flatnonzero(np.isin(k.point_link, links[:2]))
            aux.update(links[2:])
        self.aux_points = np.flatnonzero(np.isin(k.point_link, sorted(aux)))
        A, b = k.coupling(torch.float64)
        self.A, self.b = A, b
        names = list(hand.joint_names)
        limits = np.asarray(hand.joint_limits, float)
        self.limits = torch.as_tensor(limits)
        act = [names.index(n) for n in hand.actuated_joints]
        self.act_limits = torch.as_tensor(limits[act])
        self.q_open = self._synergy(hand.open_pose)
        self.q_closed = self._synergy(hand.closed_pose)
        self.self_pairs = torch.as_tensor(self._reachable_pairs())
        self.sphere_radius = torch.as_tensor(k.sphere_radius)

    def _reachable_pairs(self, samples: int = 512, margin_m: float = 0.01) -> np.ndarray:
        """The hand's self-collision sphere pairs that come within ``margin_m`` in any of
        ``samples`` random joint configurations (seeded; the others can never touch, and skipping
        them makes the self-penetration term several times cheaper on the Shadow Hand)."""
        k = self.kin
        lim = self.act_limits.numpy()
        q = np.random.default_rng(0).uniform(lim[:, 0], lim[:, 1], size=(samples, len(lim)))
        with torch.no_grad():
            c = k.forward(self.full(torch.as_tensor(q))).sphere_centers
        p = torch.as_tensor(k.self_pairs)
        gap = (c[:, p[:, 0]] - c[:, p[:, 1]]).norm(dim=-1) - torch.as_tensor(k.sphere_radius)[p].sum(-1)
        return k.self_pairs[(gap.min(dim=0).values < margin_m).numpy()]

    def self_penetration(self, centres: torch.Tensor) -> torch.Tensor:
        """(B,) metres: summed overlap of the reachable sphere pairs (:meth:`_reachable_pairs`)."""
        p = self.self_pairs
        d = (centres[:, p[:, 0]] - centres[:, p[:, 1]]).norm(dim=-1)
        return torch.relu(self.sphere_radius.to(centres.dtype)[p].sum(-1) - d).sum(dim=-1)

    def _synergy(self, pose: dict[str, float]) -> np.ndarray:
        q = np.array([float(pose.get(n, 0.0)) for n in self.hand.actuated_joints])
        lim = self.act_limits.numpy()
        return np.clip(q, lim[:, 0], lim[:, 1])

    def full(self, q_act: torch.Tensor) -> torch.Tensor:
        """(B, n_joints) every joint from (B, n_act) actuated joints."""
        return q_act @ self.A.T.to(q_act.dtype) + self.b.to(q_act.dtype)


@dataclass(frozen=True)
class ObjectSamples:
    """Object surface samples for the energy (object frame)."""

    points: np.ndarray   #: (N, 3) metres
    normals: np.ndarray  #: (N, 3) outward unit normals

    @classmethod
    def of(cls, instance: LabelledMesh, count: int, seed: int = 0) -> "ObjectSamples":
        points, normals, _ = instance.sample_surface(count, seed)
        return cls(points, normals)


def _draw_targets(transfer: TransferResult, fingers: tuple[str, ...], batch: int,
                  rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """finger → ((B, 3) points, (B, 3) normals, (B,) weights): one candidate per grasp, drawn ∝ confidence."""
    out = {}
    for finger in fingers:
        cands = transfer.candidates.get(finger) or ()
        if not cands:
            continue
        conf = np.array([max(c.confidence, 1e-6) for c in cands])
        pick = rng.choice(len(cands), size=batch, p=conf / conf.sum())
        out[finger] = (np.array([cands[i].point_m for i in pick]), np.array([cands[i].normal for i in pick]),
                       conf[pick] / conf.max())
    return out


class _Energy:
    """The six-term energy of a batch (see the module docstring)."""

    def __init__(self, model: HandModel, samples: ObjectSamples, targets: dict, config: AdaptationConfig) -> None:
        self.m, self.c = model, config
        dt = torch.float64
        self.obj = torch.as_tensor(samples.points, dtype=dt)
        self.obj_n = torch.as_tensor(samples.normals, dtype=dt)
        self.q_open = torch.as_tensor(model.q_open, dtype=dt)          # (n_act,) the start-pose term's open pose
        self.tree = cKDTree(samples.points)
        #: Typical distance between neighbouring samples, metres.
        self.spacing_m = float(np.median(self.tree.query(samples.points, k=2)[0][:, 1]))
        self.targets = {f: tuple(torch.as_tensor(a, dtype=dt) for a in v) for f, v in targets.items()}
        self.contact_idx = np.concatenate([model.finger_points[f] for f in model.kin.fingers])
        self.groups = [len(model.finger_points[f]) for f in model.kin.fingers]

    def _nearest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest object sample of every point of ``x`` (…, 3) m: its position and normal (the
        index search runs without gradient; the distance to the sample keeps it)."""
        _, idx = self.tree.query(x.detach().reshape(-1, 3).numpy())
        idx = torch.as_tensor(idx).reshape(x.shape[:-1])
        return self.obj[idx], self.obj_n[idx]

    def signed_distance(self, x: torch.Tensor) -> torch.Tensor:
        """(…) metres: distance to the nearest object sample, negative behind its normal (inside)."""
        p, n = self._nearest(x)
        d = (x - p).norm(dim=-1)
        return torch.where(((x - p) * n).sum(-1) < 0, -d, d)

    def plane_distance(self, x: torch.Tensor) -> torch.Tensor:
        """(…) metres: signed distance to the tangent plane of the nearest object sample where ``x``
        lies above that sample (lateral offset within the sample spacing), else
        :meth:`signed_distance`. Near the surface the plane has no floor from the sample spacing,
        which the distance to the sample itself has; away from it (beside an edge) the plane
        would be wrong, sometimes even in sign, and the distance to the sample is used, negative
        only when the point lies more behind the sample than beside it."""
        p, n = self._nearest(x)
        v = x - p
        along = (v * n).sum(-1)
        lateral = (v - along[..., None] * n).norm(dim=-1)
        d = v.norm(dim=-1)
        # away from the plane's sample: inside only if more behind it than beside it (a point
        # level with a top face but beside its edge is outside, though just behind the plane)
        return torch.where(lateral <= self.spacing_m, along, torch.where(along < -lateral, -d, d))

    def __call__(self, t: torch.Tensor, r6: torch.Tensor, q_act: torch.Tensor,
                 closing: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(energy (B,), terms (B, 6))``; ``closing`` switches to the closing phase's
        stability term and penetration margin (module docstring)."""
        m, c = self.m, self.c
        B = t.shape[0]
        T = torch.zeros(B, 4, 4, dtype=t.dtype)
        T[:, :3, :3] = rotation_from_6d(r6)
        T[:, :3, 3] = t
        T[:, 3, 3] = 1.0
        q = m.full(q_act)
        fk = m.kin.forward(q, T, normals=True)
        pts, nrm = fk.points * _CM, fk.normals
        prior = t.new_zeros(B)
        for finger, (o, n, w) in self.targets.items():
            idx = m.finger_points[finger]
            d2 = ((pts[:, idx] - o[:, None] * _CM) ** 2).sum(-1) + c.normal_alpha * (1.0 + (nrm[:, idx] * n[:, None]).sum(-1))
            prior = prior + w * d2.min(dim=1).values
        near = (pts - self._nearest(fk.points)[0] * _CM).norm(dim=-1)                 # (B, P) cm
        if closing:
            plane = self.plane_distance(fk.points[:, self.contact_idx]) * _CM              # (B, P_f) cm
            stability = sum(d.min(dim=1).values ** 2 for d in plane.split(self.groups, dim=1))
        else:
            finger_d = near[:, self.contact_idx].split(self.groups, dim=1)
            stability = sum(d.min(dim=1).values ** 2 for d in finger_d)
        aux_links = m.kin.point_link[m.aux_points]
        auxiliary = t.new_zeros(B)
        for link in np.unique(aux_links):
            auxiliary = auxiliary + near[:, m.aux_points[aux_links == link]].min(dim=1).values ** 2
        lim = m.limits.to(q.dtype)
        joint = (torch.relu(q - lim[:, 1]) ** 2 + torch.relu(lim[:, 0] - q) ** 2).sum(-1)
        if closing:
            sdf = lambda x: self.plane_distance(x) - c.closing_margin_m  # noqa: E731
        else:
            sdf = lambda x: self.signed_distance(x) - c.penetration_margin_m  # noqa: E731
        pen = m.kin.object_penetration(fk.sphere_centers, sdf=sdf) * _CM
        if c.start_open_fraction > 0:       # the pose the validator starts closing the hand from
            start = m.kin.forward(m.full(q_act + c.start_open_fraction * (self.q_open - q_act)), T)
            pen = pen + m.kin.object_penetration(start.sphere_centers, sdf=sdf) * _CM
        self_pen = m.self_penetration(fk.sphere_centers) * _CM
        terms = torch.stack([prior, stability, auxiliary, joint, pen, self_pen], dim=1)
        w = torch.tensor([c.w_prior, c.w_closing if closing else c.w_stability, c.w_auxiliary, c.w_joint_limits,
                          c.w_penetration, c.w_self_penetration], dtype=t.dtype)
        return terms @ w, terms


def initial_grasps(model: HandModel, targets: dict, config: AdaptationConfig,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Initial ``(root poses (B, 4, 4), actuated joints (B, n_act))`` from the drawn targets
    (module docstring: closure, Kabsch fit of the designated fingertip pads, noise)."""
    B = config.batch_size
    u = rng.uniform(*config.init_closure, size=(B, 1))
    q0 = model.q_open + u * (model.q_closed - model.q_open)
    with torch.no_grad():
        tips = model.kin.forward(model.full(torch.as_tensor(q0))).fingertips.numpy()     # (B, F, 3)
    fingers = [f for f in model.kin.fingers if f in targets]
    col = [model.kin.fingers.index(f) for f in fingers]
    poses = np.empty((B, 4, 4))
    for i in range(B):
        dst = np.array([targets[f][0][i] + config.init_standoff_m * targets[f][1][i] for f in fingers])
        w = np.array([targets[f][2][i] for f in fingers])
        T = kabsch(tips[i, col], dst, w)
        noise = _rotvec_matrix(rng.normal(0.0, config.init_rotation_sigma_rad, 3))
        centre = dst.mean(axis=0)
        T[:3, :3] = noise @ T[:3, :3]
        T[:3, 3] = noise @ (T[:3, 3] - centre) + centre + rng.normal(0.0, config.init_translation_sigma_m, 3)
        poses[i] = T
    return poses, q0


def _parameters(poses: np.ndarray, q0: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Optimisation variables ``(translation (B, 3), 6D rotation (B, 6), q (B, n_act))`` of
    root poses (B, 4, 4) and actuated joints (B, n_act)."""
    return (torch.tensor(poses[:, :3, 3]), torch.tensor(np.concatenate([poses[:, :3, 0], poses[:, :3, 1]], axis=1)),
            torch.tensor(q0))


def _best_initial_grasps(model: HandModel, samples: ObjectSamples, targets: dict, config: AdaptationConfig,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`initial_grasps` with ``config.init_hypotheses`` hypotheses per grasp (closure,
    wrist noise), keeping each grasp's hypothesis of lowest initial energy: a start with the
    palm inside the object or the fingertips far from their targets is replaced before any
    optimisation is spent on it."""
    H, B = config.init_hypotheses, config.batch_size
    if H == 1:
        return initial_grasps(model, targets, config, rng)
    many = {f: tuple(np.repeat(a, H, axis=0) for a in v) for f, v in targets.items()}
    poses, q0 = initial_grasps(model, many, replace(config, batch_size=B * H), rng)
    with torch.no_grad():
        energy, _ = _Energy(model, samples, many, config)(*_parameters(poses, q0))
    best = np.arange(B) * H + energy.numpy().reshape(B, H).argmin(axis=1)
    return poses[best], q0[best]


def _rotvec_matrix(v: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(v).as_matrix()


def adapt_grasps(model: HandModel, instance: LabelledMesh | ObjectSamples, transfer: TransferResult,
                 config: AdaptationConfig = AdaptationConfig(),
                 init: tuple[np.ndarray, np.ndarray] | None = None) -> AdaptationResult:
    """Optimise ``config.batch_size`` grasps of ``model.hand`` on one object (module docstring).

    Args:
        model: the prepared hand (:class:`HandModel`; build once per hand and reuse).
        instance: the object (its surface is sampled) or ready surface samples, object frame.
        transfer: the demonstration's transferred contacts on this object.
        config: weights, iterations, initialisation.
        init: start grasps instead of :func:`initial_grasps`: root poses (B, 4, 4) in the object
            frame and actuated joints (B, n_act), B = ``config.batch_size`` (e.g. retargeted
            human grasps, :mod:`grasp_data.human_import`).

    Returns:
        The adapted batch (deterministic for a seed).

    Raises:
        ValueError: the transfer has fewer than 2 fingers the hand has (no wrist pose can be fit).
    """
    wall0 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    samples = instance if isinstance(instance, ObjectSamples) else ObjectSamples.of(instance, config.object_points, config.seed)
    targets = _draw_targets(transfer, model.kin.fingers, config.batch_size, rng)
    if len(targets) < 2:
        raise ValueError(f"hand '{model.hand.name}': the transferred contacts cover {sorted(targets)}; "
                         "at least two of the hand's fingers need a candidate to place the wrist")
    if init is None:
        poses, q0 = _best_initial_grasps(model, samples, targets, config, rng)
    else:
        poses, q0 = (np.asarray(a, np.float64) for a in init)
        n_act = len(model.hand.actuated_joints)
        if poses.shape != (config.batch_size, 4, 4) or q0.shape != (config.batch_size, n_act):
            raise ValueError(f"init must be root poses ({config.batch_size}, 4, 4) and actuated joints "
                             f"({config.batch_size}, {n_act}), got {poses.shape} and {q0.shape}")
    energy_fn = _Energy(model, samples, targets, config)
    t, r6, q = (a.requires_grad_() for a in _parameters(poses, q0))
    lo, hi = model.act_limits[:, 0], model.act_limits[:, 1]
    with torch.no_grad():
        e0, terms0 = energy_fn(t, r6, q, config.closing_iterations > 0)   # the energy reported at the end
    phases = [(config.iterations, 1.0, False), (config.closing_iterations, config.closing_learning_rate_fraction, True)]
    for steps, scale, closing in phases:
        if steps == 0:
            continue
        rates = (scale * config.translation_learning_rate_m, scale * config.learning_rate)
        opt = torch.optim.Adam([{"params": [t], "lr": rates[0]}, {"params": [r6, q], "lr": rates[1]}])
        for step in range(steps):
            if closing:  # linear decay to zero: Adam moves every variable by ~lr a step
                for group, lr in zip(opt.param_groups, rates):
                    group["lr"] = lr * (1.0 - step / steps)
            opt.zero_grad()
            energy, _ = energy_fn(t, r6, q, closing)
            energy.sum().backward()
            opt.step()
            with torch.no_grad():
                q.copy_(torch.maximum(torch.minimum(q, hi), lo))
    with torch.no_grad():
        energy, terms = energy_fn(t, r6, q, config.closing_iterations > 0)
        R = rotation_from_6d(r6)
        T = np.tile(np.eye(4), (config.batch_size, 1, 1))
        T[:, :3, :3], T[:, :3, 3] = R.numpy(), t.numpy()
        q_full = model.full(q).numpy()
    return AdaptationResult(
        hand=model.hand.name, joint_names=tuple(model.hand.joint_names), root_pose=T, q=q_full,
        energy=energy.numpy(), energy_initial=e0.numpy(), terms=terms.numpy(), terms_initial=terms0.numpy(),
        penetration_m=terms[:, TERMS.index("penetration")].numpy() / _CM,
        targets={f: v[0] for f, v in targets.items()}, wall_time_s=time.perf_counter() - wall0)
