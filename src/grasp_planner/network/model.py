"""The multimodal D(R,O) network: object cloud + image + canonical hand points → hand–object distance matrices."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from grasp_planner.network.config import NetworkConfig
from grasp_planner.network.decoder import GeometricDecoder, KernelDecoder, LatentEncoder
from grasp_planner.network.encoders import DGCNNEncoder, ImageEncoder
from grasp_planner.network.fusion import CrossAttentionBlock, LocalGlobalFusion
from grasp_planner.network.sampling import ImportanceSampler, farthest_point_indices


def canonical_yaw(points: torch.Tensor) -> torch.Tensor:
    """The rotation about +z that puts a centred cloud's main horizontal axis along +x.

    The axis is the principal direction of the points' x–y spread; its sign makes the third moment
    along it positive (the heavier-tailed end toward +x), so a cloud and any yawed copy of it map to
    the same canonical cloud (up to that sign when the cloud is symmetric). Distances are unchanged by
    the turn, so a network fed ``points @ R`` predicts the same D(R,O) matrix for every yaw.

    Args:
        points: (B, N, 3) points centred on their mean, metres.

    Returns:
        (B, 3, 3) rotations R (columns: the canonical axes in the input frame); ``points @ R`` is canonical.
    """
    with torch.no_grad():
        xy = points[..., :2].double()
        _, vectors = torch.linalg.eigh(xy.transpose(1, 2) @ xy)              # ascending eigenvalues
        axis = vectors[..., :, 1]                                              # (B, 2)
        skew = ((xy @ axis.unsqueeze(-1)).squeeze(-1) ** 3).sum(-1)
        axis = axis * torch.where(skew < 0, -1.0, 1.0).unsqueeze(-1)
        turn = torch.zeros(points.shape[0], 3, 3, dtype=torch.float64, device=points.device)
        turn[:, 0, 0], turn[:, 1, 0] = axis[:, 0], axis[:, 1]
        turn[:, 0, 1], turn[:, 1, 1] = -axis[:, 1], axis[:, 0]
        turn[:, 2, 2] = 1.0
    return turn.to(points.dtype)


@dataclass
class DROBatch:
    """Network input (one or more scenes).

    Attributes:
        object_points: (B, N, 3) object cloud, metres, any fixed frame (the grasp is predicted in it).
        hand_points: (P, 3) or (B, P, 3) hand points in the canonical pose, hand root frame, metres.
        image: (B, 3, H, W) RGB in [0, 1]; required when ``use_image``.
        pixel_uv: (B, N, 2) pixel (u, v) of each object point in ``image``; required when ``use_image``.
        hand_points_grasp: (B, P, 3) the same hand points at the ground-truth grasp, in the object
            cloud's frame (training only: the CVAE posterior and the losses see it).
    """

    object_points: torch.Tensor
    hand_points: torch.Tensor
    image: torch.Tensor | None = None
    pixel_uv: torch.Tensor | None = None
    hand_points_grasp: torch.Tensor | None = None


@dataclass
class DROOutput:
    """Network output.

    Attributes:
        distances: (B, K, P, N') predicted hand-point × sampled-object-point distances, metres.
        object_indices: (B, N') indices of the sampled object points in the input cloud.
        object_points: (B, N', 3) the sampled object points (input frame), metres.
        importance_logits: (B, N) per-point importance logits, None without importance sampling.
        mu, logvar: (B, latent) CVAE posterior, None when sampling from the prior.
    """

    distances: torch.Tensor
    object_indices: torch.Tensor
    object_points: torch.Tensor
    importance_logits: torch.Tensor | None
    mu: torch.Tensor | None
    logvar: torch.Tensor | None


class DRONetwork(nn.Module):
    """CorDex-style D(R,O) predictor (see ``seeds/001`` Sec. V) built from :class:`NetworkConfig`."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = c = config
        d = c.feature_dim
        self.object_encoder = DGCNNEncoder(c.edge_channels, d, c.knn_k)
        self.hand_encoder = DGCNNEncoder(c.edge_channels, d, c.knn_k)
        if c.use_image:
            self.image_encoder = ImageEncoder(c.image_channels, c.image_feature_dim)
            if c.image_encoder_checkpoint:
                self.image_encoder.load_pretrained(c.image_encoder_checkpoint)
            if c.freeze_image_encoder:
                self.image_encoder.requires_grad_(False)
            self.image_project = nn.Linear(c.image_feature_dim, d)
        if c.use_importance_sampling:
            self.sampler = ImportanceSampler(2 * d if c.use_image else d, d, c.attention_heads)
        self.fusion = LocalGlobalFusion(d, c.attention_heads, c.local_k, c.density_k, c.radius_scale,
                                        use_local=c.use_local_attention)
        self.hand_from_object = CrossAttentionBlock(d, c.attention_heads)
        self.object_from_hand = CrossAttentionBlock(d, c.attention_heads)
        self.latent_encoder = LatentEncoder(d, c.latent_dim)
        if c.decoder == "geometric":
            self.decoder = GeometricDecoder(d, c.latent_dim)
        else:
            self.condition = nn.Sequential(nn.Linear(d + c.latent_dim, d), nn.GELU(), nn.Linear(d, d))
            self.decoder = KernelDecoder(d, c.decoder_widths)
        self._hand_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def train(self, mode: bool = True) -> "DRONetwork":
        """Switch train/eval mode (drops the cached canonical hand features)."""
        self._hand_cache = None
        return super().train(mode)

    def encode_hand(self, hand_points: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) canonical hand points → (B, P, C) features; cached in eval mode (the hand is fixed)."""
        if self.training or torch.is_grad_enabled():
            return self.hand_encoder(hand_points)
        cache = self._hand_cache
        if cache is None or cache[0].shape != hand_points.shape or not torch.equal(cache[0], hand_points):
            cache = self._hand_cache = (hand_points.clone(), self.hand_encoder(hand_points))
        return cache[1]

    def _check(self, batch: DROBatch) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        obj = batch.object_points
        if obj.dim() != 3 or obj.shape[-1] != 3:
            raise ValueError(f"object_points must be (B, N, 3), got {tuple(obj.shape)}")
        if obj.shape[1] < c.sampled_object_points or obj.shape[1] <= c.knn_k:
            raise ValueError(f"object cloud has {obj.shape[1]} points; the network needs at least "
                             f"{max(c.sampled_object_points, c.knn_k + 1)} (sampled_object_points, knn_k + 1)")
        if not torch.isfinite(obj).all():
            raise ValueError("object_points contain NaN or inf; drop invalid depth pixels first")
        hand = batch.hand_points
        hand = hand.expand(obj.shape[0], -1, -1) if hand.dim() == 2 else hand
        if hand.shape[1:] != (c.hand_points, 3) or hand.shape[0] != obj.shape[0]:
            raise ValueError(f"hand_points must be ({c.hand_points}, 3) or (B, {c.hand_points}, 3) for hand "
                             f"'{c.hand}', got {tuple(batch.hand_points.shape)}")
        if c.use_image:
            if batch.image is None or batch.pixel_uv is None:
                raise ValueError("this network uses the image (use_image=True): give image and pixel_uv")
            if tuple(batch.image.shape[-2:]) != tuple(c.image_size) or batch.image.shape[:2] != (obj.shape[0], 3):
                raise ValueError(f"image must be (B, 3, {c.image_size[0]}, {c.image_size[1]}), "
                                 f"got {tuple(batch.image.shape)}")
            if batch.pixel_uv.shape != (*obj.shape[:2], 2):
                raise ValueError(f"pixel_uv must be {(*obj.shape[:2], 2)}, got {tuple(batch.pixel_uv.shape)}")
        return obj, hand

    def forward(self, batch: DROBatch, num_samples: int = 1, use_posterior: bool | None = None) -> DROOutput:
        """Predict distance matrices.

        Args:
            batch: inputs (see :class:`DROBatch`).
            num_samples: K latent samples per scene (drawn from the prior N(0, I)).
            use_posterior: encode ``batch.hand_points_grasp`` into the latent (training); default:
                whenever the batch has it. With the posterior, K is 1.

        Returns:
            :class:`DROOutput` with (B, K, P, N') distances.
        """
        c = self.config
        obj, hand = self._check(batch)
        if use_posterior is None:
            use_posterior = batch.hand_points_grasp is not None
        if use_posterior and batch.hand_points_grasp is None:
            raise ValueError("use_posterior=True needs batch.hand_points_grasp (the ground-truth grasp)")
        centre = obj.mean(dim=1, keepdim=True)
        obj_c = obj - centre                                   # the output frame (input axes, centred)
        turn = canonical_yaw(obj_c) if c.canonical_yaw else None
        obj_in = obj_c if turn is None else obj_c @ turn       # what the encoders and the decoder see
        geo = self.object_encoder(obj_in)
        sem = self.image_project(self.image_encoder(batch.image, batch.pixel_uv)) if c.use_image else None

        logits = None
        if c.use_importance_sampling:
            logits, idx = self.sampler(geo if sem is None else torch.cat([geo, sem], dim=-1),
                                       c.sampled_object_points)
        else:
            idx = farthest_point_indices(obj_in, c.sampled_object_points)
        take = lambda x: x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # noqa: E731
        pts_c, pts_in, geo = take(obj_c), take(obj_in), take(geo)
        sem = geo if sem is None else take(sem)
        f_obj = self.fusion(pts_in, geo, sem)

        f_hand = self.encode_hand(hand)
        f_hand, f_obj = self.hand_from_object(f_hand, f_obj), self.object_from_hand(f_obj, f_hand)

        b = obj.shape[0]
        mu = logvar = None
        if use_posterior:
            grasp = batch.hand_points_grasp - centre
            mu, logvar = self.latent_encoder(grasp if turn is None else grasp @ turn, f_hand, f_obj)
            z = (mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu).unsqueeze(1)
        else:
            z = torch.randn(b, num_samples, c.latent_dim, device=obj.device, dtype=obj.dtype)
        if c.decoder == "geometric":
            distances = self.decoder(f_hand, f_obj, z, hand, pts_in)   # a turn keeps distances
        else:
            k = z.shape[1]
            f_obj_k = self.condition(torch.cat([f_obj.unsqueeze(1).expand(-1, k, -1, -1),
                                                z.unsqueeze(2).expand(-1, -1, f_obj.shape[1], -1)], dim=-1))
            distances = self.decoder(f_hand, f_obj_k)
        return DROOutput(distances=distances, object_indices=idx, object_points=pts_c + centre,
                         importance_logits=logits, mu=mu, logvar=logvar)

    def parameter_count(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
