"""Built-in joint planner: timing within velocity limits, goal handling, table and object collisions."""
from __future__ import annotations

import numpy as np
import pytest

from grasp_planner.franka_ik import FrankaKinematics
from grasp_planner.motion import MotionPlan, PlanningError, PlanningScene, make_backend
from grasp_planner.motion.builtin import BuiltinJointPlanner, BuiltinPlannerConfig
from grasp_planner.robots import panda
from grasp_planner.safety import SafetyLimits, check_trajectory

ARM = panda.ARM_JOINT_NAMES


@pytest.fixture(scope="module")
def kin() -> FrankaKinematics:
    return FrankaKinematics()


@pytest.fixture(scope="module")
def planner(kin) -> BuiltinJointPlanner:
    return BuiltinJointPlanner(kinematics=kin)


def _arm(q) -> dict[str, float]:
    return dict(zip(ARM, np.asarray(q, dtype=float).tolist()))


def _flange_down_at(kin: FrankaKinematics, xyz, seed=panda.READY_Q) -> np.ndarray:
    T = kin.fk(panda.READY_Q).copy()       # ready orientation: flange z axis pointing down
    T[:3, 3] = xyz
    res = kin.solve(T, seed)
    assert res.success, res.reason
    return res.q


def test_plan_between_two_configs_is_timed_within_limits(planner, kin):
    goal = panda.READY_Q + np.array([0.5, 0.2, -0.3, 0.3, 0.2, -0.2, 0.4])
    plan = planner.plan(_arm(panda.READY_Q), [_arm(goal)], PlanningScene())
    assert isinstance(plan, MotionPlan) and plan.joint_names == ARM
    np.testing.assert_allclose(plan.positions[0], panda.READY_Q)
    np.testing.assert_allclose(plan.positions[-1], goal)
    assert plan.times_s[0] == 0.0 and np.all(np.diff(plan.times_s) > 0)
    velocity = np.abs(np.diff(plan.positions, axis=0)) / np.diff(plan.times_s)[:, None]
    assert np.all(velocity <= 0.3 * panda.VELOCITY_LIMITS_RAD_S + 1e-9)
    # Dense enough for collision checking and safe by the independent checker.
    assert np.max(np.abs(np.diff(plan.positions, axis=0))) <= 0.02 + 1e-9
    assert check_trajectory(plan.joint_names, plan.positions, plan.times_s,
                            SafetyLimits.for_panda(), fk_fn=kin.fk) == []


def test_velocity_scale_changes_duration_not_path(kin):
    goal = _arm(panda.READY_Q + 0.3)
    slow = BuiltinJointPlanner(BuiltinPlannerConfig(velocity_scale=0.2), kinematics=kin)
    fast = BuiltinJointPlanner(BuiltinPlannerConfig(velocity_scale=0.8), kinematics=kin)
    p_slow = slow.plan(_arm(panda.READY_Q), [goal], PlanningScene())
    p_fast = fast.plan(_arm(panda.READY_Q), [goal], PlanningScene())
    assert p_slow.duration_s == pytest.approx(4 * p_fast.duration_s)
    np.testing.assert_allclose(p_slow.positions[-1], p_fast.positions[-1])


def test_partial_goals_hold_other_joints_and_pass_every_waypoint(planner):
    start = _arm(panda.READY_Q)
    plan = planner.plan(start, [{"panda_joint1": 0.4}, {"panda_joint7": 1.2}], PlanningScene())
    j1, j7 = plan.joint_names.index("panda_joint1"), plan.joint_names.index("panda_joint7")
    assert np.isclose(plan.positions[:, j1], 0.4).any()
    np.testing.assert_allclose(plan.positions[-1, [j1, j7]], [0.4, 1.2])
    moving = plan.positions[:, [i for i in range(7) if i not in (j1, j7)]]
    np.testing.assert_allclose(moving, np.broadcast_to(moving[0], moving.shape))


def test_hand_joints_are_planned_with_the_arm():
    limits = SafetyLimits.for_panda(["rh_FFJ3"], np.array([[-0.26, 1.57]]))
    planner = BuiltinJointPlanner(limits=limits)
    start = {**_arm(panda.READY_Q), "rh_FFJ3": 0.0}
    plan = planner.plan(start, [{"rh_FFJ3": 1.4}], PlanningScene())
    assert plan.waypoint(len(plan.times_s) - 1)["rh_FFJ3"] == pytest.approx(1.4)
    # Hand velocity limit (2 rad/s default) scaled by 0.3 bounds the closing speed.
    v = np.abs(np.diff(plan.positions[:, -1])) / np.diff(plan.times_s)
    assert np.max(v) <= 0.3 * 2.0 + 1e-9


