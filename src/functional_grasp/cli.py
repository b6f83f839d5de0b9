"""``fgrasp``: the project's command line (demo, launch, bench).

    fgrasp demo --object drill --out out/drill       # launch the sim graph, grasp once, report
    fgrasp demo --grasp-backend network --grasp-checkpoint CKPT   # same, the planner uses the D(R,O) network
    fgrasp launch sim object:=box                      # run a graph until Ctrl-C or a node dies
    fgrasp bench kinematics planner --json out/b.json  # time the stack's parts on this machine
    fgrasp eval --objects mug drill --trials 10        # success rates over random poses (no ROS)
    fgrasp eval --objects mug --grasp-backend network  # the same pipeline, planner on the network backend
    fgrasp view out/demo                               # the rviz scene of a demo run, as a PNG
    fgrasp data show --category drill --out x.png      # generated objects coloured by region
    fgrasp train --data D --hand shadow --out out/t    # train the D(R,O) grasp network
    fgrasp eval --network CKPT --hand H --category drill --objects 20   # network on held-out instances
    fgrasp augment --checkpoint CKPT --data D --hand H --category drill --out out/aug   # sim-augmented loop
    fgrasp compare out/old_s0 out/old_s1 --against out/new_s0 out/new_s1   # paired test of two evals

All user-facing output goes through :mod:`functional_grasp.report`. Exit codes: see each
subcommand's ``--help``; 2 is also argparse's code for a bad command line.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from functional_grasp.augment_cli import add_augment_parser, cmd_augment
from functional_grasp.eval_cli import add_eval_parser, cmd_eval
from functional_grasp.grasp_backend_args import EXIT_BAD_BACKEND, GraspBackendError, add_grasp_backend_arguments
from functional_grasp.report import Reporter
from functional_grasp.train_cli import add_train_parser, cmd_train
from functional_grasp.compare import add_compare_parser, cmd_compare
from functional_grasp.completion_cli import add_completion_parser, cmd_completion
from functional_grasp.view import add_view_parser, cmd_view
from grasp_data.cli import add_data_parser, cmd_data

#: Poll period of ``fgrasp launch`` while watching the node processes, seconds.
LAUNCH_POLL_S = 0.2
#: Lines of a dead node's log shown by ``fgrasp launch``.
LAUNCH_LOG_TAIL_LINES = 30


def _object_name(text: str) -> str:
    from sim_bridge.objects import OBJECTS

    if text not in OBJECTS:
        raise argparse.ArgumentTypeError(
            f"unknown object '{text}'; the simulator knows: {', '.join(sorted(OBJECTS))}")
    return text


def _hand_name(text: str) -> str:
    from grasp_planner.hands import available_hands

    if text not in available_hands():
        raise argparse.ArgumentTypeError(
            f"unknown hand '{text}'; config/hands/ has: {', '.join(available_hands())}")
    return text


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _pixels(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer number of pixels, got '{text}'") from None
    if not 16 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"expected 16..4096 pixels, got {value}")
    return value


def _domain_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer ROS domain id, got '{text}'") from None
    if not 0 <= value <= 101:
        raise argparse.ArgumentTypeError(f"ROS domain id must be 0..101, got {value}")
    return value


def _bench_section(text: str) -> str:
    from functional_grasp.bench import SECTIONS

    if text not in SECTIONS:
        raise argparse.ArgumentTypeError(f"unknown bench section '{text}'; choose from {', '.join(SECTIONS)}")
    return text


def _launch_argument(text: str) -> tuple[str, str]:
    key, sep, value = text.partition(":=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key:=value (as for ros2 launch), got '{text}'")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fgrasp`` and its subcommands."""
    from functional_grasp.demo import DEMO_TIMEOUT_S

    parser = argparse.ArgumentParser(
        prog="fgrasp", description="Functional dexterous grasping: simulation demo, graph launcher, benchmarks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,launch,bench,eval,compare,record,replay,view,data,train,augment}")

    demo = sub.add_parser(
        "demo", help="launch the sim graph, grasp one object, write report.json and pictures",
        description="Start the sim graph (simulator, perception, planner) on its own ROS domain, place "
                    "the object on the table, perceive, plan, execute, run the disturbance test, and "
                    "write report.json, grasp.png and scene_after.png into --out. Exit code: 0 the "
                    "grasp was planned, executed and judged (held or not); 2 no joint goal was "
                    "produced, or an unusable --grasp-checkpoint (nothing started); 3 a goal was produced but "
                    "no grasp result arrived; 1 set-up error (including a simulator scene or grasp backend "
                    "other than the one asked for); 130 interrupted. report.json records which grasp backend "
                    "planned (and the checkpoint's path and sha256 for the network).")
    demo.add_argument("--object", type=_object_name, default="mug", metavar="NAME",
                      help="object placed on the table: mug, drill, box or cylinder (default: mug)")
    demo.add_argument("--hand", type=_hand_name, default="shadow", metavar="NAME",
                      help="hand description, config/hands/<NAME>.yaml (default: shadow)")
    demo.add_argument("--out", type=Path, default=Path("out/demo"), metavar="DIR",
                      help="output folder for report.json, the PNGs and logs/ (default: out/demo)")
    demo.add_argument("--timeout-s", type=_positive_float, default=DEMO_TIMEOUT_S, metavar="S",
                      help=f"budget from launch to the grasp result, seconds (default: {DEMO_TIMEOUT_S:g})")
    demo.add_argument("--real-time-factor", type=_non_negative_float, default=0.0, metavar="F",
                      help="simulated seconds per wall second; 0 = as fast as possible, 1 = real time "
                           "(default: 0)")
    demo.add_argument("--camera-width", type=_pixels, default=None, metavar="PX",
                      help="simulated camera width, pixels (default: config/functional_grasp.yaml)")
    demo.add_argument("--camera-height", type=_pixels, default=None, metavar="PX",
                      help="simulated camera height, pixels (default: config/functional_grasp.yaml)")
    demo.add_argument("--domain-id", type=_domain_id, default=None, metavar="ID",
                      help="ROS_DOMAIN_ID of the graph (default: $ROS_DOMAIN_ID, else random 1..100)")
    add_grasp_backend_arguments(demo, "the demo's planner node")

    launch = sub.add_parser(
        "launch", help="start a node graph (sim | real_arm | replay) until Ctrl-C or a node dies",
        description="Start the nodes of a graph of config/graphs.yaml with the project launcher and "
                    "watch them. Exit code: 0 after Ctrl-C or --duration-s; 1 when a node died (its "
                    "log tail is shown); 2 for an unknown graph or argument.")
    launch.add_argument("graph", metavar="GRAPH", help="graph name: sim, real_arm or replay")
    launch.add_argument("arguments", nargs="*", type=_launch_argument, metavar="key:=value",
                        help="launch arguments, e.g. object:=drill hand:=shadow")
    launch.add_argument("--log-dir", type=Path, default=None, metavar="DIR",
                        help="folder for <node>.log (default: out/graph_logs/<GRAPH>)")
    launch.add_argument("--domain-id", type=_domain_id, default=None, metavar="ID",
                        help="ROS_DOMAIN_ID of the nodes (default: the current one)")
    launch.add_argument("--duration-s", type=_positive_float, default=None, metavar="S",
                        help="stop the graph after this many seconds (default: run until Ctrl-C)")

    bench = sub.add_parser(
        "bench", help="time kinematics, perception, simulation and planning on this machine",
        description="Measure each section in this run, each in a fresh subprocess (so every section "
                    "reports its own peak memory, peak_rss_mb), and print one table; write the numbers "
                    "as JSON. Keys ending in _x are ratios.")
    bench.add_argument("sections", nargs="*", type=_bench_section, metavar="SECTION",
                       help="kinematics, perception, sim, planner, network, eval, install (default: all)")
    bench.add_argument("--json", type=Path, default=Path("out/bench.json"), metavar="PATH",
                       help="where to write the results (default: out/bench.json)")
    bench.add_argument("--quick", action="store_true", help="small sample sizes (seconds, not minutes)")
    bench.add_argument("--object", type=_object_name, default="mug", metavar="NAME",
                       help="simulator object of the perception, sim and planner sections (default: mug)")
    bench.add_argument("--hand", type=_hand_name, default="shadow", metavar="NAME",
                       help="hand description (default: shadow)")
    _add_bag_parsers(sub)
    add_eval_parser(sub)
    add_view_parser(sub)
    add_compare_parser(sub)
    add_completion_parser(sub)
    add_data_parser(sub)
    add_train_parser(sub)
    add_augment_parser(sub)
    return parser


