"""Network evaluation on held-out instances (``fgrasp eval --network``) and ``fgrasp augment``.

A tiny network (64 hand points, 128 object points) is trained for a few steps on a one-object
data-engine dataset: an OYMotion grasp on a hammer handle that the validator keeps. The real
predictor, recovery, ranking and MuJoCo validator run throughout; the collision geometry is the
convex hull (CoACD takes 6–50 s per object).
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from functional_grasp.augment import AugmentConfig, AugmentInputError, run_augment
from functional_grasp.cli import main
from functional_grasp.eval_stats import wilson_interval
from functional_grasp.net_deploy import HELDOUT_SEED_OFFSET, Deployer, DeployConfig, ObjectRef, Observation
from functional_grasp.net_eval import RESULTS_FILE, run_network_eval, summarize_records, summary_rows
from functional_grasp.train_data import convert_engine_dataset
from grasp_data.dataset import DatasetWriter, load_shard
from grasp_data.engine import object_seed
from grasp_data.objects import generate
from grasp_planner.grasp_synthesis import GraspCandidate
from grasp_planner.hands import load_hand
from grasp_planner.network.checkpoint import load_checkpoint, save_checkpoint
from grasp_planner.network.config import NetworkConfig
from grasp_planner.network.data import load_example_files
from grasp_planner.network.model import DRONetwork
from grasp_planner.network.train import TrainConfig, train
from test_grasp_data_engine import GOOD_Q, GOOD_ROOT_POSE, HAMMER_SEED

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HAND = "oymotion"
TINY = NetworkConfig(hand=HAND, hand_points=64, object_points=128, sampled_object_points=32, knn_k=8,
                     edge_channels=(8, 8), feature_dim=16, attention_heads=2, latent_dim=8, decoder_widths=(8, 1),
                     local_k=8, density_k=4, use_image=False)
FAST = DeployConfig(samples=2, collision="hull", surface_points=512, validation_threads=1)


def good_grasp_joints() -> dict[str, float]:
    """The kept hammer grasp's joints by name, followers recomputed from their leaders (the frozen
    values are rounded to 5 digits; example files require consistent couplings)."""
    hand = load_hand(HAND)
    by_name = dict(zip(hand.joint_names, GOOD_Q))
    return hand.expand({n: by_name[n] for n in hand.actuated_joints})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint, data-engine dataset): one hammer shard holding the kept GOOD grasp; the tiny
    network trained on it for two steps."""
    root = tmp_path_factory.mktemp("net_eval")
    torch.manual_seed(0)
    untrained = save_checkpoint(root / "untrained.safetensors", DRONetwork(TINY))
    deployer = Deployer(HAND, untrained, DeployConfig(validate="all", collision="hull", validation_threads=1))
    hammer = generate("hammer", HAMMER_SEED)
    validator = deployer.validator(hammer, "hammer")
    hand = load_hand(HAND)
    candidates = [GraspCandidate(GOOD_ROOT_POSE, np.zeros(3), {}, q, {}, {}, 0.0)
                  for q in (good_grasp_joints(), dict(zip(hand.joint_names, validator.q_open)))]
    grasps = deployer.grasps(candidates, np.eye(4))
    outcomes = validator.validate(grasps)
    assert [o.kept for o in outcomes] == [True, False]
    shard = deployer.shard(ObjectRef("train", "hammer", 0, HAMMER_SEED), hammer, grasps, outcomes, validator,
                           Observation(np.zeros((0, 3)), np.eye(4), None, None, []), {})
    data = root / "data"
    DatasetWriter(data, {"hand": HAND, "test": True}).write("hammer_00000", shard)
    examples = convert_engine_dataset(data, hand, root / "examples")
    assert len(examples) == 1
    result = train(root / "examples", TINY, TrainConfig(epochs=2, batch_size=1, validation_fraction=0.0),
                   root / "train", progress=False, log=lambda text: None, init_checkpoint=untrained)
    return result.checkpoint, data


def test_heldout_seeds_never_meet_data_engine_seeds():
    from functional_grasp.net_deploy import heldout_objects

    refs = heldout_objects(["drill", "hammer"], 50, seed=0)
    engine = {object_seed(s, c, i) for s in range(3) for c in ("drill", "hammer") for i in range(50)}
    assert all(r.seed >= HELDOUT_SEED_OFFSET for r in refs) and max(engine) < HELDOUT_SEED_OFFSET
    assert len({r.seed for r in refs}) == 100 and not {r.seed for r in refs} & engine
    assert heldout_objects(["drill"], 2, seed=1) != heldout_objects(["drill"], 2, seed=0)


