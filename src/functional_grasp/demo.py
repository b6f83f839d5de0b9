"""``fgrasp demo``: run the simulated graph once, follow the grasp through every stage, report it.

Starts the ``sim`` graph (config/graphs.yaml) on its own ROS domain, watches the latched
results of perception, planner and simulator from this process, stops the graph, and writes
into the output folder:

- ``report.json`` — object, hand, ``goal_produced``, ``held``, ``max_displacement_m``,
  per-direction displacement, ``timings_s`` per stage, the failure (stage + reason) if any,
  ``grasp_backend`` (the planner's report of the predictor that planned: ``requested``,
  ``backend``, ``checkpoint`` + ``checkpoint_sha256`` for the network, ``fallback_reason``, and
  ``goal_from``: the backend whose candidate became the goal), versions. Written atomically
  (temporary file, then ``os.replace``), also when a stage fails.
- ``grasp.png`` — the predicted grasp configuration rendered by the simulator from the RGB-D
  camera and from the overview camera, side by side, with a title bar.
- ``scene_after.png`` — the simulator's state after the lift (as published when the
  disturbance test finished), overview camera.
- ``logs/`` — one log per node (``<node>.log``) and the ROS logs.

Exit codes (:func:`run_demo`): 0 the grasp was planned, executed and judged (held or not);
2 no joint goal was produced; 3 a goal was produced but no grasp result arrived (timeout or a
node died); 1 the demo could not be set up, or the simulator runs a different scene than asked
for (checked through sim_bridge's parameter service), or the planner a different grasp backend
than asked for (checked in its status); 130 interrupted.

The planner's grasp predictor is ``DemoConfig.grasp_backend`` / ``grasp_checkpoint`` (``fgrasp
demo --grasp-backend network --grasp-checkpoint PATH``), passed to the graph's ``grasp_planner``
node as parameter overrides; when the planner falls back to the optimiser (no usable checkpoint),
its warning is printed here too.

Pure helpers (scene parameters, report building, picture composition) take plain values; only
:class:`DemoMonitor` and :func:`run_demo` touch rclpy.
"""
from __future__ import annotations

import io
import json
import math
import os
import platform
import random
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from functional_grasp.report import Reporter

#: Status topic of the perception node (its ``~/status``), std_msgs/String JSON.
PERCEPTION_STATUS = "/grasp_perception/status"
#: Parameter service of the simulator, asked which scene it actually built.
SIM_PARAMETER_SERVICE = "/sim_bridge/get_parameters"
#: Default overall budget from launching the graph to the grasp result, seconds.
DEMO_TIMEOUT_S = 150.0
#: After a failed planner status without a goal, how long to wait for a goal still in flight, seconds
#: (the planner plans once per start-up; a failure is final unless someone calls ~/replan).
PLAN_FAILURE_GRACE_S = 2.0
#: Main-loop polling period while waiting for the graph, seconds.
POLL_S = 0.05
#: After the grasp result, wait at most this long for a joint state published after it, seconds.
AFTER_STATE_WAIT_S = 1.0
#: Lines of each node's log shown when a stage stalls or a node dies.
LOG_TAIL_LINES = 15
#: Size of each rendered panel of grasp.png / scene_after.png, pixels (within MuJoCo's offscreen buffer).
PANEL_WIDTH_PX = 640
PANEL_HEIGHT_PX = 480
#: Height of the title bar of the pictures, pixels.
TITLE_BAR_PX = 56
#: Stages of one demo run, in order; ``timings_s`` has one entry per stage (plus totals).
STAGES = ("startup", "perception", "grasp_synthesis", "ik", "motion_plan", "execution", "evaluation")
#: Exit codes of :func:`run_demo`.
EXIT_OK, EXIT_SETUP, EXIT_NO_GOAL, EXIT_NO_RESULT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: Output file names inside the output folder.
REPORT_FILE, GRASP_PNG, AFTER_PNG, LOG_DIR = "report.json", "grasp.png", "scene_after.png", "logs"
#: Schema version of report.json (bump when a key changes meaning).
REPORT_SCHEMA = 1


