"""ROS 2 node: registered RGB-D + CameraInfo in, target object cloud (base frame), mask and source colour image out.

The cloud carries each point's pixel (fields u, v) in the colour image, which is republished
unchanged on ``object_image_topic`` with the cloud's stamp (latched, like the cloud), so a planner
whose network reads the image gets exactly the frame the cloud was segmented from.
"""
from __future__ import annotations

import json
import math
import time

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String

from grasp_common import qos
from grasp_common.params import refuse_runtime_changes
from grasp_common.rosenv import localhost_env
from grasp_perception.config import PerceptionConfig
from grasp_perception.conversions import (camera_info_to_intrinsics, image_to_depth_m, image_to_rgb,
                                          numpy_to_cloud, numpy_to_image)
from grasp_perception.errors import MissingCameraInfoError, PerceptionError, SegmenterUnavailableError
from grasp_perception.segmentation import SegmentationConfig, make_segmenter
from grasp_perception.sync import StampSynchronizer

NODE_NAME = "grasp_perception"
#: The same error (by type) is logged at most once per this period, seconds.
ERROR_LOG_THROTTLE_S = 5.0
#: Color/depth messages cached per stream while waiting for the partner stamp.
SYNC_CACHE_SIZE = 10
#: A frame held back by max_rate_hz is looked at again this many times per period.
RATE_TIMER_DIVISOR = 4
#: Shortest period of that timer, seconds.
MIN_TIMER_PERIOD_S = 0.005

_SEG = SegmentationConfig()
_CFG = PerceptionConfig()


def _float_range(lo: float, hi: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]


def _int_range(lo: int, hi: int) -> list[IntegerRange]:
    return [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]


