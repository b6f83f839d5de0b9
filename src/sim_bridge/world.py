"""SimWorld: the MuJoCo scene stepped by joint-name targets, with RGB-D camera and pictures.

Pure core (no rclpy). Joints are addressed by their ROS names (``panda_joint1..7``, the hand
model's own names: ``rh_*`` Shadow, the URDF's for Inspire, ``roh_*`` OYMotion). The Shadow
Hand's tendon-coupled distal joints (J1 + J2 of FF/MF/RF/LF) are driven by one actuator whose
target is the sum of the two joint targets.

Coupled hands (Inspire, OYMotion): only the actuated joints have servos; each coupling follower
is held by a joint equality constraint. A follower's *target* is always derived from its
leader's (``multiplier * leader + offset``): naming a follower together with its leader is
accepted and its value replaced by the derived one (the planner sends every hand joint);
naming a follower without its leader is refused with a ValueError that names the leader.
"""
from __future__ import annotations

import os
from typing import Mapping, NamedTuple, Sequence

import mujoco
import numpy as np

from grasp_planner.hands import load_hand
from grasp_planner.robots.panda import ARM_JOINT_NAMES, OBSERVE_Q
from sim_bridge.objects import OBJECT_BODY, OBJECT_JOINT
from sim_bridge.simulator import Simulator, validate_trajectory
from sim_bridge.scene import (CAMERA_NAME, OVERVIEW_CAMERA_NAME, SceneConfig, build_spec,
                              compile_spec)

#: Depth beyond this range (metres) is reported as NaN ("no return").
MAX_DEPTH_M = 10.0


