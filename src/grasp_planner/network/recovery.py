"""Grasp recovery from a predicted D(R,O) matrix: multilateration → per-link Kabsch → joint solve →
contact/penetration refinement → ranking.

A predicted matrix is never exact: its errors move the multilaterated points by about the matrix
error, so the fitted hand may sink into the object or hover above it. The refinement
(:func:`refine_grasps`) fixes that against the object surface itself (:class:`ObjectSurface`):
a few batched Gauss–Newton iterations on wrist and joints push hand points out of the object and
pull the points the matrix calls contacts onto the surface, staying near the fitted grasp.

All functions are batched over a leading dimension B (scenes × CVAE samples) and work with any
hand through :class:`HandChain`, which wraps a batched point forward-kinematics callable.
Frames: the object points' frame (e.g. ``panda_link0``) is called "world" here; hand points from
the FK are in the hand root frame; the recovered wrist pose maps root → world.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

#: Up to this many candidates, :func:`solve_joints` gets each step's joint Jacobian in the same FK call
#: as its points (Shadow, 1 candidate: 59 → 50 ms); beyond, that would be 32 × 23 poses per call.
MERGED_JACOBIAN_MAX_CANDIDATES = 4

#: Distance scale s of the anchor weights 1 / (d² + s²) (metres): nearby anchors count more,
#: as the squared-distance equations amplify noise in far ones (noise in d² grows with d).
ANCHOR_WEIGHT_SCALE_M = 0.01


def anchor_weights(distances: torch.Tensor, scale_m: float = ANCHOR_WEIGHT_SCALE_M) -> torch.Tensor:
    """Inverse-variance weights ``1 / (d² + s²)`` of multilateration anchors, same shape as ``distances``."""
    return 1.0 / (distances.square() + scale_m ** 2)


def _solve3(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve many 3 × 3 systems ``a x = b`` by Cramer's rule ((..., 3, 3), (..., 3) → (..., 3)).

    Vectorised cofactors: much faster than a batched LU for tens of thousands of tiny systems.
    """
    c0 = torch.cross(a[..., 1, :], a[..., 2, :], dim=-1)
    c1 = torch.cross(a[..., 2, :], a[..., 0, :], dim=-1)
    c2 = torch.cross(a[..., 0, :], a[..., 1, :], dim=-1)
    det = (a[..., 0, :] * c0).sum(-1, keepdim=True)
    inv_t = torch.stack([c0, c1, c2], dim=-1)                                     # adj(a) = inv_t * det
    return (inv_t @ b.unsqueeze(-1)).squeeze(-1) / det


def multilaterate(anchors: torch.Tensor, distances: torch.Tensor, weights: torch.Tensor | None = None,
                  scale_m: float = ANCHOR_WEIGHT_SCALE_M) -> torch.Tensor:
    """Closed-form weighted least-squares position of each point from its distances to known anchors.

    ``|x - o_j|² = d_j²`` for all anchors j; subtracting the weighted mean of these equations
    removes ``|x|²`` and leaves the linear system ``2 (o_j - ō)·x = (|o_j|² - d_j²) - mean(...)``,
    solved in the weighted least-squares sense (normal equations: a 3 × 3 solve per point).

    Args:
        anchors: (B, N, 3) or (N, 3) anchor (object) points, metres; not all coplanar.
        distances: (B, P, N) distance of each of P points to each anchor, metres.
        weights: (B, P, N) non-negative anchor weights; default :func:`anchor_weights`.
        scale_m: distance scale of the default weights.

    Returns:
        (B, P, 3) positions, metres, in the anchors' frame.
    """
    if anchors.dim() == 2:
        anchors = anchors.expand(distances.shape[0], -1, -1)
    if anchors.shape[1] != distances.shape[-1]:
        raise ValueError(f"{anchors.shape[1]} anchors but distances to {distances.shape[-1]}")
    dtype = distances.dtype
    centre = anchors.mean(dim=1, keepdim=True)                        # centred anchors: better conditioning
    o = anchors - centre
    d2 = distances.square()
    w = 1.0 / (d2 + scale_m ** 2) if weights is None else weights
    w = w / w.sum(dim=-1, keepdim=True).clamp_min(1e-30)
    wr = w * (o.square().sum(-1).unsqueeze(1) - d2)                               # w (|o|² - d²)
    # Normalised weights make the element-wise work safe in float32; the 3 × 3 algebra runs in float64.
    mean_o = (w @ o).double()                                                     # (B, P, 3)
    second = (w @ (o.unsqueeze(-1) * o.unsqueeze(-2)).flatten(2)).unflatten(-1, (3, 3)).double()
    cov = second - mean_o.unsqueeze(-1) * mean_o.unsqueeze(-2)                    # (B, P, 3, 3)
    # Σ w (o - ō) (|o|² - d²); the mean terms drop out since Σ w (o - ō) = 0.
    rhs = (wr @ o).double() - mean_o * wr.sum(-1, keepdim=True).double()
    ridge = 1e-12 * cov.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(1e-12)
    eye = torch.eye(3, dtype=cov.dtype, device=cov.device)
    x = _solve3(cov + ridge[..., None, None] * eye, 0.5 * rhs) + centre.double()
    return x.to(dtype)


def _rotation_from_covariance(h: torch.Tensor) -> torch.Tensor:
    """Proper rotation R maximising tr(R H) for (..., 3, 3) cross-covariances ``H = Σ w p qᵀ`` (centred)."""
    u, _, vh = torch.linalg.svd(h)
    sign = torch.sign(torch.linalg.det(vh.transpose(-1, -2) @ u.transpose(-1, -2)))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    fix = torch.diag_embed(torch.stack([torch.ones_like(sign), torch.ones_like(sign), sign], dim=-1))
    return vh.transpose(-1, -2) @ fix @ u.transpose(-1, -2)


