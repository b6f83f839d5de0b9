"""Adaptation quality: the closing phase puts the fingers on the surface, the initial hypotheses
are chosen by energy, the surface distance is right near edges, validation closes toward the
closed pose, and the hand also clears the object where the validator starts closing (small sizes)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from grasp_data.adaptation import AdaptationConfig, ObjectSamples, _Energy, adapt_grasps
from grasp_data.demonstrations import load_demonstration
from grasp_data.engine import _hand_model
from grasp_data.objects import generate
from grasp_data.transfer import transfer_contacts
from grasp_data.validation import FloatingHandScene, GraspValidator, ValidationConfig
from sim_bridge.mesh_objects import mesh_object

#: Small but complete adaptation (main + closing phase) of 4 grasps.
CONFIG = AdaptationConfig(batch_size=4, iterations=80, closing_iterations=40, seed=3)


def _hand_point_distances_m(model, instance, root_pose: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(B, P) signed distance of every hand surface point (root poses (B, 4, 4), joints (B, nq))
    to a dense sampling of the surface (tangent plane of the nearest of 60k samples), metres;
    negative = inside."""
    pts, nrm, _ = instance.sample_surface(60000, seed=11)
    with torch.no_grad():
        P = model.kin.forward(torch.as_tensor(q), torch.as_tensor(root_pose)).points.numpy()
    _, i = cKDTree(pts).query(P.reshape(-1, 3))
    i = i.reshape(P.shape[:2])
    return ((P - pts[i]) * nrm[i]).sum(-1)


def _finger_gaps_m(model, instance, result, fingers) -> np.ndarray:
    """(B, F) signed distance of each finger's closest contact-link point to a dense sampling of
    the surface (tangent plane of the nearest of 60k samples), metres; negative = inside."""
    sd = _hand_point_distances_m(model, instance, result.root_pose, result.q)
    return np.stack([sd[:, model.finger_points[f]].min(axis=1) for f in fingers], axis=1)


@pytest.fixture(scope="module")
def hammer_case():
    model = _hand_model("oymotion")
    hammer = generate("hammer", 5)
    transfer = transfer_contacts(load_demonstration("hammer"), hammer, seed=5)
    return model, hammer, transfer


def test_closing_phase_puts_the_demonstrated_fingers_on_the_surface(hammer_case, one_torch_thread):
    model, hammer, transfer = hammer_case
    fingers = [f for f in model.kin.fingers if f in transfer.candidates]
    closed = adapt_grasps(model, hammer, transfer, CONFIG)
    without = adapt_grasps(model, hammer, transfer, replace(CONFIG, closing_iterations=0))
    gap_closed = _finger_gaps_m(model, hammer, closed, fingers)
    gap_without = _finger_gaps_m(model, hammer, without, fingers)
    # the fingertips end on the surface: a few mm at most, not inside it
    assert np.median(np.abs(gap_closed)) < 0.002, np.round(gap_closed * 1000, 1)
    assert np.percentile(np.abs(gap_closed), 90) < 0.005, np.round(gap_closed * 1000, 1)
    # ... which the main phase alone (2 mm penetration margin, larger steps) does not do
    assert np.median(np.abs(gap_closed)) < 0.7 * np.median(np.abs(gap_without))
    # and the hand does not go into the object to get there: summed sphere depth per grasp
    assert np.median(closed.penetration_m) < 0.005 and closed.penetration_m.max() < 0.02


def test_initial_hypotheses_are_chosen_by_energy(hammer_case, one_torch_thread):
    model, hammer, transfer = hammer_case
    start = replace(CONFIG, iterations=0, closing_iterations=0)
    one = adapt_grasps(model, hammer, transfer, replace(start, init_hypotheses=1))
    best = adapt_grasps(model, hammer, transfer, replace(start, init_hypotheses=8))
    assert best.energy_initial.mean() < 0.8 * one.energy_initial.mean()
    with pytest.raises(ValueError, match="init_hypotheses"):
        AdaptationConfig(init_hypotheses=0)


