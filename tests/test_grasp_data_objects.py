"""Functional object generators, labelled mesh import/export, convex decomposition, gallery."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import trimesh
from PIL import Image

from grasp_data.collision import convex_decomposition
from grasp_data.gallery import KIND_COLOURS, render_gallery
from grasp_data.labelled_mesh import LabelledMesh
from grasp_data.mesh_io import LABELS_FORMAT, MeshFileError, labels_path_for, load_labelled_mesh, save_labelled_mesh
from grasp_data.objects import PLAUSIBLE_EXTENT_M, categories, generate
from grasp_data.objects.parts import Part, box, compose
from grasp_data.regions import CATEGORY_REGIONS

SEEDS = range(4)


def test_at_least_six_categories_each_with_regions():
    assert len(categories()) >= 6
    for category in categories():
        regions = CATEGORY_REGIONS[category]
        assert regions.names[0] == "body"
        assert regions.of_kind("functional", "grip"), category
        assert regions.of_kind("avoid"), category


@pytest.mark.parametrize("category", categories())
def test_instances_are_closed_labelled_plausible_solids(category):
    for seed in SEEDS:
        inst = generate(category, seed)
        mesh = inst.mesh
        assert mesh.is_watertight and mesh.is_winding_consistent, (category, seed)
        assert mesh.volume > 0 and mesh.body_count == 1, (category, seed)
        assert PLAUSIBLE_EXTENT_M[0] <= mesh.extents.max() <= PLAUSIBLE_EXTENT_M[1]
        # object frame convention: resting on z = 0, x-y centred
        assert mesh.bounds[0, 2] == pytest.approx(0.0, abs=1e-9)
        assert np.allclose(mesh.bounds[:, :2].sum(axis=0), 0.0, atol=1e-9)
        assert inst.region_names == CATEGORY_REGIONS[category].names
        for name in inst.region_names:
            assert inst.region_area_m2(name) > 1e-6, (category, seed, name)  # > 0.01 cm²
            assert (inst.vertex_labels == inst.label(name)).any(), (category, seed, name)


@pytest.mark.parametrize("category", categories())
def test_seeds_give_different_shapes_and_a_seed_reproduces(category):
    a, b = generate(category, 0), generate(category, 1)
    assert a.params != b.params
    assert not np.allclose(a.mesh.extents, b.mesh.extents, atol=1e-3)
    again = generate(category, 1, **b.params)
    assert np.array_equal(again.mesh.vertices, b.mesh.vertices)
    assert np.array_equal(again.face_labels, b.face_labels)


def test_parameter_overrides_are_checked_against_their_ranges():
    short, long = generate("drill", 2, bit_length_m=0.04), generate("drill", 2, bit_length_m=0.10)
    assert long.mesh.extents[0] - short.mesh.extents[0] == pytest.approx(0.06, abs=1e-4)
    with pytest.raises(ValueError, match=r"bit_length_m=0.5 is outside its range \[0.04, 0.1\]"):
        generate("drill", 0, bit_length_m=0.5)
    with pytest.raises(ValueError, match="unknown parameter.*wheel_m"):
        generate("drill", 0, wheel_m=0.1)
    with pytest.raises(ValueError, match="grip_shape='hexagon' is not one of"):
        generate("drill", 0, grip_shape="hexagon")
    with pytest.raises(ValueError, match="unknown object category 'kettle'"):
        generate("kettle", 0)


@pytest.mark.parametrize("suffix", [".obj", ".stl", ".ply"])
def test_user_mesh_with_labels_round_trips(tmp_path, suffix):
    inst = generate("spray_bottle", 5)
    mesh_path, side = save_labelled_mesh(inst, tmp_path / f"bottle{suffix}")
    assert side == labels_path_for(mesh_path) and side.name == "bottle.labels.json"
    back = load_labelled_mesh(mesh_path)
    assert back.category == "spray_bottle" and back.region_names == inst.region_names
    assert back.mesh.is_watertight
    assert np.allclose(back.mesh.triangles, inst.mesh.triangles, atol=1e-6)
    assert np.array_equal(back.face_labels, inst.face_labels)


def test_vertex_labels_and_category_renumbering(tmp_path):
    inst = generate("drill", 1)
    inst.mesh.export(tmp_path / "d.obj")
    names = list(inst.region_names)
    order = ["body", "bit", "trigger", "handle"]  # user's own order; renumbered to the category's
    user = np.array([order.index(names[v]) for v in inst.vertex_labels])
    (tmp_path / "d.labels.json").write_text(json.dumps(
        {"format": LABELS_FORMAT, "region_names": order, "vertex_labels": user.tolist()}))
    back = load_labelled_mesh(tmp_path / "d.obj", category="drill")
    assert back.region_names == inst.region_names
    # vertex labels blur region borders on a coarse mesh (face_labels are exact); by area
    # each region is still recovered
    area = inst.mesh.area_faces
    for name in inst.region_names:
        true, got = inst.face_mask(name), back.face_mask(name)
        assert area[true & got].sum() > 0.8 * area[true].sum(), name


def test_bad_files_fail_with_a_clear_message(tmp_path):
    with pytest.raises(MeshFileError, match="not found"):
        load_labelled_mesh(tmp_path / "missing.obj", labels_path=tmp_path / "missing.labels.json")
    inst = generate("mug", 0)
    mesh_path, side = save_labelled_mesh(inst, tmp_path / "mug.ply")
    with pytest.raises(MeshFileError, match="label file not found"):
        load_labelled_mesh(mesh_path, labels_path=tmp_path / "nope.json")
    corrupt = tmp_path / "corrupt.ply"
    corrupt.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 99\n\x00\x01garbage")
    corrupt.with_name("corrupt.labels.json").write_text(side.read_text())
    with pytest.raises(MeshFileError, match="corrupt.ply"):
        load_labelled_mesh(corrupt)
    data = json.loads(side.read_text())
    data["face_labels"] = data["face_labels"][:-5]
    side.write_text(json.dumps(data))
    with pytest.raises(MeshFileError, match=r"'face_labels' has \d+ entries but the mesh has \d+ faces"):
        load_labelled_mesh(mesh_path)
    side.write_text("{not json")
    with pytest.raises(MeshFileError, match="not a readable JSON label file"):
        load_labelled_mesh(mesh_path)


def test_open_mesh_is_refused_unless_allowed(tmp_path):
    inst = generate("hammer", 0)
    keep = np.ones(len(inst.mesh.faces), bool)
    keep[:10] = False
    opened = inst.mesh.copy()
    opened.update_faces(keep)
    save_labelled_mesh(LabelledMesh(opened, inst.face_labels[keep], inst.region_names, "hammer"),
                       tmp_path / "open.obj")
    with pytest.raises(MeshFileError, match=r"not watertight \(\d+ open edges"):
        load_labelled_mesh(tmp_path / "open.obj")
    loose = load_labelled_mesh(tmp_path / "open.obj", require_watertight=False)
    assert len(loose.face_labels) == keep.sum()


def _l_shape() -> trimesh.Trimesh:
    mesh, _ = compose([Part(box([0, 0, 0.005], [0.06, 0.01, 0.01]), 0),
                       Part(box([0.025, 0, 0.03], [0.01, 0.01, 0.06]), 0)])
    return mesh


def test_convex_decomposition_is_cached(tmp_path):
    mesh = _l_shape()
    first = convex_decomposition(mesh, cache=tmp_path)
    assert first.method == "coacd" and not first.from_cache
    assert len(first.parts) >= 2  # an L needs more than one convex piece
    assert sum(p.volume for p in first.parts) == pytest.approx(mesh.volume, rel=0.25)
    second = convex_decomposition(mesh, cache=tmp_path)
    assert second.from_cache and len(second.parts) == len(first.parts)
    assert second.spec.collision_meshes == first.spec.collision_meshes


def test_convex_decomposition_falls_back_to_the_hull(tmp_path, monkeypatch):
    import coacd

    def broken(*args, **kwargs):
        raise RuntimeError("simulated CoACD failure")

    monkeypatch.setattr(coacd, "run_coacd", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = convex_decomposition(_l_shape(), cache=tmp_path)
    assert result.method == "hull" and len(result.parts) == 1
    assert any("simulated CoACD failure" in str(w.message) for w in caught)


def test_gallery_shows_region_colours(tmp_path):
    path = render_gallery([generate("drill", 0), generate("syringe", 0)], tmp_path / "g.png", size_px=160)
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert image.shape[0] == 2 * 160
    views = image[:, :2 * 160]

    def shaded(colour):  # some pixel has this colour's hue at any brightness
        c = np.asarray(colour, float)
        unit = views / np.maximum(np.linalg.norm(views, axis=2, keepdims=True), 1)
        return ((unit @ (c / np.linalg.norm(c))) > 0.995).sum()

    assert shaded(KIND_COLOURS["grip"][0]) > 50          # drill handle (blue)
    assert shaded(KIND_COLOURS["functional"][0]) > 10    # trigger / flange (green)
    assert shaded(KIND_COLOURS["avoid"][0]) > 10         # bit / needle (red)


def test_fgrasp_data_show_writes_the_picture(tmp_path):
    from functional_grasp.cli import main

    out = tmp_path / "drill.png"
    assert main(["data", "show", "--category", "drill", "--size-px", "96", "--out", str(out)]) == 0
    assert Image.open(out).size == (2 * 96 + 190, 96)
    with pytest.raises(SystemExit) as exc:
        main(["data", "show", "--category", "kettle", "--out", str(out)])
    assert exc.value.code == 2
