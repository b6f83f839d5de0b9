"""``fgrasp compare``: are two evaluations really different? A paired test over the same objects.

Two checkpoints (or settings) judged on the same held-out instances disagree on many of them even
when their success rates are alike, so comparing two rates with their own intervals wastes the
pairing. This module pairs the outcomes of two sets of ``fgrasp eval`` runs by instance and gives,
per metric and per category, both success counts, the discordant pairs (only A succeeded / only B
did) and the exact two-sided McNemar p-value (a binomial test on the discordant pairs).

Inputs are run folders (or their JSON files) of one kind:

- network mode (``network_eval.json``): one outcome per held-out instance, keyed by name and
  generator seed; metrics ``stable`` and ``stable_functional``;
- pipeline mode (``results.json``): one outcome per trial, keyed by object, trial and seed;
  metrics ``stable`` (held) and ``success``.

    fgrasp compare out/eval_old_s0 out/eval_old_s1 --against out/eval_new_s0 out/eval_new_s1
"""
from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from functional_grasp.report import Reporter

NETWORK_FILE, PIPELINE_FILE = "network_eval.json", "results.json"
EXIT_OK, EXIT_BAD_INPUT = 0, 2
#: Outcome fields compared, per kind of run: (metric name, field of an object / trial).
METRICS = {"network": (("stable", "stable"), ("stable_functional", "stable_functional")),
           "pipeline": (("stable", "held"), ("success", "success"))}


class CompareInputError(ValueError):
    """A run cannot be read or the two sides cannot be paired; the message says which and why."""


@dataclass(frozen=True)
class Outcome:
    """One judged instance (network mode) or trial (pipeline mode)."""

    category: str
    passed: Mapping[str, bool]      # metric name → passed


@dataclass(frozen=True)
class PairedCount:
    """One metric over the paired instances of one group."""

    n: int
    a: int          # successes of side A
    b: int          # successes of side B
    only_a: int     # A succeeded, B did not
    only_b: int

    @property
    def p_value(self) -> float:
        return mcnemar_p(self.only_a, self.only_b)


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value: P(as unbalanced discordant pairs | both sides equal).

    Args:
        only_a, only_b: pairs where only side A / only side B succeeded (≥ 0).

    Returns:
        p in (0, 1]; 1.0 when there is no discordant pair.
    """
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be ≥ 0, got {only_a} and {only_b}")
    n = only_a + only_b
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))
    return min(1.0, 2.0 * tail / 2.0 ** n)


def _run_file(path: Path) -> Path:
    if path.is_dir():
        found = [path / f for f in (NETWORK_FILE, PIPELINE_FILE) if (path / f).is_file()]
        if not found:
            raise CompareInputError(f"'{path}' has neither {NETWORK_FILE} nor {PIPELINE_FILE}; give the "
                                    "--out folder of an `fgrasp eval` run")
        return found[0]
    if not path.is_file():
        raise CompareInputError(f"'{path}' does not exist; give the --out folder of an `fgrasp eval` run")
    return path


def load_run(path: str | Path) -> tuple[str, dict[tuple, Outcome]]:
    """The kind (``network`` or ``pipeline``) and the keyed outcomes of one evaluation run.

    Raises:
        CompareInputError: missing, unreadable or unrecognised file, or an instance listed twice.
    """
    file = _run_file(Path(path))
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompareInputError(f"cannot read {file}: {exc}") from None
    try:
        if isinstance(data, dict) and isinstance(data.get("objects"), list) and "network" in data:
            kind, rows = "network", [((o["name"], o["seed"]), o.get("category", ""), o) for o in data["objects"]]
        elif isinstance(data, dict) and isinstance(data.get("trials"), list):
            kind, rows = "pipeline", [((t["object"], t["trial"], t["seed"]), t["object"], t) for t in data["trials"]]
        else:
            raise CompareInputError(f"{file} is not an `fgrasp eval` result (no objects or trials list)")
        outcomes: dict[tuple, Outcome] = {}
        for key, category, row in rows:
            if key in outcomes:
                raise CompareInputError(f"{file} lists {key} twice")
            outcomes[key] = Outcome(category, {m: bool(row.get(f)) for m, f in METRICS[kind]})
    except (KeyError, TypeError) as exc:
        raise CompareInputError(f"{file}: an entry lacks the field {exc}; is it from this version of fgrasp eval?") from None
    return kind, outcomes


def load_side(paths: Sequence[str | Path]) -> tuple[str, dict[tuple, Outcome]]:
    """Several runs of one side merged (e.g. one per seed); all of one kind, no instance twice."""
    kind, merged = None, {}
    for path in paths:
        k, outcomes = load_run(path)
        if kind is not None and k != kind:
            raise CompareInputError(f"'{path}' is a {k} evaluation but earlier runs are {kind} evaluations")
        twice = set(merged) & set(outcomes)
        if twice:
            raise CompareInputError(f"'{path}' repeats {len(twice)} instance(s) of another run of the same "
                                    f"side, e.g. {sorted(twice)[0]}; give each run once")
        kind = k
        merged.update(outcomes)
    if kind is None:
        raise CompareInputError("no run given")
    return kind, merged


def paired_counts(a: Mapping[tuple, Outcome], b: Mapping[tuple, Outcome], metric: str,
                  keys: Iterable[tuple]) -> PairedCount:
    """Counts of ``metric`` over ``keys`` (present on both sides)."""
    keys = list(keys)
    pa = [a[k].passed[metric] for k in keys]
    pb = [b[k].passed[metric] for k in keys]
    return PairedCount(n=len(keys), a=sum(pa), b=sum(pb), only_a=sum(x and not y for x, y in zip(pa, pb)),
                       only_b=sum(y and not x for x, y in zip(pa, pb)))


def compare(a_paths: Sequence[str | Path], b_paths: Sequence[str | Path]) -> dict:
    """Paired comparison of two sides.

    Returns:
        ``{"kind", "paired", "only_in_a", "only_in_b", "metrics": {metric: {"all": PairedCount,
        category: PairedCount, ...}}}``.

    Raises:
        CompareInputError: unreadable runs, kinds that differ, or no instance on both sides.
    """
    kind_a, a = load_side(a_paths)
    kind_b, b = load_side(b_paths)
    if kind_a != kind_b:
        raise CompareInputError(f"side A holds {kind_a} evaluations and side B {kind_b} evaluations; "
                                "compare runs of the same mode")
    common = sorted(set(a) & set(b), key=str)
    if not common:
        raise CompareInputError("no instance is on both sides: evaluate both with the same --seed, "
                                "categories and object counts")
    categories = sorted({a[k].category for k in common})
    metrics = {}
    for metric, _ in METRICS[kind_a]:
        groups = {"all": paired_counts(a, b, metric, common)}
        for cat in categories:
            groups[cat] = paired_counts(a, b, metric, [k for k in common if a[k].category == cat])
        metrics[metric] = groups
    return {"kind": kind_a, "paired": len(common), "only_in_a": len(set(a) - set(b)),
            "only_in_b": len(set(b) - set(a)), "metrics": metrics}


def format_p(p: float) -> str:
    """``0.038``; ``< 0.001`` below that."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _cell(successes: int, n: int) -> str:
    return f"{successes}/{n} ({100 * successes / n:.1f} %)" if n else "-"


