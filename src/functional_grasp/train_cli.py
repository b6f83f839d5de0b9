"""``fgrasp train``: train the D(R,O) grasp network for one hand (core: :mod:`grasp_planner.network.train`).

    fgrasp train --data out/train_data/shadow --hand shadow --bootstrap 180 \\
        --config config/checkpoints/dro_small.yaml --out out/train/shadow --epochs 12
    fgrasp train ... --resume                       # continue an interrupted run
    fgrasp train ... --init CKPT --epochs 4         # fine-tune from a checkpoint
    torchrun --nproc-per-node 2 -m functional_grasp.cli train ...   # data-parallel (gloo on CPU)

Exit codes: 0 trained; 1 training failed; 2 bad input (missing data, checkpoint clash, bad config).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    return 0 if text.strip() == "0" else _positive_int(text)


def add_train_parser(sub: Any) -> None:
    """Add ``train`` to the ``fgrasp`` subparsers ``sub``."""
    p = sub.add_parser(
        "train", help="train the D(R,O) grasp network for one hand (checkpoints, resume, loss curves)",
        description="Train the network on example files under --data (optionally first generated from the "
                    "optimiser with --bootstrap: stable, not functional grasps). Writes last.safetensors, "
                    "trainer_state.safetensors, loss.png and history.json into --out. Single CPU process by "
                    "default; data-parallel when started by torchrun (WORLD_SIZE set). Exit code: 0 trained; "
                    "1 training failed; 2 bad input.")
    p.add_argument("--data", type=Path, required=True, nargs="+", metavar="DIR",
                   help="folder of training example files, or one or more data-engine datasets "
                        "(fgrasp data generate)")
    p.add_argument("--hand", default="shadow", metavar="NAME", help="hand to train for (default: shadow)")
    p.add_argument("--config", type=Path, default=None, metavar="YAML",
                   help="training config with 'network:' and 'training:' sections (default: network defaults)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (checkpoints, curves)")
    p.add_argument("--epochs", type=_positive_int, default=None, metavar="N", help="total epochs (overrides the YAML)")
    p.add_argument("--batch-size", type=_positive_int, default=None, metavar="N", help="examples per step")
    p.add_argument("--lr", type=float, default=None, metavar="LR", help="Adam learning rate")
    p.add_argument("--seed", type=_non_negative_int, default=None, metavar="N", help="seed of weights and draws")
    p.add_argument("--view", choices=("full", "partial", "mixed"), default=None, help="object view of the examples (default: mixed)")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="torch threads per process (default: 1, fastest on a loaded 2-core CPU)")
    p.add_argument("--resume", action="store_true", help="continue from --out's last checkpoint")
    p.add_argument("--init", type=Path, default=None, metavar="CKPT",
                   help="start from this checkpoint's weights (fine-tuning; same hand and network config)")
    p.add_argument("--bootstrap", type=_non_negative_int, default=0, metavar="OBJECTS",
                   help="first add optimiser grasps on this many generated objects to --data (files already "
                        "there are kept)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def cmd_train(args: argparse.Namespace, rep: Any) -> int:
    """Run ``fgrasp train``; ``rep`` is the CLI's reporter. Returns the exit code."""
    import os
    import time

    from grasp_planner.hands.description import load_hand
    from grasp_planner.network.checkpoint import CheckpointMismatchError
    from grasp_planner.network.config import NetworkConfig
    from grasp_planner.network.data import ExampleFormatError, bootstrap_examples
    from grasp_planner.network.train import TrainConfig, load_train_yaml, train

    from functional_grasp.train_data import convert_engine_dataset, is_engine_dataset

    rank = int(os.environ.get("RANK", "0"))
    say = rep.line if rank == 0 else (lambda text: None)
    try:
        hand = load_hand(args.hand)
        network, training = load_train_yaml(args.config) if args.config else ({}, {})
        if network.get("hand", args.hand) != args.hand:
            raise ValueError(f"{args.config} is for hand '{network['hand']}' but --hand is '{args.hand}'")
        network = NetworkConfig.from_dict({**network, "hand": args.hand})
        overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.lr,
                     "seed": args.seed, "view": args.view, "threads": args.threads}
        config = TrainConfig(**{**training, **{k: v for k, v in overrides.items() if v is not None}})
    except (OSError, ValueError) as exc:
        rep.error(str(exc))
        return 2
    if len(args.data) > 1 and not all(is_engine_dataset(d) for d in args.data):
        rep.error("several --data folders must all be data-engine datasets (index.json); not: "
                  + ", ".join(str(d) for d in args.data if not is_engine_dataset(d)))
        return 2
    if args.bootstrap and len(args.data) > 1:
        rep.error("--bootstrap writes into one example folder: give a single --data")
        return 2
    if args.bootstrap:
        if rank != 0:
            rep.error("--bootstrap runs in one process: generate the data first, then start torchrun")
            return 2
        t0 = time.perf_counter()
        files = bootstrap_examples(args.data[0], hand, args.bootstrap, seed=config.seed, progress=not args.no_progress)
        rep.stage("bootstrap", "done", f"{len(files)} object files in {args.data} "
                  f"({time.perf_counter() - t0:.0f} s; optimiser grasps: stable, not functional)")
    data_dir = args.data[0]
    if is_engine_dataset(args.data[0]):
        data_dir = args.out / "examples"                  # rank 0 converts; start torchrun after one conversion
        if rank == 0:
            for dataset in args.data:                     # one sub-folder per dataset when there are several
                target = data_dir if len(args.data) == 1 else data_dir / dataset.resolve().name
                files = convert_engine_dataset(dataset, hand, target,
                                               tuple(network.image_size) if network.use_image else None, config.seed)
                rep.stage("data", "done", f"{len(files)} example files from the kept grasps of {dataset} in {target}")
    try:
        if args.init is not None and not args.init.is_file():
            raise FileNotFoundError(f"--init: checkpoint not found: {args.init}")
        result = train(data_dir, network, config, args.out, resume=args.resume,
                       progress=not args.no_progress, log=say, init_checkpoint=args.init)
    except (FileNotFoundError, FileExistsError, CheckpointMismatchError, ExampleFormatError) as exc:
        rep.error(str(exc))
        return 2
    except ValueError as exc:
        rep.error(f"training failed: {exc}")
        return 1
    if rank == 0:
        last = result.history[-1] if result.history else {}
        rep.stage("train", "done", f"{result.epochs_run} epochs in {result.wall_time_s:.0f} s; checkpoint "
                  f"{result.checkpoint}; curves {args.out / 'loss.png'}"
                  + (f"; validation L1 {1e3 * last['val_l1_m']:.1f} mm" if "val_l1_m" in last else ""))
    return 0
