"""The view's free space: points behind the visible surface (possibly inside the object) vs in front of it."""
from __future__ import annotations

import numpy as np
import pytest

from grasp_planner.network.visibility import VisibleSurface

CAMERA = np.array([0.0, 0.0, 1.0])


def _square(z=0.0, half=0.05, n=60):
    """A flat grid of points at height ``z``, seen from straight above."""
    g = np.linspace(-half, half, n)
    x, y = np.meshgrid(g, g)
    return np.column_stack([x.ravel(), y.ravel(), np.full(x.size, z)])


def test_depth_behind_the_visible_surface_along_the_camera_ray():
    surface = VisibleSurface(_square(), CAMERA)
    points = np.array([[0.0, 0.0, -0.01],      # 1 cm under the seen top: hidden
                       [0.01, 0.0, 0.05],      # 5 cm above it: seen free space
                       [0.3, 0.0, 0.0]])       # beside the object: the ray misses it
    behind, found = surface.depth_behind(points)
    assert found.tolist() == [True, True, False]
    assert behind[0] == pytest.approx(0.01, abs=1e-3) and behind[1] == pytest.approx(-0.05, abs=2e-3)
    assert behind[2] == 0.0
    dist, _ = surface.nearest(points)
    assert dist[0] == pytest.approx(0.01, abs=1e-3) and dist[2] == pytest.approx(0.25, abs=1e-3)


def test_hidden_near_flags_points_just_behind_the_surface_only():
    surface = VisibleSurface(np.vstack([_square(), np.full((3, 3), np.nan)]), CAMERA)   # NaN rows dropped
    points = np.array([[0.0, 0.0, -0.005], [0.0, 0.0, -0.05], [0.0, 0.0, 0.005], [0.2, 0.0, -0.005]])
    # just behind: hidden; 5 cm behind: not near the cloud; in front: seen; off to the side: the ray misses
    assert surface.hidden_near(points, near_m=0.01).tolist() == [True, False, False, False]


@pytest.mark.parametrize("cloud, camera, words", [
    (np.full((4, 3), np.nan), CAMERA, "no finite point"),
    (_square(), [0.0, np.nan, 1.0], "camera_xyz"),
    (_square(), [0.0, 1.0], "camera_xyz"),
])
def test_bad_input_is_refused_with_the_reason(cloud, camera, words):
    with pytest.raises(ValueError, match=words):
        VisibleSurface(cloud, camera)


def test_network_predictor_refuses_a_bad_camera_position_with_the_reason(tmp_path):
    from grasp_planner.grasp_predictor import GraspPredictionError, NetworkPredictor, NetworkPredictorConfig
    from grasp_planner.hands import load_hand
    from grasp_planner.network.checkpoint import save_checkpoint
    from grasp_planner.network.config import NetworkConfig
    from grasp_planner.network.model import DRONetwork
    from grasp_planner.object_model import build_object_proxy

    config = NetworkConfig(hand="inspire", hand_points=64, object_points=128, sampled_object_points=48, knn_k=8,
                           edge_channels=(8,), feature_dim=16, latent_dim=4, decoder_widths=(8, 1), local_k=4,
                           density_k=4, use_image=False)
    path = save_checkpoint(tmp_path / "tiny.safetensors", DRONetwork(config))
    predictor = NetworkPredictor(load_hand("inspire"), path, NetworkPredictorConfig(num_samples=1, reachability=False))
    cloud = _square(z=0.05) + [0.5, 0.0, 0.0]
    proxy = build_object_proxy(np.vstack([cloud, cloud - [0.0, 0.0, 0.05]]), 0.0)
    with pytest.raises(GraspPredictionError, match="camera_xyz"):
        predictor.predict(cloud, proxy, 1, camera_xyz=[0.5, np.nan, 1.0])


def test_a_sparse_cloud_widens_the_ray_test_to_its_point_spacing():
    # Points 2 cm apart seen from 1 m (0.02 rad): a point behind the middle of a cell must still be
    # found behind the surface, not taken for free space.
    sparse = _square(half=0.1, n=11)
    surface = VisibleSurface(sparse, CAMERA)
    assert surface.ray_radius_rad == pytest.approx(1.5 * 0.02, rel=0.05)
    behind, found = surface.depth_behind(np.array([[0.01, 0.01, -0.01]]))
    assert found[0] and behind[0] == pytest.approx(0.01, abs=2e-3)
    assert VisibleSurface(_square(), CAMERA).ray_radius_rad == pytest.approx(0.006)   # dense: the floor
