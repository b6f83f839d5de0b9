"""The planner core end to end without ROS: cloud → grasp → IK → safe timed trajectory."""
from __future__ import annotations

import numpy as np
import pytest

from grasp_planner.franka_ik import FrankaKinematics
from grasp_planner.hands import load_hand
from grasp_planner.pipeline import GraspPlanner, PlannerConfig, builtin_backend
from grasp_planner.robots import panda
from grasp_planner.safety import SafetyLimits, check_trajectory
from test_grasp_synthesis import CAMERA_XYZ, visible_cylinder


@pytest.fixture(scope="module")
def planner():
    hand = load_hand("shadow")
    config = PlannerConfig(camera_xyz=tuple(CAMERA_XYZ))
    return GraspPlanner(hand, builtin_backend(hand, config), config)


def start_state(hand):
    return {**dict(zip(panda.ARM_JOINT_NAMES, panda.OBSERVE_Q)), **{n: 0.0 for n in hand.joint_names}}


def test_plan_reaches_the_grasp_from_the_current_state_within_limits(planner):
    start = start_state(planner.hand)
    result = planner.plan(visible_cylinder(), start)
    assert result.success, result.reason
    plan = result.plan
    first = plan.waypoint(0)
    assert all(abs(first[n] - start[n]) < 1e-9 for n in panda.ARM_JOINT_NAMES)   # starts where we are
    limits = SafetyLimits.for_panda(planner.hand.joint_names, planner.hand.joint_limits)
    assert check_trajectory(plan.joint_names, plan.positions, plan.times_s, limits) == []
    # The arm goal puts the flange where the chosen grasp wants it.
    q_grasp = np.array([result.arm_goal[n] for n in panda.ARM_JOINT_NAMES])
    T = FrankaKinematics().fk(q_grasp)
    assert np.linalg.norm(T[:3, 3] - result.T_base_flange[:3, 3]) < 2e-3
    # The trajectory ends holding the squeeze target, at the grasp (no lift by default).
    last = plan.waypoint(len(plan.times_s) - 1)
    assert all(abs(last[n] - v) < 1e-6 for n, v in result.hand_goal.items())
    assert all(abs(last[n] - result.arm_goal[n]) < 1e-6 for n in panda.ARM_JOINT_NAMES)
    assert set(result.timings_s) >= {"grasp_synthesis", "ik", "motion_plan"}


def test_fingers_close_slowly_enough(planner):
    result = planner.plan(visible_cylinder(), start_state(planner.hand))
    plan = result.plan
    ff = plan.joint_names.index("rh_FFJ3")
    moving = np.flatnonzero(np.abs(np.diff(plan.positions[:, ff])) > 1e-9)
    closing_time = plan.times_s[moving[-1] + 1] - plan.times_s[moving[0]]
    assert closing_time >= planner.config.close_duration_s - 1e-6


def test_out_of_reach_object_gives_no_plan_and_says_why(planner):
    far = visible_cylinder() + np.array([1.2, 0.0, 0.0])           # 1.7 m from the base
    result = planner.plan(far, start_state(planner.hand))
    assert not result.success and result.plan is None
    assert "IK" in result.reason and not result.joint_goal


def test_bad_clouds_are_refused_with_a_reason(planner):
    start = start_state(planner.hand)
    for cloud, words in ((np.zeros((0, 3)), "object model"), (np.full((500, 3), np.nan), "finite")):
        result = planner.plan(cloud, start)
        assert not result.success and result.plan is None and words in result.reason
    result = planner.plan(visible_cylinder(), {"rh_FFJ3": 0.0})
    assert not result.success and "arm joints" in result.reason
