"""The data engine's generation loop: object → transfer → adaptation → validation → renders → shard.

:func:`make_object` does one object end to end and returns its shard arrays (pure function of
the settings, the category and the object index: the object's seed comes from
``(settings.seed, category, index)``, so a resumed run writes exactly what an uninterrupted one
would). :func:`generate_dataset` runs the objects that are not on disk yet — in this process
(``workers=0``), in local worker processes (``workers ≥ 1``), or as Ray tasks on a cluster
(``ray_address``; Ray is imported only then, and every node needs this package installed) —
and writes each result through :class:`grasp_data.dataset.DatasetWriter` as it arrives.
"""
from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from grasp_data.dataset import SCHEMA_VERSION, DatasetWriter, shard_name

#: Ray version to install for ``--ray-address`` (not a default dependency: ~hundreds of MB).
RAY_REQUIREMENT = "ray==2.60.0"
#: Collision geometry options of the validation scene.
COLLISIONS = ("coacd", "hull")


@dataclass(frozen=True)
class GenerateSettings:
    """Everything that determines an object's shard (stored in the dataset index).

    Attributes:
        hand: hand name (``config/hands/<hand>.yaml``).
        seed: dataset seed; object seeds derive from it, the category and the object index.
        grasps_per_object: adaptation batch size (grasps tried per object).
        iterations: adaptation steps.
        views: RGB-D renders per object.
        image_width, image_height: render size, pixels.
        collision: ``coacd`` (convex decomposition, cached) or ``hull`` (one convex piece, fast,
            fills concavities).
        functional_tolerance_m: validation's functional criterion tolerance, metres.
    """

    hand: str = "oymotion"
    seed: int = 0
    grasps_per_object: int = 32
    iterations: int = 150
    views: int = 4
    image_width: int = 320
    image_height: int = 240
    collision: str = "coacd"
    functional_tolerance_m: float = 0.005

    def __post_init__(self) -> None:
        if self.collision not in COLLISIONS:
            raise ValueError(f"collision must be one of {', '.join(COLLISIONS)}, got '{self.collision}'")
        if self.grasps_per_object < 1 or self.iterations < 0 or self.views < 0:
            raise ValueError("grasps_per_object must be ≥ 1, iterations and views ≥ 0")

    def to_json(self) -> dict[str, Any]:
        return dict(asdict(self), schema_version=SCHEMA_VERSION)


def object_seed(seed: int, category: str, index: int) -> int:
    """The generator seed of object ``index`` of ``category`` (stable across runs and machines)."""
    return int(np.random.SeedSequence([seed, zlib.crc32(category.encode()), index]).generate_state(1)[0])


@lru_cache(maxsize=4)
def _hand_model(name: str):
    """The prepared hand of this process (built once per worker)."""
    from grasp_data.adaptation import HandModel
    from grasp_planner.hands import load_hand

    return HandModel(load_hand(name))


def make_object(settings: GenerateSettings, category: str, index: int,
                validation_threads: int = 1) -> tuple[str, dict[str, Any]]:
    """Generate, adapt, validate and render object ``index`` of ``category``.

    Returns:
        ``(shard name, shard arrays)`` (:mod:`grasp_data.dataset` format; ``meta`` as a dict), or
        ``(shard name, error text)`` when the generator drew an invalid mesh for this seed (e.g. not
        watertight): that object is skipped, the run goes on.
    """
    import torch

    from grasp_data.adaptation import AdaptationConfig, adapt_grasps
    from grasp_data.demonstrations import load_demonstration
    from grasp_data.labelled_mesh import MeshValidationError
    from grasp_data.objects import generate
    from grasp_data.transfer import transfer_contacts

    torch.set_num_threads(1)
    seed = object_seed(settings.seed, category, index)
    try:
        instance = generate(category, seed)
    except MeshValidationError as exc:
        return shard_name(category, index), str(exc)
    demo = load_demonstration(category)
    transfer = transfer_contacts(demo, instance, seed=seed % 2**31)
    hand = _hand_model(settings.hand)
    grasps = adapt_grasps(hand, instance, transfer, AdaptationConfig(
        batch_size=settings.grasps_per_object, iterations=settings.iterations, seed=seed % 2**31))
    return shard_name(category, index), validated_shard(settings, instance, demo, grasps, index=index, seed=seed,
                                                        validation_threads=validation_threads)


