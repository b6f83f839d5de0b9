"""Shape completion: guess the whole object surface (points + outward normals) from one partial view.

A single RGB-D view shows about half of an object. The stages after the D(R,O) network (refinement,
contact closure) need the object's surface on the unseen side too; with the true surface in place of
the view, the refinement and closure kept 107 of 157 true grasps instead of 40 (README, "Shape
completion"). This module learns that guess from generated objects.

Model (hand-independent, one for every hand):

1. **Canonical frame** (:func:`canonical_frame`): the view's points are centred on their mean and
   turned onto their principal axes (largest variance first; each axis signed so the points' third
   moment along it is positive; right-handed), so the network sees the same shape whatever the
   object's pose.
2. **Encoder**: a PointNet (shared per-point MLP, max + mean pooling) → one global shape code.
3. **Decoder**: folding: each of ``output_points`` fixed seeds on the unit sphere, with the code,
   goes through an MLP to a surface point and its normal (canonical frame), turned back to the world.

Loss (:func:`completion_loss`): symmetric Chamfer distance (mean Euclidean nearest-neighbour
distance both ways, metres) + ``weight_normal`` × (1 − cos) between each predicted normal and the
normal of its nearest true point.

Checkpoints are ``.safetensors`` with the config in the header (:func:`save_completion`,
:func:`load_completion`); loading runs no code.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

#: Inside the network lengths are in decimetres (objects span ~0.5–3 dm), so inputs and outputs are O(1).
NETWORK_UNITS_PER_M = 10.0

#: Format tag stored in every completion checkpoint header.
COMPLETION_FORMAT = "functional_grasp.completion/1"


class CompletionCheckpointError(ValueError):
    """The file is not a usable shape-completion checkpoint (the message says why)."""


@dataclass(frozen=True)
class CompletionConfig:
    """Sizes of :class:`CompletionNet`.

    Attributes:
        input_points: view points fed to the encoder (subsampled with replacement when fewer).
        output_points: completed surface points.
        width: hidden width of the encoder and decoder MLPs.
        code: size of the global shape code.
        weight_normal: weight of the normal term of :func:`completion_loss`.
    """

    input_points: int = 512
    output_points: int = 1024
    width: int = 128
    code: int = 512
    weight_normal: float = 0.01

    def __post_init__(self) -> None:
        for f in ("input_points", "output_points", "width", "code"):
            if getattr(self, f) < 8:
                raise ValueError(f"{f} must be >= 8, got {getattr(self, f)}")
        if self.weight_normal < 0:
            raise ValueError(f"weight_normal must be >= 0, got {self.weight_normal}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CompletionConfig":
        """Build from a dict; unknown keys are an error naming them."""
        from grasp_planner.network.config import from_known_fields

        return from_known_fields(cls, data, "completion config")


def canonical_frame(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and principal axes of a batch of clouds.

    Args:
        points: (B, N, 3) points, metres.

    Returns:
        ``centre (B, 3)`` and ``R (B, 3, 3)`` whose columns are the axes: canonical coordinates are
        ``(p - centre) @ R``; world ones ``local @ R.T + centre``. R is a rotation (det +1).
    """
    centre = points.mean(dim=1)
    x = points - centre[:, None]
    cov = x.transpose(1, 2) @ x / points.shape[1]
    _, vecs = torch.linalg.eigh(cov.double())                    # ascending eigenvalues
    R = vecs.flip(-1).to(points.dtype)                           # largest variance first
    skew = ((x @ R) ** 3).mean(dim=1)                            # (B, 3) third moment per axis
    sign = torch.where(skew < 0, -1.0, 1.0).to(points.dtype)
    R = R * sign[:, None, :]
    R[:, :, 2] = torch.linalg.cross(R[:, :, 0], R[:, :, 1])       # right-handed (third axis' sign follows)
    return centre, R


def sphere_seeds(count: int) -> torch.Tensor:
    """(count, 3) points spread evenly on the unit sphere (Fibonacci lattice)."""
    i = torch.arange(count, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / count
    r = torch.sqrt(1.0 - z * z)
    phi = i * np.pi * (3.0 - np.sqrt(5.0))
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=1).float()


