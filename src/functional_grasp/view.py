"""``fgrasp view``: what config/functional_grasp.rviz shows, rendered to a PNG without rviz.

Two panels under a title bar (the demo's :func:`functional_grasp.demo.compose_picture`):

* left, the RGB-D camera's view with the segmented object (cyan dots, drawn on top) and the top-k predicted
  grasps (hand surface points at the predicted pose, coloured by rank: best green → worst red);
* right, the overview camera with the robot drawn at the arm goal (MuJoCo render), the camera
  cloud in its own colours, the segmented object, the top-k grasps, the pre-grasp hand (grey),
  the fingertip contacts (yellow) and the approach arrow (blue) — exactly the marker set the
  planner node publishes (:func:`grasp_planner.markers.grasp_markers`).

Input: a simulator scene (``--object``/``--hand``), or a demo output folder whose report.json
names the scene and the arm goal the demo produced; perception and planner run on the scene's
rendered RGB-D frame with the graph's parameters and seed (same scene + seed → same grasp), and
the picture says whether the re-planned grasp matches the demo's joint goal.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from functional_grasp.report import Reporter

#: Default output file name (inside a demo folder, or the current directory).
VIEW_PNG = "view.png"
#: At most this many camera-cloud points are drawn in the overview (uniform subsample).
MAX_CLOUD_POINTS = 8000
#: Dot radius of drawn points, pixels (hand points get the larger one).
CLOUD_DOT_PX, MARKER_DOT_PX = 1, 2
#: Colour of the segmented object's points (cyan), RGB 0..255.
OBJECT_RGB = (0, 220, 255)
#: Largest joint difference for "the re-planned grasp matches the demo's goal", radians.
MATCH_TOLERANCE_RAD = 1e-3
PANEL_WIDTH_PX, PANEL_HEIGHT_PX = 640, 480
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class ViewInputError(ValueError):
    """The input folder or scene is unusable; the message says what is wrong and what to do."""


@dataclass
class ViewScene:
    """Everything one picture shows (base frame, metres)."""

    object: str
    hand: str
    camera_rgb: np.ndarray                    # (H, W, 3) uint8, the frame perception saw
    camera_K: np.ndarray                      # (3, 3) intrinsics of that frame
    T_base_camera: np.ndarray                 # (4, 4) optical frame pose
    camera_points: np.ndarray                 # (N, 3) camera cloud
    camera_colors: np.ndarray                 # (N, 3) uint8
    object_points: np.ndarray                 # (M, 3) segmented object
    markers: list = field(default_factory=list)   # grasp_markers() specs
    joint_goal: dict | None = None            # arm (+ hand) goal drawn in the overview
    lines: tuple[str, ...] = ()
    ok: bool | None = None


def read_demo_report(folder: Path) -> dict:
    """report.json of a demo output folder, checked.

    Raises:
        ViewInputError: folder or report missing, not JSON, or not a demo report.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ViewInputError(f"'{folder}' is not a folder; give a demo output folder (fgrasp demo --out DIR) "
                             "or a scene with --object")
    path = folder / "report.json"
    if not path.is_file():
        raise ViewInputError(f"'{folder}' has no report.json; run `fgrasp demo --out {folder}` first")
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ViewInputError(f"'{path}' is not readable JSON ({exc}); re-run the demo to rewrite it") from exc
    missing = [k for k in ("object", "hand", "joint_goal") if not isinstance(report, dict) or k not in report]
    if missing:
        raise ViewInputError(f"'{path}' is not a demo report: it lacks {missing}")
    goal = report["joint_goal"]
    if goal is not None and not (isinstance(goal, dict) and all(isinstance(v, (int, float)) for v in goal.values())):
        raise ViewInputError(f"'{path}': joint_goal must be a name → radians mapping or null")
    return report


