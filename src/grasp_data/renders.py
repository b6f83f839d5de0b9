"""Single-view RGB-D renders of an object for training on partial views (MuJoCo offscreen).

Per object one small scene is compiled: the object's mesh on a mocap body (no physics), a floor
plane with a checker texture and a gradient sky in random colours, and three lights. Every
view then draws a random object orientation and position inside a 0.3 m cube, a camera on a
sphere of random radius around it (looking at it with a little aim jitter, image x horizontal),
random floor colour and random light directions, colours and intensities — and renders colour,
depth and the object mask (MuJoCo segmentation) at once.

Frames: world = the render scene's frame (z up); camera poses are REP-103 optical frames (z
forward, x right, y down), as :class:`sim_bridge.world.RGBDFrame`. Depth is metres along the
optical axis, NaN where nothing was hit (beyond :data:`sim_bridge.world.MAX_DEPTH_M`). Needs an
OpenGL context: ``MUJOCO_GL=egl`` on a headless machine.
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from grasp_data.labelled_mesh import LabelledMesh
from sim_bridge.scene import mujoco_camera_quat_wxyz, look_at_optical
from sim_bridge.world import MAX_DEPTH_M, release_gl_context, intrinsics_from_fovy

_OBJECT_GEOM = "render_object"
_FLOOR_GEOM = "render_floor"
_CAMERA = "render_camera"


@dataclass(frozen=True)
class RenderConfig:
    """Settings of :func:`render_views`.

    Attributes:
        width, height: image size, pixels.
        fovy_deg: vertical field of view, degrees.
        distance_m: (min, max) camera distance from the object centre, metres.
        elevation_deg: (min, max) camera elevation above the horizontal, degrees.
        cube_m: side of the cube the object centre is drawn in, metres.
        floor_below_m: the floor lies this far below the cube's centre, metres.
    """

    width: int = 320
    height: int = 240
    fovy_deg: float = 50.0
    distance_m: tuple[float, float] = (0.35, 0.7)
    elevation_deg: tuple[float, float] = (10.0, 75.0)
    cube_m: float = 0.3
    floor_below_m: float = 0.45

    def __post_init__(self) -> None:
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise ValueError(f"image size {self.width}x{self.height} must be 16..4096 pixels per side")
        if not 1.0 <= self.fovy_deg <= 170.0:
            raise ValueError(f"fovy_deg {self.fovy_deg} is outside 1..170 degrees")
        if not 0 < self.distance_m[0] <= self.distance_m[1]:
            raise ValueError(f"distance_m must be 0 < min ≤ max, got {self.distance_m}")
        if self.floor_below_m <= self.cube_m / 2:
            raise ValueError("floor_below_m must exceed half the cube side (the object must stay above it)")


@dataclass(frozen=True)
class RenderedView:
    """One view.

    Attributes:
        rgb: (H, W, 3) uint8.
        depth: (H, W) float32 metres along the optical axis, NaN = no return.
        mask: (H, W) bool, pixels of the object.
        K: (3, 3) float64 camera matrix, pixels.
        T_world_camera: (4, 4) float64 optical frame pose in the world.
        T_world_object: (4, 4) float64 object frame pose in the world.
    """

    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    K: np.ndarray
    T_world_camera: np.ndarray
    T_world_object: np.ndarray


def _scene(instance: LabelledMesh, config: RenderConfig, rng: np.random.Generator) -> mujoco.MjModel:
    spec = mujoco.MjSpec()
    spec.modelname = "fgrasp_render"
    spec.visual.global_.offwidth = max(640, config.width)
    spec.visual.global_.offheight = max(480, config.height)
    spec.visual.map.znear = 0.01
    sky1, sky2 = rng.uniform(0.0, 1.0, 3), rng.uniform(0.0, 1.0, 3)
    spec.add_texture(name="sky", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX, builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
                     rgb1=sky1.tolist(), rgb2=sky2.tolist(), width=64, height=64)
    spec.add_texture(name="floor_tex", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
                     rgb1=rng.uniform(0, 1, 3).tolist(), rgb2=rng.uniform(0, 1, 3).tolist(), width=64, height=64)
    mat = spec.add_material(name="floor_mat", texrepeat=rng.uniform(2, 12, 2).tolist())
    mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "floor_tex"
    spec.worldbody.add_geom(name=_FLOOR_GEOM, type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1],
                            pos=[0, 0, -config.floor_below_m], material="floor_mat")
    for i in range(3):
        spec.worldbody.add_light(name=f"light{i}", pos=[0, 0, 2.0], dir=[0, 0, -1], castshadow=False)
    mesh = spec.add_mesh(name="object_mesh")
    mesh.uservert = np.asarray(instance.mesh.vertices, np.float32).ravel().tolist()
    mesh.userface = np.asarray(instance.mesh.faces, np.int32).ravel().tolist()
    body = spec.worldbody.add_body(name="object", mocap=True)
    body.add_geom(name=_OBJECT_GEOM, type=mujoco.mjtGeom.mjGEOM_MESH, meshname="object_mesh",
                  contype=0, conaffinity=0, rgba=[*rng.uniform(0.15, 0.95, 3), 1.0])
    spec.worldbody.add_camera(name=_CAMERA, fovy=config.fovy_deg)
    return spec.compile()


def render_views(instance: LabelledMesh, count: int, seed: int = 0,
                 config: RenderConfig = RenderConfig()) -> list[RenderedView]:
    """``count`` random views of ``instance`` (module docstring); deterministic for a seed.

    Raises:
        ValueError: ``count`` < 0.
    """
    if count < 0:
        raise ValueError(f"count must be ≥ 0, got {count}")
    rng = np.random.default_rng(seed)
    model = _scene(instance, config, rng)
    data = mujoco.MjData(model)
    cam, obj_geom = model.camera(_CAMERA).id, model.geom(_OBJECT_GEOM).id
    floor = model.geom(_FLOOR_GEOM).id
    intr = intrinsics_from_fovy(config.width, config.height, config.fovy_deg)
    centre = instance.mesh.bounds.mean(axis=0)
    renderer = mujoco.Renderer(model, height=config.height, width=config.width)
    views = []
    try:
        for _ in range(count):
            R = Rotation.random(random_state=rng)
            pos = rng.uniform(-config.cube_m / 2, config.cube_m / 2, 3)
            T_wo = np.eye(4)
            T_wo[:3, :3] = R.as_matrix()
            T_wo[:3, 3] = pos - R.apply(centre)          # the mesh's bbox centre lands at ``pos``
            data.mocap_pos[0] = T_wo[:3, 3]
            x, y, z, w = R.as_quat()
            data.mocap_quat[0] = [w, x, y, z]
            az = rng.uniform(0, 2 * np.pi)
            el = np.deg2rad(rng.uniform(*config.elevation_deg))
            eye = pos + rng.uniform(*config.distance_m) * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
            q_opt = look_at_optical(eye, pos + rng.normal(0.0, 0.02, 3))
            model.cam_pos[cam] = eye
            model.cam_quat[cam] = mujoco_camera_quat_wxyz(q_opt)
            model.geom_rgba[floor] = [*rng.uniform(0.3, 1.0, 3), 1.0]
            for i in range(model.nlight):
                direction = np.array([*rng.normal(0, 0.5, 2), -1.0])
                model.light_dir[i] = direction / np.linalg.norm(direction)
                model.light_pos[i] = pos - 2.0 * model.light_dir[i]
                model.light_diffuse[i] = rng.uniform(0.1, 0.6) * rng.uniform(0.7, 1.0, 3)
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=cam)
            rgb = renderer.render().copy()
            renderer.enable_depth_rendering()
            renderer.update_scene(data, camera=cam)
            depth = renderer.render().astype(np.float32)
            renderer.disable_depth_rendering()
            renderer.enable_segmentation_rendering()
            renderer.update_scene(data, camera=cam)
            seg = renderer.render()
            renderer.disable_segmentation_rendering()
            depth[~(depth < MAX_DEPTH_M) | (depth <= 0)] = np.nan
            mask = (seg[..., 0] == obj_geom) & (seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM))
            T_wc = np.eye(4)
            T_wc[:3, :3] = Rotation.from_quat(q_opt).as_matrix()
            T_wc[:3, 3] = eye
            views.append(RenderedView(rgb, depth, mask, intr.K, T_wc, T_wo))
    finally:
        renderer.close()
        release_gl_context()
    return views
