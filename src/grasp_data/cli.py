"""``fgrasp data``: the data engine's subcommands.

    fgrasp data show --out out/gallery.png                     # one instance per category
    fgrasp data show --category drill --seed 4 --contacts --out drill.png
    fgrasp data generate --category drill --objects 50 --hand oymotion --out DIR   # dataset
    fgrasp data generate ... --workers 2                       # local worker processes
    fgrasp data generate ... --ray-address auto                # Ray cluster (pip install ray)
    fgrasp data import-human RECORD.json... --hand shadow --out DIR   # human grasps (Web2Grasp)

``generate`` resumes: run it again with the same options (or more ``--objects``) and it only
makes the objects missing from ``DIR`` (format: :mod:`grasp_data.dataset`).

``--contacts`` transfers the category's demonstration to the instance and marks the most
confident candidate per finger. The ``fgrasp`` entry point (``functional_grasp.cli``) adds the
parser with :func:`add_data_parser` and calls :func:`cmd_data` with its reporter.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _category(text: str) -> str:
    from grasp_data.objects import categories

    if text not in categories():
        raise argparse.ArgumentTypeError(f"unknown category '{text}'; choose from {', '.join(categories())}")
    return text


def _int_in(low: int, high: int, what: str):
    """An argparse type: an integer ``what`` in ``low..high``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {what}, got '{text}'") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be {low}..{high}, got {value}")
        return value
    return parse


def add_data_parser(sub: Any) -> None:
    """Add ``data`` and its subcommands to the ``fgrasp`` subparsers ``sub``."""
    data = sub.add_parser("data", help="functional objects, demonstrations and contact transfer",
                          description="The data engine's object side. Exit code: 0 done, 1 a step failed.")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="{show,generate,import-human}")
    show = data_sub.add_parser(
        "show", help="draw generated instances coloured by functional region into a PNG",
        description="Generate one instance per category (default: every category) and write a PNG "
                    "with two views of each, faces coloured by region (grey body, blue grip, green/"
                    "orange functional, red avoid).")
    show.add_argument("--category", type=_category, nargs="+", default=None, metavar="NAME",
                      help="categories to draw (default: all)")
    show.add_argument("--installed", nargs="+", default=[], metavar="OBJECT",
                      help="also draw real meshes of installed packages by catalogue name (mug, drill); "
                           "alone: only these")
    show.add_argument("--seed", type=_int_in(0, 2**32 - 1, "seed"), default=0,
                      help="generator seed of every instance (default: 0)")
    show.add_argument("--contacts", action="store_true",
                      help="transfer the category demonstration and mark the best candidate per finger")
    show.add_argument("--size-px", type=_int_in(64, 2048, "view size in pixels"), default=320, metavar="PX",
                      help="size of each view, pixels (default: 320)")
    show.add_argument("--out", type=Path, default=Path("out/data/gallery.png"), metavar="PNG",
                      help="picture to write (default: out/data/gallery.png)")
    _add_generate_parser(data_sub)
    _add_import_human_parser(data_sub)


def _add_generate_parser(data_sub: Any) -> None:
    from grasp_data.engine import COLLISIONS, GenerateSettings

    d = GenerateSettings()
    gen = data_sub.add_parser(
        "generate", help="generate a grasp dataset: objects, adapted and validated grasps, RGB-D renders",
        description="For every object: transfer the category demonstration, adapt a batch of grasps, "
                    "validate them in MuJoCo (disturbance + functional criterion), render RGB-D views, and "
                    "write one shard. Re-running resumes. Exit code: 0 done, 1 failed.")
    gen.add_argument("--category", type=_category, nargs="+", required=True, metavar="NAME",
                     help="object categories")
    gen.add_argument("--objects", type=_int_in(1, 100000, "object count"), required=True,
                     help="objects per category")
    gen.add_argument("--hand", default=d.hand, help=f"hand (config/hands/<hand>.yaml; default {d.hand})")
    gen.add_argument("--out", type=Path, required=True, metavar="DIR", help="dataset folder (created or resumed)")
    gen.add_argument("--grasps", type=_int_in(1, 4096, "grasps per object"), default=d.grasps_per_object,
                     help=f"grasps adapted and validated per object (default {d.grasps_per_object})")
    gen.add_argument("--iterations", type=_int_in(0, 100000, "iterations"), default=d.iterations,
                     help=f"adaptation steps (default {d.iterations})")
    gen.add_argument("--views", type=_int_in(0, 10000, "views"), default=d.views,
                     help=f"RGB-D renders per object (default {d.views})")
    gen.add_argument("--image-size", type=_int_in(16, 4096, "image size"), nargs=2, default=(d.image_width, d.image_height),
                     metavar=("W", "H"), help=f"render size, pixels (default {d.image_width} {d.image_height})")
    gen.add_argument("--collision", choices=COLLISIONS, default=d.collision,
                     help="validation collision geometry: coacd (convex decomposition, cached) or hull")
    gen.add_argument("--seed", type=_int_in(0, 2**32 - 1, "seed"), default=d.seed, help="dataset seed (default 0)")
    gen.add_argument("--workers", type=_int_in(0, 256, "worker count"), default=1,
                     help="local worker processes (0 = in this process; default 1)")
    gen.add_argument("--threads", type=_int_in(1, 64, "thread count"), default=2,
                     help="simulation threads per worker (default 2)")
    gen.add_argument("--ray-address", default=None, metavar="ADDR",
                     help="run on this Ray cluster (e.g. auto, ray://head:10001) instead of local processes")


