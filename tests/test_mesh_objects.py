"""Mesh files as simulator objects: validation errors, scale, cache, collision, mass, physics, regions."""
from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from sim_bridge.mesh_objects import MeshLoadError, load_mesh, load_regions, mesh_object
from sim_bridge.objects import OBJECTS, get_object
from sim_bridge.scene import SceneConfig
from sim_bridge.world import SimWorld


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """A fresh mesh cache; objects registered by the test are removed from the catalogue after it."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("FGRASP_CACHE_DIR", str(folder))
    before = dict(OBJECTS)
    yield folder
    OBJECTS.clear()
    OBJECTS.update(before)


@pytest.fixture()
def can_mm(tmp_path):
    """A closed cylinder 60 mm across and 90 mm tall, written as STL in millimetres."""
    path = tmp_path / "can_mm.stl"
    trimesh.creation.cylinder(radius=30.0, height=90.0, sections=24).export(str(path))
    return path


def test_missing_file_says_not_found(tmp_path):
    with pytest.raises(MeshLoadError, match="mesh file not found: .*nope.obj"):
        load_mesh(tmp_path / "nope.obj")


def test_file_that_is_not_a_mesh(tmp_path):
    bad = tmp_path / "notes.obj"
    bad.write_text("this is a shopping list, not a mesh\n")
    with pytest.raises(MeshLoadError, match="no triangles"):
        load_mesh(bad)
    binary = tmp_path / "noise.stl"
    binary.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(MeshLoadError, match="noise.stl"):
        load_mesh(binary)


def test_unsupported_type_and_bad_scale(tmp_path, can_mm):
    other = tmp_path / "part.step"
    other.write_text("ISO-10303-21;")
    with pytest.raises(MeshLoadError, match="unsupported mesh type '.step'"):
        load_mesh(other)
    with pytest.raises(MeshLoadError, match="scale must be"):
        load_mesh(can_mm, scale=-1.0)


def test_unit_error_and_flat_mesh_are_explained(can_mm):
    with pytest.raises(MeshLoadError, match="90 m across.*scale 0.001"):
        load_mesh(can_mm)                                  # millimetres read as metres
    flat = trimesh.Trimesh(vertices=[[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0.1, 0.1, 0]],
                           faces=[[0, 1, 2], [1, 3, 2]])
    with pytest.raises(MeshLoadError, match="flat"):
        load_mesh(flat)
    nan = trimesh.creation.box((0.05, 0.05, 0.05))
    nan.vertices[0, 0] = np.nan
    with pytest.raises(MeshLoadError, match="NaN"):
        load_mesh(nan)


def test_mesh_object_keeps_scale_has_density_mass_and_rests_on_table(can_mm, cache):
    spec = mesh_object(can_mm, scale=0.001, name="can")
    assert get_object("can") is spec                       # registered: SceneConfig(object=...) works
    lo, hi = spec.bounds
    np.testing.assert_allclose(hi - lo, [0.06, 0.06, 0.09], atol=1e-3)
    assert len(list(cache.iterdir())) == 1
    assert mesh_object(can_mm, scale=0.001, name="can") == spec      # cache hit, same spec
    assert len(list(cache.iterdir())) == 1

    with SimWorld(SceneConfig(object="can", object_xy=(0.55, 0.05), object_yaw=0.4)) as world:
        hull_volume = load_mesh(can_mm, 0.001).convex_hull.volume
        assert world.object_mass_kg == pytest.approx(500.0 * hull_volume, rel=0.02)  # D(R,O) density 500
        rest, quat = world.object_pose()
        assert rest[2] == pytest.approx(0.045, abs=2e-3)   # resting on its base, 9 cm tall
        world.set_object_pose(rest + [0.0, 0.0, 0.05], quat)   # drop it from 5 cm
        world.step(400)                                         # 0.8 s
        pos, _ = world.object_pose()
        assert pos[2] == pytest.approx(rest[2], abs=3e-3), "did not land on the table"
        assert np.linalg.norm(pos[:2] - rest[:2]) < 0.01
        world.step(100)
        assert np.linalg.norm(world.object_pose()[0] - pos) < 1e-3, "still moving after landing"


def test_coacd_pieces_are_cached_separately(cache):
    box = trimesh.creation.box((0.04, 0.04, 0.04))
    hull = mesh_object(box, name="cube_hull")
    pieces = mesh_object(box, name="cube_coacd", collision="coacd")
    assert hull.visual_mesh != pieces.visual_mesh          # different cache entries
    assert len(pieces.collision_meshes) >= 1
    with pytest.raises(MeshLoadError, match="unknown collision method"):
        mesh_object(box, collision="vhacd")


def test_name_clash_with_a_different_object(cache):
    mesh_object(trimesh.creation.box((0.04, 0.04, 0.04)), name="clash")
    with pytest.raises(ValueError, match="already registered"):
        mesh_object(trimesh.creation.box((0.05, 0.04, 0.04)), name="clash")


def test_regions_file_format_and_lookup(tmp_path):
    mesh = load_mesh(trimesh.creation.box((0.04, 0.04, 0.04)))
    top = [i for i, v in enumerate(mesh.vertices) if v[2] > 0]
    path = tmp_path / "regions.json"
    path.write_text(json.dumps({"functional": top, "avoid": [i for i in range(8) if i not in top][:1]}))
    regions = load_regions(path, mesh)
    functional, avoid = regions.labels_at(np.array([[0.019, 0.019, 0.021], [0.0, 0.0, -0.05]]))
    assert functional.tolist() == [True, False]
    bad = tmp_path / "bad.json"
    for doc, message in (({"avoid": [1]}, "'functional' list"), ({"functional": [99]}, "outside 0..7"),
                         ({"functional": [1], "avoid": [1]}, "both"), ({"functional": ["a"]}, "integer")):
        bad.write_text(json.dumps(doc))
        with pytest.raises(MeshLoadError, match=message):
            load_regions(bad, mesh)
    bad.write_text("{not json")
    with pytest.raises(MeshLoadError, match="not JSON"):
        load_regions(bad, mesh)
