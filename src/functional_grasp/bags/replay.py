"""``fgrasp replay BAG``: play a bag through perception + planner, record their outputs, compare.

1. The bag is checked completely first (:func:`~functional_grasp.bags.bagfile.inspect_bag`):
   the camera topics and ``/joint_states`` with their types, no truncation. The reference of
   ``--expect`` is read too. Any problem: a message naming the bag and the problem, exit 2,
   nothing started, no output bag.
2. The ``replay`` graph of config/graphs.yaml starts (the same nodes, parameters and
   remappings as ``launch/replay.launch.py``) on its own ROS domain.
3. Once every node subscribes, the first CameraInfo and JointState are published (a running
   camera driver and robot would have sent them already), then the bag's inputs: with the
   original timing, or ``fast`` (each RGB-D frame as soon as perception has answered the
   previous one). The stack's outputs are recorded into a new bag, complete at ``--out`` only
   when done.
4. The planner plans the first object cloud; the run ends at its status (bounded wait).
5. With ``--expect REF``: the grasp is compared with REF's (:mod:`.compare`).

Exit codes: 0 done (and the grasp matches REF); 1 regression against REF; 2 bad bag or
reference; 3 the stack gave no planner status in time or a node died; 130 interrupted.
"""
from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from functional_grasp.bags import catalog
from functional_grasp.bags.bagfile import AtomicBagWriter, BagError, inspect_bag, read_messages
from functional_grasp.bags.compare import (GraspOutputs, Tolerances, check_rows, compare_outputs,
                                           grasp_outputs)
from functional_grasp.graph_config import GraphConfigError
from functional_grasp.report import Reporter
from grasp_common import topics

EXIT_OK, EXIT_REGRESSION, EXIT_BAD_INPUT, EXIT_NO_OUTPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: Graph in config/graphs.yaml that replay starts.
GRAPH = "replay"
#: Budget for the nodes to start and subscribe, seconds.
STARTUP_TIMEOUT_S = 60.0
#: Default wait for the planner's status after the last message, seconds.
PLANNER_TIMEOUT_S = 60.0
#: Fast mode: longest wait for perception's answer to one frame, seconds.
FRAME_TIMEOUT_S = 10.0
#: After the planner status, wait this long for it (and on success the goal and pose) to be recorded, seconds.
OUTPUT_SETTLE_S = 2.0
#: Poll period of the waits, seconds.
POLL_S = 0.02
#: Prefix of the keys replay writes into the output bag's custom_data.
METADATA_PREFIX = "fgrasp."


@dataclass(frozen=True)
class ReplayConfig:
    """What one replay does.

    Attributes:
        bag: the input bag folder.
        out: output bag folder (must not exist); None: ``out/replay/<bag>_<time>``.
        expect: reference output bag to compare with, or None.
        fast: pace frames by perception instead of the recorded timing.
        hand: ``hand`` launch argument of the replay graph.
        seed: ``seed`` launch argument of the replay graph: perception RANSAC and planner IK restarts.
        planner_timeout_s: wait for the planner's status after the last message, seconds.
        domain_id: ``ROS_DOMAIN_ID`` of the graph (None: $ROS_DOMAIN_ID, else random 1..100).
        log_dir: node logs (None: out/graph_logs/replay).
        tolerances: of the ``--expect`` comparison.
    """

    bag: Path
    out: Path | None = None
    expect: Path | None = None
    fast: bool = False
    hand: str = "shadow"
    seed: int = 0
    planner_timeout_s: float = PLANNER_TIMEOUT_S
    domain_id: int | None = None
    log_dir: Path | None = None
    tolerances: Tolerances = field(default_factory=Tolerances)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.planner_timeout_s) and self.planner_timeout_s > 0):
            raise ValueError(f"planner timeout must be > 0 s, got {self.planner_timeout_s}")
        if not 0 <= self.seed <= 2**31 - 1:
            raise ValueError(f"seed must be in 0..2147483647, got {self.seed}")
        object.__setattr__(self, "bag", Path(self.bag))
        if self.out is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            from grasp_common.rosenv import project_root

            object.__setattr__(self, "out", project_root() / "out" / "replay" / f"{self.bag.name}_{stamp}")
        object.__setattr__(self, "out", Path(self.out))

    def graph_arguments(self) -> dict[str, str]:
        """Launch arguments of the replay graph (as ``ros2 launch ... replay.launch.py`` takes them)."""
        return {"hand": self.hand, "seed": str(self.seed)}