def _add_import_human_parser(data_sub: Any) -> None:
    from grasp_data.engine import COLLISIONS, GenerateSettings

    d = GenerateSettings()
    imp = data_sub.add_parser(
        "import-human", help="retarget human hand–object records to a robot hand, adapt, validate, store",
        description="Read human grasp records (21 hand keypoints + object mesh and pose; format in "
                    "grasp_data/human_records.py), retarget each to the robot hand by keypoint position "
                    "optimisation, adapt a batch of grasps around it with the human fingertip contacts as "
                    "targets, validate them in MuJoCo, and write one dataset shard per record (meta.source "
                    "'human'). Re-running resumes. Exit code: 0 done, 1 a record or the folder is unusable.")
    imp.add_argument("records", type=Path, nargs="+", metavar="RECORD", help="record JSON files (a record or a list)")
    imp.add_argument("--hand", default=d.hand, help=f"hand (config/hands/<hand>.yaml; default {d.hand})")
    imp.add_argument("--out", type=Path, required=True, metavar="DIR", help="dataset folder (created or resumed)")
    imp.add_argument("--grasps", type=_int_in(1, 4096, "grasps per record"), default=d.grasps_per_object,
                     help=f"grasps adapted and validated per record (default {d.grasps_per_object})")
    imp.add_argument("--iterations", type=_int_in(0, 100000, "iterations"), default=d.iterations,
                     help=f"adaptation steps (default {d.iterations})")
    imp.add_argument("--views", type=_int_in(0, 10000, "views"), default=d.views,
                     help=f"RGB-D renders per record (default {d.views})")
    imp.add_argument("--collision", choices=COLLISIONS, default=d.collision,
                     help="validation collision geometry: coacd (convex decomposition, cached) or hull")
    imp.add_argument("--seed", type=_int_in(0, 2**32 - 1, "seed"), default=d.seed, help="seed of the adaptation noise")
    imp.add_argument("--threads", type=_int_in(1, 64, "thread count"), default=2, help="simulation threads (default 2)")


def cmd_data(args: argparse.Namespace, rep: Any) -> int:
    """Run ``fgrasp data <command>``; ``rep`` is the CLI's reporter. Returns the exit code."""
    return {"show": _cmd_show, "generate": _cmd_generate,
            "import-human": _cmd_import_human}[args.data_command](args, rep)