def plan_scene(object_name: str, hand: str, planner_params: dict | None = None) -> tuple[ViewScene, Any]:
    """Render the sim scene, segment it and plan a grasp like the graph does; the scene and the world.

    ``planner_params`` overrides ``grasp_planner`` parameters (e.g. the demo's ``grasp_backend``).
    The caller closes the returned :class:`sim_bridge.world.SimWorld`.
    """
    from functional_grasp.bench import BenchConfig, _Scene, build_planner
    from grasp_perception.camera import backproject, transform_points
    from grasp_planner.markers import grasp_markers, make_hand_surface_fn

    bench = _Scene(BenchConfig.make(quick=True, object=object_name, hand=hand))
    try:
        rgb, depth, k, T = bench.frame()
        cloud = bench.cloud()
        planner = build_planner(hand, planner_params)
        result = planner.plan(cloud, bench.world.joint_positions())
    except Exception:
        bench.close()
        raise
    pts_cam, pixels = backproject(depth, k)
    surface = make_hand_surface_fn(planner.synthesizer.kin, planner.hand.palm_center)
    markers = grasp_markers(result.candidates, surface, result.candidate if result.success else None,
                            planner.config.approach_offset_m)
    scene = ViewScene(
        object=object_name, hand=hand, camera_rgb=rgb, camera_K=np.asarray(k.k, dtype=float), T_base_camera=T,
        camera_points=transform_points(T, pts_cam), camera_colors=rgb[pixels[:, 0], pixels[:, 1]],
        object_points=cloud, markers=markers, joint_goal=result.joint_goal if result.success else None,
        lines=(f"{object_name} / {hand} hand: "
               + (f"{len(result.candidates)} candidates, chosen rank "
                  f"{next(i for i, c in enumerate(result.candidates) if c is result.candidate)}"
                  if result.success else f"NO GOAL ({result.reason[:100]})"),),
        ok=bool(result.success))
    return scene, bench.world


def _camera_of(world, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(K (3, 3), T_base_optical (4, 4)) of a MuJoCo camera of the world, for PANEL size pictures."""
    m, d = world.model, world.data
    cid = m.camera(name).id
    fy = 0.5 * PANEL_HEIGHT_PX / np.tan(np.deg2rad(m.cam_fovy[cid]) / 2.0)
    K = np.array([[fy, 0.0, (PANEL_WIDTH_PX - 1) / 2.0], [0.0, fy, (PANEL_HEIGHT_PX - 1) / 2.0], [0, 0, 1.0]])
    T = np.eye(4)
    T[:3, :3] = d.cam_xmat[cid].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])   # MuJoCo (-z fwd, y up) → optical
    T[:3, 3] = d.cam_xpos[cid]
    return K, T


def _project(points: np.ndarray, K: np.ndarray, T_base_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) pixel (u, v) and (N,) depth of base-frame points; depth ≤ 0 = behind the camera."""
    p = (np.asarray(points, float).reshape(-1, 3) - T_base_cam[:3, 3]) @ T_base_cam[:3, :3]
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([K[0, 0] * p[:, 0] / z + K[0, 2], K[1, 1] * p[:, 1] / z + K[1, 2]], axis=1)
    return uv, z


def draw_layers(image: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray, int]], K: np.ndarray,
                T_base_cam: np.ndarray) -> np.ndarray:
    """Draw point layers over a picture, far to near across all layers (so near points stay on top).

    Args:
        image: (H, W, 3) uint8.
        layers: (points (N, 3) base frame, colours (N, 3) or (3,) uint8, dot radius px).
        K: (3, 3) intrinsics of ``image``.
        T_base_cam: (4, 4) optical frame pose of ``image``'s camera.

    Returns:
        A new (H, W, 3) uint8 picture.
    """
    from PIL import Image, ImageDraw

    uv_all, z_all, rgb_all, r_all = [], [], [], []
    for points, colors, radius in layers:
        if len(points) == 0:
            continue
        uv, z = _project(points, K, T_base_cam)
        cols = np.broadcast_to(np.asarray(colors, dtype=np.uint8), (len(uv), 3))
        uv_all.append(uv)
        z_all.append(z)
        rgb_all.append(cols)
        r_all.append(np.full(len(uv), radius))
    canvas = Image.fromarray(np.ascontiguousarray(image))
    if not uv_all:
        return np.asarray(canvas)
    uv, z, rgb, r = (np.concatenate(a) for a in (uv_all, z_all, rgb_all, r_all))
    h, w = image.shape[:2]
    keep = (z > 0) & np.all(np.isfinite(uv), axis=1) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) \
        & (uv[:, 1] < h)
    draw = ImageDraw.Draw(canvas)
    for i in np.flatnonzero(keep)[np.argsort(-z[keep])]:
        x, y, rad = uv[i, 0], uv[i, 1], r[i]
        draw.ellipse((x - rad, y - rad, x + rad, y + rad), fill=tuple(int(c) for c in rgb[i]))
    return np.asarray(canvas)


