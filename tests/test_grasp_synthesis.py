"""Object proxy completion and optimisation-based grasp synthesis on synthetic partial clouds."""
from __future__ import annotations

import numpy as np
import pytest

from grasp_planner.grasp_synthesis import GraspSynthesizer, SynthesisConfig
from grasp_planner.hands import load_hand
from grasp_planner.object_model import ObjectModelError, build_object_proxy

CAMERA_XYZ = np.array([0.5, -0.6, 0.5])
CENTER_XY = np.array([0.5, 0.0])


def visible_cylinder(radius=0.04, height=0.10, n=3000, seed=0):
    """Points on the camera-facing half of an upright cylinder standing on z = 0 (+ its top)."""
    rng = np.random.default_rng(seed)
    ang = rng.uniform(np.pi, 2 * np.pi, n)               # the half facing -y (the camera)
    side = np.column_stack([CENTER_XY[0] + radius * np.cos(ang), CENTER_XY[1] + radius * np.sin(ang),
                            rng.uniform(0, height, n)])
    r = radius * np.sqrt(rng.uniform(0, 1, n // 3))
    a = rng.uniform(0, 2 * np.pi, n // 3)
    top = np.column_stack([CENTER_XY[0] + r * np.cos(a), CENTER_XY[1] + r * np.sin(a), np.full(n // 3, height)])
    return np.concatenate([side, top])


@pytest.fixture(scope="module")
def synthesizer():
    return GraspSynthesizer(load_hand("shadow"))


def test_proxy_completes_the_hidden_back_of_a_cylinder():
    half = visible_cylinder()[:3000]                    # side only: front half
    proxy = build_object_proxy(half, 0.0, CAMERA_XYZ)
    np.testing.assert_allclose(proxy.center[:2], CENTER_XY, atol=0.012)
    back = np.array([[CENTER_XY[0], CENTER_XY[1] + 0.03, 0.05]])     # inside the unseen half
    assert proxy.signed_distance(back)[0] < 0
    assert proxy.signed_distance(np.array([[0.5, 0.0, 0.2]]))[0] > 0.09   # above the top
    assert proxy.signed_distance(np.array([[0.5, 0.0, 0.05]]))[0] < -0.03  # deep inside


def test_proxy_refuses_too_few_points():
    with pytest.raises(ObjectModelError, match="need at least"):
        build_object_proxy(np.zeros((5, 3)), 0.0)
    with pytest.raises(ObjectModelError, match="finite points"):
        build_object_proxy(np.full((100, 3), np.nan), 0.0)


def test_grasps_on_a_cylinder_touch_it_without_penetration_or_table_contact(synthesizer):
    proxy = build_object_proxy(visible_cylinder(), 0.0, CAMERA_XYZ)
    grasps = synthesizer.synthesize(proxy, max_results=4)
    assert grasps, "no grasp found for a 8 cm cylinder"
    kin = synthesizer.kin
    for g in grasps:
        assert g.contacts["thumb"] is not None
        assert g.info["fingers_in_contact"] >= synthesizer.config.min_contacts
        pts = kin.forward(g.q_grasp).points @ g.T_base_root[:3, :3].T + g.T_base_root[:3, 3]
        assert proxy.signed_distance(pts).min() > -0.003        # at most grazing the surface
        assert pts[:, 2].min() > 0.0                              # above the table
        for finger, c in g.contacts.items():
            if c is not None:                                     # contacts lie on the surface
                assert abs(proxy.signed_distance(c[None])[0]) < 0.01, finger
    scores = [g.score for g in grasps]
    assert scores == sorted(scores, reverse=True)


def test_squeeze_target_closes_beyond_contact(synthesizer):
    proxy = build_object_proxy(visible_cylinder(), 0.0, CAMERA_XYZ)
    g = synthesizer.synthesize(proxy, max_results=1)[0]
    hand = synthesizer.hand
    closing = [n for n in hand.closed_pose if abs(hand.closed_pose[n] - g.q_open.get(n, 0.0)) > 0.1]
    moved = [abs(g.q_squeeze[n] - g.q_open[n]) >= abs(g.q_grasp[n] - g.q_open[n]) for n in closing]
    assert all(moved) and any(abs(g.q_squeeze[n] - g.q_grasp[n]) > 0.05 for n in closing)


def test_object_too_large_for_the_hand_gives_no_grasp(synthesizer):
    rng = np.random.default_rng(1)
    box = rng.uniform([0.2, -0.4, 0.0], [0.8, 0.4, 0.5], (2000, 3))   # 60 × 80 × 50 cm block
    proxy = build_object_proxy(box, 0.0, None)
    assert synthesizer.synthesize(proxy) == []


def test_config_validation():
    with pytest.raises(ValueError, match="squeeze"):
        SynthesisConfig(squeeze=0.0)
    with pytest.raises(ValueError, match="min_contacts"):
        SynthesisConfig(min_contacts=1)
