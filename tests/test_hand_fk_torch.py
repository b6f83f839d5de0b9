"""Torch hand FK: agrees with MuJoCo's kinematics, has correct gradients, honours couplings and
point counts; penetration penalties vanish when apart and grow when the object is inside."""
from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

from grasp_planner.hand_fk_torch import HandPointConfig, TorchHandKinematics
from grasp_planner.hands import available_hands, load_hand

HANDS = available_hands()


@pytest.fixture(scope="module", params=HANDS)
def fk(request) -> TorchHandKinematics:
    return TorchHandKinematics(load_hand(request.param))


def _random_q(fk: TorchHandKinematics, n: int, seed: int) -> np.ndarray:
    lim = fk.hand.joint_limits
    return np.random.default_rng(seed).uniform(lim[:, 0], lim[:, 1], size=(n, len(fk.joint_names)))


def _mujoco_kinematics(fk: TorchHandKinematics, q: np.ndarray) -> mujoco.MjData:
    """MuJoCo's own mj_kinematics of the same hand-only model, joints set by name."""
    m = fk.model
    d = mujoco.MjData(m)
    for name, value in zip(fk.joint_names, q):
        d.qpos[m.jnt_qposadr[m.joint(name).id]] = value
    mujoco.mj_kinematics(m, d)
    return d


def _apply(R: np.ndarray, t: np.ndarray, local: np.ndarray) -> np.ndarray:
    return np.einsum("nij,nj->ni", R, local) + t


def test_everything_matches_mujoco_kinematics_at_random_configurations(fk):
    q = _random_q(fk, 6, seed=1)
    out = fk.forward(torch.as_tensor(q), normals=True)
    for b in range(len(q)):
        d = _mujoco_kinematics(fk, q[b])
        xpos, xmat = d.xpos[1:], d.xmat[1:].reshape(-1, 3, 3)
        poses = out.link_poses[b].numpy()
        np.testing.assert_allclose(poses[:, :3, 3], xpos, atol=1e-9)
        np.testing.assert_allclose(poses[:, :3, :3], xmat, atol=1e-9)
        np.testing.assert_array_equal(poses[:, 3], np.tile([0.0, 0.0, 0.0, 1.0], (len(poses), 1)))
        # Surface points through MuJoCo's geom frames (an independent path from the link frames).
        g = fk.point_geom
        pts = _apply(d.geom_xmat[g].reshape(-1, 3, 3), d.geom_xpos[g], fk.point_geom_local)
        assert np.abs(out.points[b].numpy() - pts).max() < 1e-5
        assert np.abs(fk.surface_points(torch.as_tensor(q[b:b + 1]))[0].numpy() - pts).max() < 1e-5  # points-only path
        l = fk.point_link
        np.testing.assert_allclose(out.normals[b].numpy(), _apply(xmat[l], 0 * xpos[l], fk.point_normal_local),
                                   atol=1e-9)
        l = fk.contact_link
        assert np.abs(out.contact_points[b].numpy() - _apply(xmat[l], xpos[l], fk.contact_local)).max() < 1e-5
        l = fk.sphere_link
        assert np.abs(out.sphere_centers[b].numpy() - _apply(xmat[l], xpos[l], fk.sphere_local)).max() < 1e-5
        for f, finger in enumerate(fk.fingers):
            body = fk.model.body(fk.hand.fingertips[finger]).id
            tip = d.xmat[body].reshape(3, 3) @ fk.hand.tip_offset(finger) + d.xpos[body]
            assert np.abs(out.fingertips[b, f].numpy() - tip).max() < 1e-5


def test_root_pose_moves_every_output_rigidly(fk):
    q = torch.as_tensor(_random_q(fk, 3, seed=2))
    rng = np.random.default_rng(0)
    root = np.eye(4)
    root[:3, :3] = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    root[:3, 0] *= np.sign(np.linalg.det(root[:3, :3]))       # a proper rotation
    root[:3, 3] = [0.4, -0.2, 0.7]
    local, moved = fk.forward(q), fk.forward(q, torch.as_tensor(root))
    R, t = torch.as_tensor(root[:3, :3]), torch.as_tensor(root[:3, 3])
    torch.testing.assert_close(moved.points, local.points @ R.T + t)
    torch.testing.assert_close(moved.link_poses, torch.as_tensor(root) @ local.link_poses)
    per_config = fk.forward(q, torch.as_tensor(root).expand(3, 4, 4))
    torch.testing.assert_close(per_config.sphere_centers, moved.sphere_centers)


def test_gradients_are_correct(fk):
    q = torch.tensor(_random_q(fk, 2, seed=3), requires_grad=True)
    root = torch.eye(4, dtype=torch.float64)
    root[:3, 3] = torch.tensor([0.1, 0.2, 0.3])
    root.requires_grad_(True)

    def outputs(q, root):
        out = fk.forward(q, root, normals=True)
        return (out.link_poses, out.points, out.normals, out.contact_points, out.fingertip_frames,
                out.sphere_centers)

    assert torch.autograd.gradcheck(outputs, (q, root), fast_mode=True)


def test_float32_matches_float64(fk):
    q = _random_q(fk, 4, seed=4)
    p64 = fk.forward(torch.as_tensor(q)).points
    p32 = fk.forward(torch.as_tensor(q, dtype=torch.float32)).points
    assert p32.dtype == torch.float32
    assert (p32.double() - p64).abs().max() < 1e-5


