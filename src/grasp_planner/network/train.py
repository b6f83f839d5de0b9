"""Training of the D(R,O) network (core of ``fgrasp train``): epochs, checkpoints, resume, loss curves, DDP.

One CPU process by default. When ``WORLD_SIZE`` > 1 is set (PyTorch's launcher, e.g.
``torchrun --nproc-per-node 2 -m functional_grasp.cli train ...``), every process trains on its
share of each batch under :class:`~torch.nn.parallel.DistributedDataParallel` (``gloo`` on CPU,
``nccl`` when CUDA is there); rank 0 writes the checkpoints and the curves.

Output folder:

- ``last.safetensors``: model weights + config + ``extra`` (epoch, history, train config) — the
  planner's checkpoint format (:mod:`grasp_planner.network.checkpoint`);
- ``trainer_state.safetensors``: optimiser moments, RNG state and epoch, for ``--resume``
  (safetensors, no pickle);
- ``loss.png``: loss curves; ``history.json``: the same numbers.

Resume restarts at the last completed epoch with the saved optimiser and RNG state; data draws
depend on (seed, epoch, index) only, so a resumed run ends with the same weights as an
uninterrupted one with the same seed.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grasp_planner.network.checkpoint import load_checkpoint, save_checkpoint, write_safetensors_atomic
from grasp_planner.network.config import NetworkConfig
from grasp_planner.network.data import VIEWS, DROExampleDataset
from grasp_planner.network.losses import (contact_l1, dro_loss, make_link_pose_loss, penetration_depth,
                                          predicted_hand_points)
from grasp_planner.network.model import DROBatch, DRONetwork, DROOutput

#: File names inside the output folder.
LAST_CHECKPOINT = "last.safetensors"
TRAINER_STATE = "trainer_state.safetensors"
LOSS_PNG = "loss.png"
HISTORY_JSON = "history.json"
#: Format tag of the trainer state file.
TRAINER_STATE_FORMAT = "functional_grasp.dro_trainer_state/1"
#: Distance scale of the validation's contact-weighted L1 (fixed, so runs with any loss compare), metres.
VALIDATION_CONTACT_SCALE_M = 0.01
#: Links with fewer hand points are left out of the per-link pose term.
MIN_POSE_LINK_POINTS = 4


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Attributes:
        epochs: total epochs (a resumed run continues up to this number).
        batch_size: examples per optimiser step (over all processes).
        learning_rate: Adam step size.
        weight_decay: Adam L2 weight decay.
        seed: seed of the initial weights, the shuffles and the point draws.
        view: object view of the examples: "full", "partial" or "mixed" (see ``DROExampleDataset``).
        validation_fraction: share of the example files (objects) held out for validation.
        checkpoint_every: write the checkpoint every this many epochs (and after the last one).
        threads: torch intra-op threads per process (1 is fastest on a loaded 2-core CPU).
        pose_loss: add the per-link SE(3) term (weight ``weight_pose`` of the network config).
        penetration_loss: add the hand–object penetration term (weight ``weight_penetration``).
        penetration_surface: measure that penetration against the object's whole surface when the
            examples carry it (data-engine conversions do) instead of the view's points, whose
            half-spaces also call a finger around the unseen back, in free space, inside (the
            training grasps "penetrate" their views by 6 mm on average). Off by default: trained
            that way the OYMotion network held 29/80 arm-pipeline grasps against 54/80 (README).
        augment_yaw: turn each training example (object and grasp together) by a random yaw about
            the vertical through the object (:func:`~grasp_planner.network.data.rotate_about_vertical`).
    """

    epochs: int = 20
    batch_size: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    view: str = "mixed"
    validation_fraction: float = 0.1
    checkpoint_every: int = 1
    threads: int = 1
    pose_loss: bool = True
    penetration_loss: bool = True
    penetration_surface: bool = False
    augment_yaw: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.checkpoint_every < 1 or self.threads < 1:
            raise ValueError(f"epochs ({self.epochs}), batch_size ({self.batch_size}), checkpoint_every "
                             f"({self.checkpoint_every}) and threads ({self.threads}) must be >= 1")
        if not self.learning_rate > 0 or self.weight_decay < 0:
            raise ValueError(f"learning_rate must be > 0 and weight_decay >= 0, got {self.learning_rate}, "
                             f"{self.weight_decay}")
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {self.view!r}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")


