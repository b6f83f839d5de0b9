"""Grasp recovery from distance matrices: multilateration, Kabsch, joint solve, full recovery, ranking."""
from __future__ import annotations

import math

import pytest
import torch

from grasp_planner.network.recovery import (HandChain, ObjectSurface, RecoveryConfig, RefineConfig,
                                            apply_link_transforms, axis_angle_to_matrix, estimate_normals, kabsch,
                                            link_kabsch, multilaterate, rank_candidates, recover_grasps,
                                            refine_grasps, solve_joints)



pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random_rotation(gen: torch.Generator, n: int) -> torch.Tensor:
    return axis_angle_to_matrix(torch.randn(n, 3, generator=gen, dtype=torch.float64) * 1.2)


# --- A synthetic two-finger hand written in torch: palm + 3-link finger + 2-link finger with a mimic joint.
_LINKS = {1: ((0.04, 0.02, 0.0), 0.045), 2: (None, 0.035), 3: (None, 0.025),      # finger A (joints 0, 1, 2)
          4: ((0.04, -0.03, 0.0), 0.04), 5: (None, 0.03)}                          # finger B (joints 3, 4 = 0.7 q3)


def _box_points(length: float, n: int = 4) -> torch.Tensor:
    xs = torch.linspace(0.25, 1.0, n, dtype=torch.float64) * length
    offs = torch.tensor([[0.008, 0.005], [-0.008, 0.005], [0.008, -0.005], [-0.008, -0.005]], dtype=torch.float64)
    return torch.cat([torch.stack([x.expand(4), offs[:, 0], offs[:, 1]], -1) for x in xs])


def _rot_y(q: torch.Tensor) -> torch.Tensor:
    c, s, z, o = torch.cos(q), torch.sin(q), torch.zeros_like(q), torch.ones_like(q)
    return torch.stack([torch.stack([c, z, s], -1), torch.stack([z, o, z], -1), torch.stack([-s, z, c], -1)], -2)


class _TwoFingerHand:
    """Batched FK ``(B, 5) → (B, P, 3)``: joints rotate about y, links extend along x; ``palm_grid``
    points per side of the palm's two layers."""

    def __init__(self, palm_grid: int = 4):
        n = palm_grid
        gx, gy = torch.meshgrid(torch.linspace(-0.03, 0.03, n), torch.linspace(-0.04, 0.04, n), indexing="ij")
        palm = torch.stack([gx.ravel(), gy.ravel(), torch.zeros(n * n)], -1).double()
        palm = torch.cat([palm, palm + torch.tensor([0.0, 0.0, -0.015], dtype=torch.float64)])
        self.local = [palm] + [_box_points(_LINKS[i][1]) for i in range(1, 6)]
        self.link_index = torch.cat([torch.full((len(p),), i) for i, p in enumerate(self.local)])

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        b = q.shape[0]
        out = [self.local[0].to(q.dtype).expand(b, -1, -1)]
        for links in ((1, 2, 3), (4, 5)):
            rot = torch.eye(3, dtype=q.dtype).expand(b, 3, 3)
            pos = torch.tensor(_LINKS[links[0]][0], dtype=q.dtype).expand(b, 3)
            for link in links:                                   # joint of link i is q[:, i - 1]
                rot = rot @ _rot_y(q[:, link - 1])
                out.append(torch.einsum("bij,pj->bpi", rot, self.local[link].to(q.dtype)) + pos[:, None])
                pos = pos + rot[:, :, 0] * _LINKS[link][1]
        return torch.cat(out, dim=1)


def _two_finger_chain(palm_grid: int = 4) -> HandChain:
    fk = _TwoFingerHand(palm_grid)
    coupling = torch.zeros(5, 4, dtype=torch.float64)
    coupling[0, 0] = coupling[1, 1] = coupling[2, 2] = coupling[3, 3] = 1.0
    coupling[4, 3] = 0.7                                                     # mimic: q4 = 0.7 q3
    return HandChain(fk=fk, lower=torch.tensor([-0.2, 0.0, 0.0, -0.1], dtype=torch.float64),
                     upper=torch.tensor([1.5, 1.6, 1.4, 1.3], dtype=torch.float64), link_index=fk.link_index,
                     joint_names=("a1", "a2", "a3", "b1"), coupling=coupling,
                     canonical_q=torch.tensor([0.3, 0.3, 0.3, 0.3], dtype=torch.float64))


