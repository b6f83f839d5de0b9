"""Disturbance test (D(R,O) protocol) tells a held object from a loose one, with honest contact physics."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sim_bridge.evaluation import DisturbanceProtocol, run_disturbance_test
from sim_bridge.scene import SceneConfig
from sim_bridge.world import SimWorld

#: Power-grasp closure of the Shadow Hand (radians); J1/J2 go through the coupled tendons.
POWER_GRASP = {**{f"rh_{f}J3": 1.3 for f in ("FF", "MF", "RF", "LF")},
               **{f"rh_{f}J2": 1.0 for f in ("FF", "MF", "RF", "LF")},
               **{f"rh_{f}J1": 0.6 for f in ("FF", "MF", "RF", "LF")},
               "rh_THJ5": 0.3, "rh_THJ4": 1.2, "rh_THJ2": 0.5, "rh_THJ1": 0.6}


@pytest.fixture(scope="module")
def world():
    with SimWorld(SceneConfig(object="cylinder")) as w:   # 5 cm x 10 cm cylinder, ~0.1 kg
        yield w


def _cylinder_across_palm(world: SimWorld) -> np.ndarray:
    """Put the cylinder across the palm of the (open) hand, 4 cm in front of the palm, not touching."""
    palm_pos, palm_q = world.palm_pose()
    r_palm = Rotation.from_quat(palm_q[[1, 2, 3, 0]])
    pos = palm_pos + r_palm.apply([0.0, -0.04, 0.075])   # palm frame: -y is where the fingers close
    x, y, z, w = (r_palm * Rotation.from_euler("y", 90, degrees=True)).as_quat()  # axis along palm x
    world.set_object_pose(pos, [w, x, y, z])
    return pos


def test_object_on_table_without_hand_is_not_held(world):
    world.reset()
    result = run_disturbance_test(world)
    assert not result.held and not result.object_in_contact_with_hand and not result.lifted
    for label in ("+x", "-x", "+y", "-y", "+z", "-z"):      # support off: every direction drifts
        assert result.displacement_m[label] > 0.02, label
    assert result.force_n == pytest.approx(0.5 * world.object_mass_kg)


def test_table_carries_the_object_when_support_stays_on(world):
    world.reset()
    result = run_disturbance_test(world, DisturbanceProtocol(support_off=False))
    assert result.displacement_m["-z"] < 0.005              # the table pushes back
    assert result.displacement_m["+x"] > 0.02
    assert world.model.geom_contype[world.model.geom("table").id] != 0   # contacts restored


def test_power_grasp_holds_and_state_is_restored(world):
    world.reset()
    world.model.opt.gravity[:] = 0.0                        # protocol: close the hand without gravity
    try:
        start = _cylinder_across_palm(world)
        assert world.object_hand_contacts() == 0
        names = list(POWER_GRASP)
        world.execute_trajectory(names, np.array([[POWER_GRASP[n] for n in names]]), np.array([1.0]),
                                 hold_s=0.5)
    finally:
        world.model.opt.gravity[:] = [0.0, 0.0, -9.81]
    assert np.linalg.norm(world.object_pose()[0] - start) < 0.03   # the fingers closed on it
    before_qpos, before_qvel = world.data.qpos.copy(), world.data.qvel.copy()
    before_time = world.sim_time_s

    result = run_disturbance_test(world)

    assert result.object_in_contact_with_hand and result.hand_contacts >= 3
    assert result.held, result.displacement_m
    assert result.max_displacement_m < 0.02 and len(result.displacement_m) == 6
    assert result.lifted                                   # held ~20 cm above the table
    assert result.sim_time_s == pytest.approx(6.1, abs=0.01)
    # The test ran on snapshots: the world continues exactly where it was, gravity back on.
    np.testing.assert_array_equal(world.data.qpos, before_qpos)
    np.testing.assert_array_equal(world.data.qvel, before_qvel)
    assert world.sim_time_s == before_time and world.model.opt.gravity[2] == pytest.approx(-9.81)
    assert np.all(world.data.xfrc_applied == 0.0)
    json.loads(json.dumps(result.to_dict()))               # JSON-serialisable


def test_same_object_in_open_hand_is_not_held(world):
    """Control for the grasp above: identical placement, fingers left open -> not held."""
    world.reset()
    world.model.opt.gravity[:] = 0.0
    try:
        _cylinder_across_palm(world)
        world.step(250)
    finally:
        world.model.opt.gravity[:] = [0.0, 0.0, -9.81]
    result = run_disturbance_test(world)
    assert not result.held and result.max_displacement_m > 0.02


def test_protocol_validation():
    with pytest.raises(ValueError, match="direction"):
        DisturbanceProtocol(directions=("+w",))
    with pytest.raises(ValueError):
        DisturbanceProtocol(threshold_m=0.0)
