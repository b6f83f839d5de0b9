"""Grasp predictor backends: recovery on the real hand FK, the network predictor's ranking, fallbacks."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from grasp_planner.grasp_predictor import NetworkPredictor, NetworkPredictorConfig, make_grasp_predictor
from grasp_planner.grasp_synthesis import GraspSynthesizer
from grasp_planner.hands import load_hand
from grasp_planner.network.checkpoint import save_checkpoint
from grasp_planner.network.config import NetworkConfig
from grasp_planner.network.hand_chain import cached_hand_chain, full_vector
from grasp_planner.network.model import DRONetwork, DROOutput
from grasp_planner.network.recovery import axis_angle_to_matrix, recover_grasps
from grasp_planner.network.visibility import VisibleSurface
from grasp_planner.object_model import build_object_proxy
from grasp_planner.pipeline import GraspPlanner, PlannerConfig, builtin_backend
from grasp_planner.robots import panda
from test_grasp_synthesis import CAMERA_XYZ, visible_cylinder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


HAND = "inspire"
TINY = NetworkConfig(hand=HAND, hand_points=128, object_points=256, sampled_object_points=96, knn_k=8,
                     edge_channels=(16,), feature_dim=32, latent_dim=8, decoder_widths=(8, 1), local_k=8,
                     density_k=4, use_image=False)


@pytest.mark.parametrize("hand_name", ["shadow", "inspire", "oymotion"])
def test_recovery_reproduces_a_grasp_from_its_true_distance_matrix(hand_name):
    hand, kin, chain = cached_hand_chain(hand_name, 512)
    gen = torch.Generator().manual_seed(3)
    q = chain.lower + torch.rand(2, len(chain.joint_names), generator=gen, dtype=torch.float64) * (chain.upper - chain.lower)
    rot = axis_angle_to_matrix(torch.randn(2, 3, generator=gen, dtype=torch.float64))
    wrist = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    wrist[:, :3, :3], wrist[:, :3, 3] = rot, torch.tensor([0.5, 0.0, 0.12], dtype=torch.float64)
    truth = kin.forward(chain.full_q(q), root_pose=wrist).points                  # the same rows as the chain
    d = torch.randn(200, 3, generator=gen, dtype=torch.float64)
    obj = d / d.norm(dim=-1, keepdim=True) * torch.tensor([0.04, 0.03, 0.07], dtype=torch.float64)
    obj = obj + torch.tensor([0.5, 0.0, 0.2], dtype=torch.float64)
    rec = recover_grasps(torch.cdist(truth, obj.expand(2, -1, -1)), obj, chain)
    sol = rec.solution
    assert (sol.points - truth).norm(dim=-1).amax() < 2e-3
    assert (sol.wrist_pose[:, :3, 3] - wrist[:, :3, 3]).norm(dim=-1).amax() < 2e-3
    assert (sol.q_full - chain.full_q(q)).abs().amax() < 0.02
    assert bool(((sol.q >= chain.lower - 1e-9) & (sol.q <= chain.upper + 1e-9)).all())


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / f"{HAND}.safetensors", DRONetwork(TINY))


@pytest.fixture(scope="module")
def hand():
    return load_hand(HAND)


@pytest.fixture(scope="module")
def synthesizer(hand):
    return GraspSynthesizer(hand)


def test_missing_checkpoint_warns_and_falls_back_to_the_optimiser(hand, synthesizer, tmp_path):
    warnings: list[str] = []
    missing = tmp_path / "nothing_here.safetensors"
    predictor = make_grasp_predictor("network", hand, synthesizer, checkpoint=missing, warn=warnings.append)
    assert predictor.name == "optimiser" and len(warnings) == 1
    assert str(missing) in warnings[0] and "optimiser" in warnings[0] and "fgrasp train" in warnings[0]
    with pytest.raises(ValueError, match="unknown grasp_backend 'magic'.*optimiser, network"):
        make_grasp_predictor("magic", hand, synthesizer)


def test_planner_refuses_a_checkpoint_of_another_hand_and_plans_with_the_optimiser(tiny_checkpoint):
    other = load_hand("oymotion")
    warnings: list[str] = []
    config = PlannerConfig(grasp_backend="network", grasp_checkpoint=str(tiny_checkpoint), num_candidates=2,
                           camera_xyz=tuple(CAMERA_XYZ))
    planner = GraspPlanner(other, builtin_backend(other, config), config, warn=warnings.append)
    assert planner.predictor.name == "optimiser"
    assert len(warnings) == 1 and "trained for hand 'inspire', not 'oymotion'" in warnings[0]
    assert "refused" in warnings[0] and "optimiser" in warnings[0]


class _Teacher(nn.Module):
    """Stands in for a trained network: returns the true distance matrices of given hand point sets."""

    def __init__(self, samples: torch.Tensor, config: NetworkConfig):
        super().__init__()
        self.samples, self.config = samples, config

    def forward(self, batch, num_samples: int = 1, use_posterior=None) -> DROOutput:
        obj = batch.object_points[:, :self.config.sampled_object_points]
        dist = torch.cdist(self.samples.float(), obj[0].expand(len(self.samples), -1, -1))
        return DROOutput(distances=dist[None], object_indices=torch.arange(obj.shape[1])[None],
                         object_points=obj, importance_logits=None, mu=None, logvar=None)


def test_network_predictor_recovers_ranks_and_feeds_the_same_downstream_planner(hand, synthesizer, tiny_checkpoint):
    cloud = visible_cylinder()
    proxy = build_object_proxy(cloud, 0.0, np.asarray(CAMERA_XYZ))
    good = synthesizer.synthesize(proxy, max_results=1)[0]                         # a known, reachable grasp
    _, kin, chain = cached_hand_chain(HAND, TINY.hand_points)
    q_full = torch.as_tensor(full_vector(hand, good.q_grasp))[None]
    pose = torch.as_tensor(good.T_base_root)[None]
    pushed = pose.clone()
    pushed[:, :3, 3] += torch.as_tensor(good.approach) * 0.04                     # 4 cm into the object
    samples = torch.cat([kin.forward(q_full, root_pose=p).points for p in (pushed, pose)])
    predictor = NetworkPredictor(hand, tiny_checkpoint, NetworkPredictorConfig(num_samples=2, refine_iterations=0,
                                                                               standoff_m=0.0))
    predictor.model = _Teacher(samples, TINY)

    candidates = predictor.predict(cloud, proxy, max_results=2)
    assert candidates and candidates[0].info["sample"] == 1                       # the penetrating one ranks last
    best = candidates[0]
    assert np.linalg.norm(best.T_base_root[:3, 3] - good.T_base_root[:3, 3]) < 3e-3
    assert set(best.q_grasp) == set(hand.joint_names)                             # joints by name
    assert max(abs(best.q_grasp[n] - good.q_grasp[n]) for n in hand.actuated_joints) < 0.05
    closing = {n for n in hand.actuated_joints if hand.closed_pose.get(n, 0) > hand.open_pose.get(n, 0) + 1e-3}
    assert all(best.q_squeeze[n] >= best.q_grasp[n] - 1e-9 for n in closing)
    if len(candidates) > 1:
        assert candidates[1].score < best.score and candidates[1].info["penetration_m"] > best.info["penetration_m"]
    # With the refinement: the optimiser's grasp dips 2.5 mm into the cloud's surface; refined, it
    # does not, and stays within a few mm; the good one still ranks first.
    predictor = NetworkPredictor(hand, tiny_checkpoint, NetworkPredictorConfig(num_samples=2, standoff_m=0.0))
    predictor.model = _Teacher(samples, TINY)
    refined = predictor.predict(cloud, proxy, max_results=2)
    assert refined[0].info["sample"] == 1 and refined[0].info["refine_penetration_before_m"] > 1e-3
    assert refined[0].info["refine_penetration_after_m"] < 5e-4 and refined[0].info["penetration_m"] < 5e-4
    assert np.linalg.norm(refined[0].T_base_root[:3, 3] - good.T_base_root[:3, 3]) < 0.01
    # With collision points (denser hand points in the penetration term) the refinement sees at least
    # as deep a dip, clears it too, and its fingertips stay within a centimetre or so (the hand turns
    # about its contacts, so the wrist moves more than without).
    dense = NetworkPredictor(hand, tiny_checkpoint, NetworkPredictorConfig(num_samples=2, collision_points=1024,
                                                                           standoff_m=0.0))
    dense.model = _Teacher(samples, TINY)
    cleared = dense.predict(cloud, proxy, max_results=2)[0]
    assert cleared.info["sample"] == 1
    assert cleared.info["refine_penetration_before_m"] >= refined[0].info["refine_penetration_before_m"]
    assert cleared.info["refine_penetration_after_m"] < 5e-4
    tips = lambda c: kin.forward(torch.as_tensor(full_vector(hand, c.q_grasp))[None],                  # noqa: E731
                                 root_pose=torch.as_tensor(c.T_base_root)[None]).fingertips[0].numpy()
    moved = np.linalg.norm(tips(cleared) - tips(good), axis=1)
    assert np.median(moved) < 0.01 and moved.max() < 0.02, moved

    config = PlannerConfig(camera_xyz=tuple(CAMERA_XYZ), num_candidates=2)
    planner = GraspPlanner(hand, builtin_backend(hand, config), config, predictor=predictor)
    start = {**dict(zip(panda.ARM_JOINT_NAMES, panda.OBSERVE_Q)), **{n: 0.0 for n in hand.joint_names}}
    result = planner.plan(cloud, start)
    assert result.success, result.reason
    assert result.candidate.info["backend"] == "network" and result.hand_goal == result.candidate.q_squeeze


def test_every_candidate_backs_off_along_its_approach_by_the_standoff(hand, synthesizer, tiny_checkpoint):
    # The wrist backs off along the palm normal after the ranking (the hand's standoff unless the config
    # sets one): same order, same joints and orientation, the contacts moved with the hand; 0 leaves
    # the grasps as recovered.
    cloud = visible_cylinder()
    proxy = build_object_proxy(cloud, 0.0, np.asarray(CAMERA_XYZ))
    good = synthesizer.synthesize(proxy, max_results=1)[0]
    _, kin, _ = cached_hand_chain(HAND, TINY.hand_points)
    q_full = torch.as_tensor(full_vector(hand, good.q_grasp))[None]
    poses = [torch.as_tensor(good.T_base_root)[None].clone() for _ in range(3)]
    for pose, lift in zip(poses, (0.0, 0.01, 0.02)):
        pose[:, 2, 3] += lift
    samples = torch.cat([kin.forward(q_full, root_pose=p).points for p in poses])

    def predict(of_hand=hand, **overrides):
        predictor = NetworkPredictor(of_hand, tiny_checkpoint, NetworkPredictorConfig(num_samples=3, **overrides))
        predictor.model = _Teacher(samples, TINY)
        return predictor.predict(cloud, proxy, max_results=3)

    flush, backed = predict(standoff_m=0.0), predict(dataclasses.replace(hand, network_standoff_m=0.004))
    assert backed[0].info["standoff_m"] == 0.004 and flush[0].info["standoff_m"] == 0.0
    assert len(backed) == len(flush) == 3
    assert [c.info["sample"] for c in backed] == [c.info["sample"] for c in flush]
    for a, b in zip(flush, backed):
        np.testing.assert_allclose(b.T_base_root[:3, 3], a.T_base_root[:3, 3] - 0.004 * a.approach, atol=1e-9)
        np.testing.assert_allclose(b.T_base_root[:3, :3], a.T_base_root[:3, :3], atol=1e-12)
        np.testing.assert_allclose(b.approach, a.approach, atol=1e-12)
        assert b.q_grasp == a.q_grasp and b.q_squeeze == a.q_squeeze
        for finger, tip in a.contacts.items():
            if tip is not None and b.contacts[finger] is not None:
                np.testing.assert_allclose(b.contacts[finger], tip - 0.004 * a.approach, atol=1e-9)
    deeper = predict(dataclasses.replace(hand, network_standoff_m=0.004), standoff_m=0.01)    # the config wins
    assert all(np.isclose(np.linalg.norm(c.T_base_root[:3, 3] - a.T_base_root[:3, 3]), 0.01)
               for c, a in zip(deeper, flush))


def test_network_predictor_keeps_only_grasps_the_arm_can_take(hand, synthesizer, tiny_checkpoint):
    cloud = visible_cylinder()
    proxy = build_object_proxy(cloud, 0.0, np.asarray(CAMERA_XYZ))
    good = synthesizer.synthesize(proxy, max_results=1)[0]                         # the planner takes this one
    predictor = NetworkPredictor(hand, tiny_checkpoint, NetworkPredictorConfig(num_samples=1, refine_iterations=0))
    assert predictor.arm_rejection(good.T_base_root, good.approach, table_z_m=0.0) == ""
    # The motion planner refuses a hand capsule within its radius of the table: so does the predictor.
    flange_z = (good.T_base_root @ np.linalg.inv(hand.mount_transform))[2, 3]
    assert "hand capsule in the table" in predictor.arm_rejection(good.T_base_root, good.approach,
                                                                  table_z_m=flange_z - 0.5 * hand.capsule_radius_m)
    far = good.T_base_root.copy()
    far[0, 3] += 1.5
    assert predictor.arm_rejection(far, good.approach, table_z_m=0.0) == "grasp out of the arm's reach"

    _, kin, _ = cached_hand_chain(HAND, TINY.hand_points)
    q_full = torch.as_tensor(full_vector(hand, good.q_grasp))[None]
    predictor.model = _Teacher(kin.forward(q_full, root_pose=torch.as_tensor(far)[None]).points, TINY)
    assert predictor.predict(cloud, proxy, max_results=1) == []
    assert "grasp out of the arm's reach" in predictor.no_candidate_reason()


def test_planner_hands_the_network_its_motion_backends_table_check(hand, tiny_checkpoint):
    config = PlannerConfig(grasp_backend="network", grasp_checkpoint=str(tiny_checkpoint))
    planner = GraspPlanner(hand, builtin_backend(hand, config), config)
    check = planner.predictor._arm_check
    assert check(panda.READY_Q, None) == ""
    low = planner.kinematics.fk(panda.READY_Q).copy()
    low[2, 3] = 0.05                                                   # flange 5 cm above the table, pointing down
    q_low = planner.kinematics.solve(low, panda.READY_Q).q
    assert "in the table" in check(q_low, None)
    flange = planner.kinematics.fk(panda.READY_Q)[:3, 3]
    assert check(panda.READY_Q, flange[None] + [0.0, 0.0, -0.1]) == "'hand' in the object"   # under the flange
    # The predictor turns it into a rejection of a grasp the IK reaches.
    rejecting = NetworkPredictor(hand, tiny_checkpoint, NetworkPredictorConfig(num_samples=1),
                                 planner.kinematics, arm_check=lambda q, cloud: "'panda_link6' in the table")
    T_root = planner.kinematics.fk(panda.READY_Q) @ hand.mount_transform
    approach = planner.kinematics.fk(panda.READY_Q)[:3, 2]
    assert rejecting.arm_rejection(T_root, approach, table_z_m=0.0) == "'panda_link6' in the table at the grasp"


def test_planner_falls_back_to_the_optimisers_candidates_when_the_networks_cannot_be_executed(
        hand, synthesizer, tiny_checkpoint):
    cloud = visible_cylinder()
    proxy = build_object_proxy(cloud, 0.0, np.asarray(CAMERA_XYZ))
    good = synthesizer.synthesize(proxy, max_results=1)[0]
    far = good.T_base_root.copy()
    far[0, 3] += 1.5                                                               # out of the arm's reach
    _, kin, _ = cached_hand_chain(HAND, TINY.hand_points)
    predictor = NetworkPredictor(hand, tiny_checkpoint, NetworkPredictorConfig(num_samples=1, refine_iterations=0))
    predictor.model = _Teacher(kin.forward(torch.as_tensor(full_vector(hand, good.q_grasp))[None],
                                           root_pose=torch.as_tensor(far)[None]).points, TINY)
    start = {**dict(zip(panda.ARM_JOINT_NAMES, panda.OBSERVE_Q)), **{n: 0.0 for n in hand.joint_names}}
    for fallback in (True, False):
        config = PlannerConfig(camera_xyz=tuple(CAMERA_XYZ), num_candidates=2, network_fallback=fallback)
        result = GraspPlanner(hand, builtin_backend(hand, config), config, predictor=predictor).plan(cloud, start)
        if fallback:
            assert result.success, result.reason
            assert result.candidate.info["backend"] == "optimiser"
            assert result.rejections[0].startswith("network: no candidate")
        else:
            assert not result.success and result.plan is None
            assert result.reason.startswith("no grasp candidate (network)")


def _cylinder_grasp_pushed_in(hand, synthesizer, depth_m: float):
    """The visible cylinder, its proxy, a known grasp of it (the optimiser's), the hand FK, and that grasp's
    joints (1, nq), root pose (1, 4, 4) and the same pose pushed ``depth_m`` along the approach into the object."""
    cloud = visible_cylinder()
    proxy = build_object_proxy(cloud, 0.0, np.asarray(CAMERA_XYZ))
    good = synthesizer.synthesize(proxy, max_results=1)[0]
    _, kin, _ = cached_hand_chain(HAND, TINY.hand_points)
    q_full = torch.as_tensor(full_vector(hand, good.q_grasp))[None]
    pose = torch.as_tensor(good.T_base_root)[None]
    pushed = pose.clone()
    pushed[:, :3, 3] += torch.as_tensor(good.approach) * depth_m
    return cloud, proxy, good, kin, q_full, pose, pushed


def test_ranking_weighs_penetration_where_the_fingers_start_closing(hand, synthesizer, tiny_checkpoint):
    # The D(R,O) validator starts closing from the grasp opened 25 % toward the open pose and refuses
    # > 5 mm of penetration there; the network's ranking measures the hand at that opening too.
    cloud, proxy, _, kin, q_full, _, pushed = _cylinder_grasp_pushed_in(hand, synthesizer, 0.02)
    found = {}
    for fraction in (0.0, 1.0):
        predictor = NetworkPredictor(hand, tiny_checkpoint, NetworkPredictorConfig(
            num_samples=1, refine_iterations=0, close_fingers=False, reachability=False, open_fraction=fraction,
            weight_open_penetration=30.0, standoff_m=0.0))          # the terms are of the grasp before the standoff
        predictor.model = _Teacher(kin.forward(q_full, root_pose=pushed).points, TINY)
        found[fraction] = predictor.predict(cloud, proxy, max_results=1)[0]
    info = found[0.0].info
    assert info["open_penetration_m"] == pytest.approx(info["penetration_m"], abs=1e-9)     # the grasp itself
    best = found[1.0]
    q_open = torch.as_tensor(full_vector(hand, hand.open_pose))[None]
    opened = kin.forward(q_open, root_pose=torch.as_tensor(best.T_base_root)[None]).points[0].double().numpy()
    expected = np.maximum(-proxy.signed_distance(opened), 0.0).sum()
    assert expected > 1e-3                                    # the open hand is in the object here
    assert best.info["open_penetration_m"] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="open_fraction"):
        NetworkPredictorConfig(open_fraction=1.5)


def test_ranking_demotes_hands_that_start_behind_the_visible_side(hand, synthesizer, tiny_checkpoint):
    # One view shows the cylinder's near half; a hand pushed 2 cm into it starts (25 % open) behind the
    # visible surface, where the unseen object may be. With the camera position that costs; without, not.
    cloud, proxy, _, kin, q_full, pose, pushed = _cylinder_grasp_pushed_in(hand, synthesizer, 0.02)
    samples = torch.cat([kin.forward(q_full, root_pose=p).points for p in (pushed, pose)])
    config = NetworkPredictorConfig(num_samples=2, refine_iterations=0, close_fingers=False, reachability=False,
                                    weight_penetration=0.0, weight_contact=0.0, standoff_m=0.0)
    predictor = NetworkPredictor(hand, tiny_checkpoint, config)
    predictor.model = _Teacher(samples, TINY)

    ranked = predictor.predict(cloud, proxy, max_results=2, camera_xyz=CAMERA_XYZ)
    assert [c.info["sample"] for c in ranked] == [1, 0]                          # the pushed hand ranks last
    surface = VisibleSurface(cloud, CAMERA_XYZ)
    q_open = torch.as_tensor(full_vector(hand, hand.open_pose))[None]
    for c in ranked:
        q = torch.as_tensor(full_vector(hand, c.q_grasp))[None]
        root = torch.as_tensor(c.T_base_root)[None]
        start = kin.forward(q + config.open_fraction * (q_open - q), root_pose=root).points[0].double().numpy()
        at_grasp = kin.forward(q, root_pose=root).points[0].double().numpy()
        assert c.info["hidden_points"] == surface.hidden_near(start, config.hidden_near_m).sum()
        assert c.info["near_points"] == (surface.nearest(at_grasp)[0] < config.near_m).sum()
    assert ranked[1].info["hidden_points"] > ranked[0].info["hidden_points"]
    blind = predictor.predict(cloud, proxy, max_results=2)                       # no camera: no such terms
    assert blind and not {"hidden_points", "near_points"} & set(blind[0].info)


def test_network_predictor_config_refuses_bad_refinement_settings():
    with pytest.raises(ValueError, match="collision_points"):
        NetworkPredictorConfig(collision_points=-1)
    with pytest.raises(ValueError, match="refine_iterations"):
        NetworkPredictorConfig(refine_iterations=-1)
    with pytest.raises(ValueError, match="refine_margin_m"):
        NetworkPredictorConfig(refine_margin_m=float("nan"))
    for bad in (-0.001, 0.2, float("nan")):
        with pytest.raises(ValueError, match="standoff_m"):
            NetworkPredictorConfig(standoff_m=bad)
