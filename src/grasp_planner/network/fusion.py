"""Attention blocks: local cross-attention with an adaptive radius, local–global fusion, cross-attention."""
from __future__ import annotations

import torch
from torch import nn

from grasp_planner.network.encoders import gather_neighbours


def adaptive_neighbourhood(points: torch.Tensor, k: int, density_k: int,
                           radius_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest neighbours of every point, masked to an adaptive radius.

    The radius of point i is ``radius_scale`` × its mean distance to its ``density_k`` nearest
    neighbours: large where points are sparse (more context), small where they are dense (precision).

    Args:
        points: (B, N, 3) metres.
        k: neighbours considered.
        density_k: neighbours that set the radius.
        radius_scale: radius multiplier.

    Returns:
        ``(index, keep)``: (B, N, k) neighbour indices (nearest first, the point itself first) and
        (B, N, k) bool mask of neighbours within the radius (the point itself is always kept).
    """
    dist = torch.cdist(points, points)
    d, index = dist.topk(k, dim=-1, largest=False)
    radius = radius_scale * d[..., 1:density_k + 1].mean(dim=-1, keepdim=True)
    keep = d <= radius
    keep[..., 0] = True
    return index, keep


class LocalCrossAttention(nn.Module):
    """Multi-head attention of each point's query over its neighbours' keys/values (masked)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.kv, self.out = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor, index: torch.Tensor,
                keep: torch.Tensor) -> torch.Tensor:
        """(B, N, C) queries attend their neighbours' (B, N, C) context → (B, N, C) residual update."""
        b, n, c = query.shape
        h = self.heads
        q = self.q(self.norm_q(query)).reshape(b, n, 1, h, c // h)
        k, v = gather_neighbours(self.kv(self.norm_kv(context)), index).chunk(2, dim=-1)
        k, v = k.reshape(b, n, -1, h, c // h), v.reshape(b, n, -1, h, c // h)
        logits = (q * k).sum(-1) / (c // h) ** 0.5                       # (B, N, k, h)
        logits = logits.masked_fill(~keep.unsqueeze(-1), float("-inf"))
        attn = torch.softmax(logits, dim=2).unsqueeze(-1)
        return query + self.out((attn * v).sum(dim=2).reshape(b, n, c))


class LocalGlobalFusion(nn.Module):
    """Fuse geometric and semantic point features: local cross-attention, then global self-attention.

    Local: geometry attends nearby semantics and semantics attend nearby geometry (adaptive radius).
    Global: a self-attention layer over the locally fused features. Output: both, projected.
    With ``use_local=False`` (ablation) the local stage is a plain per-point projection.
    """

    def __init__(self, dim: int, heads: int, local_k: int, density_k: int, radius_scale: float,
                 use_local: bool = True):
        super().__init__()
        self.use_local = use_local
        self.local_k, self.density_k, self.radius_scale = local_k, density_k, radius_scale
        if use_local:
            self.geo_from_sem = LocalCrossAttention(dim, heads)
            self.sem_from_geo = LocalCrossAttention(dim, heads)
        self.merge = nn.Sequential(nn.Linear(2 * dim, dim), nn.LayerNorm(dim), nn.GELU())
        self.global_attn = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0,
                                                      batch_first=True, norm_first=True)
        self.out = nn.Linear(2 * dim, dim)

    def forward(self, points: torch.Tensor, geometric: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) points, (B, N, C) geometric and semantic features → (B, N, C) fused features."""
        if self.use_local:
            index, keep = adaptive_neighbourhood(points, self.local_k, self.density_k, self.radius_scale)
            geo = self.geo_from_sem(geometric, semantic, index, keep)
            sem = self.sem_from_geo(semantic, geometric, index, keep)
        else:
            geo, sem = geometric, semantic
        local = self.merge(torch.cat([geo, sem], dim=-1))
        return self.out(torch.cat([local, self.global_attn(local)], dim=-1))


class CrossAttentionBlock(nn.Module):
    """One pre-norm transformer block where ``x`` attends ``context`` (multi-head), then a feed-forward."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_x, self.norm_c, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """(B, N, C) queries, (B, M, C) context → (B, N, C)."""
        c = self.norm_c(context)
        x = x + self.attn(self.norm_x(x), c, c, need_weights=False)[0]
        return x + self.ff(self.norm_ff(x))
