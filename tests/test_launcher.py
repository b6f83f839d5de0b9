"""The project launcher: ROS command-line rendering, and a real graph started, reached and stopped."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from functional_grasp.graph_config import GraphConfigError, ResolvedNode
from functional_grasp.launcher import TERM_GRACE_S, launch_graph, node_command

TESTS_DIR = Path(__file__).resolve().parent
RECEIVE_TIMEOUT_S = 10.0


def test_node_command_carries_name_files_overrides_and_remappings(tmp_path):
    params = tmp_path / "p.yaml"
    node = ResolvedNode(name="grasp_planner", package="functional_grasp", executable="planner_node",
                        module="grasp_planner.node", params_files=(params,),
                        parameters={"execute": False, "hand": "shadow", "xyz": [0.5, 0.0, 0.1]},
                        remappings=(("/a", "/b"),))
    cmd = node_command(node, python="py", overrides_dir=tmp_path / "ov")
    assert cmd[:2] == ["py", "-c"] and "from grasp_planner.node import main" in cmd[2]
    overrides = tmp_path / "ov" / "grasp_planner.overrides.yaml"
    assert cmd[3:] == ["--ros-args", "-r", "__node:=grasp_planner", "--params-file", str(params),
                       "--params-file", str(overrides), "-r", "/a:=/b"]
    # Keyed by the node's own name so it beats that node's section of the shared YAML.
    assert yaml.safe_load(overrides.read_text()) == {
        "grasp_planner": {"ros__parameters": {"execute": False, "hand": "shadow", "xyz": [0.5, 0.0, 0.1]}}}


def _write_echo_graph(folder: Path) -> Path:
    (folder / "echo.yaml").write_text(yaml.safe_dump({
        "/**": {"ros__parameters": {"count": 3}},
        "echo_b": {"ros__parameters": {"label": "from_file"}},
    }))
    graphs = {"graphs": {"echo": {
        "description": "two echo nodes",
        "localhost_only": True,
        "arguments": {"greeting": {"default": "hi"}},
        "nodes": [
            {"name": name, "package": "functional_grasp", "executable": "echo_node",
             "module": "_echo_node", "params_files": ["echo.yaml"],
             "arguments": {"greeting": "greeting"},
             "remappings": [["echo", f"/remapped/{name}"]]}
            for name in ("echo_a", "echo_b")
        ],
    }}}
    path = folder / "graphs.yaml"
    path.write_text(yaml.safe_dump(graphs, sort_keys=False))
    return path


def test_launcher_rejects_unknown_graph_and_argument_before_starting_anything(tmp_path):
    graphs = _write_echo_graph(tmp_path)
    with pytest.raises(GraphConfigError, match="unknown graph 'nope'.*echo"):
        launch_graph("nope", graphs_file=graphs, log_dir=tmp_path / "logs")
    with pytest.raises(GraphConfigError, match="no launch argument 'colour'.*greeting"):
        launch_graph("echo", {"colour": "red"}, graphs_file=graphs, log_dir=tmp_path / "logs")
    assert not (tmp_path / "logs").exists()


@pytest.mark.ros
def test_graph_nodes_run_with_name_overrides_and_remappings_then_stop_cleanly(
        tmp_path, ros_context, ros_domain_id):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    graphs = _write_echo_graph(tmp_path)
    received: dict[str, dict] = {}
    listener = Node("echo_listener", context=ros_context)
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    for name in ("echo_a", "echo_b"):
        listener.create_subscription(String, f"/remapped/{name}",
                                     lambda msg, n=name: received.setdefault(n, json.loads(msg.data)), qos)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(listener)

    with launch_graph("echo", {"greeting": "hello: world"}, domain_id=ros_domain_id,
                      log_dir=tmp_path / "logs", graphs_file=graphs,
                      extra_params={"echo_a": {"gains": [0.5, 1.5], "flag": True, "label": "true"},
                                    "echo_b": {"label": "from_override"}},
                      extra_env={"PYTHONPATH": str(TESTS_DIR)}) as graph:
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while len(received) < 2 and time.monotonic() < deadline and graph.alive():
            executor.spin_once(timeout_sec=0.1)
        logs = {n: graph.log_tail(n) for n in graph.node_names}
        assert len(received) == 2, f"got {sorted(received)}; returncodes {graph.returncodes()}; logs {logs}"
        pids = graph.pids()
        codes = graph.stop(timeout_s=5.0)
    executor.shutdown(timeout_sec=1.0)
    listener.destroy_node()

    a, b = received["echo_a"], received["echo_b"]
    assert a["node"] == "echo_a" and b["node"] == "echo_b"          # -r __node:=<name>
    assert a["greeting"] == b["greeting"] == "hello: world"         # argument -> parameter, quoted
    assert a["gains"] == [0.5, 1.5] and a["flag"] is True           # extra_params: list, bool
    assert a["label"] == "true"                                     # a string that looks like a bool
    assert a["count"] == b["count"] == 3                            # params file, /** section
    # An override beats the node's own section of the params file (not only the /** one).
    assert b["label"] == "from_override" and b["gains"] == [0.0] and b["flag"] is False
    assert codes == {"echo_a": 0, "echo_b": 0}, logs                # SIGINT -> clean shutdown
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert (tmp_path / "logs" / "echo_a.log").is_file()
    assert (tmp_path / "logs" / "ros").is_dir()


def test_stop_escalates_to_sigterm_when_a_node_ignores_sigint(tmp_path):
    (tmp_path / "stubborn_node.py").write_text(
        "import signal, time\n"
        "def main():\n"
        "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "    print('ready', flush=True)\n"
        "    while True:\n"
        "        time.sleep(0.05)\n")
    graphs = tmp_path / "graphs.yaml"
    graphs.write_text(yaml.safe_dump({"graphs": {"stubborn": {"nodes": [
        {"name": "stubborn", "package": "functional_grasp", "executable": "stubborn_node",
         "module": "stubborn_node"}]}}}))
    graph = launch_graph("stubborn", graphs_file=graphs, log_dir=tmp_path / "logs",
                         extra_env={"PYTHONPATH": str(tmp_path)})
    deadline = time.monotonic() + RECEIVE_TIMEOUT_S
    while "ready" not in graph.log_tail("stubborn") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert graph.alive(), graph.log_tail("stubborn")
    start = time.monotonic()
    codes = graph.stop(timeout_s=0.5)
    assert codes == {"stubborn": -signal.SIGTERM}
    assert time.monotonic() - start < 0.5 + TERM_GRACE_S + 1.0
