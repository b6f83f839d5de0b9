"""Train and evaluate the shape-completion network (:mod:`grasp_planner.network.completion`).

Data: a folder of ``.npz`` files as written by :mod:`functional_grasp.completion_data` (arrays
``views (V, P, 3)``, ``surface (V, S, 3)``, ``normals (V, S, 3)``, ``category``). Each view is one
example; a step draws ``batch_size`` views, ``input_points`` of each view's points and
``target_points`` of its surface samples.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from grasp_planner.network.completion import (CompletionConfig, CompletionNet, completion_loss,
                                              save_completion)


class CompletionDataError(ValueError):
    """The completion data folder is missing, empty, or holds a file of another format."""


@dataclass(frozen=True)
class CompletionTrainConfig:
    """Training settings.

    Attributes:
        steps: Adam steps.
        batch_size: views per step.
        learning_rate: initial Adam step size (cosine decay to 5 % of it).
        target_points: surface samples per view the loss compares against.
        threads: torch threads.
        seed: seed of weights and draws.
    """

    steps: int = 3000
    batch_size: int = 16
    learning_rate: float = 1e-3
    target_points: int = 1024
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for f in ("steps", "batch_size", "target_points", "threads"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f} must be >= 1, got {getattr(self, f)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


@dataclass
class CompletionData:
    """All views of a data folder in memory.

    Attributes:
        views: (E, P, 3) view points per example, metres.
        surface: (E, S, 3) whole-surface samples per example, same frame.
        normals: (E, S, 3) their outward normals.
        category: (E,) category per example.
    """

    views: np.ndarray
    surface: np.ndarray
    normals: np.ndarray
    category: np.ndarray

    def __len__(self) -> int:
        return len(self.views)


def load_completion_data(folder: str | Path) -> CompletionData:
    """Read every ``.npz`` of ``folder``.

    Raises:
        CompletionDataError: no such folder, no file, or a file without the expected arrays.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CompletionDataError(f"completion data folder {folder} does not exist (make it with "
                                  "fgrasp completion data)")
    files = sorted(p for p in folder.glob("*.npz") if not p.name.endswith(".tmp.npz"))
    if not files:
        raise CompletionDataError(f"{folder} holds no .npz completion data")
    parts = defaultdict(list)
    for f in files:
        try:
            with np.load(f) as d:
                views, surface, normals = d["views"], d["surface"], d["normals"]
                category = str(d["category"])
        except (OSError, ValueError, KeyError) as exc:
            raise CompletionDataError(f"{f} is not a completion data file ({exc})") from exc
        if views.ndim != 3 or surface.shape != normals.shape or len(views) != len(surface):
            raise CompletionDataError(f"{f}: array shapes do not match (views {views.shape}, surface "
                                      f"{surface.shape}, normals {normals.shape})")
        if parts["views"] and (views.shape[1:] != parts["views"][0].shape[1:]
                               or surface.shape[1:] != parts["surface"][0].shape[1:]):
            raise CompletionDataError(
                f"{f}: {views.shape[1]} view points / {surface.shape[1]} surface samples per view, but {files[0]} "
                f"has {parts['views'][0].shape[1]} / {parts['surface'][0].shape[1]} (make the folder with one "
                "fgrasp completion data setting)")
        parts["views"].append(views)
        parts["surface"].append(surface)
        parts["normals"].append(normals)
        parts["category"] += [category] * len(views)
    return CompletionData(np.concatenate(parts["views"]).astype(np.float32),
                          np.concatenate(parts["surface"]).astype(np.float32),
                          np.concatenate(parts["normals"]).astype(np.float32), np.array(parts["category"]))