def _rigid_from_moments(total: torch.Tensor, sum_p: torch.Tensor, sum_q: torch.Tensor,
                        sum_pq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Kabsch from weighted moments: (..., 1) Σw, (..., 3) Σwp, Σwq, (..., 3, 3) Σw p qᵀ → (R, t)."""
    safe = total.clamp_min(1e-12)
    p_bar, q_bar = sum_p / safe, sum_q / safe
    h = sum_pq - safe.unsqueeze(-1) * p_bar.unsqueeze(-1) * q_bar.unsqueeze(-2)
    rot = _rotation_from_covariance(h)
    empty = (total.squeeze(-1) <= 1e-12)[..., None, None]
    rot = torch.where(empty, torch.eye(3, dtype=rot.dtype, device=rot.device).expand_as(rot), rot)
    trans = q_bar - (rot @ p_bar.unsqueeze(-1)).squeeze(-1)
    return rot, torch.where(empty.squeeze(-1), torch.zeros_like(trans), trans)


def kabsch(source: torch.Tensor, target: torch.Tensor,
           weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted rigid fit ``target ≈ R @ source + t`` (Kabsch / Umeyama without scale).

    Args:
        source: (..., P, 3) points.
        target: (..., P, 3) corresponding points.
        weights: (..., P) non-negative weights (default uniform). Sets whose weights sum to 0
            get the identity rotation and a zero translation.

    Returns:
        ``(R, t)``: (..., 3, 3) proper rotations and (..., 3) translations.
    """
    shape = torch.broadcast_shapes(source.shape[:-1], target.shape[:-1],
                                   () if weights is None else weights.shape)
    w = (torch.ones(shape, dtype=target.dtype, device=target.device) if weights is None
         else weights.expand(shape)).double()
    src, dst = source.double().expand(*shape, 3), target.double().expand(*shape, 3)
    wsrc = w.unsqueeze(-1) * src
    rot, trans = _rigid_from_moments(w.sum(-1, keepdim=True), wsrc.sum(-2), (w.unsqueeze(-1) * dst).sum(-2),
                                     wsrc.transpose(-1, -2) @ dst)
    return rot.to(target.dtype), trans.to(target.dtype)


def link_kabsch(source: torch.Tensor, target: torch.Tensor, link_index: torch.Tensor, num_links: int,
                weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rigid transform of every link from its points: canonical (``source``) → recovered (``target``).

    Weighted moments are summed per link (segment sums), then one Kabsch per link.

    Args:
        source: (P, 3) or (B, P, 3) hand points in the canonical pose.
        target: (B, P, 3) recovered hand points.
        link_index: (P,) int link of each point, in [0, num_links).
        num_links: number of links L.
        weights: (B, P) point weights (default uniform).

    Returns:
        ``(R, t)``: (B, L, 3, 3), (B, L, 3). Links without points get the identity.
    """
    b, p = target.shape[:2]
    src = source.double().expand(b, -1, -1)
    dst = target.double()
    w = (torch.ones(b, p, dtype=torch.float64, device=target.device) if weights is None
         else weights.double().expand(b, p)).unsqueeze(-1)
    idx = link_index.long().to(target.device)

    def per_link(x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(b, num_links, x.shape[-1]).index_add_(1, idx, x)

    outer = ((w * src).unsqueeze(-1) * dst.unsqueeze(-2)).flatten(2)
    rot, trans = _rigid_from_moments(per_link(w), per_link(w * src), per_link(w * dst),
                                     per_link(outer).unflatten(-1, (3, 3)))
    return rot.to(target.dtype), trans.to(target.dtype)


def apply_link_transforms(source: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor,
                          link_index: torch.Tensor) -> torch.Tensor:
    """Move each canonical point by its link's transform: (P|B,P, 3), (B, L, 3, 3), (B, L, 3) → (B, P, 3)."""
    source = source.expand(rot.shape[0], -1, -1)
    r, t = rot[:, link_index], trans[:, link_index]
    return (r @ source.unsqueeze(-1)).squeeze(-1) + t


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) vectors → (..., 3, 3) cross-product matrices."""
    z = torch.zeros_like(v[..., 0])
    return torch.stack([torch.stack([z, -v[..., 2], v[..., 1]], -1),
                        torch.stack([v[..., 2], z, -v[..., 0]], -1),
                        torch.stack([-v[..., 1], v[..., 0], z], -1)], -2)


def axis_angle_to_matrix(w: torch.Tensor) -> torch.Tensor:
    """(..., 3) rotation vectors (radians) → (..., 3, 3) rotation matrices (Rodrigues)."""
    angle = w.norm(dim=-1, keepdim=True).unsqueeze(-1)
    k = skew(w) / angle.clamp_min(1e-12)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand(k.shape)
    return eye + torch.sin(angle) * k + (1 - torch.cos(angle)) * (k @ k)


@dataclass(frozen=True, eq=False)
class HandChain:
    """A hand as the recovery sees it: batched point FK, limits and couplings of the active joints.

    ``q_full = q_active @ coupling.T + offset`` (mimic joints and fixed joints); ``fk(q_full)`` gives
    the P hand points in the hand root frame — the same points, in the same order, as the network's
    rows. ``canonical_q`` is the pose of the network's canonical hand points.

    Attributes:
        fk: ``(B, nq) radians → (B, P, 3) metres`` (torch, batched).
        lower, upper: (nA,) active joint limits, radians.
        link_index: (P,) int link of each point.
        joint_names: names of the active joints (results are mapped by name).
        coupling: (nq, nA) map active → full joints (default identity).
        offset: (nq,) constant added to the full joints (default 0).
        canonical_q: (nA,) active joints of the canonical pose (default mid-range).
        jacobian: optional ``(B, nq) → (B, P, 3, nq)`` analytic point Jacobian of ``fk``
            (default: one-sided finite differences, one batched ``fk`` call).
    """

    fk: Callable[[torch.Tensor], torch.Tensor]
    lower: torch.Tensor
    upper: torch.Tensor
    link_index: torch.Tensor
    joint_names: tuple[str, ...]
    coupling: torch.Tensor | None = None
    offset: torch.Tensor | None = None
    canonical_q: torch.Tensor | None = None
    jacobian: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        if self.lower.shape != (n,) or self.upper.shape != (n,):
            raise ValueError(f"lower/upper must be ({n},) for joints {self.joint_names}, got "
                             f"{tuple(self.lower.shape)}, {tuple(self.upper.shape)}")
        if bool((self.lower > self.upper).any()):
            raise ValueError(f"joint limits with lower > upper: {self.lower.tolist()} / {self.upper.tolist()}")
        if self.coupling is not None and self.coupling.shape[1] != n:
            raise ValueError(f"coupling must be (nq, {n}), got {tuple(self.coupling.shape)}")

    @property
    def num_links(self) -> int:
        return int(self.link_index.max()) + 1

    def full_q(self, q: torch.Tensor) -> torch.Tensor:
        """(B, nA) active → (B, nq) full joint vector."""
        full = q if self.coupling is None else q @ self.coupling.T.to(q.dtype)
        return full if self.offset is None else full + self.offset.to(q.dtype)

    def points(self, q: torch.Tensor) -> torch.Tensor:
        """(B, nA) active joints → (B, P, 3) hand points, root frame."""
        return self.fk(self.full_q(q))

    def default_q(self) -> torch.Tensor:
        """(nA,) canonical pose (mid-range when not given)."""
        return (0.5 * (self.lower + self.upper)) if self.canonical_q is None else self.canonical_q

    @cached_property
    def canonical_points(self) -> torch.Tensor:
        """(P, 3) hand points at the canonical pose, root frame (the network's hand input)."""
        return self.points(self.default_q().unsqueeze(0))[0]

    @cached_property
    def static_mask(self) -> torch.Tensor:
        """(P,) bool: points that no joint moves (rigid with the hand root), found by probing the FK."""
        probe = torch.stack([self.lower, self.upper, self.default_q()])
        pts = self.points(probe)
        return (pts - pts[2:3]).norm(dim=-1).amax(dim=0) < 1e-6

    def point_jacobian(self, q: torch.Tensor, points: torch.Tensor, step_rad: float) -> torch.Tensor:
        """(B, nA) joints, (B, P, 3) their points → (B, P, 3, nA) d points / d q_active."""
        if self.jacobian is not None:
            jac = self.jacobian(self.full_q(q))
            return jac if self.coupling is None else jac @ self.coupling.to(jac.dtype)
        step, probe = self._probes(q, step_rad)
        moved = self.points(probe.reshape(-1, q.shape[1])).reshape(*probe.shape[:2], *points.shape[1:])
        return self._difference_quotient(moved, points, step)

    def points_and_jacobian(self, q: torch.Tensor, step_rad: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, nA) joints → their (B, P, 3) points and (B, P, 3, nA) :meth:`point_jacobian`, from one
        batched FK call (the same values as :meth:`points` then :meth:`point_jacobian`)."""
        if self.jacobian is not None:
            points = self.points(q)
            return points, self.point_jacobian(q, points, step_rad)
        b, n = q.shape
        step, probe = self._probes(q, step_rad)
        both = self.points(torch.cat([q.unsqueeze(1), probe], dim=1).reshape(b * (n + 1), n))
        both = both.reshape(b, n + 1, *both.shape[1:])
        return both[:, 0], self._difference_quotient(both[:, 1:], both[:, 0], step)

    def _probes(self, q: torch.Tensor, step_rad: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Finite-difference steps (B, nA), pointing inside the limits, and the probe joints (B, nA, nA)."""
        step = torch.where(q + step_rad <= self.upper, step_rad, -step_rad)
        return step, q.unsqueeze(1) + torch.diag_embed(step)

    @staticmethod
    def _difference_quotient(moved: torch.Tensor, points: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """(B, nA, P, 3) probed points, (B, P, 3) base points, (B, nA) steps → (B, P, 3, nA)."""
        return ((moved - points.unsqueeze(1)) / step[..., None, None]).permute(0, 2, 3, 1)


@dataclass(frozen=True)
class RecoveryConfig:
    """Settings of the joint solve and the point weights.

    Attributes:
        anchor_scale_m: distance scale of the multilateration anchor weights.
        contact_scale_m: point weight ``1 / (d_min + s)``: points predicted near the object (contacts)
            weigh more in the link fit and the joint solve.
        max_iterations: damped Gauss–Newton iterations at most.
        max_joint_step_rad: largest joint change per iteration.
        max_translation_step_m: largest wrist translation per iteration.
        max_rotation_step_rad: largest wrist rotation per iteration.
        damping: initial Levenberg–Marquardt damping (relative to the normal matrix diagonal).
        tolerance: a candidate is done when its step is below this (radians / metres) ...
        relative_cost_tolerance: ... or its accepted step lowered the cost by less than this fraction.
        fd_step_rad: finite-difference step of the joint Jacobian.
    """

    anchor_scale_m: float = ANCHOR_WEIGHT_SCALE_M
    contact_scale_m: float = 0.02
    max_iterations: int = 64
    max_joint_step_rad: float = 0.5
    max_translation_step_m: float = 0.05
    max_rotation_step_rad: float = 0.5
    damping: float = 1e-3
    tolerance: float = 1e-5
    relative_cost_tolerance: float = 1e-4
    fd_step_rad: float = 1e-3

    def __post_init__(self) -> None:
        if not 1 <= self.max_iterations <= 1000:
            raise ValueError(f"max_iterations must be in [1, 1000], got {self.max_iterations}")
        for name in ("anchor_scale_m", "contact_scale_m", "max_joint_step_rad", "max_translation_step_m",
                     "max_rotation_step_rad", "damping", "tolerance", "relative_cost_tolerance", "fd_step_rad"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass
class JointSolution:
    """Result of :func:`solve_joints` for B candidates.

    Attributes:
        wrist_pose: (B, 4, 4) hand root frame → world.
        q: (B, nA) active joints, radians, within limits (order of ``HandChain.joint_names``).
        q_full: (B, nq) full joint vector.
        points: (B, P, 3) hand points at the solution, world frame.
        residual_m: (B,) weighted RMS distance of the points to their targets.
        iterations: iterations run.
    """

    wrist_pose: torch.Tensor
    q: torch.Tensor
    q_full: torch.Tensor
    points: torch.Tensor
    residual_m: torch.Tensor
    iterations: int


def _pose(rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    pose = torch.eye(4, dtype=rot.dtype, device=rot.device).repeat(*rot.shape[:-2], 1, 1)
    pose[..., :3, :3], pose[..., :3, 3] = rot, trans
    return pose


def _damped_step(normal: torch.Tensor, grad: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Levenberg–Marquardt step ``-(JᵀJ + λ diag(JᵀJ))⁻¹ Jᵀr`` for (B, n, n) normal matrices."""
    diag = normal.diagonal(dim1=-2, dim2=-1)
    return -torch.linalg.solve(normal + torch.diag_embed(lam[:, None] * diag + 1e-12), grad)


def _wrist_joint_jacobian(chain: HandChain, q: torch.Tensor, rot: torch.Tensor, pts: torch.Tensor | None,
                          world: torch.Tensor, centre: torch.Tensor, fd_step_rad: float,
                          jq: torch.Tensor | None = None) -> torch.Tensor:
    """(B, P, 3, 6 + nA) d world points / d (wrist translation, wrist rotation about ``centre``, joints).

    Args: joints (B, nA), wrist rotation (B, 3, 3), root-frame points (B, P, 3), their world
    positions (B, P, 3), rotation centre (B, 1, 3), finite-difference step of the joint columns,
    and optionally the root-frame joint Jacobian (B, P, 3, nA) to reuse instead of computing it.
    """
    jq = chain.point_jacobian(q, pts, fd_step_rad) if jq is None else jq          # (B, P, 3, nA)
    return torch.cat([torch.eye(3, dtype=torch.float64).expand(q.shape[0], world.shape[1], 3, 3),
                      -skew(world - centre).double(),
                      torch.einsum("bij,bpjk->bpik", rot, jq).double()], dim=-1)


def _limited_step(normal: torch.Tensor, grad: torch.Tensor, lam: torch.Tensor, q: torch.Tensor,
                  lower: torch.Tensor, upper: torch.Tensor, config: "RecoveryConfig"
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Damped step ``(dt, dw, dq)`` of (wrist translation, wrist rotation, joints), within the step limits.

    Active set: joints at a limit whose step points outward are held there and the rest re-solved
    (clamping such a step afterwards would distort the other variables' steps).
    """
    step = _damped_step(normal, grad, lam)
    dq_raw = step[:, 6:]
    blocked = ((q <= lower + 1e-9) & (dq_raw < 0)) | ((q >= upper - 1e-9) & (dq_raw > 0))
    if bool(blocked.any()):
        free = torch.cat([torch.ones(len(q), 6, dtype=torch.bool), ~blocked], dim=1).double()
        normal = normal * (free[:, :, None] * free[:, None, :]) + torch.diag_embed(1.0 - free)
        step = _damped_step(normal, grad * free, lam) * free
    step = step.to(q.dtype)
    dt, dw, dq = step[:, :3], step[:, 3:6], step[:, 6:]
    dt = dt * (config.max_translation_step_m / dt.norm(dim=-1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
    dw = dw * (config.max_rotation_step_rad / dw.norm(dim=-1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
    return dt, dw, dq.clamp(-config.max_joint_step_rad, config.max_joint_step_rad)


def _moved_wrist(rot: torch.Tensor, trans: torch.Tensor, centre: torch.Tensor, dt: torch.Tensor,
                 dw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Wrist (B, 3, 3), (B, 3) after rotating by ``dw`` about ``centre`` (B, 3) and translating by ``dt``."""
    r_step = axis_angle_to_matrix(dw)
    return r_step @ rot, (r_step @ (trans - centre).unsqueeze(-1)).squeeze(-1) + centre + dt


def initial_wrist(targets: torch.Tensor, chain: HandChain, q: torch.Tensor,
                  weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Wrist guess: Kabsch of the static hand points (palm/forearm) onto their targets.

    Falls back to all points at ``q`` when fewer than 3 static points exist.

    Returns:
        ``(R, t)``: (B, 3, 3), (B, 3) root → world.
    """
    source = chain.points(q)
    mask = chain.static_mask
    if int(mask.sum()) >= 3:
        w = mask.to(targets.dtype).expand(targets.shape[:2])
        w = w if weights is None else w * weights
    else:
        w = weights
    return kabsch(source, targets, w)


def solve_joints(targets: torch.Tensor, chain: HandChain, weights: torch.Tensor | None = None,
                 q_init: torch.Tensor | None = None,
                 wrist_init: tuple[torch.Tensor, torch.Tensor] | None = None,
                 config: RecoveryConfig = RecoveryConfig()) -> JointSolution:
    """Fit wrist pose and joints so the FK points match target points (damped Gauss–Newton / LM).

    Minimises ``Σ_i w_i |R fk(q)_i + t - target_i|²`` over the wrist (R, t) and the active joints,
    with steps limited to ``max_joint_step_rad`` per joint (and the wrist steps), joints clamped to
    their limits after every step, and a step accepted only if it lowers the cost (otherwise the
    damping grows).

    Args:
        targets: (B, P, 3) target hand points, world frame, metres.
        chain: the hand.
        weights: (B, P) non-negative point weights (default uniform).
        q_init: (B, nA) initial joints (default the chain's canonical pose).
        wrist_init: initial ``(R (B, 3, 3), t (B, 3))`` (default :func:`initial_wrist`).
        config: solver settings.

    Returns:
        :class:`JointSolution`.
    """
    b = targets.shape[0]
    dtype = targets.dtype
    lower, upper = chain.lower.to(dtype), chain.upper.to(dtype)
    q = (chain.default_q().to(dtype).expand(b, -1) if q_init is None else q_init.to(dtype)).clamp(lower, upper)
    w = torch.ones(targets.shape[:2], dtype=dtype) if weights is None else weights.to(dtype)
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
    rot, trans = initial_wrist(targets, chain, q, w) if wrist_init is None else wrist_init
    q, rot, trans = q.clone(), rot.to(dtype).clone(), trans.to(dtype).clone()
    n_a = q.shape[1]

    def cost_of(rot_, trans_, pts_, w_, targets_):
        world_ = pts_ @ rot_.transpose(-1, -2) + trans_.unsqueeze(1)
        return world_, (w_ * (world_ - targets_).square().sum(-1)).sum(-1)

    # With few candidates an FK call costs its Python overhead, not its arithmetic: the joint Jacobian
    # then comes with the step's points from one batched call (a rejected step's is not used). With
    # many, only the accepted steps' Jacobians are computed. Both give the same values.
    merged = b <= MERGED_JACOBIAN_MAX_CANDIDATES
    if merged:
        pts, jq = chain.points_and_jacobian(q, config.fd_step_rad)
    else:
        pts, jq = chain.points(q), None
    world, cost = cost_of(rot, trans, pts, w, targets)
    lam = torch.full((b,), config.damping, dtype=torch.float64)
    active = torch.ones(b, dtype=torch.bool)
    # Normal equations per candidate; a rejected step leaves the candidate where it was, so its
    # equations are reused (only the damping changes) instead of being rebuilt.
    normal_all = torch.zeros(b, 6 + n_a, 6 + n_a, dtype=torch.float64)
    grad_all = torch.zeros(b, 6 + n_a, dtype=torch.float64)
    centre_all = torch.zeros(b, 1, 3, dtype=dtype)
    stale = torch.ones(b, dtype=torch.bool)
    iterations = 0
    for iterations in range(1, config.max_iterations + 1):
        a = active.nonzero().squeeze(1)                  # only unfinished candidates cost FK calls
        u = a[stale[a]]                                  # of those, the ones that moved last iteration
        if len(u):
            wu, worldu = w[u], world[u]
            centre = (wu.unsqueeze(-1) * worldu).sum(1, keepdim=True)             # rotate about the hand
            jac = _wrist_joint_jacobian(chain, q[u], rot[u], pts[u], worldu, centre, config.fd_step_rad,
                                        jq[u] if merged else None)
            sw = wu.double().sqrt()[..., None, None]
            jw = (jac * sw).reshape(len(u), -1, 6 + n_a)
            rw = ((worldu - targets[u]).double() * sw.squeeze(-1)).reshape(len(u), -1)
            normal_all[u] = jw.transpose(1, 2) @ jw
            grad_all[u] = (jw.transpose(1, 2) @ rw.unsqueeze(-1)).squeeze(-1)
            centre_all[u] = centre
        qa, rota, transa, wa, ta, centre = q[a], rot[a], trans[a], w[a], targets[a], centre_all[a]
        dt, dw, dq = _limited_step(normal_all[a], grad_all[a], lam[a], qa, lower, upper, config)
        q_new = (qa + dq).clamp(lower, upper)
        rot_new, trans_new = _moved_wrist(rota, transa, centre.squeeze(1), dt, dw)
        if merged:
            pts_new, jq_new = chain.points_and_jacobian(q_new, config.fd_step_rad)
        else:
            pts_new = chain.points(q_new)
        world_new, cost_new = cost_of(rot_new, trans_new, pts_new, wa, ta)
        accept = cost_new <= cost[a]
        moved = torch.maximum((q_new - qa).abs().amax(-1), torch.maximum(dt.norm(dim=-1), dw.norm(dim=-1)))
        done = accept & ((moved < config.tolerance)
                         | (cost[a] - cost_new <= config.relative_cost_tolerance * cost[a]))
        acc = a[accept]
        q[acc], rot[acc], trans[acc] = q_new[accept], rot_new[accept], trans_new[accept]
        pts[acc], world[acc], cost[acc] = pts_new[accept], world_new[accept], cost_new[accept]
        if merged:
            jq[acc] = jq_new[accept]
        lam[a] = torch.where(accept, lam[a] * 0.3, lam[a] * 10.0).clamp(1e-9, 1e9)
        stale[a] = accept
        active[a] = ~(done | (lam[a] >= 1e9))
        if not bool(active.any()):
            break
    return JointSolution(wrist_pose=_pose(rot, trans), q=q, q_full=chain.full_q(q), points=world,
                         residual_m=cost.clamp_min(0).sqrt(), iterations=iterations)


@dataclass
class RecoveredGrasps:
    """Grasps recovered from B distance matrices.

    Attributes:
        solution: the joint solve (wrist pose, joints, fitted points, residual).
        multilaterated: (B, P, 3) points straight from multilateration, world frame.
        link_rotations, link_translations: (B, L, 3, 3), (B, L, 3) canonical → recovered per link.
        distances: (B, P, N) the input distance matrices.
        object_points: (B, N, 3) the anchors.
        unrefined: the joint solve before :func:`refine_grasps` (None when not refined).
        refinement: what the refinement changed (None when not refined).
    """

    solution: JointSolution
    multilaterated: torch.Tensor
    link_rotations: torch.Tensor
    link_translations: torch.Tensor
    distances: torch.Tensor
    object_points: torch.Tensor
    unrefined: JointSolution | None = None
    refinement: "RefinementReport | None" = None


def recover_grasps(distances: torch.Tensor, object_points: torch.Tensor, chain: HandChain,
                   config: RecoveryConfig = RecoveryConfig(), surface: "ObjectSurface | None" = None,
                   refine_config: "RefineConfig | None" = None,
                   collision: HandChain | None = None) -> RecoveredGrasps:
    """Distance matrices → grasps (wrist pose + joints), batched over candidates.

    Multilateration places every hand point; a weighted Kabsch per link turns the (noisy) points
    into rigid link poses; the FK is fitted to the rigid link points (:func:`solve_joints`); with a
    ``surface``, :func:`refine_grasps` then removes penetration and closes contact gaps.

    Args:
        distances: (B, P, N) hand-point × object-point distances, metres (e.g. K CVAE samples).
        object_points: (N, 3) or (B, N, 3) the object points of the columns, world frame, metres.
        chain: the hand whose points are the rows.
        config: recovery settings.
        surface: the object surface for the refinement (None = no refinement).
        refine_config: refinement settings (default :class:`RefineConfig`).
        collision: denser hand points for the refinement's penetration term (:func:`refine_grasps`).

    Returns:
        :class:`RecoveredGrasps`.
    """
    if distances.dim() != 3 or distances.shape[1] != chain.link_index.shape[0]:
        raise ValueError(f"distances must be (B, {chain.link_index.shape[0]}, N) for this hand, "
                         f"got {tuple(distances.shape)}")
    if not torch.isfinite(distances).all():
        raise ValueError("distance matrix contains NaN or inf")
    anchors = object_points.expand(distances.shape[0], -1, -1)
    with torch.no_grad():
        points = multilaterate(anchors, distances, scale_m=config.anchor_scale_m)
        weights = 1.0 / (distances.amin(dim=-1) + config.contact_scale_m)
        canonical = chain.canonical_points.to(points.dtype)
        rot, trans = link_kabsch(canonical, points, chain.link_index, chain.num_links, weights)
        rigid = apply_link_transforms(canonical, rot, trans, chain.link_index)
        solution = solve_joints(rigid, chain, weights, config=config)
    grasps = RecoveredGrasps(solution=solution, multilaterated=points, link_rotations=rot,
                             link_translations=trans, distances=distances, object_points=anchors)
    if surface is None:
        return grasps
    return refine_grasps(grasps, chain, surface, refine_config or RefineConfig(), config, collision)


class ObjectSurface:
    """Signed distance to an object surface given as oriented points (implicit moving least squares).

    The signed distance of x is the Gaussian-weighted mean of the point-to-plane distances
    ``(x - o_j)·n_j`` over the surface points (weights ``softmax_j(-|x - o_j|² / h²)``, so the
    nearest points dominate): smooth, exact on planes, negative inside; over all N points, or over
    each query's k nearest (:meth:`neighbours`), which is much cheaper. Optionally bounded by a solid
    that contains the object (e.g. the planner's convex proxy): ``max(imls, bound)``, so points
    outside that solid never count as inside — this keeps most of the unseen back of a single-view
    cloud from looking like the object's inside. Inside that solid a single view cannot tell: a
    point behind the visible surface reads as inside (e.g. a finger wrapped around a handle's back).

    Args:
        points: (N, 3) surface points, metres (the frame of the hand points), one surface for all candidates.
        normals: (N, 3) outward unit normals.
        bandwidth_m: Gaussian width h, about the point spacing, metres.
        bound: optional ``(B, P, 3) → (B, P)`` signed distance (metres, negative inside) of a solid
            containing the object; must be differentiable in torch.
        obstacle: optional signed distance of other solids the hand must not enter either (e.g. the
            table): the result is ``min(object, obstacle)``.
        one_sided: weigh only the surface points whose normal agrees (positive dot product) with the
            normal of the query's nearest one. A thin shell (a mug's wall: outer and inner side a few
            mm apart, normals opposite) otherwise blends both sides and reads points just outside it
            as inside; with it each query sees the side it is nearest to.

    Raises:
        ValueError: shapes differ, no points, or non-finite values.
    """

    def __init__(self, points: torch.Tensor, normals: torch.Tensor, bandwidth_m: float = 0.01,
                 bound: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 obstacle: Callable[[torch.Tensor], torch.Tensor] | None = None, one_sided: bool = False):
        if points.shape != normals.shape or points.dim() != 2 or points.shape[-1] != 3:
            raise ValueError(f"points and normals must both be (N, 3), got {tuple(points.shape)} "
                             f"and {tuple(normals.shape)}")
        if points.shape[0] < 1:
            raise ValueError("the surface has no points")
        if not (torch.isfinite(points).all() and torch.isfinite(normals).all()):
            raise ValueError("surface points or normals contain NaN or inf")
        if not bandwidth_m > 0:
            raise ValueError(f"bandwidth_m must be > 0, got {bandwidth_m}")
        self.points = points
        self.normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        self.offsets = (self.points * self.normals).sum(-1)                              # o_j · n_j
        self.bandwidth_m, self.bound, self.obstacle = bandwidth_m, bound, obstacle
        self.one_sided = one_sided

    @cached_property
    def _tree(self):
        from scipy.spatial import cKDTree

        return cKDTree(self.points.detach().double().numpy())

    def neighbours(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """(B, P, 3) query points → (B, P, k) indices of their k nearest surface points, nearest first.

        A k-d tree over the surface points (built on first use): the closure and the refinement ask
        for tens of thousands of queries per request; on 512 points the tree answers them in half the
        time of all pairwise distances. A non-finite query gets the last point's neighbours (its
        signed distance stays non-finite).
        """
        k = min(k, self.points.shape[0])
        query = x.detach().double().reshape(-1, 3).numpy()
        query = np.where(np.isfinite(query).all(axis=1, keepdims=True), query, self._tree.data[-1])
        idx = self._tree.query(query, k=k)[1].reshape(*x.shape[:-1], k)
        return torch.from_numpy(idx.astype(np.int64))

    def signed_distance(self, x: torch.Tensor, neighbours: torch.Tensor | None = None) -> torch.Tensor:
        """(B, P, 3) query points → (B, P) signed distance, metres, negative inside."""
        return self.signed_distance_and_gradient(x, neighbours, gradient=False)[0]

    def signed_distance_and_gradient(self, x: torch.Tensor, neighbours: torch.Tensor | None = None,
                                     gradient: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Signed distance (B, P) and its gradient (B, P, 3) w.r.t. the (B, P, 3) query points.

        The surface part runs in float32 (it dominates the refinement's time); gradients come from
        autograd over the (B, P, k) neighbour terms only, ``bound`` and ``obstacle`` included.

        Args:
            x: (B, P, 3) query points, metres.
            neighbours: optional (B, P, k) surface point indices (:meth:`neighbours`) to weigh
                instead of all N points: much cheaper, and exact enough while the points stay
                within about the neighbours' spread of where they were found.
            gradient: also return the gradient.
        """
        b = x.shape[0]
        pts = self.points.float().expand(b, -1, -1)
        nrm = self.normals.float().expand(b, -1, -1)
        off = self.offsets.float().expand(b, -1)
        with torch.set_grad_enabled(gradient):
            xf = x.detach().float().requires_grad_(gradient)
            if neighbours is None:
                plane = xf @ nrm.transpose(-1, -2) - off.unsqueeze(-2)                      # (B, P, N)
                d2 = torch.cdist(xf, pts).square()
                n = nrm.unsqueeze(1)                                                          # (B, 1, N, 3)
            else:
                flat = neighbours.flatten(1)
                o = pts.gather(1, flat.unsqueeze(-1).expand(-1, -1, 3)).view(*neighbours.shape, 3)
                n = nrm.gather(1, flat.unsqueeze(-1).expand(-1, -1, 3)).view(*neighbours.shape, 3)
                plane = (xf.unsqueeze(2) * n).sum(-1) - off.gather(1, flat).view(neighbours.shape)
                d2 = (xf.unsqueeze(2) - o).square().sum(-1)
            logits = -d2 / self.bandwidth_m ** 2
            if self.one_sided:                  # only the side of the nearest point (thin shells)
                with torch.no_grad():
                    n = n.expand(*d2.shape, 3)
                    near = n.gather(2, d2.argmin(-1)[..., None, None].expand(-1, -1, 1, 3))     # (B, P, 1, 3)
                    agree = (n * near).sum(-1) > 0
                logits = logits.masked_fill(~agree, float("-inf"))
            w = torch.softmax(logits, dim=-1)
            sd = (w * plane).sum(-1)
            grad = torch.autograd.grad(sd.sum(), xf)[0].to(x.dtype) if gradient else None
        sd = sd.detach().to(x.dtype)
        for fn, pick in ((self.bound, torch.gt), (self.obstacle, torch.lt)):
            if fn is None:
                continue
            with torch.enable_grad():
                xg = x.detach().requires_grad_(gradient)
                value = fn(xg)
                g = torch.autograd.grad(value.sum(), xg)[0] if gradient else None
            take = pick(value.detach(), sd)                         # bound: max(...), obstacle: min(...)
            sd = torch.where(take, value.detach(), sd)
            if gradient:
                grad = torch.where(take.unsqueeze(-1), g, grad)
        return sd, grad


def estimate_normals(points: torch.Tensor, k: int = 12,
                     outward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Unit normals of a cloud by local PCA (smallest-variance direction of the ``k`` nearest points).

    Args:
        points: (N, 3) cloud, metres.
        k: neighbours of each local plane fit.
        outward: optional ``(N, 3) → (N, 3)`` rough outward directions (e.g. the convex proxy's
            nearest facet normal); each normal is flipped to agree with it. Default: away from the
            cloud's centroid.

    Returns:
        (N, 3) unit normals.
    """
    k = min(k, points.shape[0])
    idx = torch.cdist(points, points).topk(k, dim=-1, largest=False).indices
    nb = points[idx]                                                             # (N, k, 3)
    centred = nb - nb.mean(dim=1, keepdim=True)
    _, vecs = torch.linalg.eigh(centred.transpose(1, 2) @ centred)
    normals = vecs[..., 0]
    ref = outward(points) if outward is not None else points - points.mean(dim=0)
    return torch.where(((normals * ref).sum(-1) < 0).unsqueeze(-1), -normals, normals)


@dataclass(frozen=True)
class RefineConfig:
    """Settings of :func:`refine_grasps` (damped Gauss–Newton on the wrist pose and the active joints).

    The cost per candidate, with x the hand points, sd their signed distance to the object,
    d̂ each point's smallest predicted distance and x⁰ the points of the joint solve:

    - penetration ``Σ relu(margin - sd)²`` (every point, summed: one deep point is enough to fail);
    - contact ``Σ w relu(sd - relu(d̂ - contact_threshold))²`` with ``w = exp(-d̂ / contact_scale)``
      normalised to sum 1: points the matrix puts within ``contact_threshold`` of the object are
      pulled onto the surface, the others towards their predicted distance (one-sided: never pushed away);
    - fit ``Σ w |x - x⁰|²`` (the same weights): stay near the grasp the matrix describes.

    Attributes:
        iterations: Gauss–Newton iterations at most (0 = no refinement).
        margin_m: hand points are pushed this far outside the surface, metres.
        contact_threshold_m: predicted distances below this count as contacts, metres.
        contact_scale_m: distance scale of the contact weights, metres.
        weight_penetration, weight_contact, weight_fit: weights of the three terms.
        relative_cost_tolerance: a candidate is done when an accepted step lowers its cost by less
            than this fraction.
        neighbours: surface points weighed per hand point (:meth:`ObjectSurface.neighbours`).
        neighbour_every: search the neighbours again every this many iterations.
        active_points: the cost runs on this many hand points per candidate: those with the smallest
            predicted distance or signed distance at the start (contacts, and points in or near the
            object); the penetration reported after the refinement covers all points.
        collision_active_points: with a collision chain (:func:`refine_grasps`), this many of its
            points per candidate (the smallest signed distances at the start) join the penetration term.
        jacobian_every: recompute the joints' point Jacobian (one batched finite-difference FK call,
            the costliest step) every this many iterations and reuse it in between; the cost check
            of every step keeps the iteration monotone either way.
    """

    iterations: int = 15
    margin_m: float = 0.001
    contact_threshold_m: float = 0.01
    contact_scale_m: float = 0.01
    weight_penetration: float = 10.0
    weight_contact: float = 1.0
    weight_fit: float = 0.1
    relative_cost_tolerance: float = 1e-3
    neighbours: int = 8
    neighbour_every: int = 3
    jacobian_every: int = 2
    active_points: int = 96
    collision_active_points: int = 192

    def __post_init__(self) -> None:
        if min(self.neighbours, self.neighbour_every, self.jacobian_every, self.active_points,
               self.collision_active_points) < 1:
            raise ValueError(f"neighbours ({self.neighbours}), neighbour_every ({self.neighbour_every}), "
                             f"jacobian_every ({self.jacobian_every}), active_points ({self.active_points}) "
                             f"and collision_active_points ({self.collision_active_points}) must be >= 1")
        if not 0 <= self.iterations <= 1000:
            raise ValueError(f"iterations must be in [0, 1000], got {self.iterations}")
        if not self.contact_scale_m > 0:
            raise ValueError(f"contact_scale_m must be > 0, got {self.contact_scale_m}")
        for name in ("margin_m", "contact_threshold_m", "weight_penetration", "weight_contact", "weight_fit",
                     "relative_cost_tolerance"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class RefinementReport:
    """What :func:`refine_grasps` changed, per candidate (B,), metres.

    Attributes:
        penetration_before_m, penetration_after_m: deepest hand point inside the surface (0 = none;
            the collision chain's points included when one is given).
        contact_gap_before_m, contact_gap_after_m: mean |sd| of the predicted contact points
            (smallest predicted distance ≤ ``contact_threshold_m``; the closest point when none is).
        iterations: Gauss–Newton iterations run.
    """

    penetration_before_m: torch.Tensor
    penetration_after_m: torch.Tensor
    contact_gap_before_m: torch.Tensor
    contact_gap_after_m: torch.Tensor
    iterations: int


def refine_grasps(grasps: RecoveredGrasps, chain: HandChain, surface: ObjectSurface,
                  config: RefineConfig = RefineConfig(),
                  recovery_config: RecoveryConfig = RecoveryConfig(),
                  collision: HandChain | None = None) -> RecoveredGrasps:
    """Refine recovered grasps against the object surface: no penetration, predicted contacts touching.

    Levenberg–Marquardt on the cost of :class:`RefineConfig` over a wrist correction (translation and
    rotation about the hand's weighted centre) and the active joints, batched over candidates, with
    the joint solve's step limits, joint limits (active set) and couplings (:meth:`HandChain.full_q`).
    The residual Jacobian is the surface gradient (:meth:`ObjectSurface.signed_distance_and_gradient`)
    times the point Jacobian; a step is taken only if it lowers the candidate's cost.

    Args:
        grasps: output of :func:`recover_grasps` (its ``distances`` give the predicted contacts).
        chain: the hand.
        surface: the object surface, same frame as the grasps.
        config: refinement settings.
        recovery_config: the joint solve's settings (step limits, damping, finite-difference step,
            point weights of the reported fit residual).
        collision: optional chain over the same active joints with denser hand surface points; they
            enter only the penetration term. The network's rows are too sparse to see an object edge
            between them (OYMotion, 256 rows: refined grasps read 1.2 mm deep at the median on the
            rows and 6.7 mm on 4096 points, the simulator 7.9 mm).

    Returns:
        A new :class:`RecoveredGrasps` whose ``solution`` is refined (residual re-measured against
        the same rigid link targets), with ``unrefined`` and ``refinement`` set.
    """
    sol = grasps.solution
    dtype = sol.points.dtype
    b, n_a = sol.q.shape
    p = sol.points.shape[1]
    lower, upper = chain.lower.to(dtype), chain.upper.to(dtype)
    d_hat = grasps.distances.to(dtype).amin(dim=-1)                                   # (B, P)
    w = torch.exp(-d_hat / config.contact_scale_m)
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-30)
    target_sd = torch.relu(d_hat - config.contact_threshold_m)
    step = recovery_config.fd_step_rad

    def hand_points(q_: torch.Tensor) -> torch.Tensor:          # (B, P + Pc, 3) root frame
        pts_ = chain.points(q_)
        return pts_ if collision is None else torch.cat([pts_, collision.points(q_).to(pts_.dtype)], dim=1)

    def hand_jacobian(q_: torch.Tensor, pts_: torch.Tensor) -> torch.Tensor:
        jac_ = chain.point_jacobian(q_, pts_[:, :p], step)
        if collision is None:
            return jac_
        return torch.cat([jac_, collision.point_jacobian(q_, pts_[:, p:], step).to(jac_.dtype)], dim=1)

    q = sol.q.to(dtype).clone().clamp(lower, upper)
    rot, trans = sol.wrist_pose[:, :3, :3].to(dtype).clone(), sol.wrist_pose[:, :3, 3].to(dtype).clone()
    pts = hand_points(q).detach()                                                    # (B, P + Pc, 3) root frame
    with torch.no_grad():
        x = pts @ rot.transpose(-1, -2) + trans.unsqueeze(1)                         # (B, P + Pc, 3) world
    extra = x.shape[1] - p
    x0 = torch.cat([sol.points.to(dtype).detach(), x[:, p:]], dim=1)
    if extra:            # collision points: no contact or fit weight, no contact target
        w = torch.cat([w, w.new_zeros(b, extra)], dim=1)
        target_sd = torch.cat([target_sd, target_sd.new_ones(b, extra)], dim=1)
    # The cost runs on the M points that matter: predicted contacts and points in or near the object.
    sd_all = surface.signed_distance(x, surface.neighbours(x, config.neighbours))
    sel = torch.minimum(d_hat, sd_all[:, :p].clamp_min(0)).topk(min(config.active_points, p), dim=-1,
                                                                largest=False).indices  # (B, M)
    if extra:
        sel = torch.cat([sel, p + sd_all[:, p:].topk(min(config.collision_active_points, extra), dim=-1,
                                                     largest=False).indices], dim=1)

    def rows(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:                    # (B, P, ...) → (B, M, ...)
        return t.gather(1, idx.view(*idx.shape, *([1] * (t.dim() - 2))).expand(*idx.shape, *t.shape[2:]))

    ws, ts, x0s = rows(w, sel), rows(target_sd, sel), rows(x0, sel)

    def costs(idx: torch.Tensor, xs: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
        return (config.weight_penetration * torch.relu(config.margin_m - sd).square().sum(-1)
                + config.weight_contact * (ws[idx] * torch.relu(sd - ts[idx]).square()).sum(-1)
                + config.weight_fit * (ws[idx] * (xs - x0s[idx]).square().sum(-1)).sum(-1))

    xs = rows(x, sel)
    near = surface.neighbours(xs, config.neighbours)
    sd = surface.signed_distance(xs, near)
    cost = costs(torch.arange(b), xs, sd)
    lam = torch.full((b,), recovery_config.damping, dtype=torch.float64)
    active = torch.ones(b, dtype=torch.bool)
    jq = pts.new_zeros(*xs.shape, n_a)
    iterations = 0
    for iterations in range(1, config.iterations + 1):
        a = active.nonzero().squeeze(1)
        qa, rota, transa, xa, sela = q[a], rot[a], trans[a], xs[a], sel[a]
        if iterations > 1 and (iterations - 1) % config.neighbour_every == 0:
            near[a] = surface.neighbours(xa, config.neighbours)
        sd_a, grad_sd = surface.signed_distance_and_gradient(xa, near[a])              # (A, M), (A, M, 3)
        centre = (ws[a].unsqueeze(-1) * xa).sum(1, keepdim=True) / ws[a].sum(-1)[:, None, None].clamp_min(1e-30)
        if (iterations - 1) % config.jacobian_every == 0:
            jq[a] = rows(hand_jacobian(qa, pts[a]), sela).to(jq.dtype)
        jac = _wrist_joint_jacobian(chain, qa, rota, None, xa, centre, recovery_config.fd_step_rad, jq[a])
        j_sd = torch.einsum("bpk,bpkn->bpn", grad_sd.double(), jac)                  # (A, M, n)
        # Residuals r and Jacobian rows J per term; the normal equations JᵀJ, Jᵀr are summed without
        # materialising J: penetration and contact rows are (weight × mask) · j_sd, fit rows weight · jac.
        slack, excess = (config.margin_m - sd_a).double(), (sd_a - ts[a]).double()
        pen2 = (slack > 0).double() * config.weight_penetration                       # squared row weights
        con2 = (excess > 0).double() * (config.weight_contact * ws[a]).double()
        fit2 = (config.weight_fit * ws[a]).double()
        j_flat = jac.flatten(1, 2)                                                    # (A, 3M, n)
        fit_rows = (j_flat * fit2.repeat_interleave(3, dim=1).unsqueeze(-1)).transpose(1, 2)
        normal = (j_sd * (pen2 + con2).unsqueeze(-1)).transpose(1, 2) @ j_sd + fit_rows @ j_flat
        r_surf = -pen2 * torch.relu(slack) + con2 * torch.relu(excess)
        grad = (j_sd.transpose(1, 2) @ r_surf.unsqueeze(-1)
                + fit_rows @ (xa - x0s[a]).double().flatten(1).unsqueeze(-1)).squeeze(-1)
        dt, dw, dq = _limited_step(normal, grad, lam[a], qa, lower, upper, recovery_config)
        q_new = (qa + dq).clamp(lower, upper)
        rot_new, trans_new = _moved_wrist(rota, transa, centre.squeeze(1), dt, dw)
        with torch.no_grad():
            pts_new = hand_points(q_new)
            x_new = pts_new @ rot_new.transpose(-1, -2) + trans_new.unsqueeze(1)
            xs_new = rows(x_new, sela)
            sd_new = surface.signed_distance(xs_new, near[a])
        cost_new = costs(a, xs_new, sd_new)
        accept = cost_new < cost[a]
        done = accept & (cost[a] - cost_new <= config.relative_cost_tolerance * cost[a])
        acc = a[accept]
        q[acc], rot[acc], trans[acc], pts[acc] = q_new[accept], rot_new[accept], trans_new[accept], pts_new[accept]
        x[acc], xs[acc], sd[acc], cost[acc] = x_new[accept], xs_new[accept], sd_new[accept], cost_new[accept]
        lam[a] = torch.where(accept, lam[a] * 0.3, lam[a] * 10.0).clamp(1e-9, 1e9)
        active[a] = ~(done | (lam[a] >= 1e9))
        if not bool(active.any()):
            break
    targets = apply_link_transforms(chain.canonical_points.to(dtype), grasps.link_rotations.to(dtype),
                                    grasps.link_translations.to(dtype), chain.link_index)
    pw = 1.0 / (d_hat + recovery_config.contact_scale_m)
    pw = pw / pw.sum(-1, keepdim=True)
    residual = (pw * (x[:, :p] - targets).square().sum(-1)).sum(-1).sqrt()
    refined = JointSolution(wrist_pose=_pose(rot, trans), q=q, q_full=chain.full_q(q), points=x[:, :p],
                            residual_m=residual, iterations=sol.iterations)
    sd = surface.signed_distance(x, surface.neighbours(x, config.neighbours))   # all points, at the end
    contact = (d_hat <= config.contact_threshold_m) | (d_hat == d_hat.amin(-1, keepdim=True))

    def gap(values: torch.Tensor) -> torch.Tensor:
        return (values[:, :p].abs() * contact).sum(-1) / contact.sum(-1)

    report = RefinementReport(penetration_before_m=torch.relu(-sd_all).amax(-1),
                              penetration_after_m=torch.relu(-sd).amax(-1),
                              contact_gap_before_m=gap(sd_all), contact_gap_after_m=gap(sd),
                              iterations=iterations)
    return RecoveredGrasps(solution=refined, multilaterated=grasps.multilaterated,
                           link_rotations=grasps.link_rotations, link_translations=grasps.link_translations,
                           distances=grasps.distances, object_points=grasps.object_points, unrefined=sol,
                           refinement=report)


#: A ranking term: (weight, cost function over the candidates → (B,) costs, lower is better).
RankingTerm = tuple[float, Callable[[RecoveredGrasps], torch.Tensor]]


@dataclass
class Ranking:
    """Candidates ordered best first.

    Attributes:
        order: (B,) candidate indices, best first.
        cost: (B,) total cost per candidate (inf = rejected, e.g. unreachable).
        terms: name → (B,) unweighted cost of each term ("fit_residual_m" is always present).
    """

    order: torch.Tensor
    cost: torch.Tensor
    terms: dict[str, torch.Tensor]


def rank_candidates(grasps: RecoveredGrasps, terms: Mapping[str, RankingTerm] | None = None,
                    residual_weight: float = 1.0) -> Ranking:
    """Order candidates by a weighted sum of costs: fit residual plus caller-given terms.

    Typical terms (each a callable on :class:`RecoveredGrasps` returning (B,) costs): penetration
    depth (metres), negative functional contact score, and reachability (0, or inf when the
    Franka IK finds no solution — such candidates sort last).
    """
    values = {"fit_residual_m": grasps.solution.residual_m}
    cost = residual_weight * values["fit_residual_m"]
    for name, (weight, fn) in (terms or {}).items():
        value = fn(grasps).to(cost.dtype)
        if value.shape != cost.shape:
            raise ValueError(f"ranking term '{name}' returned shape {tuple(value.shape)}, expected {tuple(cost.shape)}")
        values[name] = value
        cost = cost + weight * value
    cost = torch.where(torch.isnan(cost), torch.full_like(cost, float("inf")), cost)
    return Ranking(order=torch.argsort(cost, stable=True), cost=cost, terms=values)
