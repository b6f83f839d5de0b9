"""ROS 2 node ``grasp_planner``: object cloud + joint states in, grasp joint goal, trajectory, markers and status out.

Plans once for the first object cloud after start-up (``plan_on_cloud``) and again for the latest
cloud after each ``~/replan`` (std_srvs/Trigger); other clouds only replace the stored one.
Planning (1–5 s) runs on a worker thread so the subscriptions keep flowing. Every attempt ends in
a JSON status on ``/grasp_planner/status``; a joint goal (and, with ``execute``, a trajectory)
is published only when planning and the final safety check both passed.

In: ``cloud_topic`` (PointCloud2, base frame, latched), ``/joint_states``; with a network checkpoint
trained with images also ``image_topic`` (the colour image the cloud was segmented from, matched
to the cloud by stamp; the cloud's fields u, v give each point's pixel in it). Out (latched unless
noted): ``/grasp_planner/joint_goal`` (JointState, arm + hand), ``/grasp_planner/trajectory``
(JointTrajectory, command QoS, only with ``execute`` and the builtin backend),
``/grasp_planner/markers`` (MarkerArray), ``/grasp_planner/status`` (String, JSON; its
``grasp_backend`` entry says which predictor planned: backend, checkpoint + SHA-256, fallback reason),
``~/grasp_pose`` (PoseStamped, flange at the grasp).

With ``command_target: hardware`` (the real arm) an executed plan goes to the controllers instead
of ``/grasp_planner/trajectory``: the arm part as a JointTrajectory on ``arm_command_topic``, the
hand part on ``hand_command_topic`` as ``hand_command_type`` (a JointTrajectory, or JointState /
Float64MultiArray set-points streamed at ``hand_setpoint_rate_hz``); see
:mod:`grasp_planner.hardware`.
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import rclpy
import rclpy.logging
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException, ParameterUninitializedException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import Image, JointState, PointCloud2
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import MarkerArray

from grasp_common import qos, topics
from grasp_common.params import refuse_runtime_changes
from grasp_common.rosenv import localhost_env
from grasp_perception.conversions import cloud_to_numpy
from grasp_planner import conversions, hardware
from grasp_planner.franka_ik import FrankaKinematics, IKConfig
from grasp_planner.hands import HandDescription, load_hand
from grasp_planner.markers import grasp_markers, make_hand_surface_fn
from grasp_planner.model_paths import ModelNotFoundError
from grasp_planner.motion import BACKEND_NAMES, MotionBackend, MotionPlan, make_backend
from grasp_planner.motion.builtin import BuiltinPlannerConfig
from grasp_planner.object_model import MIN_OBJECT_POINTS
from grasp_planner.grasp_predictor import GRASP_BACKENDS
from grasp_planner.pipeline import GraspPlanner, PlannerConfig, PlanResult, builtin_backend
from grasp_planner.robots import panda
from grasp_planner.safety import SafetyLimits

NODE_NAME = "grasp_planner"
#: Default wait for a joint state naming all 7 arm joints before planning, seconds.
JOINT_STATE_TIMEOUT_S = 5.0
#: Largest difference between the trajectory's first point and the measured joints, radians.
START_TOLERANCE_RAD = hardware.START_TOLERANCE_RAD
#: Longest wait for the colour image stamped like the cloud (network trained with images), seconds.
IMAGE_TIMEOUT_S = 2.0
#: Object images kept by stamp while waiting for their cloud.
IMAGE_CACHE_SIZE = 4
#: How long destroy_node waits for a plan in progress to finish, seconds.
WORKER_JOIN_TIMEOUT_S = 10.0
#: Default camera pose: the one of config/functional_grasp.yaml (the YAML overrides it anyway).
DEFAULT_CAMERA_XYZ_M = (0.5, -0.536231, 0.499951)
DEFAULT_CAMERA_QUAT_XYZW = (-0.906308, 0.0, 0.0, 0.422618)
#: Timing keys always present in the status (None when the phase was not reached).
TIMING_KEYS = ("grasp_synthesis", "ik", "motion_plan", "total")
#: Defaults of the planner and of the built-in motion backend (one source of truth for the parameters).
_PLANNER = PlannerConfig()
_BUILTIN = BuiltinPlannerConfig()


@dataclass(frozen=True)
class PlannerNodeConfig:
    """Node parameters, read once at start-up (metres, radians, seconds)."""

    hand: str = "shadow"
    base_frame: str = panda.BASE_FRAME
    camera_xyz: tuple[float, float, float] = DEFAULT_CAMERA_XYZ_M
    camera_quat_xyzw: tuple[float, float, float, float] = DEFAULT_CAMERA_QUAT_XYZW
    motion_backend: str = "builtin"
    execute: bool = False
    approach_offset_m: float = _PLANNER.approach_offset_m
    lift_height_m: float = _PLANNER.lift_height_m
    num_candidates: int = _PLANNER.num_candidates
    seed: int = 0
    velocity_scale: float = _BUILTIN.velocity_scale
    table_z_m: float = _PLANNER.table_z_m
    cloud_topic: str = topics.OBJECT_CLOUD
    image_topic: str = topics.OBJECT_IMAGE
    plan_on_cloud: bool = True
    joint_state_timeout_s: float = JOINT_STATE_TIMEOUT_S
    command_target: str = "sim"
    arm_command_topic: str = hardware.ARM_COMMAND_TOPIC
    hand_command_topic: str = hardware.HAND_COMMAND_TOPIC
    hand_command_type: str = hardware.JOINT_TRAJECTORY
    hand_joint_order: tuple[str, ...] = ()
    hand_setpoint_rate_hz: float = hardware.HAND_SETPOINT_RATE_HZ
    grasp_backend: str = _PLANNER.grasp_backend
    grasp_checkpoint: str = _PLANNER.grasp_checkpoint
    network_samples: int = _PLANNER.network_samples
    completion_checkpoint: str = _PLANNER.completion_checkpoint
    network_fallback: bool = _PLANNER.network_fallback

    @property
    def hardware(self) -> hardware.HardwareConfig:
        """The controller topics and hand command format (command_target ``hardware``)."""
        return hardware.HardwareConfig(
            arm_topic=self.arm_command_topic, hand_topic=self.hand_command_topic,
            hand_command_type=self.hand_command_type, hand_joint_order=self.hand_joint_order,
            setpoint_rate_hz=self.hand_setpoint_rate_hz)

    def __post_init__(self) -> None:
        if self.command_target not in hardware.COMMAND_TARGETS:
            raise ValueError(f"unknown command_target '{self.command_target}'; choose one of: "
                             f"{', '.join(hardware.COMMAND_TARGETS)}")
        self.hardware  # noqa: B018 - validates the topics and the hand command type (HardwareConfigError)
        if not self.base_frame:
            raise ValueError("base_frame must not be empty (e.g. panda_link0)")
        if len(self.camera_xyz) != 3 or not all(math.isfinite(v) for v in self.camera_xyz):
            raise ValueError(f"camera_xyz must be 3 finite numbers [x, y, z] in metres, got {list(self.camera_xyz)}")
        if len(self.camera_quat_xyzw) != 4 or abs(float(np.linalg.norm(self.camera_quat_xyzw)) - 1.0) > 1e-3:
            raise ValueError(f"camera_quat_xyzw must be a unit quaternion [x, y, z, w], got "
                             f"{list(self.camera_quat_xyzw)}")
        if self.motion_backend not in BACKEND_NAMES:
            raise ValueError(f"unknown motion_backend '{self.motion_backend}'; choose one of: "
                             f"{', '.join(BACKEND_NAMES)}")
        if not 0 < self.velocity_scale <= 1:
            raise ValueError(f"velocity_scale must be in (0, 1], got {self.velocity_scale}")
        if not self.cloud_topic or not self.image_topic:
            raise ValueError("cloud_topic and image_topic must not be empty")
        if self.joint_state_timeout_s <= 0:
            raise ValueError(f"joint_state_timeout_s must be > 0 s, got {self.joint_state_timeout_s}")


def _float_range(lo: float, hi: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]


def _int_range(lo: int, hi: int) -> list[IntegerRange]:
    return [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]


_D = PlannerNodeConfig()
#: name → (default, description, floating range, integer range).
_PARAMETERS = {
    "hand": (_D.hand, "Dexterous hand model: config/hands/<hand>.yaml", None, None),
    "base_frame": (_D.base_frame, "Robot base frame; the object cloud must be in it, outputs are in it", None, None),
    "camera_xyz": (list(_D.camera_xyz), "Camera optical frame origin in the base frame [x, y, z], metres "
                   "(used to complete the unseen back of single-view clouds)", None, None),
    "camera_quat_xyzw": (list(_D.camera_quat_xyzw), "Camera optical frame orientation in the base frame "
                         "[x, y, z, w] (shared key; validated, not used by the planner)", None, None),
    "motion_backend": (_D.motion_backend, f"Arm motion planner: {' | '.join(BACKEND_NAMES)}", None, None),
    "execute": (_D.execute, "Send the planned trajectory for execution (topic for builtin, MoveIt for "
                "moveit_py) after the final safety check", None, None),
    "approach_offset_m": (_D.approach_offset_m, "Pre-grasp stand-off along the approach direction, metres",
                          _float_range(0.0, 0.5), None),
    "lift_height_m": (_D.lift_height_m, "Straight lift in +z of the base after closing, metres",
                      _float_range(0.0, 0.5), None),
    "num_candidates": (_D.num_candidates, "Grasp candidates tried best-first", None, _int_range(1, 256)),
    "seed": (_D.seed, "Random seed of IK restarts (same input + seed = same plan)", None,
             _int_range(0, 2**31 - 1)),
    "velocity_scale": (_D.velocity_scale, "Fraction of the arm's joint velocity limits the trajectory uses",
                       _float_range(0.01, 1.0), None),
    "table_z_m": (_D.table_z_m, "Table top height in the base frame, metres", _float_range(-1.0, 1.0), None),
    "cloud_topic": (_D.cloud_topic, "sensor_msgs/PointCloud2 input: the target object, base frame", None, None),
    "image_topic": (_D.image_topic, "sensor_msgs/Image input (rgb8/bgr8/rgba8/bgra8): the colour image each object "
                    "cloud was segmented from, same stamp; read only when the network checkpoint was trained with "
                    "images", None, None),
    "plan_on_cloud": (_D.plan_on_cloud, "Plan for the first cloud after start-up (later clouds only replace "
                      "the stored one; call ~/replan to plan again)", None, None),
    "joint_state_timeout_s": (_D.joint_state_timeout_s, "Wait this long for /joint_states naming all 7 arm "
                              "joints before giving up a plan, seconds", _float_range(0.05, 60.0), None),
    "command_target": (_D.command_target, "Where an executed plan goes: sim = arm + hand JointTrajectory on "
                       f"{topics.GRASP_TRAJECTORY} (sim_bridge); hardware = the arm and hand controller topics",
                       None, None),
    "arm_command_topic": (_D.arm_command_topic, "command_target hardware: trajectory_msgs/JointTrajectory topic "
                          "of the arm controller (7 arm joints by name)", None, None),
    "hand_command_topic": (_D.hand_command_topic, "command_target hardware: topic of the hand driver's position "
                           "command", None, None),
    "hand_command_type": (_D.hand_command_type, "command_target hardware: message type of the hand command: "
                          f"{' | '.join(hardware.HAND_COMMAND_TYPES)}", None, None),
    "hand_joint_order": (Parameter.Type.STRING_ARRAY, "command_target hardware: hand joints in the driver's "
                         "order (Float64MultiArray has no names); unset = the hand description's order", None, None),
    "hand_setpoint_rate_hz": (_D.hand_setpoint_rate_hz, "command_target hardware: rate of streamed JointState / "
                              "Float64MultiArray hand set-points, Hz", _float_range(1.0, 1000.0), None),
    "grasp_backend": (_D.grasp_backend, f"Grasp predictor: {' | '.join(GRASP_BACKENDS)} (network without a usable "
                      "checkpoint for the hand warns and uses the optimiser)", None, None),
    "grasp_checkpoint": (_D.grasp_checkpoint, "grasp_backend network: .safetensors checkpoint; empty = "
                         "config/checkpoints/<hand>.safetensors", None, None),
    "network_samples": (_D.network_samples, "grasp_backend network: CVAE samples recovered and ranked per request",
                        None, _int_range(1, 256)),
    "completion_checkpoint": (_D.completion_checkpoint, "grasp_backend network: shape-completion .safetensors "
                              "checkpoint: the refinement sees the view plus its guessed unseen side; empty = none "
                              "(a missing or unusable file warns and plans without it)", None, None),
    "network_fallback": (_D.network_fallback, "grasp_backend network: when none of the network's candidates passes "
                         "IK and motion planning (or it has none), try the optimiser's", None, None),
}


def _stamp_ns(stamp) -> int:
    """``builtin_interfaces/Time`` → integer nanoseconds."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class InputError(ValueError):
    """The planning input (cloud or joint state) is unusable; the message says why and what to do."""


