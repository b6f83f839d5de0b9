"""``fgrasp eval``: success rates of the whole pipeline over many objects, poses and seeds.

For every object (catalogue names, ``all``, or mesh files) and every trial, the object is put at
a random pose on the table (yaw uniform in ±``yaw_range_rad``, footprint centre uniform within
±``xy_jitter_m`` of ``xy_center``; drawn from ``seed``, the trial index and the object name) and
:func:`functional_grasp.eval_trial.run_trial` runs render → perception → planner → execution →
disturbance test in process (no ROS). Trials run in ``workers`` spawned processes (each owns its
worlds and OpenGL contexts); a trial's result depends only on its task, so the same seed gives
the same results with any number of workers.

Writes into ``out_dir`` (each file atomically):

- ``results.json`` — config, per-object and overall summaries (success with 95 % Wilson
  intervals, failure counts by reason, stage latency median/p95), every trial (with the grasp
  backend that planned it), and ``grasp_backend``: what was asked for and which backend(s) really
  planned (:func:`backend_summary`; checkpoint path and SHA-256 for the network).
- ``gallery.png`` — the predicted grasp of every trial (robot drawn at the joint goal; the scene
  as perceived when no goal was produced), captioned with object, trial and outcome.
"""
from __future__ import annotations

import json
import math
import os
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from functional_grasp.eval_trial import TrialResult, TrialTask

