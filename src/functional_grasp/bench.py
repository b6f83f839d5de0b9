"""``fgrasp bench``: time the stack's parts on this machine, in this run (no stored numbers).

Sections (each a function returning a flat dict of numbers whose key ends with its unit):

- ``kinematics`` — :func:`grasp_planner.bench_kinematics.run`: IK success rate and solve times,
  batched IK throughput, torch hand FK time per hand (1 and 1024 configurations, all points).
- ``perception`` — the tabletop segmenter on a rendered simulator RGB-D frame, repeated.
- ``sim`` — physics steps per second of the full scene, RGB-D render time, one disturbance test.
- ``sim`` — also disturbance tests per second (each test = 6 direction trials).
- ``planner`` — :meth:`GraspPlanner.plan` on the segmented simulator cloud: total and per stage
  (median, p95), grasps per second.
- ``eval`` — :mod:`functional_grasp.eval_bench`: full-pipeline trials per second with 1 and 2
  worker processes, their ratio, per-stage latency over random poses.
- ``data`` — :mod:`grasp_data.bench_data`: disturbance trials per second per hand (Shadow,
  OYMotion, Inspire; batched ``mujoco.rollout`` vs a naive ``mj_step`` loop, same run), grasps
  validated per second with early stop of decided trials, adaptation time per batch, kept
  fraction per category.
- ``install`` — size of the venv and of the repository checkout, and the peak memory of a bare
  Python process of this project (the floor under every section's peak).

The simulator scene is the one the ``sim`` graph builds (same camera pose and object placement,
see :func:`functional_grasp.demo.sim_scene_config`). By default every section runs in a fresh
subprocess and reports its own peak memory (``peak_rss_mb``, the process's RSS high-water mark,
interpreter and imports included); ``isolate=False`` runs them in this process, sharing one
scene, without memory figures. Keys ending in ``_x`` are ratios (``a_vs_b_x`` = a / b).
"""
from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

#: Sections in the order they run.
SECTIONS = ("kinematics", "perception", "sim", "planner", "network", "eval", "data", "install")
#: Unit shown for a metric, by the suffix of its key.
_UNIT_SUFFIXES = (("_per_s", "1/s"), ("_ms", "ms"), ("_us", "µs"), ("_s", "s"), ("_m", "m"),
                  ("_kg", "kg"), ("_rate", "fraction"), ("_fraction", "fraction"), ("_mb", "MB"),
                  ("_x", "ratio"))
#: Comparison points of the ``_x`` ratios: perception target (README) and DESIGN.md's render time, ms.
PERCEPTION_TARGET_MS = 150.0
RENDER_DESIGN_MS = 90.0
#: Prefix of the line a section subprocess prints its metrics on (JSON).
_SECTION_RESULT_PREFIX = "FGRASP_BENCH_SECTION "
#: Wall-clock limit of one section subprocess, seconds.
SECTION_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of one benchmark run.

    Attributes:
        object: simulator object for the perception, sim and planner sections.
        hand: hand description name.
        quick: small sample sizes (seconds instead of minutes; for tests and smoke checks).
        ik_targets: reachable IK targets of the kinematics section.
        segment_runs: segmentations of the same frame.
        physics_steps: physics steps timed in the sim section.
        render_runs: RGB-D renders timed in the sim section.
        plan_runs: planner calls on the same cloud.
        disturbance_runs: disturbance tests timed in the sim section.
        eval_trials: full-pipeline trials of the eval section (per worker count).
        seed: seed of the IK target generator and of the eval section's poses.
    """

    object: str = "mug"
    hand: str = "shadow"
    quick: bool = False
    ik_targets: int = 1000
    segment_runs: int = 20
    physics_steps: int = 5000
    render_runs: int = 10
    plan_runs: int = 5
    disturbance_runs: int = 3
    eval_trials: int = 4
    seed: int = 0

    @classmethod
    def make(cls, quick: bool = False, **kwargs: Any) -> "BenchConfig":
        """Full sizes, or the quick ones when ``quick``; ``kwargs`` override either."""
        sizes = (dict(ik_targets=50, segment_runs=3, physics_steps=500, render_runs=2, plan_runs=1,
                      disturbance_runs=1, eval_trials=2) if quick else {})
        return cls(quick=quick, **{**sizes, **kwargs})

    def __post_init__(self) -> None:
        for name in ("ik_targets", "segment_runs", "physics_steps", "render_runs", "plan_runs",
                     "disturbance_runs", "eval_trials"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def unit_of(key: str) -> str:
    """Unit of a metric from its key suffix (``median_ms`` → ``ms``); empty for counts."""
    for suffix, unit in _UNIT_SUFFIXES:
        if key.endswith(suffix):
            return unit
    return ""


def _stats(values: Sequence[float], prefix: str, unit: str) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {f"{prefix}median_{unit}": float(np.median(arr)), f"{prefix}p95_{unit}": float(np.percentile(arr, 95)),
            f"{prefix}max_{unit}": float(np.max(arr))}


class _Scene:
    """The simulated scene, a rendered frame and its segmentation, built on first use."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self._world = None
        self._frame = None
        self._cloud = None

    @property
    def world(self):
        if self._world is None:
            from functional_grasp.demo import sim_scene_config
            from sim_bridge.world import SimWorld

            t0 = time.perf_counter()
            self._world = SimWorld(sim_scene_config(self.config.object, self.config.hand))
            self.build_s = time.perf_counter() - t0
            self._world.step(int(round(0.2 / self._world.model.opt.timestep)))  # let the object settle
        return self._world

    def frame(self):
        """(rgb, depth, perception intrinsics, T_base_camera) of one rendered frame."""
        if self._frame is None:
            from grasp_perception.camera import CameraIntrinsics

            f = self.world.render_rgbd()
            k = f.intrinsics
            self._frame = (f.rgb, f.depth, CameraIntrinsics(width=k.width, height=k.height, fx=k.fx,
                                                            fy=k.fy, cx=k.cx, cy=k.cy),
                           f.T_base_camera_optical)
        return self._frame

    def segmenter(self):
        return build_segmenter()

    def cloud(self) -> np.ndarray:
        """(N, 3) float64 object points, metres, base frame."""
        if self._cloud is None:
            rgb, depth, k, T = self.frame()
            self._cloud = np.asarray(self.segmenter().segment(rgb, depth, k, T).points, dtype=float)
        return self._cloud

    def close(self) -> None:
        if self._world is not None:
            self._world.close()


