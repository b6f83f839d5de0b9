"""SimWorld core (no ROS): scenes, objects at rest, joint targets by name, tendon coupling, RGB-D camera."""
from __future__ import annotations

import numpy as np
import pytest

from grasp_planner.robots.panda import OBSERVE_Q
from sim_bridge.objects import OBJECTS, get_object
from sim_bridge.scene import SceneConfig
from sim_bridge.world import SimWorld


@pytest.fixture(scope="module")
def box_world():
    with SimWorld(SceneConfig(object="box")) as world:
        yield world


@pytest.mark.parametrize("name", ["mug", "drill", "box", "cylinder"])
def test_object_rests_on_table(name):
    world = SimWorld(SceneConfig(object=name, object_xy=(0.55, 0.05), object_yaw=0.7))
    p0, q0 = world.object_pose()
    lo, hi = get_object(name).bounds
    assert 0.05 < world.object_mass_kg < 1.0           # density 500 × collision volume
    assert np.linalg.norm(p0[:2] - [0.55, 0.05]) < np.linalg.norm(hi[:2] - lo[:2])
    world.step(250)                                    # 0.5 s
    p1, q1 = world.object_pose()
    assert abs(p1[2] - p0[2]) < 0.003, f"{name} sank or jumped: {p0[2]:.4f} -> {p1[2]:.4f} m"
    assert np.linalg.norm(p1[:2] - p0[:2]) < 0.003
    assert abs(abs(float(np.dot(q0, q1))) - 1.0) < 1e-3  # did not tip over


def test_unknown_object_lists_catalogue():
    with pytest.raises(ValueError, match="mug.*|.*drill"):
        SceneConfig(object="teapot")
    with pytest.raises(ValueError) as err:
        get_object("teapot")
    assert all(name in str(err.value) for name in OBJECTS)


def test_joint_names_are_ros_names(box_world):
    names = box_world.joint_names
    assert names[:7] == tuple(f"panda_joint{i}" for i in range(1, 8))
    assert len(names) == 7 + 24 and "rh_FFJ1" in names and "rh_THJ5" in names
    q = box_world.joint_positions()
    np.testing.assert_allclose([q[f"panda_joint{i}"] for i in range(1, 8)], OBSERVE_Q, atol=1e-9)


def test_set_targets_moves_arm_by_name(box_world):
    box_world.reset()
    goal = {"panda_joint7": 0.2, "panda_joint1": 0.3, "panda_joint4": -2.0, "panda_joint6": 1.8}
    box_world.set_targets(goal)
    box_world.step(750)  # 1.5 s
    q = box_world.joint_positions()
    for name, target in goal.items():
        assert abs(q[name] - target) < 0.01, f"{name}: {q[name]:.4f} vs target {target}"
    assert abs(q["panda_joint2"] - OBSERVE_Q[1]) < 0.01  # untouched joint holds


def test_set_targets_rejects_unknown_names(box_world):
    box_world.reset()
    before = box_world.joint_targets()
    with pytest.raises(ValueError, match="rh_FFJ9"):
        box_world.set_targets({"panda_joint1": 0.5, "rh_FFJ9": 0.1})
    assert box_world.joint_targets() == before


def test_tendon_coupled_distal_joints(box_world):
    """FFJ1 and FFJ2 share one actuator: the finger settles where q_J1 + q_J2 = target sum."""
    box_world.reset()
    box_world.set_targets({"rh_FFJ1": 0.4, "rh_FFJ2": 0.6})
    act = box_world.model.actuator("rh_A_FFJ0").id
    assert box_world.data.ctrl[act] == pytest.approx(1.0)
    box_world.step(500)
    q = box_world.joint_positions()
    assert q["rh_FFJ1"] + q["rh_FFJ2"] == pytest.approx(1.0, abs=0.05)
    assert q["rh_MFJ1"] + q["rh_MFJ2"] == pytest.approx(0.0, abs=0.02)  # other fingers stay open


def test_trajectory_interpolates_then_holds(box_world):
    box_world.reset()
    start = box_world.joint_targets()["panda_joint1"]
    box_world.execute_trajectory(["panda_joint1"], np.array([[start + 0.4]]), np.array([1.0]), wait=False)
    box_world.step(250)  # halfway
    assert box_world.joint_targets()["panda_joint1"] == pytest.approx(start + 0.2, abs=0.005)
    box_world.step(400)
    assert not box_world.trajectory_active
    assert box_world.joint_positions()["panda_joint1"] == pytest.approx(start + 0.4, abs=0.01)


@pytest.mark.parametrize("names,pos,times,match", [
    (["panda_joint1", "bogus"], [[0.1, 0.1]], [1.0], "bogus"),
    (["panda_joint1"], [[0.1], [0.2]], [1.0, 1.0], "strictly increasing"),
    (["panda_joint1"], [[0.1, 0.2]], [1.0], "shape"),
])
def test_trajectory_rejects_bad_input(box_world, names, pos, times, match):
    box_world.reset()
    with pytest.raises(ValueError, match=match):
        box_world.execute_trajectory(names, np.array(pos), np.array(times))
    assert not box_world.trajectory_active