@pytest.fixture(scope="module")
def hand() -> HandChain:
    return _two_finger_chain()


def test_points_and_jacobian_in_one_call_equal_the_separate_calls(hand):
    """The joint solve's merged FK call (points + finite-difference probes) gives the separate values
    (to rounding: a batch of another size may take another BLAS kernel, e.g. with AVX-512)."""
    gen = torch.Generator().manual_seed(3)
    q = hand.lower + torch.rand(3, 4, generator=gen, dtype=torch.float64) * (hand.upper - hand.lower)
    q[0] = hand.upper                                                  # probes step back inside the limits
    points, jac = hand.points_and_jacobian(q, 1e-3)
    torch.testing.assert_close(points, hand.points(q), rtol=0.0, atol=1e-14)
    torch.testing.assert_close(jac, hand.point_jacobian(q, hand.points(q), 1e-3), rtol=0.0, atol=1e-10)


def _random_grasp(hand: HandChain, gen: torch.Generator, n: int):
    u = torch.rand(n, 4, generator=gen, dtype=torch.float64)
    q = hand.lower + u * (hand.upper - hand.lower)
    rot = _random_rotation(gen, n)
    trans = torch.tensor([0.5, 0.1, 0.3], dtype=torch.float64) + 0.05 * torch.randn(n, 3, generator=gen,
                                                                                    dtype=torch.float64)
    points = hand.points(q) @ rot.transpose(-1, -2) + trans[:, None]
    return q, rot, trans, points


def test_multilateration_recovers_points_from_exact_distances():
    gen = torch.Generator().manual_seed(0)
    anchors = torch.rand(2, 200, 3, generator=gen, dtype=torch.float64) * 0.1
    truth = torch.rand(2, 50, 3, generator=gen, dtype=torch.float64) * 0.15 - 0.025
    got = multilaterate(anchors, torch.cdist(truth, anchors))
    assert (got - truth).norm(dim=-1).max() < 1e-4
    # float32 distances (what the network outputs) too.
    got32 = multilaterate(anchors.float(), torch.cdist(truth, anchors).float())
    assert got32.dtype == torch.float32 and (got32.double() - truth).norm(dim=-1).max() < 1e-4


def test_multilateration_error_is_bounded_and_shrinks_with_more_anchors():
    gen = torch.Generator().manual_seed(1)
    sigma = 0.002
    errors = {}
    for n_anchors in (16, 64, 512):
        anchors = torch.rand(20, n_anchors, 3, generator=gen, dtype=torch.float64) * 0.1
        truth = torch.rand(20, 40, 3, generator=gen, dtype=torch.float64) * 0.1
        noisy = torch.cdist(truth, anchors) + sigma * torch.randn(20, 40, n_anchors, generator=gen, dtype=torch.float64)
        errors[n_anchors] = float((multilaterate(anchors, noisy.clamp_min(0)) - truth).norm(dim=-1).median())
    assert errors[512] < errors[64] < errors[16]
    assert errors[512] < sigma, errors
    assert errors[16] < 5 * sigma, errors


def test_multilateration_refuses_mismatched_anchor_count():
    with pytest.raises(ValueError, match="anchors"):
        multilaterate(torch.rand(1, 10, 3), torch.rand(1, 5, 9))


