"""Planner marker descriptions and message conversions, without rclpy.init."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from grasp_planner.markers import (CONTACT_RGBA, MarkerSpec, grasp_markers, pregrasp_root_pose, rank_rgba,
                                   transform_points)
from grasp_planner.motion.base import MotionPlan

HAND_POINTS = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.1], [0.02, 0.0, 0.15]])
PALM = np.array([0.0, 0.0, 0.1])


def fake_surface(q):
    """Root-frame points that move with the single joint 'j' (so open and grasp differ)."""
    return HAND_POINTS + [q.get("j", 0.0), 0.0, 0.0], PALM


@dataclass
class Cand:
    T_base_root: np.ndarray
    approach: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))
    q_open: dict = field(default_factory=lambda: {"j": 0.0})
    q_grasp: dict = field(default_factory=lambda: {"j": 0.01})
    contacts: dict = field(default_factory=dict)


def translation(x, y, z):
    T = np.eye(4)
    T[:3, 3] = (x, y, z)
    return T


def candidates(n):
    return [Cand(T_base_root=translation(0.4 + 0.01 * i, 0.0, 0.1),
                 contacts={"thumb": np.array([0.5, -0.04, 0.05]), "ff": np.array([0.5, 0.04, 0.05]), "lf": None})
            for i in range(n)]


def test_delete_all_first_then_stable_namespaces_and_ids():
    cands = candidates(7)
    specs = grasp_markers(cands, fake_surface, chosen=cands[2], approach_offset_m=0.1, top_k=5)
    assert specs[0].kind == "delete_all"
    assert [(s.ns, s.id) for s in specs[1:]] == [(f"grasp_{k}", 0) for k in range(5)] + [
        ("pregrasp", 0), ("contacts", 0), ("approach", 0)]
    again = grasp_markers(cands[:3], fake_surface, chosen=cands[0], approach_offset_m=0.1, top_k=5)
    assert [(s.ns, s.id) for s in again[1:4]] == [("grasp_0", 0), ("grasp_1", 0), ("grasp_2", 0)]


def test_without_a_chosen_grasp_only_candidates_are_drawn():
    specs = grasp_markers(candidates(2), fake_surface, chosen=None)
    assert [s.ns for s in specs] == ["", "grasp_0", "grasp_1"]
    assert [s.kind for s in grasp_markers([], fake_surface)] == ["delete_all"]


def test_colours_go_from_green_best_to_red_worst_with_fading_alpha():
    specs = grasp_markers(candidates(4), fake_surface, top_k=4)[1:]
    r, g, b, a = np.array([s.rgba for s in specs]).T
    assert (r[0], g[0]) == (0.0, 1.0) and (r[-1], g[-1]) == (1.0, 0.0)
    assert np.all(np.diff(r) > 0) and np.all(np.diff(g) < 0) and np.all(np.diff(a) < 0)
    assert np.all(b == 0) and np.all((a > 0) & (a <= 1))
    assert rank_rgba(0, 1)[:3] == (0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="outside"):
        rank_rgba(3, 3)


def test_hand_points_are_moved_into_the_base_frame_at_the_grasp_and_pregrasp_poses():
    cand = candidates(1)[0]
    specs = {s.ns: s for s in grasp_markers([cand], fake_surface, chosen=cand, approach_offset_m=0.1)}
    grasp_root = HAND_POINTS + [0.01, 0.0, 0.0]                    # q_grasp
    np.testing.assert_allclose(specs["grasp_0"].points, grasp_root + [0.4, 0.0, 0.1])
    np.testing.assert_allclose(specs["pregrasp"].points, HAND_POINTS + [0.4 - 0.1, 0.0, 0.1])  # open, backed off
    assert specs["pregrasp"].rgba[3] < 0.5 and specs["pregrasp"].rgba[0] == specs["pregrasp"].rgba[1]
    np.testing.assert_allclose(specs["contacts"].points, [[0.5, -0.04, 0.05], [0.5, 0.04, 0.05]])
    assert specs["contacts"].rgba == CONTACT_RGBA
    tail, head = specs["approach"].points
    np.testing.assert_allclose(head, PALM + [0.4, 0.0, 0.1])
    np.testing.assert_allclose(head - tail, [0.1, 0.0, 0.0])       # along the approach


def test_rotated_pose_and_pregrasp_helpers():
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    T[:3, 3] = (1.0, 2.0, 3.0)
    np.testing.assert_allclose(transform_points(T, [[1.0, 0.0, 0.0]]), [[1.0, 3.0, 3.0]])
    np.testing.assert_allclose(pregrasp_root_pose(T, [0.0, 0.0, -2.0], 0.1)[:3, 3], [1.0, 2.0, 3.1])


def test_marker_spec_rejects_bad_data():
    with pytest.raises(ValueError, match="kind"):
        MarkerSpec(ns="x", id=0, kind="cube", points=np.zeros((0, 3)))
    with pytest.raises(ValueError, match="NaN"):
        MarkerSpec(ns="x", id=0, kind="sphere_list", points=[[np.nan, 0, 0]])
    with pytest.raises(ValueError, match="2 points"):
        MarkerSpec(ns="x", id=0, kind="arrow", points=np.zeros((3, 3)))


# --------------------------------------------------------------------------- message conversions
conversions = pytest.importorskip("grasp_planner.conversions")


@pytest.mark.parametrize("t_s, sec, nanosec", [(0.0, 0, 0), (1.234567891, 1, 234567891), (0.1, 0, 100000000),
                                               (15.236560281, 15, 236560281), (2.9999999996, 3, 0),
                                               (1e-9, 0, 1)])
def test_time_from_start_is_exact_to_the_nanosecond(t_s, sec, nanosec):
    d = conversions.seconds_to_duration(t_s)
    assert (d.sec, d.nanosec) == (sec, nanosec)


def test_seconds_to_duration_rejects_negative_and_nan():
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="time_from_start"):
            conversions.seconds_to_duration(bad)


def test_trajectory_msg_keeps_every_joint_point_and_time():
    times = np.array([0.0, 0.5, 1.123456789, 2.0])
    q = np.arange(12, dtype=float).reshape(4, 3) / 10
    plan = MotionPlan(joint_names=("a", "b", "c"), positions=q, times_s=times)
    msg = conversions.trajectory_msg(plan, "panda_link0")
    assert list(msg.joint_names) == ["a", "b", "c"] and msg.header.frame_id == "panda_link0"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (0, 0)  # start on receipt
    np.testing.assert_array_equal([list(p.positions) for p in msg.points], q)
    ns = [p.time_from_start.sec * 1_000_000_000 + p.time_from_start.nanosec for p in msg.points]
    assert ns == [0, 500_000_000, 1_123_456_789, 2_000_000_000]


def test_joint_state_round_trip_by_name_and_bad_lengths():
    from sensor_msgs.msg import JointState

    msg = conversions.joint_state_msg(["j1", "j2"], [0.1, -0.2], frame_id="panda_link0")
    assert conversions.joint_positions_from_msg(msg) == {"j1": 0.1, "j2": -0.2}
    with pytest.raises(ValueError, match="2 joint names but 1 positions"):
        conversions.joint_state_msg(["j1", "j2"], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        conversions.joint_state_msg(["j1"], [np.nan])
    assert conversions.joint_positions_from_msg(JointState(name=["a", "b"], position=[np.nan, 1.0])) == {"b": 1.0}
    with pytest.raises(ValueError, match="names but"):
        conversions.joint_positions_from_msg(JointState(name=["a", "b"], position=[1.0]))


def test_pose_stamped_from_transform():
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]   # 90 degrees about z
    T[:3, 3] = (0.5, 0.0, 0.2)
    msg = conversions.pose_stamped_msg(T, "panda_link0")
    p, o = msg.pose.position, msg.pose.orientation
    assert (p.x, p.y, p.z) == (0.5, 0.0, 0.2) and msg.header.frame_id == "panda_link0"
    np.testing.assert_allclose([o.x, o.y, o.z, o.w], [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)


def test_marker_array_msg_types_frame_and_stamp():
    from builtin_interfaces.msg import Time
    from visualization_msgs.msg import Marker

    cand = candidates(1)[0]
    specs = grasp_markers([cand], fake_surface, chosen=cand)
    msg = conversions.marker_array_msg(specs, "panda_link0", Time(sec=7, nanosec=5))
    assert [m.action for m in msg.markers] == [Marker.DELETEALL] + [Marker.ADD] * 4
    assert [m.type for m in msg.markers[1:]] == [Marker.SPHERE_LIST] * 3 + [Marker.ARROW]
    assert all(m.header.frame_id == "panda_link0" and (m.header.stamp.sec, m.header.stamp.nanosec) == (7, 5)
               for m in msg.markers)
    grasp = msg.markers[1]
    assert grasp.ns == "grasp_0" and len(grasp.points) == len(HAND_POINTS) and grasp.color.g == 1.0
    assert grasp.pose.orientation.w == 1.0 and grasp.scale.x > 0
