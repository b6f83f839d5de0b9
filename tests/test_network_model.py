"""The D(R,O) network: config, forward shapes per ablation, losses, a short training run, checkpoints."""
from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from grasp_planner.network.checkpoint import CheckpointMismatchError, load_checkpoint, read_header, save_checkpoint
from grasp_planner.network.config import NetworkConfig
from grasp_planner.network.encoders import ImageEncoder, pixel_coords
from grasp_planner.network.losses import (dro_loss, ground_truth_distances, importance_kl, make_link_pose_loss,
                                          penetration_depth, predicted_hand_points)
from grasp_planner.network.model import DROBatch, DRONetwork, DROOutput
from grasp_planner.network.recovery import axis_angle_to_matrix
from grasp_planner.network.sampling import importance_target



pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = NetworkConfig(hand="testhand", hand_points=32, object_points=64, sampled_object_points=32, knn_k=8,
                     edge_channels=(16, 16), feature_dim=16, attention_heads=4, latent_dim=8,
                     decoder_widths=(16, 8, 1), image_size=(16, 16), image_channels=(8, 8), image_feature_dim=8,
                     local_k=8, density_k=4)


def _scenes(config: NetworkConfig, n: int, seed: int) -> DROBatch:
    """n synthetic scenes: ellipsoid-ish object clouds, one hand point set placed rigidly beside each."""
    gen = torch.Generator().manual_seed(seed)
    hand = torch.randn(config.hand_points, 3, generator=gen) * 0.03
    d = torch.randn(n, config.object_points, 3, generator=gen)
    axes = 0.03 + 0.05 * torch.rand(n, 1, 3, generator=gen)
    obj = d / d.norm(dim=-1, keepdim=True) * axes + 0.02 * torch.randn(n, 1, 3, generator=gen)
    rot = axis_angle_to_matrix(torch.randn(n, 3, generator=gen))
    offset = obj.mean(1) + torch.tensor([0.08, 0.0, 0.0])
    grasp = hand @ rot.transpose(-1, -2) + offset[:, None]
    h, w = config.image_size
    uv = torch.rand(n, config.object_points, 2, generator=gen) * torch.tensor([w - 1.0, h - 1.0])
    return DROBatch(object_points=obj, hand_points=hand, image=torch.rand(n, 3, h, w, generator=gen),
                    pixel_uv=uv, hand_points_grasp=grasp)


def test_config_validates_round_trips_and_lists_differences():
    assert NetworkConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="sampled_object_points"):
        dataclasses.replace(TINY, sampled_object_points=65)
    with pytest.raises(ValueError, match="divisible"):
        dataclasses.replace(TINY, feature_dim=18)
    with pytest.raises(ValueError, match="end in 1"):
        dataclasses.replace(TINY, decoder_widths=(16, 4))
    with pytest.raises(ValueError, match="URL"):
        dataclasses.replace(TINY, image_encoder_checkpoint="https://example.invalid/w.safetensors")
    with pytest.raises(ValueError, match="unknown network config keys"):
        NetworkConfig.from_dict({**TINY.to_dict(), "dropout": 0.1})
    assert dataclasses.replace(TINY, latent_dim=4).differences(TINY) == {"latent_dim": (4, 8)}


@pytest.mark.parametrize("use_image,use_importance,use_local", list(itertools.product([True, False], repeat=3)))
def test_forward_shapes_for_every_ablation(use_image, use_importance, use_local):
    config = dataclasses.replace(TINY, use_image=use_image, use_importance_sampling=use_importance,
                                 use_local_attention=use_local)
    model = DRONetwork(config)
    batch = _scenes(config, 2, seed=0)
    out = model(batch)                                              # training: posterior latent
    assert out.distances.shape == (2, 1, 32, 32) and (out.distances >= 0).all()
    assert out.mu.shape == (2, 8) and out.object_indices.shape == (2, 32)
    assert (out.importance_logits is not None) == use_importance
    picked = batch.object_points.gather(1, out.object_indices[..., None].expand(-1, -1, 3))
    assert torch.allclose(out.object_points, picked)
    assert hasattr(model, "image_encoder") == use_image
    model.eval()
    with torch.no_grad():
        prior = model(dataclasses.replace(batch, hand_points_grasp=None), num_samples=5)
    assert prior.distances.shape == (2, 5, 32, 32) and prior.mu is None
    # Different latent samples give different grasps.
    assert (prior.distances[:, 0] - prior.distances[:, 1]).abs().max() > 0