def bench_kinematics(config: BenchConfig, scene: _Scene) -> dict[str, float]:
    """IK benchmark of :mod:`grasp_planner.bench_kinematics` with ``config.ik_targets`` targets."""
    from grasp_planner import bench_kinematics

    fk_repeats = 5 if config.quick else bench_kinematics.FK_REPEATS
    return {k: float(v) for k, v in bench_kinematics.run(n=config.ik_targets, seed=config.seed,
                                                         fk_repeats=fk_repeats).items()}


def bench_perception(config: BenchConfig, scene: _Scene) -> dict[str, float]:
    """Segment one rendered frame ``segment_runs`` times: wall time and per-stage medians (ms)."""
    rgb, depth, k, T = scene.frame()
    seg = scene.segmenter()
    times_ms, stages, n_points = [], {}, 0
    for _ in range(config.segment_runs):
        t0 = time.perf_counter()
        res = seg.segment(rgb, depth, k, T)
        times_ms.append((time.perf_counter() - t0) * 1e3)
        n_points = len(res.points)
        for name, ms in res.timings_ms.items():
            stages.setdefault(name, []).append(ms)
    out = {"runs": float(config.segment_runs), "image_width": float(k.width), "image_height": float(k.height),
           "object_points": float(n_points), **_stats(times_ms, "", "ms")}
    out.update({f"stage_{name}_median_ms": float(np.median(v)) for name, v in stages.items()})
    out["median_vs_target_150ms_x"] = out["median_ms"] / PERCEPTION_TARGET_MS
    return out


def bench_sim(config: BenchConfig, scene: _Scene) -> dict[str, float]:
    """Physics steps/s of the full scene, RGB-D render time, disturbance tests per second.

    The disturbance tests run on the object resting on the table (no grasp: the hand-held case
    is timed by the ``eval`` section's ``disturbance`` stage).
    """
    from sim_bridge.evaluation import run_disturbance_test

    world = scene.world
    out = {"scene_build_s": float(scene.build_s)}
    world.render_rgbd()  # the first render creates the OpenGL context; not timed
    t0 = time.perf_counter()
    world.step(config.physics_steps)
    dt = time.perf_counter() - t0
    steps_per_s = config.physics_steps / dt
    out.update({"physics_steps": float(config.physics_steps), "physics_steps_per_s": steps_per_s,
                "max_real_time_factor": steps_per_s * float(world.model.opt.timestep)})
    render_ms = []
    for _ in range(config.render_runs):
        t0 = time.perf_counter()
        world.render_rgbd()
        render_ms.append((time.perf_counter() - t0) * 1e3)
    out.update(_stats(render_ms, "rgbd_render_", "ms"))
    out["rgbd_render_median_vs_design_90ms_x"] = out["rgbd_render_median_ms"] / RENDER_DESIGN_MS
    walls = []
    for _ in range(config.disturbance_runs):
        result = run_disturbance_test(world)
        walls.append(float(result.wall_time_s))
    out.update({"disturbance_test_wall_median_s": float(np.median(walls)),
                "disturbance_test_sim_s": float(result.sim_time_s),
                "disturbance_tests_per_s": len(walls) / sum(walls),
                "disturbance_direction_trials_per_s": len(walls) * len(result.displacement_m) / sum(walls)})
    return out


