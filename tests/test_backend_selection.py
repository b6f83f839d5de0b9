"""Choosing the planner's grasp backend on the command line (`fgrasp demo` / pipeline `fgrasp eval`).

Covers: the flags and their refusals (before anything starts), the choice reaching the planner
node's parameters in the generated graph config, the in-process eval planner, and the planner
reporting which backend really planned (status, demo report, eval results).
"""
from __future__ import annotations

import hashlib
import io
import json
import time

import pytest

from functional_grasp import cli, demo
from functional_grasp.demo import DemoConfig, RunRecord
from functional_grasp.eval import EvalConfig, EvalInputError, PreparedObject, backend_summary, make_tasks
from functional_grasp.grasp_backend_args import backend_mismatch, describe_backend
from functional_grasp.report import Reporter
from grasp_common.rosenv import config_dir
from test_cli import no_graph  # noqa: F401 - fixture: fail if a graph is started

SHADOW_CKPT = config_dir() / "checkpoints" / "shadow.safetensors"
OYMOTION_CKPT = config_dir() / "checkpoints" / "oymotion.safetensors"


def _hand_without_checkpoint() -> str | None:
    from grasp_planner.grasp_predictor import default_checkpoint
    from grasp_planner.hands import available_hands

    return next((h for h in available_hands() if not default_checkpoint(h).exists()), None)


#: A hand without a shipped checkpoint: its config-default network path falls back to the optimiser.
HAND_WITHOUT_CKPT = _hand_without_checkpoint()
needs_hand_without_checkpoint = pytest.mark.skipif(HAND_WITHOUT_CKPT is None,
                                                   reason="every hand ships a checkpoint: no fallback to show")


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def _shipped_checkpoints_present():
    if not SHADOW_CKPT.is_file() or not OYMOTION_CKPT.is_file():
        pytest.skip("the shipped checkpoints config/checkpoints/{shadow,oymotion}.safetensors are not installed")


# --- command line -------------------------------------------------------------------------------

def test_both_commands_take_the_backend_flags_and_default_to_the_params_file():
    parser = cli.build_parser()
    for command in (["demo"], ["eval"]):
        args = parser.parse_args(command + ["--grasp-backend", "network", "--grasp-checkpoint", str(SHADOW_CKPT)])
        assert (args.grasp_backend, args.grasp_checkpoint) == ("network", str(SHADOW_CKPT))
        left_out = parser.parse_args(command)
        assert (left_out.grasp_backend, left_out.grasp_checkpoint) == (None, None)
    # Left out, the planner keeps config/functional_grasp.yaml's values: no override at all.
    assert "grasp_planner" not in DemoConfig().extra_params()
    assert EvalConfig(objects=("box",)).planner_overrides() == {}


def test_unknown_backend_is_a_usage_error(capsys, no_graph):  # noqa: F811
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--grasp-backend", "magic"])
    assert exc.value.code == 2
    assert "invalid choice: 'magic'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["demo", "eval"])
def test_missing_explicit_checkpoint_exits_2_naming_the_path_before_anything_starts(command, tmp_path, capsys,
                                                                                     no_graph):  # noqa: F811
    missing = tmp_path / "nowhere" / "mine.safetensors"
    out = tmp_path / "out"
    argv = [command, "--grasp-backend", "network", "--grasp-checkpoint", str(missing), "--out", str(out)]
    assert cli.main(argv + (["--objects", "box", "--no-progress"] if command == "eval" else [])) == 2
    err = capsys.readouterr().err
    assert f"grasp checkpoint not found: {missing}" in err
    assert not out.exists()                           # nothing written, nothing started