def _marker_layers(markers, include=lambda ns: True) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Point layers of the marker specs (sphere lists as dots, arrows as dotted lines), opaque colours."""
    layers = []
    for spec in markers:
        if spec.kind == "delete_all" or not include(spec.ns):
            continue
        rgb = np.round(np.asarray(spec.rgba[:3]) * 255).astype(np.uint8)
        pts = spec.points
        if spec.kind == "arrow":
            pts = np.linspace(pts[0], pts[1], 40)
        layers.append((pts, rgb, MARKER_DOT_PX))
    return layers


def render_view(scene: ViewScene, world) -> bytes:
    """The two-panel PNG of ``scene`` (``world``: the SimWorld of the same scene)."""
    from functional_grasp.demo import compose_picture
    from sim_bridge.scene import OVERVIEW_CAMERA_NAME
    from PIL import Image

    cam = np.asarray(Image.fromarray(scene.camera_rgb).resize((PANEL_WIDTH_PX, PANEL_HEIGHT_PX)))
    sx, sy = PANEL_WIDTH_PX / scene.camera_rgb.shape[1], PANEL_HEIGHT_PX / scene.camera_rgb.shape[0]
    K_cam = np.diag([sx, sy, 1.0]) @ scene.camera_K
    grasps = _marker_layers(scene.markers, lambda ns: ns.startswith("grasp_"))
    left = draw_layers(cam, grasps, K_cam, scene.T_base_camera)
    # The segmentation on top in the camera view (the grasps around it would hide it otherwise).
    left = draw_layers(left, [(scene.object_points, OBJECT_RGB, CLOUD_DOT_PX)], K_cam, scene.T_base_camera)

    goal = {n: v for n, v in (scene.joint_goal or {}).items() if n in world.joint_names}
    overview = world.render_configuration(goal, PANEL_WIDTH_PX, PANEL_HEIGHT_PX, camera=OVERVIEW_CAMERA_NAME)
    K_ov, T_ov = _camera_of(world, OVERVIEW_CAMERA_NAME)
    step = max(1, len(scene.camera_points) // MAX_CLOUD_POINTS)
    right = draw_layers(overview, [(scene.camera_points[::step], scene.camera_colors[::step], CLOUD_DOT_PX),
                                   (scene.object_points, OBJECT_RGB, CLOUD_DOT_PX),
                                   *_marker_layers(scene.markers)], K_ov, T_ov)
    legend = ("left: camera view, object cyan, top grasps green (best) to red; right: overview, robot at the "
              "arm goal, camera cloud, pre-grasp grey, contacts yellow, approach blue")
    return compose_picture([left, right], (*scene.lines, legend), scene.ok)


def run_view(out_png: Path, demo_dir: Path | None = None, object_name: str = "mug", hand: str = "shadow",
             reporter: Reporter | None = None) -> int:
    """Render a view PNG; returns the exit code (0 written, 1 failed, 2 bad input).

    Nothing is written unless the whole picture was rendered.
    """
    from functional_grasp.demo import atomic_write_bytes

    rep = reporter or Reporter()
    report = None
    params: dict = {}
    try:
        if demo_dir is not None:
            report = read_demo_report(demo_dir)
            object_name, hand = str(report["object"]), str(report["hand"])
            run = report.get("run") or {}                  # the demo's --grasp-backend / --grasp-checkpoint
            params = {k: run[k] for k in ("grasp_backend", "grasp_checkpoint") if run.get(k)}
        rep.stage("view", "planning", f"{object_name} / {hand} hand: render, segment, plan"
                  + (f" ({', '.join(f'{k} {v}' for k, v in params.items())})" if params else ""))
        scene, world = plan_scene(object_name, hand, params or None)
    except ViewInputError as exc:
        rep.error(str(exc))
        return EXIT_BAD_INPUT
    except ValueError as exc:   # unknown object or hand in the report
        rep.error(f"cannot build the scene: {exc}")
        return EXIT_BAD_INPUT
    try:
        if report is not None:
            scene = _with_demo_goal(scene, report)
        png = render_view(scene, world)
    finally:
        world.close()
    out_png = Path(out_png)
    try:
        out_png.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out_png, png)
    except OSError as exc:
        rep.error(f"cannot write {out_png}: {exc}")
        return EXIT_FAILED
    rep.stage("view", "done", f"wrote {out_png}")
    return EXIT_OK


def _with_demo_goal(scene: ViewScene, report: dict) -> ViewScene:
    """The scene with the demo's arm goal and a line saying whether the re-planned grasp matches it."""
    demo_goal = report.get("joint_goal")
    held = (report.get("grasp_result") or {}).get("held") if report.get("evaluated") else None
    if demo_goal is None:
        note = "the demo produced no joint goal; grasps re-planned from the same scene and seed"
    elif scene.joint_goal is None:
        note = "re-planning found no grasp; the robot is drawn at the demo's joint goal"
    else:
        diff = max(abs(scene.joint_goal.get(n, np.inf) - v) for n, v in demo_goal.items())
        note = (f"re-planned grasp {'matches' if diff <= MATCH_TOLERANCE_RAD else 'DIFFERS from'} the demo's "
                f"joint goal (max difference {diff:.2g} rad); robot drawn at the demo's goal")
    verdict = "" if held is None else (", demo grasp HELD" if held else ", demo grasp NOT held")
    scene.joint_goal = demo_goal or scene.joint_goal
    scene.lines = (scene.lines[0] + verdict, note)
    scene.ok = held if held is not None else scene.ok
    return scene


