"""Training losses of the D(R,O) network: matrix L1, CVAE KL, importance KL, and pose/penetration hooks."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from grasp_planner.network.config import NetworkConfig
from grasp_planner.network.model import DROBatch, DROOutput
from grasp_planner.network.recovery import anchor_weights, link_kabsch, multilaterate
from grasp_planner.network.sampling import importance_target

#: A loss hook: (network output, batch) → scalar tensor.
LossHook = Callable[[DROOutput, DROBatch], torch.Tensor]


def ground_truth_distances(hand_points_grasp: torch.Tensor, object_points: torch.Tensor) -> torch.Tensor:
    """(B, P, 3) hand points at the grasp, (B, N, 3) object points → (B, P, N) distances, metres."""
    return torch.cdist(hand_points_grasp, object_points)


def distance_l1(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (metres) between (B, K, P, N) or (B, P, N) predictions and (B, P, N) targets."""
    if predicted.dim() == target.dim() + 1:
        target = target.unsqueeze(1)
    return (predicted - target).abs().mean()


def contact_l1(predicted: torch.Tensor, target: torch.Tensor, scale_m: float) -> torch.Tensor:
    """Contact-weighted mean absolute error (metres): entries weigh ``exp(-d / scale_m)`` by their true distance d.

    The recovery places the hand from the small distances (multilateration weights, contact
    pulls), so an error on a 5 mm entry matters far more than on a 15 cm one; plain L1 treats them alike.

    Args:
        predicted: (B, K, P, N) or (B, P, N) predicted distances, metres.
        target: (B, P, N) true distances, metres.
        scale_m: distance scale of the weights, metres.

    Returns:
        Scalar ``Σ w |pred - target| / Σ w`` over all entries (and the K samples).
    """
    if predicted.dim() == target.dim() + 1:
        target = target.unsqueeze(1)
    w = torch.exp(-target / scale_m).expand_as(predicted)
    return (w * (predicted - target).abs()).sum() / w.sum().clamp_min(1e-12)


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, I)), summed over the latent, averaged over the batch."""
    return (0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(-1)).mean()


def importance_kl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL(target ‖ softmax(logits)) over the N object points, averaged over the batch."""
    log_pred = torch.log_softmax(logits, dim=-1)
    return (target * (target.clamp_min(1e-12).log() - log_pred)).sum(-1).mean()


def penetration_depth(hand_points: torch.Tensor, object_points: torch.Tensor,
                      object_normals: torch.Tensor) -> torch.Tensor:
    """Per-point penetration (metres): depth of each hand point behind its nearest object point's surface.

    Args:
        hand_points: (B, P, 3).
        object_points: (B, N, 3).
        object_normals: (B, N, 3) outward unit normals.

    Returns:
        (B, P) ``max(0, -(h - o) · n)`` with o, n the nearest object point and its normal.
    """
    nearest = torch.cdist(hand_points, object_points).argmin(dim=-1)
    idx = nearest.unsqueeze(-1).expand(-1, -1, 3)
    o, n = object_points.gather(1, idx), object_normals.gather(1, idx)
    return torch.relu(-((hand_points - o) * n).sum(-1))


def predicted_hand_points(output: DROOutput) -> torch.Tensor:
    """(B·K, P, 3) hand points multilaterated from the predicted matrices (differentiable in the distances)."""
    b, k, p, n = output.distances.shape
    dist = output.distances.reshape(b * k, p, n)
    anchors = output.object_points.repeat_interleave(k, dim=0)
    return multilaterate(anchors, dist, weights=anchor_weights(dist.detach()))


def make_link_pose_loss(canonical_points: torch.Tensor, link_index: torch.Tensor) -> LossHook:
    """Per-link SE(3) loss (D(R,O)): link poses from predicted vs ground-truth hand points.

    Both point sets are turned into link poses by a per-link Kabsch against the canonical points;
    the loss is ``|R_pred - R_gt|_F² + |t_pred - t_gt|² / (0.1 m)²`` averaged over links.
    Needs only the hand's canonical points and link of each point (no FK).
    """
    num_links = int(link_index.max()) + 1

    def loss(output: DROOutput, batch: DROBatch) -> torch.Tensor:
        if batch.hand_points_grasp is None:
            raise ValueError("the link pose loss needs batch.hand_points_grasp")
        pred = predicted_hand_points(output)
        k = pred.shape[0] // batch.hand_points_grasp.shape[0]
        gt = batch.hand_points_grasp.repeat_interleave(k, dim=0)
        src = canonical_points.to(pred.dtype)
        r_p, t_p = link_kabsch(src, pred, link_index, num_links)
        r_g, t_g = link_kabsch(src, gt, link_index, num_links)
        return ((r_p - r_g).square().sum((-1, -2)) + (t_p - t_g).square().sum(-1) / 0.01).mean()

    return loss


@dataclass
class LossBreakdown:
    """The weighted total and each unweighted term (floats, for logging)."""

    total: torch.Tensor
    terms: dict[str, float]


def dro_loss(output: DROOutput, batch: DROBatch, config: NetworkConfig,
             pose_fn: LossHook | None = None, penetration_fn: LossHook | None = None) -> LossBreakdown:
    """Training objective: ``w_l1 L1 + w_contact contact_L1 + w_kl KL + w_imp KL_imp + w_pose pose + w_pen pen``.

    Args:
        output: network output (posterior latent: ``mu``/``logvar`` set).
        batch: the batch with ``hand_points_grasp``.
        config: loss weights and the importance temperature.
        pose_fn: optional pose term, e.g. :func:`make_link_pose_loss` (weight ``weight_pose``).
        penetration_fn: optional penetration term, e.g. mean :func:`penetration_depth` of
            :func:`predicted_hand_points` (weight ``weight_penetration``).

    Returns:
        :class:`LossBreakdown`.
    """
    if batch.hand_points_grasp is None:
        raise ValueError("training needs batch.hand_points_grasp (ground-truth hand points at the grasp)")
    target = ground_truth_distances(batch.hand_points_grasp, output.object_points)
    l1 = distance_l1(output.distances, target)
    total = config.weight_l1 * l1
    terms = {"l1_m": float(l1.detach())}
    if config.weight_contact_l1 > 0:
        contact = contact_l1(output.distances, target, config.contact_scale_m)
        total = total + config.weight_contact_l1 * contact
        terms["contact_l1_m"] = float(contact.detach())
    if output.mu is not None:
        kl = kl_standard_normal(output.mu, output.logvar)
        total = total + config.weight_kl * kl
        terms["kl"] = float(kl.detach())
    if output.importance_logits is not None:
        imp = importance_kl(output.importance_logits,
                            importance_target(batch.object_points, batch.hand_points_grasp,
                                              config.importance_temperature_m))
        total = total + config.weight_importance * imp
        terms["importance_kl"] = float(imp.detach())
    for name, weight, fn in (("pose", config.weight_pose, pose_fn),
                             ("penetration", config.weight_penetration, penetration_fn)):
        if fn is not None:
            value = fn(output, batch)
            total = total + weight * value
            terms[name] = float(value.detach())
    terms["total"] = float(total.detach())
    return LossBreakdown(total=total, terms=terms)