def test_configured_point_count_is_honoured_and_deterministic():
    hand = load_hand(HANDS[0])
    for n in (64, 512, 1000):
        fk = TorchHandKinematics(hand, HandPointConfig(num_points=n))
        assert fk.forward(torch.zeros(2, hand.dof)).points.shape == (2, n, 3)
        assert len(fk.point_link) == n
    a = TorchHandKinematics(hand, HandPointConfig(num_points=128, seed=5))
    b = TorchHandKinematics(hand, HandPointConfig(num_points=128, seed=5))
    np.testing.assert_array_equal(a.point_local, b.point_local)


def test_points_are_spread_by_surface_area(fk):
    counts = np.bincount(fk.point_link, minlength=len(fk.link_names))
    palm = fk.link_names.index(fk.hand.palm_body)
    distal = [fk.link_names.index(fk.hand.fingertips[f]) for f in fk.fingers]
    assert len(fk.point_link) == 512
    assert counts[palm] > max(counts[distal])          # the palm is the largest surface
    # Points of a link are farthest-point spread: no two closer than 1 mm.
    pts = fk.point_local[fk.point_link == palm]
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(len(pts))
    assert dist.min() > 1e-3


def test_couplings_hold_through_forward_actuated(fk):
    hand = fk.hand
    act = list(hand.actuated_joints)
    lim = hand.joint_limits[[hand.joint_names.index(n) for n in act]]
    q_act = np.random.default_rng(6).uniform(lim[:, 0], lim[:, 1], size=(3, len(act)))
    out = fk.forward_actuated(torch.as_tensor(q_act))
    for b in range(len(q_act)):
        full = hand.expand(dict(zip(act, q_act[b])))            # the description's own expansion
        d = _mujoco_kinematics(fk, np.array([full[n] for n in fk.joint_names]))
        np.testing.assert_allclose(out.link_poses[b, :, :3, 3].numpy(), d.xpos[1:], atol=1e-9)
        for c in hand.couplings:
            assert full[c.follower] == pytest.approx(c.multiplier * full[c.leader] + c.offset)
    with pytest.raises(ValueError, match=f"\\(B, {len(act)}\\)"):
        fk.forward_actuated(torch.zeros(1, len(act) + 1))


def test_bad_joint_vector_is_refused_with_the_expected_shape(fk):
    with pytest.raises(ValueError, match=f"\\(B, {fk.hand.dof}\\).*joint_names order"):
        fk.forward(torch.zeros(2, fk.hand.dof + 1))


def _open_pose(fk: TorchHandKinematics) -> torch.Tensor:
    full = fk.hand.expand(fk.hand.open_pose)
    return torch.tensor([[full[n] for n in fk.joint_names]], dtype=torch.float64)


def test_object_penetration_zero_when_far_positive_when_inside(fk):
    out = fk.forward(_open_pose(fk))
    rng = np.random.default_rng(7)
    dirs = rng.normal(size=(400, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    far_center = np.array([1.0, 1.0, 1.0])
    far = torch.as_tensor(far_center + 0.05 * dirs)
    normals = torch.as_tensor(dirs)
    sdf_far = lambda c: (c - torch.as_tensor(far_center)).norm(dim=-1) - 0.05  # noqa: E731
    for kwargs in ({"object_points": far}, {"object_points": far, "object_normals": normals},
                   {"sdf": sdf_far}):
        assert fk.object_penetration(out.sphere_centers, **kwargs).item() == 0.0
    # An object (2 cm ball) centred on a point inside the palm's collision approximation.
    palm = fk.link_names.index(fk.hand.palm_body)
    inside = out.sphere_centers[0, np.flatnonzero(fk.sphere_link == palm)[0]].detach().numpy()
    ball = torch.as_tensor(inside + 0.02 * dirs)
    sdf_in = lambda c: (c - torch.as_tensor(inside)).norm(dim=-1) - 0.02  # noqa: E731
    q = _open_pose(fk).requires_grad_(True)
    for kwargs in ({"object_points": ball}, {"object_points": ball, "object_normals": normals},
                   {"sdf": sdf_in}, {"object_points": torch.as_tensor(inside[None])}):
        pen = fk.object_penetration(fk.forward(q).sphere_centers, **kwargs)
        assert pen.item() > 0.005
    with pytest.raises(ValueError, match="object_points"):
        fk.object_penetration(out.sphere_centers)


def test_self_penetration_zero_at_open_pose_and_descends_when_links_overlap(fk):
    assert len(fk.self_pairs) > 0
    assert fk.self_penetration(fk.forward(_open_pose(fk)).sphere_centers).item() == 0.0
    q = torch.as_tensor(_random_q(fk, 64, seed=8))
    pen = fk.self_penetration(fk.forward(q).sphere_centers)
    assert pen.shape == (64,)
    worst = q[pen.argmax()][None].clone().requires_grad_(True)
    value = fk.self_penetration(fk.forward(worst).sphere_centers)
    assert value.item() > 0
    value.sum().backward()
    step = worst.detach() - 1e-3 * worst.grad / worst.grad.norm()
    assert fk.self_penetration(fk.forward(step).sphere_centers).item() < value.item()


def test_a_configuration_gives_the_same_points_alone_and_in_a_large_batch(fk):
    """Small batches move points with one padded matmul, large ones per link: the values agree to rounding."""
    from grasp_planner.hand_fk_torch import SMALL_BATCH

    q = torch.as_tensor(_random_q(fk, SMALL_BATCH + 8, seed=5))
    batch = fk.forward(q, normals=True)
    for i in (0, SMALL_BATCH + 7):
        alone = fk.forward(q[i:i + 1], normals=True)
        for name in ("points", "normals", "contact_points", "sphere_centers"):
            assert torch.allclose(getattr(alone, name)[0], getattr(batch, name)[i], rtol=0, atol=1e-15), name
        assert torch.allclose(fk.surface_points(q[i:i + 1])[0], batch.points[i], rtol=0, atol=1e-15)
