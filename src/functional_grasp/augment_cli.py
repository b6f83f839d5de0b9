"""``fgrasp augment``: the simulator-augmented retraining loop (core: :mod:`functional_grasp.augment`).

    fgrasp augment --checkpoint out/train/oymotion/last.safetensors --data out/ship/data_oymotion_a \\
        --hand oymotion --category drill --train-objects 4 --unseen-objects 4 --rounds 1 --samples 8 \\
        --out out/augment/oymotion

Exit codes: 0 done; 2 bad input (missing checkpoint or data, another hand's checkpoint, settings
that clash with --out); 1 a round failed (training error, results not writable); 130 interrupted
(re-run the same command to continue).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from functional_grasp.eval_cli import _int_at_least
from functional_grasp.net_eval_cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, check_categories


def add_augment_parser(sub: Any) -> None:
    """Add ``augment`` to the ``fgrasp`` subparsers ``sub``."""
    p = sub.add_parser(
        "augment", help="simulator-augmented retraining: deploy the network in simulation, keep the grasps "
                        "that pass, fine-tune, report success before/after",
        description="Web2Grasp's loop (Sec. II-C): per round, deploy the checkpoint on the first N objects per "
                    "category of --data (train split) and on M held-out instances (unseen split), judge all K "
                    "candidates per object with the data engine's validator, keep the grasps that hold and are "
                    "functional as data-engine shards, and fine-tune on the old data plus every kept grasp. Writes "
                    "augment_results.json and table.md (success before/after per split, 95 % Wilson intervals) "
                    "into --out. Re-running the same command continues an interrupted run. Exit code: 0 done; "
                    "2 bad input; 1 a round failed; 130 interrupted.")
    p.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT", help="starting network checkpoint")
    p.add_argument("--data", type=Path, required=True, metavar="DIR",
                   help="the checkpoint's training data: a data-engine dataset (gives the train split) or a "
                        "folder of example files (then --train-objects 0)")
    p.add_argument("--hand", default="shadow", metavar="NAME", help="hand (default: shadow)")
    p.add_argument("--category", nargs="+", required=True, metavar="NAME", help="object categories")
    p.add_argument("--train-objects", type=_int_at_least(0), default=4, metavar="N",
                   help="objects per category from --data (default: 4)")
    p.add_argument("--unseen-objects", type=_int_at_least(0), default=4, metavar="M",
                   help="held-out instances per category (default: 4)")
    p.add_argument("--rounds", type=_int_at_least(1), default=1, metavar="R", help="rounds (default: 1)")
    p.add_argument("--samples", type=_int_at_least(1), default=16, metavar="K",
                   help="candidates per object, all judged (default: 16)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--view", choices=("full", "partial"), default="full",
                   help="object cloud the network sees: full surface or one rendered view (default: full)")
    p.add_argument("--views", type=_int_at_least(0), default=2, metavar="V",
                   help="RGB-D views rendered per object and stored with its kept grasps (default: 2)")
    p.add_argument("--collision", choices=("coacd", "hull"), default="coacd",
                   help="collision geometry of the judged objects (default: coacd, as the data engine)")
    p.add_argument("--epochs", type=_int_at_least(1), default=2, metavar="E", help="fine-tuning epochs per round (default: 2)")
    p.add_argument("--lr", type=float, default=None, metavar="LR",
                   help="fine-tuning learning rate (default: the checkpoint's)")
    p.add_argument("--batch-size", type=_int_at_least(1), default=None, metavar="B",
                   help="fine-tuning batch size (default: the checkpoint's)")
    p.add_argument("--seed", type=_int_at_least(0), default=0, metavar="S",
                   help="seed of the held-out instances and of the observation draws (default: 0)")
    p.add_argument("--threads", type=_int_at_least(1), default=1, metavar="N",
                   help="torch threads of the deployment (default: 1, fastest on a loaded 2-core CPU; fine-tuning "
                        "uses the checkpoint's training setting)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def cmd_augment(args: argparse.Namespace, rep: Any) -> int:
    """Run ``fgrasp augment``; the exit code."""
    from functional_grasp.augment import (RESULTS_FILE, TABLE_FILE, TABLE_HEADERS, AugmentConfig, AugmentInputError,
                                          run_augment, table_rows)
    from functional_grasp.net_deploy import DeployConfig, DeployInputError
    from grasp_data.dataset import DatasetError
    from grasp_planner.network.checkpoint import CheckpointMismatchError
    from grasp_planner.network.data import ExampleFormatError

    categories = check_categories(args.category, rep)
    if categories is None:
        return EXIT_BAD_INPUT
    if args.lr is not None and not args.lr > 0:
        rep.error(f"--lr must be > 0, got {args.lr}")
        return EXIT_BAD_INPUT
    if not args.checkpoint.is_file():
        rep.error(f"network checkpoint not found: {args.checkpoint} (train one with `fgrasp train --hand {args.hand} "
                  "--data DIR --out DIR`; it writes DIR/last.safetensors)")
        return EXIT_BAD_INPUT
    import torch

    torch.set_num_threads(args.threads)
    try:
        config = AugmentConfig(
            checkpoint=args.checkpoint, data=args.data, hand=args.hand, categories=tuple(categories),
            train_objects=args.train_objects, unseen_objects=args.unseen_objects, rounds=args.rounds, out=args.out,
            deploy=DeployConfig(view=args.view, samples=args.samples, validate="all", collision=args.collision,
                                views=args.views, seed=args.seed),
            epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size)
        rep.stage("augment", "started", f"{args.hand}: {args.rounds} round(s), {args.train_objects} train + "
                  f"{args.unseen_objects} unseen object(s) per category of {', '.join(categories)}, {args.samples} "
                  f"candidates each, {args.epochs} fine-tuning epoch(s) per round")
        results = run_augment(config, progress=not args.no_progress, log=rep.line)
    except (AugmentInputError, DeployInputError, FileNotFoundError, CheckpointMismatchError, DatasetError,
            ExampleFormatError) as exc:
        rep.error(str(exc))
        return EXIT_BAD_INPUT
    except (ValueError, OSError) as exc:
        rep.error(f"augment failed: {exc} (re-run the same command to continue from the last finished step)")
        return EXIT_FAILED
    rep.line()
    rep.table(table_rows(results), headers=TABLE_HEADERS,
              title=f"== fgrasp augment ({args.hand}): top-ranked grasp of {args.samples}, before = starting checkpoint, "
                    f"after = round {args.rounds}; floating hand, D(R,O) protocol, functional within 5 mm ==")
    rep.line(f"wrote {args.out / RESULTS_FILE} and {args.out / TABLE_FILE} ({results['wall_time_s']:.0f} s)")
    return EXIT_OK
