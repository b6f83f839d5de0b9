"""Data engine: grasp adaptation, MuJoCo validation, RGB-D renders, Ray translation (tiny sizes)."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from grasp_data.adaptation import TERMS, AdaptationConfig, AdaptationResult, adapt_grasps
from grasp_data.demonstrations import load_demonstration
from grasp_data.engine import GenerateSettings, _hand_model, import_ray, ray_results
from grasp_data.objects import generate
from grasp_data.renders import RenderConfig, render_views
from grasp_data.transfer import transfer_contacts
from grasp_data.validation import FloatingHandScene, GraspValidator
from sim_bridge.mesh_objects import mesh_object

#: A hammer and an OYMotion grasp on its handle that holds (found by the engine, frozen here).
HAMMER_SEED = 82776951
GOOD_ROOT_POSE = np.array([[0.91628, -0.22809, 0.32924, -0.12318],
                           [0.32109, -0.07308, -0.94422, 0.12751],
                           [0.23943, 0.97089, 0.00628, 0.05657],
                           [0.0, 0.0, 0.0, 1.0]])
GOOD_Q = np.array([0.43695, 0.48065, 0.56988, 0.62687, 0.55, 0.60501, 0.53099, 0.58409, 0.77017,
                   0.24841, 0.24841])


def _grasps(hand, poses, qs) -> AdaptationResult:
    n = len(qs)
    return AdaptationResult(hand.hand.name, tuple(hand.hand.joint_names), np.asarray(poses), np.asarray(qs),
                            np.zeros(n), np.zeros(n), np.zeros((n, 6)), np.zeros((n, 6)), np.zeros(n))


@pytest.fixture(scope="module")
def hammer_validator():
    hand = _hand_model("oymotion")
    hammer = generate("hammer", HAMMER_SEED)
    spec = mesh_object(hammer.mesh, name=f"test_hammer_{HAMMER_SEED}_hull", collision="hull")
    scene = FloatingHandScene(hand, hammer, spec)
    return hand, GraspValidator(scene, load_demonstration("hammer"))


def test_validator_keeps_good_grasp_rejects_open_and_penetrating(hammer_validator):
    hand, validator = hammer_validator
    open_q = validator.q_open
    palm_in = GOOD_ROOT_POSE.copy()
    # push the whole hand 3 cm along its palm normal, into the handle
    palm = hand.kin.link_poses(torch.as_tensor(GOOD_Q[None]))[0, hand.kin.link_names.index(hand.hand.palm_body)]
    palm_normal = GOOD_ROOT_POSE[:3, :3] @ palm[:3, :3].numpy() @ np.array(hand.hand.palm_normal)
    palm_in[:3, 3] += 0.03 * palm_normal
    grasps = _grasps(hand, [GOOD_ROOT_POSE, GOOD_ROOT_POSE, palm_in], [GOOD_Q, open_q, GOOD_Q])
    good, opened, pen = validator.validate(grasps)
    assert good.kept and good.reason == "ok" and good.max_displacement_m <= 0.02
    assert len(good.displacement_m) == 6 and good.hand_contacts > 0
    assert not opened.kept and opened.reason.split(":")[0] in ("no_contact", "displaced")
    if opened.hand_contacts:
        assert opened.max_displacement_m > 0.1                       # the object drifts off freely
    else:                                                            # no trials: nothing touches it
        assert opened.reason == "no_contact" and np.isnan(opened.max_displacement_m)
    assert not pen.kept and pen.reason == "initial_penetration" and not pen.simulated
    # the naive one-trial-at-a-time loop steps the same physics: same outcomes
    naive = validator.validate_naive(grasps)
    assert [o.reason for o in naive] == [good.reason, opened.reason, pen.reason]
    assert naive[0].max_displacement_m == pytest.approx(good.max_displacement_m, abs=1e-9)


def test_adaptation_lowers_energy_and_penetration():
    hand = _hand_model("oymotion")
    hammer = generate("hammer", 5)
    transfer = transfer_contacts(load_demonstration("hammer"), hammer, seed=5)
    result = adapt_grasps(hand, hammer, transfer, AdaptationConfig(batch_size=4, iterations=15, object_points=512,
                                                                     learning_rate=8e-3))
    assert result.q.shape == (4, len(hand.hand.joint_names)) and result.root_pose.shape == (4, 4, 4)
    assert np.allclose(result.root_pose[:, :3, :3] @ result.root_pose[:, :3, :3].transpose(0, 2, 1), np.eye(3), atol=1e-9)
    assert result.energy.mean() < 0.6 * result.energy_initial.mean()
    pen = TERMS.index("penetration")
    assert result.terms[:, pen].mean() < result.terms_initial[:, pen].mean()
    lim = np.asarray(hand.hand.joint_limits)
    assert np.all(result.q >= lim[:, 0] - 1e-9) and np.all(result.q <= lim[:, 1] + 1e-9)


def test_adaptation_needs_two_fingers():
    from grasp_data.transfer import TransferResult

    hand = _hand_model("oymotion")
    transfer = transfer_contacts(load_demonstration("hammer"), generate("hammer", 5), seed=5)
    one = TransferResult({"index": transfer.candidates["index"]})
    with pytest.raises(ValueError, match="at least two"):
        adapt_grasps(hand, generate("hammer", 5), one, AdaptationConfig(batch_size=2, iterations=1))


def test_renders_mask_and_depth_agree_with_the_mesh():
    drill = generate("drill", 1)
    views = render_views(drill, 2, seed=3, config=RenderConfig(width=96, height=72))
    again = render_views(drill, 2, seed=3, config=RenderConfig(width=96, height=72))
    tree = cKDTree(drill.sample_surface(60000, 0)[0])
    for v, w in zip(views, again):
        assert v.rgb.shape == (72, 96, 3) and v.depth.shape == (72, 96) and v.mask.sum() > 20
        assert np.array_equal(v.mask, w.mask)                           # deterministic for a seed
        assert np.all(np.isfinite(v.depth[v.mask]))
        rows, cols = np.nonzero(v.mask)
        z = v.depth[v.mask]
        K = v.K
        cam = np.stack([(cols - K[0, 2]) * z / K[0, 0], (rows - K[1, 2]) * z / K[1, 1], z], axis=1)
        world = cam @ v.T_world_camera[:3, :3].T + v.T_world_camera[:3, 3]
        obj = (world - v.T_world_object[:3, 3]) @ v.T_world_object[:3, :3]
        assert np.percentile(tree.query(obj)[0], 95) < 0.003           # masked depth lies on the object
        background = ~v.mask & np.isfinite(v.depth)
        if background.any():                                          # nothing in front of the object
            assert np.median(v.depth[background]) > np.median(z)


def test_ray_translation_with_a_fake_ray(monkeypatch):
    calls = {"init": None, "remote": [], "cancelled": 0}

    class Ref:
        def __init__(self, value):
            self.value = value

    class Task:
        def __init__(self, fn):
            self.fn = fn

        def remote(self, job):
            calls["remote"].append(job)
            return Ref(("name", job))

    fake = types.SimpleNamespace(
        init=lambda address, ignore_reinit_error: calls.__setitem__("init", address),
        remote=lambda num_cpus: (lambda fn: Task(fn)),
        wait=lambda refs, num_returns: (refs[:num_returns], refs[num_returns:]),
        get=lambda ref: ref.value,
        cancel=lambda ref: calls.__setitem__("cancelled", calls["cancelled"] + 1))
    monkeypatch.setitem(sys.modules, "ray", fake)
    settings = GenerateSettings(hand="oymotion")
    jobs = [(settings, "drill", 0, 1), (settings, "drill", 1, 1)]
    assert [r[1] for r in ray_results(jobs, "ray://head:10001")] == jobs
    assert calls["init"] == "ray://head:10001" and calls["remote"] == jobs and calls["cancelled"] == 0


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install ray==\d"):
        import_ray()