def test_eval_reports_per_category_rates_and_intervals_of_its_outcomes(trained, tmp_path):
    checkpoint, _ = trained
    results = run_network_eval(checkpoint, HAND, ["hammer", "mug"], 2, FAST, tmp_path, progress=False)
    on_disk = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert on_disk["per_category"] == results["per_category"] and not on_disk["interrupted"]
    records = on_disk["objects"]
    assert [r["category"] for r in records] == ["hammer", "hammer", "mug", "mug"]
    assert all(r["seed"] >= HELDOUT_SEED_OFFSET and r["split"] == "unseen" for r in records)
    for category in ("hammer", "mug"):
        mine = [r for r in records if r["category"] == category]
        block = on_disk["per_category"][category]
        assert block["hand"] == HAND and block["objects"] == 2
        for key in ("stable", "stable_functional"):
            k = sum(r[key] for r in mine)
            assert block[key]["successes"] == k and block[key]["ci95"] == pytest.approx(list(wilson_interval(k, 2)))
        failed = [r["outcome"] for r in mine if r["outcome"] != "success"]
        assert sum(block["failures"].values()) == len(failed) == 2 - block["stable_functional"]["successes"]
        for r in mine:                         # a judged top grasp carries the validator's verdict
            assert r["outcome"] in ("no_grasp", "success") or r["top"]["reason"].split(":")[0] == r["outcome"]
    assert on_disk["overall"]["objects"] == 4


def test_wrong_hand_and_missing_checkpoints_are_refused_with_exit_2(trained, tmp_path, capsys):
    checkpoint, data = trained
    out = tmp_path / "eval"
    assert main(["eval", "--network", str(checkpoint), "--hand", "shadow", "--category", "hammer",
                 "--objects", "1", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"trained for hand '{HAND}', not 'shadow'" in err and not (out / RESULTS_FILE).exists()
    assert main(["eval", "--network", str(tmp_path / "none.safetensors"), "--hand", HAND, "--category", "hammer",
                 "--out", str(out)]) == 2
    assert "network checkpoint not found" in capsys.readouterr().err
    assert main(["augment", "--checkpoint", str(tmp_path / "none.safetensors"), "--data", str(data), "--hand", HAND,
                 "--category", "hammer", "--out", str(tmp_path / "aug")]) == 2
    assert "network checkpoint not found" in capsys.readouterr().err
    assert main(["augment", "--checkpoint", str(checkpoint), "--data", str(data), "--hand", "shadow",
                 "--category", "hammer", "--out", str(tmp_path / "aug")]) == 2
    assert "not 'shadow'" in capsys.readouterr().err and not (tmp_path / "aug" / "augment.json").exists()


def test_augment_keeps_passing_grasps_retrains_and_reports_before_after(trained, tmp_path, monkeypatch):
    """The network's own candidates are judged as they come; on the training hammer the known-good
    grasp is put first among them, so the keep → shard → examples → fine-tune path has a grasp to keep."""
    checkpoint, data = trained
    hand = load_hand(HAND)
    observe, init = Deployer.observe, Deployer.__init__
    seen = {}

    def observe_and_note(self, instance, rng):
        obs = observe(self, instance, rng)
        seen.update(good=instance.seed == HAMMER_SEED, T=obs.T_world_object)
        return obs

    def init_with_good_first(self, *args, **kwargs):
        init(self, *args, **kwargs)
        network_predict = self.predictor.predict

        def with_good(cloud, proxy, max_results, image=None, pixel_uv=None, camera_xyz=None):
            out = network_predict(cloud, proxy, max_results, image, pixel_uv, camera_xyz)
            good = GraspCandidate(seen["T"] @ GOOD_ROOT_POSE, np.zeros(3), {}, good_grasp_joints(), {}, {}, 0.0)
            return [good, *out] if seen["good"] else out
        self.predictor.predict = with_good

    monkeypatch.setattr(Deployer, "observe", observe_and_note)
    monkeypatch.setattr(Deployer, "__init__", init_with_good_first)
    out = tmp_path / "aug"
    config = AugmentConfig(checkpoint=checkpoint, data=data, hand=HAND, categories=("hammer",), train_objects=1,
                           unseen_objects=1, rounds=1, out=out, deploy=FAST, epochs=1, batch_size=1)
    results = run_augment(config, progress=False, log=lambda text: None)

    shard = load_shard(out / "round_1" / "deploy" / "shards" / "train_hammer_00000.npz")
    assert shard["grasp_kept"][0] and shard["grasp_reason"][0] == "ok" and len(shard["grasp_kept"]) == 3
    assert np.allclose(shard["grasp_root_pose"][0], GOOD_ROOT_POSE, atol=1e-9)   # back in the object frame
    added = load_example_files(out / "examples" / "round_1", hand)
    assert sum(len(f.q) for f in added) == results["rounds"][0]["kept_grasps"]["train"] + \
        results["rounds"][0]["kept_grasps"]["unseen"] >= 1
    new = out / "round_1" / "train" / "last.safetensors"
    model, _ = load_checkpoint(new, hand=HAND, expected_config=TINY)
    old, _ = load_checkpoint(checkpoint, hand=HAND)
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), old.state_dict().values()))

    before, after = results["success"][0], results["success"][-1]
    assert before["train"]["per_category"]["hammer"]["stable_functional"]["successes"] == 1
    for summary, folder in ((before, "round_1/deploy"), (after, "eval_round_1")):
        records = json.loads((out / folder / "records.json").read_text())["records"]
        for split in ("train", "unseen"):
            k = sum(r["stable_functional"] for r in records.values() if r["split"] == split)
            assert summary[split]["overall"]["stable_functional"]["successes"] == k
    table = (out / "table.md").read_text()
    assert "| train | hammer | 1 | 100.0 % [20.7, 100.0] |" in table and "| unseen | hammer | 1 |" in table

    # Re-running continues: nothing is redone, the same checkpoint is reported.
    sha = results["rounds"][0]["checkpoint_sha256"]
    again = run_augment(config, progress=False, log=lambda text: None)
    assert again["rounds"][0]["checkpoint_sha256"] == sha and again["success"] == results["success"]
    with pytest.raises(AugmentInputError, match="other settings"):
        run_augment(replace(config, epochs=3), progress=False, log=lambda text: None)


