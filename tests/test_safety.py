"""Trajectory safety checks: limits, velocities, time order and workspace, joints by name."""
from __future__ import annotations

import numpy as np
import pytest

from grasp_planner.franka_ik import FrankaKinematics
from grasp_planner.robots import panda
from grasp_planner.safety import SafetyError, SafetyLimits, assert_safe, check_trajectory

ARM = list(panda.ARM_JOINT_NAMES)


@pytest.fixture(scope="module")
def kin() -> FrankaKinematics:
    return FrankaKinematics()


@pytest.fixture(scope="module")
def limits() -> SafetyLimits:
    return SafetyLimits.for_panda(workspace_min_m=(-0.8, -0.8, 0.0), workspace_max_m=(0.8, 0.8, 1.0),
                                  min_height_m=0.05)


def _good_trajectory() -> tuple[np.ndarray, np.ndarray]:
    q_goal = panda.READY_Q + np.array([0.3, 0.1, -0.2, 0.2, 0.1, -0.1, 0.2])
    s = np.linspace(0.0, 1.0, 21)[:, None]
    return panda.READY_Q + s * (q_goal - panda.READY_Q), np.linspace(0.0, 2.0, 21)


def test_good_trajectory_passes(kin, limits):
    q, t = _good_trajectory()
    assert check_trajectory(ARM, q, t, limits, fk_fn=kin.fk) == []
    assert_safe(ARM, q, t, limits, fk_fn=kin.fk)


def test_joints_are_looked_up_by_name_not_position(kin, limits):
    q, t = _good_trajectory()
    order = [6, 0, 5, 1, 4, 2, 3]
    assert check_trajectory([ARM[i] for i in order], q[:, order], t, limits, fk_fn=kin.fk) == []
    # The same numbers with names shuffled differently put joint4 (always negative) at +values.
    bad = check_trajectory([ARM[i] for i in [3, 0, 1, 2, 4, 5, 6]], q, t, limits)
    assert any("panda_joint4" in v and "outside" in v for v in bad)


def test_joint_limit_violation_names_joint_and_waypoint(limits):
    q, t = _good_trajectory()
    q[7, 3] = -0.05                      # panda_joint4 upper limit is -0.0698 rad
    violations = check_trajectory(ARM, q, t, limits)
    assert len(violations) >= 1
    assert "panda_joint4" in violations[0] and "waypoint 7" in violations[0]


def test_margin_rejects_values_just_inside_the_raw_limit(limits):
    q, t = _good_trajectory()
    q[:, 0] = panda.JOINT_LIMITS_RAD[0, 1] - 0.005     # inside the URDF limit, inside the margin
    violations = check_trajectory(ARM, q, t, limits)
    assert any("panda_joint1" in v for v in violations)


def test_velocity_violation_is_reported(limits):
    q, t = _good_trajectory()
    q[10:, 0] += 0.5                      # a 0.5 rad jump in 0.1 s = 5 rad/s > 2.175 rad/s
    violations = check_trajectory(ARM, q, t, limits)
    assert any("velocity" in v and "panda_joint1" in v and "waypoints 9 and 10" in v for v in violations)


def test_non_increasing_times_are_reported(limits):
    q, t = _good_trajectory()
    t[5] = t[4]
    assert any("strictly increasing" in v for v in check_trajectory(ARM, q, t, limits))


def test_workspace_and_height_violations_use_fk(kin, limits):
    q, t = _good_trajectory()
    # Flange pushed outside the box by a fake FK: 1.5 m in x at waypoint 3.
    def fk_far(q_arm: np.ndarray) -> np.ndarray:
        T = kin.fk(q_arm).copy()
        if np.allclose(q_arm, q[3]):
            T[0, 3] = 1.5
        return T

    violations = check_trajectory(ARM, q, t, limits, fk_fn=fk_far)
    assert len(violations) == 1 and "workspace" in violations[0] and "waypoint 3" in violations[0]

    # Real FK of a configuration that puts the flange below the minimum height.
    low = np.array([0.0, 1.25, 0.0, -1.0, 0.0, 1.5, 0.0])
    assert 0.0 < kin.fk(low)[2, 3] < 0.05      # inside the box, below min_height_m
    q2 = np.vstack([low, low + 0.01])
    violations = check_trajectory(ARM, q2, np.array([0.0, 1.0]), limits, fk_fn=kin.fk)
    assert any("below the minimum" in v for v in violations)


def test_unknown_joint_and_shape_errors_are_violations(limits):
    q, t = _good_trajectory()
    names = ARM[:6] + ["mystery_joint"]
    assert any("unknown joints ['mystery_joint']" in v for v in check_trajectory(names, q, t, limits))
    assert "does not match" in check_trajectory(ARM[:6], q, t, limits)[0]
    assert "times" in check_trajectory(ARM, q, t[:-1], limits)[0]


def test_partial_arm_with_fk_cannot_be_checked(kin, limits):
    q, t = _good_trajectory()
    violations = check_trajectory(ARM[:6], q[:, :6], t, limits, fk_fn=kin.fk)
    assert any("cannot check the workspace" in v for v in violations)


def test_assert_safe_raises_safety_error_listing_violations(limits):
    q, t = _good_trajectory()
    q[2, 1] = 3.0
    with pytest.raises(SafetyError) as info:
        assert_safe(ARM, q, t, limits)
    assert info.value.violations and "panda_joint2" in str(info.value)


def test_hand_joints_resting_at_their_stops_are_allowed():
    limits = SafetyLimits.for_panda(["rh_FFJ1", "rh_FFJ2"], np.array([[0.0, 1.5708], [0.0, 1.5708]]))
    names = ARM + ["rh_FFJ1", "rh_FFJ2"]
    q = np.tile(np.concatenate([panda.READY_Q, [0.0, 0.0]]), (2, 1))
    q[1, 7] = 0.1
    assert check_trajectory(names, q, np.array([0.0, 1.0]), limits) == []
    q[1, 7] = 1.0                                       # 1 rad/s: under the 2 rad/s hand limit
    q[1, 8] = 3.0                                       # beyond 1.5708 rad
    assert any("rh_FFJ2" in v for v in check_trajectory(names, q, np.array([0.0, 1.0]), limits))


def test_limits_are_validated_and_immutable():
    with pytest.raises(ValueError, match="no velocity limit"):
        SafetyLimits(joint_limits_rad={"a": (-1.0, 1.0)}, max_velocity_rad_s={})
    with pytest.raises(ValueError, match="empty after"):
        SafetyLimits(joint_limits_rad={"a": (0.0, 0.01)}, max_velocity_rad_s={"a": 1.0})
    with pytest.raises(ValueError, match="workspace"):
        SafetyLimits(joint_limits_rad={}, max_velocity_rad_s={}, workspace_min_m=(0, 0, 1),
                     workspace_max_m=(1, 1, 0))
    limits = SafetyLimits.for_panda()
    with pytest.raises(TypeError):
        limits.joint_limits_rad["panda_joint1"] = (-10.0, 10.0)
