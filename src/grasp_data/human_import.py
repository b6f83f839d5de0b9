"""Human grasp records → retargeted, adapted and validated robot grasps, written as dataset shards.

For every record (:mod:`grasp_data.human_records`):

1. **contacts** — each human fingertip keypoint within ``contact_distance_m`` of the object
   surface touches it at the nearest surface point (with its normal and region); contacts on
   *avoid* regions are dropped. Fewer than two touching fingers: the record is unusable (no wrist
   pose can be pulled onto the object) and reported, nothing is written for it;
2. **retargeting** — all records of the run at once (:class:`grasp_data.retarget.Retargeter`,
   batched): wrist pose in the object frame + actuated joints, fitted to the human keypoints with
   the object in the cost (the hand kept out of it, the touching fingertips on its surface);
3. **adaptation** — a batch of ``grasps_per_object`` grasps starts at the retargeted one with
   the fingers opened by ``open_fraction`` (grasp 0 exactly there, the others with small noise
   on wrist and joints) and is optimised with CorDex's six
   terms (:func:`grasp_data.adaptation.adapt_grasps`); the human contacts are the contact-prior
   targets (one candidate per finger, confidence 1) instead of a transferred demonstration;
4. **validation and shard** — :func:`grasp_data.engine.validated_shard`: the disturbance protocol
   and the functional criterion, where the designated fingers are the human fingers touching a
   *functional* region (the record's contacts form a
   :class:`~grasp_data.demonstrations.Demonstration`), renders, one shard per record in the
   ordinary dataset format with ``meta.source = "human"``.

Shards are named ``human_<record file stem>_<entry:03d>_<8 hex of the record's sha256>``: a re-run skips
records already written (resume), and a changed record gets a new shard.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from grasp_data.adaptation import ObjectSamples
from grasp_data.demonstrations import Demonstration, FingerContact
from grasp_data.engine import GenerateSettings, Summary, _hand_model, validated_shard
from grasp_data.human_records import TIP_INDEX, HumanGrasp
from grasp_data.retarget import RetargetConfig, Retargeter
from grasp_data.transfer import ContactCandidate, TransferResult


@dataclass(frozen=True)
class HumanImportConfig:
    """Settings of the import beyond :class:`~grasp_data.engine.GenerateSettings`.

    Attributes:
        contact_distance_m: a human fingertip keypoint this close to the surface touches it (the
            keypoint sits inside the finger, ~8 mm under the skin).
        surface_samples: object surface samples for the contacts.
        init_rotation_sigma_rad, init_translation_sigma_m, init_joint_sigma_rad: noise of the
            adaptation batch around the retargeted grasp (grasp 0 has none).
        open_fraction: the seeds' fingers start this fraction of the way from the retargeted
            joints towards the hand's open pose (adaptation closes them onto the contacts).
        object_points: object surface samples of the retargeting's penetration and contact terms.
        retarget: retargeting weights and optimiser settings.
    """

    contact_distance_m: float = 0.02
    surface_samples: int = 20000
    init_rotation_sigma_rad: float = 0.05
    init_translation_sigma_m: float = 0.005
    init_joint_sigma_rad: float = 0.05
    open_fraction: float = 0.0
    object_points: int = 4096
    retarget: RetargetConfig = field(default_factory=RetargetConfig)

    def __post_init__(self) -> None:
        if not self.contact_distance_m > 0 or self.surface_samples < 100:
            raise ValueError(f"contact_distance_m must be > 0 (got {self.contact_distance_m}) and "
                             f"surface_samples ≥ 100 (got {self.surface_samples})")
        if min(self.init_rotation_sigma_rad, self.init_translation_sigma_m, self.init_joint_sigma_rad) < 0:
            raise ValueError("init sigmas must be ≥ 0")
        if not 0.0 <= self.open_fraction <= 1.0 or self.object_points < 16:
            raise ValueError(f"open_fraction must be in [0, 1] (got {self.open_fraction}) and object_points ≥ 16 "
                             f"(got {self.object_points})")


def shard_name_of(grasp: HumanGrasp) -> str:
    """The dataset shard name of a record (module docstring)."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", grasp.path.stem)
    return f"human_{stem}_{grasp.entry:03d}_{grasp.digest[:8]}"