class _Monitor:
    """Statuses of perception and planner as they arrive (callbacks on the executor threads)."""

    def __init__(self, node) -> None:
        from std_msgs.msg import String

        from grasp_common import qos

        self._cond = threading.Condition()
        self.perception_stamps: set[int] = set()
        self.planner_status: dict | None = None
        node.create_subscription(String, catalog.PERCEPTION_STATUS, self._on_perception, qos.LATCHED)
        node.create_subscription(String, topics.PLANNER_STATUS, self._on_planner, qos.LATCHED)

    def _on_perception(self, msg) -> None:
        try:
            stamp = json.loads(msg.data).get("stamp_ns")
        except (json.JSONDecodeError, AttributeError):
            return
        with self._cond:
            self.perception_stamps.add(stamp)
            self._cond.notify_all()

    def _on_planner(self, msg) -> None:
        try:
            status = json.loads(msg.data)
        except json.JSONDecodeError:
            return
        with self._cond:
            self.planner_status = status
            self._cond.notify_all()

    def wait(self, predicate, timeout_s: float, alive) -> bool:
        """Wait until ``predicate()`` (under the lock), the graph dies or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or not alive():
                    return predicate()
                self._cond.wait(min(left, 0.1))
            return True


def check_inputs(config: ReplayConfig) -> tuple[object, GraspOutputs | None, list[str]]:
    """Validate the input bag, the reference and the output path before anything starts.

    Returns:
        (input :class:`~functional_grasp.bags.bagfile.BagInfo`, reference outputs or None,
        warnings: how the reference was made differs from this run).

    Raises:
        BagError: naming the bag and what is wrong with it.
    """
    info = inspect_bag(config.bag, catalog.INPUTS)
    reference, warnings = None, []
    if config.expect is not None:
        ref_info = inspect_bag(config.expect)
        reference = grasp_outputs(ref_info.path)
        mine = {"hand": config.hand, "seed": str(config.seed)}
        for key, value in mine.items():
            theirs = ref_info.custom.get(METADATA_PREFIX + key)
            if theirs is not None and theirs != value:
                warnings.append(f"the reference was made with {key} {theirs}, this replay uses {value}")
        if reference.planner_status is None:
            raise BagError(f"reference bag {config.expect}: no {topics.PLANNER_STATUS} message; make a "
                           "reference with `fgrasp replay BAG --out REF`")
    if config.out.exists():
        raise BagError(f"output bag {config.out} exists already; choose another --out or delete it")
    return info, reference, warnings


def run_replay(config: ReplayConfig, rep: Reporter | None = None) -> int:
    """Run the replay of the module docstring; returns its exit code."""
    rep = rep or Reporter()
    try:
        info, reference, warnings = check_inputs(config)
    except BagError as exc:
        rep.error(str(exc))
        return EXIT_BAD_INPUT
    for text in warnings:
        rep.warning(text)
    n_inputs = sum(info.topics[s.name].count for s in catalog.INPUTS)
    rep.stage("bag", "ok", f"{info.path}: {info.topics[topics.COLOR_IMAGE].count} frames, "
              f"{n_inputs} input messages over {info.duration_s:.1f} s ({info.storage})")
    try:
        code, status = _play_through_graph(config, info, n_inputs, rep)
    except KeyboardInterrupt:
        rep.error("interrupted; the outputs recorded so far are in the output bag")
        return EXIT_INTERRUPTED
    except GraphConfigError as exc:  # e.g. a hand the replay graph does not accept
        rep.error(f"replay graph: {exc}")
        return EXIT_BAD_INPUT
    if code != EXIT_OK:
        return code
    rep.stage("planner", "done" if status.get("success") else "failed",
              "grasp planned" if status.get("success") else str(status.get("reason", ""))[:200])
    if reference is None:
        return EXIT_OK
    return expect_matches(config.out, reference, config.tolerances, rep, label=str(config.expect))


def expect_matches(out: Path, reference: GraspOutputs, tol: Tolerances, rep: Reporter,
                   label: str = "reference") -> int:
    """Compare the grasp of output bag ``out`` with ``reference``; print the diff; 0 match, 1 regression."""
    checks = compare_outputs(reference, grasp_outputs(out), tol)
    failed = [c for c in checks if not c.ok]
    rep.line()
    rep.table(check_rows(checks), headers=("quantity", "reference", "replay", "difference", "tolerance", ""),
              title=f"== replay vs {label} ==")
    if failed:
        rep.error(f"regression: {', '.join(c.quantity for c in failed)} outside tolerance "
                  f"(replay {out} vs {label})")
        return EXIT_REGRESSION
    rep.line(f"same grasp as {label} within tolerance")
    return EXIT_OK


def _play_through_graph(config: ReplayConfig, info, n_inputs: int, rep: Reporter) -> tuple[int, dict]:
    """Start the graph, record its outputs while playing the bag, stop; (exit code, planner status)."""
    from tqdm import tqdm

    from functional_grasp.bags.player import BagPlayer
    from functional_grasp.bags.recorder import BagRecorder
    from functional_grasp.bags.session import ros_node
    from functional_grasp.demo import pick_domain_id
    from functional_grasp.launcher import launch_graph
    from grasp_common.rosenv import localhost_env

    domain = config.domain_id if config.domain_id is not None else pick_domain_id()
    localhost_env(force=True, domain_id=domain)
    writer = AtomicBagWriter(config.out)
    for key, value in (("source_bag", info.path.name), ("mode", "fast" if config.fast else "original timing"),
                       ("hand", config.hand), ("seed", str(config.seed))):
        writer.set_custom_data(METADATA_PREFIX + key, value)
    graph = recorder = None
    with writer, ros_node("fgrasp_replay", domain) as node:
        try:
            recorder = BagRecorder(node, writer, [s.name for s in catalog.STACK_OUTPUTS])
            monitor = _Monitor(node)
            player = BagPlayer(node, catalog.INPUTS)
            graph = launch_graph(GRAPH, config.graph_arguments(), domain_id=domain, log_dir=config.log_dir)
            rep.stage("graph", "started", f"{', '.join(f'{n}[{p}]' for n, p in graph.pids().items())}; "
                      f"ROS domain {domain}; logs in {graph.log_dir}")
            missing = player.wait_for_subscribers(STARTUP_TIMEOUT_S, should_stop=lambda: not graph.alive())
            if missing or not graph.alive():
                return _stack_failed(graph, rep, f"no subscriber on {', '.join(missing)} after "
                                     f"{STARTUP_TIMEOUT_S:g} s" if missing else "a node exited"), {}
            rep.stage("play", "started", "as fast as perception consumes frames" if config.fast
                      else "original timing")
            _prime(player, info.path)
            t0 = time.monotonic()
            with tqdm(total=n_inputs, unit="msg", desc="replaying", disable=None, leave=False) as bar:
                def after_frame(stamp_ns: int) -> None:
                    if not monitor.wait(lambda: stamp_ns in monitor.perception_stamps, FRAME_TIMEOUT_S,
                                        graph.alive):
                        rep.warning(f"no perception status for the frame stamped {stamp_ns} ns within "
                                    f"{FRAME_TIMEOUT_S:g} s; going on")

                player.play(read_messages(info.path, [s.name for s in catalog.INPUTS]), fast=config.fast,
                            after_frame=after_frame, progress=lambda _msg: bar.update(1))
            rep.stage("play", "done", f"{player.published} messages in {time.monotonic() - t0:.1f} s")
            if not monitor.wait(lambda: monitor.planner_status is not None, config.planner_timeout_s, graph.alive):
                return _stack_failed(graph, rep, f"no planner status on {topics.PLANNER_STATUS} within "
                                     f"{config.planner_timeout_s:g} s after the last message"), {}
            # The monitor and the recorder have separate subscriptions: the recorder may not have
            # written the status (or the goal and pose that precede it) when the monitor sees it.
            expected = [topics.PLANNER_STATUS]
            if monitor.planner_status.get("success"):
                expected += [topics.JOINT_GOAL, catalog.GRASP_POSE]
            deadline = time.monotonic() + OUTPUT_SETTLE_S
            while time.monotonic() < deadline and not all(writer.counts.get(t) for t in expected):
                time.sleep(POLL_S)
        finally:
            if recorder is not None:
                recorder.close()
            if graph is not None:
                graph.stop()
    rep.table(sorted(writer.counts.items()), headers=("output topic", "messages"), title=f"== wrote {config.out} ==")
    return EXIT_OK, monitor.planner_status


def _prime(player, bag: Path) -> None:
    """Publish the bag's first CameraInfo and JointState (what a running driver has already sent)."""
    first: dict[str, object] = {}
    for msg in read_messages(bag, [topics.CAMERA_INFO, topics.JOINT_STATES]):
        first.setdefault(msg.topic, msg)
        if len(first) == 2:
            break
    player.play(first.values(), fast=True)


def _stack_failed(graph, rep: Reporter, why: str) -> int:
    rep.error(f"replay: {why}")
    for name, code in graph.returncodes().items():
        if code is not None or why.startswith("no subscriber"):
            rep.block(f"--- last 15 lines of {graph.log_path(name)} (exit code {code}):", graph.log_tail(name, 15))
    return EXIT_NO_OUTPUT