def validated_shard(settings: GenerateSettings, instance, demo, grasps, *, index: int, seed: int,
                    validation_threads: int = 1, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate adapted ``grasps`` of ``instance`` in MuJoCo, render it, and assemble the shard.

    Shared by :func:`make_object` and the human-grasp import (:mod:`grasp_data.human_import`).

    Args:
        settings: collision, validation tolerance and render settings.
        instance: the labelled object (object frame).
        demo: the demonstration whose functional contacts the validator checks (None: none).
        grasps: the adapted batch (:class:`~grasp_data.adaptation.AdaptationResult`).
        index, seed: the object's index and seed (stored in ``meta``; the seed drives the renders).
        validation_threads: MjData stepped in parallel.
        meta: extra ``meta`` entries (e.g. ``source``).

    Returns:
        The shard arrays (:mod:`grasp_data.dataset` format; ``meta`` as a dict).
    """
    from grasp_data.collision import convex_decomposition
    from grasp_data.regions import category_regions
    from grasp_data.renders import RenderConfig, render_views
    from grasp_data.validation import FloatingHandScene, GraspValidator, ValidationConfig
    from sim_bridge.mesh_objects import mesh_object

    category = instance.category
    hand = _hand_model(settings.hand)
    if settings.collision == "coacd":
        spec = convex_decomposition(instance.mesh).spec
    else:
        spec = mesh_object(instance.mesh, name=f"{shard_name(category or 'object', index)}_{seed:x}_hull",
                           collision="hull")
    vconfig = ValidationConfig(functional_tolerance_m=settings.functional_tolerance_m, threads=validation_threads)
    validator = GraspValidator(FloatingHandScene(hand, instance, spec, vconfig), demo)
    t0 = time.perf_counter()
    outcomes = validator.validate(grasps)
    validation_s = time.perf_counter() - t0
    views = render_views(instance, settings.views, seed=seed % 2**31,
                         config=RenderConfig(width=settings.image_width, height=settings.image_height))
    kinds = ([r.kind for r in category_regions(category).regions] if category
             else ["body"] * len(instance.region_names))
    h, w = settings.image_height, settings.image_width
    meta = {"schema_version": SCHEMA_VERSION, "category": category or "object", "index": index, "seed": seed,
            "params": {k: (v.item() if isinstance(v, np.generic) else v) for k, v in instance.params.items()},
            "region_names": list(instance.region_names),
            "region_kinds": kinds, "hand": settings.hand,
            "joint_names": list(grasps.joint_names), "directions": list(vconfig.protocol.directions),
            "designated": validator.designated, "adaptation_time_s": grasps.wall_time_s,
            "validation_time_s": validation_s, "simulated": int(sum(o.simulated for o in outcomes)),
            **(meta or {})}
    n_dir = len(vconfig.protocol.directions)
    arrays = {
        "meta": meta,
        "mesh_vertices": np.asarray(instance.mesh.vertices, np.float64),
        "mesh_faces": np.asarray(instance.mesh.faces, np.int32),
        "face_labels": instance.face_labels,
        "grasp_root_pose": grasps.root_pose, "grasp_q": grasps.q, "grasp_energy": grasps.energy,
        "grasp_kept": np.array([o.kept for o in outcomes], bool),
        "grasp_held": np.array([o.held for o in outcomes], bool),
        "grasp_functional": np.array([o.functional for o in outcomes], bool),
        "grasp_reason": np.array([o.reason for o in outcomes], dtype=str),
        "grasp_max_displacement_m": np.array([o.max_displacement_m for o in outcomes]),
        "grasp_displacement_m": np.array([o.displacement_m or (np.nan,) * n_dir for o in outcomes]),
        "grasp_initial_penetration_m": np.array([o.initial_penetration_m for o in outcomes]),
        "render_rgb": np.array([v.rgb for v in views], np.uint8).reshape(-1, h, w, 3),
        "render_depth": np.array([v.depth for v in views], np.float32).reshape(-1, h, w),
        "render_mask": np.array([v.mask for v in views], bool).reshape(-1, h, w),
        "render_K": np.array([v.K for v in views]).reshape(-1, 3, 3),
        "render_T_world_camera": np.array([v.T_world_camera for v in views]).reshape(-1, 4, 4),
        "render_T_world_object": np.array([v.T_world_object for v in views]).reshape(-1, 4, 4),
    }
    return arrays


def _make_job(args: tuple) -> tuple[str, dict[str, Any]]:
    return make_object(*args)


@dataclass
class Summary:
    """What a :func:`generate_dataset` run produced.

    Attributes:
        tried, kept: category → grasps tried / kept over the dataset's shards of the run's
            categories (shards written by earlier runs included).
        objects_written, objects_skipped: shards written by this run / already on disk.
        bad_instances: shard name → why the generator's mesh for that seed was refused (no shard
            is written; a re-run draws the same mesh and skips it again).
        wall_time_s: wall-clock time of this run.
        adaptation_s: adaptation wall time per object (batch) written by this run.
        trials_per_s: validation throughput per object written by this run (simulated grasps /
            validation wall time).
    """

    tried: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    objects_written: int = 0
    objects_skipped: int = 0
    bad_instances: dict[str, str] = field(default_factory=dict)
    wall_time_s: float = 0.0
    adaptation_s: list[float] = field(default_factory=list)
    trials_per_s: list[float] = field(default_factory=list)

    def add(self, arrays: dict[str, Any]) -> None:
        """Count one shard written by this run (its timings and outcome reasons)."""
        meta = arrays["meta"]
        self.objects_written += 1
        self.adaptation_s.append(float(meta["adaptation_time_s"]))
        if meta["simulated"]:
            self.trials_per_s.append(meta["simulated"] / max(meta["validation_time_s"], 1e-9))
        for reason in arrays["grasp_reason"]:
            key = str(reason).split(":")[0]
            self.reasons[key] = self.reasons.get(key, 0) + 1

    def count_shards(self, writer: DatasetWriter, names: set[str]) -> None:
        """Grasps tried / kept per category over the dataset's shards ``names`` (earlier runs' too)."""
        for name, entry in writer.shards.items():
            if name in names:
                c = entry["category"]
                self.tried[c] = self.tried.get(c, 0) + entry["grasps_tried"]
                self.kept[c] = self.kept.get(c, 0) + entry["grasps_kept"]


def _local_results(jobs: list[tuple], workers: int) -> Iterator[tuple[str, dict]]:
    if workers == 0:
        for job in jobs:
            yield _make_job(job)
        return
    import multiprocessing

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_make_job, job) for job in jobs]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()


def import_ray():
    """The ``ray`` module; ImportError saying how to install it otherwise."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"--ray-address needs Ray, which is not installed: pip install {RAY_REQUIREMENT} "
                          "(on this machine and on every node of the cluster)") from None
    return ray


