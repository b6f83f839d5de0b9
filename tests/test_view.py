"""``fgrasp view``: the rviz scene of a demo folder as a PNG, and clear errors for unusable folders."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from functional_grasp.cli import main
from functional_grasp.demo import TITLE_BAR_PX
from functional_grasp.view import OBJECT_RGB, PANEL_HEIGHT_PX, PANEL_WIDTH_PX, VIEW_PNG
from grasp_planner.markers import PREGRASP_RGBA, rank_rgba


def _count(image: np.ndarray, rgb) -> int:
    return int(np.all(image == np.asarray(rgb, dtype=np.uint8), axis=2).sum())


def _rgb(rgba) -> tuple[int, ...]:
    return tuple(int(round(255 * c)) for c in rgba[:3])


@pytest.fixture(scope="module")
def demo_view(tmp_path_factory):
    """A demo folder whose report names the cylinder scene (no goal produced), viewed once."""
    folder = tmp_path_factory.mktemp("demo")
    (folder / "report.json").write_text(json.dumps(
        {"object": "cylinder", "hand": "shadow", "joint_goal": None, "evaluated": False}))
    code = main(["view", str(folder)])
    return code, folder / VIEW_PNG


def test_view_of_a_demo_folder_draws_clouds_and_ranked_grasps(demo_view, capsys):
    code, png = demo_view
    assert code == 0 and png.is_file()
    image = np.asarray(Image.open(png).convert("RGB"))
    assert image.shape == (PANEL_HEIGHT_PX + TITLE_BAR_PX, 2 * PANEL_WIDTH_PX, 3)
    left, right = image[TITLE_BAR_PX:, :PANEL_WIDTH_PX], image[TITLE_BAR_PX:, PANEL_WIDTH_PX:]
    best, worst = _rgb(rank_rgba(0, 5)), _rgb(rank_rgba(4, 5))
    for panel in (left, right):   # the top grasps in their rank colours, each one clearly drawn
        assert _count(panel, best) > 50 and _count(panel, worst) > 50
    assert _count(left, OBJECT_RGB) > 200                    # the segmented object on the camera view
    assert _count(right, _rgb(PREGRASP_RGBA)) > 50          # the chosen grasp's pre-grasp hand
    # the overview also shows the camera cloud: many distinct colours besides the markers
    assert len(np.unique(right.reshape(-1, 3), axis=0)) > 1000


@pytest.mark.parametrize(("setup", "words"), [
    (None, ["is not a folder"]),
    ({}, ["has no report.json", "fgrasp demo --out"]),
    ({"report.json": "{ truncated"}, ["is not readable JSON"]),
    ({"report.json": json.dumps({"object": "mug"})}, ["is not a demo report", "hand", "joint_goal"]),
    ({"report.json": json.dumps({"object": "mug", "hand": "shadow", "joint_goal": [1, 2]})}, ["joint_goal must be"]),
    ({"report.json": json.dumps({"object": "teapot", "hand": "shadow", "joint_goal": None})},
     ["cannot build the scene", "unknown object 'teapot'"]),
])
def test_missing_or_corrupt_demo_folder_is_reported_and_nothing_written(tmp_path, capsys, setup, words):
    folder = tmp_path / "demo"
    if setup is not None:
        folder.mkdir()
        for name, text in setup.items():
            (folder / name).write_text(text)
    out = tmp_path / "view.png"
    assert main(["view", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert not out.exists()


def test_view_replans_with_the_demos_grasp_backend(tmp_path, monkeypatch, capsys):
    import functional_grasp.bench as bench

    real, seen = bench.build_planner, []

    def recording(hand, planner_params=None):
        seen.append(planner_params)
        return real(hand, planner_params)

    monkeypatch.setattr(bench, "build_planner", recording)
    (tmp_path / "report.json").write_text(json.dumps(
        {"object": "mug", "hand": "shadow", "joint_goal": None, "evaluated": False,
         "run": {"grasp_backend": "network", "grasp_checkpoint": None}}))
    assert main(["view", str(tmp_path)]) == 0
    assert seen == [{"grasp_backend": "network"}]
    assert "grasp_backend network" in capsys.readouterr().out
