"""``fgrasp augment``: Web2Grasp's simulator-augmented retraining loop (seeds/000, Sec. II-C, Table I).

Per round r = 1 … R, starting from the given checkpoint c₀:

1. **deploy** c_{r−1} in simulation (:class:`functional_grasp.net_deploy.Deployer`, every one of the
   K candidates judged) on the *train* split — the first N objects per category of the data-engine
   dataset the checkpoint was trained on — and the *unseen* split — M held-out instances per
   category (seeds no training data uses). Each object becomes one :mod:`grasp_data.dataset`
   shard in ``OUT/round_<r>/deploy`` (candidates best first, with their verdicts and RGB-D views);
2. **keep** the grasps that pass (held and functional): :func:`functional_grasp.train_data.convert_engine_dataset`
   turns the shards' kept grasps into example files in ``OUT/examples/round_<r>``;
3. **retrain**: fine-tune c_{r−1} (:func:`grasp_planner.network.train.train` with ``init_checkpoint``) on
   the old data (``OUT/examples/base``: the ``--data`` examples) plus every round's kept grasps;
   the result is ``OUT/round_<r>/train/last.safetensors`` = c_r.

Success of c_r on the same objects = its top-ranked candidate's verdict (round r+1's deployment,
or ``OUT/eval_round_<R>`` for the last one). As in Web2Grasp, the unseen split's instances are
held out of the original training data, but the loop itself collects grasps on them.

Resume: every object's record is saved as soon as it is judged (``records.json``, atomic) and a
round ends with ``round.json``; re-running the command continues where it stopped (finished
rounds are kept, an interrupted one continues from its last judged object or trained epoch, which
gives the same result as an uninterrupted run). ``OUT/augment.json`` holds the settings; another
checkpoint, dataset or deployment setting in the same OUT is refused (``--rounds`` may grow).
Outputs: ``OUT/augment_results.json`` and ``OUT/table.md`` (success before / after per split and category).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

from functional_grasp.eval_stats import percent_ci
from functional_grasp.net_deploy import DeployConfig, Deployer, ObjectRef, dataset_objects, heldout_objects
from functional_grasp.bench import write_json
from functional_grasp.net_eval import deploy_all, file_sha256, summarize_records

#: Files inside OUT.
SETTINGS_FILE, RESULTS_FILE, TABLE_FILE = "augment.json", "augment_results.json", "table.md"
RECORDS_FILE, ROUND_FILE = "records.json", "round.json"
#: Format tags.
SETTINGS_FORMAT = "functional_grasp.augment/1"
DEPLOY_DATASET_SOURCE = "fgrasp augment"
#: Splits, in table order.
SPLITS = ("train", "unseen")


class AugmentInputError(ValueError):
    """The request cannot run (missing data, settings that clash with OUT, ...); the message says what to do."""


@dataclass(frozen=True)
class AugmentConfig:
    """Settings of :func:`run_augment`.

    Attributes:
        checkpoint: the starting network checkpoint (c₀).
        data: its training data: a data-engine dataset (needed for the train split) or a folder of
            example files (then ``train_objects`` must be 0).
        hand: the hand.
        categories: object categories of both splits.
        train_objects: N objects per category of ``data`` (train split).
        unseen_objects: M held-out instances per category (unseen split).
        rounds: R deploy → keep → retrain rounds.
        out: output folder.
        deploy: deployment settings (``validate`` is forced to "all" for the rounds).
        epochs: fine-tuning epochs per round.
        learning_rate, batch_size: fine-tuning overrides (None = the checkpoint's training settings).
    """

    checkpoint: Path
    data: Path
    hand: str
    categories: tuple[str, ...]
    train_objects: int
    unseen_objects: int
    rounds: int
    out: Path
    deploy: DeployConfig = DeployConfig(validate="all")
    epochs: int = 2
    learning_rate: float | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.epochs < 1:
            raise AugmentInputError(f"rounds ({self.rounds}) and epochs ({self.epochs}) must be >= 1")
        if self.train_objects < 0 or self.unseen_objects < 0 or self.train_objects + self.unseen_objects < 1:
            raise AugmentInputError("need at least one object: --train-objects N and/or --unseen-objects M")
        if not self.categories:
            raise AugmentInputError("give at least one --category")

    def settings(self) -> dict[str, Any]:
        """What fixes the results of every round (stored in ``augment.json``; ``rounds`` may grow)."""
        return json.loads(json.dumps({
            "format": SETTINGS_FORMAT, "checkpoint_sha256": file_sha256(self.checkpoint),
            "data": str(Path(self.data).resolve()), "hand": self.hand, "categories": list(self.categories),
            "train_objects": self.train_objects, "unseen_objects": self.unseen_objects,
            "deploy": asdict(self.deploy), "epochs": self.epochs, "learning_rate": self.learning_rate,
            "batch_size": self.batch_size}))


# ------------------------------------------------------------------ helpers
def _check_settings(config: AugmentConfig) -> None:
    path = config.out / SETTINGS_FILE
    settings = config.settings()
    if path.is_file():
        old = json.loads(path.read_text())
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if diff:
            raise AugmentInputError(f"{config.out} holds an augment run with other settings (differs in: "
                                    f"{', '.join(diff)}); re-run with the same options or choose another --out")
    else:
        write_json(path, settings)


def _base_examples(config: AugmentConfig, network, seed: int) -> Path:
    """``OUT/examples/base``: the old training data as example files (converted from a data-engine
    dataset, or hard-linked from an example folder)."""
    from functional_grasp.train_data import convert_engine_dataset, is_engine_dataset
    from grasp_planner.hands import load_hand

    base = config.out / "examples" / "base"
    if is_engine_dataset(config.data):
        files = convert_engine_dataset(config.data, load_hand(config.hand), base,
                                       tuple(network.image_size) if network.use_image else None, seed)
        if not files:
            raise AugmentInputError(f"{config.data} has no kept grasps for hand '{config.hand}'")
        return base
    if not Path(config.data).is_dir():
        raise AugmentInputError(f"training data folder not found: {config.data}")
    for src in sorted(Path(config.data).rglob("*.npz")):
        if src.name.endswith(".tmp.npz") or Path(config.out).resolve() in src.resolve().parents:
            continue
        dst = base / src.relative_to(config.data)
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:                            # another file system: copy
                shutil.copy2(src, dst)
    return base


def _objects(config: AugmentConfig) -> list[ObjectRef]:
    train = dataset_objects(config.data, config.categories, config.train_objects) if config.train_objects else []
    unseen = heldout_objects(config.categories, config.unseen_objects, config.deploy.seed)
    clash = {r.seed for r in train} & {r.seed for r in unseen}
    if clash:                                           # impossible by the seed rule; checked all the same
        raise AugmentInputError(f"held-out seeds {sorted(clash)} are training seeds of {config.data}")
    return train + unseen


def _records_pass(deployer: Deployer, refs: list[ObjectRef], folder: Path, checkpoint: Path, progress: bool,
                  desc: str, writer=None) -> list[dict]:
    """Deploy on ``refs`` with per-object resume (``folder/records.json``); shards go to ``writer``."""
    path = folder / RECORDS_FILE
    sha = file_sha256(checkpoint)
    saved: dict[str, Any] = {"checkpoint": str(checkpoint), "checkpoint_sha256": sha, "records": {}}
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("checkpoint_sha256") != sha:
            raise AugmentInputError(f"{path} was made with another checkpoint than {checkpoint}: delete {folder} "
                                    "to redo that pass")

    def keep(record: dict, shard: dict | None) -> None:
        if writer is not None and shard is not None:
            writer.write(record["name"], shard)
        saved["records"][record["name"]] = record
        write_json(path, saved)

    return deploy_all(deployer, refs, progress, desc, done=saved["records"], on_record=keep)


def _train_config(checkpoint: Path, config: AugmentConfig):
    """The checkpoint's own training settings with the fine-tuning overrides."""
    from grasp_planner.network.checkpoint import read_header
    from grasp_planner.network.train import TrainConfig

    _, extra = read_header(checkpoint)
    known = {f.name for f in fields(TrainConfig)}
    base = {k: v for k, v in (extra.get("train_config") or {}).items() if k in known}
    overrides = {"epochs": config.epochs, "learning_rate": config.learning_rate, "batch_size": config.batch_size}
    return TrainConfig(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


def _split_summary(records: list[dict], hand: str) -> dict[str, Any]:
    return {s: summarize_records([r for r in records if r["split"] == s], hand) for s in SPLITS}


# ------------------------------------------------------------------ the loop
def run_augment(config: AugmentConfig, progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or continue) the loop of the module docstring; write the results and the table.

    Returns:
        The results dict (also in ``OUT/augment_results.json``).

    Raises:
        AugmentInputError: bad request or clash with OUT (see the message).
        FileNotFoundError / CheckpointMismatchError: the checkpoint is missing or for another hand.
    """
    from grasp_data.dataset import DatasetWriter
    from grasp_planner.network.checkpoint import read_header
    from grasp_planner.network.train import LAST_CHECKPOINT, TRAINER_STATE, train

    from functional_grasp.train_data import convert_engine_dataset
    from grasp_planner.hands import load_hand

    t0 = time.perf_counter()
    Deployer(config.hand, config.checkpoint, replace(config.deploy, validate="top"))   # refuse early: hand, images
    network, _ = read_header(config.checkpoint)
    deploy = replace(config.deploy, validate="all")
    config.out.mkdir(parents=True, exist_ok=True)
    _check_settings(config)
    refs = _objects(config)
    _base_examples(config, network, deploy.seed)
    image_size = tuple(network.image_size) if network.use_image else None
    checkpoints = [Path(config.checkpoint)]
    evaluations: list[list[dict]] = []               # evaluations[r] = records of c_r (top candidate verdicts)
    rounds: list[dict] = []
    for r in range(1, config.rounds + 1):
        folder = config.out / f"round_{r}"
        done = folder / ROUND_FILE
        deployer = Deployer(config.hand, checkpoints[-1], deploy)
        writer = DatasetWriter(folder / "deploy", {"source": DEPLOY_DATASET_SOURCE, "hand": config.hand,
                                                   "checkpoint_sha256": file_sha256(checkpoints[-1]),
                                                   "deploy": asdict(deploy), "schema_version": 1})
        records = _records_pass(deployer, refs, folder / "deploy", checkpoints[-1], progress,
                                f"round {r} deploy", writer)
        evaluations.append(records)
        if done.is_file():
            info = json.loads(done.read_text())
        else:
            examples = convert_engine_dataset(folder / "deploy", load_hand(config.hand),
                                              config.out / "examples" / f"round_{r}", image_size, deploy.seed)
            train_dir = folder / "train"
            resume = (train_dir / LAST_CHECKPOINT).is_file() and (train_dir / TRAINER_STATE).is_file()
            result = train(config.out / "examples", network, _train_config(checkpoints[-1], config), train_dir,
                           resume=resume, progress=progress, log=log, init_checkpoint=checkpoints[-1])
            info = {"round": r, "input_checkpoint": str(checkpoints[-1]),
                    "input_checkpoint_sha256": file_sha256(checkpoints[-1]),
                    "checkpoint": str(result.checkpoint), "checkpoint_sha256": file_sha256(result.checkpoint),
                    "kept_grasps": {s: sum(x["kept"] for x in records if x["split"] == s) for s in SPLITS},
                    "validated_grasps": {s: sum(x["validated"] for x in records if x["split"] == s) for s in SPLITS},
                    "example_files_added": len(examples), "train_wall_time_s": result.wall_time_s,
                    "train_history": result.history[-config.epochs:]}
            write_json(done, info)
        log(f"round {r}: kept {info['kept_grasps']['train']} grasps on train objects, "
            f"{info['kept_grasps']['unseen']} on unseen ones; checkpoint {info['checkpoint']}")
        rounds.append(info)
        checkpoints.append(Path(info["checkpoint"]))
    final = config.out / f"eval_round_{config.rounds}"
    evaluations.append(_records_pass(Deployer(config.hand, checkpoints[-1], replace(deploy, validate="top")), refs,
                                     final, checkpoints[-1], progress, "final eval"))
    results = {"format": SETTINGS_FORMAT, **config.settings(), "rounds": rounds,
               "checkpoints": [str(c) for c in checkpoints],
               "success": [_split_summary(e, config.hand) for e in evaluations],
               "wall_time_s": time.perf_counter() - t0}
    write_json(config.out / RESULTS_FILE, results)
    (config.out / TABLE_FILE).write_text(markdown_table(results) + "\n")
    return results


# ------------------------------------------------------------------ the table
TABLE_HEADERS = ("split", "category", "objects", "stable before", "stable after", "stable+functional before",
                 "stable+functional after")


def table_rows(results: dict[str, Any]) -> list[tuple]:
    """Rows like Web2Grasp's Table I: per split and category, success of c₀ (before) and c_R (after)."""
    before, after = results["success"][0], results["success"][-1]
    rows = []
    for split in SPLITS:
        b, a = before[split], after[split]
        for key in [*b["per_category"], "overall"]:
            bb = b["overall"] if key == "overall" else b["per_category"][key]
            aa = a["overall"] if key == "overall" else a["per_category"][key]
            if not bb["objects"]:
                continue
            rows.append((split, "all" if key == "overall" else key, bb["objects"],
                         percent_ci(bb["stable"]), percent_ci(aa["stable"]),
                         percent_ci(bb["stable_functional"]), percent_ci(aa["stable_functional"])))
    return rows


def markdown_table(results: dict[str, Any]) -> str:
    """``table.md``: the before/after table plus the grasps each round added."""
    lines = [f"# fgrasp augment: {results['hand']}, {len(results['rounds'])} round(s)", "",
             f"Success of the top-ranked of {results['deploy']['samples']} candidates ({results['deploy']['view']} view; "
             "floating hand, D(R,O) disturbance protocol, functional within 5 mm), before (starting checkpoint) "
             "and after the last round, with 95 % Wilson intervals.", "",
             "| " + " | ".join(TABLE_HEADERS) + " |", "|" + "---|" * len(TABLE_HEADERS)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table_rows(results)]
    lines += ["", "| round | kept on train objects | kept on unseen objects | validated | example files | "
              "fine-tune wall time |", "|---|---|---|---|---|---|"]
    for info in results["rounds"]:
        lines.append(f"| {info['round']} | {info['kept_grasps']['train']} | {info['kept_grasps']['unseen']} | "
                     f"{sum(info['validated_grasps'].values())} | {info['example_files_added']} | "
                     f"{info['train_wall_time_s']:.0f} s |")
    per_round = [f"c{r}: train {percent_ci(s['train']['overall']['stable_functional'])}, unseen "
                 f"{percent_ci(s['unseen']['overall']['stable_functional'])}" for r, s in enumerate(results["success"])]
    return "\n".join(lines + ["", "Stable + functional per checkpoint: " + "; ".join(per_round)])
