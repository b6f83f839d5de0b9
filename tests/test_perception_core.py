"""Pure-core tests of grasp_perception: camera model, cloud operations, stamp sync, configs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from grasp_perception.camera import (CameraIntrinsics, backproject, look_at, pose_matrix, project,
                                     transform_points)
from grasp_perception.cloud_ops import euclidean_clusters, ransac_plane, voxel_downsample
from grasp_perception.config import PerceptionConfig
from grasp_perception.sync import StampSynchronizer

INTR = CameraIntrinsics(width=8, height=6, fx=100.0, fy=120.0, cx=3.5, cy=2.5)


def test_backproject_of_a_known_pixel_is_exact():
    depth = np.full((6, 8), np.nan, np.float32)
    depth[4, 6] = 2.0  # row 4, col 6
    points, pixels = backproject(depth, INTR)
    assert pixels.tolist() == [[4, 6]]
    np.testing.assert_allclose(points[0], [(6 - 3.5) * 2.0 / 100.0, (4 - 2.5) * 2.0 / 120.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(project(points, INTR), [[6.0, 4.0]], atol=1e-5)


def test_backproject_skips_nan_inf_zero_negative_and_far_depth():
    depth = np.ones((6, 8), np.float32)
    depth[0, 0], depth[0, 1], depth[0, 2], depth[0, 3], depth[0, 4] = np.nan, np.inf, 0.0, -1.0, 9.0
    points, pixels = backproject(depth, INTR, max_depth_m=5.0)
    assert len(points) == 6 * 8 - 5
    assert not any(tuple(p) in {(0, 0), (0, 1), (0, 2), (0, 3), (0, 4)} for p in pixels.tolist())
    assert np.all(np.isfinite(points)) and points.dtype == np.float32


def test_backproject_rejects_wrong_size():
    with pytest.raises(ValueError, match="does not match intrinsics 8×6"):
        backproject(np.ones((5, 8), np.float32), INTR)


def test_project_inverts_backproject_over_the_whole_image():
    depth = np.random.default_rng(0).uniform(0.3, 2.0, (6, 8)).astype(np.float32)
    points, pixels = backproject(depth, INTR)
    np.testing.assert_allclose(project(points, INTR), pixels[:, ::-1], atol=1e-4)


def test_intrinsics_validate_and_read_k():
    k = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
    intr = CameraIntrinsics.from_k(k, 640, 480)
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (500.0, 510.0, 320.0, 240.0)
    np.testing.assert_array_equal(intr.k.reshape(-1), k)
    with pytest.raises(ValueError, match="not calibrated"):
        CameraIntrinsics.from_k(np.zeros(9), 640, 480)
    with pytest.raises(ValueError, match="width"):
        CameraIntrinsics(0, 480, 1.0, 1.0, 0.0, 0.0)


def test_pose_matrix_and_transform_points():
    quarter_turn_z = (0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4))
    transform = pose_matrix((1.0, 2.0, 3.0), quarter_turn_z)
    out = transform_points(transform, np.array([[1.0, 0.0, 0.0]], np.float32))
    np.testing.assert_allclose(out, [[1.0, 3.0, 3.0]], atol=1e-6)
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match="all zeros"):
        pose_matrix((0, 0, 0), (0, 0, 0, 0))


def test_look_at_puts_the_target_on_the_optical_axis_with_image_down_being_world_down():
    transform = look_at((1.0, 0.0, 1.0), (0.5, 0.0, 0.0))
    target_cam = transform_points(np.linalg.inv(transform), np.array([[0.5, 0.0, 0.0]]))
    np.testing.assert_allclose(target_cam[0, :2], [0.0, 0.0], atol=1e-9)
    assert target_cam[0, 2] > 0.0
    below = transform_points(np.linalg.inv(transform), np.array([[0.5, 0.0, -0.1]]))
    assert below[0, 1] > 0.0  # lower in the world = further down the image (+y optical)
    np.testing.assert_allclose(np.linalg.det(transform[:3, :3]), 1.0)


def test_voxel_downsample_averages_points_per_voxel():
    pts = np.array([[0.001, 0.001, 0.001], [0.003, 0.003, 0.003], [0.1, 0.1, 0.1]], np.float32)
    centroids, inverse = voxel_downsample(pts, 0.01)
    assert len(centroids) == 2
    assert inverse[0] == inverse[1] != inverse[2]
    np.testing.assert_allclose(centroids[inverse[0]], [0.002] * 3, atol=1e-6)


def _plane_points(normal, n, rng):
    normal = np.asarray(normal, float) / np.linalg.norm(normal)
    basis = np.linalg.svd(normal[None])[2][1:]
    return (rng.uniform(-0.5, 0.5, (n, 2)) @ basis).astype(np.float32)


def test_ransac_finds_a_tilted_table_and_ignores_vertical_walls():
    rng = np.random.default_rng(1)
    table = _plane_points((0.1, 0.0, 1.0), 2000, rng)
    wall = _plane_points((1.0, 0.0, 0.0), 4000, rng) + np.float32([0.6, 0, 0])  # more points than the table
    plane, inliers = ransac_plane(np.vstack((table, wall)), 0.005, 100, max_tilt_deg=20.0, seed=0)
    expected = np.array([0.1, 0.0, 1.0]) / np.linalg.norm([0.1, 0.0, 1.0])
    np.testing.assert_allclose(plane[:3], expected, atol=1e-3)
    assert inliers[:2000].mean() > 0.99 and inliers[2000:].mean() < 0.05
    assert ransac_plane(wall, 0.005, 100, max_tilt_deg=20.0) is None


def test_euclidean_clusters_separate_blobs_and_chain_neighbours():
    line = np.stack((np.arange(10) * 0.01, np.zeros(10), np.zeros(10)), axis=1)  # 1 cm spacing
    far = line + [1.0, 0.0, 0.0]
    labels, count = euclidean_clusters(np.vstack((line, far)).astype(np.float32), 0.015)
    assert count == 2
    assert len(set(labels[:10])) == 1 and len(set(labels[10:])) == 1 and labels[0] != labels[10]
    assert euclidean_clusters(np.vstack((line, far)).astype(np.float32), 0.005)[1] == 20


def test_sync_pairs_exact_stamps_in_either_order_and_bounds_its_caches():
    sync = StampSynchronizer(tolerance_ns=0, cache_size=3)
    assert sync.add("a", 100, "c100") is None
    assert sync.add("b", 100, "d100") == (100, "c100", "d100")
    assert sync.add("b", 200, "d200") is None
    assert sync.add("a", 201, "c201") is None  # 1 ns off: no pair when exact
    assert sync.add("a", 200, "c200") == (200, "c200", "d200")
    for stamp in range(300, 310):
        sync.add("a", stamp, stamp)
    assert len(sync._cache["a"]) == 3
    assert sync.add("b", 300, "late") is None  # evicted long ago


def test_sync_with_tolerance_pairs_the_nearest_stamp():
    sync = StampSynchronizer(tolerance_ns=5)
    sync.add("b", 100, "d100")
    sync.add("b", 108, "d108")
    assert sync.add("a", 106, "c106") == (106, "c106", "d108")
    assert sync.add("a", 130, "c130") is None


def test_perception_config_defaults_and_validation():
    cfg = PerceptionConfig()
    np.testing.assert_allclose(cfg.T_base_camera, look_at((1.1, 0.0, 0.6), (0.5, 0.0, 0.0)), atol=1e-5)
    assert cfg.base_frame == "panda_link0"
    with pytest.raises(ValueError, match="quaternion"):
        PerceptionConfig(camera_quat_xyzw=(0.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="unknown segmenter 'sam'"):
        PerceptionConfig(segmenter="sam")
    with pytest.raises(ValueError, match="max_rate_hz"):
        PerceptionConfig(max_rate_hz=0.0)
