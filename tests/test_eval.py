"""``fgrasp eval``: statistics, trial poses, results.json, bad input, ungraspable objects."""
from __future__ import annotations

import json

import pytest
import trimesh

from functional_grasp.cli import main
from functional_grasp.eval import (EvalConfig, EvalInputError, PreparedObject, make_tasks, prepare_objects,
                                   run_eval)
from functional_grasp.eval_stats import summarize, wilson_interval
from functional_grasp.eval_trial import FAILURE_REASONS, TrialTask, classify_plan_failure, run_trial
from sim_bridge.objects import OBJECTS


@pytest.fixture()
def restore_catalogue(tmp_path, monkeypatch):
    monkeypatch.setenv("FGRASP_CACHE_DIR", str(tmp_path / "cache"))
    before = dict(OBJECTS)
    yield
    OBJECTS.clear()
    OBJECTS.update(before)


def test_wilson_interval_matches_reference_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="0..n"):
        wilson_interval(3, 2)


def test_trial_poses_depend_only_on_seed_object_and_trial():
    config = EvalConfig(objects=("mug",), trials=5, seed=7, xy_jitter_m=0.04)
    mug = make_tasks(config, [PreparedObject("mug", "catalogue")])
    both = make_tasks(config, [PreparedObject("box", "catalogue"), PreparedObject("mug", "catalogue")])
    assert mug == [t for t in both if t.object == "mug"]      # adding an object changes no mug pose
    assert len({t.yaw_rad for t in mug}) == 5
    assert all(abs(t.xy[0] - 0.5) <= 0.04 and abs(t.xy[1]) <= 0.04 for t in mug)
    other = make_tasks(EvalConfig(objects=("mug",), trials=5, seed=8), [PreparedObject("mug", "catalogue")])
    assert [t.yaw_rad for t in other] != [t.yaw_rad for t in mug]


def test_plan_failures_are_classified_by_stage():
    assert classify_plan_failure("all 2 candidates failed", ["candidate 0: IK unreachable",
                                                             "candidate 1: IK joint limits"]) == "ik_unreachable"
    assert classify_plan_failure("all 2 candidates failed", ["candidate 0: IK unreachable",
                                                             "candidate 1: motion collision with table"]) == "motion_failed"
    assert classify_plan_failure("no grasp candidate: ...", []) == "no_grasp"
    assert classify_plan_failure("object model: too few points", []) == "no_grasp"


def test_summary_counts_and_functional_only_where_regions_are_known():
    trials = [{"object": "a", "outcome": "success", "success": True, "held": True, "timings_s": {"perception": 0.1}},
              {"object": "a", "outcome": "dropped", "success": False, "held": False, "timings_s": {"perception": 0.3}},
              {"object": "b", "outcome": "not_functional", "success": False, "held": True, "timings_s": {}}]
    s = summarize(trials, functional_objects=["b"])
    assert s["stable"]["successes"] == 2 and s["stable"]["trials"] == 3
    assert s["stable_functional"]["successes"] == 0 and s["stable_functional"]["trials"] == 1
    assert s["failures"]["dropped"] == 1 and s["failures"]["not_functional"] == 1
    assert s["latency"]["perception"]["n"] == 2 and s["latency"]["perception"]["median_s"] == pytest.approx(0.2)
    assert summarize(trials[:2])["stable_functional"] is None