def build_segmenter():
    """The segmenter configured from the ``grasp_perception`` parameters of the ``sim`` graph."""
    from functional_grasp.demo import node_parameters
    from grasp_perception.segmentation import SegmentationConfig, make_segmenter

    p = node_parameters("sim", "grasp_perception")
    d = SegmentationConfig()
    cfg = SegmentationConfig(
        workspace_min_m=tuple(p.get("workspace_min_xyz", d.workspace_min_m)),
        workspace_max_m=tuple(p.get("workspace_max_xyz", d.workspace_max_m)),
        voxel_size_m=float(p.get("voxel_size_m", d.voxel_size_m)),
        plane_distance_m=float(p.get("plane_distance_m", d.plane_distance_m)),
        cluster_tolerance_m=float(p.get("cluster_tolerance_m", d.cluster_tolerance_m)),
        min_cluster_points=int(p.get("min_cluster_points", d.min_cluster_points)),
        target=str(p.get("target", d.target)),
        target_point_m=tuple(p.get("target_point", d.target_point_m)),
        target_index=int(p.get("target_index", d.target_index)))
    return make_segmenter(str(p.get("segmenter", "tabletop")), cfg)


def build_planner(hand_name: str, planner_params: dict | None = None):
    """A GraspPlanner configured from the ``grasp_planner`` parameters of the ``sim`` graph.

    Args:
        hand_name: the hand.
        planner_params: ``grasp_planner`` overrides applied last, as the launcher applies them
            (e.g. ``{"grasp_backend": "network"}``); a network fallback warns via :func:`warnings.warn`.
    """
    from functional_grasp.demo import node_parameters
    from grasp_planner.hands import load_hand
    from grasp_planner.pipeline import GraspPlanner, PlannerConfig, builtin_backend

    from grasp_planner.franka_ik import FrankaKinematics, IKConfig
    from grasp_planner.node import PlannerNodeConfig

    p = node_parameters("sim", "grasp_planner", {"hand": hand_name},
                        {"grasp_planner": dict(planner_params)} if planner_params else None)
    d = PlannerNodeConfig()
    get = lambda key: p.get(key, getattr(d, key))  # noqa: E731
    hand = load_hand(hand_name)
    # Same parameters and backend factory as PlannerNode (builtin backend): the node's numbers.
    kinematics = FrankaKinematics(config=IKConfig(seed=int(get("seed"))))
    cfg = PlannerConfig(approach_offset_m=float(get("approach_offset_m")), lift_height_m=float(get("lift_height_m")),
                        table_z_m=float(get("table_z_m")), num_candidates=int(get("num_candidates")),
                        camera_xyz=tuple(float(v) for v in get("camera_xyz")),
                        grasp_backend=str(get("grasp_backend")), grasp_checkpoint=str(get("grasp_checkpoint")),
                        network_samples=int(get("network_samples")),
                        completion_checkpoint=str(get("completion_checkpoint")),
                        network_fallback=bool(get("network_fallback")))
    backend = builtin_backend(hand, cfg, float(get("velocity_scale")), kinematics)
    return GraspPlanner(hand, backend, cfg, kinematics=kinematics)


def bench_planner(config: BenchConfig, scene: _Scene) -> dict[str, float]:
    """``GraspPlanner.plan`` on the segmented simulator cloud, ``plan_runs`` times."""
    cloud = scene.cloud()
    start = scene.world.joint_positions()
    planner = build_planner(config.hand)
    totals, stages, ok = [], {}, 0
    for _ in range(config.plan_runs):
        t0 = time.perf_counter()
        res = planner.plan(cloud, start)
        totals.append(time.perf_counter() - t0)
        ok += bool(res.success)
        for name, s in res.timings_s.items():
            stages.setdefault(name, []).append(s)
    out = {"runs": float(config.plan_runs), "cloud_points": float(len(cloud)),
           "success_rate": ok / config.plan_runs, **_stats(totals, "", "s")}
    for name, v in stages.items():
        out.update({f"stage_{name}_median_s": float(np.median(v)),
                    f"stage_{name}_p95_s": float(np.percentile(v, 95))})
    out["grasps_per_s"] = config.plan_runs / sum(totals)
    return out


