"""Tabletop segmentation on analytically rendered RGB-D frames with known objects."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from grasp_perception.camera import backproject, transform_points
from grasp_perception.errors import (InvalidDepthError, NoObjectError, NoPlaneError, SegmenterUnavailableError,
                                     SizeMismatchError)
from grasp_perception.segmentation import (SegmentationConfig, Segmenter, make_segmenter, register_segmenter,
                                           segmenter_names)
from grasp_perception.synthetic import Box, Scene, demo_camera, demo_scene, render
from grasp_perception.tabletop import TabletopSegmenter

INTR, T_BASE_CAMERA = demo_camera(320, 240)
SCENE = demo_scene()


@pytest.fixture(scope="module")
def frame():
    """The demo scene seen by the default camera, with 1 mm depth noise."""
    return render(SCENE, INTR, T_BASE_CAMERA, noise_std_m=0.001, seed=3)


def segment(frame, depth=None, **overrides):
    seg = TabletopSegmenter(SegmentationConfig(**overrides))
    return seg.segment(frame.rgb, frame.depth_m if depth is None else depth, INTR, T_BASE_CAMERA)


def visible_points(frame, index):
    """Noise-free base-frame points of object ``index`` as the camera sees it (ground truth)."""
    clean = render(SCENE, INTR, T_BASE_CAMERA)
    depth = np.where(clean.labels == index, clean.depth_m, np.nan)
    return transform_points(T_BASE_CAMERA, backproject(depth, INTR)[0])


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("index", [0, 1, 2])
def test_index_selection_follows_distance_from_base_and_finds_each_object(frame, index):
    result = segment(frame, target="index", target_index=index)
    assert len(result.clusters) == 3
    distances = [np.hypot(*c.centroid_m[:2]) for c in result.clusters]
    assert distances == sorted(distances)
    truth = visible_points(frame, index)
    np.testing.assert_allclose(result.points.mean(axis=0), truth.mean(axis=0), atol=0.01)
    np.testing.assert_allclose(result.clusters[result.chosen].centroid_m, truth.mean(axis=0), atol=0.01)
    lo, hi = SCENE.objects[index].bounds_m()
    assert np.all(result.points >= lo - 0.01) and np.all(result.points <= hi + 0.01)
    assert iou(result.mask, frame.labels == index) > 0.8
    assert result.points.dtype == np.float32 and result.points.shape == (result.mask.sum(), 3)
    np.testing.assert_array_equal(result.colors, frame.rgb[result.pixels[:, 0], result.pixels[:, 1]])
    np.testing.assert_array_equal(np.unique(result.colors, axis=0), [SCENE.objects[index].color])


def test_largest_picks_the_cylinder_and_recovers_the_table(frame):
    result = segment(frame, target="largest")
    assert result.chosen == 1
    assert result.clusters[1].n_voxels == max(c.n_voxels for c in result.clusters)
    np.testing.assert_allclose(result.plane, [0, 0, 1, 0], atol=0.005)
    assert iou(result.mask, frame.labels == 1) > 0.8
    cyl = SCENE.objects[1]
    radial = np.hypot(result.points[:, 0] - cyl.center_xy_m[0], result.points[:, 1] - cyl.center_xy_m[1])
    assert np.all(radial <= cyl.radius_m + 0.01)


@pytest.mark.parametrize("point, expected", [((0.66, 0.0, 0.0), 2), ((0.45, 0.2, 0.1), 0), ((0.5, -0.2, 0.0), 1)])
def test_nearest_picks_the_object_closest_to_the_point(frame, point, expected):
    result = segment(frame, target="nearest", target_point_m=point)
    assert iou(result.mask, frame.labels == expected) > 0.8


def test_index_beyond_the_clusters_is_no_object(frame):
    with pytest.raises(NoObjectError, match="target_index 3 but only 3"):
        segment(frame, target="index", target_index=3)


def test_nan_holes_in_depth_are_skipped(frame):
    depth = frame.depth_m.copy()
    holes = np.random.default_rng(0).random(depth.shape) < 0.3
    depth[holes] = np.nan
    result = segment(frame, depth=depth, target="index", target_index=0)
    assert not np.any(result.mask & holes)
    assert iou(result.mask, (frame.labels == 0) & ~holes) > 0.8
    np.testing.assert_allclose(result.points.mean(axis=0), visible_points(frame, 0).mean(axis=0), atol=0.01)


@pytest.mark.parametrize("fill", [np.nan, 0.0, np.inf])
def test_invalid_depth_image_raises_with_the_fraction(frame, fill):
    with pytest.raises(InvalidDepthError, match="depth image has 100% invalid pixels"):
        segment(frame, depth=np.full_like(frame.depth_m, fill))


def test_empty_table_is_no_object():
    empty = render(Scene(), INTR, T_BASE_CAMERA, noise_std_m=0.001)
    with pytest.raises(NoObjectError, match="no object cluster above the table plane"):
        segment(empty)


def test_scene_without_a_horizontal_plane_is_no_plane():
    wall = Scene(objects=(Box(center_m=(0.3, 0.0, 0.5), size_m=(0.02, 3.0, 2.0)),),
                 table_min_xy_m=(5.0, 5.0), table_max_xy_m=(6.0, 6.0))
    frame = render(wall, INTR, T_BASE_CAMERA)
    with pytest.raises(NoPlaneError, match="no table plane"):
        segment(frame, max_invalid_fraction=1.0)


def test_workspace_without_points_names_the_extrinsics(frame):
    with pytest.raises(NoObjectError, match="camera extrinsics"):
        segment(frame, workspace_min_m=(2.0, 2.0, 2.0), workspace_max_m=(3.0, 3.0, 3.0))


def test_size_mismatches_name_both_sizes(frame):
    with pytest.raises(SizeMismatchError, match="depth image 160×120 does not match CameraInfo 320×240"):
        segment(frame, depth=frame.depth_m[::2, ::2])
    seg = TabletopSegmenter()
    with pytest.raises(SizeMismatchError, match="color image 160×120 does not match depth 320×240"):
        seg.segment(frame.rgb[::2, ::2], frame.depth_m, INTR, T_BASE_CAMERA)


def test_results_are_deterministic_for_a_seed(frame):
    a, b = segment(frame, seed=7), segment(frame, seed=7)
    np.testing.assert_array_equal(a.points, b.points)
    assert a.clusters == b.clusters


@pytest.mark.parametrize("bad, match", [
    (dict(target="biggest"), "target must be one of"),
    (dict(workspace_min_m=(1, 0, 0), workspace_max_m=(0, 1, 1)), "must be below"),
    (dict(voxel_size_m=0.02, cluster_tolerance_m=0.01), "must exceed voxel_size_m"),
    (dict(min_cluster_points=10, max_cluster_points=5), "max_cluster_points"),
    (dict(plane_iterations=0), "plane_iterations"),
])
def test_config_rejects_bad_values_with_the_reason(bad, match):
    with pytest.raises(ValueError, match=match):
        SegmentationConfig(**bad)


def test_registry_builds_tabletop_and_explains_prompt():
    assert isinstance(make_segmenter("tabletop"), TabletopSegmenter)
    with pytest.raises(SegmenterUnavailableError, match="local checkpoint"):
        make_segmenter("prompt")
    assert isinstance(SegmenterUnavailableError("x"), NotImplementedError)
    with pytest.raises(ValueError, match="known: prompt, tabletop"):
        make_segmenter("sam")


def test_registered_segmenter_is_built_with_its_config(monkeypatch):
    class Fixed(Segmenter):
        def __init__(self, config):
            self.config = config

        def segment(self, rgb, depth_m, intrinsics, T_base_camera):  # noqa: N803
            raise NotImplementedError

    monkeypatch.setitem(__import__("grasp_perception.segmentation", fromlist=["_REGISTRY"])._REGISTRY,
                        "fixed", Fixed)
    assert "fixed" in segmenter_names()
    assert make_segmenter("fixed", {"a": 1}).config == {"a": 1}
    with pytest.raises(ValueError):
        register_segmenter("", Fixed)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SegmentationConfig().voxel_size_m = 0.01


def test_segment_points_are_exactly_the_backprojected_pixels(frame):
    result = segment(frame, target="index", target_index=1)
    only = np.full_like(frame.depth_m, np.nan)
    only[result.pixels[:, 0], result.pixels[:, 1]] = frame.depth_m[result.pixels[:, 0], result.pixels[:, 1]]
    cam, pixels = backproject(only, INTR)
    order = np.lexsort((result.pixels[:, 1], result.pixels[:, 0]))
    np.testing.assert_array_equal(pixels, result.pixels[order])
    np.testing.assert_allclose(result.points[order], transform_points(T_BASE_CAMERA, cam), atol=1e-5)
    np.testing.assert_array_equal(np.argwhere(result.mask), pixels)