def test_forward_refuses_bad_input_with_reasons():
    model = DRONetwork(TINY)
    batch = _scenes(TINY, 1, seed=1)
    with pytest.raises(ValueError, match="use_image"):
        model(dataclasses.replace(batch, image=None))
    with pytest.raises(ValueError, match="hand_points must be"):
        model(dataclasses.replace(batch, hand_points=torch.zeros(31, 3)))
    with pytest.raises(ValueError, match="at least"):
        model(dataclasses.replace(batch, object_points=batch.object_points[:, :20], pixel_uv=batch.pixel_uv[:, :20]))
    bad = batch.object_points.clone()
    bad[0, 3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(dataclasses.replace(batch, object_points=bad))


def test_importance_target_peaks_where_the_hand_touches_and_kl_is_zero_at_the_target():
    obj = torch.tensor([[[0.0, 0, 0], [0.1, 0, 0], [0.2, 0, 0]]])
    hand = torch.tensor([[[0.2, 0.005, 0]]])
    p = importance_target(obj, hand, temperature_m=0.02)
    assert p.argmax().item() == 2 and torch.allclose(p.sum(), torch.tensor(1.0))
    assert importance_kl(p.log(), p).abs() < 1e-6
    assert importance_kl(torch.zeros(1, 3), p) > 0.1


def test_pose_and_penetration_hooks_vanish_for_the_true_matrix():
    batch = _scenes(TINY, 2, seed=2)
    obj = batch.object_points[:, :32]
    true = ground_truth_distances(batch.hand_points_grasp, obj).unsqueeze(1).double()
    out = DROOutput(distances=true, object_indices=torch.arange(32).expand(2, -1), object_points=obj.double(),
                    importance_logits=None, mu=None, logvar=None)
    assert (predicted_hand_points(out) - batch.hand_points_grasp).abs().max() < 1e-4
    link_index = torch.arange(TINY.hand_points) // 8
    pose = make_link_pose_loss(batch.hand_points, link_index)
    assert pose(out, dataclasses.replace(batch, hand_points_grasp=batch.hand_points_grasp.double())) < 1e-6
    shifted = dataclasses.replace(out, distances=true + 0.01)
    assert pose(shifted, dataclasses.replace(batch, hand_points_grasp=batch.hand_points_grasp.double())) > 1e-4
    # Penetration: a point 1 cm inside a plane is 1 cm deep, one outside is 0.
    plane = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0]]])
    normals = torch.tensor([[[0.0, 0, 1], [0.0, 0, 1]]])
    depth = penetration_depth(torch.tensor([[[0.1, 0, -0.01], [0.9, 0, 0.02]]]), plane, normals)
    assert torch.allclose(depth, torch.tensor([[0.01, 0.0]]))


def _eval_l1(model: DRONetwork, batch: DROBatch) -> float:
    model.eval()
    with torch.no_grad():
        return dro_loss(model(batch), batch, model.config).terms["l1_m"]