def test_kabsch_recovers_a_known_rigid_transform_with_weights():
    gen = torch.Generator().manual_seed(2)
    rot, trans = _random_rotation(gen, 3), torch.randn(3, 3, generator=gen, dtype=torch.float64)
    src = torch.randn(3, 30, 3, generator=gen, dtype=torch.float64) * 0.05
    dst = src @ rot.transpose(-1, -2) + trans[:, None]
    dst[:, :5] += 0.5                                              # outliers with zero weight
    w = torch.ones(3, 30, dtype=torch.float64)
    w[:, :5] = 0
    r_est, t_est = kabsch(src, dst, w)
    assert torch.allclose(r_est, rot, atol=1e-9) and torch.allclose(t_est, trans, atol=1e-9)
    assert torch.allclose(torch.linalg.det(r_est), torch.ones(3, dtype=torch.float64))


def test_link_kabsch_recovers_each_link_pose(hand):
    gen = torch.Generator().manual_seed(3)
    q, rot, trans, points = _random_grasp(hand, gen, 4)
    r_l, t_l = link_kabsch(hand.canonical_points, points, hand.link_index, hand.num_links)
    assert r_l.shape == (4, hand.num_links, 3, 3)
    rebuilt = apply_link_transforms(hand.canonical_points, r_l, t_l, hand.link_index)
    assert (rebuilt - points).norm(dim=-1).max() < 1e-9          # every link is rigid: exact


def test_joint_solve_recovers_known_joints_wrist_and_mimic_coupling(hand):
    gen = torch.Generator().manual_seed(4)
    q, rot, trans, points = _random_grasp(hand, gen, 8)
    sol = solve_joints(points, hand)
    assert sol.iterations <= 64
    assert (sol.q - q).abs().max() < 1e-4, (sol.q - q).abs().max(-1)
    assert torch.allclose(sol.wrist_pose[:, :3, :3], rot, atol=1e-5)
    assert torch.allclose(sol.wrist_pose[:, :3, 3], trans, atol=1e-5)
    assert torch.allclose(sol.q_full[:, 4], 0.7 * sol.q[:, 3])
    assert sol.residual_m.max() < 1e-6


def test_joint_solve_stays_within_limits_and_limits_each_step(hand):
    q = torch.tensor([[0.5, 0.8, -0.6, 1.9]], dtype=torch.float64)           # a3 below, b1 above its limits
    points = hand.fk(torch.cat([q, 0.7 * q[:, 3:]], -1))
    one_step = solve_joints(points, hand, config=RecoveryConfig(max_iterations=1, max_joint_step_rad=0.5))
    assert (one_step.q - hand.default_q()).abs().max() <= 0.5 + 1e-12
    sol = solve_joints(points, hand)
    assert (sol.q >= hand.lower).all() and (sol.q <= hand.upper).all()
    assert sol.q[0, 2] == pytest.approx(0.0) and sol.q[0, 3] == pytest.approx(1.3)
    # At least as good as the truth clamped into the limits (the wrist and other joints compensate).
    clamped = hand.points(q.clamp(hand.lower, hand.upper))
    clamped_rms = (clamped - points).square().sum(-1).mean().sqrt()
    assert sol.residual_m[0] <= clamped_rms + 1e-9


def _object_shell(gen: torch.Generator, centre: torch.Tensor, n: int = 300) -> torch.Tensor:
    d = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return centre + 0.06 * d / d.norm(dim=-1, keepdim=True) * (1 + 0.3 * torch.rand(n, 1, generator=gen,
                                                                                       dtype=torch.float64))


def test_recovery_reproduces_a_ground_truth_grasp_from_its_true_distance_matrix(hand):
    gen = torch.Generator().manual_seed(6)
    q, rot, trans, points = _random_grasp(hand, gen, 5)
    obj = _object_shell(gen, points.mean(dim=(0, 1)))
    rec = recover_grasps(torch.cdist(points, obj).float(), obj.float(), hand)
    assert (rec.multilaterated.double() - points).norm(dim=-1).max() < 1e-3
    assert (rec.solution.q.double() - q).abs().max() < 1e-2
    assert (rec.solution.points.double() - points).norm(dim=-1).max() < 1e-3
    assert torch.allclose(rec.solution.wrist_pose[:, :3, 3].double(), trans, atol=1e-3)


