"""Dataset format: atomic shards + index, resume after an interrupted run, corrupt shards reported."""
from __future__ import annotations

import json

import numpy as np
import pytest

from grasp_data.dataset import (INDEX_FILE, CorruptShardError, DatasetError, load_shard, shard_name,
                                verify_dataset)
from grasp_data.engine import GenerateSettings, generate_dataset, make_object

#: Tiny settings: 2 grasps, 3 adaptation steps, one 32×24 view, hull collision.
TINY = GenerateSettings(hand="oymotion", grasps_per_object=2, iterations=3, views=1, image_width=32,
                        image_height=24, collision="hull")


class Interrupt(RuntimeError):
    """Stands in for a killed run."""


def _run_inline(fail_after: int | None = None):
    """An executor that computes in this process and dies after ``fail_after`` objects."""
    def results(jobs):
        for n, job in enumerate(jobs):
            if fail_after is not None and n == fail_after:
                raise Interrupt("killed")
            yield make_object(*job)
    return results


def _contents(root):
    index = json.loads((root / INDEX_FILE).read_text())
    shards = {}
    for name, entry in index["shards"].items():
        data = load_shard(root / entry["file"])
        shards[name] = {k: v for k, v in data.items() if k != "meta"}
        meta = dict(data["meta"])
        for timing in ("adaptation_time_s", "validation_time_s"):
            meta.pop(timing)
        shards[name]["meta"] = meta
    entries = {n: {k: v for k, v in e.items() if k not in ("sha256", "bytes")} for n, e in index["shards"].items()}
    return index["settings"], entries, shards


def test_resume_after_interrupt_equals_uninterrupted(tmp_path):
    full, broken = tmp_path / "full", tmp_path / "broken"
    summary = generate_dataset(TINY, ["hammer"], 2, full, results=_run_inline(), progress=False)
    assert summary.objects_written == 2 and summary.tried == {"hammer": 4}
    with pytest.raises(Interrupt):
        generate_dataset(TINY, ["hammer"], 2, broken, results=_run_inline(fail_after=1), progress=False)
    assert sorted(p.name for p in (broken / "shards").iterdir()) == ["hammer_00000.npz"]  # no temp files left
    resumed = generate_dataset(TINY, ["hammer"], 2, broken, results=_run_inline(), progress=False)
    assert resumed.objects_skipped == 1 and resumed.objects_written == 1
    a, b = _contents(full), _contents(broken)
    assert a[0] == b[0] and a[1] == b[1] and a[2].keys() == b[2].keys()
    for name in a[2]:
        for key, value in a[2][name].items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, b[2][name][key], err_msg=f"{name}/{key}")
            else:
                assert value == b[2][name][key], f"{name}/{key}"
    shard = load_shard(full / "shards" / "hammer_00001.npz")
    assert shard["grasp_q"].shape == (2, len(shard["meta"]["joint_names"]))
    assert shard["render_rgb"].shape == (1, 24, 32, 3) and shard["render_mask"].dtype == bool
    assert set(shard["grasp_reason"]) <= {"ok", "initial_penetration", "no_contact"} | {
        r for r in shard["grasp_reason"] if r.startswith(("displaced:", "functional_miss:", "avoid_contact:"))}
    # a shard written but not yet indexed (crash between the two renames) is adopted, not redone
    index = json.loads((full / INDEX_FILE).read_text())
    del index["shards"]["hammer_00001"]
    (full / INDEX_FILE).write_text(json.dumps(index))
    again = generate_dataset(TINY, ["hammer"], 2, full, results=_run_inline(fail_after=0), progress=False)
    assert again.objects_skipped == 2 and again.objects_written == 0


def test_corrupt_shard_is_reported_with_its_path(tmp_path):
    generate_dataset(TINY, ["hammer"], 1, tmp_path, results=_run_inline(), progress=False)
    path = tmp_path / "shards" / f"{shard_name('hammer', 0)}.npz"
    path.write_bytes(path.read_bytes()[:-100])                        # truncated
    problems = verify_dataset(tmp_path)
    assert [p.path for p in problems] == [path] and str(path) in str(problems[0])
    with pytest.raises(CorruptShardError, match=str(path)):
        generate_dataset(TINY, ["hammer"], 1, tmp_path, results=_run_inline(), progress=False)
    with pytest.raises(CorruptShardError, match="not a readable"):
        load_shard(path)


def test_other_settings_are_refused(tmp_path):
    generate_dataset(TINY, ["hammer"], 1, tmp_path, results=_run_inline(), progress=False)
    other = GenerateSettings(**{**TINY.__dict__, "grasps_per_object": 3})
    with pytest.raises(DatasetError, match="grasps_per_object"):
        generate_dataset(other, ["hammer"], 1, tmp_path, results=_run_inline(), progress=False)


def test_cli_generate_writes_a_dataset(tmp_path, capsys):
    from functional_grasp.cli import main

    code = main(["data", "generate", "--category", "hammer", "--objects", "1", "--hand", "oymotion",
                 "--out", str(tmp_path), "--grasps", "2", "--iterations", "2", "--views", "1",
                 "--image-size", "32", "24", "--collision", "hull", "--workers", "0"])
    out = capsys.readouterr().out
    assert code == 0 and "hammer" in out and "grasps kept" in out and "1 objects written" in out
    assert verify_dataset(tmp_path) == []
    code = main(["data", "generate", "--category", "hammer", "--objects", "1", "--hand", "nohand",
                 "--out", str(tmp_path)])
    assert code == 1 and "unknown hand" in capsys.readouterr().err


def test_a_bad_generator_draw_is_skipped_and_the_run_goes_on(tmp_path):
    # dataset seed 300, hammer 1: the generator draws a hammer whose mesh is not watertight
    settings = GenerateSettings(**{**TINY.__dict__, "seed": 300})
    summary = generate_dataset(settings, ["hammer"], 3, tmp_path, results=_run_inline(), progress=False)
    assert list(summary.bad_instances) == ["hammer_00001"]
    assert "not watertight" in summary.bad_instances["hammer_00001"]
    assert summary.objects_written == 2
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["hammer_00000.npz", "hammer_00002.npz"]
