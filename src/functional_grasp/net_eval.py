"""``fgrasp eval --network``: success of the D(R,O) network's top-ranked grasp on held-out instances.

For every held-out instance (:func:`functional_grasp.net_deploy.heldout_objects`: seeds no training
data uses) the network predicts K candidates, the top-ranked one is judged by the data engine's
validator (:mod:`functional_grasp.net_deploy`), and the outcomes are summarised per category (one
hand per run): *stable* (held through the D(R,O) disturbance trials) and *stable + functional*
(also CorDex's functional criterion and no avoidance-region contact), each with a 95 % Wilson
interval (:mod:`functional_grasp.eval_stats`), and the failure reasons of the stable + functional test.
Objects whose generator draw fails (``bad_instance``) are listed but not counted.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from functional_grasp.bench import write_json
from functional_grasp.eval_stats import percent_ci, rate
from functional_grasp.net_deploy import BAD_INSTANCE, DeployConfig, Deployer, ObjectRef, heldout_objects
from grasp_planner.grasp_predictor import file_sha256

#: Format tag and file name of the results.
RESULTS_FORMAT = "functional_grasp.network_eval/1"
RESULTS_FILE = "network_eval.json"
#: Columns of :func:`summary_rows`.
SUMMARY_HEADERS = ("category", "objects", "stable [95 % CI]", "stable + functional [95 % CI]", "failures")


def summarize_records(records: Iterable[Mapping], hand: str) -> dict[str, Any]:
    """Per category and overall: objects, stable and stable + functional rates (Wilson 95 %),
    failure reasons (of the stable + functional test; ``failure_detail`` names the finger of a
    ``functional_miss`` and the region of an ``avoid_contact``), candidates kept / validated, and when every
    candidate was judged (``validate="all"``) the best-of-K rates: objects where *some* candidate is
    stable (stable and functional) — what a perfect ranking would reach.

    Args:
        records: :meth:`Deployer.run` records; ``bad_instance`` ones are left out.
        hand: the hand (stored with every entry).
    """
    counted = [r for r in records if r["outcome"] != BAD_INSTANCE]

    def block(rs: Sequence[Mapping]) -> dict[str, Any]:
        return {"hand": hand, "objects": len(rs),
                "stable": rate(sum(bool(r["stable"]) for r in rs), len(rs)),
                "stable_functional": rate(sum(bool(r["stable_functional"]) for r in rs), len(rs)),
                "failures": dict(sorted(Counter(r["outcome"] for r in rs if r["outcome"] != "success").items())),
                "failure_detail": _failure_detail(rs),
                "candidates_validated": sum(r["validated"] for r in rs),
                "candidates_kept": sum(r["kept"] for r in rs),
                **({"best_of_k": {"stable": rate(sum(r["held"] > 0 for r in rs), len(rs)),
                                  "stable_functional": rate(sum(r["kept"] > 0 for r in rs), len(rs))}}
                   if any(r["validated"] > 1 for r in rs) else {}),
                **_sim_check_block(rs)}

    categories = sorted({r["category"] for r in counted})
    return {"per_category": {c: block([r for r in counted if r["category"] == c]) for c in categories},
            "overall": block(counted),
            "bad_instances": [r["name"] for r in records if r["outcome"] == BAD_INSTANCE]}


def _sim_check_block(records: Sequence[Mapping]) -> dict[str, Any]:
    """``{"sim_check": {"checked", "held_on_estimate", "held_on_estimate_and_stable", "stable_not_held_on_estimate"}}``:
    how the predictor's simulated check judged the top-ranked grasps against the judge (empty without a check)."""
    tops = [(r.get("top") or {}, bool(r["stable"])) for r in records]
    checked = [(bool(t["sim_check_held"]), stable) for t, stable in tops if "sim_check_held" in t]
    if not checked:
        return {}
    return {"sim_check": {"checked": len(checked), "held_on_estimate": sum(h for h, _ in checked),
                          "held_on_estimate_and_stable": sum(h and s for h, s in checked),
                          "stable_not_held_on_estimate": sum(s and not h for h, s in checked)}}


#: Failure reasons whose detail (after the colon of the validator's reason) the summary counts.
DETAILED_FAILURES = ("functional_miss", "avoid_contact")


