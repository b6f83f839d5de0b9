"""CVAE latent encoder and the kernel-MLP distance-matrix decoder."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

#: Distance the untrained decoder predicts everywhere (metres): its last bias starts at softplus⁻¹ of
#: this, near the typical hand–object distance, instead of softplus(0) = 0.69 m — which cost the
#: first epochs of every run just to learn the scale.
INITIAL_DISTANCE_M = 0.1
#: Largest hidden activation the decoder materialises at once (floats): small enough to stay in
#: the CPU cache (faster than one big tensor) and to bound peak memory.
DECODER_CHUNK_FLOATS = 1 << 18


class LatentEncoder(nn.Module):
    """CVAE posterior q(z | grasp, object): a PointNet over the ground-truth hand points.

    Each hand point contributes its grasp-pose position (object-centred) and its canonical-pose
    feature; a max-pool over points plus the pooled object feature gives the mean and log-variance.
    """

    def __init__(self, feature_dim: int, latent_dim: int):
        super().__init__()
        self.point_mlp = nn.Sequential(nn.Linear(3 + feature_dim, feature_dim), nn.LayerNorm(feature_dim),
                                       nn.GELU(), nn.Linear(feature_dim, 2 * feature_dim))
        self.head = nn.Sequential(nn.Linear(3 * feature_dim, 2 * feature_dim), nn.GELU(),
                                  nn.Linear(2 * feature_dim, 2 * latent_dim))

    def forward(self, hand_points_grasp: torch.Tensor, hand_features: torch.Tensor,
                object_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters.

        Args:
            hand_points_grasp: (B, P, 3) ground-truth hand points in the object-centred frame, metres.
            hand_features: (B, P, C) canonical hand point features.
            object_features: (B, N, C) object point features.

        Returns:
            ``(mu, logvar)``, each (B, latent_dim).
        """
        per_point = self.point_mlp(torch.cat([hand_points_grasp, hand_features], dim=-1))
        pooled = torch.cat([per_point.amax(dim=1), object_features.mean(dim=1)], dim=-1)
        mu, logvar = self.head(pooled).chunk(2, dim=-1)
        return mu, logvar.clamp(-10.0, 10.0)


class KernelDecoder(nn.Module):
    """Distance of every (hand point, object point) pair: an MLP on their concatenated features + softplus.

    The first layer of an MLP on ``[f_r, f_o]`` equals ``W_r f_r + W_o f_o + b``, so it is computed
    per point and broadcast over pairs; the remaining layers run per pair, in cache-sized row blocks.
    """

    def __init__(self, feature_dim: int, widths: tuple[int, ...]):
        super().__init__()
        self.hand_in = nn.Linear(feature_dim, widths[0])
        self.object_in = nn.Linear(feature_dim, widths[0], bias=False)
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.LeakyReLU(0.2), nn.Linear(a, b)]
        self.pair_mlp = nn.Sequential(*layers)
        self.single_layer = len(widths) == 1
        last = self.hand_in if self.single_layer else layers[-1]
        with torch.no_grad():
            last.bias.fill_(math.log(math.expm1(INITIAL_DISTANCE_M)))                # softplus⁻¹

    def forward(self, hand_features: torch.Tensor, object_features: torch.Tensor) -> torch.Tensor:
        """Distance matrices.

        Args:
            hand_features: (B, P, C) hand point features.
            object_features: (B, K, N, C) object point features for K latent samples.

        Returns:
            (B, K, P, N) non-negative distances, metres.
        """
        a = self.hand_in(hand_features)                          # (B, P, W)
        o = self.object_in(object_features)                      # (B, K, N, W)
        b, k, n, w = o.shape
        p = a.shape[1]
        rows = max(1, DECODER_CHUNK_FLOATS // max(n * w, 1))
        out = torch.empty(b, k, p, n, dtype=o.dtype, device=o.device)
        for bi in range(b):
            for ki in range(k):
                for r in range(0, p, rows):
                    pair = a[bi, r:r + rows, None, :] + o[bi, ki, None, :, :]          # (rows, N, W)
                    out[bi, ki, r:r + rows] = (pair if self.single_layer else self.pair_mlp(pair)).squeeze(-1)
        return F.softplus(out)