def bench_network(config: BenchConfig, scene: _Scene) -> dict[str, float]:
    """D(R,O) network: forward + recovery (1 and 32 candidates), and cloud → ranked candidates on the sim cloud.

    The forward pass is timed with the shipped checkpoint's sizes and the image encoder switched on
    (the multimodal model as it would run from cloud + image); the default config when nothing is shipped.
    """
    from dataclasses import replace

    from grasp_planner.grasp_predictor import default_checkpoint
    from grasp_planner.network.bench import bench_network as forward_and_recovery
    from grasp_planner.network.bench import bench_predictor
    from grasp_planner.network.checkpoint import read_header
    from grasp_planner.network.config import NetworkConfig

    runs = 2 if config.quick else 10
    shipped = default_checkpoint(config.hand)
    sizes = replace(read_header(shipped)[0], use_image=True) if shipped.is_file() else NetworkConfig(hand=config.hand)
    out = {f"dro_{k}": v for k, v in forward_and_recovery(sizes, runs=runs, seed=config.seed).items()}
    from functional_grasp.demo import node_parameters

    camera = node_parameters("sim", "grasp_planner", {"hand": config.hand}).get("camera_xyz")
    from grasp_planner.grasp_predictor import resolve_config_file

    completion = resolve_config_file(SHIPPED_COMPLETION)
    out.update({f"planner_{k}": v for k, v in bench_predictor(
        scene.cloud(), config.hand, runs=runs, camera_xyz=camera,
        completion=str(completion) if completion.is_file() else None, collision_points=1024).items()})
    return out


#: The shipped shape-completion checkpoint (relative to the config folder), timed when present.
SHIPPED_COMPLETION = "checkpoints/completion.safetensors"


def _peak_rss_mb(who: int = 0) -> float:
    """RSS high-water mark (MB) of this process (``who`` 0) or of its largest waited-for child (1)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF if who == 0 else resource.RUSAGE_CHILDREN)
    return usage.ru_maxrss / 1024.0  # Linux: kilobytes


def _du_mb(path: Path, exclude: Sequence[str] = ()) -> float | None:
    """Disk usage of ``path`` in MB (``du``), None when it does not exist or du fails."""
    import subprocess

    if not path.exists():
        return None
    cmd = ["du", "-sk", *[f"--exclude={e}" for e in exclude], str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return int(proc.stdout.split()[0]) / 1024.0 if proc.returncode == 0 and proc.stdout else None


def bench_install(config: BenchConfig, scene: _Scene) -> dict[str, float]:
    """Install footprint: venv and checkout sizes, and a bare project Python process's peak memory."""
    import subprocess
    import sys

    from grasp_common.rosenv import project_root

    root = Path(project_root())
    venv = Path(sys.prefix)
    out = {"venv_size_mb": _du_mb(venv), "repo_checkout_mb": _du_mb(root, (".venv", "out", ".git")),
           "repo_git_dir_mb": _du_mb(root / ".git")}
    probe = "import resource, functional_grasp.bench; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    if proc.returncode == 0:
        out["python_baseline_peak_rss_mb"] = int(proc.stdout.split()[-1]) / 1024.0
    return {k: float(v) for k, v in out.items() if v is not None}


def bench_eval(config: BenchConfig, scene: _Scene) -> dict[str, float]:
    """Full-pipeline trials (:func:`functional_grasp.eval_bench.run`)."""
    from functional_grasp import eval_bench

    return eval_bench.run(config.object, config.hand, config.eval_trials, config.seed)


def bench_data(config: BenchConfig, scene: _Scene) -> dict[str, float]:
    """Data engine (:func:`grasp_data.bench_data.bench_data`): disturbance trials/s batched vs naive
    and grasps/s with early stop for every hand, adaptation time per batch, kept fraction per
    category (OYMotion hand: the engine's default); human-grasp retargeting time per grasp and
    fingertip error per hand (:func:`grasp_data.bench_retarget.bench_retarget`)."""
    from grasp_data.bench_data import bench_data as run
    from grasp_data.bench_retarget import bench_retarget

    return {**run("oymotion", quick=config.quick), **bench_retarget(config.quick)}


