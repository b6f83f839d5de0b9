"""Object point sampling N → N': importance-aware (learned) or farthest-point (ablation)."""
from __future__ import annotations

import torch
from torch import nn

from grasp_planner.network.fusion import CrossAttentionBlock

#: Context tokens the importance transformer attends to (a strided subset of the points).
IMPORTANCE_CONTEXT_TOKENS = 128

def importance_target(object_points: torch.Tensor, hand_points: torch.Tensor,
                      temperature_m: float) -> torch.Tensor:
    """Ground-truth importance distribution over object points from hand–object distances.

    Args:
        object_points: (B, N, 3) metres.
        hand_points: (B, P, 3) hand points at the ground-truth grasp, same frame, metres.
        temperature_m: length scale T of ``softmax(-d_min / T)``.

    Returns:
        (B, N) probabilities (rows sum to 1), highest on object points the hand touches.
    """
    d_min = torch.cdist(object_points, hand_points).amin(dim=-1)
    return torch.softmax(-d_min / temperature_m, dim=-1)


def farthest_point_indices(points: torch.Tensor, m: int) -> torch.Tensor:
    """(B, N, 3) points → (B, m) indices of a farthest-point subset (deterministic, starts at index 0)."""
    b, n, _ = points.shape
    chosen = torch.zeros(b, m, dtype=torch.long, device=points.device)
    nearest = torch.full((b, n), float("inf"), device=points.device)
    last = torch.zeros(b, dtype=torch.long, device=points.device)
    rows = torch.arange(b, device=points.device)
    for i in range(1, m):
        d = (points - points[rows, last].unsqueeze(1)).square().sum(-1)
        nearest = torch.minimum(nearest, d)
        last = nearest.argmax(dim=-1)
        chosen[:, i] = last
    return chosen


class ImportanceSampler(nn.Module):
    """A light transformer that scores each object point's importance, then keeps N' points.

    Global context at linear cost: every point attends (one block, multi-head) to a strided subset
    of ``IMPORTANCE_CONTEXT_TOKENS`` points of the same cloud instead of all N.

    In training the N' points are drawn without replacement from the predicted distribution
    (Gumbel top-k), so the rest of the network sees varied subsets biased toward contact regions;
    at inference the N' most important points are kept (top-k).
    """

    def __init__(self, in_dim: int, feature_dim: int, heads: int):
        super().__init__()
        self.embed = nn.Linear(in_dim, feature_dim)
        self.encoder = CrossAttentionBlock(feature_dim, heads)
        self.score = nn.Linear(feature_dim, 1)

    def forward(self, features: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Score the points and choose ``m`` of them.

        Args:
            features: (B, N, in_dim) per-point features (geometric ⊕ image).
            m: points to keep.

        Returns:
            ``(logits, indices)``: (B, N) importance logits (softmax = predicted distribution) and
            (B, m) indices of the kept points.
        """
        x = self.embed(features)
        stride = max(1, x.shape[1] // IMPORTANCE_CONTEXT_TOKENS)
        logits = self.score(self.encoder(x, x[:, ::stride])).squeeze(-1)
        if self.training:
            gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp(1e-9, 1 - 1e-9)))
            indices = (logits.detach() + gumbel).topk(m, dim=-1).indices
        else:
            indices = logits.topk(m, dim=-1).indices
        return logits, indices
