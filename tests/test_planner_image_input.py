"""The planner feeds the colour image and each point's pixel to a D(R,O) network trained with images.

Pure core (resize + pixel scaling, the planner with a tiny ``use_image`` checkpoint), the
perception → planner message conversions through real serialised PointCloud2 / Image messages,
and one PlannerNode over real rclpy that gets cloud + image over DDS.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from torch import nn

rclpy = pytest.importorskip("rclpy")
from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402

from grasp_perception.camera import CameraIntrinsics, look_at, project, transform_points  # noqa: E402
from grasp_perception.conversions import cloud_to_numpy, numpy_to_cloud, numpy_to_image  # noqa: E402
from grasp_planner import conversions  # noqa: E402
from grasp_planner.grasp_predictor import NetworkPredictor, NetworkPredictorConfig  # noqa: E402
from grasp_planner.hands import load_hand  # noqa: E402
from grasp_planner.image_input import ImageInputError, network_view, resize_view  # noqa: E402
from grasp_planner.network.checkpoint import save_checkpoint  # noqa: E402
from grasp_planner.network.config import NetworkConfig  # noqa: E402
from grasp_planner.network.model import DRONetwork  # noqa: E402
from grasp_planner.object_model import build_object_proxy  # noqa: E402
from grasp_planner.pipeline import GraspPlanner, PlannerConfig, builtin_backend  # noqa: E402
from grasp_planner.robots import panda  # noqa: E402
from test_grasp_synthesis import CAMERA_XYZ, visible_cylinder  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HAND = "inspire"
#: A tiny network that reads images (the behaviours, not the quality, are under test).
TINY_IMAGE = NetworkConfig(hand=HAND, hand_points=128, object_points=256, sampled_object_points=96, knn_k=8,
                           edge_channels=(16,), feature_dim=32, latent_dim=8, decoder_widths=(8, 1), local_k=8,
                           density_k=4, use_image=True, image_size=(24, 32), image_channels=(8, 8),
                           image_feature_dim=8)
#: The test camera: 160×120 pixels looking at the cylinder from the configured camera position.
CAMERA = CameraIntrinsics.from_k(np.array([[200.0, 0.0, 80.0], [0.0, 200.0, 60.0], [0.0, 0.0, 1.0]]), 160, 120)


def camera_view(cloud: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A (120, 160, 3) uint8 image and each cloud point's pixel (u, v) in it (pinhole projection)."""
    T_base_camera = look_at(CAMERA_XYZ, cloud.mean(axis=0))
    uv = project(transform_points(np.linalg.inv(T_base_camera), cloud), CAMERA).astype(np.float32)
    image = np.random.default_rng(seed).integers(0, 256, (CAMERA.height, CAMERA.width, 3), dtype=np.uint8)
    return image, uv


def planner_proxy(cloud: np.ndarray):
    """The planner's convex proxy of the cloud (table at z = 0)."""
    return build_object_proxy(cloud, 0.0, np.asarray(CAMERA_XYZ))


@pytest.fixture(scope="module")
def image_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / f"{HAND}_image.safetensors", DRONetwork(TINY_IMAGE))


@pytest.fixture(scope="module")
def hand():
    return load_hand(HAND)