def human_contacts(grasp: HumanGrasp, config: HumanImportConfig = HumanImportConfig()) -> list[FingerContact]:
    """The fingers whose human tip touches the object (step 1 of the module docstring)."""
    from grasp_data.regions import category_regions

    inst = grasp.instance
    pts, normals, labels = inst.sample_surface(config.surface_samples, seed=0)
    avoid = set(category_regions(inst.category).of_kind("avoid")) if inst.category else set()
    dist, idx = cKDTree(pts).query(grasp.keypoints_m[list(TIP_INDEX.values())])
    out = []
    for finger, d, i in zip(TIP_INDEX, dist, idx):
        region = inst.region_names[labels[i]]
        if d <= config.contact_distance_m and region not in avoid:
            out.append(FingerContact(finger, region, pts[i], normals[i]))
    return out


def as_demonstration(grasp: HumanGrasp, contacts: list[FingerContact]) -> Demonstration | None:
    """The record's contacts as a demonstration (for the validator's designated fingers); None
    for an object without a category (no functional regions)."""
    inst = grasp.instance
    if inst.category is None:
        return None
    return Demonstration(inst.category, inst.seed or 0, dict(inst.params), tuple(contacts))


def as_transfer(contacts: list[FingerContact]) -> TransferResult:
    """The contacts as adaptation targets: one candidate per finger, confidence 1."""
    return TransferResult({c.finger: (ContactCandidate(c.finger, c.point_m, c.normal, c.region, 1.0, 1),)
                           for c in contacts})


def seed_batch(root_pose: np.ndarray, q_act: np.ndarray, batch: int, limits: np.ndarray,
               config: HumanImportConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``batch`` start grasps around one retargeted grasp: (batch, 4, 4) poses, (batch, n_act)
    joints (row 0 unchanged; the others turned about the hand root origin, shifted, and with
    joint noise clipped to ``limits`` (n_act, 2))."""
    from scipy.spatial.transform import Rotation

    poses = np.repeat(root_pose[None], batch, axis=0)
    q = np.repeat(q_act[None], batch, axis=0)
    if batch > 1:
        R = Rotation.from_rotvec(rng.normal(0.0, config.init_rotation_sigma_rad, (batch - 1, 3))).as_matrix()
        poses[1:, :3, :3] = R @ root_pose[:3, :3]
        poses[1:, :3, 3] += rng.normal(0.0, config.init_translation_sigma_m, (batch - 1, 3))
        q[1:] = np.clip(q[1:] + rng.normal(0.0, config.init_joint_sigma_rad, q[1:].shape), limits[:, 0], limits[:, 1])
    return poses, q


@dataclass
class ImportSummary:
    """What :func:`import_human` did.

    Attributes:
        records: records given.
        already_done: records whose shard was on disk.
        retargeted: records retargeted by this run.
        unusable: record name → why it was not imported.
        retarget_time_s: wall time of the batched retargeting.
        tip_error_m: per retargeted record, mean robot fingertip distance from its scaled human
            target after retargeting, metres.
        contact_gap_m: per retargeted record, mean |distance| from the object surface of the
            robot fingertips whose human finger touches it, metres.
        shards: the engine's counters (grasps tried / kept per category over the records' shards,
            outcome reasons, timings).
    """

    records: int = 0
    already_done: int = 0
    retargeted: int = 0
    unusable: dict[str, str] = field(default_factory=dict)
    retarget_time_s: float = 0.0
    tip_error_m: list[float] = field(default_factory=list)
    contact_gap_m: list[float] = field(default_factory=list)
    shards: Summary = field(default_factory=Summary)

    @property
    def tried(self) -> int:
        return sum(self.shards.tried.values())

    @property
    def kept(self) -> int:
        return sum(self.shards.kept.values())


def import_settings(settings: GenerateSettings, config: HumanImportConfig) -> dict[str, Any]:
    """The dataset index's ``settings`` of an import (a resumed import must match them)."""
    return dict(settings.to_json(), source="human", human_import=asdict(config))