def test_recovery_from_noisy_distances_is_close_and_ranked_by_fit(hand):
    gen = torch.Generator().manual_seed(7)
    q, rot, trans, points = _random_grasp(hand, gen, 1)
    obj = _object_shell(gen, points.mean(dim=(0, 1)), 400)
    exact = torch.cdist(points, obj)
    noise = torch.tensor([0.0, 0.002, 0.02], dtype=torch.float64)[:, None, None]
    noisy = (exact + noise * torch.randn(3, *exact.shape[1:], generator=gen, dtype=torch.float64)).clamp_min(0)
    rec = recover_grasps(noisy, obj, hand)
    err = (rec.solution.points - points).norm(dim=-1).mean(-1)
    assert err[1] < 0.003 and err[0] < err[1] < err[2]
    ranking = rank_candidates(rec)
    assert ranking.order.tolist() == [0, 1, 2]


def test_ranking_terms_reorder_and_reject_candidates(hand):
    gen = torch.Generator().manual_seed(8)
    q, rot, trans, points = _random_grasp(hand, gen, 3)
    obj = _object_shell(gen, points.mean(dim=(0, 1)))
    rec = recover_grasps(torch.cdist(points, obj), obj, hand)
    penetration = torch.tensor([0.01, 0.0, 0.002], dtype=torch.float64)
    reachable = torch.tensor([0.0, math.inf, 0.0], dtype=torch.float64)
    ranking = rank_candidates(rec, {"penetration_m": (10.0, lambda g: penetration),
                                    "unreachable": (1.0, lambda g: reachable)})
    assert ranking.order.tolist() == [2, 0, 1]
    assert math.isinf(float(ranking.cost[1])) and set(ranking.terms) == {"fit_residual_m", "penetration_m",
                                                                           "unreachable"}
    with pytest.raises(ValueError, match="shape"):
        rank_candidates(rec, {"bad": (1.0, lambda g: torch.zeros(2))})


def test_recovery_refuses_bad_input(hand):
    obj = torch.rand(50, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="distances must be"):
        recover_grasps(torch.rand(2, 7, 50), obj, hand)
    bad = torch.rand(1, hand.link_index.shape[0], 50, dtype=torch.float64)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        recover_grasps(bad, obj, hand)
    with pytest.raises(ValueError, match="lower > upper"):
        HandChain(fk=hand.fk, lower=torch.ones(4), upper=torch.zeros(4), link_index=hand.link_index,
                  joint_names=hand.joint_names)


# --- Refinement against the object surface (the predicted matrix is never exact).
def _sphere(gen: torch.Generator, n: int, radius: float, centre=(0.0, 0.0, 0.0)):
    d = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    normals = d / d.norm(dim=-1, keepdim=True)
    return torch.tensor(centre, dtype=torch.float64) + radius * normals, normals


def test_object_surface_signed_distance_sign_size_gradient_and_bound():
    gen = torch.Generator().manual_seed(10)
    pts, normals = _sphere(gen, 600, 0.05)
    surface = ObjectSurface(pts, normals, bandwidth_m=0.008)
    dirs = _sphere(gen, 50, 1.0)[1]
    for radius, expected in ((0.04, -0.01), (0.05, 0.0), (0.06, 0.01)):
        sd, grad = surface.signed_distance_and_gradient((radius * dirs)[None])
        assert (sd - expected).abs().max() < 1.5e-3, (radius, sd)
        assert ((grad[0] * dirs).sum(-1) > 0.95).all()                     # points outward
    near = surface.neighbours((0.06 * dirs)[None], 8)
    assert torch.allclose(surface.signed_distance((0.06 * dirs)[None], near),
                          surface.signed_distance((0.06 * dirs)[None]), atol=1e-3)
    # A bound (a solid containing the object) wins outside itself; an obstacle (a table) is added.
    bounded = ObjectSurface(pts, normals, bound=lambda x: x[..., 0] - 0.02, obstacle=lambda x: x[..., 2] + 0.045)
    sd = bounded.signed_distance(torch.tensor([[[0.03, 0.0, 0.0], [0.0, 0.0, -0.06], [0.0, 0.03, 0.0]]],
                                              dtype=torch.float64))
    assert sd[0, 0] == pytest.approx(0.01, abs=1e-9)                  # inside the sphere, outside the bound
    assert sd[0, 1] == pytest.approx(-0.015, abs=1e-9)                # outside the sphere, inside the table
    assert sd[0, 2] < -0.015                                           # inside both: the sphere's depth
    with pytest.raises(ValueError, match="NaN"):
        ObjectSurface(pts * float("nan"), normals)


