"""fgrasp compare: paired McNemar test between two sets of eval runs (network and pipeline mode)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from functional_grasp.cli import build_parser
from functional_grasp.cli import main as fgrasp
from functional_grasp.compare import CompareInputError, cmd_compare, compare, mcnemar_p
from functional_grasp.eval_trial import TrialResult
from functional_grasp.report import Reporter


def _network_run(folder: Path, outcomes: dict[tuple[str, int], tuple[bool, bool]]) -> Path:
    """A network_eval.json with the per-instance fields fgrasp eval --network writes."""
    folder.mkdir(parents=True)
    objects = [{"name": name, "seed": seed, "category": name.split("_0")[0].removeprefix("unseen_"),
                "stable": stable, "stable_functional": functional, "candidates": 16}
               for (name, seed), (stable, functional) in outcomes.items()]
    (folder / "network_eval.json").write_text(json.dumps({"format": 1, "network": {}, "objects": objects}))
    return folder


def _pipeline_run(folder: Path, outcomes: dict[tuple[str, int], bool]) -> Path:
    """A results.json whose trials are real TrialResult dicts."""
    folder.mkdir(parents=True)
    trials = [TrialResult(object=obj, trial=trial, seed=1000 + trial, xy=(0.5, 0.0), yaw_rad=0.0,
                          outcome="success" if ok else "displaced", success=ok, held=ok).to_dict()
              for (obj, trial), ok in outcomes.items()]
    (folder / "results.json").write_text(json.dumps({"schema": 1, "trials": trials}))
    return folder


def test_mcnemar_p_is_the_exact_binomial_test_on_discordant_pairs():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(3, 3) == 1.0
    assert mcnemar_p(0, 6) == pytest.approx(2 / 64)            # 2 · 0.5⁶
    assert mcnemar_p(1, 9) == pytest.approx(2 * 11 / 1024)     # 2 · (1 + 10) / 2¹⁰
    assert mcnemar_p(9, 1) == mcnemar_p(1, 9)
    with pytest.raises(ValueError):
        mcnemar_p(-1, 2)


def test_network_runs_pair_by_instance_across_seeds(tmp_path):
    # Same names in two draws (seeds 1 and 2) are different instances.
    a = [_network_run(tmp_path / f"a{s}", {(f"unseen_drill_0000{i}", s): (i < 2, i < 1) for i in range(4)})
         for s in (1, 2)]
    b = [_network_run(tmp_path / f"b{s}", {(f"unseen_drill_0000{i}", s): (True, i < 3) for i in range(4)})
         for s in (1, 2)]
    result = compare(a, b)
    assert result["kind"] == "network" and result["paired"] == 8
    stable = result["metrics"]["stable"]["all"]
    assert (stable.a, stable.b, stable.only_a, stable.only_b) == (4, 8, 0, 4)
    functional = result["metrics"]["stable_functional"]["drill"]
    assert (functional.a, functional.b, functional.only_a, functional.only_b) == (2, 6, 0, 4)


def test_instances_on_one_side_only_are_left_out_and_counted(tmp_path):
    a = _network_run(tmp_path / "a", {("unseen_mug_00000", 1): (True, True), ("unseen_mug_00001", 1): (False, False)})
    b = _network_run(tmp_path / "b", {("unseen_mug_00000", 1): (False, False), ("unseen_mug_00002", 1): (True, True)})
    result = compare([a], [b])
    assert (result["paired"], result["only_in_a"], result["only_in_b"]) == (1, 1, 1)
    assert result["metrics"]["stable"]["all"].only_a == 1


def test_pipeline_runs_compare_held_and_success_per_object(tmp_path):
    a = _pipeline_run(tmp_path / "a", {("mug", t): t < 9 for t in range(10)} | {("drill", t): False for t in range(10)})
    b = _pipeline_run(tmp_path / "b", {("mug", t): t < 1 for t in range(10)} | {("drill", t): t < 2 for t in range(10)})
    result = compare([a], [b])
    assert result["kind"] == "pipeline" and set(result["metrics"]) == {"stable", "success"}
    mug = result["metrics"]["success"]["mug"]
    assert (mug.only_a, mug.only_b) == (8, 0) and mug.p_value == pytest.approx(2 / 256)
    assert result["metrics"]["success"]["drill"].only_b == 2


@pytest.mark.parametrize("problem", ["missing", "mixed modes", "nothing paired", "not json", "twice"])
def test_bad_input_is_refused_with_the_reason(tmp_path, problem):
    net = _network_run(tmp_path / "net", {("unseen_mug_00000", 1): (True, True)})
    if problem == "missing":
        sides, words = ([tmp_path / "nowhere"], [net]), "does not exist"
    elif problem == "mixed modes":
        sides, words = ([net], [_pipeline_run(tmp_path / "pipe", {("mug", 0): True})]), "same mode"
    elif problem == "nothing paired":
        other = _network_run(tmp_path / "other", {("unseen_mug_00000", 2): (True, True)})
        sides, words = ([net], [other]), "no instance is on both sides"
    elif problem == "not json":
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "network_eval.json").write_text("{not json")
        sides, words = ([broken], [net]), "cannot read"
    else:
        sides, words = ([net, net], [net]), "give each run once"
    with pytest.raises(CompareInputError, match=words):
        compare(*sides)


def test_cli_prints_the_tables_and_exits_2_on_bad_input(tmp_path):
    a = _network_run(tmp_path / "a", {(f"unseen_hammer_0000{i}", 7): (False, False) for i in range(8)})
    b = _network_run(tmp_path / "b", {(f"unseen_hammer_0000{i}", 7): (True, True) for i in range(8)})
    out, err = io.StringIO(), io.StringIO()
    rep = Reporter(stream=out, err_stream=err)
    assert cmd_compare(build_parser().parse_args(["compare", str(a), "--against", str(b), "--label-b", "new"]),
                       rep) == 0
    text = out.getvalue()
    assert "0/8 (0.0 %)" in text and "8/8 (100.0 %)" in text and "new better (p = 0.008)" in text
    assert fgrasp(["compare", str(tmp_path / "nowhere"), "--against", str(b)]) == 2