@pytest.mark.parametrize("argv, message", [
    # a checkpoint the optimiser would silently ignore (the shipped params file says optimiser)
    (["--grasp-backend", "optimiser", "--grasp-checkpoint", str(SHADOW_CKPT)],
     "read only by the network backend, but the planner would use 'optimiser'"),
    # a checkpoint of another hand: the planner would refuse it and fall back
    (["--grasp-backend", "network", "--grasp-checkpoint", str(OYMOTION_CKPT)],
     "was trained for hand 'oymotion', not 'shadow'"),
])
def test_unusable_checkpoint_is_refused_with_what_to_do(argv, message, tmp_path, capsys, no_graph):  # noqa: F811
    assert cli.main(["demo", *argv, "--out", str(tmp_path / "d")]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(EvalInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EvalConfig(objects=("box",), grasp_backend=argv[1], grasp_checkpoint=argv[3])


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    bogus = tmp_path / "notes.safetensors"
    bogus.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=f"--grasp-checkpoint: {bogus} is not a readable"):
        DemoConfig(grasp_backend="network", grasp_checkpoint=str(bogus), out_dir=tmp_path)


def test_network_mode_refuses_the_pipeline_backend_flags(tmp_path, capsys, monkeypatch):
    import functional_grasp.net_eval_cli as net_eval_cli

    monkeypatch.setattr(net_eval_cli, "cmd_network_eval", lambda *a: pytest.fail("network eval started"))
    code = cli.main(["eval", "--network", str(SHADOW_CKPT), "--grasp-backend", "network", "--category", "mug",
                     "--out", str(tmp_path / "ev")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--grasp-backend chooses the planner's predictor for the full-pipeline evaluation" in err
    assert "--network CHECKPOINT is a different evaluation" in err
    help_text = " ".join(cli.build_parser()._subparsers._group_actions[0].choices["eval"].format_help().split())
    assert "PIPELINE (default)" in help_text and "NETWORK (--network CHECKPOINT)" in help_text
    assert "pipeline mode" in help_text and "network mode" in help_text


# --- the choice reaches the planner ------------------------------------------------------------

def test_demo_choice_reaches_the_planner_node_of_the_generated_graph(tmp_path):
    from functional_grasp.graph_config import resolve_graph
    from functional_grasp.launcher import node_command

    config = DemoConfig(hand="shadow", grasp_backend="network", grasp_checkpoint=str(SHADOW_CKPT), out_dir=tmp_path)
    nodes = {n.name: n for n in resolve_graph("sim", config.graph_arguments(), config.extra_params())}
    planner = nodes["grasp_planner"]
    assert planner.parameters["grasp_backend"] == "network"
    assert planner.parameters["grasp_checkpoint"] == str(SHADOW_CKPT.resolve())
    assert "grasp_backend" not in nodes["sim_bridge"].parameters      # only the planner gets it
    # The launcher passes it as a node-keyed params file after config/functional_grasp.yaml, so it wins.
    import yaml

    cmd = node_command(planner, overrides_dir=tmp_path / "params")
    params_files = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--params-file"]
    assert params_files[-1] == str(tmp_path / "params" / "grasp_planner.overrides.yaml")
    assert str(config_dir() / "functional_grasp.yaml") in params_files[:-1]
    written = yaml.safe_load(open(params_files[-1]))["grasp_planner"]["ros__parameters"]
    assert (written["grasp_backend"], written["grasp_checkpoint"]) == ("network", str(SHADOW_CKPT.resolve()))
    final = demo.node_parameters("sim", "grasp_planner", config.graph_arguments(), config.extra_params())
    assert final["grasp_backend"] == "network"


def test_relative_checkpoint_is_recorded_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(config_dir())
    config = DemoConfig(grasp_backend="network", grasp_checkpoint="checkpoints/shadow.safetensors", out_dir=tmp_path)
    assert config.grasp_checkpoint == str(SHADOW_CKPT.resolve())


def test_eval_choice_reaches_every_trial_and_the_in_process_planner():
    from functional_grasp.bench import build_planner

    config = EvalConfig(objects=("box",), trials=2, grasp_backend="network", grasp_checkpoint=str(SHADOW_CKPT))
    tasks = make_tasks(config, [PreparedObject("box", "catalogue")])
    assert all(dict(t.planner_params) == {"grasp_backend": "network", "grasp_checkpoint": str(SHADOW_CKPT.resolve())}
               for t in tasks)
    planner = build_planner("shadow", dict(tasks[0].planner_params))
    assert planner.config.grasp_backend == "network" and planner.predictor.name == "network"
    info = planner.predictor.describe()
    assert info["checkpoint"] == str(SHADOW_CKPT.resolve()) and info["checkpoint_sha256"] == _sha256(SHADOW_CKPT)
    assert info["fallback_reason"] is None


def test_one_real_eval_trial_is_planned_by_the_network_it_asked_for():
    """In process, real MuJoCo + perception + planner: the trial records the network and its checkpoint hash."""
    from functional_grasp.eval_trial import TrialTask, close_process_cache, run_trial

    config = EvalConfig(objects=("box",), trials=1, grasp_backend="network", grasp_checkpoint=str(SHADOW_CKPT),
                        camera_width=320, camera_height=240, gallery=False)
    task = make_tasks(config, [PreparedObject("box", "catalogue")])[0]
    fewer_samples = TrialTask(**{**task.__dict__, "planner_params": task.planner_params + (("network_samples", 4),)})
    try:
        result = run_trial(fewer_samples)
    finally:
        close_process_cache()
    assert result.outcome != "error", result.detail
    assert result.cloud_points > 0 and result.timings_s["synthesis"] > 0, result.detail   # the planner ran
    info = result.grasp_backend
    assert info["requested"] == info["backend"] == "network", info
    assert info["checkpoint_sha256"] == _sha256(SHADOW_CKPT)


@needs_hand_without_checkpoint
def test_config_default_checkpoint_missing_falls_back_with_the_planner_warning():
    from functional_grasp.bench import build_planner

    with pytest.warns(RuntimeWarning, match=f"no network checkpoint for hand '{HAND_WITHOUT_CKPT}'") as caught:
        planner = build_planner(HAND_WITHOUT_CKPT, {"grasp_backend": "network"})
    info = planner.predictor.describe()
    assert info["backend"] == "optimiser" and info["checkpoint"] is None
    assert info["fallback_reason"] == str(caught[0].message)              # the warning itself is kept


# --- the planner says which backend planned -----------------------------------------------------

@needs_hand_without_checkpoint
def test_planner_status_names_the_backend_that_really_plans(ros_context):
    """Real node: the network is asked for, the hand has no checkpoint: the status says optimiser + why."""
    import numpy as np
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String

    from grasp_common import qos, topics
    from grasp_perception.conversions import numpy_to_cloud
    from grasp_planner.node import PlannerNode

    node = PlannerNode(context=ros_context, parameter_overrides=[
        Parameter("hand", value=HAND_WITHOUT_CKPT), Parameter("grasp_backend", value="network")])
    probe = rclpy.create_node("backend_probe", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    try:
        executor.add_node(node)
        executor.add_node(probe)
        statuses: list[dict] = []
        probe.create_subscription(String, topics.PLANNER_STATUS, lambda m: statuses.append(json.loads(m.data)),
                                  qos.LATCHED)
        pub = probe.create_publisher(PointCloud2, topics.OBJECT_CLOUD, qos.LATCHED)
        # A cloud in the camera frame is refused before planning; the refusal's status still names the backend.
        pub.publish(numpy_to_cloud(np.zeros((200, 3)), np.zeros((200, 3), np.uint8), "camera", Time(sec=1)))
        deadline = time.monotonic() + 10.0
        while not statuses and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert statuses, "no planner status within 10 s"
        status = statuses[-1]
        assert status["success"] is False and "frame 'camera'" in status["reason"]
        info = status["grasp_backend"]
        assert info["requested"] == "network" and info["backend"] == "optimiser"
        assert f"no network checkpoint for hand '{HAND_WITHOUT_CKPT}'" in info["fallback_reason"]
    finally:
        executor.shutdown()
        probe.destroy_node()
        node.destroy_node()


def _status_record(info: dict) -> RunRecord:
    return RunRecord(t_launch=0.0, t_end=3.0, planner_status={
        "success": True, "reason": "", "timings_s": {"grasp_synthesis": 1.0, "total": 1.2},
        "chosen": {"info": {"backend": info["backend"]}}, "grasp_backend": info})


def test_demo_report_and_summary_record_the_backend_and_checkpoint_hash(tmp_path):
    info = {"requested": "network", "backend": "network", "checkpoint": str(SHADOW_CKPT),
            "checkpoint_sha256": _sha256(SHADOW_CKPT), "fallback_reason": None}
    config = DemoConfig(grasp_backend="network", grasp_checkpoint=str(SHADOW_CKPT), out_dir=tmp_path)
    report = demo.build_report(config, _status_record(info), 5, {})
    assert report["grasp_backend"] == {**info, "goal_from": "network"}
    assert report["run"]["grasp_backend"] == "network" and report["run"]["grasp_checkpoint"] == str(SHADOW_CKPT)
    row = dict(demo.summary_rows(report))["grasp backend"]
    assert row.startswith("network (") and str(SHADOW_CKPT) in row and info["checkpoint_sha256"][:12] in row
    assert "goal from" not in row
    # The network's candidates all failed and its optimiser fallback planned: the summary says so.
    record = _status_record(info)
    record.planner_status["chosen"]["info"]["backend"] = "optimiser"
    row = dict(demo.summary_rows(demo.build_report(config, record, 5, {})))["grasp backend"]
    assert row.startswith("network (") and "goal from the optimiser" in row


def test_demo_prints_the_fallback_warning_once_and_refuses_an_override_that_did_not_arrive(tmp_path):
    reason = "grasp_backend network: no network checkpoint for hand 'shadow' at /x; planning with the optimiser"
    info = {"requested": "network", "backend": "optimiser", "checkpoint": None, "checkpoint_sha256": None,
            "fallback_reason": reason}
    out, err = io.StringIO(), io.StringIO()
    progress = demo._Progress(Reporter(out, err))
    rec = _status_record(info)
    progress.update(rec)
    progress.update(rec)
    assert err.getvalue().count(reason) == 1                               # where the user sees it, once
    assert "optimiser backend" in out.getvalue()
    assert "fell back" in describe_backend(info)
    # The planner reports what it was asked: a different value means the override never reached it.
    assert backend_mismatch({"grasp_backend": "network"}, info) == ""
    text = backend_mismatch({"grasp_backend": "optimiser"}, info)
    assert "grasp_backend 'network' (asked for 'optimiser')" in text and "did not reach the node" in text
    assert backend_mismatch({"grasp_backend": "network"}, None) == ""      # no status yet: nothing to judge


def test_eval_results_group_trials_by_the_backend_that_planned_them():
    net = {"requested": "network", "backend": "network", "checkpoint": "/c.safetensors", "checkpoint_sha256": "ab",
           "fallback_reason": None}
    rows = [{"grasp_backend": net}, {"grasp_backend": dict(net)}, {"grasp_backend": None}]
    summary = backend_summary(EvalConfig(objects=("box",), grasp_backend="network"), rows)
    assert summary["command_line"] == {"grasp_backend": "network", "grasp_checkpoint": None}
    assert summary["planned_by"] == [{**net, "trials": 2}]               # the trial that never planned is not counted