@dataclass(frozen=True)
class DemoConfig:
    """What one demo run does (validated on construction; SI units).

    Attributes:
        object: simulator catalogue name (``sim_bridge.objects.OBJECTS``).
        hand: hand description name (``config/hands/<hand>.yaml``).
        out_dir: output folder for report.json, the pictures and ``logs/``.
        timeout_s: budget from launching the graph to the grasp result, seconds.
        real_time_factor: simulated seconds per wall second; 0 = as fast as possible.
        camera_width: simulated camera width, pixels (None: the params file's value).
        camera_height: simulated camera height, pixels (None: the params file's value).
        domain_id: ROS_DOMAIN_ID of the graph (None: $ROS_DOMAIN_ID, else random 1..100).
        plan_failure_grace_s: wait after a failed plan for a goal still in flight, seconds.
        grasp_backend: the planner's grasp predictor, ``optimiser`` | ``network`` (None: the params file's).
        grasp_checkpoint: network checkpoint (None: the params file's); must exist, be a network
            checkpoint for ``hand``, and the backend be ``network``; stored as an absolute path.
    """

    object: str = "mug"
    hand: str = "shadow"
    out_dir: Path = Path("out/demo")
    timeout_s: float = DEMO_TIMEOUT_S
    real_time_factor: float = 0.0
    camera_width: int | None = None
    camera_height: int | None = None
    domain_id: int | None = None
    plan_failure_grace_s: float = PLAN_FAILURE_GRACE_S
    grasp_backend: str | None = None
    grasp_checkpoint: str | None = None

    def __post_init__(self) -> None:
        from functional_grasp.grasp_backend_args import planner_overrides
        from grasp_planner.hands import available_hands
        from sim_bridge.objects import OBJECTS

        if self.object not in OBJECTS:
            raise ValueError(f"unknown object '{self.object}'; the simulator knows: {', '.join(sorted(OBJECTS))}")
        if self.hand not in available_hands():
            raise ValueError(f"unknown hand '{self.hand}'; config/hands/ has: {', '.join(available_hands())}")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"timeout_s must be > 0 seconds, got {self.timeout_s}")
        if not (math.isfinite(self.real_time_factor) and 0 <= self.real_time_factor <= 100):
            raise ValueError(f"real_time_factor must be in 0..100 (0 = as fast as possible), "
                             f"got {self.real_time_factor}")
        for name in ("camera_width", "camera_height"):
            value = getattr(self, name)
            if value is not None and not 16 <= int(value) <= 4096:
                raise ValueError(f"{name} must be 16..4096 pixels, got {value}")
        if self.domain_id is not None and not 0 <= int(self.domain_id) <= 101:
            raise ValueError(f"domain_id must be 0..101, got {self.domain_id}")
        if self.plan_failure_grace_s < 0:
            raise ValueError(f"plan_failure_grace_s must be >= 0, got {self.plan_failure_grace_s}")
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        # GraspBackendError (a ValueError) names a missing or unusable checkpoint.
        overrides = planner_overrides(self.hand, self.grasp_backend, self.grasp_checkpoint)
        object.__setattr__(self, "grasp_checkpoint", overrides.get("grasp_checkpoint"))

    def graph_arguments(self) -> dict[str, str]:
        """Launch arguments of the ``sim`` graph."""
        return {"hand": self.hand, "object": self.object}

    def planner_overrides(self) -> dict[str, str]:
        """The ``grasp_planner`` overrides of the grasp backend choice (empty: the params file decides)."""
        return {k: v for k, v in (("grasp_backend", self.grasp_backend), ("grasp_checkpoint", self.grasp_checkpoint))
                if v is not None}

    def extra_params(self) -> dict[str, dict[str, Any]]:
        """Per-node parameter overrides of the ``sim`` graph for this run."""
        sim: dict[str, Any] = {"real_time_factor": float(self.real_time_factor)}
        if self.camera_width is not None:
            sim["camera_width"] = int(self.camera_width)
        if self.camera_height is not None:
            sim["camera_height"] = int(self.camera_height)
        extra: dict[str, dict[str, Any]] = {"sim_bridge": sim}
        if self.planner_overrides():
            extra["grasp_planner"] = self.planner_overrides()
        return extra


# ---------------------------------------------------------------------------------------------
# Pure helpers