def load_train_yaml(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(network, training)`` dicts of a training YAML with optional ``network:`` and ``training:`` sections.

    Raises:
        FileNotFoundError: no file. ValueError: other top-level keys or not a mapping.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or set(data) - {"network", "training"}:
        raise ValueError(f"{path}: expected a mapping with 'network:' and/or 'training:' sections, got "
                         f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data.get("training") or {}) - known)
    if unknown:
        raise ValueError(f"{path}: unknown training keys {unknown}; known: {sorted(known)}")
    return dict(data.get("network") or {}), dict(data.get("training") or {})


@dataclass
class TrainResult:
    """Outcome of :func:`train`: the final checkpoint, per-epoch history and wall time (seconds)."""

    checkpoint: Path
    history: list[dict[str, float]]
    wall_time_s: float
    epochs_run: int


# ------------------------------------------------------------------ distributed helpers
def _distributed() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment; (0, 1) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else (0, 1)


def _init_distributed(world: int) -> None:
    import torch.distributed as dist

    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


# ------------------------------------------------------------------ trainer state (safetensors)
def _save_state(path: Path, optimizer: torch.optim.Optimizer, epoch: int) -> None:
    sd = optimizer.state_dict()
    tensors = {f"state.{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)).detach().contiguous()
               for i, st in sd["state"].items() for k, v in st.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"format": TRAINER_STATE_FORMAT, "epoch": str(epoch), "param_groups": json.dumps(sd["param_groups"])}
    write_safetensors_atomic(path, tensors, meta)


def _load_state(path: Path, optimizer: torch.optim.Optimizer) -> int:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != TRAINER_STATE_FORMAT:
        raise ValueError(f"{path} is not a trainer state file (format {meta.get('format')!r})")
    tensors = load_file(str(path))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["epoch"])


# ------------------------------------------------------------------ loss curves
def plot_loss_curves(history: list[dict[str, float]], path: str | Path, title: str = "") -> Path:
    """Draw the per-epoch curves (train total loss; train / validation matrix L1 in mm) into a PNG.

    Args:
        history: one dict per epoch with ``train_total`` and ``train_l1_m`` (``val_l1_m`` optional).
        path: PNG to write (atomically).
        title: caption above the plots.
    """
    from PIL import Image, ImageDraw

    w, h, pad = 900, 380, 48
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    draw.text((pad, 8), title or "D(R,O) training", fill="black")
    panels = [("total loss (train)", [("train_total", 1.0, (31, 119, 180))]),
              ("distance-matrix L1, mm", [("train_l1_m", 1e3, (31, 119, 180)), ("val_l1_m", 1e3, (214, 39, 40)),
                                          ("val_prior_l1_m", 1e3, (44, 160, 44)),
                                          ("val_contact_l1_m", 1e3, (148, 103, 189))])]
    epochs = [int(e["epoch"]) for e in history]
    pw = (w - 3 * pad) // 2
    for p, (label, series) in enumerate(panels):
        x0, y0, x1, y1 = pad + p * (pw + pad), 40, pad + p * (pw + pad) + pw, h - pad
        values = [v * s for key, s, _ in series for e in history if (v := e.get(key)) is not None and math.isfinite(v)]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1.0
        draw.rectangle([x0, y0, x1, y1], outline="black")
        draw.text((x0, y1 + 6), f"{label}   (epoch {epochs[0] if epochs else 0}..{epochs[-1] if epochs else 0})",
                  fill="black")
        draw.text((x0 + 4, y0 + 2), f"{hi:.4g}", fill="black")
        draw.text((x0 + 4, y1 - 14), f"{lo:.4g}", fill="black")
        span = max(1, (epochs[-1] - epochs[0]) if epochs else 1)
        for i, (key, scale, colour) in enumerate(series):
            pts = [(x0 + (x1 - x0) * (e["epoch"] - epochs[0]) / span,
                    y1 - (y1 - y0) * (e[key] * scale - lo) / (hi - lo)) for e in history
                   if e.get(key) is not None and math.isfinite(e[key])]
            if len(pts) > 1:
                draw.line(pts, fill=colour, width=2)
            for x, y in pts:
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
            if pts:
                draw.text((x1 - 130, y0 + 4 + 14 * i), key, fill=colour)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    img.save(tmp)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------ the loop
