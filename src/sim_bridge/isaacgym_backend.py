"""IsaacGym backend of the :class:`~sim_bridge.simulator.Simulator` interface (NVIDIA IsaacGym Preview 4).

Written to the ``isaacgym.gymapi`` Python API and imported only when ``backend: isaacgym`` is
selected; everything else in the stack runs without it. One env holds the robot (Franka + hand
as ONE articulation from a URDF/MJCF you provide, joints named like ROS: ``panda_joint1..7`` and
the hand description's joint names), the object (a URDF generated from the simulator's object
catalogue, density 500 kg/m³, convex-decomposed by V-HACD) and the table (a fixed box).

D(R,O) validation settings: PD position drives with stiffness 1000 and damping 200 on every
robot DOF, friction 3.0 on every robot and object shape, the robot free of gravity (an ideal
position-controlled arm), and the disturbance force applied with ``apply_body_forces`` at the
object's centre of mass every physics step of a trial (PhysX clears applied forces after each
step). The protocol itself is :func:`sim_bridge.evaluation.run_disturbance_test`, shared with
MuJoCo. Runs on the CPU pipeline (``use_gpu_pipeline = False``), so every state access is the
plain per-actor API rather than GPU tensors.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence
from xml.sax.saxutils import quoteattr

import numpy as np

from grasp_planner.hands import load_hand
from grasp_planner.robots.panda import ARM_JOINT_NAMES, OBSERVE_Q
from sim_bridge.objects import ObjectSpec, get_object, model_file
from sim_bridge.simulator import Simulator, validate_trajectory

#: D(R,O) protocol: PD drive stiffness (N·m/rad) and damping (N·m·s/rad) of every robot DOF.
DRIVE_STIFFNESS = 1000.0
DRIVE_DAMPING = 200.0
#: D(R,O) protocol: friction coefficient of robot and object shapes.
FRICTION = 3.0
#: Collision filter bit shared by the table and the object while support contacts are off
#: (shapes of one collision group whose filters share a bit do not collide).
SUPPORT_FILTER_BIT = 1
#: Table thickness, metres (same as the MuJoCo scene).
TABLE_THICKNESS_M = 0.04
INSTALL_HINT = ("IsaacGym is not pip-installable: download 'IsaacGym Preview 4' from "
                "https://developer.nvidia.com/isaac-gym, then `pip install -e isaacgym/python` into this "
                "environment (Python 3.8 builds only; needs an NVIDIA driver), or use backend 'mujoco'")


def import_gymapi():
    """The ``isaacgym.gymapi`` module.

    Raises:
        ImportError: isaacgym is not installed; the message names the package and what to do.
    """
    try:
        from isaacgym import gymapi
    except ImportError as exc:
        raise ImportError(f"simulator backend 'isaacgym' needs the 'isaacgym' package ({exc}). "
                          + INSTALL_HINT) from exc
    return gymapi


@dataclass(frozen=True)
class IsaacGymConfig:
    """IsaacGym specifics (the scene itself is a :class:`sim_bridge.scene.SceneConfig`).

    Attributes:
        robot_asset: URDF or MJCF file of the Franka with the hand on its flange, one articulation,
            joints named like ROS (``panda_joint1..7`` + the hand description's joint names).
        compute_device_id: CUDA device of the physics.
        graphics_device_id: device rendering the camera; -1 = no rendering (render_rgbd refuses).
        substeps: PhysX substeps per step.
        position_iterations: PhysX solver position iterations.
        velocity_iterations: PhysX solver velocity iterations.
    """

    robot_asset: str = ""
    compute_device_id: int = 0
    graphics_device_id: int = 0
    substeps: int = 1
    position_iterations: int = 8
    velocity_iterations: int = 1

    def robot_asset_path(self) -> Path:
        """The robot asset file.

        Raises:
            ValueError: not set or not a file (the message says what it must contain).
        """
        if not self.robot_asset:
            raise ValueError("IsaacGym backend: set sim_bridge parameter isaacgym_robot_asset to a URDF/MJCF of the "
                             "Franka with the hand on panda_link8 as ONE articulation, joints named panda_joint1..7 "
                             "plus the hand's joint names (config/hands/<hand>.yaml)")
        path = Path(self.robot_asset).expanduser()
        if not path.is_file():
            raise ValueError(f"IsaacGym backend: robot asset '{path}' is not a file")
        return path


# --------------------------------------------------------------------------------------------
# Pure translation (no isaacgym needed: unit-tested against a fake gymapi)


def dof_indices(dof_dict: Mapping[str, int], joint_names: Sequence[str]) -> np.ndarray:
    """(n,) actor DOF index of every joint name (``gym.get_actor_dof_dict``).

    Raises:
        ValueError: a joint is missing from the asset (lists the asset's DOFs).
    """
    missing = [n for n in joint_names if n not in dof_dict]
    if missing:
        raise ValueError(f"the IsaacGym robot asset has no DOF named {missing}; its DOFs are "
                         f"{sorted(dof_dict, key=dof_dict.get)} (joint names must match the ROS names)")
    return np.array([int(dof_dict[n]) for n in joint_names], dtype=int)


def configure_dof_properties(props: np.ndarray, drive_mode: int, stiffness: float = DRIVE_STIFFNESS,
                             damping: float = DRIVE_DAMPING) -> np.ndarray:
    """Position drives with the protocol's PD gains on every DOF of a ``get_actor_dof_properties`` array."""
    props = props.copy()
    props["driveMode"][:] = drive_mode
    props["stiffness"][:] = stiffness
    props["damping"][:] = damping
    return props


def robot_asset_options(gymapi) -> Any:
    """AssetOptions of the robot: fixed base, position drives, no gravity, visual meshes as authored."""
    o = gymapi.AssetOptions()
    o.fix_base_link = True
    o.flip_visual_attachments = False
    o.default_dof_drive_mode = gymapi.DOF_MODE_POS
    o.disable_gravity = True
    o.collapse_fixed_joints = False
    o.armature = 0.01
    return o


def object_asset_options(gymapi, density_kg_m3: float) -> Any:
    """AssetOptions of the object: free base, mass = density × (convex-decomposed) collision volume."""
    o = gymapi.AssetOptions()
    o.fix_base_link = False
    o.density = float(density_kg_m3)
    o.override_com = True
    o.override_inertia = True
    o.vhacd_enabled = True
    return o


def table_asset_options(gymapi) -> Any:
    o = gymapi.AssetOptions()
    o.fix_base_link = True
    return o


def object_urdf(spec: ObjectSpec) -> str:
    """A one-link URDF of a catalogue object in its own model frame (primitives or its mesh files)."""
    if spec.kind == "box":
        geoms = [f'<box size="{" ".join(f"{2 * h:.6g}" for h in spec.size)}"/>']
    elif spec.kind == "cylinder":
        r, hh = spec.size
        geoms = [f'<cylinder radius="{r:.6g}" length="{2 * hh:.6g}"/>']
    else:
        geoms = [f"<mesh filename={quoteattr(str(model_file(p)))}/>"
                 for p in (spec.collision_meshes or (spec.visual_mesh,))]
    visual = (geoms[0] if spec.kind != "mesh" else f"<mesh filename={quoteattr(str(model_file(spec.visual_mesh)))}/>")
    collisions = "".join(f"<collision><geometry>{g}</geometry></collision>" for g in geoms)
    return (f'<?xml version="1.0"?>\n<robot name={quoteattr(spec.name)}><link name="object">'
            f"<visual><geometry>{visual}</geometry></visual>{collisions}</link></robot>\n")


def horizontal_fov_deg(fovy_deg: float, width: int, height: int) -> float:
    """IsaacGym cameras take the horizontal field of view; ours is vertical (square pixels)."""
    return math.degrees(2.0 * math.atan(math.tan(math.radians(fovy_deg) / 2.0) * width / height))


def depth_from_gym(image: np.ndarray, max_depth_m: float) -> np.ndarray:
    """IsaacGym's IMAGE_DEPTH (negative distance along the view axis) → metres, NaN = no return."""
    depth = -np.asarray(image, dtype=np.float32)
    depth[~np.isfinite(depth) | (depth <= 0) | (depth >= max_depth_m)] = np.nan
    return depth


class _State(NamedTuple):
    dof_states: np.ndarray
    object_states: np.ndarray
    targets: np.ndarray
    time_s: float
    trajectory: Any


# --------------------------------------------------------------------------------------------


class IsaacGymSimulator(Simulator):
    """The scene of :class:`sim_bridge.scene.SceneConfig` in IsaacGym (see the module docstring).

    Args:
        config: the scene (hand, object and placement, camera, timestep, density, friction).
        isaac: IsaacGym specifics, above all the robot asset.
        gymapi: the ``isaacgym.gymapi`` module (None: import it; tests pass a fake).

    Raises:
        ImportError: isaacgym missing (says how to install it).
        ValueError: no robot asset, or it lacks a joint of the arm or hand.
    """

    def __init__(self, config, isaac: IsaacGymConfig | None = None, gymapi=None) -> None:
        from sim_bridge.world import intrinsics_from_fovy  # pure helper; MuJoCo's module is installed anyway

        self.config = config
        self.isaac = isaac or IsaacGymConfig()
        robot_path = self.isaac.robot_asset_path()
        self.gymapi = g = gymapi or import_gymapi()
        self.hand = load_hand(config.hand)
        self.joint_names = tuple(ARM_JOINT_NAMES) + tuple(self.hand.joint_names)
        self._hand_joints = set(self.hand.joint_names)
        self.intrinsics = intrinsics_from_fovy(config.camera_width, config.camera_height, config.camera_fovy_deg)
        self.gym = g.acquire_gym()

        params = g.SimParams()
        params.dt = float(config.timestep_s)
        params.substeps = int(self.isaac.substeps)
        params.up_axis = g.UP_AXIS_Z
        params.gravity = g.Vec3(0.0, 0.0, -9.81)
        params.use_gpu_pipeline = False
        params.physx.solver_type = 1   # TGS
        params.physx.num_position_iterations = int(self.isaac.position_iterations)
        params.physx.num_velocity_iterations = int(self.isaac.velocity_iterations)
        params.physx.use_gpu = True
        self._params = params
        self._gravity = (0.0, 0.0, -9.81)
        self.sim = self.gym.create_sim(self.isaac.compute_device_id, self.isaac.graphics_device_id,
                                       g.SIM_PHYSX, params)

        robot_asset = self.gym.load_asset(self.sim, str(robot_path.parent), robot_path.name, robot_asset_options(g))
        self._asset_dir = tempfile.TemporaryDirectory(prefix="fgrasp_isaacgym_")
        spec = get_object(config.object)
        (Path(self._asset_dir.name) / "object.urdf").write_text(object_urdf(spec))
        object_asset = self.gym.load_asset(self.sim, self._asset_dir.name, "object.urdf",
                                           object_asset_options(g, config.object_density_kg_m3))
        (x0, x1), (y0, y1) = config.table_x_range, config.table_y_range
        table_asset = self.gym.create_box(self.sim, x1 - x0, y1 - y0, TABLE_THICKNESS_M, table_asset_options(g))

        self.env = self.gym.create_env(self.sim, g.Vec3(-1.5, -1.5, -1.0), g.Vec3(1.5, 1.5, 2.0), 1)
        base = g.Transform()
        base.p = g.Vec3(0.0, 0.0, float(config.table_top_z))
        self.robot = self.gym.create_actor(self.env, robot_asset, base, "robot", 0, 0)
        table_pose = g.Transform()
        table_pose.p = g.Vec3((x0 + x1) / 2, (y0 + y1) / 2, config.table_top_z - TABLE_THICKNESS_M / 2)
        self.table = self.gym.create_actor(self.env, table_asset, table_pose, "table", 0, 0)
        self._rest_pos, self._rest_quat_wxyz = spec.placement(config.object_xy, config.object_yaw, config.table_top_z)
        self.object = self.gym.create_actor(self.env, object_asset, self._transform(self._rest_pos, self._rest_quat_wxyz),
                                            "object", 0, 0)

        self._dof = dof_indices(self.gym.get_actor_dof_dict(self.env, self.robot), self.joint_names)
        props = self.gym.get_actor_dof_properties(self.env, self.robot)
        self.gym.set_actor_dof_properties(self.env, self.robot, configure_dof_properties(props, g.DOF_MODE_POS))
        self._limits = np.stack([props["lower"][self._dof], props["upper"][self._dof]], axis=1).astype(float)
        for actor in (self.robot, self.object):
            shapes = self.gym.get_actor_rigid_shape_properties(self.env, actor)
            for shape in shapes:
                shape.friction = FRICTION
            self.gym.set_actor_rigid_shape_properties(self.env, actor, shapes)
        self._object_body = self.gym.get_actor_rigid_body_handle(self.env, self.object, 0)
        self._object_body_env = self.gym.get_actor_rigid_body_index(self.env, self.object, 0, g.DOMAIN_ENV)
        bodies = self.gym.get_actor_rigid_body_dict(self.env, self.robot)
        self._hand_bodies_env = {self.gym.get_actor_rigid_body_index(self.env, self.robot, i, g.DOMAIN_ENV)
                                 for name, i in bodies.items() if not name.startswith("panda_")}
        self._mass = float(self.gym.get_actor_rigid_body_properties(self.env, self.object)[0].mass)
        self._n_dof = len(props)
        self._targets = np.zeros(len(self.joint_names))
        self._force = np.zeros(3)
        self._support = True
        self._time_s = 0.0
        self._trajectory = None
        self._camera = None
        self.object_rest_z = float(self._rest_pos[2])
        self.reset()

    # ---------------------------------------------------------------- helpers
    def _transform(self, pos, quat_wxyz):
        g = self.gymapi
        t = g.Transform()
        t.p = g.Vec3(*(float(v) for v in pos))
        w, x, y, z = (float(v) for v in quat_wxyz)
        t.r = g.Quat(x, y, z, w)
        return t

    def _indices(self, names: Sequence[str]) -> np.ndarray:
        unknown = [n for n in names if n not in self.joint_names]
        if unknown:
            raise ValueError(f"unknown joint name(s) {unknown}; the simulated robot has {', '.join(self.joint_names)}")
        return np.array([self.joint_names.index(n) for n in names], dtype=int)

    def _apply_targets(self) -> None:
        full = np.zeros(self._n_dof, dtype=np.float32)
        full[self._dof] = np.clip(self._targets, self._limits[:, 0], self._limits[:, 1])
        self.gym.set_actor_dof_position_targets(self.env, self.robot, full)

    def _dof_states(self) -> np.ndarray:
        return self.gym.get_actor_dof_states(self.env, self.robot, self.gymapi.STATE_ALL)

    # ---------------------------------------------------------------- description
    @property
    def timestep_s(self) -> float:
        return float(self.config.timestep_s)

    @property
    def sim_time_s(self) -> float:
        return self._time_s

    @property
    def object_mass_kg(self) -> float:
        return self._mass

    # ---------------------------------------------------------------- state
    def joint_positions(self) -> dict[str, float]:
        return dict(zip(self.joint_names, self._dof_states()["pos"][self._dof].astype(float).tolist()))

    def joint_velocities(self) -> dict[str, float]:
        return dict(zip(self.joint_names, self._dof_states()["vel"][self._dof].astype(float).tolist()))

    def object_pose(self) -> tuple[np.ndarray, np.ndarray]:
        pose = self.gym.get_actor_rigid_body_states(self.env, self.object, self.gymapi.STATE_POS)[0]["pose"]
        p, r = pose["p"], pose["r"]
        return (np.array([p["x"], p["y"], p["z"]], dtype=float),
                np.array([r["w"], r["x"], r["y"], r["z"]], dtype=float))

    def object_hand_contacts(self) -> int:
        contacts = self.gym.get_env_rigid_contacts(self.env)
        obj, hand = self._object_body_env, self._hand_bodies_env
        return int(sum(1 for c in contacts if (c["body0"] == obj and c["body1"] in hand)
                       or (c["body1"] == obj and c["body0"] in hand)))

    # ---------------------------------------------------------------- control
    def reset(self) -> None:
        g = self.gymapi
        q = np.zeros(len(self.joint_names))
        q[:len(ARM_JOINT_NAMES)] = OBSERVE_Q
        q = np.clip(q, self._limits[:, 0], self._limits[:, 1])
        states = self._dof_states()
        states["pos"][:] = 0.0
        states["vel"][:] = 0.0
        states["pos"][self._dof] = q
        self.gym.set_actor_dof_states(self.env, self.robot, states, g.STATE_ALL)
        obj = self.gym.get_actor_rigid_body_states(self.env, self.object, g.STATE_ALL)
        pose = obj[0]["pose"]
        pose["p"]["x"], pose["p"]["y"], pose["p"]["z"] = (float(v) for v in self._rest_pos)
        w, x, y, z = (float(v) for v in self._rest_quat_wxyz)
        pose["r"]["x"], pose["r"]["y"], pose["r"]["z"], pose["r"]["w"] = x, y, z, w
        for key in ("linear", "angular"):
            for axis in ("x", "y", "z"):
                obj[0]["vel"][key][axis] = 0.0
        self.gym.set_actor_rigid_body_states(self.env, self.object, obj, g.STATE_ALL)
        self._targets = q.copy()
        self._trajectory = None
        self._time_s = 0.0
        self._apply_targets()

    def set_targets(self, targets: Mapping[str, float]) -> None:
        idx = self._indices(list(targets))
        self._targets[idx] = [float(v) for v in targets.values()]
        self._apply_targets()

    def step(self, n: int = 1) -> None:
        g = self.gymapi
        for _ in range(int(n)):
            if self._trajectory is not None:
                self._track_trajectory()
            if np.any(self._force):   # PhysX clears applied forces after every step
                self.gym.apply_body_forces(self.env, self._object_body, g.Vec3(*self._force), g.Vec3(0.0, 0.0, 0.0),
                                           g.ENV_SPACE)
            self.gym.simulate(self.sim)
            self.gym.fetch_results(self.sim, True)
            self._time_s += self.timestep_s

    def execute_trajectory(self, joint_names: Sequence[str], positions: np.ndarray, times_s: np.ndarray, *,
                           wait: bool = True, hold_s: float = 0.0) -> None:
        idx, pos, times = validate_trajectory(self._indices, joint_names, positions, times_s)
        if times[0] > 0:
            pos = np.vstack([self._targets[idx], pos])
            times = np.concatenate([[0.0], times])
        self._trajectory = (idx, pos, times, self._time_s)
        if wait:
            self.step(int(np.ceil((times[-1] + hold_s) / self.timestep_s)))

    def _track_trajectory(self) -> None:
        idx, pos, times, start = self._trajectory
        t = self._time_s - start
        if t >= times[-1]:
            q, self._trajectory = pos[-1], None
        else:
            q = np.array([np.interp(t, times, col) for col in pos.T])
        self._targets[idx] = q
        self._apply_targets()

    @property
    def trajectory_active(self) -> bool:
        return self._trajectory is not None

    def cancel_trajectory(self) -> None:
        self._trajectory = None

    # ---------------------------------------------------------------- disturbance protocol
    def save_state(self) -> _State:
        g = self.gymapi
        return _State(self._dof_states().copy(),
                      self.gym.get_actor_rigid_body_states(self.env, self.object, g.STATE_ALL).copy(),
                      self._targets.copy(), self._time_s, self._trajectory)

    def restore_state(self, state: _State) -> None:
        g = self.gymapi
        self.gym.set_actor_dof_states(self.env, self.robot, state.dof_states, g.STATE_ALL)
        self.gym.set_actor_rigid_body_states(self.env, self.object, state.object_states, g.STATE_ALL)
        self._targets, self._time_s, self._trajectory = state.targets.copy(), state.time_s, state.trajectory
        self._apply_targets()

    @property
    def gravity_enabled(self) -> bool:
        g = self._params.gravity
        return bool(g.x or g.y or g.z)

    def set_gravity(self, enabled: bool) -> None:
        self._params.gravity = self.gymapi.Vec3(*(self._gravity if enabled else (0.0, 0.0, 0.0)))
        self.gym.set_sim_params(self.sim, self._params)

    @property
    def support_contacts_enabled(self) -> bool:
        return self._support

    def set_support_contacts(self, enabled: bool) -> None:
        bit = 0 if enabled else SUPPORT_FILTER_BIT
        for actor in (self.table, self.object):
            shapes = self.gym.get_actor_rigid_shape_properties(self.env, actor)
            for shape in shapes:
                shape.filter = bit
            self.gym.set_actor_rigid_shape_properties(self.env, actor, shapes)
        self._support = bool(enabled)

    def apply_object_force(self, force_n: Sequence[float]) -> None:
        self._force = np.asarray(force_n, dtype=float).reshape(3).copy()

    # ---------------------------------------------------------------- camera
    def render_rgbd(self):
        from sim_bridge.world import MAX_DEPTH_M, RGBDFrame

        g, c = self.gymapi, self.config
        if self.isaac.graphics_device_id < 0:
            raise RuntimeError("IsaacGym backend: graphics_device_id is -1 (no rendering); set it to a GPU to "
                               "render the camera")
        if self._camera is None:
            props = g.CameraProperties()
            props.width, props.height = int(c.camera_width), int(c.camera_height)
            props.horizontal_fov = horizontal_fov_deg(c.camera_fovy_deg, c.camera_width, c.camera_height)
            props.near_plane, props.far_plane = 0.01, MAX_DEPTH_M
            self._camera = self.gym.create_camera_sensor(self.env, props)
            T = c.T_base_camera_optical
            eye, target = T[:3, 3], T[:3, 3] + T[:3, 2]   # optical z = viewing direction
            self.gym.set_camera_location(self._camera, self.env, g.Vec3(*eye), g.Vec3(*target))
        self.gym.step_graphics(self.sim)
        self.gym.render_all_camera_sensors(self.sim)
        rgba = self.gym.get_camera_image(self.sim, self.env, self._camera, g.IMAGE_COLOR)
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(c.camera_height, c.camera_width, 4)[..., :3].copy()
        depth = depth_from_gym(self.gym.get_camera_image(self.sim, self.env, self._camera, g.IMAGE_DEPTH),
                               MAX_DEPTH_M)
        return RGBDFrame(rgb, depth, self.intrinsics, c.T_base_camera_optical.copy())

    def close(self) -> None:
        sim = getattr(self, "sim", None)
        if sim is not None:
            if self._camera is not None:
                self.gym.destroy_camera_sensor(self.sim, self.env, self._camera)
            self.gym.destroy_sim(sim)
            self.sim = None
            self._asset_dir.cleanup()