#: Section name -> function(config, scene) -> metrics.
SECTION_FUNCTIONS: dict[str, Callable[[BenchConfig, _Scene], dict[str, float]]] = {
    "kinematics": bench_kinematics, "perception": bench_perception, "sim": bench_sim,
    "planner": bench_planner, "network": bench_network, "eval": bench_eval, "data": bench_data,
    "install": bench_install,
}


def section_main() -> int:
    """Child-process entry: read ``{"section", "config"}`` JSON on stdin, run it, print its metrics.

    The metrics (plus ``peak_rss_mb``, and ``workers_peak_rss_mb`` when the section spawned
    processes) go on one stdout line after :data:`_SECTION_RESULT_PREFIX`.
    """
    import json
    import sys

    os.environ.setdefault("MUJOCO_GL", "egl")
    request = json.loads(sys.stdin.read())
    config = BenchConfig(**request["config"])
    scene = _Scene(config)
    try:
        metrics = SECTION_FUNCTIONS[request["section"]](config, scene)
    except Exception as exc:  # noqa: BLE001 - reported as the section's error
        metrics = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        scene.close()
    if "error" not in metrics:
        metrics["peak_rss_mb"] = _peak_rss_mb(0)
        if request["section"] == "eval":  # its worker processes (largest one)
            metrics["workers_peak_rss_mb"] = _peak_rss_mb(1)
    from functional_grasp.demo import json_safe

    print(_SECTION_RESULT_PREFIX + json.dumps(json_safe(metrics)), flush=True)
    return 0


def _run_section_isolated(name: str, config: BenchConfig) -> dict:
    """Run one section in a fresh Python process (its own peak memory); its metrics or ``{"error"}``."""
    import json
    import subprocess
    import sys
    from dataclasses import asdict

    code = "import sys; from functional_grasp.bench import section_main; sys.exit(section_main())"
    try:
        proc = subprocess.run([sys.executable, "-c", code], input=json.dumps({"section": name, "config": asdict(config)}),
                              capture_output=True, text=True, timeout=SECTION_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"section '{name}' did not finish within {SECTION_TIMEOUT_S:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_SECTION_RESULT_PREFIX):
            return json.loads(line[len(_SECTION_RESULT_PREFIX):])
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    return {"error": f"section '{name}' process exited with code {proc.returncode} without results: {tail}"}


def run_bench(sections: Sequence[str], config: BenchConfig,
              on_section: Callable[[str, dict, float], None] | None = None,
              isolate: bool = True) -> dict[str, Any]:
    """Run ``sections`` in :data:`SECTIONS` order and return the JSON-ready results.

    Args:
        sections: names from :data:`SECTIONS` (empty: all).
        config: sample sizes and scene.
        on_section: called after each section with (name, metrics, wall seconds).
        isolate: run each section in a fresh subprocess and report its ``peak_rss_mb``.

    Returns:
        ``{"created_at", "config", "machine", "versions", "sections": {name: metrics},
        "section_wall_s": {name: s}}``; a section that raised has ``{"error": "..."}``.

    Raises:
        ValueError: an unknown section name.
    """
    from dataclasses import asdict

    from functional_grasp.demo import versions

    unknown = [s for s in sections if s not in SECTION_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown bench section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    chosen = [s for s in SECTIONS if s in sections] if sections else list(SECTIONS)
    os.environ.setdefault("MUJOCO_GL", "egl")
    scene = _Scene(config)
    results: dict[str, Any] = {}
    wall: dict[str, float] = {}
    try:
        for name in chosen:
            t0 = time.perf_counter()
            try:
                results[name] = (_run_section_isolated(name, config) if isolate
                                 else SECTION_FUNCTIONS[name](config, scene))
            except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            wall[name] = time.perf_counter() - t0
            if on_section is not None:
                on_section(name, results[name], wall[name])
    finally:
        scene.close()
    return {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": asdict(config),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "processor": platform.machine(), "load_avg_1min_at_end": os.getloadavg()[0]},
            "versions": versions(), "sections": results, "section_wall_s": wall, "isolated": isolate}


def table_rows(results: Mapping[str, Any]) -> list[tuple[str, str, Any, str]]:
    """(section, metric, value, unit) rows of every section's metrics."""
    rows = []
    for section, metrics in results["sections"].items():
        for key, value in metrics.items():
            rows.append((section, key, value, "" if key == "error" else unit_of(key)))
    return rows


def write_json(path: Path, results: Mapping[str, Any]) -> None:
    """Write the results as JSON, atomically (NaN becomes null)."""
    import json

    from functional_grasp.demo import json_safe, atomic_write_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(json_safe(results), indent=2, allow_nan=False) + "\n").encode())