def test_a_short_training_run_lowers_the_loss():
    torch.manual_seed(0)
    model = DRONetwork(TINY)
    data = _scenes(TINY, 8, seed=3)
    link_index = torch.arange(TINY.hand_points) // 8
    pose = make_link_pose_loss(data.hand_points, link_index)
    before = _eval_l1(model, data)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(40):
        idx = torch.arange(4) + 4 * (step % 2)
        batch = DROBatch(object_points=data.object_points[idx], hand_points=data.hand_points,
                         image=data.image[idx], pixel_uv=data.pixel_uv[idx],
                         hand_points_grasp=data.hand_points_grasp[idx])
        loss = dro_loss(model(batch), batch, TINY, pose_fn=pose)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
        assert set(loss.terms) == {"l1_m", "kl", "importance_kl", "pose", "total"}
    after = _eval_l1(model, data)
    assert after < 0.9 * before, (before, after)       # from INITIAL_DISTANCE_M everywhere, not from 0.69 m


def test_checkpoint_round_trips_and_refuses_other_hands_and_configs(tmp_path):
    model = DRONetwork(TINY).eval()
    path = save_checkpoint(tmp_path / "ckpt" / "net.safetensors", model, extra={"step": 12})
    assert not list(path.parent.glob("*.tmp"))
    loaded, extra = load_checkpoint(path, hand="testhand", expected_config=TINY)
    assert extra == {"step": 12} and loaded.config == TINY and not loaded.training
    batch = _scenes(TINY, 2, seed=4)
    with torch.no_grad():
        assert torch.equal(model(batch).distances, loaded(batch).distances)
    assert read_header(path)[0] == TINY
    with pytest.raises(CheckpointMismatchError, match="trained for hand 'testhand', not 'shadow'"):
        load_checkpoint(path, hand="shadow")
    with pytest.raises(CheckpointMismatchError, match="latent_dim: expected 16, checkpoint has 8"):
        load_checkpoint(path, expected_config=dataclasses.replace(TINY, latent_dim=16))
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_checkpoint(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a D\\(R,O\\) network checkpoint"):
        load_checkpoint(tmp_path / "other.safetensors")


def test_pretrained_image_encoder_loads_from_a_local_file_only(tmp_path):
    from safetensors.torch import save_file

    donor = ImageEncoder(TINY.image_channels, TINY.image_feature_dim)
    save_file(donor.state_dict(), str(tmp_path / "enc.safetensors"))
    config = dataclasses.replace(TINY, image_encoder_checkpoint=str(tmp_path / "enc.safetensors"),
                                 freeze_image_encoder=True)
    model = DRONetwork(config)
    loaded = model.image_encoder.state_dict()
    assert all(torch.equal(loaded[name], value) for name, value in donor.state_dict().items())
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        DRONetwork(dataclasses.replace(TINY, image_encoder_checkpoint=str(tmp_path / "nope.safetensors")))
    save_file({"head.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="does not match the image encoder"):
        DRONetwork(dataclasses.replace(TINY, image_encoder_checkpoint=str(tmp_path / "bad.safetensors")))


def test_image_features_follow_the_projected_pixel():
    encoder = ImageEncoder((8,), 4).eval()
    k = torch.tensor([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
    uv = pixel_coords(torch.tensor([[[0.0, 0.0, 1.0], [0.1, 0.05, 0.5]]]), k)
    assert torch.allclose(uv, torch.tensor([[[32.0, 24.0], [52.0, 34.0]]]))
    image = torch.zeros(1, 3, 48, 64)
    image[..., 30:40, 46:58] = 1.0                                   # a bright patch around the 2nd point
    with torch.no_grad():
        feats = encoder(image, uv)
        blank = encoder(torch.zeros_like(image), uv)
    change = (feats - blank).norm(dim=-1)[0]
    assert change[1] > 3 * change[0]                                  # the point on the patch sees it most


def _yaw(angle: float) -> torch.Tensor:
    c, s = torch.cos(torch.tensor(angle)), torch.sin(torch.tensor(angle))
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def test_geometric_decoder_matrices_are_distances_of_one_hand_placement():
    config = dataclasses.replace(TINY, decoder="geometric", use_image=False)
    model = DRONetwork(config).eval()
    batch = _scenes(config, 2, seed=5)
    with torch.no_grad():
        out = model(DROBatch(batch.object_points, batch.hand_points), num_samples=3)
    assert out.distances.shape == (2, 3, config.hand_points, config.sampled_object_points)
    # a realisable matrix: multilateration puts every hand point where its distances agree exactly
    hand = predicted_hand_points(out).reshape(2, 3, config.hand_points, 3)
    again = torch.cdist(hand, out.object_points.unsqueeze(1).expand(-1, 3, -1, -1))
    assert (again - out.distances).abs().max() < 2e-3                   # within the norm's 1 mm smoothing
    with pytest.raises(ValueError, match="decoder must be one of kernel, geometric"):
        dataclasses.replace(TINY, decoder="mlp")


def test_a_short_geometric_training_run_lowers_the_loss():
    config = dataclasses.replace(TINY, decoder="geometric", use_image=False, canonical_yaw=True)
    torch.manual_seed(0)
    model = DRONetwork(config)
    data = _scenes(config, 8, seed=3)
    data = DROBatch(data.object_points, data.hand_points, hand_points_grasp=data.hand_points_grasp)
    before = _eval_l1(model, data)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(40):
        loss = dro_loss(model(data), data, config)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    assert _eval_l1(model, data) < 0.8 * before


def test_canonical_yaw_makes_the_prediction_the_same_for_every_yaw_and_place():
    config = dataclasses.replace(TINY, decoder="geometric", use_image=False, canonical_yaw=True,
                                 use_importance_sampling=False)
    torch.manual_seed(1)
    model = DRONetwork(config).eval()
    obj = torch.randn(1, config.object_points, 3) * torch.tensor([0.1, 0.03, 0.02])
    obj[0, :10, 0] += 0.15                                                # asymmetric: a defined +x end
    hand = torch.randn(config.hand_points, 3) * 0.03
    moved = obj @ _yaw(2.1).T + torch.tensor([0.4, -0.2, 0.05])
    with torch.no_grad():
        torch.manual_seed(2)
        a = model(DROBatch(obj, hand), num_samples=2)
        torch.manual_seed(2)
        b = model(DROBatch(moved, hand), num_samples=2)
    assert torch.allclose(a.distances, b.distances, atol=1e-5)
    assert torch.allclose(b.object_points, moved.gather(1, b.object_indices[..., None].expand(-1, -1, 3)))
    # without canonicalisation the same network sees a different cloud
    plain = DRONetwork(dataclasses.replace(config, canonical_yaw=False)).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.manual_seed(2)
        c = plain(DROBatch(moved, hand), num_samples=2)
    assert not torch.allclose(a.distances, c.distances, atol=1e-3)


def test_yaw_augmentation_turns_object_and_grasp_together():
    import numpy as np

    from grasp_planner.network.data import rotate_about_vertical

    rng = np.random.default_rng(0)
    pts = rng.normal(size=(50, 3)) * 0.05 + [0.5, 0.1, 0.1]
    nrm = rng.normal(size=(50, 3))
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    wrist = np.eye(4)
    wrist[:3, 3] = [0.6, 0.1, 0.15]
    p2, n2, w2 = rotate_about_vertical(pts, nrm, wrist, 1.0)
    np.testing.assert_allclose(np.linalg.norm(p2 - w2[:3, 3], axis=1), np.linalg.norm(pts - wrist[:3, 3], axis=1))
    np.testing.assert_allclose(p2.mean(axis=0), pts.mean(axis=0), atol=1e-12)   # turned in place, on the table
    np.testing.assert_allclose(p2[:, 2], pts[:, 2])
    np.testing.assert_allclose((n2 * (p2 - w2[:3, 3])).sum(1), (nrm * (pts - wrist[:3, 3])).sum(1), atol=1e-12)
    np.testing.assert_allclose(w2[:3, :3] @ w2[:3, :3].T, np.eye(3), atol=1e-12)