def _batch(data: CompletionData, idx: np.ndarray, input_points: int, target_points: int,
           rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    P, S = data.views.shape[1], data.surface.shape[1]
    vi = rng.integers(P, size=(len(idx), input_points))
    si = rng.integers(S, size=(len(idx), target_points)) if target_points < S else np.arange(S)[None].repeat(len(idx), 0)
    rows = idx[:, None]
    return (torch.from_numpy(data.views[rows, vi]), torch.from_numpy(data.surface[rows, si]),
            torch.from_numpy(data.normals[rows, si]))


def evaluate_completion(model: CompletionNet, data: CompletionData, target_points: int = 2048,
                        batch_size: int = 32, seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean Chamfer metrics of the model and of the bare view, per category and overall.

    Returns:
        ``{category or "all": {"views", "chamfer_m", "accuracy_m", "completeness_m", "normal",
        "view_completeness_m"}}``; ``view_completeness_m`` is how far the true surface lies from the
        view's own points (what the completion must beat), metres.
    """
    rng = np.random.default_rng(seed)
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, int] = defaultdict(int)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            idx = np.arange(start, min(start + batch_size, len(data)))
            views, surface, normals = _batch(data, idx, model.config.input_points, target_points, rng)
            pts, nrm = model(views)
            for k, i in enumerate(idx):
                _, parts = completion_loss(pts[k:k + 1], nrm[k:k + 1], surface[k:k + 1], normals[k:k + 1], 0.0)
                parts["view_completeness_m"] = float(torch.cdist(surface[k], torch.from_numpy(data.views[i]))
                                                     .min(dim=1).values.mean())
                for cat in (str(data.category[i]), "all"):
                    counts[cat] += 1
                    for name, value in parts.items():
                        sums[cat][name] += value
    return {cat: {"views": counts[cat], **{n: v / counts[cat] for n, v in s.items()}}
            for cat, s in sorted(sums.items())}


def train_completion(train: CompletionData, model_config: CompletionConfig, config: CompletionTrainConfig,
                     out: str | Path, val: CompletionData | None = None, progress: bool = True,
                     log: Callable[[str], None] = print) -> dict:
    """Train from scratch; write ``out`` (the checkpoint) and ``out`` with ``.json`` (history).

    Returns:
        ``{"history": [...], "wall_time_s": float, "validation": evaluate_completion(...) or None}``.
    """
    from tqdm import tqdm

    out = Path(out)
    before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = CompletionNet(model_config)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps, eta_min=0.05 * config.learning_rate)
    history, window = [], defaultdict(list)
    t0 = time.perf_counter()
    bar = tqdm(total=config.steps, desc="train completion", unit="step", disable=not progress)
    try:
        for step in range(1, config.steps + 1):
            model.train()
            idx = rng.integers(len(train), size=config.batch_size)
            views, surface, normals = _batch(train, idx, model_config.input_points, config.target_points, rng)
            pts, nrm = model(views)
            loss, parts = completion_loss(pts, nrm, surface, normals, model_config.weight_normal)
            if not torch.isfinite(loss):
                raise ValueError(f"loss became {float(loss)} at step {step}")
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            for name, value in parts.items():
                window[name].append(value)
            bar.update(1)
            bar.set_postfix(chamfer_mm=f"{1e3 * parts['chamfer_m']:.1f}")
            if step % 250 == 0 or step == config.steps:
                entry = {"step": step, **{f"train_{n}": float(np.mean(v)) for n, v in window.items()},
                         "wall_time_s": time.perf_counter() - t0}
                window.clear()
                history.append(entry)
                log(f"step {step}: train Chamfer {1e3 * entry['train_chamfer_m']:.1f} mm "
                    f"(accuracy {1e3 * entry['train_accuracy_m']:.1f}, completeness "
                    f"{1e3 * entry['train_completeness_m']:.1f})")
                save_completion(out, model, {"step": step, "train_chamfer_m": entry["train_chamfer_m"]})
    finally:
        bar.close()
        torch.set_num_threads(before)
    validation = evaluate_completion(model, val) if val is not None and len(val) else None
    result = {"history": history, "wall_time_s": time.perf_counter() - t0, "validation": validation,
              "model_config": model_config.to_dict(), "train_config": asdict(config), "train_views": len(train)}
    save_completion(out, model, {"steps": config.steps, "validation": validation})
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    return result
