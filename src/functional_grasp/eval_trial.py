"""One ``fgrasp eval`` trial, in process, on the same cores the nodes run.

A trial places the object at its pose, lets it settle, renders the RGB-D camera, segments the
object (:func:`functional_grasp.bench.build_segmenter`, the ``grasp_perception`` node's
parameters), plans (:func:`functional_grasp.bench.build_planner`, the ``grasp_planner`` node's
parameters with the task's overrides, e.g. the grasp backend, and the built-in motion backend;
the colour image and each point's pixel go with the cloud, as the nodes pass them), executes the
trajectory in MuJoCo, holds like ``sim_bridge`` does, and runs the disturbance test
(:func:`sim_bridge.evaluation.run_disturbance_test`).

Outcome (``TrialResult.outcome``): ``success``, or the first failure of
:data:`FAILURE_REASONS`, in pipeline order:

- ``no_object`` — perception found no object (no table plane, no cluster, too few points).
- ``no_grasp`` — the object model or grasp synthesis produced no candidate.
- ``ik_unreachable`` — every candidate failed Franka IK (pre-grasp or grasp).
- ``motion_failed`` — a candidate passed IK but the motion planner found no collision-free,
  safe trajectory for any (the table, the object on the way, limits).
- ``dropped`` — executed, but at the start of the disturbance test the hand does not touch the
  object (missed it, knocked it away, or it slipped out).
- ``displaced`` — in the hand, but a disturbance moved it more than the threshold.
- ``not_functional`` — held, but (objects with regions only) no fingertip touches the
  functional region or the hand touches an avoidance region.
- ``error`` — an unexpected exception (its message is kept; the run goes on).

Worlds, planners and segmenters are built once per process and reused; every trial starts from
``SimWorld.reset`` and every core is deterministic per call, so a trial's result depends only on
its :class:`TrialTask`, not on which worker ran it or what ran before.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field

import numpy as np

#: Failure reasons, in pipeline order.
FAILURE_REASONS = ("no_object", "no_grasp", "ik_unreachable", "motion_failed", "dropped", "displaced",
                   "not_functional", "error")
#: Stages timed per trial (seconds); the keys of ``TrialResult.timings_s``.
STAGES = ("render", "perception", "synthesis", "ik", "motion_plan", "execution", "disturbance")
#: Physics time for the object to settle at its new pose before the camera frame, seconds.
SETTLE_S = 0.3
#: Physics time holding the last trajectory point before the test (as sim_bridge), seconds.
HOLD_AFTER_TRAJECTORY_S = 0.3
#: Size of a gallery thumbnail, pixels.
THUMB_WIDTH_PX, THUMB_HEIGHT_PX = 320, 240
#: Free camera of the thumbnails: distance to the object (m), azimuth and elevation (degrees).
THUMB_DISTANCE_M, THUMB_AZIMUTH_DEG, THUMB_ELEVATION_DEG = 0.6, 140.0, -35.0


@dataclass(frozen=True)
class TrialTask:
    """What one trial does (picklable: it travels to a worker process).

    Attributes:
        object: catalogue name (a mesh object must be registered in the worker first).
        trial: index of the trial for this object.
        seed: the trial's seed (drew its pose).
        hand: hand description name.
        xy: metres, base frame: footprint centre of the object on the table.
        yaw_rad: object rotation about the table normal.
        camera_width / camera_height: pixels of the rendered RGB-D frame.
        thumbnail: render a gallery thumbnail of the predicted grasp.
        planner_params: ``grasp_planner`` parameter overrides as sorted (name, value) pairs
            (``grasp_backend``, ``grasp_checkpoint``); empty = the params file's values.
    """

    object: str
    trial: int
    seed: int
    hand: str
    xy: tuple[float, float]
    yaw_rad: float
    camera_width: int = 640
    camera_height: int = 480
    thumbnail: bool = True
    planner_params: tuple[tuple[str, str], ...] = ()


@dataclass
class TrialResult:
    """The outcome of one trial (JSON-ready through :meth:`to_dict`, thumbnail excluded).

    ``grasp_backend`` is the planner's :meth:`~grasp_planner.grasp_predictor.GraspPredictor.describe`
    (plus ``requested``, and ``goal_from``: the backend of the executed candidate — the optimiser when
    the network's fallback planned it) for a trial that reached the planner, else None.
    """

    object: str
    trial: int
    seed: int
    xy: tuple[float, float]
    yaw_rad: float
    outcome: str = "error"
    success: bool = False
    held: bool | None = None
    functional: bool | None = None
    detail: str = ""
    goal_produced: bool = False
    cloud_points: int = 0
    candidates: int = 0
    max_displacement_m: float | None = None
    hand_contacts: int | None = None
    object_mass_kg: float | None = None
    grasp_backend: dict | None = None
    timings_s: dict = field(default_factory=dict)
    thumbnail: np.ndarray | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("thumbnail")
        return d


class _ProcessCache:
    """Worlds (per scene), planners (per hand) and the segmenter of this process."""

    def __init__(self) -> None:
        self.worlds: dict = {}
        self.planners: dict = {}
        self.segmenter = None

    def world(self, task: TrialTask):
        from dataclasses import replace

        from functional_grasp.demo import sim_scene_config
        from sim_bridge.world import SimWorld

        key = (task.object, task.hand, task.camera_width, task.camera_height)
        if key not in self.worlds:
            base = sim_scene_config("mug", task.hand, task.camera_width, task.camera_height)
            self.worlds[key] = SimWorld(replace(base, object=task.object, hand=task.hand))
        return self.worlds[key]

    def planner(self, task: TrialTask):
        from functional_grasp.bench import build_planner

        key = (task.hand, task.planner_params)
        if key not in self.planners:
            self.planners[key] = build_planner(task.hand, dict(task.planner_params))
        return self.planners[key]

    def get_segmenter(self):
        from functional_grasp.bench import build_segmenter

        if self.segmenter is None:
            self.segmenter = build_segmenter()
        return self.segmenter

    def close(self) -> None:
        for world in self.worlds.values():
            world.close()
        self.worlds.clear()


_CACHE: _ProcessCache | None = None
#: Functional-region labels by object name, registered in this process (see :func:`register_regions`).
_REGIONS: dict = {}


def register_regions(name: str, regions) -> None:
    """Use ``regions`` (:class:`sim_bridge.mesh_objects.MeshRegions`) for object ``name`` in this process."""
    _REGIONS[name] = regions


def process_cache() -> _ProcessCache:
    global _CACHE
    if _CACHE is None:
        _CACHE = _ProcessCache()
    return _CACHE


def close_process_cache() -> None:
    """Release this process's worlds (OpenGL contexts)."""
    global _CACHE
    if _CACHE is not None:
        _CACHE.close()
        _CACHE = None


def classify_plan_failure(reason: str, rejections: list[str]) -> str:
    """Failure reason of a :class:`grasp_planner.pipeline.PlanResult` that did not succeed."""
    if any(": motion " in r for r in rejections):
        return "motion_failed"
    if rejections and all(": IK " in r for r in rejections):
        return "ik_unreachable"
    if reason.startswith("start state"):
        return "error"
    return "no_grasp"


def contact_report(world, regions) -> tuple[bool, bool]:
    """(a fingertip touches the functional region, the hand touches an avoidance region) right now.

    Contact points between hand and object geoms are taken into the object frame and labelled by
    their nearest mesh vertex (:meth:`MeshRegions.labels_at`).
    """
    m, d = world.model, world.data
    hand_bodies = world.hand_body_ids()
    tips = {m.body(name).id for name in world.hand.fingertips.values()}
    obj = world.object_body_id
    points, is_tip = [], []
    for c in d.contact[:d.ncon]:
        b1, b2 = int(m.geom_bodyid[c.geom1]), int(m.geom_bodyid[c.geom2])
        hand_b = b2 if b1 == obj else b1 if b2 == obj else None
        if hand_b is None or hand_b not in hand_bodies:
            continue
        points.append(np.array(c.pos, dtype=float))
        is_tip.append(hand_b in tips)
    if not points:
        return False, False
    pos, quat = world.object_pose()
    from scipy.spatial.transform import Rotation

    R = Rotation.from_quat([quat[1], quat[2], quat[3], quat[0]]).as_matrix()
    local = (np.asarray(points) - pos) @ R
    functional, avoid = regions.labels_at(local)
    return bool(np.any(functional & np.asarray(is_tip))), bool(np.any(avoid))


def _thumbnail(world, q: dict | None) -> np.ndarray:
    import mujoco

    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    cam.lookat[:] = world.object_pose()[0]
    cam.distance, cam.azimuth, cam.elevation = THUMB_DISTANCE_M, THUMB_AZIMUTH_DEG, THUMB_ELEVATION_DEG
    q = {n: v for n, v in (q or {}).items() if n in world.joint_names}
    return world.render_configuration(q, THUMB_WIDTH_PX, THUMB_HEIGHT_PX, camera=cam)


def run_trial(task: TrialTask) -> TrialResult:
    """Run one trial (see the module docstring); never raises for a failing grasp."""
    res = TrialResult(object=task.object, trial=task.trial, seed=task.seed, xy=tuple(task.xy),
                      yaw_rad=float(task.yaw_rad))
    try:
        _run(task, res)
    except Exception as exc:  # noqa: BLE001 - one broken trial must not end the evaluation
        res.outcome, res.success = "error", False
        res.detail = f"{type(exc).__name__}: {exc} | " + traceback.format_exc(limit=3).replace("\n", " ")[-400:]
    return res


def _run(task: TrialTask, res: TrialResult) -> None:
    from grasp_perception.errors import PerceptionError
    from grasp_planner.object_model import MIN_OBJECT_POINTS
    from sim_bridge.evaluation import DisturbanceProtocol, run_disturbance_test
    from sim_bridge.objects import get_object

    cache = process_cache()
    world = cache.world(task)
    t = res.timings_s
    world.reset()
    pos, quat = get_object(task.object).placement(task.xy, task.yaw_rad, world.config.table_top_z)
    world.set_object_pose(pos, quat)
    world.step(int(round(SETTLE_S / world.model.opt.timestep)))
    world.object_rest_z = float(world.object_pose()[0][2])
    res.object_mass_kg = world.object_mass_kg

    t0 = time.perf_counter()
    frame = world.render_rgbd()
    t["render"] = time.perf_counter() - t0
    from grasp_perception.camera import CameraIntrinsics

    k = frame.intrinsics
    intr = CameraIntrinsics(width=k.width, height=k.height, fx=k.fx, fy=k.fy, cx=k.cx, cy=k.cy)
    t0 = time.perf_counter()
    try:
        seg = cache.get_segmenter().segment(frame.rgb, frame.depth, intr, frame.T_base_camera_optical)
        cloud = np.asarray(seg.points, dtype=float)
        pixel_uv = np.asarray(seg.pixels, dtype=float)[:, ::-1]       # (row, col) -> (u, v), as perception
    except PerceptionError as exc:
        t["perception"] = time.perf_counter() - t0
        res.outcome, res.detail = "no_object", f"{type(exc).__name__}: {exc}"
        _finish_thumbnail(task, world, res, None)
        return
    t["perception"] = time.perf_counter() - t0
    finite = np.all(np.isfinite(cloud), axis=1)
    cloud, pixel_uv = cloud[finite], pixel_uv[finite]
    res.cloud_points = int(len(cloud))
    if len(cloud) < MIN_OBJECT_POINTS:
        res.outcome = "no_object"
        res.detail = f"the object cloud has {len(cloud)} points; the planner needs {MIN_OBJECT_POINTS}"
        _finish_thumbnail(task, world, res, None)
        return

    planner = cache.planner(task)
    res.grasp_backend = {"requested": planner.config.grasp_backend, **planner.predictor.describe(), "goal_from": None}
    plan = planner.plan(cloud, world.joint_positions(), image=frame.rgb, pixel_uv=pixel_uv)
    t["synthesis"] = plan.timings_s.get("grasp_synthesis")
    t["ik"] = plan.timings_s.get("ik")
    t["motion_plan"] = plan.timings_s.get("motion_plan")
    res.candidates = len(plan.candidates)
    if not plan.success:
        res.outcome = classify_plan_failure(plan.reason, plan.rejections)
        res.detail = plan.reason[:600]
        _finish_thumbnail(task, world, res, None)
        return
    res.goal_produced = True
    res.grasp_backend["goal_from"] = plan.candidate.info.get("backend")
    _finish_thumbnail(task, world, res, plan.joint_goal)

    t0 = time.perf_counter()
    world.execute_trajectory(plan.plan.joint_names, plan.plan.positions, plan.plan.times_s,
                             wait=True, hold_s=HOLD_AFTER_TRAJECTORY_S)
    t["execution"] = time.perf_counter() - t0
    regions = _REGIONS.get(task.object)
    functional_ok = None
    if regions is not None:
        tip_on_functional, touches_avoid = contact_report(world, regions)
        functional_ok = tip_on_functional and not touches_avoid
    dist = run_disturbance_test(world, DisturbanceProtocol())
    t["disturbance"] = dist.wall_time_s
    res.held = bool(dist.held)
    res.functional = functional_ok
    res.max_displacement_m = float(dist.max_displacement_m)
    res.hand_contacts = int(dist.hand_contacts)
    if not dist.held:
        res.outcome = "displaced" if dist.object_in_contact_with_hand else "dropped"
        res.detail = (f"max displacement {1000 * dist.max_displacement_m:.1f} mm > "
                      f"{1000 * dist.protocol.threshold_m:.0f} mm; {dist.hand_contacts} hand contacts")
    elif functional_ok is False:
        res.outcome = "not_functional"
        res.detail = "held, but no fingertip on the functional region or the hand touches an avoidance region"
    else:
        res.outcome, res.success = "success", True
        res.detail = f"held, max displacement {1000 * dist.max_displacement_m:.1f} mm"


def _finish_thumbnail(task: TrialTask, world, res: TrialResult, q: dict | None) -> None:
    if task.thumbnail:
        res.thumbnail = _thumbnail(world, q)
