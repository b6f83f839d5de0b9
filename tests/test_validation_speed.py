"""Validation throughput features: skipped hand self-collision pairs, no trials for contactless
grasps, early stop of decided trials.

All must leave what the validator judges unchanged: the skipped pairs never touch (trajectories
stay bit-identical, hand–object contacts are never filtered), a contactless grasp is
``no_contact`` whatever its trials show, and stopping decided trials keeps every held / kept
verdict (a held grasp's outcome is exactly the full run's).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from test_grasp_data_engine import GOOD_Q, GOOD_ROOT_POSE, HAMMER_SEED, _grasps

from grasp_data.contact_filter import unreachable_hand_pairs
from grasp_data.demonstrations import load_demonstration
from grasp_data.engine import _hand_model
from grasp_data.objects import generate
from grasp_data.validation import FloatingHandScene, GraspValidator, ValidationConfig
from sim_bridge.mesh_objects import mesh_object


@pytest.fixture(scope="module")
def hammer():
    obj = generate("hammer", HAMMER_SEED)
    return obj, mesh_object(obj.mesh, name=f"test_speed_hammer_{HAMMER_SEED}_hull", collision="hull")


@pytest.fixture(scope="module")
def hand():
    return _hand_model("oymotion")


def _validator(hand, hammer, **config) -> GraspValidator:
    obj, spec = hammer
    return GraspValidator(FloatingHandScene(hand, obj, spec, ValidationConfig(**config)),
                          load_demonstration("hammer"))


@pytest.fixture(scope="module")
def full_run(hand, hammer, mixed_grasps):
    """The default validator (skipped pairs on, no early stop) and its outcomes of ``mixed_grasps``."""
    v = _validator(hand, hammer)
    return v, v.validate(mixed_grasps)


@pytest.fixture(scope="module")
def mixed_grasps(hand):
    """The good grasp, an open hand, and variations of the good one that hold or slip."""
    open_q = hand.full(torch.as_tensor(hand.q_open[None])).numpy()[0]
    poses, qs = [GOOD_ROOT_POSE, GOOD_ROOT_POSE], [GOOD_Q, open_q]
    # (root axis, shift along it m, closure from open): holds, ends off the object, ends off the
    # object, holds, touches and is pushed out (displaced with contact)
    for axis, shift_m, closure in ((0, 0.003, 1.0), (1, 0.012, 1.0), (0, 0.0, 0.6), (0, 0.0, 0.9),
                                   (0, -0.015, 0.5)):
        T = GOOD_ROOT_POSE.copy()
        T[:3, 3] += shift_m * T[:3, axis]
        poses.append(T)
        qs.append(open_q + closure * (GOOD_Q - open_q))
    return _grasps(hand, poses, qs)


def test_skipped_pairs_are_hand_links_that_never_touch(hand, full_run):
    scene = full_run[0].scene
    m = scene.model
    names = {m.body(int(b)).name for b in scene.hand_bodies}
    assert scene.skipped_pairs, "the OYMotion hand has link pairs that never touch (e.g. base and fingertips)"
    assert all(a in names and b in names for a, b in scene.skipped_pairs)   # never the object
    object_body = scene.object_body
    for sig in m.exclude_signature:
        assert object_body not in (int(sig) >> 16, int(sig) & 0xFFFF)
    # the thumb and index fingertips meet in a pinch: their collision checks stay
    tips = {hand.hand.fingertips["thumb"], hand.hand.fingertips["index"]}
    assert not any({a, b} == tips for a, b in scene.skipped_pairs)
    # deterministic and cached per hand
    assert unreachable_hand_pairs(hand.hand) == scene.skipped_pairs


def test_a_pair_that_comes_close_is_kept(hand):
    """The margin is a safety distance: pairs that come within 2 cm of each other (but never
    touch) are skipped with no margin and kept with a 2 cm one."""
    wide = set(unreachable_hand_pairs(hand.hand, samples=2000, margin_m=0.02))
    narrow = set(unreachable_hand_pairs(hand.hand, samples=2000, margin_m=0.0))
    assert wide <= narrow and len(wide) < len(narrow)


def test_skipping_pairs_leaves_trajectories_identical(hand, hammer, mixed_grasps, full_run):
    filtered = full_run[1]
    every_pair = _validator(hand, hammer, self_pair_samples=0)
    assert every_pair.scene.skipped_pairs == ()
    full = every_pair.validate(mixed_grasps)
    np.testing.assert_array_equal([o.displacement_m for o in filtered], [o.displacement_m for o in full])
    assert [o.reason for o in filtered] == [o.reason for o in full]
    assert [o.hand_contacts for o in filtered] == [o.hand_contacts for o in full]


def test_early_stop_keeps_every_verdict(hand, hammer, mixed_grasps, full_run):
    full_v, full = full_run
    early_v = _validator(hand, hammer, stop_when_decided=True)
    early = early_v.validate(mixed_grasps)
    assert any(o.held for o in full) and not all(o.held for o in full)   # both kinds present
    n_dir = len(full_v.config.protocol.directions)
    for f, e in zip(full, early):
        assert f.simulated and e.simulated
        assert (e.held, e.kept, e.functional, e.reason.split(":")[0]) == (f.held, f.kept, f.functional,
                                                                          f.reason.split(":")[0])
        stopped = e.steps < f.steps
        if f.hand_contacts == 0:   # contactless: no trials in either run
            assert e.steps == f.steps == full_v.n_close and f.reason == e.reason == "no_contact"
        elif stopped:     # decided in the probe: displacements are lower bounds, still beyond 2 cm
            assert not f.held and e.max_displacement_m > full_v.config.protocol.threshold_m
            assert e.max_displacement_m <= f.max_displacement_m + 1e-12
            assert e.steps == f.steps - n_dir * (early_v.n_trial - early_v.n_probe)
        else:           # undecided by the probe (held, or slipping slowly): run again in full
            assert e.displacement_m == f.displacement_m and e.reason == f.reason
            assert e.steps == f.steps + n_dir * early_v.n_probe
    assert any(o.steps < f.steps for o, f in zip(early, full))


def test_contactless_grasps_skip_their_trials_and_keep_their_verdict(hand, hammer, mixed_grasps, full_run):
    """A grasp whose hand ends off the object is ``no_contact`` whatever the trials show: the
    default validator does not run them; every other grasp's outcome is the full run's."""
    v, skipping = full_run
    every = _validator(hand, hammer, skip_contactless=False).validate(mixed_grasps)
    contactless = [i for i, o in enumerate(every) if o.simulated and o.hand_contacts == 0]
    assert contactless and len(contactless) < len(every)
    for i, (s, e) in enumerate(zip(skipping, every)):
        assert (s.kept, s.reason, s.functional, s.hand_contacts) == (e.kept, e.reason, e.functional, e.hand_contacts)
        if i in contactless:
            assert s.reason == "no_contact" and not s.held and np.isnan(s.max_displacement_m)
            assert s.steps == v.n_close < e.steps
        else:
            assert s.displacement_m == e.displacement_m and s.steps == e.steps
    naive = v.validate_naive(mixed_grasps)
    assert [o.steps for o in naive] == [o.steps for o in skipping]


def test_early_stop_batched_equals_naive(hand, hammer, mixed_grasps):
    v = _validator(hand, hammer, stop_when_decided=True)
    subset = replace(mixed_grasps, root_pose=mixed_grasps.root_pose[:4], q=mixed_grasps.q[:4])
    fast, naive = v.validate(subset), v.validate_naive(subset)
    assert [o.reason for o in fast] == [o.reason for o in naive]
    assert [o.steps for o in fast] == [o.steps for o in naive]
    np.testing.assert_allclose([o.displacement_m for o in fast], [o.displacement_m for o in naive], atol=1e-9)


def test_bad_speed_settings_are_refused():
    with pytest.raises(ValueError, match="probe_s"):
        ValidationConfig(probe_s=2.0)
    with pytest.raises(ValueError, match="self_pair_samples"):
        ValidationConfig(self_pair_samples=-1)
    with pytest.raises(ValueError, match="samples"):
        from grasp_planner.hands import load_hand
        unreachable_hand_pairs(load_hand("oymotion"), samples=0)