def test_eval_cli_switches_refinement_and_closure(trained, tmp_path):
    checkpoint, _ = trained
    common = ["eval", "--network", str(checkpoint), "--hand", HAND, "--category", "hammer", "--objects", "1",
              "--samples", "2", "--collision", "hull", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "on")]) == 0
    assert main([*common, "--refine-iterations", "0", "--no-closure", "--out", str(tmp_path / "off")]) == 0
    on, off = (json.loads((tmp_path / name / RESULTS_FILE).read_text()) for name in ("on", "off"))
    assert (on["deploy"]["refine_iterations"], on["deploy"]["close_fingers"]) == (15, True)
    assert (off["deploy"]["refine_iterations"], off["deploy"]["close_fingers"]) == (0, False)
    top_on, top_off = on["objects"][0]["top"], off["objects"][0]["top"]
    assert "fingers_touching" in top_on and "refine_penetration_after_m" in top_on
    assert "fingers_touching" not in top_off and "refine_penetration_after_m" not in top_off
    # Collision points: recorded with the run, and the refinement's report covers them (at least as deep).
    assert main([*common, "--collision-points", "512", "--refine-margin-mm", "3", "--out", str(tmp_path / "dense")]) == 0
    dense = json.loads((tmp_path / "dense" / RESULTS_FILE).read_text())
    assert (dense["deploy"]["collision_points"], dense["deploy"]["refine_margin_m"]) == (512, 0.003)
    assert on["deploy"]["collision_points"] == 0
    assert "refine_penetration_before_m" in dense["objects"][0]["top"]


def test_optimiser_baseline_is_judged_on_the_same_instances(trained, tmp_path):
    checkpoint, _ = trained
    net = run_network_eval(checkpoint, HAND, ["mug"], 1, FAST, tmp_path / "net", progress=False)
    base = run_network_eval(checkpoint, HAND, ["mug"], 1, replace(FAST, backend="optimiser"), tmp_path / "opt",
                            progress=False)
    assert base["deploy"]["backend"] == "optimiser" and net["deploy"]["backend"] == "network"
    assert [r["seed"] for r in base["objects"]] == [r["seed"] for r in net["objects"]]
    top = base["objects"][0].get("top", {})
    assert "fingers_in_contact" in top or base["objects"][0]["outcome"] == "no_grasp"   # the optimiser's own info
    with pytest.raises(ValueError, match="backend must be network or optimiser"):
        replace(FAST, backend="ransac")


def _record(category: str, outcome: str, reason: str) -> dict:
    """A deployment record of a judged top grasp (only the fields the summary reads)."""
    ok = outcome == "success"
    return {"name": f"{category}_{reason}", "category": category, "outcome": outcome, "stable": ok,
            "stable_functional": ok, "validated": 1, "kept": int(ok), "held": int(ok), "top": {"reason": reason}}