def test_surface_neighbours_are_the_nearest_points_nearest_first_and_survive_nan_queries():
    gen = torch.Generator().manual_seed(12)
    pts, normals = _sphere(gen, 300, 0.05)
    surface = ObjectSurface(pts, normals)
    x = 0.07 * torch.randn(4, 25, 3, generator=gen, dtype=torch.float64)
    near = surface.neighbours(x, 8)
    assert near.shape == (4, 25, 8) and near.dtype == torch.int64
    dist = torch.cdist(x, pts.expand(4, -1, -1))
    assert torch.equal(near, dist.topk(8, dim=-1, largest=False).indices)     # brute force: same, same order
    assert surface.neighbours(x[:1, :1], 1000).shape == (1, 1, 300)            # k capped at the point count
    x[0, 0] = float("nan")
    near = surface.neighbours(x, 8)
    assert near.min() >= 0 and near.max() < 300                                # a usable index, no crash
    assert torch.isnan(surface.signed_distance(x, near)[0, 0])                  # and the distance says so

def test_estimated_normals_point_outward():
    gen = torch.Generator().manual_seed(11)
    pts, normals = _sphere(gen, 400, 0.05, (0.5, 0.0, 0.2))
    est = estimate_normals(pts)
    assert ((est * normals).sum(-1) > 0.9).float().mean() > 0.97


def _cylinder_grasp(hand: HandChain):
    """A known good grasp: both fingertips on a cylinder (axis along y) that no hand point enters.

    Returns the grasp's points (P, 3), the fingertip rows, and the cylinder (centre xz, radius).
    """
    q = torch.tensor([[0.2, 0.2, 0.2, 0.5]], dtype=torch.float64)
    pts = hand.points(q)[0]
    tips = torch.tensor([int((hand.link_index == 3).nonzero().max()), int((hand.link_index == 5).nonzero().max())])
    xz = pts[:, [0, 2]]
    ta, tb = xz[tips[0]], xz[tips[1]]
    perp = torch.stack([(tb - ta)[1], -(tb - ta)[0]]) / (tb - ta).norm()
    centres = 0.5 * (ta + tb) + torch.linspace(-0.1, 0.1, 2001, dtype=torch.float64)[:, None] * perp
    radii = (centres - ta).norm(dim=-1)
    clear = (torch.cdist(centres, xz) - radii[:, None]).amin(-1) > -1e-4
    best = int(torch.where(clear & (radii < 0.08), radii, torch.zeros_like(radii)).argmax())
    return pts, tips, centres[best], float(radii[best])


