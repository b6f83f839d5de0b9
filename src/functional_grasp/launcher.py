"""Start a node graph of config/graphs.yaml as child processes, without launch_ros.

Each node runs as ``python -c "from <module> import main; ..." --ros-args -r __node:=<name>
--params-file <file> -p <key>:=<value> ... -r <from>:=<to>`` with the environment of
:func:`grasp_common.rosenv.child_env` (localhost DDS, Fast DDS profile, ROS_LOG_DIR, optional
ROS_DOMAIN_ID). The node list comes from :func:`functional_grasp.graph_config.resolve_graph`,
the same function the ROS 2 launch files use.

Example::

    with launch_graph("sim", {"object": "mug"}, domain_id=42, log_dir=Path("out/run")) as graph:
        ...  # talk to the nodes on domain 42
        assert graph.alive(), graph.returncodes()
    # all node processes are stopped here
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from functional_grasp.graph_config import (ParamValue, ResolvedNode, get_graph, resolve_arguments,
                                           resolve_graph, write_overrides_file)

_LOG = logging.getLogger(__name__)

#: Grace period after SIGTERM (and again after SIGKILL) when stopping, seconds.
TERM_GRACE_S = 2.0
_POLL_S = 0.05


def node_command(node: ResolvedNode, python: str | None = None,
                 overrides_dir: str | Path | None = None) -> list[str]:
    """argv that runs ``node``'s ``main()`` in a fresh interpreter with its ROS arguments.

    ``main()`` is imported and called directly (no ``-m``), so a node module needs no
    ``if __name__ == "__main__"`` block; rclpy reads the ``--ros-args`` from ``sys.argv``.
    Parameter overrides are written to ``<overrides_dir>/<node>.overrides.yaml`` (keyed by the
    node name, passed last) so that they beat the node's own section of the shared YAML.
    """
    bootstrap = f"import sys; from {node.module} import main; sys.exit(main())"
    cmd = [python or sys.executable, "-c", bootstrap, "--ros-args", "-r", f"__node:={node.name}"]
    for path in node.params_files:
        cmd += ["--params-file", str(path)]
    overrides = write_overrides_file(node, overrides_dir)
    if overrides is not None:
        cmd += ["--params-file", str(overrides)]
    for src, dst in node.remappings:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    """Signal the process group created for ``proc``: the node and any helper it spawned."""
    try:
        os.killpg(proc.pid, sig)  # start_new_session=True: the group id is the node's pid
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


class GraphProcesses:
    """The running processes of one graph; a context manager that always stops them on exit."""

    def __init__(self, graph: str, processes: Mapping[str, subprocess.Popen], log_dir: Path):
        self.graph = graph
        self.log_dir = log_dir
        self._procs = dict(processes)

    def _add(self, name: str, proc: subprocess.Popen) -> None:
        self._procs[name] = proc

    @property
    def node_names(self) -> list[str]:
        """Names of the graph's nodes, in start order."""
        return list(self._procs)

    def pids(self) -> dict[str, int]:
        """Node name -> process id."""
        return {name: p.pid for name, p in self._procs.items()}

    def alive(self) -> bool:
        """True while every node process is still running."""
        return all(p.poll() is None for p in self._procs.values())

    def returncodes(self) -> dict[str, int | None]:
        """Node name -> exit code, ``None`` while running (negative: killed by that signal)."""
        return {name: p.poll() for name, p in self._procs.items()}

    def log_path(self, node: str) -> Path:
        """The file holding ``node``'s stdout and stderr."""
        return self.log_dir / f"{node}.log"

    def log_tail(self, node: str, lines: int = 20) -> str:
        """The last ``lines`` lines of ``node``'s log (for error messages)."""
        try:
            return "\n".join(self.log_path(node).read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, timeout_s: float = 5.0) -> dict[str, int | None]:
        """Stop every node: SIGINT, wait up to ``timeout_s``; then SIGTERM, then SIGKILL.

        Every wait is bounded (at most ``timeout_s + 2 * TERM_GRACE_S`` in total).

        Returns:
            Node name -> exit code (``None`` only if a process survived SIGKILL).
        """
        for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGTERM, TERM_GRACE_S),
                            (signal.SIGKILL, TERM_GRACE_S)):
            running = [p for p in self._procs.values() if p.poll() is None]
            if not running:
                break
            if sig != signal.SIGINT:
                _LOG.warning("graph %s: %s did not stop, sending %s", self.graph,
                             ", ".join(n for n, p in self._procs.items() if p in running), sig.name)
            for proc in running:
                _signal_group(proc, sig)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and any(p.poll() is None for p in running):
                time.sleep(_POLL_S)
        return self.returncodes()

    def __enter__(self) -> GraphProcesses:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def launch_graph(graph: str, arguments: Mapping[str, Any] | None = None, domain_id: int | None = None,
                 log_dir: str | Path | None = None,
                 extra_params: Mapping[str, Mapping[str, ParamValue]] | None = None, *,
                 graphs_file: str | Path | None = None,
                 extra_env: Mapping[str, str] | None = None) -> GraphProcesses:
    """Start every node of ``graph`` as its own process and return them.

    Args:
        graph: graph name in the graphs file (``sim``, ``real_arm``, ``replay``).
        arguments: launch argument values, as for ``ros2 launch`` (``{"object": "mug"}``).
        domain_id: ``ROS_DOMAIN_ID`` of the nodes (0–101); ``None`` keeps the current one.
        log_dir: folder for ``<node>.log`` (stdout + stderr) and the ROS logs (``ros/``);
            default ``<repo>/out/graph_logs/<graph>``.
        extra_params: node name -> parameter overrides applied after everything else.
        graphs_file: graphs YAML; default config/graphs.yaml.
        extra_env: variables added to each child's environment (e.g. ``PYTHONPATH``).

    Raises:
        GraphConfigError: unknown graph, argument or node, or an invalid value; nothing started.
        OSError: a process could not be spawned; the ones already started are stopped.
    """
    from grasp_common.rosenv import child_env, project_root

    spec = get_graph(graph, graphs_file)
    nodes = resolve_graph(spec, arguments, extra_params)
    values, defaults = resolve_arguments(spec, arguments), resolve_arguments(spec)
    for arg in spec.arguments:
        if arg.launch_only and values[arg.name] != defaults[arg.name]:
            _LOG.warning("graph %s: argument %s:=%s is acted on only by launch/%s.launch.py; "
                         "ignored here", graph, arg.name, values[arg.name], graph)
    if log_dir is None:
        log_dir = project_root() / "out" / "graph_logs" / graph
    log_dir = Path(log_dir).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    env = child_env(domain_id=domain_id, log_dir=log_dir / "ros")
    env.update(extra_env or {})
    running = GraphProcesses(graph, {}, log_dir)
    try:
        for node in nodes:
            with open(running.log_path(node.name), "wb") as log:
                running._add(node.name, subprocess.Popen(
                    node_command(node, overrides_dir=log_dir / "params"), env=env,
                    stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True))
    except BaseException:
        running.stop()
        raise
    _LOG.info("graph %s started: %s (logs in %s)", graph,
              ", ".join(f"{n}[{pid}]" for n, pid in running.pids().items()), log_dir)
    return running