def ray_results(jobs: list[tuple], ray_address: str) -> Iterator[tuple[str, dict]]:
    """Run ``make_object`` jobs as Ray tasks (one CPU each) and yield results as they finish."""
    ray = import_ray()
    ray.init(address=ray_address, ignore_reinit_error=True)
    task = ray.remote(num_cpus=1)(_make_job)
    pending = [task.remote(job) for job in jobs]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)
    finally:
        for ref in pending:
            ray.cancel(ref)


def generate_dataset(settings: GenerateSettings, categories: Iterable[str], objects: int, out: str | Path, *,
                     workers: int = 0, ray_address: str | None = None, validation_threads: int = 1,
                     progress: bool = True,
                     results: Callable[[list[tuple]], Iterator[tuple[str, dict]]] | None = None) -> Summary:
    """Generate ``objects`` objects per category into dataset folder ``out`` (resuming).

    Args:
        settings: per-object settings (must match an existing dataset in ``out``).
        categories: object categories.
        objects: objects per category (indices 0 … objects − 1).
        out: dataset folder.
        workers: 0 = this process; ≥ 1 = that many local worker processes.
        ray_address: run on this Ray cluster instead (``auto``, ``ray://host:10001``, …).
        validation_threads: MjData stepped in parallel per object.
        progress: show a tqdm bar.
        results: replaces the executor (tests); gets the job list, yields ``(name, arrays)``.

    Raises:
        DatasetError / CorruptShardError: ``out`` holds another dataset, or a damaged shard.
        ImportError: ``ray_address`` without Ray installed.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    categories = list(categories)
    if ray_address and results is None:
        import_ray()                      # fail before any work when Ray is missing
    writer = DatasetWriter(Path(out), settings.to_json())
    summary = Summary()
    jobs = []
    for category in categories:
        for index in range(objects):
            if writer.done(shard_name(category, index)):
                summary.objects_skipped += 1
            else:
                jobs.append((settings, category, index, validation_threads))
    if results is None:
        results = (lambda j: ray_results(j, ray_address)) if ray_address else (lambda j: _local_results(j, workers))
    with tqdm(total=len(jobs), unit="object", desc=f"data {settings.hand}", disable=not progress) as bar:
        if jobs:
            for name, arrays in results(jobs):
                if isinstance(arrays, str):               # a bad generator draw: skip the object
                    summary.bad_instances[name] = arrays
                else:
                    writer.write(name, arrays)
                    summary.add(arrays)
                bar.update(1)
    summary.count_shards(writer, {shard_name(c, i) for c in categories for i in range(objects)})
    summary.wall_time_s = time.perf_counter() - t0
    return summary
