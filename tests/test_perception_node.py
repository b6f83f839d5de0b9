"""PerceptionNode over real rclpy on an isolated domain: good frames give clouds, bad ones never do."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from grasp_perception.synthetic import Scene, demo_camera, demo_scene, render

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")
from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from grasp_common import qos, topics  # noqa: E402
from grasp_perception.camera import project, transform_points  # noqa: E402
from grasp_perception.conversions import cloud_pixel_uv, cloud_to_numpy, image_to_rgb, numpy_to_image  # noqa: E402
from grasp_perception.node import PerceptionNode  # noqa: E402

INTR, T_BASE_CAMERA = demo_camera(320, 240)  # the node's default extrinsics
CAMERA_FRAME = "camera_color_optical_frame"
RESULTS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
DISCOVERY_TIMEOUT_S = 3.0
FRAME_TIMEOUT_S = 2.0
NO_OUTPUT_GRACE_S = 0.3


@pytest.fixture(scope="module")
def scene_frame():
    return render(demo_scene(), INTR, T_BASE_CAMERA, noise_std_m=0.001, seed=1)


@pytest.fixture(scope="module")
def empty_frame():
    return render(Scene(), INTR, T_BASE_CAMERA, noise_std_m=0.001, seed=2)


class Harness:
    """The node under test plus a driver node publishing camera data and recording outputs."""

    def __init__(self, context, max_rate_hz=100.0):
        self.node = PerceptionNode(context=context, parameter_overrides=[
            Parameter("max_rate_hz", value=max_rate_hz)])
        self.driver = rclpy.create_node("perception_test_driver", context=context)
        self.color_pub = self.driver.create_publisher(Image, topics.COLOR_IMAGE, qos.SENSOR)
        self.depth_pub = self.driver.create_publisher(Image, topics.DEPTH_IMAGE, qos.SENSOR)
        self.info_pub = self.driver.create_publisher(CameraInfo, topics.CAMERA_INFO, qos.SENSOR)
        self.clouds: list[PointCloud2] = []
        self.masks: list[Image] = []
        self.images: list[Image] = []
        self.statuses: dict[int, dict] = {}
        self.driver.create_subscription(PointCloud2, topics.OBJECT_CLOUD, self.clouds.append, RESULTS_QOS)
        self.driver.create_subscription(Image, topics.OBJECT_MASK, self.masks.append, RESULTS_QOS)
        self.driver.create_subscription(Image, topics.OBJECT_IMAGE, self.images.append, RESULTS_QOS)
        self.driver.create_subscription(String, "/grasp_perception/status", self._on_status, RESULTS_QOS)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.driver)
        assert self.spin_until(lambda: all(p.get_subscription_count() > 0 for p in
                                           (self.color_pub, self.depth_pub, self.info_pub))
                               and self.node.count_subscribers(topics.OBJECT_CLOUD) > 0,
                               DISCOVERY_TIMEOUT_S), "perception node and driver did not discover each other"

    def _on_status(self, msg: String) -> None:
        status = json.loads(msg.data)
        self.statuses[status["stamp_ns"]] = status

    def spin_until(self, condition, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not condition() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
        return condition()

    def spin_for(self, duration_s: float) -> None:
        self.spin_until(lambda: False, duration_s)

    def send(self, stamp_s: int, rgb, depth, *, color_encoding="rgb8", depth_encoding="32FC1",
             info_size=(INTR.width, INTR.height), with_info=True) -> dict:
        """Publish one frame (re-sent while unanswered: the camera QoS is best effort); return its status."""
        stamp = Time(sec=stamp_s)
        color = numpy_to_image(rgb, color_encoding, CAMERA_FRAME, stamp) if color_encoding != "yuv422" else \
            Image(header=numpy_to_image(rgb, "rgb8", CAMERA_FRAME, stamp).header, height=rgb.shape[0],
                  width=rgb.shape[1], encoding="yuv422", step=rgb.shape[1] * 2,
                  data=bytes(rgb.shape[0] * rgb.shape[1] * 2))
        depth_msg = numpy_to_image(depth, depth_encoding, CAMERA_FRAME, stamp)
        info = CameraInfo(width=info_size[0], height=info_size[1], k=INTR.k.reshape(-1).tolist())
        info.header = color.header
        key = stamp_s * 1_000_000_000
        deadline = time.monotonic() + FRAME_TIMEOUT_S
        while key not in self.statuses and time.monotonic() < deadline:
            if with_info:
                self.info_pub.publish(info)
                self.spin_for(0.02)
            self.color_pub.publish(color)
            self.depth_pub.publish(depth_msg)
            self.spin_until(lambda: key in self.statuses, 0.25)
        assert key in self.statuses, f"no status for the frame stamped {stamp_s} s"
        return self.statuses[key]

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.driver.destroy_node()


@pytest.fixture
def harness(ros_context):
    h = Harness(ros_context)
    yield h
    h.close()


def assert_good_cloud(harness, frame, stamp_s):
    """The frame produced a cloud on the cylinder (largest object) and a matching mask."""
    status = harness.send(stamp_s, frame.rgb, frame.depth_m)
    assert status["ok"] is True and status["error"] is None, status
    assert harness.spin_until(lambda: any(c.header.stamp.sec == stamp_s for c in harness.clouds), 1.0)
    cloud = next(c for c in harness.clouds if c.header.stamp.sec == stamp_s)
    assert cloud.header.frame_id == "panda_link0"
    xyz, rgb = cloud_to_numpy(cloud)
    assert len(xyz) == status["n_points"] > 500
    cylinder = demo_scene().objects[1]
    radial = np.hypot(xyz[:, 0] - cylinder.center_xy_m[0], xyz[:, 1] - cylinder.center_xy_m[1])
    assert np.all(radial < cylinder.radius_m + 0.01)
    assert np.all((xyz[:, 2] > 0.0) & (xyz[:, 2] < cylinder.height_m + 0.01))
    assert np.all(rgb == cylinder.color)
    assert harness.spin_until(lambda: any(m.header.stamp.sec == stamp_s for m in harness.masks), 1.0)
    mask_msg = next(m for m in harness.masks if m.header.stamp.sec == stamp_s)
    assert (mask_msg.encoding, mask_msg.header.frame_id) == ("mono8", CAMERA_FRAME)
    mask = image_to_rgb(mask_msg)[:, :, 0] == 255
    truth = frame.labels == 1
    assert (mask & truth).sum() / (mask | truth).sum() > 0.8
    # Each point's pixel (fields u, v) is where the point projects in the colour image, which is
    # republished unchanged with the cloud's stamp (the planner's image network reads both).
    uv = cloud_pixel_uv(cloud)
    assert uv is not None and uv.shape == (len(xyz), 2)
    projected = project(transform_points(np.linalg.inv(T_BASE_CAMERA), xyz), INTR)
    assert np.abs(projected - uv).max() < 0.01
    rows, cols = uv[:, 1].astype(int), uv[:, 0].astype(int)
    assert mask[rows, cols].all()
    assert harness.spin_until(lambda: any(m.header.stamp.sec == stamp_s for m in harness.images), 1.0)
    image_msg = next(m for m in harness.images if m.header.stamp.sec == stamp_s)
    assert (image_msg.encoding, image_msg.header.frame_id) == ("rgb8", CAMERA_FRAME)
    assert np.array_equal(image_to_rgb(image_msg), frame.rgb)
    assert np.array_equal(image_to_rgb(image_msg)[rows, cols], rgb)


def bad_frames(scene_frame, empty_frame):
    """name → (kwargs for Harness.send, expected error type)."""
    rgb, depth = scene_frame.rgb, scene_frame.depth_m
    return {
        "nan_depth": (dict(rgb=rgb, depth=np.full_like(depth, np.nan)), "InvalidDepthError"),
        "zero_depth_16uc1": (dict(rgb=rgb, depth=np.zeros(depth.shape, np.uint16), depth_encoding="16UC1"),
                             "InvalidDepthError"),
        "size_mismatch": (dict(rgb=rgb[::2, ::2], depth=depth[::2, ::2]), "SizeMismatchError"),
        "unsupported_encoding": (dict(rgb=rgb, depth=depth, color_encoding="yuv422"), "UnsupportedEncodingError"),
        "no_object": (dict(rgb=empty_frame.rgb, depth=empty_frame.depth_m), "NoObjectError"),
    }


@pytest.mark.parametrize("case", ["nan_depth", "zero_depth_16uc1", "size_mismatch", "unsupported_encoding",
                                  "no_object"])
def test_bad_frame_publishes_nothing_reports_why_and_the_next_good_frame_works(
        harness, scene_frame, empty_frame, case):
    assert_good_cloud(harness, scene_frame, stamp_s=1)
    kwargs, error = bad_frames(scene_frame, empty_frame)[case]
    before = len(harness.clouds), len(harness.masks), len(harness.images)
    status = harness.send(2, kwargs.pop("rgb"), kwargs.pop("depth"), **kwargs)
    assert status["ok"] is False and status["error"] == error, status
    assert status["n_points"] == 0 and status["message"]
    harness.spin_for(NO_OUTPUT_GRACE_S)
    assert (len(harness.clouds), len(harness.masks), len(harness.images)) == before
    assert_good_cloud(harness, scene_frame, stamp_s=3)


def test_frames_before_camera_info_are_reported_then_served(harness, scene_frame):
    status = harness.send(1, scene_frame.rgb, scene_frame.depth_m, with_info=False)
    assert status["error"] == "MissingCameraInfoError" and topics.CAMERA_INFO in status["message"]
    harness.spin_for(NO_OUTPUT_GRACE_S)
    assert harness.clouds == []
    assert_good_cloud(harness, scene_frame, stamp_s=2)


def test_color_and_depth_pair_only_on_matching_stamps(harness, scene_frame):
    harness.info_pub.publish(CameraInfo(width=INTR.width, height=INTR.height, k=INTR.k.reshape(-1).tolist()))
    harness.color_pub.publish(numpy_to_image(scene_frame.rgb, "rgb8", CAMERA_FRAME, Time(sec=5)))
    harness.depth_pub.publish(numpy_to_image(scene_frame.depth_m, "32FC1", CAMERA_FRAME, Time(sec=6)))
    harness.spin_for(NO_OUTPUT_GRACE_S)
    assert harness.statuses == {} and harness.clouds == []
    status = harness.send(6, scene_frame.rgb, scene_frame.depth_m)  # now stamp 6 has both halves
    assert status["ok"] is True
    assert 5_000_000_000 not in harness.statuses


def test_rate_limit_processes_the_newest_waiting_frame_later(ros_context, scene_frame):
    harness = Harness(ros_context, max_rate_hz=1.0)
    try:
        assert harness.send(1, scene_frame.rgb, scene_frame.depth_m)["ok"]
        started_s = time.monotonic()
        for stamp_s in (2, 3):  # both arrive within the 1 s period: 3 replaces 2
            harness.color_pub.publish(numpy_to_image(scene_frame.rgb, "rgb8", CAMERA_FRAME, Time(sec=stamp_s)))
            harness.depth_pub.publish(numpy_to_image(scene_frame.depth_m, "32FC1", CAMERA_FRAME,
                                                     Time(sec=stamp_s)))
            harness.spin_for(0.05)
        assert harness.spin_until(lambda: 3_000_000_000 in harness.statuses, 2.5)
        assert time.monotonic() - started_s > 0.5  # held back by the rate limit, not processed at once
        assert 2_000_000_000 not in harness.statuses
        assert harness.statuses[3_000_000_000]["ok"]
    finally:
        harness.close()


def test_parameters_are_described_and_read_once(harness):
    node = harness.node
    for name in ("camera_xyz", "camera_quat_xyzw", "base_frame", "max_rate_hz", "voxel_size_m", "target",
                 "sync_tolerance_s", "color_topic"):
        assert node.describe_parameter(name).description, name
    assert node.describe_parameter("voxel_size_m").floating_point_range[0].to_value == pytest.approx(0.05)
    result = node.set_parameters([Parameter("target", value="nearest")])[0]
    assert not result.successful and "read once" in result.reason
    assert node.config.segmentation.target == "largest"


def test_invalid_parameters_stop_the_node_with_the_reason(ros_context):
    with pytest.raises(ValueError, match="cluster_tolerance_m .* must exceed voxel_size_m"):
        PerceptionNode(context=ros_context, parameter_overrides=[
            Parameter("voxel_size_m", value=0.02), Parameter("cluster_tolerance_m", value=0.01)])


def _run_main(domain_id: int, *ros_args: str, stop_after_start: bool):
    """Run ``grasp_perception.node.main`` in a child process; SIGINT it once it is up."""
    import signal
    import subprocess
    import sys

    from grasp_common.rosenv import child_env

    args = [sys.executable, "-m", "grasp_perception.node"] + (["--ros-args", *ros_args] if ros_args else [])
    proc = subprocess.Popen(args, env=child_env(domain_id), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        if stop_after_start:
            return proc, None
        out, _ = proc.communicate(timeout=20)
        return proc, out
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        raise


def test_main_starts_and_stops_cleanly_on_ctrl_c(ros_context, ros_domain_id):
    import signal

    proc, _ = _run_main(ros_domain_id, stop_after_start=True)
    probe = rclpy.create_node("perception_main_probe", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(probe)
    try:
        deadline = time.monotonic() + 15.0
        while "grasp_perception" not in probe.get_node_names() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert "grasp_perception" in probe.get_node_names(), "node did not come up"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, out
        assert "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
        executor.shutdown()
        probe.destroy_node()


def test_main_exits_with_the_reason_on_bad_parameters(ros_domain_id):
    proc, out = _run_main(ros_domain_id, "-p", "voxel_size_m:=0.02", "-p", "cluster_tolerance_m:=0.01",
                          stop_after_start=False)
    assert proc.returncode == 1
    assert "must exceed voxel_size_m" in out and "Traceback" not in out


def test_repeated_errors_are_logged_once_per_throttle_period(harness):
    from grasp_perception.errors import InvalidDepthError, NoObjectError

    logged = []

    class FakeLogger:
        def error(self, text):
            logged.append(text)

    harness.node.get_logger = FakeLogger
    for _ in range(5):
        harness.node._log_error(InvalidDepthError("depth image has 100% invalid pixels"))
    harness.node._log_error(NoObjectError("no object cluster"))
    assert len(logged) == 2
    assert "InvalidDepthError" in logged[0] and "NoObjectError" in logged[1]