#: Schema version of results.json (bump when a key changes meaning).
RESULTS_SCHEMA = 1
RESULTS_FILE, GALLERY_FILE = "results.json", "gallery.png"
#: Exit codes of :func:`functional_grasp.cli` ``eval``.
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class EvalInputError(ValueError):
    """Bad evaluation input (unknown object, unreadable mesh or regions file, bad option)."""


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation run (validated on construction; SI units).

    Attributes:
        objects: catalogue names, or ``("all",)`` for the whole catalogue; may be empty when
            ``meshes`` is given.
        meshes: OBJ/STL/PLY files evaluated as objects (named by their file stem).
        scale: vertex scale of ``meshes`` to metres.
        regions: per-vertex functional/avoidance labels of the one mesh in ``meshes``
            (:func:`sim_bridge.mesh_objects.load_regions` documents the format).
        collision: collision geometry of ``meshes``: ``hull`` or ``coacd``.
        trials: trials per object.
        seed: seed of the object poses.
        hand: hand description name.
        workers: parallel worker processes (1 = in this process).
        out_dir: where results.json and gallery.png go.
        xy_center: metres, base frame: centre of the object placements.
        xy_jitter_m: placements are uniform within ± this in x and y.
        yaw_range_rad: yaw uniform within ± this.
        camera_width / camera_height: rendered RGB-D frame, pixels.
        gallery: render thumbnails and write gallery.png.
        grasp_backend: the planner's grasp predictor, ``optimiser`` | ``network`` (None: the
            ``grasp_planner`` section of config/functional_grasp.yaml decides).
        grasp_checkpoint: network checkpoint (None: the params file's); must exist, be a network
            checkpoint for ``hand``, and the backend be ``network``; stored as an absolute path.
    """

    objects: tuple[str, ...] = ("all",)
    meshes: tuple[Path, ...] = ()
    scale: float = 1.0
    regions: Path | None = None
    collision: str = "hull"
    trials: int = 10
    seed: int = 0
    hand: str = "shadow"
    workers: int = 1
    out_dir: Path = Path("out/eval")
    xy_center: tuple[float, float] = (0.5, 0.0)
    xy_jitter_m: float = 0.05
    yaw_range_rad: float = math.pi
    camera_width: int = 640
    camera_height: int = 480
    gallery: bool = True
    grasp_backend: str | None = None
    grasp_checkpoint: str | None = None

    def __post_init__(self) -> None:
        from functional_grasp.grasp_backend_args import GraspBackendError, planner_overrides
        from grasp_planner.hands import available_hands

        put = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen
        put("objects", tuple(self.objects))
        put("meshes", tuple(Path(m) for m in self.meshes))
        put("out_dir", Path(self.out_dir))
        if not self.objects and not self.meshes:
            raise EvalInputError("nothing to evaluate: name objects (--objects mug drill | all) or a --mesh file")
        if self.regions is not None and len(self.meshes) != 1:
            raise EvalInputError(f"--regions labels the vertices of one mesh; got {len(self.meshes)} --mesh files")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise EvalInputError(f"--scale must be a finite number > 0, got {self.scale}")
        if self.trials < 1 or self.workers < 1:
            raise EvalInputError(f"trials and workers must be >= 1, got {self.trials} and {self.workers}")
        if self.hand not in available_hands():
            raise EvalInputError(f"unknown hand '{self.hand}'; config/hands/ has: {', '.join(available_hands())}")
        if not (self.xy_jitter_m >= 0 and 0 <= self.yaw_range_rad <= math.pi):
            raise EvalInputError("xy_jitter_m must be >= 0 and yaw_range_rad in 0..pi")
        if not (16 <= self.camera_width <= 4096 and 16 <= self.camera_height <= 4096):
            raise EvalInputError(f"camera size {self.camera_width}x{self.camera_height} must be 16..4096 pixels")
        try:
            overrides = planner_overrides(self.hand, self.grasp_backend, self.grasp_checkpoint)
        except GraspBackendError as exc:
            raise EvalInputError(str(exc)) from None
        put("grasp_checkpoint", overrides.get("grasp_checkpoint"))

    def planner_overrides(self) -> dict[str, str]:
        """The ``grasp_planner`` parameter overrides of the grasp backend choice (empty: the params file decides)."""
        return {k: v for k, v in (("grasp_backend", self.grasp_backend), ("grasp_checkpoint", self.grasp_checkpoint))
                if v is not None}


@dataclass(frozen=True)
class PreparedObject:
    """An object ready for trials: its name, and for meshes the spec and regions to register."""

    name: str
    source: str
    spec: Any = None      # sim_bridge.objects.ObjectSpec of a mesh (registered in each worker)
    regions: Any = None   # sim_bridge.mesh_objects.MeshRegions or None


def prepare_objects(config: EvalConfig) -> list[PreparedObject]:
    """Resolve names and load meshes (+ regions), registering them in this process.

    Raises:
        EvalInputError: unknown object name, bad mesh or regions file, duplicate names.
    """
    from functional_grasp.eval_trial import register_regions
    from sim_bridge.mesh_objects import MeshLoadError, load_mesh, load_regions, mesh_object
    from sim_bridge.objects import OBJECTS

    catalogue = [n for n in OBJECTS if not Path(OBJECTS[n].visual_mesh or "").is_absolute()]
    names: list[str] = []
    for name in config.objects:
        if name == "all":
            names.extend(n for n in catalogue if n not in names)
        elif name in catalogue:
            if name not in names:
                names.append(name)
        else:
            raise EvalInputError(f"unknown object '{name}'; the catalogue has: {', '.join(catalogue)} "
                                 "(or 'all'; use --mesh PATH for a mesh file)")
    prepared = [PreparedObject(n, "catalogue") for n in names]
    for path in config.meshes:
        try:
            spec = mesh_object(path, config.scale, name=_free_name(path.stem, names),
                               collision=config.collision)
            regions = (load_regions(config.regions, load_mesh(path, config.scale))
                       if config.regions is not None else None)
        except MeshLoadError as exc:
            raise EvalInputError(str(exc)) from None
        names.append(spec.name)
        if regions is not None:
            register_regions(spec.name, regions)
        prepared.append(PreparedObject(spec.name, str(path), spec, regions))
    return prepared


def _free_name(stem: str, taken: Sequence[str]) -> str:
    from sim_bridge.objects import OBJECTS

    name = stem
    while name in taken or (name in OBJECTS and not Path(OBJECTS[name].visual_mesh or "").is_absolute()):
        name += "_mesh"
    return name


def trial_seed(seed: int, object_name: str, trial: int) -> int:
    """The seed of one trial: a function of the run's seed, the object's name and the trial index."""
    return int(np.random.SeedSequence([seed, zlib.crc32(object_name.encode()), trial]).generate_state(1)[0])


def make_tasks(config: EvalConfig, objects: Sequence[PreparedObject]) -> list[TrialTask]:
    """Every trial of the run, object-major, with its pose drawn from its own seed."""
    tasks = []
    for obj in objects:
        for trial in range(config.trials):
            s = trial_seed(config.seed, obj.name, trial)
            rng = np.random.default_rng(s)
            dx, dy = rng.uniform(-config.xy_jitter_m, config.xy_jitter_m, size=2)
            yaw = float(rng.uniform(-config.yaw_range_rad, config.yaw_range_rad))
            tasks.append(TrialTask(object=obj.name, trial=trial, seed=s, hand=config.hand,
                                   xy=(config.xy_center[0] + float(dx), config.xy_center[1] + float(dy)),
                                   yaw_rad=yaw, camera_width=config.camera_width,
                                   camera_height=config.camera_height, thumbnail=config.gallery,
                                   planner_params=tuple(sorted(config.planner_overrides().items()))))
    return tasks


def _init_worker(objects: Sequence[PreparedObject]) -> None:
    """Worker start-up: register the mesh objects and their regions in this process."""
    from functional_grasp.eval_trial import register_regions
    from sim_bridge.objects import register_object

    os.environ.setdefault("MUJOCO_GL", "egl")
    for obj in objects:
        if obj.spec is not None:
            register_object(obj.spec)
        if obj.regions is not None:
            register_regions(obj.name, obj.regions)


def _run_in_worker(task: TrialTask) -> TrialResult:
    from functional_grasp.eval_trial import run_trial

    return run_trial(task)


def run_trials(tasks: Sequence[TrialTask], objects: Sequence[PreparedObject], workers: int,
               on_result: Callable[[TrialResult], None] | None = None) -> list[TrialResult]:
    """Run ``tasks`` in this process (``workers == 1``) or in spawned worker processes.

    Results come back in task order. A worker that dies marks its unfinished trials ``error``.
    """
    from functional_grasp.eval_trial import close_process_cache, run_trial

    results: dict[int, TrialResult] = {}
    if workers <= 1 or len(tasks) <= 1:
        try:
            for i, task in enumerate(tasks):
                results[i] = run_trial(task)
                if on_result:
                    on_result(results[i])
        finally:
            close_process_cache()
        return [results[i] for i in range(len(tasks))]

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx,
                               initializer=_init_worker, initargs=(list(objects),))
    try:
        futures = {pool.submit(_run_in_worker, t): i for i, t in enumerate(tasks)}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                results[i] = fut.result()
            except BrokenProcessPool as exc:
                t = tasks[i]
                results[i] = TrialResult(object=t.object, trial=t.trial, seed=t.seed, xy=t.xy,
                                         yaw_rad=t.yaw_rad, outcome="error",
                                         detail=f"worker process died: {exc}")
            if on_result:
                on_result(results[i])
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [results[i] for i in range(len(tasks))]


def build_results(config: EvalConfig, objects: Sequence[PreparedObject], trials: Sequence[TrialResult],
                  wall_s: float, complete: bool = True) -> dict:
    """The content of results.json (plain JSON types)."""
    from functional_grasp.demo import json_safe, versions
    from functional_grasp.eval_stats import summarize
    from sim_bridge.evaluation import DisturbanceProtocol

    rows = [t.to_dict() for t in trials]
    functional = [o.name for o in objects if o.regions is not None]
    per_object = {}
    for obj in objects:
        mine = [r for r in rows if r["object"] == obj.name]
        per_object[obj.name] = {"source": obj.source, "functional_regions": obj.regions is not None,
                                **summarize(mine, functional)}
    cfg = asdict(config)
    protocol = asdict(DisturbanceProtocol())
    return json_safe({
        "schema": RESULTS_SCHEMA,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "complete": complete,
        "config": {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if k == "meshes" else v)
                   for k, v in cfg.items()},
        "protocol": {"simulator": "MuJoCo", **protocol},
        "objects": per_object,
        "overall": summarize(rows, functional),
        "grasp_backend": backend_summary(config, rows),
        "trials": rows,
        "wall_time_s": wall_s,
        "trials_per_s": (len(rows) / wall_s) if wall_s > 0 else None,
        "outputs": {"results": RESULTS_FILE, "gallery": GALLERY_FILE if config.gallery else None},
        "versions": versions(),
    })


def backend_summary(config: EvalConfig, rows: Sequence[dict]) -> dict:
    """Which grasp backend was asked for and which really planned the trials (``results.json`` ``grasp_backend``).

    Args:
        config: the run (its command-line choice; None fields = the params file's).
        rows: trial dicts (:meth:`TrialResult.to_dict`); trials that never reached the planner carry no backend.

    Returns:
        ``{"command_line": {"grasp_backend", "grasp_checkpoint"}, "planned_by": [{"backend", "checkpoint",
        "checkpoint_sha256", "fallback_reason", "requested", "trials"}, ...]}``: one entry per distinct
        predictor, with the number of trials it planned.
    """
    planned: dict[str, dict] = {}
    for row in rows:
        info = row.get("grasp_backend")
        if info:
            key = json.dumps(info, sort_keys=True)
            planned.setdefault(key, {**info, "trials": 0})["trials"] += 1
    return {"command_line": {"grasp_backend": config.grasp_backend, "grasp_checkpoint": config.grasp_checkpoint},
            "planned_by": list(planned.values())}


def write_outputs(config: EvalConfig, results: dict, trials: Sequence[TrialResult]) -> None:
    """results.json and (if enabled) gallery.png into ``config.out_dir``, each atomically."""
    from functional_grasp.demo import atomic_write_bytes
    from functional_grasp.eval_gallery import gallery_png
    from functional_grasp.eval_stats import percent_ci

    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    if config.gallery:
        items = [(t.object, t.trial, t.outcome, t.detail, t.thumbnail) for t in trials]
        planned_by = ", ".join(sorted({p["backend"] for p in results["grasp_backend"]["planned_by"]})) or "no"
        title = (f"{config.hand} hand, {planned_by} grasps, seed {config.seed}: success "
                 f"{percent_ci(results['overall']['success'])}; hand drawn at the predicted grasp")
        atomic_write_bytes(out / GALLERY_FILE, gallery_png(items, title))
    atomic_write_bytes(out / RESULTS_FILE,
                       (json.dumps(results, indent=2, allow_nan=False) + "\n").encode())


def run_eval(config: EvalConfig, progress: bool = True) -> dict:
    """Prepare the objects, run every trial (tqdm progress bar), write the outputs; the results dict.

    Raises:
        EvalInputError: bad objects/meshes/regions (nothing is run or written then).
        KeyboardInterrupt: after writing the trials finished so far (``complete`` false).
    """
    from tqdm import tqdm

    os.environ.setdefault("MUJOCO_GL", "egl")
    objects = prepare_objects(config)
    tasks = make_tasks(config, objects)
    done: list[TrialResult] = []
    t0 = time.perf_counter()
    with tqdm(total=len(tasks), desc="fgrasp eval", unit="trial", disable=not progress,
              dynamic_ncols=True) as bar:
        def on_result(r: TrialResult) -> None:
            done.append(r)
            bar.update(1)
            bar.set_postfix(success=f"{sum(x.success for x in done)}/{len(done)}", last=f"{r.object}:{r.outcome}")

        try:
            trials = run_trials(tasks, objects, config.workers, on_result)
        except KeyboardInterrupt:
            order = {(t.object, t.trial): i for i, t in enumerate(tasks)}
            partial = sorted(done, key=lambda r: order[(r.object, r.trial)])
            write_outputs(config, build_results(config, objects, partial, time.perf_counter() - t0,
                                                complete=False), partial)
            raise
    results = build_results(config, objects, trials, time.perf_counter() - t0)
    write_outputs(config, results, trials)
    return results


def summary_rows(results: dict) -> list[tuple]:
    """Rows of the printed table: per object and overall."""
    from functional_grasp.eval_stats import percent_ci

    def row(name: str, s: dict) -> tuple:
        fails = ", ".join(f"{k} {v}" for k, v in s["failures"].items() if v) or "-"
        lat = s["latency"]
        plan = sum((lat[k]["median_s"] or 0.0) for k in ("synthesis", "ik", "motion_plan"))
        return (name, s["trials"], percent_ci(s["stable"]), percent_ci(s["stable_functional"]), fails,
                lat["perception"]["median_s"], plan if lat["synthesis"]["n"] else None)

    rows = [row(n, s) for n, s in results["objects"].items()]
    rows.append(row("overall", results["overall"]))
    return rows


SUMMARY_HEADERS = ("object", "trials", "stable [95% CI]", "stable+functional", "failures",
                   "perception s", "planning s")


def latency_rows(results: dict) -> list[tuple]:
    """Rows of the stage-latency table (overall)."""
    return [(stage, v["n"], v["median_s"], v["p95_s"]) for stage, v in results["overall"]["latency"].items()]
