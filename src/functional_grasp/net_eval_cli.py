"""``fgrasp eval --network CHECKPOINT``: the network mode of ``fgrasp eval`` (core: :mod:`functional_grasp.net_eval`).

    fgrasp eval --network out/train/oymotion/last.safetensors --hand oymotion \\
        --category drill hammer --objects 20 [--view partial] [--samples 16] [--collision hull]

Exit codes: 0 evaluated (whatever the success rate); 2 bad input (missing checkpoint, another
hand's checkpoint, unknown category, a count that is not a number); 1 the results could not be
written; 130 interrupted (the objects done so far are written).
"""
from __future__ import annotations

import argparse

import numpy as np

from functional_grasp.report import Reporter

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def check_categories(names, rep: Reporter) -> list[str] | None:
    """The category names if every one has a generator; None (after an error line) otherwise."""
    from grasp_data.objects import categories

    if not names:
        rep.error(f"give --category NAME [NAME ...]; categories: {', '.join(categories())}")
        return None
    unknown = [n for n in names if n not in categories()]
    if unknown:
        rep.error(f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                  f"choose from {', '.join(categories())}")
        return None
    return list(dict.fromkeys(names))


def cmd_network_eval(args: argparse.Namespace, rep: Reporter) -> int:
    """Run the network mode of ``fgrasp eval``; the exit code."""
    from functional_grasp.eval_stats import percent_ci
    from functional_grasp.net_deploy import DeployConfig
    from functional_grasp.net_eval import RESULTS_FILE, SUMMARY_HEADERS, run_network_eval, summary_rows
    from grasp_planner.network.checkpoint import CheckpointMismatchError

    if args.mesh:
        rep.error("--mesh and --network are two modes of fgrasp eval: use one")
        return EXIT_BAD_INPUT
    categories = check_categories(args.category, rep)
    if categories is None:
        return EXIT_BAD_INPUT
    raw = args.objects or ["10"]
    if len(raw) != 1 or not raw[0].isdigit() or int(raw[0]) < 1:
        rep.error(f"with --network, --objects is one number (held-out instances per category), got {' '.join(raw)}")
        return EXIT_BAD_INPUT
    objects = int(raw[0])
    if not args.network.is_file():
        rep.error(f"network checkpoint not found: {args.network} (train one with `fgrasp train --hand {args.hand} "
                  "--data DIR --out DIR`; it writes DIR/last.safetensors)")
        return EXIT_BAD_INPUT
    completion = getattr(args, "completion", None)
    if completion is not None and not completion.is_file():
        rep.error(f"shape-completion checkpoint not found: {completion} (train one with `fgrasp completion train`)")
        return EXIT_BAD_INPUT
    import torch

    torch.set_num_threads(args.threads)
    config = DeployConfig(view=args.view, samples=args.samples, validate="all" if args.judge_all else "top",
                          collision=args.collision or "coacd",
                          seed=args.seed, refine_iterations=args.refine_iterations, close_fingers=not args.no_closure,
                          refine_margin_m=args.refine_margin_mm / 1000.0, collision_points=args.collision_points,
                          free_fingers=getattr(args, "free_fingers", None),
                          standoff_m=None if getattr(args, "standoff_mm", None) is None else args.standoff_mm / 1000.0,
                          completion=None if getattr(args, "completion", None) is None else str(args.completion),
                          sim_check={"on": True, "off": False}.get(getattr(args, "sim_check", None)),
                          backend="optimiser" if args.baseline_optimiser else "network")
    oracle = getattr(args, "oracle", None)
    if oracle is not None and args.baseline_optimiser:
        rep.error("--oracle feeds the network's recovery with true matrices; it cannot be combined with --baseline-optimiser")
        return EXIT_BAD_INPUT
    what = (f"{objects} held-out instance(s)" if oracle is None
            else f"ORACLE: the true matrices of the kept grasps of {objects} object(s) of {oracle}")
    rep.stage("eval", "started", f"network {args.network}, {args.hand} hand, {what} per category of "
              f"{', '.join(categories)}, {args.view} view, {args.samples} samples, seed {args.seed}")
    try:
        results = run_network_eval(args.network, args.hand, categories, objects, config, args.out,
                                   progress=not args.no_progress, oracle=oracle,
                                   oracle_offset_m=getattr(args, "oracle_offset_m", 0.0))
    except (FileNotFoundError, CheckpointMismatchError, ValueError) as exc:
        rep.error(str(exc))
        return EXIT_BAD_INPUT
    except OSError as exc:
        rep.error(f"could not write the results into {args.out}: {exc}")
        return EXIT_FAILED
    rep.line()
    rep.table(summary_rows(results), headers=SUMMARY_HEADERS,
              title=f"== fgrasp eval --network ({config.backend}, {args.hand}, {args.view} view): "
                    f"{results['overall']['objects']} {'held-out' if oracle is None else 'oracle'} "
                    f"objects in {results['wall_time_s']:.0f} s; top-ranked grasp of {args.samples}, floating hand, "
                    "0.5 x mass N x 6 directions, held if <= 2 cm; functional within 5 mm ==")
    if oracle is not None:
        judged = [r for r in results["objects"] if r.get("validated")]
        n, kept = sum(r["validated"] for r in judged), sum(r["kept"] for r in judged)
        moved = [j["oracle_moved_m"] for r in judged for j in (r.get("judged") or [r["top"]]) if "oracle_moved_m" in j]
        offset = getattr(args, "oracle_offset_m", 0.0)
        what = f"true grasps shifted by {1000 * offset:g} mm" if offset else "true grasps"
        rep.line(f"oracle: {kept}/{n} {what} ({100 * kept / max(n, 1):.1f} %) stable + functional after "
                 "the stages that follow the network" + ("" if args.judge_all else " (top-ranked only; --judge-all "
                                                         "judges every one)")
                 + (f"; wrist moved from the true grasp: median {1000 * float(np.median(moved)):.1f} mm, "
                    f"max {1000 * max(moved):.1f} mm" if moved else ""))
    best = results["overall"].get("best_of_k")
    if best:
        rep.line(f"best of {args.samples} (every candidate judged): stable {percent_ci(best['stable'])}, "
                 f"stable + functional {percent_ci(best['stable_functional'])}")
    check = results["overall"].get("sim_check")
    if check:
        rep.line(f"simulated check (the shape estimated from the view): the top-ranked grasp held on it for "
                 f"{check['held_on_estimate']}/{check['checked']} objects, {check['held_on_estimate_and_stable']} of "
                 f"them stable in the judge; {check['stable_not_held_on_estimate']} stable without passing it")
    if results["bad_instances"]:
        rep.line(f"not counted (the generator's draw failed): {', '.join(results['bad_instances'])}")
    rep.line(f"wrote {args.out / RESULTS_FILE}")
    return EXIT_OK