def test_waypoint_putting_the_hand_inside_the_table_raises(planner, kin):
    q_low = _flange_down_at(kin, [0.5, 0.0, 0.30])     # 0.45 m hand reaches z = -0.15 m
    with pytest.raises(PlanningError) as info:
        planner.plan(_arm(panda.READY_Q), [_arm(q_low)], PlanningScene())
    err = info.value
    assert err.link == "hand" and "table" in str(err)
    assert err.time_s is not None and err.time_s > 0 and err.sample_index is not None


def test_shorter_hand_clears_the_same_table(kin):
    q_low = _flange_down_at(kin, [0.5, 0.0, 0.30])
    short = BuiltinJointPlanner(BuiltinPlannerConfig(hand_length_m=0.2), kinematics=kin)
    plan = short.plan(_arm(panda.READY_Q), [_arm(q_low)], PlanningScene())
    np.testing.assert_allclose(plan.positions[-1], q_low)


def _object_below(kin, q) -> np.ndarray:
    """Points of a 6 cm cube centred 0.50 m along the flange z axis (just past a 0.45 m hand)."""
    T = kin.fk(q)
    centre = T[:3, 3] + 0.50 * T[:3, 2]
    g = np.linspace(-0.03, 0.03, 4)
    return centre + np.stack(np.meshgrid(g, g, g), -1).reshape(-1, 3)


def test_object_may_be_touched_only_in_the_final_approach(planner, kin):
    q_pre = _flange_down_at(kin, [0.5, 0.0, 0.65])
    q_grasp = _flange_down_at(kin, [0.5, 0.0, 0.58], seed=q_pre)
    scene = PlanningScene(object_points_m=_object_below(kin, q_grasp))
    # Start → pre-grasp clears the object; pre-grasp → grasp (last segment) may touch it.
    plan = planner.plan(_arm(panda.READY_Q), [_arm(q_pre), _arm(q_grasp)], scene)
    np.testing.assert_allclose(plan.positions[-1], q_grasp)
    # With no contact segment allowed, the final approach collides with the object.
    strict = BuiltinJointPlanner(BuiltinPlannerConfig(object_contact_segments=0), kinematics=kin)
    with pytest.raises(PlanningError, match="object") as info:
        strict.plan(_arm(panda.READY_Q), [_arm(q_pre), _arm(q_grasp)], scene)
    assert info.value.link == "hand"


def test_object_in_the_way_of_a_transit_segment_raises(planner, kin):
    q_pre = _flange_down_at(kin, [0.5, 0.0, 0.65])
    q_grasp = _flange_down_at(kin, [0.5, 0.0, 0.58], seed=q_pre)
    # Object where the hand is at the pre-grasp: segment 0 (start → pre-grasp) hits it.
    T_pre = kin.fk(q_pre)
    scene = PlanningScene(object_points_m=(T_pre[:3, 3] + 0.3 * T_pre[:3, 2])[None])
    with pytest.raises(PlanningError, match=r"segment 0 .*object") as info:
        planner.plan(_arm(panda.READY_Q), [_arm(q_pre), _arm(q_grasp)], scene)
    assert info.value.link == "hand"


def test_goal_with_unknown_joint_or_missing_arm_joint_raises(planner):
    with pytest.raises(PlanningError, match="not in the start state"):
        planner.plan(_arm(panda.READY_Q), [{"panda_joint9": 0.0}], PlanningScene())
    start = _arm(panda.READY_Q)
    del start["panda_joint3"]
    with pytest.raises(PlanningError, match="lacks arm joints"):
        planner.plan(start, [{"panda_joint1": 0.1}], PlanningScene())
    with pytest.raises(PlanningError, match="no goals"):
        planner.plan(_arm(panda.READY_Q), [], PlanningScene())


def test_goal_beyond_joint_limits_is_refused_by_the_safety_check(planner):
    goal = _arm(panda.READY_Q)
    goal["panda_joint4"] = 0.2            # joint4 must stay below -0.0698 rad
    with pytest.raises(PlanningError, match="panda_joint4"):
        planner.plan(_arm(panda.READY_Q), [goal], PlanningScene())


def test_make_backend_builds_builtin_and_rejects_unknown_names():
    assert isinstance(make_backend("builtin"), BuiltinJointPlanner)
    with pytest.raises(ValueError, match="builtin, moveit_py"):
        make_backend("ompl")


def test_builtin_backend_only_plans(planner):
    plan = planner.plan(_arm(panda.READY_Q), [_arm(panda.READY_Q + 0.1)], PlanningScene())
    with pytest.raises(NotImplementedError, match="only plans"):
        planner.execute(plan)
