"""The checkpoints shipped in config/checkpoints/: they load for their hand, match the training config
they document, and the planner's network backend picks them up by default and returns grasps."""
from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from grasp_planner.grasp_predictor import default_checkpoint, make_grasp_predictor, NetworkPredictorConfig
from grasp_planner.grasp_synthesis import GraspSynthesizer
from grasp_planner.hands import load_hand
from grasp_planner.network.checkpoint import CheckpointMismatchError, load_checkpoint
from grasp_planner.network.config import NetworkConfig
from grasp_planner.object_model import build_object_proxy
from test_grasp_synthesis import CAMERA_XYZ, visible_cylinder

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SHIPPED = ("shadow", "oymotion")


@pytest.mark.parametrize("hand_name", SHIPPED)
def test_shipped_checkpoint_matches_the_documented_config_and_refuses_other_hands(hand_name):
    path = default_checkpoint(hand_name)
    assert path.is_file() and path.stat().st_size < 4_000_000, path      # small enough for the repo
    recipe = yaml.safe_load((path.parent / "dro_small.yaml").read_text())
    expected = NetworkConfig.from_dict({**recipe["network"], "hand": hand_name})
    model, extra = load_checkpoint(path, hand=hand_name, expected_config=expected)
    trained = extra["train_config"]
    # the documented commands set epochs and threads on the command line, and a fine-tune its --lr;
    # every other training setting is the recipe's
    for key, value in recipe["training"].items():
        if key not in ("epochs", "threads", "learning_rate") and key in trained:
            assert trained[key] == value, key
    lr = trained["learning_rate"]
    documented = [float(v) for v in re.findall(r"--lr (\S+)", (path.parent / "dro_small.yaml").read_text())]
    assert lr == recipe["training"]["learning_rate"] or lr in documented, lr
    other = next(h for h in SHIPPED if h != hand_name)
    with pytest.raises(CheckpointMismatchError, match=other):
        load_checkpoint(path, hand=other)


def test_network_backend_uses_the_shipped_checkpoint_and_returns_grasps_within_limits():
    hand = load_hand("shadow")
    warnings: list[str] = []
    predictor = make_grasp_predictor("network", hand, GraspSynthesizer(hand),
                                     config=NetworkPredictorConfig(num_samples=4), warn=warnings.append)
    assert predictor.name == "network" and warnings == []                 # no fallback: the file is there
    cloud = visible_cylinder()
    proxy = build_object_proxy(cloud, 0.0, np.asarray(CAMERA_XYZ))
    candidates = predictor.predict(cloud, proxy, max_results=4)
    assert candidates
    for c in candidates:
        assert np.isfinite(c.T_base_root).all()
        for name, (lo, hi) in zip(hand.joint_names, hand.joint_limits):
            assert lo - 1e-6 <= c.q_grasp[name] <= hi + 1e-6, name
