"""The ``fgrasp eval`` subcommand: argument parser and command (core in :mod:`functional_grasp.eval`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from functional_grasp.grasp_backend_args import (add_grasp_backend_arguments, describe_backend, fallback_warning,
                                                  refuse_with_network_mode)
from functional_grasp.report import Reporter


def _int_at_least(lowest: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lowest}, got {value}")
        return value
    return parse


def _millimetres(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected millimetres, got '{text}'") from None
    if not 0 <= value <= 50:
        raise argparse.ArgumentTypeError(f"expected millimetres in [0, 50], got {value}")
    return value


def add_eval_parser(sub) -> None:
    """Add ``fgrasp eval`` to the subparsers ``sub``."""
    ev = sub.add_parser(
        "eval", help="success rates of the whole pipeline over objects x random poses (no ROS); "
                     "with --network: a network checkpoint alone on generated objects",
        description="Two evaluations. PIPELINE (default): for every object and trial, place the object at a "
                    "random pose on the table, render the RGB-D camera, segment, plan with the planner's "
                    "grasp backend (--grasp-backend, default from config/functional_grasp.yaml), execute in "
                    "MuJoCo and run the D(R,O) disturbance test, all in process on the nodes' cores. Prints "
                    "success with 95 % Wilson intervals, failure reasons, stage latencies and the grasp "
                    "backend that planned; writes results.json and gallery.png into --out. NETWORK "
                    "(--network CHECKPOINT): no scene, perception or planner; see 'network mode' below. "
                    "Exit code: 0 evaluated (whatever the success rate); 2 bad input (unknown object, "
                    "unreadable mesh or regions file, unusable --grasp-checkpoint, --grasp-backend with "
                    "--network); 1 the results could not be written; 130 interrupted (the trials done so far "
                    "are written).")
    ev.add_argument("--objects", nargs="+", default=None, metavar="NAME",
                    help="catalogue objects (mug drill box cylinder) or 'all' (default: all, unless "
                         "--mesh is given); with --network: one number, held-out instances per category")
    ev.add_argument("--mesh", action="append", type=Path, default=[], metavar="PATH",
                    help="an OBJ/STL/PLY mesh evaluated as an object (repeatable)")
    ev.add_argument("--scale", type=float, default=1.0, metavar="S",
                    help="scale of --mesh vertices to metres, e.g. 0.001 for millimetres (default: 1)")
    ev.add_argument("--regions", type=Path, default=None, metavar="FILE",
                    help="JSON {\"functional\": [vertex indices], \"avoid\": [...]} of the one --mesh: "
                         "success then also needs a fingertip on the functional region and no "
                         "contact with an avoidance region")
    ev.add_argument("--collision", choices=("hull", "coacd"), default=None,
                    help="collision geometry of --mesh (default: hull) or of the --network mode's generated "
                         "instances (default: coacd, as the data engine): convex hull or CoACD decomposition (cached)")
    ev.add_argument("--trials", type=_int_at_least(1), default=10, metavar="N",
                    help="trials per object (default: 10)")
    ev.add_argument("--seed", type=_int_at_least(0), default=0, metavar="S",
                    help="seed of the random object poses (default: 0)")
    ev.add_argument("--hand", default="shadow", metavar="NAME",
                    help="hand description, config/hands/<NAME>.yaml (default: shadow)")
    ev.add_argument("--workers", type=_int_at_least(1), default=1, metavar="N",
                    help="parallel worker processes, each with its own simulator (default: 1)")
    ev.add_argument("--out", type=Path, default=Path("out/eval"), metavar="DIR",
                    help="output folder for results.json and gallery.png (default: out/eval)")
    ev.add_argument("--xy-jitter-m", type=float, default=0.05, metavar="M",
                    help="object placement uniform within +-M of (0.5, 0.0) m (default: 0.05)")
    ev.add_argument("--camera-width", type=_int_at_least(16), default=640, metavar="PX",
                    help="rendered RGB-D width, pixels (default: 640)")
    ev.add_argument("--camera-height", type=_int_at_least(16), default=480, metavar="PX",
                    help="rendered RGB-D height, pixels (default: 480)")
    ev.add_argument("--no-gallery", action="store_true", help="skip the thumbnails and gallery.png")
    pipe = ev.add_argument_group(
        "pipeline mode", "the planner's grasp predictor in the full-pipeline evaluation (not with --network); "
        "results.json records the backend that planned every trial, with the checkpoint's path and sha256")
    add_grasp_backend_arguments(pipe, "the pipeline's planner")
    net = ev.add_argument_group(
        "network mode", "--network CHECKPOINT: judge the D(R,O) network's top-ranked grasp on held-out generated "
        "instances (seeds no training data uses) with the data engine's validator (floating hand, D(R,O) "
        "disturbance protocol, CorDex functional criterion); per category: stable and stable + functional "
        "success with 95 % Wilson intervals and failure reasons, written to --out/network_eval.json")
    net.add_argument("--network", type=Path, default=None, metavar="CHECKPOINT",
                     help="network checkpoint (.safetensors) of --hand")
    net.add_argument("--category", nargs="+", default=None, metavar="NAME",
                     help="generated object categories (drill spray_bottle hammer mug syringe glue_gun)")
    net.add_argument("--view", choices=("full", "partial"), default="full",
                     help="object cloud: full surface, or one rendered RGB-D view (default: full)")
    net.add_argument("--samples", type=_int_at_least(1), default=16, metavar="K",
                     help="CVAE samples (candidates) per object; the top-ranked one is judged (default: 16)")
    net.add_argument("--threads", type=_int_at_least(1), default=1, metavar="N",
                     help="torch threads (default: 1, fastest on a loaded 2-core CPU)")
    net.add_argument("--refine-iterations", type=_int_at_least(0), default=15, metavar="N",
                     help="contact/penetration refinement iterations after recovery (default: 15; 0 = off)")
    net.add_argument("--refine-margin-mm", type=_millimetres, default=1.0, metavar="MM",
                     help="the refinement pushes hand points this far out of the surface (default: 1)")
    net.add_argument("--collision-points", type=_int_at_least(0), default=0, metavar="N",
                     help="denser hand points the refinement keeps out of the object besides the network's "
                          "rows (default: 0 = the rows only; 1024 with --refine-iterations 30 --refine-margin-mm 3: "
                          "README, 'Collision points')")
    net.add_argument("--no-closure", action="store_true",
                     help="judge the recovered joints as they are (no contact closure of the fingers)")
    net.add_argument("--free-fingers", choices=("close", "stay"), default=None,
                     help="closure of a finger that touches nothing of the observed surface: close it fully or "
                          "leave it at its recovered joints (default: the planner's, NetworkPredictorConfig.free_fingers)")
    net.add_argument("--standoff-mm", type=_millimetres, default=None, metavar="MM",
                     help="after the ranking, back each candidate's wrist off this far along its approach axis "
                          "(default: the hand's network_standoff_m, config/hands/<hand>.yaml; 0 = off)")
    net.add_argument("--sim-check", choices=("on", "off"), default=None,
                     help="judge every candidate in MuJoCo on the shape estimated from the view and rank those that hold "
                          "first (default: the hand's network_sim_check, config/hands/<hand>.yaml: OYMotion on; README, "
                          "'Simulated check')")
    net.add_argument("--completion", type=Path, default=None, metavar="CKPT",
                     help="shape-completion checkpoint: the refinement and closure see the view plus its guessed "
                          "unseen side (fgrasp completion train; default: none, the view alone)")
    net.add_argument("--judge-all", action="store_true",
                     help="judge every candidate, not only the top-ranked one: adds the best-of-K rates (how much a "
                          "perfect ranking would gain) and each candidate's ranking terms and verdict to the results")
    net.add_argument("--oracle", type=Path, default=None, metavar="DATASET",
                     help="feed the recovery the TRUE matrices of this data-engine dataset's kept grasps instead of "
                          "the network's (its first --objects objects per category): what the stages after the "
                          "network keep of perfect predictions")
    net.add_argument("--oracle-offset-m", type=float, default=0.0, metavar="M",
                     help="with --oracle: shift each true grasp's hand by M metres in a random direction first "
                          "(a network whose placement is off by M; default 0)")
    net.add_argument("--baseline-optimiser", action="store_true",
                     help="judge the planner's optimiser instead of the network on the same held-out instances and "
                          "views (a baseline; the checkpoint still names the hand)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_eval(args: argparse.Namespace, rep: Reporter) -> int:
    """Run ``fgrasp eval``; the exit code."""
    from functional_grasp.eval import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, RESULTS_FILE, SUMMARY_HEADERS,
                                       EvalConfig, EvalInputError, latency_rows, run_eval, summary_rows)

    if args.network is not None:
        from functional_grasp.net_eval_cli import cmd_network_eval

        refused = refuse_with_network_mode(args)
        if refused:
            rep.error(refused)
            return EXIT_BAD_INPUT

        return cmd_network_eval(args, rep)
    if args.category is not None:
        rep.error("--category selects generated instances for --network; use --objects or --mesh without it")
        return EXIT_BAD_INPUT
    args.collision = args.collision or "hull"
    objects = tuple(args.objects) if args.objects else (() if args.mesh else ("all",))
    try:
        config = EvalConfig(objects=objects, meshes=tuple(args.mesh), scale=args.scale, regions=args.regions,
                            collision=args.collision, trials=args.trials, seed=args.seed, hand=args.hand,
                            workers=args.workers, out_dir=args.out, xy_jitter_m=args.xy_jitter_m,
                            camera_width=args.camera_width, camera_height=args.camera_height,
                            gallery=not args.no_gallery, grasp_backend=args.grasp_backend,
                            grasp_checkpoint=args.grasp_checkpoint)
        asked = config.grasp_backend or "grasp backend from config/functional_grasp.yaml"
        rep.stage("eval", "started", f"{args.trials} trial(s) per object, {args.workers} worker(s), "
                  f"{args.hand} hand, {asked}, seed {args.seed}")
        results = run_eval(config, progress=not args.no_progress)
    except EvalInputError as exc:
        rep.error(str(exc))
        return EXIT_BAD_INPUT
    except OSError as exc:
        rep.error(f"could not write the results into {args.out}: {exc}")
        return EXIT_FAILED
    rep.line()
    rep.table(summary_rows(results), headers=SUMMARY_HEADERS,
              title=f"== fgrasp eval: {results['overall']['trials']} trials in {results['wall_time_s']:.0f} s "
                    f"(D(R,O) protocol in MuJoCo: 0.5 x mass N, 6 directions, held if <= 2 cm) ==")
    rep.line()
    rep.table(latency_rows(results), headers=("stage", "n", "median s", "p95 s"), title="stage latency (all trials)")
    rep.line()
    for used in results["grasp_backend"]["planned_by"]:
        rep.line(f"grasp backend: {describe_backend(used)} planned {used['trials']} trial(s)")
        if fallback_warning(used):
            rep.warning(f"planner: {fallback_warning(used)}")
    rep.line(f"wrote {config.out_dir / RESULTS_FILE}"
             + ("" if args.no_gallery else f" and {config.out_dir / 'gallery.png'}"))
    return EXIT_OK