def test_refinement_removes_penetration_and_keeps_fingertips_on_the_object(hand):
    gen = torch.Generator().manual_seed(12)
    pts, tips, centre, radius = _cylinder_grasp(hand)
    sd_true = lambda x: (x[..., [0, 2]] - centre).norm(dim=-1) - radius            # noqa: E731
    assert sd_true(pts).min() > -1e-4 and sd_true(pts[tips]).abs().max() < 1e-6     # a touching, clean grasp
    angle = torch.rand(400, generator=gen, dtype=torch.float64) * 2 * math.pi
    normals = torch.stack([torch.cos(angle), torch.zeros_like(angle), torch.sin(angle)], -1)
    obj = torch.stack([centre[0] + radius * normals[:, 0], torch.rand(400, generator=gen, dtype=torch.float64) * 0.13
                       - 0.07, centre[1] + radius * normals[:, 2]], -1)
    # A network's error: 20 mm Gaussian noise on every entry, biased 10 mm towards the object.
    exact = torch.cdist(pts[None], obj[None])
    noisy = (exact - 0.01 + 0.02 * torch.randn(8, *exact.shape[1:], generator=gen, dtype=torch.float64)).clamp_min(0)
    raw = recover_grasps(noisy, obj, hand)
    refined = refine_grasps(raw, hand, ObjectSurface(obj, normals))
    depth = lambda sol: torch.relu(-sd_true(sol.points)).amax(-1)                   # noqa: E731
    assert depth(raw.solution).min() > 0.005                                          # unrefined: every one penetrates
    assert depth(refined.solution).max() < 0.003
    assert sd_true(refined.solution.points[:, tips]).abs().max() < 0.01              # fingertips on the surface
    sol = refined.solution
    assert (sol.q >= hand.lower).all() and (sol.q <= hand.upper).all()
    assert torch.allclose(sol.q_full[:, 4], 0.7 * sol.q[:, 3])                        # the mimic coupling holds
    assert torch.allclose(hand.points(sol.q) @ sol.wrist_pose[:, :3, :3].transpose(-1, -2)
                          + sol.wrist_pose[:, None, :3, 3], sol.points)              # points are the FK's
    report = refined.refinement
    assert refined.unrefined is raw.solution and torch.equal(report.penetration_before_m > 0.005,
                                                             torch.ones(8, dtype=torch.bool))
    assert (report.penetration_after_m < 0.003).all()
    # recover_grasps with a surface runs the same refinement; without iterations nothing moves.
    again = recover_grasps(noisy, obj, hand, surface=ObjectSurface(obj, normals))
    assert torch.allclose(again.solution.points, sol.points)
    still = refine_grasps(raw, hand, ObjectSurface(obj, normals), RefineConfig(iterations=0))
    assert torch.allclose(still.solution.points, raw.solution.points, atol=1e-12)
    assert torch.allclose(still.solution.residual_m, raw.solution.residual_m, atol=1e-9)


def test_refinement_ranks_by_penetration_after_refinement(hand):
    gen = torch.Generator().manual_seed(13)
    pts, tips, centre, radius = _cylinder_grasp(hand)
    angle = torch.rand(300, generator=gen, dtype=torch.float64) * 2 * math.pi
    normals = torch.stack([torch.cos(angle), torch.zeros_like(angle), torch.sin(angle)], -1)
    obj = torch.stack([centre[0] + radius * normals[:, 0], torch.zeros_like(angle), centre[1] + radius * normals[:, 2]],
                      -1)
    obj[:, 1] = torch.rand(300, generator=gen, dtype=torch.float64) * 0.13 - 0.07
    exact = torch.cdist(pts[None], obj[None])
    noisy = (exact + 0.002 * torch.randn(2, *exact.shape[1:], generator=gen, dtype=torch.float64)).clamp_min(0)
    noisy[1] = (noisy[1] - 0.03).clamp_min(0)                       # the second sample: 3 cm too close everywhere
    refined = recover_grasps(noisy, obj, hand, surface=ObjectSurface(obj, normals))
    penetration = refined.refinement.penetration_after_m
    ranking = rank_candidates(refined, {"penetration_m": (100.0, lambda g: g.refinement.penetration_after_m)})
    assert ranking.order.tolist()[0] == 0 and penetration[0] < 0.002


