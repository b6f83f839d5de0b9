"""The fgrasp CLI: argument errors, bench JSON, and the demo's report/timing logic (no ROS graph)."""
from __future__ import annotations

import io
import json
import math

import pytest

from functional_grasp import cli, demo
from functional_grasp.demo import DemoConfig, RunRecord
from functional_grasp.report import Reporter, format_table


@pytest.fixture
def no_graph(monkeypatch):
    """Fail the test if anything tries to start a node graph."""
    import functional_grasp.launcher as launcher

    def _refuse(*args, **kwargs):
        raise AssertionError("a graph was started")

    monkeypatch.setattr(launcher, "launch_graph", _refuse)
    monkeypatch.setattr(demo, "_run_graph", _refuse)


def test_unknown_object_is_a_usage_error_naming_the_catalogue(capsys, no_graph, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--object", "banana", "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown object 'banana'" in err
    for name in ("box", "cylinder", "drill", "mug"):
        assert name in err
    assert not (tmp_path / "out").exists()  # nothing written, nothing started


@pytest.mark.parametrize("argv, message", [
    (["demo", "--hand", "claw"], "unknown hand 'claw'"),
    (["demo", "--camera-width", "3"], "16..4096 pixels"),
    (["demo", "--timeout-s", "0"], "number > 0"),
    (["demo", "--real-time-factor", "-1"], "number >= 0"),
    (["launch", "sim", "object=drill"], "expected key:=value"),
    (["bench", "physics"], "unknown bench section 'physics'"),
])
def test_bad_arguments_say_what_is_wrong(argv, message, capsys, no_graph):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_launch_of_an_unknown_graph_exits_2_listing_the_graphs(capsys, tmp_path):
    code = cli.main(["launch", "nope", "--log-dir", str(tmp_path / "logs")])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown graph 'nope'" in err and "sim" in err
    assert not (tmp_path / "logs").exists()


def test_bench_kinematics_writes_json_with_the_measured_metrics(tmp_path, capsys):
    path = tmp_path / "sub" / "bench.json"
    assert cli.main(["bench", "kinematics", "--quick", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert set(data["sections"]) == {"kinematics"}
    kin = data["sections"]["kinematics"]
    for key in ("success_rate", "median_ms", "p95_ms", "max_ms", "refused_fraction", "fk_us"):
        assert isinstance(kin[key], float) and math.isfinite(kin[key]), key
    assert 0.0 <= kin["success_rate"] <= 1.0 and kin["median_ms"] <= kin["p95_ms"] <= kin["max_ms"]
    assert kin["n"] == data["config"]["ik_targets"] == 50  # --quick
    assert data["machine"]["cpus"] >= 1 and data["versions"]["python"]
    out = capsys.readouterr().out
    assert "kinematics" in out and "median_ms" in out and str(path) in out


# --- pure helpers of the demo and the reporter ----------------------------------------------------


def test_table_aligns_numbers_right_and_text_left():
    text = format_table([("ik", 0.00795, "s"), ("grasp_synthesis", 21.5, "s"), ("lift", None, None)],
                        headers=("stage", "seconds", "unit"))
    lines = text.splitlines()
    assert lines[0].startswith("stage") and set(lines[1]) <= {"-", " "}
    assert lines[2].index("0.00795") + len("0.00795") == lines[3].index("21.5") + len("21.5")
    assert lines[4].split() == ["lift", "-", "-"]


def test_stage_lines_carry_elapsed_time():
    clock = iter([100.0, 112.34])
    out = io.StringIO()
    Reporter(stream=out, clock=lambda: next(clock)).stage("perception", "done", "462 points")
    assert out.getvalue() == "[  12.3 s] perception   done     462 points\n"


def _finished_record() -> RunRecord:
    return RunRecord(
        t_launch=10.0, t_perception=14.0, t_goal=30.0, t_result=40.0,
        perception={"ok": True, "timing_ms": {"total": 50.0}, "n_points": 462},
        planner_status={"success": True, "timings_s": {"grasp_synthesis": 2.0, "ik": 0.1,
                                                        "motion_plan": 0.3, "total": 2.4}},
        joint_goal={"panda_joint1": 0.1},
        result={"held": True, "max_displacement_m": 0.004, "lifted": True, "wall_time_s": 1.5,
                "trajectory_duration_s": 12.0, "displacement_m": {"+x": 0.004, "-x": float("nan")},
                "protocol": {"threshold_m": 0.02}})


def test_stage_timings_split_the_run_into_every_stage():
    t = demo.stage_timings(_finished_record())
    assert t["perception"] == pytest.approx(0.05)
    assert t["startup"] == pytest.approx(4.0 - 0.05)
    assert (t["grasp_synthesis"], t["ik"], t["motion_plan"]) == (2.0, 0.1, 0.3)
    assert t["evaluation"] == 1.5 and t["execution"] == pytest.approx(10.0 - 1.5)
    assert t["execution_sim"] == 12.0 and t["total_wall"] == pytest.approx(30.0)
    assert all(t[k] is not None for k in demo.STAGES)


def test_report_is_strict_json_with_the_issue_keys(tmp_path):
    report = demo.build_report(DemoConfig(object="box", out_dir=tmp_path), _finished_record(), 42,
                               {"report": "report.json"})
    demo.write_report(tmp_path / "report.json", report)
    loaded = json.loads((tmp_path / "report.json").read_text())  # NaN would not be valid JSON
    assert loaded["goal_produced"] is True and loaded["held"] is True
    assert loaded["max_displacement_m"] == 0.004 and loaded["displacement_m"]["-x"] is None
    assert set(demo.STAGES) <= set(loaded["timings_s"])
    assert loaded["failure"] is None and loaded["object"] == "box"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left


def test_report_without_a_goal_says_where_it_stopped(tmp_path):
    rec = RunRecord(t_launch=0.0, t_end=5.0, perception_error={"error": "InvalidDepthError", "message": "90%"})
    rec.failure_stage, rec.failure_reason = demo.diagnose_stall(rec)
    report = demo.build_report(DemoConfig(out_dir=tmp_path), rec, 7, {})
    assert report["goal_produced"] is False and report["held"] is False
    assert report["max_displacement_m"] is None
    assert report["failure"]["stage"] == "perception" and "InvalidDepthError" in report["failure"]["reason"]


def test_stall_diagnosis_names_the_first_stage_without_a_result():
    rec = RunRecord(perception={"ok": True})
    assert demo.diagnose_stall(rec)[0] == "planning"
    rec.joint_goal = {"panda_joint1": 0.0}
    assert demo.diagnose_stall(rec)[0] == "execution"


def test_scene_mismatch_explains_overrides_that_did_not_arrive(tmp_path):
    config = DemoConfig(object="cylinder", camera_width=320, out_dir=tmp_path)
    ok = {"object": "cylinder", "hand": "shadow", "real_time_factor": 0.0, "camera_width": 320}
    assert demo.scene_mismatch(config, ok) == ""
    text = demo.scene_mismatch(config, {**ok, "object": "mug", "real_time_factor": 1.0})
    assert "object='mug' (asked for 'cylinder')" in text and "real_time_factor=1.0" in text


def test_demo_config_rejects_bad_values_with_the_reason(tmp_path):
    with pytest.raises(ValueError, match="unknown object 'banana'.*mug"):
        DemoConfig(object="banana", out_dir=tmp_path)
    with pytest.raises(ValueError, match="real_time_factor"):
        DemoConfig(real_time_factor=-0.5, out_dir=tmp_path)
    assert DemoConfig(out_dir=tmp_path, camera_width=320).extra_params() == {
        "sim_bridge": {"real_time_factor": 0.0, "camera_width": 320}}


def test_domain_id_comes_from_the_environment_or_is_random_in_range():
    assert demo.pick_domain_id({"ROS_DOMAIN_ID": "17"}) == 17
    assert 1 <= demo.pick_domain_id({}) <= 100
    with pytest.raises(ValueError, match="outside 0..101"):
        demo.pick_domain_id({"ROS_DOMAIN_ID": "300"})


def test_sim_scene_matches_the_graph_parameters():
    scene = demo.sim_scene_config("drill", "shadow", 320, 240)
    params = demo.node_parameters("sim", "sim_bridge")
    assert scene.object == "drill" and (scene.camera_width, scene.camera_height) == (320, 240)
    assert scene.camera_xyz == tuple(params["camera_xyz"])
    assert scene.camera_fovy_deg == params["camera_fovy_deg"]