# --- resize + pixel scaling (the one function training, deployment and the planner share) -----------
@pytest.mark.parametrize("source_hw", [(480, 640), (240, 320), (120, 160), (100, 150), (96, 128)])
@pytest.mark.parametrize("where", [(0.05, 0.06), (0.47, 0.51), (0.9, 0.88)])
def test_resize_puts_a_known_point_on_its_pixel(source_hw, where):
    """A bright square around a point: after the resize, the point's scaled (u, v) is the square's
    brightness centroid (to 0.05 px) and its rounded (u, v) the brightest pixel."""
    height, width = source_hw
    side = max(3, width // 64)
    col, row = int(where[0] * width), int(where[1] * height)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[row:row + side, col:col + side] = 255
    point = np.array([[col + (side - 1) / 2, row + (side - 1) / 2]], np.float32)
    image, uv = resize_view(rgb, point, (96, 128))
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8
    weight = image[:, :, 0].astype(float)
    rows, cols = np.mgrid[0:96, 0:128]
    centroid = np.array([(weight * cols).sum(), (weight * rows).sum()]) / weight.sum()
    np.testing.assert_allclose(uv[0], centroid, atol=0.05)
    brightest = weight == weight.max()
    assert brightest[int(round(float(uv[0, 1]))), int(round(float(uv[0, 0])))]


def test_network_view_refuses_images_and_pixels_that_do_not_fit():
    image, uv = camera_view(visible_cylinder())
    out, scaled = network_view(image, uv, len(uv), (24, 32))
    assert out.shape == (24, 32, 3)
    np.testing.assert_allclose(scaled, (uv + 0.5) * [32 / 160, 24 / 120] - 0.5, atol=1e-5)
    cases = {"mono": (image[:, :, 0], uv, "must be \\(H, W, 3\\) uint8 RGB"),
             "16-bit": (image.astype(np.uint16), uv, "uint16"),
             "count": (image, uv[:-1], f"the object cloud has {len(uv)} points"),
             "nan": (image, np.where(np.arange(len(uv))[:, None] == 3, np.nan, uv), "1 non-finite"),
             "smaller image": (image[::2, ::2], uv, "outside the 80×60 colour image")}
    for name, (img, pix, message) in cases.items():
        with pytest.raises(ImageInputError, match=message):
            network_view(img, pix, len(uv), (24, 32))


# --- the planner core with an image checkpoint -----------------------------------------------------
class _Recorder(nn.Module):
    """The real network, with each input batch kept for inspection."""

    def __init__(self, model: DRONetwork):
        super().__init__()
        self.model, self.config, self.batches = model, model.config, []

    def forward(self, batch, **kwargs):
        self.batches.append(batch)
        return self.model(batch, **kwargs)


def test_image_checkpoint_plans_with_image_and_is_refused_without(hand, image_checkpoint):
    predictor = NetworkPredictor(hand, image_checkpoint, NetworkPredictorConfig(num_samples=4))
    assert predictor.uses_image
    recorder = predictor.model = _Recorder(predictor.model)
    # No optimiser fallback: an untrained network's grasps may all miss the arm's reach, and the
    # request must still show the image went to the network (not an image error).
    config = PlannerConfig(camera_xyz=tuple(CAMERA_XYZ), num_candidates=2, network_fallback=False)
    planner = GraspPlanner(hand, builtin_backend(hand, config), config, predictor=predictor)
    start = {**dict(zip(panda.ARM_JOINT_NAMES, panda.OBSERVE_Q)), **{n: 0.0 for n in hand.joint_names}}
    cloud = visible_cylinder()
    image, uv = camera_view(cloud)

    refused = planner.plan(cloud, start)
    assert not refused.success and refused.plan is None and not recorder.batches
    assert "trained with images" in refused.reason and "colour image and per-point pixels (u, v)" in refused.reason
    wrong = planner.plan(cloud, start, image=image[:40, :50], pixel_uv=uv)
    assert not wrong.success and wrong.plan is None and "outside the 50×40 colour image" in wrong.reason

    result = planner.plan(cloud, start, image=image, pixel_uv=uv)
    assert len(recorder.batches) == 1
    assert all(c.info["backend"] == "network" for c in result.candidates)
    assert "image" not in result.reason and "pixel" not in result.reason
    batch = recorder.batches[-1]
    assert tuple(batch.image.shape) == (1, 3, 24, 32)
    expected_image, _ = resize_view(image, uv, (24, 32))
    np.testing.assert_allclose(batch.image[0].numpy().transpose(1, 2, 0) * 255.0, expected_image, atol=1e-3)
    # Each of the network's object points carries its own pixel, scaled to the network's image.
    points = batch.object_points[0].double().numpy()
    expected_uv = (project(transform_points(np.linalg.inv(look_at(CAMERA_XYZ, cloud.mean(axis=0))), points), CAMERA)
                   + 0.5) * [32 / 160, 24 / 120] - 0.5
    np.testing.assert_allclose(batch.pixel_uv[0].numpy(), expected_uv, atol=1e-3)

    # The image reaches the network: another image (same cloud, same seed) gives other grasps.
    other = predictor.predict(cloud, planner_proxy(cloud), 4, image=camera_view(cloud, seed=1)[0], pixel_uv=uv)
    again = predictor.predict(cloud, planner_proxy(cloud), 4, image=image, pixel_uv=uv)
    poses = lambda cands: np.array([c.T_base_root for c in cands])  # noqa: E731
    same = predictor.predict(cloud, planner_proxy(cloud), 4, image=image, pixel_uv=uv)
    np.testing.assert_allclose(poses(again), poses(same))
    assert len(other) != len(again) or not np.allclose(poses(other), poses(again), atol=1e-4)


def test_geometry_only_planning_ignores_an_image(hand):
    """The optimiser (and any geometry-only predictor) plans the same with or without an image."""
    config = PlannerConfig(camera_xyz=tuple(CAMERA_XYZ), num_candidates=2)
    planner = GraspPlanner(hand, builtin_backend(hand, config), config)
    assert not planner.predictor.uses_image
    cloud = visible_cylinder()
    start = {**dict(zip(panda.ARM_JOINT_NAMES, panda.OBSERVE_Q)), **{n: 0.0 for n in hand.joint_names}}
    image, uv = camera_view(cloud)
    plain, with_image = planner.plan(cloud, start), planner.plan(cloud, start, image=image[:5], pixel_uv=uv)
    assert plain.success and with_image.success
    np.testing.assert_allclose(plain.T_base_flange, with_image.T_base_flange)


# --- messages: perception's cloud + image → the planner's arrays ------------------------------------
def _wire(msg):
    """The message after a CDR round trip, as a subscriber receives it."""
    return deserialize_message(serialize_message(msg), type(msg))


def test_cloud_pixels_round_trip_through_a_real_pointcloud2():
    cloud = visible_cylinder().astype(np.float32)
    _, uv = camera_view(cloud)
    colours = np.random.default_rng(2).integers(0, 256, (len(cloud), 3), dtype=np.uint8)
    msg = _wire(numpy_to_cloud(cloud, colours, "panda_link0", Time(sec=7), pixel_uv=uv))
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb", "u", "v"]
    xyz, rgb = cloud_to_numpy(msg)
    np.testing.assert_array_equal(xyz, cloud)
    np.testing.assert_array_equal(rgb, colours)
    np.testing.assert_array_equal(conversions.cloud_pixels(msg), uv)
    # A cloud recorded before u, v existed still reads, and has no pixels.
    old = _wire(numpy_to_cloud(cloud, colours, "panda_link0", Time(sec=7)))
    assert conversions.cloud_pixels(old) is None and np.array_equal(cloud_to_numpy(old)[0], cloud)
    with pytest.raises(ValueError, match="one \\(u, v\\) per point"):
        numpy_to_cloud(cloud, colours, "panda_link0", pixel_uv=uv[:-1])


def test_only_colour_encodings_are_the_networks_image():
    image, _ = camera_view(visible_cylinder())
    bgr = _wire(numpy_to_image(np.ascontiguousarray(image[:, :, ::-1]), "bgr8", "cam", Time(sec=7)))
    np.testing.assert_array_equal(conversions.network_color_image(bgr), image)
    for array, encoding, kind in ((image[:, :, 0], "mono8", "grey"),
                                  (np.zeros((120, 160), np.uint16), "16UC1", "depth"),
                                  (np.zeros((120, 160), np.float32), "32FC1", "depth")):
        with pytest.raises(ValueError, match=f"encoding '{encoding}' \\(a {kind} image\\).*rgb8, bgr8"):
            conversions.network_color_image(_wire(numpy_to_image(array, encoding, "cam", Time(sec=7))))
    short = Image(height=120, width=160, encoding="rgb8", step=480, data=bytes(100))
    with pytest.raises(ValueError, match="object image is malformed"):
        conversions.network_color_image(short)


# --- the planner node over DDS ---------------------------------------------------------------------
@pytest.mark.ros
def test_planner_node_gets_cloud_and_image_over_dds_and_feeds_both_to_the_network(
        ros_context, image_checkpoint):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    from grasp_common import qos, topics
    from grasp_planner.node import PlannerNode

    node = PlannerNode(context=ros_context, parameter_overrides=[
        Parameter("hand", value=HAND), Parameter("camera_xyz", value=list(CAMERA_XYZ)),
        Parameter("grasp_backend", value="network"), Parameter("grasp_checkpoint", value=str(image_checkpoint)),
        Parameter("network_samples", value=2), Parameter("num_candidates", value=1),
        Parameter("plan_on_cloud", value=False)])
    driver = rclpy.create_node("image_input_driver", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    try:
        calls = []
        predict = node.planner.predictor.predict
        node.planner.predictor.predict = lambda *a, **kw: calls.append(kw) or predict(*a, **kw)
        cloud_pub = driver.create_publisher(PointCloud2, topics.OBJECT_CLOUD, qos.LATCHED)
        image_pub = driver.create_publisher(Image, topics.OBJECT_IMAGE, qos.LATCHED)
        joint_pub = driver.create_publisher(JointState, topics.JOINT_STATES, qos.STATE)
        statuses: list[dict] = []
        driver.create_subscription(String, topics.PLANNER_STATUS, lambda m: statuses.append(json.loads(m.data)),
                                   QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                              durability=DurabilityPolicy.TRANSIENT_LOCAL))
        start = {**dict(zip(panda.ARM_JOINT_NAMES, panda.OBSERVE_Q.tolist())),
                 **{n: 0.0 for n in node.hand.joint_names}}
        driver.create_timer(0.05, lambda: joint_pub.publish(JointState(name=list(start),
                                                                       position=list(start.values()))))
        replan = driver.create_client(Trigger, "/grasp_planner/replan")
        executor.add_node(node)
        executor.add_node(driver)

        def spin_until(condition, timeout_s):
            deadline = time.monotonic() + timeout_s
            while not condition() and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.02)
            return condition()

        assert spin_until(lambda: cloud_pub.get_subscription_count() and image_pub.get_subscription_count()
                          and replan.service_is_ready(), 5.0)
        cloud = visible_cylinder().astype(np.float32)
        image, uv = camera_view(cloud)
        colours = np.full((len(cloud), 3), 200, np.uint8)

        def plan(stamp_s, image_msg, pixel_uv=uv):
            """Publish image (if any) + cloud of one stamp, call ~/replan, return the planner's status."""
            if image_msg is not None:
                image_pub.publish(image_msg)
            cloud_pub.publish(numpy_to_cloud(cloud, colours, "panda_link0", Time(sec=stamp_s), pixel_uv=pixel_uv))
            assert spin_until(lambda: node._latest_cloud is not None
                              and node._latest_cloud.header.stamp.sec == stamp_s, 5.0)
            count = len(statuses)
            future = replan.call_async(Trigger.Request())
            assert spin_until(future.done, 5.0) and future.result().success
            assert spin_until(lambda: len(statuses) > count, 60.0), "no planner status"
            return statuses[-1]

        status = plan(1, numpy_to_image(image, "rgb8", "camera_color_optical_frame", Time(sec=1)))
        assert calls and calls[-1]["image"] is not None, status
        np.testing.assert_array_equal(calls[-1]["image"], image)
        np.testing.assert_array_equal(calls[-1]["pixel_uv"], uv)
        assert tuple(calls[-1]["camera_xyz"]) == tuple(CAMERA_XYZ)  # the free-space ranking's camera
        assert "image" not in status["reason"] and "pixel" not in status["reason"]

        n_calls = len(calls)
        status = plan(2, numpy_to_image(image[:, :, 0], "mono8", "camera_color_optical_frame", Time(sec=2)))
        assert not status["success"] and status["joint_goal"] is None
        assert "'mono8' (a grey image)" in status["reason"] and topics.OBJECT_IMAGE in status["reason"]
        assert len(calls) == n_calls                               # refused before the network ran
        status = plan(3, numpy_to_image(image, "rgb8", "camera_color_optical_frame", Time(sec=1)))  # wrong stamp
        assert not status["success"] and "no colour image stamped 3.000000000" in status["reason"]
        status = plan(4, numpy_to_image(image, "rgb8", "camera_color_optical_frame", Time(sec=4)), pixel_uv=None)
        assert not status["success"] and "has no fields u, v" in status["reason"]
        assert len(calls) == n_calls
    finally:
        executor.shutdown()
        node.destroy_node()
        driver.destroy_node()