def test_refinement_with_collision_points_clears_an_edge_between_the_sparse_rows(hand):
    """A small ball pokes through the palm between the rows' points (2 cm apart): the rows see no
    penetration, so the refinement leaves it; a denser collision chain of the same hand removes it."""
    dense = _two_finger_chain(palm_grid=17)
    q = torch.tensor([[0.3, 0.3, 0.3, 0.3]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(14)
    ball, normals = _sphere(gen, 400, 0.006, (0.0, 0.0, 0.0))        # centred on the palm's top layer
    sd_ball = lambda x: x.norm(dim=-1) - 0.006                         # noqa: E731
    assert sd_ball(hand.points(q)).min() > 0.005 and sd_ball(dense.points(q)).min() < -0.004
    exact = torch.cdist(hand.points(q), ball[None]).expand(2, -1, -1)
    raw = recover_grasps(exact, ball, hand)
    surface = ObjectSurface(ball, normals, bandwidth_m=0.003)
    alone = refine_grasps(raw, hand, surface)
    with_dense = refine_grasps(raw, hand, surface, collision=dense)

    def dense_depth(g):
        sol = g.solution
        world = dense.points(sol.q) @ sol.wrist_pose[:, :3, :3].transpose(-1, -2) + sol.wrist_pose[:, None, :3, 3]
        return torch.relu(-sd_ball(world)).amax(-1)

    assert (dense_depth(alone) > 0.0025).all() and (alone.refinement.penetration_after_m == 0).all()
    assert (dense_depth(with_dense) < 0.0015).all()
    assert (with_dense.refinement.penetration_before_m > 0.004).all()  # the report covers the dense points
    assert (with_dense.refinement.penetration_after_m < 0.0015).all()
    sol = with_dense.solution                                           # the rows are still the network's rows
    assert sol.points.shape == raw.solution.points.shape
    assert torch.allclose(hand.points(sol.q) @ sol.wrist_pose[:, :3, :3].transpose(-1, -2)
                          + sol.wrist_pose[:, None, :3, 3], sol.points)


def test_refine_config_refuses_bad_values():
    with pytest.raises(ValueError, match="iterations"):
        RefineConfig(iterations=-1)
    with pytest.raises(ValueError, match="contact_scale_m"):
        RefineConfig(contact_scale_m=0.0)
    with pytest.raises(ValueError, match="collision_active_points"):
        RefineConfig(collision_active_points=0)


def test_one_sided_surface_reads_a_thin_wall_from_the_side_a_point_is_on():
    # A 2 mm wall (a mug's): top side z = 2 mm facing +z, bottom side z = 0 facing -z, 4 mm grid.
    g = torch.arange(-0.04, 0.0401, 0.004, dtype=torch.float64)
    xy = torch.cartesian_prod(g, g)
    top = torch.cat([xy, torch.full((len(xy), 1), 0.002, dtype=torch.float64)], 1)
    bottom = torch.cat([xy, torch.zeros(len(xy), 1, dtype=torch.float64)], 1)
    points = torch.cat([top, bottom])
    normals = torch.cat([torch.tensor([[0.0, 0, 1]]).expand(len(xy), 3), torch.tensor([[0.0, 0, -1]]).expand(len(xy), 3)])
    above = torch.tensor([[[0.0011, 0.0007, 0.003], [0.0, 0.0, 0.0035], [0.0013, 0.0004, 0.004]]], dtype=torch.float64)
    true = torch.tensor([[0.001, 0.0015, 0.002]], dtype=torch.float64)                        # outside the wall
    inside = torch.tensor([[[0.001, 0.002, 0.001]]], dtype=torch.float64)
    blended = ObjectSurface(points, normals)
    sided = ObjectSurface(points, normals, one_sided=True)
    assert (blended.signed_distance(above, blended.neighbours(above, 8)) < 0).all()    # both sides blend: "inside"
    assert torch.allclose(sided.signed_distance(above, sided.neighbours(above, 8)), true, atol=2e-4)
    assert torch.allclose(sided.signed_distance(above), true, atol=2e-4)               # all points, not only k
    assert (sided.signed_distance(inside, sided.neighbours(inside, 8)) < 0).all()
    _, grad = sided.signed_distance_and_gradient(above, sided.neighbours(above, 8))
    assert torch.allclose(grad, torch.tensor([0.0, 0, 1], dtype=torch.float64).expand_as(grad), atol=1e-3)