def node_parameters(graph: str, node: str, arguments: Mapping[str, Any] | None = None,
                    extra_params: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The parameters ``node`` of ``graph`` starts with: params files (``/**`` then the node's own
    section), then the graph's overrides, exactly as :func:`functional_grasp.launcher.launch_graph`
    passes them."""
    import yaml

    from functional_grasp.graph_config import resolve_graph

    resolved = {n.name: n for n in resolve_graph(graph, arguments, extra_params)}
    if node not in resolved:
        raise ValueError(f"graph '{graph}' has no node '{node}'; its nodes: {', '.join(resolved)}")
    spec = resolved[node]
    params: dict[str, Any] = {}
    for path in spec.params_files:
        doc = yaml.safe_load(Path(path).read_text()) or {}
        for section in ("/**", node, f"/{node}"):
            params.update((doc.get(section) or {}).get("ros__parameters", {}))
    params.update(spec.parameters)
    return params


def sim_scene_config(object_name: str, hand: str, camera_width: int | None = None,
                     camera_height: int | None = None):
    """The :class:`sim_bridge.SceneConfig` the ``sim`` graph's ``sim_bridge`` builds for this object.

    Same camera pose, field of view and object placement as the node, so pictures and
    benchmarks look at the scene the graph simulates.
    """
    from sim_bridge.scene import SceneConfig

    extra: dict[str, Any] = {}
    if camera_width is not None:
        extra["camera_width"] = int(camera_width)
    if camera_height is not None:
        extra["camera_height"] = int(camera_height)
    p = node_parameters("sim", "sim_bridge", {"hand": hand, "object": object_name}, {"sim_bridge": extra})
    d = SceneConfig()
    return SceneConfig(
        hand=str(p.get("hand", hand)), object=str(p.get("object", object_name)),
        object_xy=tuple(p.get("object_xy", d.object_xy)), object_yaw=float(p.get("object_yaw", d.object_yaw)),
        camera_width=int(p.get("camera_width", d.camera_width)),
        camera_height=int(p.get("camera_height", d.camera_height)),
        camera_fovy_deg=float(p.get("camera_fovy_deg", d.camera_fovy_deg)),
        camera_xyz=tuple(p.get("camera_xyz", d.camera_xyz)),
        camera_quat_xyzw=tuple(p.get("camera_quat_xyzw", d.camera_quat_xyzw)))


def pick_domain_id(env: Mapping[str, str] | None = None, rng: random.Random | None = None) -> int:
    """``$ROS_DOMAIN_ID`` when set, else a random domain in 1..100 (unlikely to meet another run)."""
    env = os.environ if env is None else env
    text = env.get("ROS_DOMAIN_ID", "").strip()
    if text:
        domain = int(text)
        if not 0 <= domain <= 101:
            raise ValueError(f"ROS_DOMAIN_ID={text} is outside 0..101")
        return domain
    return (rng or random.SystemRandom()).randint(1, 100)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _finite_or_none(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def versions() -> dict[str, str]:
    """Versions of the project, Python and the libraries a result depends on (``?`` when unknown)."""
    from importlib import metadata

    out = {"python": platform.python_version(), "ros_distro": os.environ.get("ROS_DISTRO", "jazzy")}
    for key, dist in (("functional_grasp", "functional_grasp"), ("rclpy", "ros-jazzy-rclpy"),
                      ("mujoco", "mujoco"), ("numpy", "numpy"), ("pinocchio", "pin"), ("torch", "torch")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "?"
    try:
        from grasp_common.rosenv import project_root

        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=project_root(),
                                capture_output=True, text=True, timeout=2.0)
        if commit.returncode == 0:
            out["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


@dataclass
class RunRecord:
    """What the demo observed, with wall-clock arrival times (``time.monotonic()`` seconds)."""

    t_launch: float | None = None
    perception: dict | None = None            # first successful perception status
    t_perception: float | None = None
    perception_frames: int = 0                # successful perception statuses seen
    perception_error: dict | None = None      # latest failed perception status
    planner_status: dict | None = None        # latest planner status
    t_planner_status: float | None = None
    t_plan_failed: float | None = None        # first failed planner status without a goal
    joint_goal: dict[str, float] | None = None
    t_goal: float | None = None
    result: dict | None = None
    t_result: float | None = None
    after_state: dict[str, float] | None = None   # joint positions after the lift
    after_object_pose: tuple | None = None        # ((x, y, z), (w, x, y, z)) after the lift
    sim_parameters: dict[str, Any] | None = None  # what sim_bridge reports it runs with
    t_end: float | None = None
    failure_stage: str | None = None
    failure_reason: str | None = None
    log_tails: dict[str, str] = field(default_factory=dict)
    node_returncodes: dict[str, int | None] = field(default_factory=dict)
    node_pids: dict[str, int] = field(default_factory=dict)


def planner_ok(status: Mapping[str, Any]) -> bool | None:
    """True/False when a planner status reports success/failure, None for a progress-only status."""
    for key in ("ok", "success"):
        if isinstance(status.get(key), bool):
            return status[key]
    return None


def planner_reason(status: Mapping[str, Any]) -> str:
    """The failure reason of a planner status (empty when it gives none)."""
    for key in ("reason", "message", "error"):
        if status.get(key):
            return str(status[key])
    return ""


def stage_timings(rec: RunRecord) -> dict[str, float | None]:
    """Seconds per stage (None for a stage not reached); see :data:`STAGES`.

    ``startup`` launch → first object cloud minus its processing; ``perception`` the perception
    node's processing time of its first cloud; ``grasp_synthesis``/``ik``/``motion_plan`` from
    the planner's status; ``execution`` wall time from the goal to the result minus the
    disturbance test; ``execution_sim`` the trajectory's simulated duration; ``evaluation`` the
    disturbance test's wall time; ``planning_total`` the planner's own total; ``total_wall``
    launch → result (or → end of the run).
    """
    t: dict[str, float | None] = {k: None for k in STAGES}
    if rec.perception is not None:
        t["perception"] = _finite_or_none((rec.perception.get("timing_ms") or {}).get("total", math.nan))
        if t["perception"] is not None:
            t["perception"] /= 1000.0
        if rec.t_perception is not None and rec.t_launch is not None:
            t["startup"] = max(0.0, rec.t_perception - rec.t_launch - (t["perception"] or 0.0))
    timings = (rec.planner_status or {}).get("timings_s") or {}
    for key in ("grasp_synthesis", "ik", "motion_plan"):
        t[key] = _finite_or_none(timings.get(key))
    t["planning_total"] = _finite_or_none(timings.get("total"))
    res = rec.result or {}
    t["evaluation"] = _finite_or_none(res.get("wall_time_s"))
    t["execution_sim"] = _finite_or_none(res.get("trajectory_duration_s"))
    if rec.t_goal is not None and rec.t_result is not None:
        t["execution"] = max(0.0, rec.t_result - rec.t_goal - (t["evaluation"] or 0.0))
    end = rec.t_result if rec.t_result is not None else rec.t_end
    if rec.t_launch is not None and end is not None:
        t["total_wall"] = end - rec.t_launch
    return t


def build_report(config: DemoConfig, rec: RunRecord, domain_id: int | None,
                 outputs: Mapping[str, str | None], extra: Mapping[str, Any] | None = None) -> dict:
    """The content of report.json (plain JSON types; NaN/inf become null)."""
    res = rec.result or {}
    disp = {str(k): _finite_or_none(v) for k, v in (res.get("displacement_m") or {}).items()}
    perception = rec.perception or {}
    report = {
        "schema": REPORT_SCHEMA,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "object": config.object,
        "hand": config.hand,
        "goal_produced": rec.joint_goal is not None,
        "evaluated": rec.result is not None,
        "held": bool(res.get("held", False)),
        "max_displacement_m": _finite_or_none(res.get("max_displacement_m")),
        "threshold_m": _finite_or_none((res.get("protocol") or {}).get("threshold_m")),
        "lifted": res.get("lifted") if isinstance(res.get("lifted"), bool) else None,
        "object_height_above_rest_m": _finite_or_none(res.get("object_height_above_rest_m")),
        "hand_contacts": res.get("hand_contacts"),
        "displacement_m": disp,
        "timings_s": stage_timings(rec),
        "failure": (None if rec.failure_stage is None
                    else {"stage": rec.failure_stage, "reason": rec.failure_reason or ""}),
        "perception": {k: perception.get(k) for k in ("n_points", "n_clusters", "chosen", "centroid_m")}
        if rec.perception else None,
        "perception_frames": rec.perception_frames,
        "planner_status": rec.planner_status,
        "grasp_backend": _backend_with_goal(rec.planner_status),
        "joint_goal": rec.joint_goal,
        "grasp_result": rec.result,
        "run": {"ros_domain_id": domain_id, "real_time_factor": config.real_time_factor,
                "camera_width": config.camera_width, "camera_height": config.camera_height,
                "timeout_s": config.timeout_s, "grasp_backend": config.grasp_backend,
                "grasp_checkpoint": config.grasp_checkpoint},
        "sim_parameters": rec.sim_parameters,
        "node_returncodes": rec.node_returncodes,
        "node_pids": rec.node_pids,
        "log_tails": rec.log_tails or None,
        "outputs": dict(outputs),
        "versions": versions(),
    }
    report.update(extra or {})
    return json_safe(report)


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None and tuples by lists (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_report(path: Path, report: Mapping[str, Any]) -> None:
    """Write ``report`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(report, indent=2, allow_nan=False) + "\n").encode())


def title_lines(config: DemoConfig, rec: RunRecord) -> tuple[str, str]:
    """The two title-bar lines of grasp.png: verdict, then what the panels show."""
    res = rec.result or {}
    if rec.joint_goal is None:
        verdict = f"NO GOAL ({rec.failure_stage or 'unknown'}: {(rec.failure_reason or '')[:90]})"
    elif rec.result is None:
        verdict = f"goal planned, NOT evaluated ({rec.failure_stage}: {(rec.failure_reason or '')[:80]})"
    else:
        disp = _finite_or_none(res.get("max_displacement_m"))
        verdict = (f"{'HELD' if res.get('held') else 'NOT held'}, max displacement "
                   f"{'-' if disp is None else f'{1000 * disp:.1f} mm'}, "
                   f"lifted {'yes' if res.get('lifted') else 'no'}")
    first = f"{config.object} / {config.hand} hand: {verdict}"
    second = ("left: RGB-D camera view, right: overview; robot drawn at the predicted grasp"
              if rec.joint_goal is not None else "left: RGB-D camera view, right: overview; no grasp predicted")
    return first, second


def compose_picture(panels: list, lines: tuple[str, ...], ok: bool | None) -> bytes:
    """Panels (H, W, 3) uint8 side by side under a title bar; PNG bytes.

    Args:
        panels: images of equal height.
        lines: title lines (first one bold-coloured by ``ok``: green True, red False, grey None).
        ok: verdict colour.
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    strip = np.concatenate(panels, axis=1)
    h, w = strip.shape[:2]
    canvas = Image.new("RGB", (w, h + TITLE_BAR_PX), (32, 32, 32))
    canvas.paste(Image.fromarray(strip), (0, TITLE_BAR_PX))
    draw = ImageDraw.Draw(canvas)
    try:
        big, small = ImageFont.load_default(size=20), ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        big = small = ImageFont.load_default()
    colour = {True: (90, 220, 110), False: (240, 90, 80), None: (210, 210, 210)}[ok]
    draw.text((10, 6), lines[0], fill=colour, font=big)
    for i, text in enumerate(lines[1:]):
        draw.text((10, 32 + 16 * i), text, fill=(200, 200, 200), font=small)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def render_pictures(config: DemoConfig, rec: RunRecord, out_dir: Path) -> dict[str, str | None]:
    """Render grasp.png (and scene_after.png when the post-lift state is known); file names written."""
    from sim_bridge.scene import CAMERA_NAME, OVERVIEW_CAMERA_NAME
    from sim_bridge.world import SimWorld

    written: dict[str, str | None] = {"grasp_png": None, "scene_after_png": None}
    scene = sim_scene_config(config.object, config.hand, config.camera_width, config.camera_height)
    with SimWorld(scene) as world:
        q = {n: v for n, v in (rec.joint_goal or {}).items() if n in world.joint_names}
        panels = [world.render_configuration(q, PANEL_WIDTH_PX, PANEL_HEIGHT_PX, camera=cam)
                  for cam in (CAMERA_NAME, OVERVIEW_CAMERA_NAME)]
        ok = None if rec.result is None else bool(rec.result.get("held"))
        if rec.joint_goal is None:
            ok = False
        atomic_write_bytes(out_dir / GRASP_PNG, compose_picture(panels, title_lines(config, rec), ok))
        written["grasp_png"] = GRASP_PNG
        if rec.after_state is not None and rec.after_object_pose is not None:
            pos, quat_wxyz = rec.after_object_pose
            world.set_object_pose(pos, quat_wxyz)
            q_after = {n: v for n, v in rec.after_state.items() if n in world.joint_names}
            panel = world.render_configuration(q_after, PANEL_WIDTH_PX, PANEL_HEIGHT_PX,
                                               camera=OVERVIEW_CAMERA_NAME)
            lines = (f"{config.object} / {config.hand} hand after the lift", "simulator state when the "
                     "disturbance test finished (overview camera)")
            atomic_write_bytes(out_dir / AFTER_PNG, compose_picture([panel], lines, ok))
            written["scene_after_png"] = AFTER_PNG
    return written


def scene_mismatch(config: DemoConfig, sim_parameters: Mapping[str, Any]) -> str:
    """Why the simulator's scene differs from the requested one (empty when it matches)."""
    wanted = {"object": config.object, "hand": config.hand}
    overrides = config.extra_params()["sim_bridge"]
    wanted.update(overrides)
    wrong = []
    for key, value in wanted.items():
        got = sim_parameters.get(key)
        same = (math.isclose(float(got), float(value)) if isinstance(value, float) and isinstance(got, (int, float))
                else got == value)
        if not same:
            wrong.append(f"{key}={got!r} (asked for {value!r})")
    if not wrong:
        return ""
    return ("sim_bridge is running with " + ", ".join(wrong) + ": the overrides did not reach the node "
            "(a node-specific section of the params file takes precedence over plain '-p key:=value' "
            "overrides; the launcher must pass '-p <node>:key:=value')")


def diagnose_stall(rec: RunRecord) -> tuple[str, str]:
    """(stage, reason) for a run that ran out of time: the first stage without its result."""
    if rec.perception is None:
        err = rec.perception_error
        detail = (f"; last perception error: {err.get('error')}: {err.get('message')}" if err
                  else "; perception published no status (no RGB-D frames reached it?)")
        return "perception", "no object cloud" + detail
    if rec.joint_goal is None:
        st = rec.planner_status
        if st is None:
            return "planning", "the planner published no status and no joint goal"
        return "planning", f"no joint goal; last planner status: {planner_reason(st) or json.dumps(st)[:300]}"
    return "execution", ("joint goal received but no /sim/grasp_result: the trajectory was not "
                         "executed or the disturbance test did not finish")


def _backend_with_goal(status: Mapping[str, Any] | None) -> dict | None:
    """The planner status's ``grasp_backend`` plus ``goal_from``: the backend of the chosen candidate
    (the optimiser when the network's fallback planned), None without a goal."""
    info = (status or {}).get("grasp_backend")
    if info is None:
        return None
    chosen = (status or {}).get("chosen") or {}
    return {**info, "goal_from": (chosen.get("info") or {}).get("backend")}


def summary_rows(report: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Rows of the one-screen summary: what was grasped and how it went."""
    disp = report.get("max_displacement_m")
    thr = report.get("threshold_m")
    failure = report.get("failure")
    from functional_grasp.grasp_backend_args import describe_backend

    rows: list[tuple[str, Any]] = [
        ("object", report["object"]), ("hand", report["hand"]),
        ("grasp backend", describe_backend(report.get("grasp_backend"))),
        ("goal produced", report["goal_produced"]),
        ("evaluated", report["evaluated"]),
        ("held", report["held"] if report["evaluated"] else None),
        ("lifted", report.get("lifted")),
        ("max displacement", None if disp is None else
         f"{1000 * disp:.1f} mm" + ("" if thr is None else f" (held if <= {1000 * thr:.0f} mm)")),
    ]
    dirs = report.get("displacement_m") or {}
    if dirs:
        rows.append(("per direction", ", ".join(f"{k} {1000 * v:.1f}" for k, v in dirs.items()
                                                if v is not None) + " mm"))
    if failure:
        rows.append(("failure", f"{failure['stage']}: {failure['reason']}"[:160]))
    return rows


def timing_rows(timings: Mapping[str, float | None]) -> list[tuple[str, Any, str]]:
    """Rows of the stage-timing table (seconds)."""
    notes = {"startup": "launch -> first camera frame segmented", "perception": "segmentation of the first frame",
             "grasp_synthesis": "planner", "ik": "planner", "motion_plan": "planner",
             "planning_total": "planner, all stages", "execution": "wall, goal -> result minus evaluation",
             "execution_sim": "simulated trajectory duration", "evaluation": "disturbance test, wall",
             "total_wall": "launch -> grasp result (or end of the run)"}
    order = list(STAGES) + ["planning_total", "execution_sim", "total_wall"]
    return [(k, timings.get(k), notes.get(k, "")) for k in order if k in timings]


# ---------------------------------------------------------------------------------------------
# ROS side


class DemoMonitor:
    """Subscribes to the graph's latched results and state streams and records them in a RunRecord.

    Args:
        node: the rclpy node to create the subscriptions on.
        record: where observations go (written under ``lock``).
        callback_group: callback group of the subscriptions (None: the node's default).
    """

    def __init__(self, node, record: RunRecord, callback_group=None) -> None:
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String

        from grasp_common import qos, topics

        self.lock = threading.Lock()
        self.record = record
        self._logger = node.get_logger()
        self._latest_joints: tuple[float, dict[str, float]] | None = None
        self._latest_pose: tuple[float, tuple] | None = None
        sub = node.create_subscription
        cbg = callback_group
        sub(String, PERCEPTION_STATUS, self._on_perception, qos.LATCHED, callback_group=cbg)
        sub(String, topics.PLANNER_STATUS, self._on_planner, qos.LATCHED, callback_group=cbg)
        sub(JointState, topics.JOINT_GOAL, self._on_goal, qos.LATCHED, callback_group=cbg)
        sub(String, topics.GRASP_RESULT, self._on_result, qos.LATCHED, callback_group=cbg)
        sub(JointState, topics.JOINT_STATES, self._on_joints, qos.STATE, callback_group=cbg)
        sub(PoseStamped, topics.OBJECT_POSE, self._on_pose, qos.STATE, callback_group=cbg)
        from rcl_interfaces.srv import GetParameters

        self._param_client = node.create_client(GetParameters, SIM_PARAMETER_SERVICE, callback_group=cbg)
        self._param_future = None

    def poll_sim_parameters(self, names: tuple[str, ...]) -> dict[str, Any] | None:
        """Ask sim_bridge for ``names`` once its parameter service is up; the values when answered.

        Non-blocking: returns None until the answer is in (call again from the polling loop).
        """
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        if self._param_future is None:
            if not self._param_client.service_is_ready():
                return None
            self._param_future = self._param_client.call_async(GetParameters.Request(names=list(names)))
            return None
        if not self._param_future.done() or self._param_future.result() is None:
            return None
        values = self._param_future.result().values
        return {n: parameter_value_to_python(v) for n, v in zip(names, values)}

    def _json(self, msg, topic: str) -> dict | None:
        try:
            data = json.loads(msg.data)
        except ValueError as exc:
            self._logger.warning(f"{topic}: not JSON ({exc}); ignored")
            return None
        return data if isinstance(data, dict) else None

    def _on_perception(self, msg) -> None:
        status = self._json(msg, PERCEPTION_STATUS)
        if status is None:
            return
        now = time.monotonic()
        with self.lock:
            if status.get("ok"):
                self.record.perception_frames += 1
                if self.record.perception is None:
                    self.record.perception, self.record.t_perception = status, now
            else:
                self.record.perception_error = status

    def _on_planner(self, msg) -> None:
        status = self._json(msg, "/grasp_planner/status")
        if status is None:
            return
        now = time.monotonic()
        with self.lock:
            rec = self.record
            rec.planner_status, rec.t_planner_status = status, now
            if planner_ok(status) is False and rec.t_plan_failed is None:
                rec.t_plan_failed = now

    def _on_goal(self, msg) -> None:
        goal = {str(n): float(p) for n, p in zip(msg.name, msg.position)}
        with self.lock:
            if self.record.joint_goal is None and goal:
                self.record.joint_goal, self.record.t_goal = goal, time.monotonic()

    def _on_result(self, msg) -> None:
        result = self._json(msg, "/sim/grasp_result")
        with self.lock:
            if result is not None and self.record.result is None:
                self.record.result, self.record.t_result = result, time.monotonic()

    def _on_joints(self, msg) -> None:
        q = {str(n): float(p) for n, p in zip(msg.name, msg.position)}
        with self.lock:
            self._latest_joints = (time.monotonic(), q)

    def _on_pose(self, msg) -> None:
        p, o = msg.pose.position, msg.pose.orientation
        with self.lock:
            self._latest_pose = (time.monotonic(), ((p.x, p.y, p.z), (o.w, o.x, o.y, o.z)))

    def snapshot_after_state(self, after: float) -> bool:
        """Copy the latest joint state and object pose into the record if both arrived after ``after``."""
        with self.lock:
            if (self._latest_joints is None or self._latest_pose is None
                    or self._latest_joints[0] < after or self._latest_pose[0] < after):
                return False
            self.record.after_state = dict(self._latest_joints[1])
            self.record.after_object_pose = self._latest_pose[1]
            return True


class _Progress:
    """Turns changes of a RunRecord into one progress line per stage reached."""

    def __init__(self, reporter: Reporter) -> None:
        self.rep = reporter
        self.seen: set[str] = set()

    def once(self, key: str, name: str, state: str, detail: str) -> None:
        if key not in self.seen:
            self.seen.add(key)
            self.rep.stage(name, state, detail)

    def update(self, rec: RunRecord) -> None:
        err = rec.perception_error
        if err is not None and rec.perception is None:
            self.once(f"perr:{err.get('error')}", "perception", "retry",
                      f"{err.get('error')}: {str(err.get('message'))[:100]}")
        if rec.perception is not None:
            p = rec.perception
            self.once("perception", "perception", "done",
                      f"{p.get('n_points')} object points, {p.get('n_clusters')} cluster(s), "
                      f"{(p.get('timing_ms') or {}).get('total')} ms")
        st = rec.planner_status
        if st is not None:
            from functional_grasp.grasp_backend_args import fallback_warning

            backend = st.get("grasp_backend") or {}
            if fallback_warning(backend) and "fallback" not in self.seen:
                self.seen.add("fallback")
                self.rep.warning(f"grasp_planner: {fallback_warning(backend)}")
            ok = planner_ok(st)
            tim = st.get("timings_s") or {}
            used = [f"{backend['backend']} backend"] if backend.get("backend") else []
            text = ", ".join(used + [f"{k} {v:.2f} s" for k, v in tim.items() if isinstance(v, (int, float))])
            if ok is True:
                self.once("plan_ok", "planning", "done", text)
            elif ok is False:
                self.once("plan_fail", "planning", "failed", planner_reason(st)[:140])
        # The goal is published just before the planner's status: report them in pipeline order.
        if rec.joint_goal is not None and (st is not None or time.monotonic() - rec.t_goal > 1.0):
            self.once("goal", "execution", "started", f"joint goal with {len(rec.joint_goal)} joints")
        if rec.result is not None:
            r = rec.result
            disp = _finite_or_none(r.get("max_displacement_m"))
            self.once("result", "evaluation", "done",
                      f"{'HELD' if r.get('held') else 'NOT held'}, max displacement "
                      f"{'-' if disp is None else f'{1000 * disp:.1f} mm'}, lifted {r.get('lifted')}")


def _wait_for_grasp(graph, monitor: DemoMonitor, config: DemoConfig, rec: RunRecord,
                    progress: _Progress, deadline: float) -> None:
    """Poll until the grasp result, a definite failure, a dead node or ``deadline`` (monotonic s)."""
    from functional_grasp.grasp_backend_args import backend_mismatch

    names = tuple(["object", "hand", *config.extra_params()["sim_bridge"]])
    while True:
        if rec.sim_parameters is None:
            values = monitor.poll_sim_parameters(names)
            if values is not None:
                rec.sim_parameters = values
                mismatch = scene_mismatch(config, values)
                if mismatch:
                    rec.failure_stage, rec.failure_reason = "setup", mismatch
                    return
                progress.rep.stage("scene", "checked", ", ".join(f"{k}={v}" for k, v in values.items()))
        with monitor.lock:
            progress.update(rec)
            mismatch = backend_mismatch(config.planner_overrides(), (rec.planner_status or {}).get("grasp_backend"))
            if mismatch:
                rec.failure_stage, rec.failure_reason = "setup", mismatch
                return
            if rec.result is not None:
                t_result = rec.t_result
                break
            no_goal_yet = rec.joint_goal is None
            t_fail = rec.t_plan_failed
            not_sent = (rec.joint_goal is not None and rec.planner_status is not None
                        and rec.planner_status.get("trajectory_sent") is False)
        now = time.monotonic()
        if not graph.alive():
            # The last messages of a node that exited cleanly may still be in flight; one more look.
            time.sleep(0.2)
            with monitor.lock:
                if rec.result is not None:
                    continue
            dead = {n: c for n, c in graph.returncodes().items() if c is not None}
            rec.failure_stage, rec.failure_reason = (
                diagnose_stall(rec)[0],
                "node(s) exited: " + ", ".join(f"{n} (exit code {c})" for n, c in dead.items()))
            return
        if no_goal_yet and t_fail is not None and now - t_fail > config.plan_failure_grace_s:
            rec.failure_stage = "planning"
            rec.failure_reason = planner_reason(rec.planner_status or {}) or "planner reported failure"
            return
        if not_sent and t_fail is not None and now - t_fail > config.plan_failure_grace_s:
            rec.failure_stage = "execution"
            rec.failure_reason = ("the planner produced a goal but did not send the trajectory: "
                                  + (planner_reason(rec.planner_status or {}) or "no reason given"))
            return
        if now > deadline:
            stage, reason = diagnose_stall(rec)
            rec.failure_stage = stage
            rec.failure_reason = f"timed out after {config.timeout_s:.0f} s: {reason}"
            return
        time.sleep(POLL_S)
    # The post-lift state, for scene_after.png: wait briefly for a state published after the result.
    stop = time.monotonic() + AFTER_STATE_WAIT_S
    while time.monotonic() < stop and not monitor.snapshot_after_state(t_result):
        time.sleep(POLL_S)


def _clear_outputs(out_dir: Path) -> None:
    """Remove the result files of an earlier run so no stale picture sits next to a new report."""
    for name in (REPORT_FILE, GRASP_PNG, AFTER_PNG):
        try:
            (out_dir / name).unlink()
        except FileNotFoundError:
            pass


def run_demo(config: DemoConfig, reporter: Reporter | None = None) -> int:
    """Run the demo end to end (see the module docstring); returns the exit code.

    Every wait is bounded by ``config.timeout_s`` (plus a few seconds for stopping the graph
    and rendering); the graph is stopped and rclpy shut down on every path.
    """
    from grasp_common.rosenv import localhost_env

    rep = reporter or Reporter()
    out_dir = config.out_dir.resolve()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _clear_outputs(out_dir)
        domain = config.domain_id if config.domain_id is not None else pick_domain_id()
    except (OSError, ValueError) as exc:
        rep.error(f"cannot prepare the output folder {out_dir}: {exc}")
        return EXIT_SETUP
    log_dir = out_dir / LOG_DIR
    localhost_env(force=True, domain_id=domain, log_dir=log_dir / "ros")
    rec = RunRecord()
    code = EXIT_SETUP
    try:
        code = _run_graph(config, rec, domain, log_dir, rep)
    except KeyboardInterrupt:
        rec.failure_stage, rec.failure_reason = rec.failure_stage or "demo", "interrupted by the user"
        code = EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a set-up or internal error still gets a report
        rec.failure_stage = rec.failure_stage or "setup"
        rec.failure_reason = f"{type(exc).__name__}: {exc}"
        rep.error(f"demo failed: {rec.failure_reason}")
        code = EXIT_SETUP
    rec.t_end = rec.t_end or time.monotonic()

    outputs: dict[str, str | None] = {"report": REPORT_FILE, "grasp_png": None, "scene_after_png": None,
                                      "logs": LOG_DIR}
    extra: dict[str, Any] = {}
    if code != EXIT_INTERRUPTED:
        t0 = time.monotonic()
        try:
            outputs.update(render_pictures(config, rec, out_dir))
            rep.stage("render", "done", f"{outputs['grasp_png']}"
                      + (f", {outputs['scene_after_png']}" if outputs["scene_after_png"] else "")
                      + f" ({time.monotonic() - t0:.1f} s)")
        except Exception as exc:  # noqa: BLE001 - a missing picture must not lose the report
            extra["render_error"] = f"{type(exc).__name__}: {exc}"
            rep.warning(f"could not render the pictures: {extra['render_error']}")
    report = build_report(config, rec, domain, outputs, extra)
    write_report(out_dir / REPORT_FILE, report)

    rep.line()
    rep.table(summary_rows(report), headers=("result", ""), title="== fgrasp demo ==")
    rep.line()
    rep.table(timing_rows(report["timings_s"]), headers=("stage", "seconds", "what"))
    rep.line()
    files = [f for f in (outputs["report"], outputs["grasp_png"], outputs["scene_after_png"]) if f]
    rep.line(f"wrote {', '.join(str(out_dir / f) for f in files)}; node logs in {log_dir}")
    if code == EXIT_OK and rec.joint_goal is None:
        code = EXIT_NO_GOAL
    return code


def _run_graph(config: DemoConfig, rec: RunRecord, domain: int, log_dir: Path, rep: Reporter) -> int:
    """Start the graph and the monitor, wait for the grasp, always stop both; the exit code."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from functional_grasp.launcher import launch_graph

    context = Context()
    rclpy.init(args=[], context=context, domain_id=domain)
    node = executor = thread = graph = None
    try:
        node = rclpy.create_node("fgrasp_demo", context=context)
        monitor = DemoMonitor(node, rec)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        thread = threading.Thread(target=executor.spin, name="fgrasp_demo_spin", daemon=True)
        thread.start()
        rec.t_launch = time.monotonic()
        graph = launch_graph("sim", config.graph_arguments(), domain_id=domain, log_dir=log_dir,
                             extra_params=config.extra_params())
        rec.node_pids = graph.pids()
        rep.stage("graph", "started", f"{', '.join(f'{n}[{p}]' for n, p in graph.pids().items())}; "
                  f"ROS domain {domain}; {config.object} + {config.hand} hand")
        deadline = rec.t_launch + config.timeout_s
        _wait_for_grasp(graph, monitor, config, rec, _Progress(rep), deadline)
    finally:
        rec.t_end = time.monotonic()
        if graph is not None:
            failed = rec.failure_stage is not None
            codes = graph.stop()
            rec.node_returncodes = dict(codes)
            if failed:
                for name in graph.node_names:
                    rec.log_tails[name] = graph.log_tail(name, LOG_TAIL_LINES)
            rep.stage("graph", "stopped", ", ".join(f"{n}: {c}" for n, c in codes.items()))
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        if thread is not None:
            thread.join(timeout=2.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
    if rec.failure_stage is not None:
        rep.error(f"stage '{rec.failure_stage}' failed: {rec.failure_reason}")
        for name, tail in rec.log_tails.items():
            rep.block(f"--- last {LOG_TAIL_LINES} lines of {name} ({log_dir / (name + '.log')}):", tail)
    if rec.failure_stage == "setup":
        return EXIT_SETUP
    if rec.joint_goal is None:
        return EXIT_NO_GOAL
    if rec.result is None:
        return EXIT_NO_RESULT
    return EXIT_OK
