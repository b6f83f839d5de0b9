"""Demonstrations and correspondence transfer of fingertip contacts to new instances."""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from scipy.spatial import cKDTree

from grasp_data.demonstrations import (DemonstrationError, Demonstration, FINGERS, RECIPES, author_demonstration,
                                       check_on_reference, demonstrations_dir, load_demonstration)
from grasp_data.objects import categories, generate
from grasp_data.transfer import (ANY_REGION, Hypotheses, Matcher, TransferConfig, dbscan, transfer_contacts,
                                 transfer_labels)


def _label_at(instance, point):
    """Region of the instance surface nearest ``point`` (from the instance's own labels)."""
    pts, _, labels = instance.sample_surface(40000, seed=99)
    dist, i = cKDTree(pts).query(point)
    assert dist < 0.004  # the candidate lies on the surface
    return instance.region_names[labels[i]]


@pytest.fixture(scope="module")
def drill_demo():
    demo = load_demonstration("drill")
    return demo, demo.reference_instance()


def test_every_category_has_a_demonstration_on_its_reference_instance():
    for category in categories():
        demo = load_demonstration(category)
        assert demo.category == category and len(demo.contacts) >= 3
        assert {c.finger for c in demo.contacts} <= set(FINGERS)
        check_on_reference(demo)  # raises if a contact is off its region


def test_shipped_demonstrations_match_their_recipes():
    for category in RECIPES:
        shipped, authored = load_demonstration(category), author_demonstration(category)
        assert shipped.params == authored.params
        for a, b in zip(shipped.contacts, authored.contacts):
            assert (a.finger, a.region) == (b.finger, b.region)
            assert np.allclose(a.point_m, b.point_m, atol=1e-5)


def test_drill_index_finger_lands_on_the_trigger_of_a_different_drill(drill_demo):
    demo, ref = drill_demo
    assert demo.contact("index").region == "trigger"
    for seed in (5, 6):
        target = generate("drill", seed, grip_lean_rad=0.05 if seed == 5 else 0.35)
        assert not np.allclose(target.mesh.extents, ref.mesh.extents, atol=5e-3)  # differently shaped
        result = transfer_contacts(demo, target, reference=ref, seed=seed)
        cands = result.candidates["index"]
        assert 1 <= len(cands) <= 3
        conf = [c.confidence for c in cands]
        assert all(c > 0 for c in conf) and sum(conf) <= 1.0 + 1e-9 and conf == sorted(conf, reverse=True)
        best = result.best("index")
        assert best.region == "trigger" and _label_at(target, best.point_m) == "trigger"
        assert best.normal @ np.array([1.0, 0.0, 0.0]) > 0.7  # the trigger's front face
        assert _label_at(target, result.best("thumb").point_m) == "handle"


@pytest.mark.parametrize("category", categories())
def test_every_finger_lands_on_its_region(category):
    demo = load_demonstration(category)
    target = generate(category, 11)
    result = transfer_contacts(demo, target, seed=11)
    for contact in demo.contacts:
        best = result.best(contact.finger)
        assert _label_at(target, best.point_m) == contact.region, (category, contact.finger)


def test_geometric_views_alone_transfer_to_an_unlabelled_mesh():
    demo = load_demonstration("hammer")
    target = generate("hammer", 7)
    result = transfer_contacts(demo, target.mesh, seed=7)  # bare mesh: no part-aware hypotheses
    for contact in demo.contacts:
        best = result.best(contact.finger)
        assert best.region == "body"  # a bare mesh has no regions of its own
        assert _label_at(target, best.point_m) == "handle", contact.finger


def test_a_plugged_in_matcher_drives_the_candidates(drill_demo):
    demo, ref = drill_demo
    target = generate("drill", 3)
    tip = target.mesh.vertices[np.argmax(target.mesh.vertices[:, 0])]  # the bit tip

    class TipMatcher(Matcher):
        def propose(self, contact, source, tgt, rng):
            n = 30
            pts = tip + rng.normal(0, 1e-3, (n, 3))
            return Hypotheses(pts, np.tile([1.0, 0.0, 0.0], (n, 1)), np.ones(n), np.full(n, ANY_REGION))

    result = transfer_contacts(demo, target, matcher=TipMatcher(), reference=ref, fingers=("index",))
    assert set(result.candidates) == {"index"}
    best = result.best("index")
    assert best.region == "bit" and np.linalg.norm(best.point_m - tip) < 0.01
    assert best.confidence == pytest.approx(1.0)


def test_dbscan_separates_dense_groups_from_noise():
    rng = np.random.default_rng(0)
    a = rng.normal([0, 0, 0], 0.001, (40, 3))
    b = rng.normal([0.05, 0, 0], 0.001, (25, 3))
    noise = np.array([[0.2, 0.2, 0.2], [-0.2, 0.1, 0.0]])
    labels = dbscan(np.concatenate([a, b, noise]), eps_m=0.004, min_samples=4)
    assert len(set(labels[:40])) == 1 and len(set(labels[40:65])) == 1
    assert labels[0] != labels[40] and labels[0] >= 0 and labels[40] >= 0
    assert list(labels[65:]) == [-1, -1]


def test_transfer_labels_recovers_the_regions_of_a_bare_mesh(drill_demo):
    _, ref = drill_demo
    target = generate("drill", 8)
    labelled = transfer_labels(target.mesh, ref)
    area = target.mesh.area_faces
    for name in ("handle", "bit"):
        true, got = target.face_mask(name), labelled.face_mask(name)
        assert area[true & got].sum() > 0.6 * area[true].sum(), name


def test_bad_demonstration_files_are_reported(tmp_path):
    with pytest.raises(DemonstrationError, match="not found"):
        load_demonstration(tmp_path / "nope.yaml")
    data = yaml.safe_load((demonstrations_dir() / "drill.yaml").read_text())
    data["contacts"][0]["finger"] = "pinky"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(DemonstrationError, match="unknown finger 'pinky'"):
        load_demonstration(bad)
    data["contacts"][0]["finger"] = "index"
    data["contacts"][0]["region"] = "chuck"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(DemonstrationError, match="no region 'chuck'"):
        load_demonstration(bad)


def test_demonstration_save_load_round_trip(tmp_path):
    demo = load_demonstration("syringe")
    path = demo.save(tmp_path / "syringe.yaml")
    back = load_demonstration(path)
    assert isinstance(back, Demonstration) and back.params == demo.params
    assert [c.finger for c in back.contacts] == [c.finger for c in demo.contacts]


def test_transfer_config_rejects_bad_values():
    with pytest.raises(ValueError):
        TransferConfig(eps_min_m=0.02, eps_max_m=0.01)