def _backproject(frame):
    k = frame.intrinsics
    v, u = np.mgrid[0:k.height, 0:k.width]
    z = frame.depth
    pts = np.stack([(u - k.cx) / k.fx * z, (v - k.cy) / k.fy * z, z], axis=-1).reshape(-1, 3)
    pts = pts[np.isfinite(pts[:, 2])]
    T = frame.T_base_camera_optical
    return pts @ T[:3, :3].T + T[:3, 3]


def test_rgbd_geometry_matches_intrinsics_and_extrinsics(box_world):
    box_world.reset()
    frame = box_world.render_rgbd()
    k = frame.intrinsics
    assert frame.rgb.shape == (480, 640, 3) and frame.rgb.dtype == np.uint8
    assert frame.depth.shape == (480, 640) and frame.depth.dtype == np.float32
    assert np.isnan(frame.depth).any()                      # background = no return

    # The box's top-face centre projects where the pinhole model says, at the true depth.
    top = np.array([0.5, 0.0, 0.05])                        # box 5 cm cube at (0.5, 0) on z = 0
    T_cam_base = np.linalg.inv(frame.T_base_camera_optical)
    p = T_cam_base[:3, :3] @ top + T_cam_base[:3, 3]
    u, v = k.fx * p[0] / p[2] + k.cx, k.fy * p[1] / p[2] + k.cy
    assert 0 <= u < k.width and 0 <= v < k.height
    assert frame.depth[int(round(v)), int(round(u))] == pytest.approx(p[2], abs=0.01)

    # Back-projected depth lands on the scene: the table at z = 0 and the box top at z = 5 cm.
    pts = _backproject(frame)
    near_box = np.linalg.norm(pts[:, :2] - [0.5, 0.0], axis=1) < 0.1
    table = pts[near_box & (pts[:, 2] < 0.02)]
    box_top = pts[near_box & (pts[:, 2] > 0.045) & (pts[:, 2] < 0.1)]
    assert abs(np.median(table[:, 2])) < 0.003
    assert len(box_top) > 100 and np.median(box_top[:, 2]) == pytest.approx(0.05, abs=0.003)
    np.testing.assert_allclose(box_top[:, :2].mean(axis=0), [0.5, 0.0], atol=0.005)


def test_render_configuration_leaves_simulation_untouched(box_world):
    box_world.reset()
    qpos = box_world.data.qpos.copy()
    now = box_world.render_overview(320, 240)
    other = box_world.render_configuration({"panda_joint1": 0.8, "rh_FFJ3": 1.4}, 320, 240)
    assert other.shape == (240, 320, 3)
    assert np.abs(other.astype(int) - now.astype(int)).sum(axis=-1).astype(bool).mean() > 0.01
    np.testing.assert_array_equal(box_world.data.qpos, qpos)


# ---------------------------------------------------------------- coupled hands (Inspire, OYMotion)
@pytest.fixture(scope="module", params=["inspire", "oymotion"])
def coupled_world(request):
    with SimWorld(SceneConfig(hand=request.param, object="box", object_xy=(0.7, 0.3))) as world:
        yield world


def test_coupled_hand_scene_reports_every_joint_and_opens_in_reset(coupled_world):
    hand = coupled_world.hand
    assert coupled_world.joint_names == tuple(f"panda_joint{i}" for i in range(1, 8)) + hand.joint_names
    servo_joints = {coupled_world.model.joint(int(j)).name
                    for j in coupled_world.model.actuator_trnid[:, 0]} - set(coupled_world.arm_joint_names)
    assert servo_joints == set(hand.actuated_joints)          # followers have no actuator
    coupled_world.reset()
    q = coupled_world.joint_positions()
    assert q == pytest.approx({**q, **hand.expand({})}, abs=1e-9)   # open: actuated at 0, followers coupled


def test_coupled_hand_closes_on_command_and_couplings_hold(coupled_world):
    hand = coupled_world.hand
    coupled_world.reset()
    coupled_world.set_targets(hand.closed_pose)
    coupled_world.step(750)                                   # 1.5 s
    q = coupled_world.joint_positions()
    outer = [j for j in hand.actuated_joints if any(f in j for f in ("ring", "little", "pinky"))]
    assert len(outer) == 2
    for leader in outer:                                      # outer fingers close freely
        assert q[leader] == pytest.approx(hand.closed_pose[leader], abs=0.05), leader
    for c in hand.couplings:
        assert q[c.follower] == pytest.approx(c.multiplier * q[c.leader] + c.offset, abs=0.01), c.follower
    assert coupled_world.object_pose()[0][2] < 0.2            # the box far away was not disturbed


def test_follower_targets_are_derived_from_their_leader(coupled_world):
    hand = coupled_world.hand
    c = hand.couplings[-1]
    coupled_world.reset()
    before = coupled_world.joint_targets()
    with pytest.raises(ValueError, match=f"follows '{c.leader}'.*command '{c.leader}'"):
        coupled_world.set_targets({c.follower: 0.3})
    assert coupled_world.joint_targets() == before
    coupled_world.set_targets({c.leader: 0.4, c.follower: 99.0})   # leader wins
    assert coupled_world.joint_targets()[c.follower] == pytest.approx(c.multiplier * 0.4 + c.offset)