def test_summary_names_the_finger_that_misses_its_functional_part():
    # The summary says which designated finger misses (a syringe's thumb off the plunger) and which
    # avoidance region a hand touched, not only how many grasps failed the functional test.
    records = [_record("syringe", "functional_miss", "functional_miss:thumb"),
               _record("syringe", "functional_miss", "functional_miss:thumb"),
               _record("syringe", "functional_miss", "functional_miss:index"),
               _record("syringe", "avoid_contact", "avoid_contact:needle"),
               _record("syringe", "displaced", "displaced:+y"),
               _record("mug", "success", "ok")]
    summary = summarize_records(records, HAND)
    syringe = summary["per_category"]["syringe"]
    assert syringe["failures"] == {"avoid_contact": 1, "displaced": 1, "functional_miss": 3}
    assert syringe["failure_detail"] == {"avoid_contact": {"needle": 1}, "functional_miss": {"index": 1, "thumb": 2}}
    assert summary["per_category"]["mug"]["failure_detail"] == {}
    rows = {row[0]: row[-1] for row in summary_rows(summary)}
    assert rows["syringe"] == "avoid_contact 1 (needle 1), displaced 1, functional_miss 3 (index 1, thumb 2)"
    assert rows["mug"] == "-"


def test_summary_compares_the_simulated_check_with_the_judge():
    # How far a user can trust the planner's check: of the top grasps it passed, how many the judge held.
    records = [_record("mug", "success", "ok"), _record("mug", "success", "ok"),
               _record("mug", "no_contact", "no_contact"), _record("mug", "displaced", "displaced:+x")]
    for r, held in zip(records, (True, False, True, False)):
        r["top"]["sim_check_held"] = held
    check = summarize_records(records, HAND)["overall"]["sim_check"]
    assert check == {"checked": 4, "held_on_estimate": 2, "held_on_estimate_and_stable": 1,
                     "stable_not_held_on_estimate": 1}
    assert "sim_check" not in summarize_records([_record("mug", "success", "ok")], HAND)["overall"]


