"""``fgrasp completion``: data, training and evaluation of the shape-completion network.

    fgrasp completion data --objects 250 --views 4 --seed 7100 --out out/completion/train
    fgrasp completion train --data out/completion/train --val out/completion/val \\
        --out config/checkpoints/completion.safetensors --steps 3000
    fgrasp completion eval --checkpoint config/checkpoints/completion.safetensors --data out/completion/val

Core: :mod:`grasp_planner.network.completion`, :mod:`grasp_planner.network.completion_train`,
:mod:`functional_grasp.completion_data`. Exit codes: 0 done; 2 bad input (missing data or
checkpoint, unknown category, bad setting).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from functional_grasp.train_cli import _positive_int

#: Categories of the generator the completion is trained on by default (the held-out evaluation's).
DEFAULT_CATEGORIES = ("drill", "spray_bottle", "hammer", "mug", "syringe", "glue_gun")


def add_completion_parser(sub: Any) -> None:
    """Add ``completion`` (with ``data``, ``train``, ``eval``) to the ``fgrasp`` subparsers ``sub``."""
    p = sub.add_parser("completion", help="shape completion of a partial view: data, training, evaluation",
                       description="The planner's guess of the unseen side of an object (planner parameter "
                                   "completion_checkpoint). Exit code: 0 done; 2 bad input.")
    cs = p.add_subparsers(dest="completion_command", required=True)
    d = cs.add_parser("data", help="render partial views of generated objects paired with their whole surface")
    d.add_argument("--category", nargs="+", default=list(DEFAULT_CATEGORIES), metavar="NAME",
                   help="generator categories (default: the six of the held-out evaluation)")
    d.add_argument("--objects", type=_positive_int, default=250, metavar="N", help="objects per category")
    d.add_argument("--views", type=_positive_int, default=4, metavar="N", help="views per object")
    d.add_argument("--seed", type=int, default=7100, metavar="N",
                   help="object seed base (use another one for a validation set; default 7100)")
    d.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (re-runs skip done objects)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    t = cs.add_parser("train", help="train the completion network")
    t.add_argument("--data", type=Path, required=True, metavar="DIR", help="folder of fgrasp completion data")
    t.add_argument("--val", type=Path, default=None, metavar="DIR", help="validation data folder (other objects)")
    t.add_argument("--out", type=Path, required=True, metavar="CKPT",
                   help="checkpoint to write (.safetensors; history next to it as .json)")
    t.add_argument("--steps", type=_positive_int, default=3000, metavar="N", help="Adam steps (default 3000)")
    t.add_argument("--batch-size", type=_positive_int, default=16, metavar="N", help="views per step")
    t.add_argument("--lr", type=float, default=1e-3, metavar="LR", help="initial learning rate")
    t.add_argument("--threads", type=_positive_int, default=1, metavar="N", help="torch threads")
    t.add_argument("--seed", type=int, default=0, metavar="N", help="seed of weights and draws")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    e = cs.add_parser("eval", help="Chamfer distances of a checkpoint on a data folder, per category")
    e.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT", help="completion checkpoint")
    e.add_argument("--data", type=Path, required=True, metavar="DIR", help="folder of fgrasp completion data")


def _table(metrics: dict[str, dict[str, float]]) -> str:
    rows = [("category", "views", "Chamfer mm", "accuracy mm", "completeness mm", "view alone: completeness mm",
             "normal 1-cos")]
    for cat, m in metrics.items():
        rows.append((cat, str(int(m.get("views", 0))), f"{1e3 * m['chamfer_m']:.1f}", f"{1e3 * m['accuracy_m']:.1f}",
                     f"{1e3 * m['completeness_m']:.1f}", f"{1e3 * m['view_completeness_m']:.1f}",
                     f"{m['normal']:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def cmd_completion(args: argparse.Namespace, rep: Any) -> int:
    """Run ``fgrasp completion …``; returns the exit code."""
    import time

    from grasp_planner.network.completion import CompletionCheckpointError, CompletionConfig, load_completion
    from grasp_planner.network.completion_train import (CompletionDataError, CompletionTrainConfig,
                                                        evaluate_completion, load_completion_data,
                                                        train_completion)

    if args.completion_command == "data":
        from grasp_data.objects import categories
        from tqdm import tqdm

        from functional_grasp.completion_data import generate_completion_data

        unknown = sorted(set(args.category) - set(categories()))
        if unknown:
            rep.error(f"unknown category: {', '.join(unknown)} (known: {', '.join(sorted(categories()))})")
            return 2
        t0 = time.perf_counter()
        with tqdm(total=len(args.category) * args.objects, desc="completion data", unit="object",
                  disable=args.no_progress) as bar:
            files = generate_completion_data(args.out, args.category, args.objects, args.views, seed=args.seed,
                                             progress=lambda done, total, name: bar.update(1))
        rep.stage("completion", "done", f"{len(files)} object files in {args.out} ({time.perf_counter() - t0:.0f} s)")
        return 0
    try:
        if args.completion_command == "train":
            config = CompletionTrainConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
                                           threads=args.threads, seed=args.seed)
            train = load_completion_data(args.data)
            val = load_completion_data(args.val) if args.val else None
            result = train_completion(train, CompletionConfig(), config, args.out, val=val,
                                      progress=not args.no_progress, log=rep.line)
            rep.stage("completion", "done", f"{config.steps} steps on {len(train)} views in "
                      f"{result['wall_time_s']:.0f} s; checkpoint {args.out}")
            if result["validation"]:
                rep.line(_table(result["validation"]))
            return 0
        model, _ = load_completion(args.checkpoint)
        data = load_completion_data(args.data)
    except (ValueError, FileNotFoundError, CompletionDataError, CompletionCheckpointError) as exc:
        rep.error(str(exc))
        return 2
    rep.line(_table(evaluate_completion(model, data)))
    return 0