def import_human(grasps: list[HumanGrasp], settings: GenerateSettings, out: str | Path,
                 config: HumanImportConfig = HumanImportConfig(), *, validation_threads: int = 1,
                 progress: bool = True) -> ImportSummary:
    """Retarget, adapt, validate and store ``grasps`` (checked records) into dataset ``out``.

    Args:
        grasps: records (:func:`grasp_data.human_records.load_records`).
        settings: hand, grasps per record (``grasps_per_object``), adaptation iterations, renders,
            collision geometry, functional tolerance.
        out: dataset folder (created, or resumed with the same settings).
        config: contact distance, seeding noise, retargeting settings.
        validation_threads: MjData stepped in parallel per record.
        progress: show a tqdm bar.

    Raises:
        DatasetError / CorruptShardError: ``out`` holds another dataset, or a damaged shard.
    """
    import torch
    from tqdm import tqdm

    from grasp_data.adaptation import AdaptationConfig, adapt_grasps
    from grasp_data.dataset import DatasetWriter

    t0 = time.perf_counter()
    torch.set_num_threads(1)
    writer = DatasetWriter(Path(out), import_settings(settings, config))
    summary = ImportSummary(records=len(grasps))
    names = [shard_name_of(g) for g in grasps]
    todo = []
    for g, name in zip(grasps, names):
        if writer.done(name):
            summary.already_done += 1
            continue
        contacts = human_contacts(g, config)
        if len(contacts) < 2:
            summary.unusable[g.name] = (f"{len(contacts)} fingertip(s) within {config.contact_distance_m * 1e3:.0f} mm "
                                        "of the object; at least 2 are needed")
            continue
        todo.append((g, name, contacts))
    hand = _hand_model(settings.hand)
    if todo:
        retargeter = Retargeter(hand, config=config.retarget)
        contact_mask = np.array([[f in {c.finger for c in cs} for f in retargeter.fingers] for _, _, cs in todo])
        objects = [ObjectSamples.of(g.instance, config.object_points) for g, _, _ in todo]
        result = retargeter.retarget(np.array([g.keypoints_m for g, _, _ in todo]), contact_mask, objects)
        summary.retargeted = len(todo)
        summary.retarget_time_s = result.wall_time_s
        summary.tip_error_m = result.tip_error_m.mean(axis=1).tolist()
        summary.contact_gap_m = [float(np.abs(d[m]).mean()) for d, m in zip(result.surface_distance_m, contact_mask)]
    with tqdm(total=len(todo), unit="record", desc=f"human {settings.hand}", disable=not progress) as bar:
        for i, (g, name, contacts) in enumerate(todo):
            seed = int(g.digest[:8], 16)
            rng = np.random.default_rng([settings.seed, seed])
            q_seed = result.q_act[i] + config.open_fraction * (hand.q_open - result.q_act[i])
            init = seed_batch(result.root_pose[i], q_seed, settings.grasps_per_object,
                              hand.act_limits.numpy(), config, rng)
            grasps_i = adapt_grasps(hand, g.instance, as_transfer(contacts), AdaptationConfig(
                batch_size=settings.grasps_per_object, iterations=settings.iterations, seed=seed % 2**31), init=init)
            meta = {"source": "human", "record": str(g.path), "record_entry": g.entry, "record_source": g.source,
                    "handedness": g.handedness, "human_contacts": {c.finger: c.region for c in contacts},
                    "retarget": {"scale": float(result.scale[i]), "tip_error_m": result.tip_error_m[i].tolist(),
                                 "penetration_m": float(result.penetration_m[i]),
                                 "surface_distance_m": result.surface_distance_m[i].tolist(),
                                 "root_pose": result.root_pose[i].tolist(), "q": result.q[i].tolist(),
                                 "time_s": result.wall_time_s / len(todo)}}
            arrays = validated_shard(settings, g.instance, as_demonstration(g, contacts), grasps_i, index=g.entry,
                                     seed=seed, validation_threads=validation_threads, meta=meta)
            writer.write(name, arrays)
            summary.shards.add(arrays)
            bar.update(1)
    summary.shards.count_shards(writer, set(names))
    summary.shards.objects_skipped = summary.already_done
    summary.shards.wall_time_s = time.perf_counter() - t0
    return summary