def test_tiny_eval_writes_well_formed_results(tmp_path):
    config = EvalConfig(objects=("box",), trials=2, seed=3, out_dir=tmp_path / "ev", camera_width=320,
                        camera_height=240)
    results = run_eval(config, progress=False)
    on_disk = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert on_disk["schema"] == 1 and on_disk["complete"] is True
    assert (tmp_path / "ev" / "gallery.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [(t["object"], t["trial"]) for t in on_disk["trials"]] == [("box", 0), ("box", 1)]
    box = on_disk["objects"]["box"]
    assert box["trials"] == 2 and on_disk["overall"]["trials"] == 2
    outcomes = [t["outcome"] for t in on_disk["trials"]]
    assert all(o == "success" or o in FAILURE_REASONS for o in outcomes)
    assert "error" not in outcomes, [t["detail"] for t in on_disk["trials"]]
    assert box["stable"]["successes"] + sum(box["failures"].values()) == 2
    assert box["stable"]["successes"] == sum(o == "success" for o in outcomes)
    lo, hi = box["stable"]["ci95"]
    assert 0.0 <= lo <= (box["stable"]["rate"]) <= hi <= 1.0
    assert box["latency"]["perception"]["n"] == 2 and box["latency"]["perception"]["median_s"] > 0
    assert on_disk["protocol"]["threshold_m"] == 0.02 and on_disk["protocol"]["force_scale_n_per_kg"] == 0.5
    assert results["overall"] == on_disk["overall"]


def test_object_too_big_for_the_hand_is_a_failure_with_reason(restore_catalogue):
    from sim_bridge.mesh_objects import mesh_object

    mesh_object(trimesh.creation.box((0.3, 0.3, 0.3)), name="crate")
    result = run_trial(TrialTask(object="crate", trial=0, seed=0, hand="shadow", xy=(0.5, 0.0), yaw_rad=0.3,
                                 camera_width=320, camera_height=240, thumbnail=False))
    assert not result.success and not result.held
    assert result.outcome in FAILURE_REASONS and result.outcome != "error", result.detail
    assert result.detail


@pytest.mark.parametrize("argv, message", [
    (["--mesh", "does/not/exist.obj"], "mesh file not found"),
    (["--objects", "teapot"], "unknown object 'teapot'"),
    (["--objects", "mug", "--regions", "r.json"], "one mesh"),
])
def test_bad_input_exits_2_with_a_clear_error_and_writes_nothing(tmp_path, capsys, argv, message):
    code = main(["eval", *argv, "--out", str(tmp_path / "ev"), "--no-progress"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "ev" / "results.json").exists()


def test_file_that_is_not_a_mesh_exits_2(tmp_path, capsys, restore_catalogue):
    bad = tmp_path / "scan.ply"
    bad.write_text("ply\nformat ascii 1.0\nthis is broken\n")
    assert main(["eval", "--mesh", str(bad), "--out", str(tmp_path / "ev"), "--no-progress"]) == 2
    assert "scan.ply" in capsys.readouterr().err
    with pytest.raises(EvalInputError, match="catalogue has"):
        prepare_objects(EvalConfig(objects=("mug", "unicorn")))


def test_functional_check_labels_hand_contacts_by_region(tmp_path, restore_catalogue):
    import numpy as np

    from functional_grasp.eval_trial import contact_report
    from sim_bridge.mesh_objects import load_mesh, load_regions, mesh_object
    from sim_bridge.scene import SceneConfig
    from sim_bridge.world import SimWorld

    cube = trimesh.creation.box((0.03, 0.03, 0.03))
    mesh_object(cube, name="cube")
    mesh = load_mesh(cube)
    regions_file = tmp_path / "regions.json"
    with SimWorld(SceneConfig(object="cube")) as world:
        assert contact_report(world, load_regions(_write(regions_file, list(range(8)), []), mesh)) == (False, False)
        tip = world.data.xpos[world.model.body(world.hand.fingertips["index"]).id].copy()
        world.set_object_pose(tip, [1.0, 0.0, 0.0, 0.0])       # the cube overlaps the index fingertip
        everywhere = load_regions(_write(regions_file, list(range(8)), []), mesh)
        assert contact_report(world, everywhere) == (True, False)
        lowest = int(np.argmin(mesh.vertices[:, 0] + mesh.vertices[:, 1] + mesh.vertices[:, 2]))
        avoid_all = load_regions(_write(regions_file, [lowest], [i for i in range(8) if i != lowest]), mesh)
        assert contact_report(world, avoid_all)[1] is True


def _write(path, functional, avoid):
    path.write_text(json.dumps({"functional": functional, "avoid": avoid}))
    return path
