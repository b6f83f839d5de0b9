"""Shape completion: canonical frame, pose equivariance, learning on boxes, checkpoints, data, CLI, planner use."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from functional_grasp import cli
from grasp_planner.network.completion import (CompletionCheckpointError, CompletionConfig, CompletionNet,
                                              canonical_frame, complete_cloud, load_completion, save_completion)
from grasp_planner.network.completion_train import (CompletionDataError, CompletionTrainConfig, evaluate_completion,
                                                    load_completion_data, train_completion)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: A small completion network: the behaviours, not the shipped quality, are under test.
SMALL = CompletionConfig(input_points=128, output_points=256, width=64, code=64)
#: 200 steps at 3e-3 on 96 box views: over data/weight seeds 0-4 the validation completeness ended at
#: 0.62-0.70 x the view's own (8.0-9.9 mm vs 12.1-16.1 mm), the Chamfer at 0.25-0.31 x the untrained model's.
BOX_TRAIN = CompletionTrainConfig(steps=200, batch_size=8, learning_rate=3e-3, target_points=256, threads=1, seed=0)
BOX_FACES = [(axis, side) for axis in range(3) for side in (-1.0, 1.0)]


def asymmetric_cloud(rng: np.random.Generator, n: int = 400) -> np.ndarray:
    """(n, 3) float32 points with three distinct spreads and skewed along every axis (a unique canonical frame)."""
    return (rng.exponential(size=(n, 3)) * [0.05, 0.03, 0.015] + [0.5, 0.0, 0.1]).astype(np.float32)


def random_pose(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random rotation (3, 3) and translation (3,) metres."""
    return Rotation.random(random_state=rng).as_matrix(), rng.uniform(-0.3, 0.3, 3)


def _box_samples(rng, half, faces, count, R, t):
    """``count`` area-uniform points on the given faces of a box (half extents ``half``), posed by R, t."""
    areas = np.array([np.prod(np.delete(half, axis)) for axis, _ in faces])
    pick = rng.choice(len(faces), count, p=areas / areas.sum())
    local = rng.uniform(-1.0, 1.0, (count, 3)) * half
    normals = np.zeros((count, 3))
    for k, (axis, side) in enumerate(faces):
        local[pick == k, axis] = side * half[axis]
        normals[pick == k, axis] = side
    return local @ R.T + t, normals @ R.T


def box_views(rng: np.random.Generator, views: int, view_points: int = 256, surface_points: int = 512) -> dict:
    """The arrays of one completion data file for a random box: each view sees the 3 faces toward a random camera."""
    half = rng.uniform(0.015, 0.06, 3)
    out = {"views": [], "surface": [], "normals": []}
    for _ in range(views):
        R, t = random_pose(rng)
        t = t + [0.5, 0.0, 0.2]
        toward_camera = rng.normal(size=3)
        seen = [(axis, side) for axis, side in BOX_FACES if side * (R[:, axis] @ toward_camera) > 0]
        out["views"].append(_box_samples(rng, half, seen, view_points, R, t)[0])
        surface, normals = _box_samples(rng, half, BOX_FACES, surface_points, R, t)
        out["surface"].append(surface)
        out["normals"].append(normals)
    return {k: np.stack(v).astype(np.float32) for k, v in out.items()} | {"category": np.array("box")}