class CameraIntrinsics(NamedTuple):
    """Pinhole intrinsics in pixels (pixel centres at integer coordinates, ROS convention)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


class RGBDFrame(NamedTuple):
    """One rendered RGB-D frame (depth registered to colour)."""

    rgb: np.ndarray                     #: (H, W, 3) uint8
    depth: np.ndarray                   #: (H, W) float32 metres along the optical axis, NaN = no return
    intrinsics: CameraIntrinsics
    T_base_camera_optical: np.ndarray   #: (4, 4) float64, optical frame pose in the base frame


def intrinsics_from_fovy(width: int, height: int, fovy_deg: float) -> CameraIntrinsics:
    """Intrinsics of a MuJoCo camera (square pixels, principal point at the image centre)."""
    fy = 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2.0)
    return CameraIntrinsics(fx=fy, fy=fy, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0,
                            width=width, height=height)


def release_gl_context() -> None:
    """Unbind the calling thread's EGL context, so another thread may render or close later.

    ``mujoco.Renderer`` makes its context current before every render; EGL refuses a context
    that is still current in another thread (EGL_BAD_ACCESS), e.g. a renderer created in an
    executor thread and closed from the main thread.
    """
    if os.environ.get("MUJOCO_GL", "").lower() != "egl":
        return
    from mujoco import egl
    from OpenGL import EGL

    if egl.EGL_DISPLAY is not None:
        EGL.eglMakeCurrent(egl.EGL_DISPLAY, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)


class _Trajectory(NamedTuple):
    names: tuple[str, ...]
    index: np.ndarray       # (n,) indices into SimWorld.joint_names
    positions: np.ndarray   # (T, n)
    times_s: np.ndarray     # (T,), relative to start_s
    start_s: float


class _State(NamedTuple):
    physics: np.ndarray              # mjSTATE_INTEGRATION vector
    targets: np.ndarray              # (n_joints,) position targets, radians
    trajectory: "_Trajectory | None"


class SimWorld(Simulator):
    """The simulated robot, hand and object in MuJoCo; one instance per scene (the default :class:`Simulator`).

    Args:
        config: the scene; see :class:`SceneConfig`.
    """

    def __init__(self, config: SceneConfig) -> None:
        self.config = config
        self.hand = load_hand(config.hand)
        self.model: mujoco.MjModel = compile_spec(build_spec(config))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.joint_names: tuple[str, ...] = tuple(ARM_JOINT_NAMES) + tuple(self.hand.joint_names)
        self._qadr = np.array([m.jnt_qposadr[m.joint(n).id] for n in self.joint_names])
        self._dadr = np.array([m.jnt_dofadr[m.joint(n).id] for n in self.joint_names])
        self._joint_index = {n: i for i, n in enumerate(self.joint_names)}
        self._limits = np.array([m.jnt_range[m.joint(n).id] for n in self.joint_names])
        # Actuator -> (joint indices, coefficients): joint transmission or fixed tendon.
        self._act_map: list[tuple[np.ndarray, np.ndarray]] = []
        for a in range(m.nu):
            trn, target = int(m.actuator_trntype[a]), int(m.actuator_trnid[a, 0])
            if trn == int(mujoco.mjtTrn.mjTRN_JOINT):
                idx, coef = [self._joint_index[m.joint(target).name]], [1.0]
            elif trn == int(mujoco.mjtTrn.mjTRN_TENDON):
                adr, num = int(m.tendon_adr[target]), int(m.tendon_num[target])
                idx = [self._joint_index[m.joint(int(m.wrap_objid[w])).name] for w in range(adr, adr + num)]
                coef = [float(m.wrap_prm[w]) for w in range(adr, adr + num)]
            else:
                raise ValueError(f"actuator '{m.actuator(a).name}': unsupported transmission {trn}")
            self._act_map.append((np.array(idx), np.array(coef)))
        #: (nu, n_joints): ctrl = coupling @ targets.
        self._coupling = np.zeros((m.nu, len(self.joint_names)))
        for a, (idx, coef) in enumerate(self._act_map):
            self._coupling[a, idx] = coef
        # Coupling followers: target row = A[f] @ targets[actuated] + b[f] (hand.coupling_matrix()).
        A, b = self.hand.coupling_matrix()
        hand_index = {n: i for i, n in enumerate(self.hand.joint_names)}
        self._followers = np.array([self._joint_index[c.follower] for c in self.hand.couplings], dtype=int)
        rows = [hand_index[c.follower] for c in self.hand.couplings]
        self._follower_A = A[rows] if rows else np.zeros((0, A.shape[1]))
        self._follower_b = b[rows] if rows else np.zeros(0)
        self._actuated = self._indices(self.hand.actuated_joints)
        self._ctrl_lo, self._ctrl_hi = m.actuator_ctrlrange.T.copy()
        unlimited = ~m.actuator_ctrllimited.astype(bool)
        self._ctrl_lo[unlimited], self._ctrl_hi[unlimited] = -np.inf, np.inf
        self._object_body = m.body(OBJECT_BODY).id
        self._object_qadr = int(m.jnt_qposadr[m.joint(OBJECT_JOINT).id])
        self._palm_body = m.body(self.hand.palm_body).id
        self._camera_id = m.camera(CAMERA_NAME).id
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._targets = np.zeros(len(self.joint_names))
        self._trajectory: _Trajectory | None = None
        self.intrinsics = intrinsics_from_fovy(config.camera_width, config.camera_height,
                                               config.camera_fovy_deg)
        self.object_rest_z: float = 0.0
        # What set_gravity(True) / set_support_contacts(True) restore (the compiled scene's values).
        self._saved_gravity = m.opt.gravity.copy()
        self._saved_support_masks = (m.geom_contype[self._support_geoms()].copy(),
                                     m.geom_conaffinity[self._support_geoms()].copy())
        self.reset()

    # ------------------------------------------------------------------ state
    @property
    def arm_joint_names(self) -> tuple[str, ...]:
        return tuple(ARM_JOINT_NAMES)

    @property
    def hand_joint_names(self) -> tuple[str, ...]:
        return tuple(self.hand.joint_names)

    @property
    def sim_time_s(self) -> float:
        return float(self.data.time)

    @property
    def object_mass_kg(self) -> float:
        """Mass of the object (density × collision volume), kg."""
        return float(self.model.body_subtreemass[self._object_body])

    @property
    def object_body_id(self) -> int:
        return self._object_body

    def joint_positions(self) -> dict[str, float]:
        """Joint name -> position (rad) for the arm and hand joints."""
        return dict(zip(self.joint_names, self.data.qpos[self._qadr].tolist()))

    def joint_velocities(self) -> dict[str, float]:
        """Joint name -> velocity (rad/s) for the arm and hand joints."""
        return dict(zip(self.joint_names, self.data.qvel[self._dadr].tolist()))

    def joint_targets(self) -> dict[str, float]:
        """Joint name -> current position target (rad)."""
        return dict(zip(self.joint_names, self._targets.tolist()))

    def object_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """``(pos (3,) metres, quat (4,) w x y z)`` of the object body in the base frame."""
        return (self.data.xpos[self._object_body].copy(), self.data.xquat[self._object_body].copy())

    def palm_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """``(pos (3,) metres, quat (4,) w x y z)`` of the hand's palm body in the base frame."""
        return (self.data.xpos[self._palm_body].copy(), self.data.xquat[self._palm_body].copy())

    def set_object_pose(self, pos: Sequence[float], quat_wxyz: Sequence[float]) -> None:
        """Teleport the object (zero velocity) and update kinematics."""
        a = self._object_qadr
        self.data.qpos[a:a + 3] = pos
        self.data.qpos[a + 3:a + 7] = np.asarray(quat_wxyz, float) / np.linalg.norm(quat_wxyz)
        dadr = int(self.model.jnt_dofadr[self.model.joint(OBJECT_JOINT).id])
        self.data.qvel[dadr:dadr + 6] = 0.0
        mujoco.mj_forward(self.model, self.data)

    # ---------------------------------------------------------------- control
    def _indices(self, names: Sequence[str]) -> np.ndarray:
        unknown = [n for n in names if n not in self._joint_index]
        if unknown:
            raise ValueError(f"unknown joint name(s) {unknown}; the simulated robot has "
                             f"{', '.join(self.joint_names)}")
        return np.array([self._joint_index[n] for n in names], dtype=int)

    def _couple(self, q: np.ndarray) -> None:
        """Overwrite the followers of ``q`` ((n_joints,) radians, in place) from their leaders."""
        if len(self._followers):
            q[self._followers] = self._follower_A @ q[self._actuated] + self._follower_b

    def _check_followers(self, names: Sequence[str]) -> None:
        """Refuse a follower named without its leader (see the module docstring)."""
        named = set(names)
        for c in self.hand.couplings:
            if c.follower in named and c.leader not in named:
                raise ValueError(f"joint '{c.follower}' follows '{c.leader}' (q = {c.multiplier:g} * "
                                 f"q_{c.leader} {c.offset:+g}); command '{c.leader}' instead")

    def _apply_targets(self) -> None:
        self._couple(self._targets)
        self.data.ctrl[:] = np.clip(self._coupling @ self._targets, self._ctrl_lo, self._ctrl_hi)

    def set_targets(self, targets: Mapping[str, float]) -> None:
        """Set position targets (rad) by joint name; joints not named keep their targets.

        Coupling followers take the value derived from their leader (module docstring).

        Raises:
            ValueError: a name is not an arm or hand joint, or a follower is named without its
                leader (nothing is changed then).
        """
        names = list(targets)
        idx = self._indices(names)
        self._check_followers(names)
        self._targets[idx] = [float(targets[n]) for n in names]
        self._apply_targets()

    def step(self, n: int = 1) -> None:
        """Advance physics ``n`` steps, interpolating an active trajectory at every step."""
        for _ in range(int(n)):
            if self._trajectory is not None:
                self._track_trajectory()
            mujoco.mj_step(self.model, self.data)

    def reset(self, q_arm: Sequence[float] | np.ndarray = OBSERVE_Q,
              q_hand: Mapping[str, float] | None = None) -> None:
        """Arm at ``q_arm`` (rad, ARM_JOINT_NAMES order), hand open (or ``q_hand``), object at its
        resting placement, zero velocities, targets = configuration, trajectory cancelled.

        "Open" is every actuated hand joint at 0 (clipped to its limits: fingers extended on all
        three hands), followers derived through the couplings.
        """
        mujoco.mj_resetData(self.model, self.data)
        q = np.zeros(len(self.joint_names))
        q[:len(ARM_JOINT_NAMES)] = np.asarray(q_arm, float)
        q = np.clip(q, self._limits[:, 0], self._limits[:, 1])
        if q_hand:
            self._check_followers(list(q_hand))
            q[self._indices(list(q_hand))] = list(q_hand.values())
        self._couple(q)
        self.data.qpos[self._qadr] = q
        self._targets = q.copy()
        self._trajectory = None
        self._apply_targets()
        mujoco.mj_forward(self.model, self.data)
        self.object_rest_z = float(self.data.xpos[self._object_body][2])

    # ------------------------------------------------------------ trajectories
    def execute_trajectory(self, joint_names: Sequence[str], positions: np.ndarray,
                           times_s: np.ndarray, *, wait: bool = True, hold_s: float = 0.0) -> None:
        """Follow a joint trajectory by interpolating position targets linearly at every step.

        Args:
            joint_names: n joint names (arm and/or hand, any order); others keep their targets.
            positions: (T, n) radians.
            times_s: (T,) seconds from now, strictly increasing, ≥ 0. If ``times_s[0] > 0`` the
                current targets are the start point at t = 0.
            wait: step physics until the end (+ ``hold_s``); otherwise only start it and let
                :meth:`step` advance it (the ROS node does this in chunks).
            hold_s: with ``wait``, extra seconds of physics holding the last point.

        Raises:
            ValueError: unknown joint names, shape mismatch, non-finite values or times not
                strictly increasing. The running trajectory (if any) is left untouched then.
        """
        names = tuple(joint_names)
        self._check_followers(names)
        idx, pos, times = validate_trajectory(self._indices, names, positions, times_s)
        if times[0] > 0:
            pos = np.vstack([self._targets[idx], pos])
            times = np.concatenate([[0.0], times])
        self._trajectory = _Trajectory(names, idx, pos, times, float(self.data.time))
        if wait:
            n_steps = int(np.ceil((times[-1] + hold_s) / self.model.opt.timestep))
            self.step(n_steps)

    @property
    def trajectory_active(self) -> bool:
        """True while a trajectory is being followed (until its last time point)."""
        return self._trajectory is not None

    @property
    def trajectory_remaining_s(self) -> float:
        tr = self._trajectory
        return 0.0 if tr is None else max(0.0, tr.start_s + tr.times_s[-1] - float(self.data.time))

    def cancel_trajectory(self) -> None:
        """Stop following the trajectory; joints hold their current targets."""
        self._trajectory = None

    def _track_trajectory(self) -> None:
        tr = self._trajectory
        t = float(self.data.time) - tr.start_s
        if t >= tr.times_s[-1]:
            q = tr.positions[-1]
            self._trajectory = None
        else:
            k = int(np.searchsorted(tr.times_s, t, side="right")) - 1
            k = max(0, min(k, len(tr.times_s) - 2))
            a = (t - tr.times_s[k]) / (tr.times_s[k + 1] - tr.times_s[k])
            q = (1.0 - a) * tr.positions[k] + a * tr.positions[k + 1]
        self._targets[tr.index] = q
        self._apply_targets()

    # -------------------------------------------------------------- contacts
    def hand_body_ids(self) -> set[int]:
        """Body ids of the hand (root body and all its descendants)."""
        root = self.model.body(self.hand.root_body).id
        ids = {root}
        for b in range(self.model.nbody):
            p = b
            while p > 0:
                if p == root:
                    ids.add(b)
                    break
                p = int(self.model.body_parentid[p])
        return ids

    def object_hand_contacts(self) -> int:
        """Number of active contacts between the object and the hand."""
        hand = self.hand_body_ids()
        gb = self.model.geom_bodyid
        n = 0
        for c in self.data.contact[:self.data.ncon]:
            b1, b2 = int(gb[c.geom1]), int(gb[c.geom2])
            if (b1 == self._object_body and b2 in hand) or (b2 == self._object_body and b1 in hand):
                n += 1
        return n

    # -------------------------------------------------------------- rendering
    def _renderer(self, width: int, height: int) -> mujoco.Renderer:
        key = (int(width), int(height))
        if key not in self._renderers:
            self._renderers[key] = mujoco.Renderer(self.model, height=key[1], width=key[0])
            release_gl_context()
        return self._renderers[key]

    def _render(self, width: int, height: int, data: mujoco.MjData, camera: int | str,
                depth: bool = False) -> np.ndarray:
        r = self._renderer(width, height)
        try:
            if depth:
                r.enable_depth_rendering()
            r.update_scene(data, camera=camera)
            return r.render().copy()
        finally:
            if depth:
                r.disable_depth_rendering()
            release_gl_context()

    def render_rgbd(self) -> RGBDFrame:
        """Render the RGB-D camera (≈90 ms at 640×480 on CPU Mesa).

        Returns:
            :class:`RGBDFrame` (a tuple ``rgb, depth, intrinsics, T_base_camera_optical``); depth is metres along the optical z axis, NaN beyond
            :data:`MAX_DEPTH_M` (background).
        """
        c = self.config
        rgb = self._render(c.camera_width, c.camera_height, self.data, self._camera_id)
        depth = self._render(c.camera_width, c.camera_height, self.data, self._camera_id,
                             depth=True).astype(np.float32, copy=False)
        depth[~(depth < MAX_DEPTH_M) | (depth <= 0)] = np.nan
        return RGBDFrame(rgb, depth, self.intrinsics, c.T_base_camera_optical.copy())

    def render_overview(self, width: int = 640, height: int = 480) -> np.ndarray:
        """(H, W, 3) uint8 picture of the current state from the overview camera."""
        return self._render(width, height, self.data, OVERVIEW_CAMERA_NAME)

    def render_configuration(self, q_by_name: Mapping[str, float], width: int = 640,
                             height: int = 480, camera: str = OVERVIEW_CAMERA_NAME) -> np.ndarray:
        """Picture of the robot at ``q_by_name`` (kinematics only, on a copy of the state).

        Joints not named keep their current positions; the object stays where it is now.
        The simulation itself is not touched.
        """
        idx = self._indices(list(q_by_name))
        scratch = mujoco.MjData(self.model)
        scratch.qpos[:] = self.data.qpos
        scratch.qpos[self._qadr[idx]] = [float(q_by_name[n]) for n in q_by_name]
        mujoco.mj_kinematics(self.model, scratch)
        mujoco.mj_camlight(self.model, scratch)
        return self._render(width, height, scratch, camera)

    # ------------------------------------------------ Simulator interface: protocol support
    @property
    def timestep_s(self) -> float:
        return float(self.model.opt.timestep)

    def joint_state_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.qpos[self._qadr].copy(), self.data.qvel[self._dadr].copy()

    def save_state(self) -> _State:
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.empty(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, physics, spec)
        return _State(physics, self._targets.copy(), self._trajectory)

    def restore_state(self, state: _State) -> None:
        mujoco.mj_setState(self.model, self.data, state.physics, mujoco.mjtState.mjSTATE_INTEGRATION)
        self._targets = state.targets.copy()
        self._trajectory = state.trajectory
        mujoco.mj_forward(self.model, self.data)

    @property
    def gravity_enabled(self) -> bool:
        return bool(np.any(self.model.opt.gravity != 0.0))

    def set_gravity(self, enabled: bool) -> None:
        if enabled == self.gravity_enabled:
            return
        if enabled:
            self.model.opt.gravity[:] = self._saved_gravity
        else:
            self._saved_gravity = self.model.opt.gravity.copy()
            self.model.opt.gravity[:] = 0.0

    def _support_geoms(self) -> np.ndarray:
        return np.flatnonzero(self.model.geom_bodyid == 0)   # world-body geoms: table top and floor

    @property
    def support_contacts_enabled(self) -> bool:
        g = self._support_geoms()
        return bool(np.any(self.model.geom_contype[g] != 0) or np.any(self.model.geom_conaffinity[g] != 0))

    def set_support_contacts(self, enabled: bool) -> None:
        if enabled == self.support_contacts_enabled:
            return
        g = self._support_geoms()
        if enabled:
            self.model.geom_contype[g], self.model.geom_conaffinity[g] = self._saved_support_masks
        else:
            self._saved_support_masks = (self.model.geom_contype[g].copy(), self.model.geom_conaffinity[g].copy())
            self.model.geom_contype[g] = 0
            self.model.geom_conaffinity[g] = 0

    def apply_object_force(self, force_n: Sequence[float]) -> None:
        self.data.xfrc_applied[self._object_body] = 0.0
        self.data.xfrc_applied[self._object_body, :3] = np.asarray(force_n, dtype=float)

    def close(self) -> None:
        """Release the renderers (OpenGL contexts)."""
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()