def _relation(p: float) -> str:
    return format_p(p) if p < 0.001 else f"= {p:.3f}"


def report_comparison(result: dict, rep: Reporter, label_a: str = "A", label_b: str = "B") -> None:
    """Print the comparison: one table per metric, overall first, then per category."""
    rep.line(f"== paired {result['kind']} evaluation: {result['paired']} instances on both sides ==")
    if result["only_in_a"] or result["only_in_b"]:
        rep.warning(f"not paired, left out: {result['only_in_a']} instance(s) only in {label_a}, "
                    f"{result['only_in_b']} only in {label_b}")
    for metric, groups in result["metrics"].items():
        rows = [(group, _cell(c.a, c.n), _cell(c.b, c.n), c.only_a, c.only_b, format_p(c.p_value))
                for group, c in groups.items()]
        rep.table(rows, headers=("group", label_a, label_b, f"only {label_a}", f"only {label_b}", "McNemar p"),
                  title=f"-- {metric}")
    overall = {m: g["all"] for m, g in result["metrics"].items()}
    verdicts = [f"{m}: " + (f"{label_b if c.b > c.a else label_a} better (p {_relation(c.p_value)})"
                            if c.p_value < 0.05 else f"no significant difference (p = {c.p_value:.2f})") for m, c in overall.items()]
    rep.line("; ".join(verdicts) + " — two-sided, α = 0.05, not corrected for the several metrics")


def add_compare_parser(sub) -> None:
    """Register ``fgrasp compare`` on the subcommand parsers ``sub``."""
    p = sub.add_parser(
        "compare", help="paired significance test between two sets of fgrasp eval runs",
        description="Pair the outcomes of two sets of `fgrasp eval` runs (network or pipeline mode) by "
                    "instance and print, per metric and category, both success counts, the discordant "
                    "pairs and the exact McNemar p-value. Exit code: 0 compared; 2 bad input (missing or "
                    "unreadable run, runs of different modes, nothing to pair).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="side A: eval --out folders (or their JSON files)")
    p.add_argument("--against", nargs="+", required=True, metavar="RUN", help="side B: eval --out folders")
    p.add_argument("--label-a", default="A", help="name of side A in the tables")
    p.add_argument("--label-b", default="B", help="name of side B in the tables")


def cmd_compare(args: argparse.Namespace, rep: Reporter) -> int:
    """Run ``fgrasp compare``; the exit code."""
    try:
        result = compare(args.runs, args.against)
    except CompareInputError as exc:
        rep.error(f"compare: {exc}")
        return EXIT_BAD_INPUT
    report_comparison(result, rep, args.label_a, args.label_b)
    return EXIT_OK