def _topic_list(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in names if not t.startswith("/")]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected comma-separated absolute topic names, got '{text}'")
    return names


def _add_bag_parsers(sub) -> None:
    """``fgrasp record`` and ``fgrasp replay`` (core in functional_grasp.bags)."""
    from functional_grasp.bags import catalog, compare
    from functional_grasp.bags.replay import PLANNER_TIMEOUT_S

    record = sub.add_parser(
        "record", help="record camera topics and the stack's outputs into a rosbag2 MCAP bag",
        description="Subscribe (raw CDR, the project's QoS per topic) and write a rosbag2 MCAP bag "
                    "(zstd chunks). The bag appears at --out only when complete; Ctrl-C stops and still "
                    "leaves a valid bag. Exit code: 0 bag written; 2 --out exists or a type is unknown; "
                    "1 other failure (nothing left at --out).")
    record.add_argument("--out", type=Path, required=True, metavar="DIR", help="bag folder to create")
    record.add_argument("--duration", type=_positive_float, default=None, metavar="S",
                        help="stop after S seconds (default: until Ctrl-C or --frames)")
    record.add_argument("--frames", type=int, default=None, metavar="N",
                        help=f"stop after N colour images on {catalog.INPUTS[0].name}")
    record.add_argument("--topics", type=_topic_list, default=catalog.RECORD_DEFAULT, metavar="T1,T2",
                        help="comma-separated topics (default: camera colour/depth/info, /joint_states, "
                             "perception and planner outputs, sim object pose and grasp result)")
    record.add_argument("--domain-id", type=_domain_id, default=None, metavar="ID",
                        help="ROS_DOMAIN_ID to record on (default: the current one)")

    replay = sub.add_parser(
        "replay", help="play a bag through perception + planner, record the outputs, compare to a reference",
        description="Check BAG (camera colour/depth/info and /joint_states, not truncated), start the "
                    "replay graph (config/graphs.yaml, as launch/replay.launch.py) on its own ROS domain, "
                    "play the inputs with the original timing (or --fast: each frame once perception "
                    "answered the previous one), record the stack's outputs into --out and, with "
                    "--expect REF, compare the grasp with REF's. Same bag + same seed gives the same "
                    "grasp: measured run-to-run spread is zero; the tolerances (joint goal "
                    f"{compare.JOINT_TOLERANCE_RAD:g} rad, wrist {compare.POSITION_TOLERANCE_M * 1e3:g} mm / "
                    f"{compare.ROTATION_TOLERANCE_DEG:g} deg, object centroid "
                    f"{compare.CENTROID_TOLERANCE_M * 1e3:g} mm) cover other machines' rounding. Exit code: "
                    "0 done (and matches REF); 1 regression against REF (the diff is printed); 2 bad, "
                    "truncated or incomplete bag or reference (nothing started, no output bag); 3 the "
                    "stack gave no planner status in time; 130 interrupted.")
    replay.add_argument("bag", type=Path, metavar="BAG", help="input bag folder (or its .mcap file)")
    replay.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output bag folder to create (default: out/replay/<BAG>_<time>)")
    replay.add_argument("--expect", type=Path, default=None, metavar="REF",
                        help="reference output bag (an earlier --out); exit 1 if the grasp differs")
    replay.add_argument("--fast", action="store_true",
                        help="do not keep the recorded timing: next frame as soon as perception answered")
    replay.add_argument("--hand", type=_hand_name, default="shadow", metavar="NAME",
                        help="hand launch argument of the replay graph (default: shadow)")
    replay.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed launch argument: perception RANSAC and planner IK restarts (default: 0)")
    replay.add_argument("--timeout-s", type=_positive_float, default=PLANNER_TIMEOUT_S, metavar="S",
                        help=f"wait for the planner after the last message (default: {PLANNER_TIMEOUT_S:g})")
    replay.add_argument("--domain-id", type=_domain_id, default=None, metavar="ID",
                        help="ROS_DOMAIN_ID of the graph (default: $ROS_DOMAIN_ID, else random 1..100)")
    replay.add_argument("--log-dir", type=Path, default=None, metavar="DIR",
                        help="node logs (default: out/graph_logs/replay)")
    for flag, default, unit in (("--joint-tol", compare.JOINT_TOLERANCE_RAD, "rad"),
                                ("--position-tol", compare.POSITION_TOLERANCE_M, "m"),
                                ("--rotation-tol", compare.ROTATION_TOLERANCE_DEG, "deg")):
        replay.add_argument(flag, type=_non_negative_float, default=default, metavar=unit.upper(),
                            help=f"--expect tolerance, {unit} (default: {default:g})")