def test_surface_distance_is_exact_near_faces_and_right_beside_edges():
    box = trimesh.creation.box(extents=(0.1, 0.06, 0.04))
    pts, face = trimesh.sample.sample_surface(box, 2048, seed=np.random.default_rng(0))
    energy = _Energy(_hand_model("oymotion"), ObjectSamples(np.asarray(pts), box.face_normals[face]), {},
                     AdaptationConfig())
    rng = np.random.default_rng(1)
    # 1 mm above the +z face: the tangent plane gives 1 mm where the point lies above a sample
    # (most points); elsewhere the distance to the sample, never less; the sample alone is farther
    above = np.column_stack([rng.uniform(-0.04, 0.04, 200), rng.uniform(-0.02, 0.02, 200), np.full(200, 0.021)])
    d = energy.plane_distance(torch.as_tensor(above)).numpy()
    sample = energy.signed_distance(torch.as_tensor(above)).numpy()
    assert np.mean(np.abs(d - 0.001) < 1e-6) > 0.5 and np.all(d >= 0.001 - 1e-9) and np.all(d <= sample + 1e-12)
    assert np.median(sample) > 0.0015
    # 1 cm beside the +x edge, level with the top face: outside, about 1 cm away (a tangent plane
    # of a top-face sample would say 0, or negative)
    beside = np.column_stack([np.full(50, 0.06), rng.uniform(-0.02, 0.02, 50), np.full(50, 0.0199)])
    d = energy.plane_distance(torch.as_tensor(beside)).numpy()
    assert np.all(d > 0.008) and np.all(d < 0.013), np.sort(d)[:5]
    # inside, 5 mm under the top face
    under = above - np.array([0.0, 0.0, 0.006])
    d = energy.plane_distance(torch.as_tensor(under)).numpy()
    assert np.all(d <= -0.005 + 1e-9) and np.mean(np.abs(d + 0.005) < 1e-6) > 0.5


def test_validation_closes_toward_the_closed_pose():
    model = _hand_model("oymotion")
    hammer = generate("hammer", 5)
    validator = GraspValidator(FloatingHandScene(
        model, hammer, mesh_object(hammer.mesh, name="test_hammer_5_hull", collision="hull")), None)
    q = validator.q_open.copy()              # a grasp whose fingers touch while nearly open
    from grasp_data.adaptation import AdaptationResult

    grasps = AdaptationResult("oymotion", tuple(model.hand.joint_names), np.eye(4)[None] + np.array(
        [[0, 0, 0, 0.3], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])[None], q[None], np.zeros(1), np.zeros(1),
        np.zeros((1, 6)), np.zeros((1, 6)), np.zeros(1))
    _, ramps, _, _ = validator._prepare(grasps)
    target = q + 0.15 * (validator.q_closed - q)
    assert np.allclose(ramps[0, -1], validator.scene.actuator_targets(target))
    closing = validator.q_closed - validator.q_open > 0.5      # the fingers' flexion, the thumb's rotation
    assert closing.sum() >= 5
    assert np.all(target[closing] > q[closing] + 0.15)     # every finger is commanded to press


def _start_depth_m(model, instance, result, open_fraction: float) -> np.ndarray:
    """(B,) deepest hand surface point inside ``instance`` with the fingers ``open_fraction`` of
    the way toward the open pose (where the validator starts closing), metres; ≤ 0 = clear."""
    q_open = model.full(torch.as_tensor(model.q_open[None])).numpy()[0]      # every joint, as result.q
    q = result.q + open_fraction * (q_open - result.q)
    return -_hand_point_distances_m(model, instance, result.root_pose, q).min(axis=1)


def test_the_hand_also_clears_the_object_where_the_validator_starts_closing(one_torch_thread):
    # OYMotion drill: opening the fingers from the grasp swings them into the housing unless the
    # penetration term also holds at the opened start (engine settings, 6 drills: grasps rejected
    # as initial_penetration 71 → 19 of 192, kept 72 → 100)
    model = _hand_model("oymotion")
    drill = generate("drill", 7)
    transfer = transfer_contacts(load_demonstration("drill"), drill, seed=7)
    config = replace(CONFIG, batch_size=12)
    opened = ValidationConfig().open_fraction
    assert config.start_open_fraction == opened
    clear = _start_depth_m(model, drill, adapt_grasps(model, drill, transfer, config), opened)
    blind = _start_depth_m(model, drill, adapt_grasps(model, drill, transfer, replace(config, start_open_fraction=0.0)),
                           opened)
    shown = (np.round(clear * 1000, 1), np.round(blind * 1000, 1))
    # 1 vs 8 of 12 grasps deeper than 3 mm; mean depth 1.0 vs 4.8 mm (a hand point, not a sphere)
    assert 3 * (clear > 0.003).sum() <= (blind > 0.003).sum(), shown
    assert np.clip(clear, 0, None).mean() < 0.5 * np.clip(blind, 0, None).mean(), shown
    with pytest.raises(ValueError, match="start_open_fraction"):
        AdaptationConfig(start_open_fraction=1.5)
