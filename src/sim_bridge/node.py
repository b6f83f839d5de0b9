"""ROS 2 node ``sim_bridge``: runs the simulated scene, publishes its sensors, executes and judges grasps.

The simulator is chosen by the ``backend`` parameter: ``mujoco`` (default) or ``isaacgym``
(:mod:`sim_bridge.isaacgym_backend`, needs an IsaacGym install); both implement
:class:`sim_bridge.simulator.Simulator`.

Publishes ``/joint_states``, the RGB-D camera (colour, depth, CameraInfo), ``/sim/object_pose``
and, after each executed trajectory, the disturbance-test verdict on ``/sim/grasp_result``
(JSON). Subscribes ``/grasp_planner/trajectory``. Service ``~/reset`` (std_srvs/Trigger).
Physics runs in a timer in short chunks so the executor keeps serving pub/sub.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

import rclpy
import rclpy.logging
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, JointState
from geometry_msgs.msg import PoseStamped
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from grasp_common import qos, topics
from grasp_common.rosenv import localhost_env
from grasp_planner.robots.panda import BASE_FRAME
from sim_bridge import conversions
from sim_bridge.evaluation import DisturbanceProtocol, run_disturbance_test
from sim_bridge.scene import SceneConfig
from sim_bridge.simulator import BACKENDS, Simulator, make_simulator

#: Wall-clock budget of physics stepping per timer tick, and the tick period (seconds).
PHYSICS_CHUNK_S = 0.010
PHYSICS_PERIOD_S = 0.015
#: If real-time stepping falls further behind than this, the debt is dropped (seconds).
MAX_REALTIME_LAG_S = 1.0


@dataclass(frozen=True)
class BridgeConfig:
    """Node parameters, read once at start-up (SI units)."""

    scene: SceneConfig
    backend: str = "mujoco"
    real_time_factor: float = 1.0
    camera_rate_hz: float = 2.0
    joint_state_rate_hz: float = 50.0
    evaluate_after_execution: bool = True
    settle_after_trajectory_s: float = 0.3
    base_frame: str = BASE_FRAME
    camera_frame: str = "camera_color_optical_frame"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown simulator backend '{self.backend}'; choose one of: {', '.join(BACKENDS)}")
        if self.real_time_factor < 0:
            raise ValueError(f"real_time_factor {self.real_time_factor} must be ≥ 0 (0 = as fast as possible)")
        if self.camera_rate_hz < 0 or self.joint_state_rate_hz <= 0:
            raise ValueError("camera_rate_hz must be ≥ 0 (0 = off) and joint_state_rate_hz > 0")
        if self.settle_after_trajectory_s < 0:
            raise ValueError("settle_after_trajectory_s must be ≥ 0")


def _desc(text: str, lo: float | None = None, hi: float | None = None) -> ParameterDescriptor:
    d = ParameterDescriptor(description=text)
    if lo is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    return d


class SimBridgeNode(Node):
    """Run the simulated Panda + hand + object and bridge it to ROS topics."""

    #: Parameters that may change while running (the rest define the scene).
    _RUNTIME_PARAMS = ("real_time_factor", "evaluate_after_execution")

    def __init__(self, **kwargs) -> None:
        super().__init__("sim_bridge", **kwargs)
        d = SceneConfig()
        p = self.declare_parameter
        p("backend", "mujoco", _desc(f"physics simulator: {' | '.join(BACKENDS)} (isaacgym needs an IsaacGym install)"))
        p("isaacgym_robot_asset", "", _desc("backend isaacgym: URDF/MJCF of the Franka + hand as one articulation "
                                            "with ROS joint names"))
        p("hand", d.hand, _desc("hand description name (config/hands/<hand>.yaml)"))
        p("object", d.object, _desc("object from the simulator catalogue: mug, drill, box, cylinder"))
        p("object_xy", list(d.object_xy), _desc("metres, base frame: footprint centre of the object on the table"))
        p("object_yaw", d.object_yaw, _desc("radians about the base z axis", -math.pi, math.pi))
        p("camera_width", d.camera_width, _desc("pixels"))
        p("camera_height", d.camera_height, _desc("pixels"))
        p("camera_fovy_deg", d.camera_fovy_deg, _desc("vertical field of view, degrees", 1.0, 170.0))
        p("camera_xyz", list(d.camera_xyz), _desc("metres: camera optical frame origin in the base frame"))
        p("camera_quat_xyzw", list(d.camera_quat_xyzw),
          _desc("camera optical frame orientation (z forward, x right, y down) in the base frame"))
        p("real_time_factor", 1.0, _desc("sim seconds per wall second; 0 = as fast as possible", 0.0, 100.0))
        p("camera_rate_hz", 2.0, _desc("RGB-D frames per second (≈90 ms each at 640x480); 0 = off", 0.0, 30.0))
        p("joint_state_rate_hz", 50.0, _desc("joint state and object pose rate, Hz", 1.0, 1000.0))
        p("evaluate_after_execution", True, _desc("run the disturbance test after each trajectory"))
        p("settle_after_trajectory_s", 0.3, _desc("sim seconds holding the last point before the test", 0.0, 10.0))
        p("base_frame", BASE_FRAME, _desc("frame of joint-space poses and the object pose"))
        p("camera_frame", "camera_color_optical_frame", _desc("frame_id of the camera images and CameraInfo"))
        g = lambda name: self.get_parameter(name).value  # noqa: E731
        scene = SceneConfig(
            hand=g("hand"), object=g("object"), object_xy=tuple(g("object_xy")),
            object_yaw=float(g("object_yaw")), camera_width=int(g("camera_width")),
            camera_height=int(g("camera_height")), camera_fovy_deg=float(g("camera_fovy_deg")),
            camera_xyz=tuple(g("camera_xyz")), camera_quat_xyzw=tuple(g("camera_quat_xyzw")))
        self.config = BridgeConfig(
            scene=scene, backend=str(g("backend")), real_time_factor=float(g("real_time_factor")),
            camera_rate_hz=float(g("camera_rate_hz")), joint_state_rate_hz=float(g("joint_state_rate_hz")),
            evaluate_after_execution=bool(g("evaluate_after_execution")),
            settle_after_trajectory_s=float(g("settle_after_trajectory_s")),
            base_frame=g("base_frame"), camera_frame=g("camera_frame"))
        self._rtf = self.config.real_time_factor
        self._evaluate = self.config.evaluate_after_execution
        self.add_on_set_parameters_callback(self._on_set_parameters)

        t0 = time.perf_counter()
        options = {"robot_asset": str(g("isaacgym_robot_asset"))} if self.config.backend == "isaacgym" else None
        self.world: Simulator = make_simulator(self.config.backend, scene, options)
        self.protocol = DisturbanceProtocol()
        self.get_logger().info(
            f"{self.config.backend} scene '{scene.hand}' + '{scene.object}' ({self.world.object_mass_kg:.3f} kg) built in "
            f"{time.perf_counter() - t0:.2f} s; real_time_factor {self._rtf}")

        self._pub_joints = self.create_publisher(JointState, topics.JOINT_STATES, qos.STATE)
        self._pub_pose = self.create_publisher(PoseStamped, topics.OBJECT_POSE, qos.STATE)
        self._pub_color = self.create_publisher(Image, topics.COLOR_IMAGE, qos.SENSOR)
        self._pub_depth = self.create_publisher(Image, topics.DEPTH_IMAGE, qos.SENSOR)
        self._pub_info = self.create_publisher(CameraInfo, topics.CAMERA_INFO, qos.SENSOR)
        self._pub_result = self.create_publisher(String, topics.GRASP_RESULT, qos.LATCHED)
        self.create_subscription(JointTrajectory, topics.GRASP_TRAJECTORY, self._on_trajectory, qos.COMMAND)
        self.create_service(Trigger, "~/reset", self._on_reset)

        if self.config.camera_rate_hz > 0:
            t0 = time.perf_counter()
            self.world.render_rgbd()  # create the OpenGL context now, not in the first tick
            self.get_logger().info(f"camera {scene.camera_width}x{scene.camera_height} ready "
                                   f"({time.perf_counter() - t0:.2f} s)")
        self._pending_evaluation = False
        self._settle_until_s: float | None = None
        self._trajectory_info: dict = {}
        self._anchor()
        self.create_timer(PHYSICS_PERIOD_S, self._on_physics)
        self.create_timer(1.0 / self.config.joint_state_rate_hz, self._on_state)
        if self.config.camera_rate_hz > 0:
            self.create_timer(1.0 / self.config.camera_rate_hz, self._on_camera)

    # ----------------------------------------------------------- parameters
    def _on_set_parameters(self, params) -> SetParametersResult:
        for prm in params:
            if prm.name not in self._RUNTIME_PARAMS:
                return SetParametersResult(successful=False, reason=(
                    f"'{prm.name}' defines the scene and is read at start-up; restart sim_bridge "
                    f"to change it (runtime-changeable: {', '.join(self._RUNTIME_PARAMS)})"))
            if prm.name == "real_time_factor" and not (isinstance(prm.value, float) and prm.value >= 0):
                return SetParametersResult(successful=False,
                                           reason=f"real_time_factor must be a float ≥ 0, got {prm.value!r}")
        for prm in params:
            if prm.name == "real_time_factor":
                self._rtf = float(prm.value)
                self._anchor()
            elif prm.name == "evaluate_after_execution":
                self._evaluate = bool(prm.value)
        return SetParametersResult(successful=True)

    # -------------------------------------------------------------- physics
    def _anchor(self) -> None:
        self._wall_anchor = time.perf_counter()
        self._sim_anchor = self.world.sim_time_s

    def _on_physics(self) -> None:
        start = time.perf_counter()
        chunk = 20  # physics steps between clock checks
        while time.perf_counter() - start < PHYSICS_CHUNK_S:
            if self._rtf > 0:
                target = self._sim_anchor + self._rtf * (time.perf_counter() - self._wall_anchor)
                behind = target - self.world.sim_time_s
                if behind <= 0:
                    break
                if behind > MAX_REALTIME_LAG_S:
                    self.get_logger().warn("physics cannot keep up with real_time_factor "
                                           f"{self._rtf}; dropping {behind:.2f} s of lag",
                                           throttle_duration_sec=5.0)
                    self._anchor()
            self.world.step(chunk)
            if self._pending_evaluation and self._evaluation_due():
                break
        if self._pending_evaluation and self._evaluation_due():
            self._run_evaluation()

    def _evaluation_due(self) -> bool:
        if self.world.trajectory_active:
            return False
        if self._settle_until_s is None:
            self._settle_until_s = self.world.sim_time_s + self.config.settle_after_trajectory_s
        return self.world.sim_time_s >= self._settle_until_s

    def _run_evaluation(self) -> None:
        self._pending_evaluation = False
        self._settle_until_s = None
        result = run_disturbance_test(self.world, self.protocol)  # blocks ≈1–2 s wall
        payload = result.to_dict()
        payload.update(object=self.config.scene.object, hand=self.config.scene.hand,
                       evaluated_at_sim_time_s=self.world.sim_time_s, **self._trajectory_info)
        self._pub_result.publish(String(data=json.dumps(payload)))
        self._anchor()  # the blocking test must not count as real-time lag
        self.get_logger().info(
            f"grasp {'HELD' if result.held else 'NOT held'}: max displacement "
            f"{1000 * result.max_displacement_m:.1f} mm, lifted={result.lifted}, "
            f"hand contacts={result.hand_contacts} ({result.wall_time_s:.2f} s wall)")

    # ------------------------------------------------------------ callbacks
    def _on_trajectory(self, msg: JointTrajectory) -> None:
        try:
            names, positions, times = conversions.trajectory_from_msg(msg)
            self.world.execute_trajectory(names, positions, times, wait=False)
        except ValueError as exc:
            self.get_logger().error(f"trajectory rejected: {exc}")
            return
        self._pending_evaluation = self._evaluate
        self._settle_until_s = None
        self._trajectory_info = {"trajectory_points": int(len(times)),
                                 "trajectory_duration_s": float(times[-1])}
        self.get_logger().info(f"executing trajectory: {len(times)} points over {times[-1]:.2f} s, "
                               f"{len(names)} joints")

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.world.reset()
        self._pending_evaluation = False
        self._settle_until_s = None
        self._anchor()
        response.success = True
        response.message = "arm at OBSERVE_Q (hand out of the camera view), hand open, object back on the table, sim time 0"
        return response

    def _on_state(self) -> None:
        stamp = self.get_clock().now().to_msg()
        w = self.world
        names = w.joint_names
        pos, vel = w.joint_state_arrays()
        self._pub_joints.publish(conversions.joint_state_msg(names, pos, vel, stamp))
        p, q = w.object_pose()
        self._pub_pose.publish(conversions.pose_stamped_msg(p, q, stamp, self.config.base_frame))

    def _on_camera(self) -> None:
        frame = self.world.render_rgbd()
        stamp = self.get_clock().now().to_msg()
        cam = self.config.camera_frame
        self._pub_color.publish(conversions.rgb_to_msg(frame.rgb, stamp, cam))
        self._pub_depth.publish(conversions.depth_to_msg(frame.depth, stamp, cam))
        self._pub_info.publish(conversions.camera_info_msg(frame.intrinsics, stamp, cam))

    def destroy_node(self) -> None:
        self.world.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Entry point ``sim_bridge_node``."""
    localhost_env()
    rclpy.init(args=args)
    node = None
    try:
        node = SimBridgeNode()
        executor = SingleThreadedExecutor()  # one thread: the OpenGL context stays on it
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, ImportError) as exc:  # bad parameters / backend not installed: say what, exit non-zero
        rclpy.logging.get_logger("sim_bridge").fatal(f"cannot start: {exc}")
        raise SystemExit(1) from None
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