def add_view_parser(sub) -> None:
    """The ``fgrasp view`` subcommand."""
    view = sub.add_parser(
        "view", help="render the rviz scene (clouds, top grasps by rank, pre-grasp, arm goal) to a PNG",
        description="Render what config/functional_grasp.rviz shows to a PNG, without rviz: camera view with "
                    "the segmented object and the top predicted grasps, and an overview with the robot at "
                    "the arm goal, the camera cloud, the grasps coloured by rank, pre-grasp, contacts and "
                    "approach. DIR is a demo output folder (its report.json names the scene and the arm "
                    "goal); without DIR the --object scene is rendered, segmented and planned. Exit code: "
                    "0 written; 1 could not write; 2 bad or missing input (nothing written).")
    view.add_argument("demo_dir", nargs="?", type=Path, default=None, metavar="DIR",
                      help="demo output folder with report.json (default: plan --object instead)")
    view.add_argument("--object", default="mug", metavar="NAME", help="simulator object without DIR (default: mug)")
    view.add_argument("--hand", default="shadow", metavar="NAME", help="hand without DIR (default: shadow)")
    view.add_argument("--out", type=Path, default=None, metavar="PNG",
                      help=f"picture to write (default: DIR/{VIEW_PNG}, or ./{VIEW_PNG})")


def cmd_view(args: argparse.Namespace, rep: Reporter) -> int:
    out = args.out or ((args.demo_dir / VIEW_PNG) if args.demo_dir is not None else Path(VIEW_PNG))
    return run_view(out, args.demo_dir, args.object, args.hand, rep)