class _Losses:
    """Batch assembly (FK targets) and the loss of one batch for one hand."""

    def __init__(self, network: NetworkConfig, train: TrainConfig):
        from grasp_planner.network.hand_chain import cached_hand_chain

        self.hand, self.kin, self.chain = cached_hand_chain(network.hand, network.hand_points)
        self.network, self.train = network, train
        self.canonical = self.chain.canonical_points.float()
        self.pose_fn = self._pose_loss() if train.pose_loss else None

    def _pose_loss(self):
        """The per-link SE(3) term over links with >= MIN_POSE_LINK_POINTS points (a link with fewer has
        a rank-deficient covariance, whose SVD gradient is not finite)."""
        link = self.chain.link_index
        keep = torch.bincount(link) >= MIN_POSE_LINK_POINTS
        mask = keep[link]
        dense = torch.cumsum(keep.long(), 0) - 1
        inner = make_link_pose_loss(self.canonical[mask], dense[link[mask]])

        def loss(out: DROOutput, batch: DROBatch) -> torch.Tensor:
            sub = DROOutput(distances=out.distances[:, :, mask], object_indices=out.object_indices,
                            object_points=out.object_points, importance_logits=None, mu=None, logvar=None)
            return inner(sub, DROBatch(batch.object_points, batch.hand_points[mask],
                                       hand_points_grasp=batch.hand_points_grasp[:, mask]))
        return loss

    def batch(self, items: dict[str, torch.Tensor]) -> DROBatch:
        with torch.no_grad():
            grasp = self.kin.forward(items["q"], root_pose=items["wrist_pose"]).points
        return DROBatch(object_points=items["object_points"], hand_points=self.canonical,
                        image=items.get("image"), pixel_uv=items.get("pixel_uv"), hand_points_grasp=grasp)

    def __call__(self, model: torch.nn.Module, items: dict[str, torch.Tensor]):
        batch = self.batch(items)
        out = model(batch)
        penetration = None
        if self.train.penetration_loss:
            whole = self.train.penetration_surface and "surface_points" in items
            points = items["surface_points"] if whole else items["object_points"]
            normals = items["surface_normals"] if whole else items["object_normals"]

            def penetration(o, b):
                k = o.distances.shape[1]
                return penetration_depth(predicted_hand_points(o), points.repeat_interleave(k, 0),
                                         normals.repeat_interleave(k, 0)).mean()
        return dro_loss(out, batch, self.network, pose_fn=self.pose_fn, penetration_fn=penetration)


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def object_key(path: str | Path) -> str:
    """The object an example file shows: its stem without a ``_view<k>`` / ``_surface`` suffix.

    The data-engine conversion writes one file per rendered view of an object (same grasps);
    views of one object must fall on the same side of the train/validation split.
    """
    return re.sub(r"_(view\d+|surface)$", "", Path(path).stem)


