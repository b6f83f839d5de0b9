"""sensor_msgs ↔ numpy conversions: Image encodings, padding, endianness, CameraInfo, PointCloud2."""
from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from grasp_perception.conversions import (camera_info_to_intrinsics, cloud_to_numpy, image_to_depth_m,
                                          image_to_rgb, numpy_to_cloud, numpy_to_image, pack_rgb)
from grasp_perception.errors import (InvalidCameraInfoError, MalformedMessageError, PerceptionError,
                                     UnsupportedEncodingError)

RNG = np.random.default_rng(0)


def padded_image(pixels: np.ndarray, encoding: str, pad_bytes: int = 7, big_endian: bool = False) -> Image:
    """An Image whose rows carry ``pad_bytes`` of garbage after the pixels (step > width × bpp)."""
    h, w = pixels.shape[:2]
    order = ">" if big_endian else "<"
    rows = np.ascontiguousarray(pixels.astype(pixels.dtype.newbyteorder(order))).view(np.uint8).reshape(h, -1)
    garbage = np.full((h, pad_bytes), 0xAB, np.uint8)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=big_endian, step=rows.shape[1] + pad_bytes)
    msg.data = np.hstack((rows, garbage)).tobytes()
    return msg


def test_rgb8_with_padded_rows_round_trips():
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(padded_image(rgb, "rgb8")), rgb)
    np.testing.assert_array_equal(image_to_rgb(numpy_to_image(rgb, "rgb8")), rgb)


@pytest.mark.parametrize("encoding, to_msg", [
    ("bgr8", lambda rgb: rgb[:, :, ::-1]),
    ("rgba8", lambda rgb: np.dstack((rgb, np.full(rgb.shape[:2], 9, np.uint8)))),
    ("bgra8", lambda rgb: np.dstack((rgb[:, :, ::-1], np.full(rgb.shape[:2], 9, np.uint8)))),
])
def test_color_encodings_decode_to_rgb(encoding, to_msg):
    rgb = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(padded_image(to_msg(rgb), encoding)), rgb)


def test_mono8_is_replicated_to_rgb():
    mono = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
    out = image_to_rgb(numpy_to_image(mono, "mono8"))
    assert out.shape == (4, 6, 3)
    np.testing.assert_array_equal(out, np.repeat(mono[:, :, None], 3, axis=2))


@pytest.mark.parametrize("big_endian", [False, True])
def test_16uc1_millimetres_become_metres(big_endian):
    mm = np.array([[0, 1, 1500], [65535, 250, 1000]], np.uint16)
    depth = image_to_depth_m(padded_image(mm, "16UC1", pad_bytes=4, big_endian=big_endian))
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth, mm / 1000.0, rtol=1e-6)


@pytest.mark.parametrize("big_endian", [False, True])
def test_32fc1_metres_round_trip_with_nan(big_endian):
    depth = np.array([[0.5, np.nan, 1.25], [np.inf, 0.0, 2.0]], np.float32)
    out = image_to_depth_m(padded_image(depth, "32FC1", pad_bytes=8, big_endian=big_endian))
    np.testing.assert_array_equal(out, depth)
    np.testing.assert_array_equal(image_to_depth_m(numpy_to_image(depth, "32FC1")), depth)


def test_unsupported_encodings_list_the_supported_ones():
    msg = Image(height=2, width=2, encoding="yuv422", step=4, data=bytes(8))
    with pytest.raises(UnsupportedEncodingError, match="'yuv422' is not supported; use one of rgb8, bgr8"):
        image_to_rgb(msg)
    with pytest.raises(UnsupportedEncodingError, match="32FC1, 16UC1"):
        image_to_depth_m(numpy_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8"))
    assert issubclass(UnsupportedEncodingError, PerceptionError)


def test_short_or_inconsistent_buffers_are_reported():
    with pytest.raises(MalformedMessageError, match="expected step × height"):
        image_to_rgb(Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(11)))
    with pytest.raises(MalformedMessageError, match="smaller than one row"):
        image_to_rgb(Image(height=2, width=2, encoding="rgb8", step=5, data=bytes(10)))


def test_numpy_to_image_sets_header_and_checks_shape():
    msg = numpy_to_image(np.zeros((3, 4), np.float32), "32FC1", frame_id="cam")
    assert (msg.height, msg.width, msg.step, msg.header.frame_id, msg.is_bigendian) == (3, 4, 16, "cam", False)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        numpy_to_image(np.zeros((3, 4), np.uint8), "rgb8")


def test_camera_info_gives_intrinsics_and_rejects_uncalibrated():
    info = CameraInfo(width=640, height=480, k=[600.0, 0.0, 319.5, 0.0, 601.0, 239.5, 0.0, 0.0, 1.0])
    intr = camera_info_to_intrinsics(info)
    assert (intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy) == (640, 480, 600.0, 601.0, 319.5, 239.5)
    with pytest.raises(InvalidCameraInfoError, match="not calibrated"):
        camera_info_to_intrinsics(CameraInfo(width=640, height=480))


def test_pointcloud2_round_trip_xyz_rgb_with_ros_layout():
    xyz = RNG.normal(size=(100, 3)).astype(np.float32)
    rgb = RNG.integers(0, 256, (100, 3), dtype=np.uint8)
    msg = numpy_to_cloud(xyz, rgb, "panda_link0")
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1), ("rgb", 12, PointField.FLOAT32, 1)]
    assert (msg.height, msg.width, msg.point_step, msg.row_step, msg.is_dense) == (1, 100, 16, 1600, True)
    assert msg.header.frame_id == "panda_link0"
    out_xyz, out_rgb = cloud_to_numpy(msg)
    np.testing.assert_array_equal(out_xyz, xyz)
    np.testing.assert_array_equal(out_rgb, rgb)


def test_rgb_is_packed_as_0x00rrggbb_in_a_float32():
    msg = numpy_to_cloud(np.zeros((1, 3), np.float32), np.array([[255, 16, 1]], np.uint8), "base")
    packed = np.frombuffer(bytes(msg.data), np.uint32)[3]
    assert packed == 0x00FF1001 == pack_rgb(np.array([[255, 16, 1]]))[0]


def test_cloud_with_foreign_layout_padding_and_nans_is_read():
    dtype = np.dtype({"names": ["x", "y", "z", "rgb"], "formats": ["<f4", "<f4", "<f4", "<u4"],
                      "offsets": [0, 4, 8, 16], "itemsize": 32})
    points = np.zeros(3, dtype)
    points["x"], points["y"], points["z"] = [1, 2, np.nan], [3, 4, 5], [6, 7, 8]
    points["rgb"] = [0x010203, 0x0A0B0C, 0]
    msg = PointCloud2(height=1, width=3, point_step=32, row_step=96, is_dense=False, data=points.tobytes(),
                      fields=[PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
                              PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
                              PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
                              PointField(name="rgb", offset=16, datatype=PointField.UINT32, count=1)])
    xyz, rgb = cloud_to_numpy(msg)
    np.testing.assert_array_equal(xyz, [[1, 3, 6], [2, 4, 7]])
    np.testing.assert_array_equal(rgb, [[1, 2, 3], [10, 11, 12]])
    assert len(cloud_to_numpy(msg, skip_nans=False)[0]) == 3
    with pytest.raises(MalformedMessageError, match="needs fields x, y, z"):
        cloud_to_numpy(PointCloud2(fields=msg.fields[:2]))