class CompletionNet(nn.Module):
    """Partial cloud → completed surface points and normals (see the module docstring)."""

    def __init__(self, config: CompletionConfig = CompletionConfig()):
        super().__init__()
        self.config = c = config
        self.encoder = nn.Sequential(nn.Conv1d(3, 64, 1), nn.ReLU(), nn.Conv1d(64, 128, 1), nn.ReLU(),
                                     nn.Conv1d(128, c.width, 1), nn.ReLU(), nn.Conv1d(c.width, c.code // 2, 1))
        self.register_buffer("seeds", sphere_seeds(c.output_points), persistent=False)
        # Each fold's first layer acts on [code, point]; its code part is computed once per cloud.
        self.fold1_code, self.fold1_point = nn.Linear(c.code, c.width), nn.Linear(3, c.width, bias=False)
        self.fold1 = nn.Sequential(nn.ReLU(), nn.Linear(c.width, c.width), nn.ReLU(), nn.Linear(c.width, 3))
        self.fold2_code, self.fold2_point = nn.Linear(c.code, c.width), nn.Linear(3, c.width, bias=False)
        self.fold2 = nn.Sequential(nn.ReLU(), nn.Linear(c.width, c.width), nn.ReLU(), nn.Linear(c.width, 6))

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Complete a batch of views.

        Args:
            points: (B, N, 3) view points, world frame, metres.

        Returns:
            ``points (B, M, 3)`` and unit ``normals (B, M, 3)``, world frame (M = ``output_points``).
        """
        centre, R = canonical_frame(points)
        local = (points - centre[:, None]) @ R * NETWORK_UNITS_PER_M
        feat = self.encoder(local.transpose(1, 2))                                  # (B, code/2, N)
        code = torch.cat([feat.amax(dim=2), feat.mean(dim=2)], dim=1)               # (B, code)
        coarse = self.fold1(self.fold1_code(code)[:, None] + self.fold1_point(self.seeds)[None])  # (B, M, 3) dm
        out = self.fold2(self.fold2_code(code)[:, None] + self.fold2_point(coarse))
        pts = (coarse + out[..., :3]) / NETWORK_UNITS_PER_M
        normals = torch.nn.functional.normalize(out[..., 3:], dim=-1)
        return pts @ R.transpose(1, 2) + centre[:, None], normals @ R.transpose(1, 2)


def completion_loss(pred_points: torch.Tensor, pred_normals: torch.Tensor, true_points: torch.Tensor,
                    true_normals: torch.Tensor, weight_normal: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Chamfer + normal loss of a batch.

    Args:
        pred_points, pred_normals: (B, M, 3) predicted surface, metres / unit.
        true_points, true_normals: (B, T, 3) samples of the true surface, same frame.
        weight_normal: weight of the normal term.

    Returns:
        The scalar loss and its parts (``chamfer_m``: mean of both nearest-neighbour distances,
        ``accuracy_m``: predicted → true, ``completeness_m``: true → predicted, ``normal``: 1 − cos).
    """
    d = torch.cdist(pred_points, true_points)                     # (B, M, T)
    acc, nearest = d.min(dim=2)
    comp = d.min(dim=1).values
    accuracy, completeness = acc.mean(), comp.mean()
    chamfer = 0.5 * (accuracy + completeness)
    matched = torch.gather(true_normals, 1, nearest[..., None].expand(-1, -1, 3))
    normal = (1.0 - (pred_normals * matched).sum(-1)).mean()
    loss = chamfer + weight_normal * normal
    return loss, {"chamfer_m": float(chamfer.detach()), "accuracy_m": float(accuracy.detach()),
                  "completeness_m": float(completeness.detach()), "normal": float(normal.detach())}


def subsample(cloud: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` rows of the finite points of ``cloud`` (with replacement when fewer).

    Raises:
        ValueError: fewer than 3 finite points.
    """
    cloud = np.asarray(cloud, dtype=np.float32).reshape(-1, 3)
    keep = np.flatnonzero(np.isfinite(cloud).all(axis=1))
    if len(keep) < 3:
        raise ValueError(f"shape completion needs at least 3 finite object points, got {len(keep)}")
    return cloud[keep[rng.choice(len(keep), count, replace=len(keep) < count)]]


def complete_cloud(model: CompletionNet, cloud: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The completed surface of one view.

    Args:
        model: a trained :class:`CompletionNet`.
        cloud: (N, 3) the view's object points, metres (non-finite rows are dropped).
        seed: seed of the input subsampling.

    Returns:
        ``points (M, 3)`` and unit outward ``normals (M, 3)``, float64, the cloud's frame.

    Raises:
        ValueError: fewer than 3 finite points.
    """
    x = torch.from_numpy(subsample(cloud, model.config.input_points, np.random.default_rng(seed)))[None]
    with torch.no_grad():
        pts, nrm = model.eval()(x)
    return pts[0].double().numpy(), nrm[0].double().numpy()


def save_completion(path: str | Path, model: CompletionNet, extra: dict[str, Any] | None = None) -> Path:
    """Write weights + config to a ``.safetensors`` file (atomically)."""
    from grasp_planner.network.checkpoint import write_safetensors_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": COMPLETION_FORMAT, "config": json.dumps(model.config.to_dict(), sort_keys=True),
                "extra": json.dumps(extra or {}, sort_keys=True)}
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    return write_safetensors_atomic(path, state, metadata)


def load_completion(path: str | Path) -> tuple[CompletionNet, dict[str, Any]]:
    """Load a completion checkpoint.

    Returns:
        The model (eval mode) and the ``extra`` metadata.

    Raises:
        FileNotFoundError: no such file.
        CompletionCheckpointError: not a completion checkpoint (e.g. a D(R,O) network's), or its
            weights do not fit its config.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"shape-completion checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:                                     # safetensors raises its own types
        raise CompletionCheckpointError(f"{path} is not a readable .safetensors file: {exc}") from exc
    if meta.get("format") != COMPLETION_FORMAT:
        raise CompletionCheckpointError(f"{path} is not a shape-completion checkpoint (format "
                                        f"'{meta.get('format')}', expected '{COMPLETION_FORMAT}')")
    try:
        config = CompletionConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CompletionCheckpointError(f"{path}: its header holds no valid completion config ({exc})") from exc
    model = CompletionNet(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CompletionCheckpointError(f"{path}: weights do not fit its config: {exc}") from exc
    return model.eval(), json.loads(meta.get("extra", "{}"))