def _cmd_generate(args: argparse.Namespace, rep: Any) -> int:
    from grasp_data.dataset import DatasetError
    from grasp_data.engine import GenerateSettings, generate_dataset
    from grasp_planner.hands import UnknownHandError, load_hand

    try:
        load_hand(args.hand)
    except UnknownHandError as exc:
        rep.error(str(exc))
        return 1
    settings = GenerateSettings(hand=args.hand, seed=args.seed, grasps_per_object=args.grasps,
                                iterations=args.iterations, views=args.views, image_width=args.image_size[0],
                                image_height=args.image_size[1], collision=args.collision)
    try:
        summary = generate_dataset(settings, args.category, args.objects, args.out, workers=args.workers,
                                   ray_address=args.ray_address, validation_threads=args.threads)
    except (DatasetError, ImportError) as exc:
        rep.error(str(exc))
        return 1
    for category in args.category:
        tried, kept = summary.tried.get(category, 0), summary.kept.get(category, 0)
        rep.stage(category, "done", f"grasps kept {kept}/{tried} ({100.0 * kept / max(tried, 1):.1f} %)")
    if summary.reasons:
        rep.line("outcomes this run: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.reasons.items())))
    if summary.adaptation_s:
        rep.line(f"adaptation {sum(summary.adaptation_s) / len(summary.adaptation_s):.2f} s per object "
                 f"({args.grasps} grasps); validation {sum(summary.trials_per_s) / max(len(summary.trials_per_s), 1):.1f} "
                 "disturbance trials/s per object")
    for name, why in sorted(summary.bad_instances.items()):
        rep.line(f"skipped {name}: {why}")
    rep.line(f"{summary.objects_written} objects written, {summary.objects_skipped} already done, "
             f"{summary.wall_time_s:.1f} s; dataset: {args.out}")
    return 0


def _cmd_import_human(args: argparse.Namespace, rep: Any) -> int:
    import numpy as np

    from grasp_data.dataset import DatasetError
    from grasp_data.engine import GenerateSettings
    from grasp_data.human_import import import_human
    from grasp_data.human_records import HumanRecordError, load_records
    from grasp_data.retarget import RetargetError
    from grasp_planner.hands import UnknownHandError, load_hand

    try:
        load_hand(args.hand)
        records = load_records(args.records)
    except (UnknownHandError, HumanRecordError) as exc:
        rep.error(str(exc))
        return 1
    settings = GenerateSettings(hand=args.hand, seed=args.seed, grasps_per_object=args.grasps,
                                iterations=args.iterations, views=args.views, collision=args.collision)
    try:
        s = import_human(records, settings, args.out, validation_threads=args.threads)
    except (DatasetError, RetargetError) as exc:
        rep.error(str(exc))
        return 1
    for name, why in s.unusable.items():
        rep.stage(name, "skipped", why)
    if s.retargeted:
        rep.line(f"retargeted {s.retargeted} record(s) in {s.retarget_time_s:.2f} s "
                 f"({1e3 * s.retarget_time_s / s.retargeted:.0f} ms per grasp, batched); touching fingertips "
                 f"{1e3 * float(np.mean(s.contact_gap_m)):.1f} mm from the surface, fingertips "
                 f"{1e3 * float(np.mean(s.tip_error_m)):.1f} mm from the scaled human hand")
    if s.shards.reasons:
        rep.line("outcomes this run: " + ", ".join(f"{k} {v}" for k, v in sorted(s.shards.reasons.items())))
    rep.stage("human", "done", f"records {s.records} ({s.already_done} already done, {len(s.unusable)} unusable), "
              f"retargeted {s.retargeted}, grasps kept {s.kept}/{s.tried} ({100.0 * s.kept / max(s.tried, 1):.1f} %)")
    rep.line(f"{s.shards.objects_written} shards written, {s.shards.wall_time_s:.1f} s; dataset: {args.out}")
    return 0


def _cmd_show(args: argparse.Namespace, rep: Any) -> int:
    import numpy as np

    from grasp_data.demonstrations import DemonstrationError, load_demonstration
    from grasp_data.gallery import render_gallery
    from grasp_data.mesh_io import MeshFileError
    from grasp_data.objects import categories, generate
    from grasp_data.package_meshes import installed_mesh
    from grasp_data.transfer import transfer_contacts

    try:
        chosen = [(f"installed {name}", installed_mesh(name)) for name in args.installed]
    except MeshFileError as exc:
        rep.error(str(exc))
        return 1
    chosen = [(c, generate(c, args.seed)) for c in args.category or ([] if chosen else categories())] + chosen
    instances, marks = [], []
    for label, instance in chosen:
        category = instance.category
        instances.append(instance)
        detail = f"{len(instance.mesh.faces)} faces, " + ", ".join(
            f"{n} {instance.region_area_m2(n) * 1e4:.1f} cm²" for n in instance.region_names)
        if args.contacts:
            try:
                result = transfer_contacts(load_demonstration(category), instance, seed=args.seed)
            except DemonstrationError as exc:
                rep.error(str(exc))
                return 1
            best = {f: c[0] for f, c in result.candidates.items() if c}
            marks.append(np.array([c.point_m for c in best.values()]) if best else None)
            detail += "; contacts: " + ", ".join(f"{f}→{c.region} ({c.confidence:.2f})" for f, c in best.items())
        else:
            marks.append(None)
        rep.stage(label, "done", detail)
    path = render_gallery(instances, args.out, size_px=args.size_px, points=marks)
    rep.line(f"wrote {path}")
    return 0