def _json_safe(value):
    """Numpy scalars/arrays and tuples → JSON types (recursively)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class PlannerNode(Node):
    """Plan a functional grasp for the object cloud and publish goal, trajectory, markers and status."""

    def __init__(self, **kwargs) -> None:
        """Args: kwargs: passed to ``rclpy.node.Node`` (context, parameter_overrides, ...).

        Raises:
            ValueError: invalid parameters, unknown motion backend, or unknown hand
                (``UnknownHandError``); the message names the problem.
            ModelNotFoundError: the hand model file is not installed.
            ImportError: motion_backend moveit_py without a MoveIt install.
            ParameterException: a parameter override of the wrong type or outside its range.
        """
        super().__init__(NODE_NAME, **kwargs)
        try:
            self.config = self._read_parameters()
            cfg = self.config
            self.hand: HandDescription = load_hand(cfg.hand)
            self._kinematics = FrankaKinematics(config=IKConfig(seed=cfg.seed))  # worker thread only
            self.backend = self._make_backend()
            self.planner = GraspPlanner(self.hand, self.backend, self._planner_config(),
                                        kinematics=self._kinematics, warn=self.get_logger().warning)
            # Markers are built on the planning thread: reuse the synthesiser's hand kinematics.
            self._hand_surface = make_hand_surface_fn(self.planner.synthesizer.kin, self.hand.palm_center)
            # Hand joints commanded on hardware, in the driver's order (checked against the hand now).
            self._hand_order = cfg.hardware.resolve_hand_order(self.hand.joint_names)
        except BaseException:
            self.destroy_node()  # release the half-built node's handles before reporting
            raise
        self.limits = SafetyLimits.for_panda(self.hand.joint_names, self.hand.joint_limits)
        self.goal_joint_names = tuple(panda.ARM_JOINT_NAMES) + tuple(self.hand.joint_names)

        self._cond = threading.Condition()
        self._joints: dict[str, float] = {}
        self._latest_cloud: PointCloud2 | None = None
        self._images: OrderedDict[int, Image] = OrderedDict()   # object images by stamp, ns (network with images)
        self._request: PointCloud2 | None = None
        self._plan_next_cloud = cfg.plan_on_cloud
        self._busy = False
        self._stop = False

        self._goal_pub = self.create_publisher(JointState, topics.JOINT_GOAL, qos.LATCHED)
        self._stream: tuple[hardware.HardwareCommand, float] | None = None  # hand set-points in progress
        if cfg.command_target == "hardware":
            hw = cfg.hardware
            self._arm_pub = self.create_publisher(JointTrajectory, hw.arm_topic, qos.COMMAND)
            hand_type = {hardware.JOINT_TRAJECTORY: JointTrajectory, hardware.JOINT_STATE: JointState,
                         hardware.FLOAT64_MULTI_ARRAY: Float64MultiArray}[hw.hand_command_type]
            self._hand_pub = self.create_publisher(hand_type, hw.hand_topic, qos.COMMAND)
            if hw.streams_setpoints:
                self.create_timer(1.0 / hw.setpoint_rate_hz, self._on_hand_setpoint)
        else:
            self._trajectory_pub = self.create_publisher(JointTrajectory, topics.GRASP_TRAJECTORY, qos.COMMAND)
        self._markers_pub = self.create_publisher(MarkerArray, topics.GRASP_MARKERS, qos.LATCHED)
        self._status_pub = self.create_publisher(String, topics.PLANNER_STATUS, qos.LATCHED)
        self._pose_pub = self.create_publisher(PoseStamped, "~/grasp_pose", qos.LATCHED)
        self.create_subscription(PointCloud2, cfg.cloud_topic, self._on_cloud, qos.LATCHED)
        self._uses_image = self.planner.predictor.uses_image
        if self._uses_image:
            self.create_subscription(Image, cfg.image_topic, self._on_image, qos.LATCHED)
        self.create_subscription(JointState, topics.JOINT_STATES, self._on_joint_state, qos.STATE)
        self.create_service(Trigger, "~/replan", self._on_replan)
        self.add_on_set_parameters_callback(refuse_runtime_changes(_PARAMETERS, "planner"))
        self._worker = threading.Thread(target=self._work, name="grasp_planner_worker", daemon=True)
        self._worker.start()
        if cfg.command_target == "hardware":
            hw = cfg.hardware
            self.get_logger().info(
                f"hardware commands{'' if cfg.execute else ' (off: execute is false)'}: arm on '{hw.arm_topic}', "
                f"hand {hw.hand_command_type} on '{hw.hand_topic}' ({len(self._hand_order)} joints: "
                f"{', '.join(self._hand_order)})")
        image = f" with its colour image from '{cfg.image_topic}'" if self._uses_image else ""
        used = self.planner.predictor.describe()
        checkpoint = f" ({used['checkpoint']})" if used["checkpoint"] else ""
        self.get_logger().info(
            f"hand '{cfg.hand}', grasp backend '{used['backend']}'{checkpoint}, "
            f"backend '{cfg.motion_backend}', execute={cfg.execute}: planning "
            f"{'the first cloud' if cfg.plan_on_cloud else 'on ~/replan'} from '{cfg.cloud_topic}' "
            f"(frame '{cfg.base_frame}'){image}")

    # --- parameters -------------------------------------------------------------------------
    def _read_parameters(self) -> PlannerNodeConfig:
        """Declare every parameter with its description and range, then build the frozen config."""
        for name, (default, text, float_range, int_range) in _PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(
                description=text, floating_point_range=float_range or [], integer_range=int_range or []))
        p = {name: self._parameter_value(name) for name in _PARAMETERS}
        return PlannerNodeConfig(
            hand=p["hand"], base_frame=p["base_frame"], camera_xyz=tuple(float(v) for v in p["camera_xyz"]),
            camera_quat_xyzw=tuple(float(v) for v in p["camera_quat_xyzw"]),
            motion_backend=p["motion_backend"], execute=bool(p["execute"]),
            approach_offset_m=float(p["approach_offset_m"]), lift_height_m=float(p["lift_height_m"]),
            num_candidates=int(p["num_candidates"]), seed=int(p["seed"]),
            velocity_scale=float(p["velocity_scale"]), table_z_m=float(p["table_z_m"]),
            cloud_topic=p["cloud_topic"], image_topic=p["image_topic"], plan_on_cloud=bool(p["plan_on_cloud"]),
            joint_state_timeout_s=float(p["joint_state_timeout_s"]), command_target=p["command_target"],
            arm_command_topic=p["arm_command_topic"], hand_command_topic=p["hand_command_topic"],
            hand_command_type=p["hand_command_type"], hand_joint_order=tuple(p["hand_joint_order"] or ()),
            hand_setpoint_rate_hz=float(p["hand_setpoint_rate_hz"]), grasp_backend=p["grasp_backend"],
            grasp_checkpoint=p["grasp_checkpoint"], network_samples=int(p["network_samples"]),
            completion_checkpoint=p["completion_checkpoint"], network_fallback=bool(p["network_fallback"]))

    def _parameter_value(self, name: str):
        """The parameter's value; None for a typed parameter declared without a default and not set."""
        try:
            return self.get_parameter(name).value
        except ParameterUninitializedException:
            return None

    def _planner_config(self) -> PlannerConfig:
        cfg = self.config
        return PlannerConfig(approach_offset_m=cfg.approach_offset_m, lift_height_m=cfg.lift_height_m,
                             table_z_m=cfg.table_z_m, num_candidates=cfg.num_candidates,
                             camera_xyz=cfg.camera_xyz, grasp_backend=cfg.grasp_backend,
                             grasp_checkpoint=cfg.grasp_checkpoint, network_samples=cfg.network_samples,
                             completion_checkpoint=cfg.completion_checkpoint, network_fallback=cfg.network_fallback)

    def _make_backend(self) -> MotionBackend:
        cfg, hand = self.config, self.hand
        if cfg.motion_backend == "builtin":
            return builtin_backend(hand, self._planner_config(), cfg.velocity_scale, self._kinematics)
        if cfg.motion_backend == "moveit_py":
            from grasp_planner.motion.moveit_py_backend import MoveItPyConfig

            backend = make_backend("moveit_py", config=MoveItPyConfig(hand_joint_names=hand.joint_names),
                                   limits=SafetyLimits.for_panda(hand.joint_names, hand.joint_limits,
                                                                 velocity_scale=cfg.velocity_scale))
            backend.api  # noqa: B018 - import moveit_py now: a missing install is a start-up error
            return backend
        return make_backend(cfg.motion_backend)  # raises ValueError naming the options

    # --- callbacks (executor thread) --------------------------------------------------------------
    def _on_joint_state(self, msg: JointState) -> None:
        try:
            positions = conversions.joint_positions_from_msg(msg)
        except ValueError as exc:
            self.get_logger().error(f"joint state ignored: {exc}", throttle_duration_sec=5.0)
            return
        with self._cond:
            self._joints.update(positions)
            self._cond.notify_all()

    def _on_cloud(self, msg: PointCloud2) -> None:
        with self._cond:
            self._latest_cloud = msg
            if self._plan_next_cloud:
                self._plan_next_cloud = False
                self._request = msg
                self._cond.notify_all()

    def _on_image(self, msg: Image) -> None:
        with self._cond:
            self._images[_stamp_ns(msg.header.stamp)] = msg
            while len(self._images) > IMAGE_CACHE_SIZE:
                self._images.popitem(last=False)
            self._cond.notify_all()

    def _on_replan(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._cond:
            response.success = True
            if self._latest_cloud is None:
                self._plan_next_cloud = True
                response.message = (f"no object cloud received yet on '{self.config.cloud_topic}'; the first "
                                    f"one to arrive will be planned (result on {topics.PLANNER_STATUS})")
            else:
                stamp = self._latest_cloud.header.stamp
                self._request = self._latest_cloud
                self._cond.notify_all()
                response.message = (f"planning the latest object cloud (stamp {stamp.sec}.{stamp.nanosec:09d})"
                                    f"{' after the plan in progress' if self._busy else ''}; result on "
                                    f"{topics.PLANNER_STATUS}")
        return response

    # --- worker thread --------------------------------------------------------------------------------
    def _work(self) -> None:
        """Plan each requested cloud in turn (a newer request replaces one still waiting)."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._request is not None or self._stop)
                if self._stop:
                    return
                cloud, self._request = self._request, None
                self._busy = True
            try:
                self.plan_cloud(cloud)
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker; report it
                if self._stop:
                    return  # the node was destroyed mid-plan: its publishers are gone
                self.get_logger().error(f"internal error while planning (please report): "
                                        f"{type(exc).__name__}: {exc}")
                self._publish_failure(cloud, f"internal error: {type(exc).__name__}: {exc}", {})
            finally:
                with self._cond:
                    self._busy = False

    def plan_cloud(self, msg: PointCloud2) -> PlanResult | None:
        """Validate one cloud, wait for joint states, plan, check, publish; runs on the worker thread.

        Returns:
            The planner's result, or None when the input was rejected before planning.
        """
        t0 = time.perf_counter()
        try:
            cloud, pixel_uv = self._cloud_points(msg)
            image = self._object_image(msg, pixel_uv) if self._uses_image else None
            start = self._wait_for_arm_state()
        except InputError as exc:
            self._publish_failure(msg, str(exc), {"total": time.perf_counter() - t0})
            return None
        t_plan = time.perf_counter()
        result = self.planner.plan(cloud, start, image=image, pixel_uv=pixel_uv)
        timings = dict(result.timings_s, total=time.perf_counter() - t_plan)
        if not result.success:
            self._publish_failure(msg, f"planning failed: {result.reason}", timings, result)
            return result
        violations = self._final_safety_check(result.plan)
        if violations:
            self._publish_failure(msg, "final safety check refused the plan: " + "; ".join(violations),
                                  timings, result)
            return result
        self._publish_success(msg, result, timings)
        return result

    def _cloud_points(self, msg: PointCloud2) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, 3) finite object points in the base frame, metres, and (network with images only) their pixels.

        Returns:
            ``(xyz, pixel_uv)``: pixel_uv is the (N, 2) (u, v) of each kept point in the colour
            image, or None when the predictor does not read images or the cloud has no u, v fields.

        Raises:
            InputError: wrong frame, malformed, empty, all-NaN or too few points.
        """
        cfg = self.config
        if msg.header.frame_id != cfg.base_frame:
            raise InputError(f"object cloud on '{cfg.cloud_topic}' is in frame '{msg.header.frame_id}' but the "
                             f"planner needs it in base_frame '{cfg.base_frame}'; transform it first "
                             "(grasp_perception publishes in base_frame) or fix base_frame")
        try:
            xyz, _ = cloud_to_numpy(msg, skip_nans=False)
            pixel_uv = conversions.cloud_pixels(msg) if self._uses_image else None
        except ValueError as exc:                          # MalformedMessageError, or malformed u, v fields
            raise InputError(f"object cloud on '{cfg.cloud_topic}' is malformed: {exc}") from exc
        if len(xyz) == 0:
            raise InputError(f"object cloud on '{cfg.cloud_topic}' is empty (0 points); check that perception "
                             "found the object (/grasp_perception/status)")
        finite = np.all(np.isfinite(xyz), axis=1)
        if not np.any(finite):
            raise InputError(f"object cloud on '{cfg.cloud_topic}' has {len(xyz)} points but none is finite "
                             "(all NaN/inf); check the depth data and the segmentation")
        if not np.all(finite):
            self.get_logger().warn(f"object cloud: dropped {int((~finite).sum())} of {len(xyz)} NaN/inf points")
        xyz = xyz[finite].astype(float)
        if len(xyz) < MIN_OBJECT_POINTS:
            raise InputError(f"object cloud on '{cfg.cloud_topic}' has {len(xyz)} finite points; the planner "
                             f"needs at least {MIN_OBJECT_POINTS} to model the object (move the camera closer "
                             "or lower the voxel size)")
        return xyz, (None if pixel_uv is None else pixel_uv[finite])

    def _object_image(self, msg: PointCloud2, pixel_uv: np.ndarray | None) -> np.ndarray:
        """(H, W, 3) uint8 RGB of the colour image stamped like the cloud ``msg`` (bounded wait).

        Raises:
            InputError: the cloud has no u, v fields, no image with its stamp arrived within
                :data:`IMAGE_TIMEOUT_S`, or the image is not a colour image.
        """
        cfg = self.config
        checkpoint = getattr(self.planner.predictor, "checkpoint", cfg.grasp_checkpoint)
        if pixel_uv is None:
            raise InputError(f"object cloud on '{cfg.cloud_topic}' has no fields u, v (each point's pixel), but the "
                             f"network checkpoint {checkpoint} was trained with images: take the cloud from "
                             "grasp_perception (it adds u, v) or set grasp_checkpoint to a geometry-only checkpoint")
        stamp = msg.header.stamp
        stamp_ns = _stamp_ns(stamp)
        with self._cond:
            self._cond.wait_for(lambda: self._stop or stamp_ns in self._images, IMAGE_TIMEOUT_S)
            image_msg = self._images.get(stamp_ns)
            have = [f"{s // 1_000_000_000}.{s % 1_000_000_000:09d}" for s in self._images]
        if image_msg is None:
            raise InputError(f"no colour image stamped {stamp.sec}.{stamp.nanosec:09d} (the cloud's stamp) on "
                             f"'{cfg.image_topic}' within {IMAGE_TIMEOUT_S:.1f} s (received stamps: "
                             f"{', '.join(have) or 'none'}); "
                             "grasp_perception publishes there the frame each cloud came from: check image_topic, "
                             "or use a geometry-only grasp_checkpoint")
        try:
            return conversions.network_color_image(image_msg)
        except ValueError as exc:
            raise InputError(f"{exc} (topic '{cfg.image_topic}')") from exc

    def _wait_for_arm_state(self) -> dict[str, float]:
        """Latest joint positions once all 7 arm joints are known (bounded wait).

        Raises:
            InputError: no joint state with every arm joint within ``joint_state_timeout_s``.
        """
        timeout_s = self.config.joint_state_timeout_s
        arm = panda.ARM_JOINT_NAMES
        with self._cond:
            ready = self._cond.wait_for(lambda: self._stop or all(n in self._joints for n in arm), timeout_s)
            joints = dict(self._joints)
        if not ready or self._stop:
            missing = [n for n in arm if n not in joints]
            raise InputError(f"no joint state with all arm joints on '{topics.JOINT_STATES}' within "
                             f"{timeout_s:.1f} s (missing {missing}); start the robot driver or sim_bridge "
                             "and call ~/replan")
        return joints

    def _final_safety_check(self, plan: MotionPlan) -> list[str]:
        """Last gate before any goal leaves the node: limits, velocities, workspace, start ≈ measured state."""
        with self._cond:
            joints = dict(self._joints)
        return hardware.command_violations(plan, self.limits, joints, fk_fn=self._kinematics.fk,
                                           start_tolerance_rad=START_TOLERANCE_RAD)

    # --- publishing ------------------------------------------------------------------------------------
    def _publish_success(self, msg: PointCloud2, result: PlanResult, timings: dict) -> None:
        cfg, plan = self.config, result.plan
        now = self.get_clock().now().to_msg()
        goal = result.joint_goal
        self._goal_pub.publish(conversions.joint_state_msg(
            self.goal_joint_names, [goal[n] for n in self.goal_joint_names], now, cfg.base_frame))
        self._pose_pub.publish(conversions.pose_stamped_msg(result.T_base_flange, cfg.base_frame, msg.header.stamp))
        self._publish_markers(msg, result)
        sent, execute_error = False, None
        if cfg.execute:
            violations = self._final_safety_check(plan)  # the very last gate, right before sending
            if violations:
                execute_error = "final safety check refused the trajectory: " + "; ".join(violations)
            elif cfg.motion_backend == "moveit_py":
                try:
                    self.backend.execute(plan)
                    sent = True
                except Exception as exc:  # noqa: BLE001 - MoveIt/controller failures are reported, not fatal
                    execute_error = f"MoveIt execution failed: {type(exc).__name__}: {exc}"
            elif cfg.command_target == "hardware":
                self._send_to_hardware(plan)
                sent = True
            else:
                self._trajectory_pub.publish(conversions.trajectory_msg(plan, cfg.base_frame))
                sent = True
        if execute_error:
            self.get_logger().error(execute_error)
        chosen = result.candidate
        rank = next((i for i, c in enumerate(result.candidates) if c is chosen), None)
        if chosen.info.get("backend") != self.planner.predictor.name:
            self.get_logger().warning(
                f"none of the {self.planner.predictor.name}'s candidates could be executed (IK, collisions, limits); "
                f"planned with the {chosen.info.get('backend')}'s candidate {rank} (network_fallback)")
        self._publish_status(msg, {
            "success": execute_error is None, "reason": execute_error or "", "timings_s": timings,
            "n_candidates": len(result.candidates),
            "chosen": {"rank": rank, "score": chosen.score, "info": chosen.info, "approach": chosen.approach,
                       "contacts": {f: (None if p is None else [float(v) for v in p])
                                    for f, p in chosen.contacts.items()}},
            "joint_goal": {n: goal[n] for n in self.goal_joint_names},
            "execute": cfg.execute, "trajectory_sent": sent, "command_target": cfg.command_target,
            "trajectory": {"points": len(plan.times_s), "duration_s": plan.duration_s},
        })
        self.get_logger().info(
            f"grasp planned in {timings['total']:.2f} s: candidate {rank} of {len(result.candidates)} "
            f"({chosen.info.get('backend', '?')}, score {chosen.score:.3f}), trajectory {len(plan.times_s)} points "
            f"over {plan.duration_s:.2f} s"
            f"{', sent for execution' if sent else ' (not executed)'}")

    def _publish_failure(self, msg: PointCloud2, reason: str, timings: dict,
                         result: PlanResult | None = None) -> None:
        """Log the reason and publish a failed status (and markers of any candidates); no goal."""
        self.get_logger().error(f"no grasp goal published: {reason}")
        self._publish_markers(msg, result)
        self._publish_status(msg, {
            "success": False, "reason": reason, "timings_s": timings,
            "n_candidates": len(result.candidates) if result is not None else 0, "chosen": None,
            "joint_goal": None, "execute": self.config.execute, "trajectory_sent": False,
            "command_target": self.config.command_target,
        })

    def _send_to_hardware(self, plan: MotionPlan) -> None:
        """Arm JointTrajectory to the arm controller, then the hand command (call only after the safety check).

        Header stamps are zero ("start on receipt"); a set-point hand driver gets the plan's hand
        waypoints streamed from now on (:meth:`_on_hand_setpoint`).
        """
        hw = self.config.hardware
        command = hardware.split_plan(plan, self._hand_order)
        self._arm_pub.publish(conversions.trajectory_msg(command.arm, self.config.base_frame))
        if hw.streams_setpoints:
            with self._cond:
                self._stream = (command, time.monotonic())
            self._on_hand_setpoint()  # the first set-point now, the rest from the timer
        else:
            self._hand_pub.publish(conversions.trajectory_msg(command.hand, self.config.base_frame))

    def _on_hand_setpoint(self) -> None:
        """Publish the hand set-point due now; after the plan's last waypoint, stop streaming."""
        with self._cond:
            stream = self._stream
            if stream is None:
                return
            command, t0 = stream
            elapsed = time.monotonic() - t0
            if elapsed >= command.hand.duration_s:
                self._stream = None
        self._hand_pub.publish(conversions.hand_setpoint_msg(
            self.config.hand_command_type, command.hand.joint_names, command.hand_setpoint(elapsed),
            self.get_clock().now().to_msg()))

    def _publish_markers(self, msg: PointCloud2, result: PlanResult | None) -> None:
        """DELETEALL, then the candidates (and the chosen grasp on success) at the cloud's stamp."""
        candidates = result.candidates if result is not None else []
        chosen = result.candidate if result is not None and result.success else None
        specs = grasp_markers(candidates, self._hand_surface, chosen, self.config.approach_offset_m)
        self._markers_pub.publish(conversions.marker_array_msg(specs, self.config.base_frame, msg.header.stamp))

    def grasp_backend_info(self) -> dict:
        """The ``grasp_backend`` entry of every status: the backend asked for (parameter) and the one planning.

        Returns:
            ``{"requested": grasp_backend parameter, "backend": the predictor that plans, "checkpoint",
            "checkpoint_sha256" (network), "fallback_reason" (network asked for, optimiser planning)}``.
        """
        return {"requested": self.config.grasp_backend, **self.planner.predictor.describe()}

    def _publish_status(self, msg: PointCloud2, status: dict) -> None:
        stamp = msg.header.stamp
        timings = {k: status["timings_s"].get(k) for k in TIMING_KEYS}
        status = {**status, "timings_s": timings, "stamp": {"sec": stamp.sec, "nanosec": stamp.nanosec},
                  "grasp_backend": self.grasp_backend_info()}
        self._status_pub.publish(String(data=json.dumps(_json_safe(status))))

    # --- teardown --------------------------------------------------------------------------------------
    def destroy_node(self) -> None:
        """Stop the worker (waiting for a plan in progress, bounded), close the backend, destroy the node."""
        worker = getattr(self, "_worker", None)
        if worker is not None:
            with self._cond:
                self._stop = True
                self._cond.notify_all()
            worker.join(WORKER_JOIN_TIMEOUT_S)
            if worker.is_alive():
                self.get_logger().warn(f"planning still running after {WORKER_JOIN_TIMEOUT_S} s; not waiting")
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point ``planner_node``: run until Ctrl-C or an external shutdown; 1 on a configuration error."""
    localhost_env()
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = PlannerNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, ParameterException, ModelNotFoundError, ImportError) as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {exc}")
        code = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