#: name → (default, description, floating range, integer range).
_PARAMETERS = {
    "color_topic": (_CFG.color_topic, "sensor_msgs/Image RGB input (rgb8, bgr8, rgba8, bgra8, mono8)", None, None),
    "depth_topic": (_CFG.depth_topic, "sensor_msgs/Image depth registered to color (32FC1 m, 16UC1 mm)",
                    None, None),
    "camera_info_topic": (_CFG.camera_info_topic, "sensor_msgs/CameraInfo of the color image", None, None),
    "cloud_topic": (_CFG.cloud_topic, "sensor_msgs/PointCloud2 output: target object xyz+rgb, base frame, and "
                    "each point's pixel (u = column, v = row) in the colour image", None, None),
    "object_image_topic": (_CFG.object_image_topic, "sensor_msgs/Image output: the colour image each cloud was "
                           "segmented from, unchanged (same stamp as the cloud; the cloud's u, v index it)",
                           None, None),
    "mask_topic": (_CFG.mask_topic, "sensor_msgs/Image mono8 output: 255 on the target's pixels", None, None),
    "base_frame": (_CFG.base_frame, "Robot base frame id of the output cloud", None, None),
    "camera_xyz": (list(_CFG.camera_xyz_m), "Camera optical frame origin in the base frame [x, y, z], metres",
                   None, None),
    "camera_quat_xyzw": (list(_CFG.camera_quat_xyzw),
                         "Camera OPTICAL frame (z forward, x right, y down) orientation in the base frame "
                         "[x, y, z, w]", None, None),
    "segmenter": (_CFG.segmenter, "Segmenter name: tabletop (prompt is reserved, not built yet)", None, None),
    "max_rate_hz": (_CFG.max_rate_hz, "Process at most this many RGB-D frames per second, Hz (a newer "
                    "frame replaces one waiting for its turn)",
                    _float_range(0.01, 1000.0), None),
    "sync_tolerance_s": (_CFG.sync_tolerance_s, "Pair color and depth whose stamps differ by at most this, "
                         "seconds (0 = exact match)", _float_range(0.0, 1.0), None),
    "workspace_min_xyz": (list(_SEG.workspace_min_m), "Workspace crop box lower corner [x, y, z], metres, "
                          "base frame (must include the table surface)", None, None),
    "workspace_max_xyz": (list(_SEG.workspace_max_m), "Workspace crop box upper corner [x, y, z], metres, "
                          "base frame", None, None),
    "voxel_size_m": (_SEG.voxel_size_m, "Voxel edge for downsampling, metres", _float_range(0.001, 0.05), None),
    "plane_distance_m": (_SEG.plane_distance_m, "RANSAC inlier distance to the table plane, metres",
                         _float_range(0.001, 0.1), None),
    "plane_iterations": (_SEG.plane_iterations, "RANSAC plane hypotheses", None, _int_range(1, 10000)),
    "plane_max_tilt_deg": (_SEG.plane_max_tilt_deg, "Largest angle between table normal and base +z, degrees",
                           _float_range(0.0, 90.0), None),
    "object_min_height_m": (_SEG.object_min_height_m, "Points this far above the table belong to objects, "
                            "metres", _float_range(0.0, 0.5), None),
    "cluster_tolerance_m": (_SEG.cluster_tolerance_m, "Euclidean clustering link distance (> voxel_size_m), "
                            "metres", _float_range(0.001, 0.2), None),
    "min_cluster_points": (_SEG.min_cluster_points, "Smallest object cluster, voxels", None,
                           _int_range(1, 10_000_000)),
    "max_cluster_points": (_SEG.max_cluster_points, "Largest object cluster, voxels", None,
                           _int_range(1, 10_000_000)),
    "target": (_SEG.target, "Target selection: largest | nearest (to target_point) | index (target_index; "
               "clusters ordered by horizontal distance from the base origin, nearest first)", None, None),
    "target_point": (list(_SEG.target_point_m), "Reference point for target=nearest [x, y, z], metres, "
                     "base frame", None, None),
    "target_index": (_SEG.target_index, "Cluster index for target=index", None, _int_range(0, 1000)),
    "seed": (_SEG.seed, "RANSAC random seed", None, _int_range(0, 2**31 - 1)),
    "max_depth_m": (_SEG.max_depth_m, "Depth beyond this is invalid, metres", _float_range(0.1, 20.0), None),
    "max_invalid_fraction": (_SEG.max_invalid_fraction, "Reject a frame with more invalid depth pixels "
                             "than this fraction", _float_range(0.01, 1.0), None),
}


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class PerceptionNode(Node):
    """Segment the target object of each registered RGB-D frame and publish its cloud and mask."""

    def __init__(self, **kwargs) -> None:
        """Args: kwargs: passed to ``rclpy.node.Node`` (context, parameter_overrides, ...).

        Raises:
            ValueError: invalid parameters (the message names the parameter and the reason).
            ParameterException: a parameter override of the wrong type or outside its range.
            SegmenterUnavailableError: the chosen segmenter cannot run here.
        """
        super().__init__(NODE_NAME, **kwargs)
        try:
            self.config = self._read_parameters()
            self._segmenter = make_segmenter(self.config.segmenter, self.config.segmentation)
        except BaseException:
            self.destroy_node()  # release the half-built node's handles before reporting
            raise
        self._T_base_camera = self.config.T_base_camera
        self._intrinsics = None
        self._info_error: PerceptionError | None = None
        self._sync = StampSynchronizer(round(self.config.sync_tolerance_s * 1e9), SYNC_CACHE_SIZE)
        self._min_period_s = 1.0 / self.config.max_rate_hz
        self._last_run_s = -math.inf
        self._pending: tuple[int, Image, Image] | None = None
        self._last_logged: dict[str, float] = {}
        self._failing = False

        cfg = self.config
        self._cloud_pub = self.create_publisher(PointCloud2, cfg.cloud_topic, qos.LATCHED)
        self._image_pub = self.create_publisher(Image, cfg.object_image_topic, qos.LATCHED)
        self._mask_pub = self.create_publisher(Image, cfg.mask_topic, qos.LATCHED)
        self._status_pub = self.create_publisher(String, "~/status", qos.LATCHED)
        self.create_subscription(CameraInfo, cfg.camera_info_topic, self._on_camera_info, qos.SENSOR)
        self.create_subscription(Image, cfg.color_topic, lambda m: self._on_image("a", m), qos.SENSOR)
        self.create_subscription(Image, cfg.depth_topic, lambda m: self._on_image("b", m), qos.SENSOR)
        self.create_timer(max(self._min_period_s / RATE_TIMER_DIVISOR, MIN_TIMER_PERIOD_S), self._process_pending)
        self.add_on_set_parameters_callback(refuse_runtime_changes(_PARAMETERS, "perception"))
        self.get_logger().info(
            f"segmenting '{cfg.color_topic}' + '{cfg.depth_topic}' with '{cfg.segmenter}' "
            f"(target {cfg.segmentation.target}) → '{cfg.cloud_topic}' in '{cfg.base_frame}'")

    # --- parameters -------------------------------------------------------------------------
    def _read_parameters(self) -> PerceptionConfig:
        """Declare every parameter with its description and range, then build the frozen config."""
        for name, (default, text, float_range, int_range) in _PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(
                description=text, floating_point_range=float_range or [], integer_range=int_range or []))
        p = {name: self.get_parameter(name).value for name in _PARAMETERS}
        segmentation = SegmentationConfig(
            workspace_min_m=tuple(p["workspace_min_xyz"]), workspace_max_m=tuple(p["workspace_max_xyz"]),
            voxel_size_m=p["voxel_size_m"], plane_distance_m=p["plane_distance_m"],
            plane_iterations=p["plane_iterations"], plane_max_tilt_deg=p["plane_max_tilt_deg"],
            object_min_height_m=p["object_min_height_m"], cluster_tolerance_m=p["cluster_tolerance_m"],
            min_cluster_points=p["min_cluster_points"], max_cluster_points=p["max_cluster_points"],
            target=p["target"], target_point_m=tuple(p["target_point"]), target_index=p["target_index"],
            seed=p["seed"], max_depth_m=p["max_depth_m"], max_invalid_fraction=p["max_invalid_fraction"])
        return PerceptionConfig(
            color_topic=p["color_topic"], depth_topic=p["depth_topic"],
            camera_info_topic=p["camera_info_topic"], cloud_topic=p["cloud_topic"],
            object_image_topic=p["object_image_topic"],
            mask_topic=p["mask_topic"], base_frame=p["base_frame"], camera_xyz_m=tuple(p["camera_xyz"]),
            camera_quat_xyzw=tuple(p["camera_quat_xyzw"]), segmenter=p["segmenter"],
            max_rate_hz=p["max_rate_hz"], sync_tolerance_s=p["sync_tolerance_s"], segmentation=segmentation)

    # --- callbacks ----------------------------------------------------------------------------
    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self._intrinsics = camera_info_to_intrinsics(msg)
            self._info_error = None
        except PerceptionError as exc:
            self._intrinsics, self._info_error = None, exc
            self._log_error(exc)

    def _on_image(self, stream: str, msg: Image) -> None:
        pair = self._sync.add(stream, _stamp_ns(msg), msg)
        if pair is not None:
            self._pending = pair  # a newer frame replaces one still waiting for the rate limit
            self._process_pending()

    def _process_pending(self) -> None:
        """Process the waiting frame unless one was processed less than 1 / max_rate_hz ago."""
        now_s = time.monotonic()
        if self._pending is None or now_s - self._last_run_s < self._min_period_s:
            return  # the rate timer comes back for it
        (stamp_ns, color, depth), self._pending = self._pending, None
        self._last_run_s = now_s
        try:
            self._process(stamp_ns, color, depth)
        except Exception as exc:  # noqa: BLE001 - bad input (PerceptionError) or a bug: never kill the node
            self._report_failure(stamp_ns, exc, (time.monotonic() - now_s) * 1e3)

    def _process(self, stamp_ns: int, color: Image, depth: Image) -> None:
        """Segment one synchronised frame and publish cloud, mask and status."""
        start_s = time.monotonic()
        if self._intrinsics is None:
            raise self._info_error or MissingCameraInfoError(
                f"no CameraInfo received yet on '{self.config.camera_info_topic}'; the frame is skipped "
                "until the camera driver publishes it (check the topic name and QoS)")
        rgb = image_to_rgb(color)
        depth_m = image_to_depth_m(depth)
        result = self._segmenter.segment(rgb, depth_m, self._intrinsics, self._T_base_camera)
        # The image first: a planner that needs it finds it waiting when the cloud arrives.
        self._image_pub.publish(color)
        self._cloud_pub.publish(numpy_to_cloud(result.points, result.colors, self.config.base_frame,
                                               color.header.stamp, pixel_uv=result.pixels[:, ::-1]))
        self._mask_pub.publish(numpy_to_image(result.mask.astype("uint8") * 255, "mono8",
                                              color.header.frame_id or depth.header.frame_id,
                                              color.header.stamp))
        total_ms = (time.monotonic() - start_s) * 1e3
        chosen = result.clusters[result.chosen]
        self._publish_status({
            "ok": True, "error": None, "message": "", "stamp_ns": stamp_ns,
            "n_points": int(len(result.points)), "n_clusters": len(result.clusters), "chosen": result.chosen,
            "centroid_m": [round(v, 4) for v in chosen.centroid_m],
            "timing_ms": {"total": round(total_ms, 1), **{k: round(v, 1) for k, v in result.timings_ms.items()}},
        })
        if self._failing:
            self.get_logger().info(f"object cloud published again ({len(result.points)} points)")
        self._failing = False

    # --- reporting ----------------------------------------------------------------------------
    def _report_failure(self, stamp_ns: int, exc: Exception, elapsed_ms: float) -> None:
        """Publish a failed status and log the error (throttled per error type); publish no output."""
        self._failing = True
        self._log_error(exc)
        self._publish_status({"ok": False, "error": type(exc).__name__, "message": str(exc),
                              "stamp_ns": stamp_ns, "n_points": 0, "timing_ms": {"total": round(elapsed_ms, 1)}})

    def _log_error(self, exc: Exception) -> None:
        kind = type(exc).__name__
        now_s = time.monotonic()
        if now_s - self._last_logged.get(kind, -math.inf) < ERROR_LOG_THROTTLE_S:
            return
        self._last_logged[kind] = now_s
        prefix = "" if isinstance(exc, PerceptionError) else "internal error (please report): "
        self.get_logger().error(f"frame skipped, no cloud published: {prefix}{kind}: {exc}")

    def _publish_status(self, status: dict) -> None:
        self._status_pub.publish(String(data=json.dumps(status)))


def main(args=None) -> int:
    """Run the perception node until Ctrl-C or an external shutdown; 1 on a configuration error."""
    localhost_env()
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = PerceptionNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, ParameterException, SegmenterUnavailableError) as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {exc}")
        code = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