def write_box_data(folder: Path, boxes: int, seed: int, views: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(boxes):
        np.savez(folder / f"box_{i}.npz", **box_views(rng, views), seed=np.array(i))
    return folder


@pytest.fixture(scope="module")
def box_data(tmp_path_factory):
    """Train (24 boxes) and validation (6 other boxes) folders, 4 views each."""
    root = tmp_path_factory.mktemp("boxes")
    return write_box_data(root / "train", 24, seed=0), write_box_data(root / "val", 6, seed=1000)


@pytest.fixture(scope="module")
def small_completion(tmp_path_factory):
    """An untrained small completion model saved to a file."""
    torch.manual_seed(0)
    return save_completion(tmp_path_factory.mktemp("completion") / "small.safetensors", CompletionNet(SMALL))


def test_canonical_frame_is_a_rotation_that_forgets_the_pose():
    rng = np.random.default_rng(4)
    cloud = asymmetric_cloud(rng)
    moved = []
    for _ in range(8):
        R_pose, t = random_pose(rng)
        moved.append((cloud @ R_pose.T + t).astype(np.float32))
    clouds = torch.from_numpy(np.stack([cloud, *moved]))
    centre, R = canonical_frame(clouds)
    assert torch.allclose(R.transpose(1, 2) @ R, torch.eye(3).expand(9, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(9), atol=1e-5)
    local = (clouds - centre[:, None]) @ R
    assert (local[1:] - local[0]).abs().amax() < 1e-4                             # metres, every pose
    assert (clouds[1:] - clouds[0]).abs().amax(dim=(1, 2)).min() > 0.01            # the poses really differ


def test_completion_is_pose_equivariant_with_unit_normals():
    torch.manual_seed(1)
    net = CompletionNet(SMALL).eval()
    rng = np.random.default_rng(5)
    clouds = np.stack([asymmetric_cloud(rng, SMALL.input_points) for _ in range(3)])
    with torch.no_grad():
        pts, nrm = net(torch.from_numpy(clouds))
    assert pts.shape == nrm.shape == (3, SMALL.output_points, 3)
    assert torch.allclose(nrm.norm(dim=-1), torch.ones(3, SMALL.output_points), atol=1e-5)
    R, t = random_pose(rng)
    moved = torch.from_numpy((clouds[0] @ R.T + t).astype(np.float32))[None]       # same point order
    with torch.no_grad():
        moved_pts, moved_nrm = net(moved)
    R32, t32 = torch.from_numpy(R).float(), torch.from_numpy(t).float()
    assert (moved_pts[0] - (pts[0] @ R32.T + t32)).abs().amax() < 1e-4             # metres
    assert (moved_nrm[0] - nrm[0] @ R32.T).abs().amax() < 1e-4
    assert (pts[0] - pts[1]).abs().amax() > 1e-4                                    # the shape matters


def test_a_short_training_run_guesses_the_unseen_faces_of_boxes(box_data, tmp_path):
    train, val = (load_completion_data(f) for f in box_data)
    assert len(train) == 96 and len(val) == 24
    torch.manual_seed(BOX_TRAIN.seed)
    untrained = evaluate_completion(CompletionNet(SMALL), val)["all"]
    out = tmp_path / "boxes.safetensors"
    result = train_completion(train, SMALL, BOX_TRAIN, out, val=val, progress=False, log=lambda line: None)
    trained = result["validation"]["all"]
    assert trained["views"] == len(val)
    assert trained["chamfer_m"] < 0.5 * untrained["chamfer_m"]
    # The completion covers the whole box better than the view covers it: it guessed the unseen faces.
    assert trained["completeness_m"] < 0.9 * trained["view_completeness_m"]
    assert trained["chamfer_m"] < trained["view_completeness_m"]
    # The file holds the final model (not an earlier save), with its history beside it.
    reloaded, extra = load_completion(out)
    assert evaluate_completion(reloaded, val)["all"]["chamfer_m"] == pytest.approx(trained["chamfer_m"], rel=1e-5)
    assert extra["steps"] == BOX_TRAIN.steps
    history = json.loads(out.with_suffix(".json").read_text())["history"]
    assert history[-1]["step"] == BOX_TRAIN.steps


def test_checkpoint_round_trip_and_refusals(small_completion, tmp_path):
    from grasp_planner.network.checkpoint import save_checkpoint, write_safetensors_atomic
    from grasp_planner.network.completion import COMPLETION_FORMAT
    from grasp_planner.network.model import DRONetwork
    from test_grasp_predictor import TINY

    model, _ = load_completion(small_completion)
    path = save_completion(tmp_path / "again.safetensors", model, {"note": "round trip"})
    again, extra = load_completion(path)
    assert extra == {"note": "round trip"} and again.config == SMALL
    x = torch.from_numpy(asymmetric_cloud(np.random.default_rng(6), SMALL.input_points))[None]
    with torch.no_grad():
        for a, b in zip(model(x), again(x)):
            assert torch.equal(a, b)

    dro = save_checkpoint(tmp_path / "dro.safetensors", DRONetwork(TINY))
    with pytest.raises(CompletionCheckpointError, match="not a shape-completion checkpoint"):
        load_completion(dro)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 not a safetensors file" * 10)
    with pytest.raises(CompletionCheckpointError, match="not a readable .safetensors file"):
        load_completion(garbage)
    wider = CompletionNet(CompletionConfig(input_points=128, output_points=256, width=32, code=64)).state_dict()
    mismatched = write_safetensors_atomic(tmp_path / "mismatch.safetensors", wider, {
        "format": COMPLETION_FORMAT, "config": json.dumps(SMALL.to_dict()), "extra": "{}"})
    with pytest.raises(CompletionCheckpointError, match="weights do not fit its config"):
        load_completion(mismatched)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_completion(tmp_path / "missing.safetensors")


def test_bad_data_folders_name_the_problem(tmp_path):
    with pytest.raises(CompletionDataError, match="does not exist.*fgrasp completion data"):
        load_completion_data(tmp_path / "nothing")
    empty = tmp_path / "empty"
    empty.mkdir()
    np.savez(empty / "half_written.tmp.npz", **box_views(np.random.default_rng(0), 1))  # an interrupted write
    with pytest.raises(CompletionDataError, match="holds no .npz"):
        load_completion_data(empty)
    other = tmp_path / "other"
    other.mkdir()
    np.savez(other / "grasps.npz", points=np.zeros((10, 3)))
    with pytest.raises(CompletionDataError, match="grasps.npz is not a completion data file"):
        load_completion_data(other)
    mismatched = tmp_path / "mismatched"
    mismatched.mkdir()
    arrays = box_views(np.random.default_rng(0), 2)
    np.savez(mismatched / "box.npz", **(arrays | {"normals": arrays["normals"][:, :100]}))
    with pytest.raises(CompletionDataError, match="array shapes do not match"):
        load_completion_data(mismatched)


def test_cli_refuses_bad_input_and_trains_a_checkpoint(box_data, tmp_path, capsys):
    missing = tmp_path / "missing.safetensors"
    assert cli.main(["completion", "eval", "--checkpoint", str(missing), "--data", str(box_data[1])]) == 2
    assert f"error: shape-completion checkpoint {missing} does not exist" in capsys.readouterr().err
    out_dir = tmp_path / "data"
    assert cli.main(["completion", "data", "--category", "nosuch", "--out", str(out_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown category: nosuch" in err and "mug" in err
    assert not out_dir.exists()                                                      # nothing written

    ckpt = tmp_path / "ckpt" / "completion.safetensors"
    assert cli.main(["completion", "train", "--data", str(box_data[0]), "--val", str(box_data[1]), "--out", str(ckpt),
                     "--steps", "2", "--batch-size", "2", "--no-progress"]) == 0
    history = json.loads(ckpt.with_suffix(".json").read_text())
    assert [h["step"] for h in history["history"]] == [2] and history["train_views"] == 96
    model, extra = load_completion(ckpt)
    assert model.config == CompletionConfig() and extra["steps"] == 2
    assert "view alone" in capsys.readouterr().out                                 # the validation table
    assert cli.main(["completion", "eval", "--checkpoint", str(ckpt), "--data", str(box_data[1])]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("category") and table[1].split()[:2] == ["all", "24"]


def test_rendered_views_are_paired_with_the_surface_in_the_same_pose():
    from functional_grasp.completion_data import object_views

    arrays = object_views("mug", 3, 1, width=160, height=120, view_points=512, surface_points=4096)
    assert arrays["views"].shape == (1, 512, 3)
    assert arrays["surface"].shape == arrays["normals"].shape == (1, 4096, 3)
    assert str(arrays["category"]) == "mug" and int(arrays["seed"]) == 3
    assert np.allclose(np.linalg.norm(arrays["normals"], axis=-1), 1.0, atol=1e-4)
    tree = cKDTree(arrays["surface"][0])
    assert np.median(tree.query(arrays["views"][0])[0]) < 0.005                   # on the surface, metres
    # One view shows part of the mug only: much of the surface lies away from every view point.
    hidden = cKDTree(arrays["views"][0]).query(arrays["surface"][0])[0] > 0.01
    assert 0.2 < hidden.mean() < 0.9


def test_network_predictor_completes_the_cloud_for_its_surface(small_completion, tmp_path):
    from grasp_planner.grasp_predictor import NetworkPredictor, NetworkPredictorConfig
    from grasp_planner.hands import load_hand
    from grasp_planner.network.checkpoint import save_checkpoint
    from grasp_planner.network.model import DRONetwork
    from grasp_planner.object_model import build_object_proxy
    from test_grasp_predictor import HAND, TINY
    from test_grasp_synthesis import CAMERA_XYZ, visible_cylinder

    hand = load_hand(HAND)
    torch.manual_seed(0)
    dro = save_checkpoint(tmp_path / f"{HAND}.safetensors", DRONetwork(TINY))
    config = NetworkPredictorConfig(num_samples=2, reachability=False)
    predictor = NetworkPredictor(hand, dro, config, completion=small_completion)
    assert predictor.describe()["completion"] == str(Path(small_completion).resolve())

    cloud = visible_cylinder(n=1200)
    proxy = build_object_proxy(cloud, 0.0, np.asarray(CAMERA_XYZ))
    points = torch.from_numpy(cloud[::8]).float()
    surface = predictor.object_surface(points, proxy, predictor.completed_points(cloud))
    model, _ = load_completion(small_completion)
    completed, completed_normals = complete_cloud(model, cloud, config.seed)        # guessed from the whole cloud
    n = len(points)
    assert surface.points.shape == (n + SMALL.output_points, 3)
    assert torch.equal(surface.points[:n], points.double())
    assert np.allclose(surface.points[n:].numpy(), completed, atol=1e-6)
    assert torch.allclose(surface.normals.norm(dim=-1), torch.ones(len(surface.points), dtype=surface.normals.dtype))
    # The input points' normals face the same way as the nearest completed normal.
    nearest = cKDTree(completed).query(points.double().numpy())[1]
    assert ((surface.normals[:n].numpy() * completed_normals[nearest]).sum(-1) >= -1e-9).all()
    # Without the cloud (or without a model) the surface is the input points alone.
    assert predictor.object_surface(points, proxy).points.shape == (n, 3)
    plain = NetworkPredictor(hand, dro, config)
    assert plain.describe()["completion"] is None
    assert plain.object_surface(points, proxy).points.shape == (n, 3)
    assert not predictor.object_surface(points, proxy).one_sided and surface.one_sided

    with pytest.raises(FileNotFoundError, match="does not exist"):
        NetworkPredictor(hand, dro, config, completion=tmp_path / "missing.safetensors")

    # End to end: the candidates are ranked on the completed surface and say how deep they go into it
    # (an untrained network's grasps penetrate: none is dropped for it here).
    keep_all = NetworkPredictorConfig(num_samples=2, reachability=False, max_penetration_m=float("inf"))
    found = NetworkPredictor(hand, dro, keep_all, completion=small_completion).predict(
        cloud, proxy, max_results=2, camera_xyz=CAMERA_XYZ)
    assert len(found) == 2 and all(np.isfinite(c.info["surface_penetration_m"]) for c in found)
    plain_found = NetworkPredictor(hand, dro, keep_all).predict(cloud, proxy, max_results=2, camera_xyz=CAMERA_XYZ)
    assert plain_found and all("surface_penetration_m" not in c.info for c in plain_found)


def test_completed_points_the_camera_saw_as_free_are_dropped(small_completion, tmp_path, monkeypatch):
    import grasp_planner.network.completion as completion
    from grasp_planner.grasp_predictor import NetworkPredictor, NetworkPredictorConfig
    from grasp_planner.hands import load_hand
    from grasp_planner.network.checkpoint import save_checkpoint
    from grasp_planner.network.model import DRONetwork
    from grasp_planner.network.visibility import VisibleSurface
    from test_grasp_predictor import HAND, TINY
    from test_grasp_synthesis import CAMERA_XYZ, visible_cylinder

    torch.manual_seed(0)
    dro = save_checkpoint(tmp_path / f"{HAND}.safetensors", DRONetwork(TINY))
    predictor = NetworkPredictor(load_hand(HAND), dro, NetworkPredictorConfig(num_samples=2, reachability=False),
                                 completion=small_completion)
    cloud = visible_cylinder(n=1200)
    camera = np.asarray(CAMERA_XYZ, dtype=float)
    rays = cloud[::10] - camera
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    behind, in_front = cloud[::10] + 0.01 * rays, cloud[::10] - 0.01 * rays
    beside = cloud[::10] + np.array([0.0, 0.0, 0.5])                  # far above: off the object's silhouette
    guess = np.concatenate([behind, in_front, beside])
    monkeypatch.setattr(completion, "complete_cloud", lambda model, c, seed=0: (guess, np.tile([1.0, 0, 0], (len(guess), 1))))
    kept, normals = predictor.completed_points(cloud, VisibleSurface(cloud, camera))
    assert len(kept) == len(normals) and len(kept) >= 0.9 * len(behind)
    assert cKDTree(behind).query(kept)[0].max() < 1e-12               # only points the camera could not see
    assert len(predictor.completed_points(cloud)[0]) == len(guess)    # without the camera, all are kept


def test_planner_warns_and_plans_without_an_unusable_completion_checkpoint(tmp_path):
    from grasp_planner.grasp_predictor import NetworkPredictor, make_grasp_predictor
    from grasp_planner.grasp_synthesis import GraspSynthesizer
    from grasp_planner.hands import load_hand
    from grasp_planner.network.checkpoint import save_checkpoint
    from grasp_planner.network.model import DRONetwork
    from test_grasp_predictor import HAND, TINY

    hand = load_hand(HAND)
    dro = save_checkpoint(tmp_path / f"{HAND}.safetensors", DRONetwork(TINY))
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    for bad, why in ((tmp_path / "missing.safetensors", "does not exist"),
                     (tmp_path / "junk.safetensors", "not a readable")):
        warnings: list[str] = []
        predictor = make_grasp_predictor("network", hand, GraspSynthesizer(hand), dro, warn=warnings.append,
                                         completion=bad)
        assert isinstance(predictor, NetworkPredictor) and predictor.describe()["completion"] is None
        assert len(warnings) == 1 and "completion_checkpoint" in warnings[0] and why in warnings[0]