def _split(keys: list[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation file indices: whole objects (all files with the same key) are held out."""
    objects = sorted(set(keys))
    order = np.random.default_rng(seed).permutation(len(objects))
    n_val = int(round(fraction * len(objects))) if len(objects) > 1 else 0
    held = {objects[i] for i in order[:n_val]}
    files = np.arange(len(keys))
    return files[[k not in held for k in keys]], files[[k in held for k in keys]]


def _evaluate(model: DRONetwork, losses: _Losses, dataset: DROExampleDataset, batch_size: int,
              samples: int = 4) -> dict[str, float]:
    """Validation: matrix L1 with the posterior mean (plain and contact-weighted, :func:`contact_l1` at
    :data:`VALIDATION_CONTACT_SCALE_M`), and the best of ``samples`` prior draws per example."""
    if not len(dataset):
        return {}
    model.eval()
    post, prior, contact = [], [], []
    gen_state = torch.get_rng_state()
    torch.manual_seed(12345)                          # fixed draws: comparable across epochs, RNG untouched
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            items = _collate([dataset[i] for i in range(start, min(len(dataset), start + batch_size))])
            batch = losses.batch(items)
            target = torch.cdist(batch.hand_points_grasp, items["object_points"])
            out = model(batch, use_posterior=True)
            idx = out.object_indices.unsqueeze(1).expand(-1, target.shape[1], -1)
            post.append((out.distances[:, 0] - target.gather(2, idx)).abs().mean((1, 2)))
            contact.append(contact_l1(out.distances[:, 0], target.gather(2, idx), VALIDATION_CONTACT_SCALE_M))
            out = model(DROBatch(batch.object_points, batch.hand_points, batch.image, batch.pixel_uv),
                        num_samples=samples)
            idx = out.object_indices.unsqueeze(1).expand(-1, target.shape[1], -1)
            err = (out.distances - target.gather(2, idx).unsqueeze(1)).abs().mean((2, 3))
            prior.append(err.amin(1))
    torch.set_rng_state(gen_state)
    model.train()
    return {"val_l1_m": float(torch.cat(post).mean()), "val_prior_l1_m": float(torch.cat(prior).mean()),
            "val_contact_l1_m": float(torch.stack(contact).mean())}


def train(data_dir: str | Path, network: NetworkConfig, config: TrainConfig, out_dir: str | Path,
          resume: bool = False, progress: bool = True, log=print,
          init_checkpoint: str | Path | None = None) -> TrainResult:
    """Train (or continue training) the network on the examples under ``data_dir``.

    Args:
        data_dir: folder of example files (:mod:`grasp_planner.network.data`).
        network: network config (its ``hand`` selects the examples and the FK).
        config: training settings.
        out_dir: output folder (see the module docstring).
        resume: continue from ``out_dir``'s last checkpoint; refused if it was made with another
            network config. Without ``resume`` an existing checkpoint there is refused.
        progress: show a tqdm bar (rank 0 only).
        log: one-line message sink (rank 0 only).
        init_checkpoint: start from this checkpoint's weights instead of a random initialisation
            (fine-tuning, e.g. ``fgrasp augment``); refused for another hand or config. Ignored
            when resuming (the run's own checkpoint holds the weights then).

    Returns:
        :class:`TrainResult`.

    Raises:
        FileExistsError: ``out_dir`` has a checkpoint and ``resume`` is False.
        FileNotFoundError: ``resume`` without a checkpoint, or no data folder.
        CheckpointMismatchError: the checkpoint to resume or start from is for another hand or config.
    """
    from tqdm import tqdm

    rank, world = _distributed()
    _init_distributed(world)
    torch.set_num_threads(config.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    last, state_path = out_dir / LAST_CHECKPOINT, out_dir / TRAINER_STATE
    if last.exists() and not resume:
        raise FileExistsError(f"{last} exists: pass --resume to continue that run, or choose another --out")
    if resume and not (last.exists() and state_path.exists()):
        raise FileNotFoundError(f"--resume: no {LAST_CHECKPOINT} + {TRAINER_STATE} in {out_dir} to continue from")
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must divide by the number of processes {world}")

    losses = _Losses(network, config)
    full = DROExampleDataset(data_dir, losses.hand, network.object_points, config.view, config.seed)
    train_files, val_files = _split([object_key(f.path) for f in full.files], config.validation_fraction,
                                    config.seed)
    per_file = np.cumsum([0] + [len(f.q) for f in full.files])
    pick = lambda files: [i for f in files for i in range(per_file[f], per_file[f + 1])]  # noqa: E731
    train_set = DROExampleDataset(data_dir, losses.hand, network.object_points, config.view, config.seed,
                                  indices=pick(train_files), yaw_augment=config.augment_yaw)
    val_set = DROExampleDataset(data_dir, losses.hand, network.object_points, "full", config.seed + 1,
                                indices=pick(val_files))
    if network.use_image and not full.has_images:
        raise ValueError(f"the network config uses images (use_image: true) but the examples in {data_dir} "
                         "have none: set use_image: false or train on rendered data")

    torch.manual_seed(config.seed)
    model = DRONetwork(network)
    if init_checkpoint is not None and not resume:
        model.load_state_dict(load_checkpoint(init_checkpoint, hand=network.hand,
                                              expected_config=network)[0].state_dict())
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    history: list[dict[str, float]] = []
    start_epoch = 0
    if resume:
        restored, extra = load_checkpoint(last, hand=network.hand, expected_config=network)
        model.load_state_dict(restored.state_dict())
        model.train()
        start_epoch = _load_state(state_path, optimizer)
        if start_epoch != int(extra.get("epoch", -1)):
            raise ValueError(f"{state_path} is at epoch {start_epoch} but {last} at {extra.get('epoch')}: "
                             "the run was interrupted while saving; delete both to start over")
        history = list(extra.get("history", []))
        if rank == 0:
            log(f"resuming {out_dir} at epoch {start_epoch} of {config.epochs}")
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    local_batch = config.batch_size // world
    steps = len(train_set) // config.batch_size
    if steps < 1:
        raise ValueError(f"{len(train_set)} training examples are fewer than one batch of {config.batch_size}")
    t0 = time.perf_counter()
    bar = tqdm(total=(config.epochs - start_epoch) * steps, desc=f"train {network.hand}", unit="step",
               disable=not progress or rank != 0)
    for epoch in range(start_epoch, config.epochs):
        train_set.set_epoch(epoch)
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(config.seed * 100003 + epoch))
        sums: dict[str, float] = {}
        for step in range(steps):
            chunk = order[step * config.batch_size:(step + 1) * config.batch_size]
            mine = chunk[rank * local_batch:(rank + 1) * local_batch]
            result = losses(net, _collate([train_set[int(i)] for i in mine]))
            optimizer.zero_grad(set_to_none=True)
            result.total.backward()
            # A non-finite gradient (a degenerate fit inside the pose term) would poison the weights:
            # skip that step. Gradients are already averaged over processes, so all ranks agree.
            if all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in model.parameters()):
                optimizer.step()
            else:
                sums["skipped_steps"] = sums.get("skipped_steps", 0.0) + steps
            for k, v in result.terms.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, l1_mm=f"{1e3 * result.terms['l1_m']:.1f}")
        entry = {"epoch": epoch + 1, **{f"train_{k}": v / steps for k, v in sums.items()}}
        if world > 1:                                         # average the logged numbers over processes
            import torch.distributed as dist

            keys = sorted(k for k in entry if k != "epoch")
            vec = torch.tensor([entry[k] for k in keys], dtype=torch.float64)
            dist.all_reduce(vec)
            entry.update({k: float(v) / world for k, v in zip(keys, vec)})
        if rank == 0:
            entry.update(_evaluate(model, losses, val_set, config.batch_size))
            entry["wall_time_s"] = time.perf_counter() - t0
            history.append(entry)
            if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs:
                _save_state(state_path, optimizer, epoch + 1)
                save_checkpoint(last, model, extra={"epoch": epoch + 1, "history": history,
                                                    "train_config": asdict(config)})
                plot_loss_curves(history, out_dir / LOSS_PNG, f"D(R,O) {network.hand}: {len(train_set)} train / "
                                 f"{len(val_set)} validation examples")
                (out_dir / HISTORY_JSON).write_text(json.dumps(history, indent=1))
            log(f"epoch {epoch + 1}/{config.epochs}: loss {entry['train_total']:.4f}, L1 "
                f"{1e3 * entry['train_l1_m']:.2f} mm" + (f", validation L1 {1e3 * entry['val_l1_m']:.2f} mm "
                f"(best of 4 prior draws {1e3 * entry['val_prior_l1_m']:.2f} mm, contact-weighted "
                f"{1e3 * entry['val_contact_l1_m']:.2f} mm)" if "val_l1_m" in entry else ""))
    bar.close()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return TrainResult(checkpoint=last, history=history, wall_time_s=time.perf_counter() - t0,
                       epochs_run=config.epochs - start_epoch)