def test_judge_all_reports_best_of_k_and_every_candidates_terms(trained, tmp_path, capsys):
    # What a perfect ranking would reach, and the data to study the ranking with: every candidate's
    # ranking terms (with the render's camera: the free-space terms) next to its verdict.
    checkpoint, _ = trained
    assert main(["eval", "--network", str(checkpoint), "--hand", HAND, "--category", "mug", "--objects", "2",
                 "--samples", "3", "--view", "partial", "--collision", "hull", "--judge-all", "--no-progress",
                 "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert results["deploy"]["validate"] == "all"
    judged_objects = [r for r in results["objects"] if r["validated"]]
    assert judged_objects
    for r in judged_objects:
        judged = r["judged"]
        assert len(judged) == r["validated"] == r["candidates"]
        assert [j["rank"] for j in judged] == list(range(len(judged)))
        assert all(a["cost"] <= b["cost"] for a, b in zip(judged, judged[1:]))          # best first
        assert judged[0]["reason"] == r["top"]["reason"] and judged[0]["stable"] == r["stable"]
        assert all({"hidden_points", "near_points", "penetration_m", "finger_distance_m"} <= set(j) for j in judged)
        assert sum(j["stable"] for j in judged) == r["held"] and sum(j["kept"] for j in judged) == r["kept"]
    best = results["overall"]["best_of_k"]
    assert best["stable"]["successes"] == sum(r["held"] > 0 for r in results["objects"])
    assert best["stable"]["successes"] >= results["overall"]["stable"]["successes"]
    assert "best of 3 (every candidate judged): stable" in capsys.readouterr().out


def test_oracle_true_matrices_reproduce_the_kept_grasp_through_recovery(trained, tmp_path, capsys):
    """`--oracle DATASET`: the recovery gets the true matrix of the dataset's kept hammer grasp; without
    refinement, closure and standoff it rebuilds that grasp, which the judge keeps again."""
    checkpoint, data = trained
    common = ["eval", "--network", str(checkpoint), "--hand", HAND, "--oracle", str(data), "--category", "hammer",
              "--objects", "1", "--samples", "3", "--view", "partial", "--collision", "hull", "--judge-all",
              "--no-progress", "--standoff-mm", "0"]
    assert main([*common, "--refine-iterations", "0", "--no-closure", "--out", str(tmp_path / "raw")]) == 0
    raw = json.loads((tmp_path / "raw" / RESULTS_FILE).read_text())
    record = raw["objects"][0]
    assert raw["oracle"] == str(data) and record["name"] == "oracle_hammer_00000" and record["seed"] == HAMMER_SEED
    assert record["validated"] == 1 and record["kept"] == 1 and record["stable_functional"]   # one distinct grasp
    assert record["top"]["fit_residual_m"] < 1e-6
    assert record["top"]["oracle_moved_m"] < 1e-6 and record["top"]["oracle_turned_deg"] < 1e-3
    assert "oracle: 1/1 true grasps (100.0 %)" in capsys.readouterr().out
    # Without --standoff-mm the OYMotion hand's own standoff backs the rebuilt grasp off 4 mm.
    assert main([*common[:-2], "--refine-iterations", "0", "--no-closure", "--out", str(tmp_path / "off")]) == 0
    top = json.loads((tmp_path / "off" / RESULTS_FILE).read_text())["objects"][0]["top"]
    assert top["oracle_moved_m"] == pytest.approx(0.004, abs=1e-6) and top["standoff_m"] == 0.004


def test_oracle_offset_shifts_the_true_grasp_by_the_given_distance(trained, tmp_path, capsys):
    checkpoint, data = trained
    common = ["eval", "--network", str(checkpoint), "--hand", HAND, "--oracle", str(data), "--category", "hammer",
              "--objects", "1", "--samples", "2", "--view", "partial", "--collision", "hull", "--no-progress",
              "--refine-iterations", "0", "--no-closure", "--standoff-mm", "0"]
    assert main([*common, "--oracle-offset-m", "0.02", "--out", str(tmp_path / "shifted")]) == 0
    top = json.loads((tmp_path / "shifted" / RESULTS_FILE).read_text())["objects"][0]["top"]
    assert top["oracle_moved_m"] == pytest.approx(0.02, abs=1e-6) and top["oracle_turned_deg"] < 1e-3
    assert "true grasps shifted by 20 mm" in capsys.readouterr().out
    assert main([*common, "--oracle-offset-m", "-0.01", "--out", str(tmp_path / "bad")]) == 2
    assert ">= 0" in capsys.readouterr().err


def test_true_matrix_model_cycles_the_given_grasps_over_the_samples(trained):
    from functional_grasp.net_oracle import TrueMatrixModel
    from grasp_planner.network.model import DROBatch

    checkpoint, _ = trained
    model, _ = load_checkpoint(checkpoint, hand=HAND)
    oracle = TrueMatrixModel(model)
    cloud = torch.rand(1, TINY.object_points, 3)
    hand_input = torch.rand(TINY.hand_points, 3)
    with pytest.raises(RuntimeError, match="hand_points"):
        oracle(DROBatch(object_points=cloud, hand_points=hand_input), num_samples=3)
    oracle.hand_points = torch.rand(2, TINY.hand_points, 3, dtype=torch.float64)
    out = oracle(DROBatch(object_points=cloud, hand_points=hand_input), num_samples=3)
    assert out.distances.shape == (1, 3, TINY.hand_points, TINY.sampled_object_points)
    true = torch.cdist(oracle.hand_points, out.object_points[0].double().expand(2, -1, -1)).float()
    assert torch.allclose(out.distances[0, 0], true[0]) and torch.allclose(out.distances[0, 1], true[1])
    assert torch.equal(out.distances[0, 2], out.distances[0, 0])


def test_oracle_refuses_a_folder_that_is_not_a_dataset_and_the_optimiser_baseline(trained, tmp_path, capsys):
    checkpoint, data = trained
    common = ["eval", "--network", str(checkpoint), "--hand", HAND, "--category", "hammer", "--objects", "1",
              "--collision", "hull", "--no-progress", "--out", str(tmp_path / "o")]
    assert main([*common, "--oracle", str(tmp_path)]) == 2
    assert "not a data-engine dataset" in capsys.readouterr().err
    assert main([*common, "--oracle", str(data), "--baseline-optimiser"]) == 2
    assert "--baseline-optimiser" in capsys.readouterr().err


@pytest.mark.parametrize("degrees", [0.0, 1e-6, 0.2, 90.0, 179.0])
def test_rotation_angle_is_exact_from_zero_to_half_a_turn(degrees):
    from scipy.spatial.transform import Rotation

    from functional_grasp.net_oracle import rotation_angle_deg

    matrix = Rotation.from_rotvec(np.radians(degrees) * np.array([0.6, -0.8, 0.0])).as_matrix()
    assert rotation_angle_deg(matrix) == pytest.approx(degrees, abs=1e-9)