def _cmd_demo(args: argparse.Namespace, rep: Reporter) -> int:
    from functional_grasp.demo import EXIT_SETUP, DemoConfig, run_demo

    try:
        config = DemoConfig(object=args.object, hand=args.hand, out_dir=args.out, timeout_s=args.timeout_s,
                            real_time_factor=args.real_time_factor, camera_width=args.camera_width,
                            camera_height=args.camera_height, domain_id=args.domain_id,
                            grasp_backend=args.grasp_backend, grasp_checkpoint=args.grasp_checkpoint)
    except GraspBackendError as exc:     # bad command line: nothing started
        rep.error(str(exc))
        return EXIT_BAD_BACKEND
    except ValueError as exc:
        rep.error(str(exc))
        return EXIT_SETUP
    return run_demo(config, rep)


def _cmd_launch(args: argparse.Namespace, rep: Reporter) -> int:
    from functional_grasp.graph_config import GraphConfigError
    from functional_grasp.launcher import launch_graph

    arguments = dict(args.arguments)
    try:
        graph = launch_graph(args.graph, arguments, domain_id=args.domain_id, log_dir=args.log_dir)
    except GraphConfigError as exc:
        rep.error(str(exc))
        return 2
    with graph:  # stops every node on any exit path
        rep.stage("graph", "started", f"{args.graph}: "
                  f"{', '.join(f'{n}[{p}]' for n, p in graph.pids().items())}; logs in {graph.log_dir}")
        deadline = None if args.duration_s is None else time.monotonic() + args.duration_s
        try:
            while graph.alive():
                if deadline is not None and time.monotonic() > deadline:
                    rep.stage("graph", "stopping", f"--duration-s {args.duration_s:g} reached")
                    return 0
                time.sleep(LAUNCH_POLL_S)
        except KeyboardInterrupt:
            rep.stage("graph", "stopping", "interrupted")
            return 0
        dead = {n: c for n, c in graph.returncodes().items() if c is not None}
        rep.error(f"graph {args.graph}: node(s) exited: "
                  + ", ".join(f"{n} (exit code {c})" for n, c in dead.items()) + "; stopping the others")
        for name in dead:
            rep.block(f"--- last {LAUNCH_LOG_TAIL_LINES} lines of {graph.log_path(name)}:",
                      graph.log_tail(name, LAUNCH_LOG_TAIL_LINES))
        return 1