def _failure_detail(records: Sequence[Mapping]) -> dict[str, dict[str, int]]:
    """reason → {finger or region: top-ranked grasps}, for :data:`DETAILED_FAILURES`."""
    out: dict[str, Counter] = {}
    for r in records:
        reason = str((r.get("top") or {}).get("reason", ""))
        kind, _, detail = reason.partition(":")
        if r["outcome"] == kind and kind in DETAILED_FAILURES and detail:
            out.setdefault(kind, Counter())[detail] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def summary_rows(summary: Mapping) -> list[tuple]:
    """Table rows of :func:`summarize_records` (one per category, then ``all``); a functional miss
    names its fingers, an avoidance contact its regions: ``functional_miss 3 (index 2, thumb 1)``."""
    def fail(block: Mapping) -> str:
        detail = block.get("failure_detail", {})

        def why(kind: str) -> str:
            parts = ", ".join(f"{name} {n}" for name, n in detail.get(kind, {}).items())
            return f" ({parts})" if parts else ""
        return ", ".join(f"{k} {v}{why(k)}" for k, v in block["failures"].items()) or "-"

    rows = [(c, b["objects"], percent_ci(b["stable"]), percent_ci(b["stable_functional"]), fail(b))
            for c, b in summary["per_category"].items()]
    o = summary["overall"]
    return rows + [("all", o["objects"], percent_ci(o["stable"]), percent_ci(o["stable_functional"]), fail(o))]


def deploy_all(deployer: Deployer, refs: Sequence[ObjectRef], progress: bool = True, desc: str = "eval",
               done: Mapping[str, dict] | None = None, on_record=None) -> list[dict]:
    """Run ``deployer`` on every object (tqdm bar), skipping the names in ``done`` (their records are reused).

    Args:
        deployer: the deployer.
        refs: objects.
        progress: show a tqdm bar.
        desc: bar label.
        done: records already made (resume), by object name.
        on_record: called as ``on_record(record, shard)`` after each new object (e.g. to save it).

    Returns:
        The records in ``refs`` order.
    """
    from tqdm import tqdm

    done = dict(done or {})
    with tqdm(total=len(refs), desc=desc, unit="object", disable=not progress) as bar:
        bar.update(sum(r.name in done for r in refs))
        for ref in refs:
            if ref.name in done:
                continue
            record, shard = deployer.run(ref)
            done[ref.name] = record
            if on_record is not None:
                on_record(record, shard)
            ok = sum(done[r.name]["stable_functional"] for r in refs if r.name in done)
            bar.set_postfix(category=ref.category, stable_functional=f"{ok}/{sum(r.name in done for r in refs)}")
            bar.update(1)
    return [done[r.name] for r in refs]


def run_network_eval(checkpoint: str | Path, hand: str, categories: Sequence[str], objects: int,
                     config: DeployConfig, out_dir: str | Path, progress: bool = True,
                     oracle: str | Path | None = None, oracle_offset_m: float = 0.0) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``objects`` held-out instances per category; write ``RESULTS_FILE``.

    With ``oracle`` (a data-engine dataset of ``hand``), the objects are that dataset's and the
    network's matrices are replaced by the true ones of its kept grasps (:mod:`functional_grasp.net_oracle`),
    each hand shifted by ``oracle_offset_m`` in a random direction first.
    An interrupted run (Ctrl-C) writes the objects done so far (``"interrupted": true``) and re-raises.

    Raises:
        FileNotFoundError / CheckpointMismatchError / ValueError: see :class:`Deployer` (and, with
            ``oracle``, a folder that is not a dataset or holds too few objects).
    """
    from functional_grasp.net_oracle import OracleDeployer, oracle_objects

    t0 = time.perf_counter()
    if oracle is None:
        deployer = Deployer(hand, checkpoint, config)
        refs = heldout_objects(list(categories), objects, config.seed)
    else:
        refs = oracle_objects(oracle, list(categories), objects)
        deployer = OracleDeployer(hand, checkpoint, oracle, config, offset_m=oracle_offset_m)
    records: dict[str, dict] = {}
    out = Path(out_dir) / RESULTS_FILE

    def results(interrupted: bool) -> dict[str, Any]:
        done = [records[r.name] for r in refs if r.name in records]
        return {"format": RESULTS_FORMAT, "checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint),
                "hand": hand, "categories": list(categories), "objects_per_category": objects,
                "deploy": asdict(config), "network": deployer.network_config.to_dict(),
                "heldout_rule": "seed = 2**32 + grasp_data.engine.object_seed(seed, category, index): outside the "
                                "data engine's 32-bit seeds and the bootstrap's small ones" if oracle is None else
                                "oracle: the dataset's objects, the true matrices of their kept grasps",
                "oracle": None if oracle is None else str(oracle),
                "oracle_offset_m": None if oracle is None else oracle_offset_m,
                "protocol": "floating hand (grasp_data.validation): 0.5 x mass N along +-x +-y +-z, 1 s each, held if "
                            "<= 2 cm; functional: designated fingers within 5 mm of their region, no avoid contact",
                **summarize_records(done, hand), "objects": done, "interrupted": interrupted,
                "wall_time_s": time.perf_counter() - t0}

    try:
        deploy_all(deployer, refs, progress, desc=f"eval {hand}", on_record=lambda r, s: records.__setitem__(r["name"], r))
    except KeyboardInterrupt:
        write_json(out, results(True))
        raise
    data = results(False)
    write_json(out, data)
    return data
