"""``fgrasp data``: the data engine's subcommands (``show`` for now).

    fgrasp data show --out out/gallery.png                     # one instance per category
    fgrasp data show --category drill --seed 4 --contacts --out drill.png

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
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="{show}")
    show = data_sub.add_parser(
        "show", help="draw generated instances coloured by functional region into a PNG",
        description="Generate one instance per category (default: every category) and write a PNG "
                    "with two views of each, faces coloured by region (grey body, blue grip, green/"
                    "orange functional, red avoid).")
    show.add_argument("--category", type=_category, nargs="+", default=None, metavar="NAME",
                      help="categories to draw (default: all)")
    show.add_argument("--seed", type=_int_in(0, 2**32 - 1, "seed"), default=0,
                      help="generator seed of every instance (default: 0)")
    show.add_argument("--contacts", action="store_true",
                      help="transfer the category demonstration and mark the best candidate per finger")
    show.add_argument("--size-px", type=_int_in(64, 2048, "view size in pixels"), default=320, metavar="PX",
                      help="size of each view, pixels (default: 320)")
    show.add_argument("--out", type=Path, default=Path("out/data/gallery.png"), metavar="PNG",
                      help="picture to write (default: out/data/gallery.png)")


def cmd_data(args: argparse.Namespace, rep: Any) -> int:
    """Run ``fgrasp data <command>``; ``rep`` is the CLI's reporter. Returns the exit code."""
    return {"show": _cmd_show}[args.data_command](args, rep)


def _cmd_show(args: argparse.Namespace, rep: Any) -> int:
    import numpy as np

    from grasp_data.demonstrations import DemonstrationError, load_demonstration
    from grasp_data.gallery import render_gallery
    from grasp_data.objects import categories, generate
    from grasp_data.transfer import transfer_contacts

    instances, marks = [], []
    for category in args.category or categories():
        instance = generate(category, args.seed)
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
        rep.stage(category, "done", detail)
    path = render_gallery(instances, args.out, size_px=args.size_px, points=marks)
    rep.line(f"wrote {path}")
    return 0
