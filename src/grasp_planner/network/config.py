"""All sizes, switches and loss weights of the D(R,O) grasp network in one frozen config."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

#: Distance-matrix decoders (:attr:`NetworkConfig.decoder`).
DECODERS = ("kernel", "geometric")


def from_known_fields(cls, data: dict[str, Any], what: str):
    """``cls(**data)`` for a dataclass, refusing unknown keys with their names (``what``: for the message)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; known keys: {sorted(known)}")
    return cls(**data)


@dataclass(frozen=True)
class NetworkConfig:
    """Sizes of the multimodal D(R,O) network (CPU-sized defaults) and its ablation switches.

    The anchors (D(R,O), CorDex) use 512 robot + 512 object points, N = 4096 → N' = 1024, k = 32,
    4 heads, latent 64 and a [300, 100, 1] kernel MLP; the defaults here keep k, heads and latent
    and shrink widths and point counts so one grasp runs in ~100 ms on two CPU cores.

    Attributes:
        hand: hand description name the network is trained for (checkpoints are per hand).
        hand_points: robot points per hand (rows of the distance matrix).
        object_points: object points N fed to the encoders.
        sampled_object_points: object points N' kept by the sampler (columns of the matrix).
        knn_k: neighbours of the DGCNN edge convolutions.
        edge_channels: output width of each edge-convolution layer.
        feature_dim: per-point feature width after each encoder and in the attention blocks.
        attention_heads: heads of every attention block (``feature_dim`` must divide by it).
        latent_dim: CVAE latent size.
        decoder: ``"kernel"``: an MLP on each (hand point, object point) feature pair gives the distance
            (CorDex's decoder; ``decoder_widths``); ``"geometric"``: the distance is the Euclidean norm
            between a predicted hand-point position (rigid placement + per-point offset) and the object
            point (:class:`~grasp_planner.network.decoder.GeometricDecoder`), so every matrix is realisable.
        decoder_widths: kernel MLP widths on concatenated robot/object point features; ends in 1.
        canonical_yaw: turn the centred object cloud about the vertical so its main horizontal axis is
            +x before the encoders (:func:`~grasp_planner.network.model.canonical_yaw`); distances do
            not change, so the network need not learn every yaw of an object from examples.
        image_size: (height, width) of the RGB input, pixels.
        image_channels: channels of the CNN image encoder stages (each stage halves the size).
        image_feature_dim: width of the image features back-projected onto the points.
        local_k: neighbours considered by the local cross-attention.
        density_k: neighbours whose mean distance sets a point's adaptive attention radius.
        radius_scale: adaptive radius = ``radius_scale`` × mean distance to ``density_k`` neighbours.
        importance_temperature_m: length scale of the ground-truth importance
            ``softmax(-d_min / T)`` (metres), d_min = distance of an object point to the hand.
        use_image: ablation switch: False = geometry only (no image encoder).
        use_importance_sampling: ablation switch: False = farthest-point sampling N → N'.
        use_local_attention: ablation switch: False = no local cross-attention (global only).
        image_encoder_checkpoint: optional local ``.safetensors`` file with pretrained image
            encoder weights ("" = train from scratch). Never downloaded.
        freeze_image_encoder: keep the (pretrained) image encoder weights fixed in training.
        weight_l1, weight_kl, weight_importance, weight_pose, weight_penetration: loss weights.
        weight_contact_l1: weight of the contact-weighted matrix L1 (:func:`~grasp_planner.network.losses.contact_l1`):
            entries weigh ``exp(-d / contact_scale_m)`` by their true distance d, so the small
            distances the recovery relies on (contacts) count more; 0 = plain L1 only.
        contact_scale_m: distance scale of that weighting, metres.
    """

    hand: str = "shadow"
    hand_points: int = 512
    object_points: int = 1024
    sampled_object_points: int = 256
    knn_k: int = 32
    edge_channels: tuple[int, ...] = (32, 32, 64)
    feature_dim: int = 64
    attention_heads: int = 4
    latent_dim: int = 64
    decoder_widths: tuple[int, ...] = (16, 8, 1)
    decoder: str = "kernel"
    canonical_yaw: bool = False
    image_size: tuple[int, int] = (96, 128)
    image_channels: tuple[int, ...] = (16, 32, 64)
    image_feature_dim: int = 32
    local_k: int = 16
    density_k: int = 8
    radius_scale: float = 1.5
    importance_temperature_m: float = 0.02
    use_image: bool = True
    use_importance_sampling: bool = True
    use_local_attention: bool = True
    image_encoder_checkpoint: str = ""
    freeze_image_encoder: bool = False
    weight_l1: float = 1.0
    weight_kl: float = 0.01
    weight_importance: float = 0.1
    weight_pose: float = 0.01
    weight_penetration: float = 1.0
    weight_contact_l1: float = 0.0
    contact_scale_m: float = 0.01

    def __post_init__(self) -> None:
        # JSON round trips give lists: store tuples so configs compare equal and stay hashable.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        if not self.hand:
            raise ValueError("hand must name the hand the network is for (e.g. 'shadow')")
        for name in ("hand_points", "object_points", "sampled_object_points", "knn_k", "feature_dim",
                     "attention_heads", "latent_dim", "image_feature_dim", "local_k", "density_k"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.sampled_object_points > self.object_points:
            raise ValueError(f"sampled_object_points ({self.sampled_object_points}) must be <= "
                             f"object_points ({self.object_points})")
        smallest = min(self.hand_points, self.object_points)
        if self.knn_k >= smallest:
            raise ValueError(f"knn_k ({self.knn_k}) must be smaller than the smallest point set ({smallest})")
        if self.local_k >= self.sampled_object_points or self.density_k > self.local_k:
            raise ValueError(f"need density_k ({self.density_k}) <= local_k ({self.local_k}) < "
                             f"sampled_object_points ({self.sampled_object_points})")
        if self.feature_dim % self.attention_heads:
            raise ValueError(f"feature_dim ({self.feature_dim}) must be divisible by attention_heads "
                             f"({self.attention_heads})")
        for name in ("edge_channels", "image_channels", "decoder_widths"):
            widths = getattr(self, name)
            if not widths or any(int(w) < 1 for w in widths):
                raise ValueError(f"{name} must be a non-empty list of positive widths, got {widths}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if self.decoder_widths[-1] != 1:
            raise ValueError(f"decoder_widths must end in 1 (one distance per pair), got {self.decoder_widths}")
        if len(self.image_size) != 2 or min(self.image_size) < 2 ** len(self.image_channels):
            raise ValueError(f"image_size {self.image_size} must be (height, width), each >= "
                             f"2**len(image_channels) = {2 ** len(self.image_channels)}")
        for name in ("radius_scale", "importance_temperature_m", "contact_scale_m"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("weight_l1", "weight_kl", "weight_importance", "weight_pose", "weight_penetration",
                     "weight_contact_l1"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.image_encoder_checkpoint and "://" in self.image_encoder_checkpoint:
            raise ValueError(f"image_encoder_checkpoint must be a local file, not a URL: "
                             f"{self.image_encoder_checkpoint!r} (nothing is downloaded)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NetworkConfig":
        """Inverse of :meth:`to_dict`; unknown keys are refused with their names."""
        return from_known_fields(cls, data, "network config")

    def differences(self, other: "NetworkConfig") -> dict[str, tuple[Any, Any]]:
        """Fields whose values differ: ``{name: (self value, other value)}``."""
        return {f.name: (getattr(self, f.name), getattr(other, f.name))
                for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)}
