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


def rotation_from_6d(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) two raw 3-vectors → (..., 3, 3) rotation (Gram–Schmidt; the columns are the orthonormalised
    first vector, the second made orthogonal to it, and their cross product). Continuous, unlike quaternions."""
    a, b = x[..., :3], x[..., 3:]
    e1 = F.normalize(a, dim=-1)
    e2 = F.normalize(b - (e1 * b).sum(-1, keepdim=True) * e1, dim=-1)
    return torch.stack([e1, e2, torch.cross(e1, e2, dim=-1)], dim=-1)


class GeometricDecoder(nn.Module):
    """Distances as Euclidean norms between predicted hand-point positions and the object points.

    A head on the pooled object features and the latent predicts the hand's rigid placement (6-D
    rotation + translation, object-centred frame); a per-point head adds each hand point's offset
    from it (the finger articulation). ``d(r, o) = sqrt(|h_r - x_o|² + ε²)``: the output is still a
    D(R,O) matrix and recovery runs on it unchanged, but a matrix is always a realisable set of
    distances, so the network learns where the hand goes instead of a free-form kernel.
    """

    #: Smoothing of the norm at 0 (metres): keeps its gradient finite at contact.
    EPSILON_M = 1e-3
    #: Scale of the per-point offsets (metres): the untrained head moves points by millimetres.
    OFFSET_SCALE_M = 0.05

    def __init__(self, feature_dim: int, latent_dim: int):
        super().__init__()
        d = feature_dim
        self.pose_head = nn.Sequential(nn.Linear(2 * d + latent_dim, 2 * d), nn.GELU(), nn.Linear(2 * d, d),
                                       nn.GELU(), nn.Linear(d, 9))
        self.offset_head = nn.Sequential(nn.Linear(3 * d + latent_dim, d), nn.GELU(), nn.Linear(d, 3))
        with torch.no_grad():                     # start at the identity rotation, hand at the object centre
            self.pose_head[-1].weight.mul_(0.1)
            self.pose_head[-1].bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0, 0, 0, 0]))
            self.offset_head[-1].weight.mul_(0.1)
            self.offset_head[-1].bias.zero_()

    def hand_positions(self, hand_features: torch.Tensor, object_features: torch.Tensor, latent: torch.Tensor,
                       canonical_points: torch.Tensor) -> torch.Tensor:
        """Hand points at the predicted grasp.

        Args:
            hand_features: (B, P, C) hand point features.
            object_features: (B, N, C) object point features.
            latent: (B, K, L) latent samples.
            canonical_points: (B, P, 3) hand points in the canonical pose, hand root frame, metres.

        Returns:
            (B, K, P, 3) positions in the object-centred frame, metres.
        """
        k, p = latent.shape[1], hand_features.shape[1]
        pooled = torch.cat([object_features.mean(dim=1), object_features.amax(dim=1)], dim=-1)     # (B, 2C)
        context = torch.cat([pooled.unsqueeze(1).expand(-1, k, -1), latent], dim=-1)              # (B, K, 2C+L)
        pose = self.pose_head(context)
        rot, trans = rotation_from_6d(pose[..., :6]), pose[..., 6:]                                 # (B,K,3,3), (B,K,3)
        rigid = torch.einsum("bkij,bpj->bkpi", rot, canonical_points) + trans.unsqueeze(2)
        per_point = torch.cat([hand_features.unsqueeze(1).expand(-1, k, -1, -1),
                               context.unsqueeze(2).expand(-1, -1, p, -1)], dim=-1)
        offsets = torch.einsum("bkij,bkpj->bkpi", rot, self.offset_head(per_point)) * self.OFFSET_SCALE_M
        return rigid + offsets

    def forward(self, hand_features: torch.Tensor, object_features: torch.Tensor, latent: torch.Tensor,
                canonical_points: torch.Tensor, object_points: torch.Tensor) -> torch.Tensor:
        """(B, K, P, N) distances, metres, from the predicted hand points to ``object_points`` (B, N, 3),
        object-centred frame (other arguments as :meth:`hand_positions`)."""
        hand = self.hand_positions(hand_features, object_features, latent, canonical_points)
        diff = hand.unsqueeze(3) - object_points[:, None, None, :, :]
        return (diff.square().sum(-1) + self.EPSILON_M ** 2).sqrt()