def _cmd_bench(args: argparse.Namespace, rep: Reporter) -> int:
    from functional_grasp.bench import BenchConfig, run_bench, table_rows, write_json

    config = BenchConfig.make(quick=args.quick, object=args.object, hand=args.hand)

    def progress(name: str, metrics: dict, wall_s: float) -> None:
        state = "failed" if "error" in metrics else "done"
        rep.stage(name, state, metrics.get("error", f"{wall_s:.1f} s"))

    results = run_bench(args.sections, config, on_section=progress)
    rep.line()
    rep.table(table_rows(results), headers=("section", "metric", "value", "unit"),
              title=f"== fgrasp bench ({'quick' if args.quick else 'full'}; {results['machine']['cpus']} CPUs; "
                    f"load average {results['machine']['load_avg_1min_at_end']:.1f} at the end) ==")
    write_json(args.json, results)
    rep.line(f"wrote {args.json}")
    return 1 if any("error" in m for m in results["sections"].values()) else 0


def _cmd_record(args: argparse.Namespace, rep: Reporter) -> int:
    from functional_grasp.bags.record import EXIT_BAD_REQUEST, RecordConfig, record_bag

    try:
        config = RecordConfig(out=args.out, topics=args.topics, duration_s=args.duration,
                              frames=args.frames, domain_id=args.domain_id)
    except ValueError as exc:
        rep.error(str(exc))
        return EXIT_BAD_REQUEST
    return record_bag(config, rep)


def _cmd_replay(args: argparse.Namespace, rep: Reporter) -> int:
    from functional_grasp.bags.compare import Tolerances
    from functional_grasp.bags.replay import EXIT_BAD_INPUT, ReplayConfig, run_replay

    try:
        config = ReplayConfig(bag=args.bag, out=args.out, expect=args.expect, fast=args.fast, hand=args.hand,
                              seed=args.seed, planner_timeout_s=args.timeout_s, domain_id=args.domain_id,
                              log_dir=args.log_dir,
                              tolerances=Tolerances(joint_rad=args.joint_tol, position_m=args.position_tol,
                                                    rotation_deg=args.rotation_tol))
    except ValueError as exc:
        rep.error(str(exc))
        return EXIT_BAD_INPUT
    return run_replay(config, rep)


def _raise_interrupt(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fgrasp`` console script; returns the exit code."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    rep = Reporter()
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM cleans up like Ctrl-C
    # a background job of a non-interactive shell starts with SIGINT ignored; `kill -INT` (and the
    # Ctrl-C of `fgrasp record`) must still stop the command cleanly
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        handler = {"demo": _cmd_demo, "launch": _cmd_launch, "bench": _cmd_bench, "eval": cmd_eval,
                   "record": _cmd_record, "replay": _cmd_replay, "view": cmd_view, "compare": cmd_compare,
                   "data": cmd_data, "train": cmd_train, "augment": cmd_augment,
                   "completion": cmd_completion}[args.command]
        return handler(args, rep)
    except KeyboardInterrupt:
        rep.error("interrupted")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
