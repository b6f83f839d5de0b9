"""Human grasp import: record checks, keypoint retargeting to each hand, import into a dataset."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from grasp_data.dataset import load_shard, verify_dataset
from grasp_data.engine import GenerateSettings, _hand_model
from grasp_data.adaptation import ObjectSamples
from grasp_data.human_import import HumanImportConfig, as_demonstration, human_contacts, import_human
from grasp_data.human_records import (FINGER_KEYPOINTS, MANO_NAMES, HumanRecordError, KEYPOINT_NAMES,
                                      load_records)
from grasp_data.human_synthetic import mug_wrap
from grasp_data.objects import generate
from grasp_data.retarget import ObjectSurfaces, Retargeter, RetargetConfig
from grasp_data.validation import FloatingHandScene, ValidationConfig, designated_fingers
from sim_bridge.mesh_objects import mesh_object

SAMPLES = Path(__file__).parent / "data" / "human_grasps"
TINY = GenerateSettings(hand="oymotion", grasps_per_object=2, iterations=5, views=0, collision="hull")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _sample(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def _robot_keypoints_as_human(rt: Retargeter, T: np.ndarray, q_act: np.ndarray) -> np.ndarray:
    """(B, 21, 3) keypoints of a robot hand's own FK in the human layout (unmapped joints halfway
    between their mapped neighbours)."""
    with torch.no_grad():
        w, p, tips = rt.keypoints(torch.as_tensor(T), torch.as_tensor(q_act))
    kp = np.full((len(T), 21, 3), np.nan)
    kp[:, 0], kp[:, rt.point_human], kp[:, rt.tip_human] = w.numpy(), p.numpy(), tips.numpy()
    for idx in FINGER_KEYPOINTS.values():
        chain = [0, *idx]
        for j, k in enumerate(chain):
            if np.isnan(kp[0, k, 0]):
                nxt = next(x for x in chain[j + 1:] if not np.isnan(kp[0, x, 0]))
                kp[:, k] = 0.5 * (kp[:, chain[j - 1]] + kp[:, nxt])
    return kp


def test_retargeting_a_hands_own_scaled_keypoints_recovers_its_fingertips():
    model = _hand_model("inspire")
    rt = Retargeter(model)
    rng = np.random.default_rng(0)
    B = 4
    lim = model.act_limits.numpy()
    q = np.clip(model.q_open + rng.uniform(0.1, 0.9, (B, 1)) * (model.q_closed - model.q_open)
                + rng.normal(0.0, 0.05, (B, len(lim))), lim[:, 0], lim[:, 1])
    T = np.tile(np.eye(4), (B, 1, 1))
    T[:, :3, :3] = Rotation.random(B, random_state=1).as_matrix()
    T[:, :3, 3] = rng.normal(0.0, 0.1, (B, 3))
    kp = _robot_keypoints_as_human(rt, T, q)
    tips = kp[:, rt.tip_human]
    centre = tips.mean(axis=1, keepdims=True)
    human = centre + 0.85 * (kp - centre)                 # a smaller "human" hand, same grasp centre
    result = rt.retarget(human)
    np.testing.assert_allclose(result.scale, 1 / 0.85, rtol=1e-6)
    with torch.no_grad():
        _, _, got = rt.keypoints(torch.as_tensor(result.root_pose), torch.as_tensor(result.q_act))
    err = np.linalg.norm(got.numpy() - tips, axis=-1)
    assert np.median(err) < 0.003 and err.max() < 0.008, err


@pytest.mark.parametrize("hand", ["shadow", "inspire", "oymotion"])
def test_retargeting_with_the_object_keeps_the_hand_out_of_the_mug_and_the_fingertips_on_it(hand):
    grasp = load_records([SAMPLES / "mug_wrap.json"])[0]
    contacts = human_contacts(grasp)
    # A reconstruction 12 mm too close to the mug (as hand-pose estimates often are).
    inward = -grasp.keypoints_m[0] * [1.0, 1.0, 0.0]
    keypoints = grasp.keypoints_m + 0.012 * inward / np.linalg.norm(inward)
    model = _hand_model(hand)
    rt = Retargeter(model, config=RetargetConfig(iterations=100))
    mask = np.array([[f in {c.finger for c in contacts} for f in rt.fingers]])
    objects = [ObjectSamples.of(grasp.instance, 4096)]
    plain = rt.retarget(keypoints[None], mask)
    result = rt.retarget(keypoints[None], mask, objects)
    # Penetration as the validator measures it (MuJoCo, the mug's convex hull: the cavity counts too).
    scene = FloatingHandScene(model, grasp.instance, mesh_object(grasp.instance.mesh, name="mug_hull", collision="hull"),
                              ValidationConfig())
    depth_plain, depth = (scene.initial_state(r.root_pose[0], r.q[0])[1] for r in (plain, result))
    assert depth_plain > 0.01 and depth < 0.7 * depth_plain, (depth_plain, depth)
    with torch.no_grad():
        wrist, _, tips = rt.keypoints(torch.as_tensor(result.root_pose), torch.as_tensor(result.q_act))
        gap = ObjectSurfaces(objects)(tips)[0].numpy()
    np.testing.assert_allclose(gap, result.surface_distance_m[0], atol=1e-9)
    fingers = [rt.fingers.index(c.finger) for c in contacts if c.finger != "thumb"]
    assert np.median(np.abs(gap[fingers])) < 0.007 and np.abs(gap[fingers]).max() < 0.02, dict(zip(rt.fingers, gap))
    assert np.linalg.norm(wrist[0].numpy() - grasp.keypoints_m[0]) < 0.06


def test_synthetic_samples_touch_their_regions_with_an_opposing_thumb():
    wrap, handle, drill = load_records([SAMPLES / f"{n}.json" for n in ("mug_wrap", "mug_handle", "drill_pistol")])
    by_finger = {g.name: {c.finger: c for c in human_contacts(g)} for g in (wrap, handle, drill)}
    c = by_finger["mug_wrap"]
    assert set(c) == {"thumb", "index", "middle", "ring", "little"} and {x.region for x in c.values()} == {"body"}
    # The thumb presses on the far side of the mug: its surface normal opposes the fingers'.
    assert c["thumb"].normal @ (c["index"].normal + c["middle"].normal) / 2 < -0.5
    assert {f: by_finger["mug_handle"][f].region for f in ("index", "middle", "ring")} == dict.fromkeys(
        ("index", "middle", "ring"), "handle")
    c = by_finger["drill_pistol"]
    assert c["index"].region == "trigger" and c["middle"].region == c["ring"].region == "handle"
    assert c["thumb"].normal @ c["middle"].normal < -0.5
    assert designated_fingers(as_demonstration(drill, list(c.values()))) == {"index": "trigger"}


def _write(tmp_path: Path, record: dict, name: str = "rec.json") -> Path:
    shutil.copy(SAMPLES / "mug.ply", tmp_path / "mug.ply")
    shutil.copy(SAMPLES / "mug.labels.json", tmp_path / "mug.labels.json")
    path = tmp_path / name
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(keypoints_m=r["keypoints_m"][:20]), "has 20 keypoints; 21 are needed"),
    (lambda r: r["keypoints_m"][3].__setitem__(1, float("nan")), "NaN"),
    (lambda r: r.update(handedness="both"), "'handedness' must be 'right' or 'left'"),
    (lambda r: r["object"].update(mesh="missing.obj"), "'object.mesh' file not found"),
    (lambda r: r["object"].pop("mesh"), "'object.mesh' is missing"),
    (lambda r: r["object"].update(scale=0.0), "'object.scale' must be a positive number"),
    (lambda r: r["object"].update(scale=1e-5), "then use scale 0.001"),
    (lambda r: r.update(frame="camera"), "'object.T_camera_object' is needed"),
    (lambda r: r.update(keypoints_m=(np.array(r["keypoints_m"]) * 1000).tolist()), "not metres"),
    (lambda r: r.update(format="hoi/2"), "'format' must be"),
])
def test_malformed_records_are_refused_naming_file_and_field(tmp_path, change, message):
    record = _sample("mug_wrap")
    change(record)
    path = _write(tmp_path, [record], "bad.json")
    with pytest.raises(HumanRecordError) as err:
        load_records([path])
    assert str(path) in str(err.value) and "entry 0" in str(err.value) and message in str(err.value)


def test_camera_frame_mano_order_and_left_hand_records_land_in_the_object_frame(tmp_path):
    record = _sample("mug_wrap")
    kp = np.array(record["keypoints_m"])
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec([0.3, -1.2, 0.5]).as_matrix()
    T[:3, 3] = [0.1, -0.05, 0.6]
    mano = kp[[KEYPOINT_NAMES.index(n) for n in MANO_NAMES]]
    record.update(frame="camera", keypoint_order="mano", keypoints_m=(mano @ T[:3, :3].T + T[:3, 3]).tolist())
    record["object"]["T_camera_object"] = T.tolist()
    got = load_records([_write(tmp_path, record)])[0]
    np.testing.assert_allclose(got.keypoints_m, kp, atol=1e-9)
    # The left-hand sample is the mirror image of a right-hand wrap of a mug symmetric about y = 0.
    left = load_records([SAMPLES / "mug_wrap_left.json"])[0]
    assert left.mirrored
    np.testing.assert_allclose(left.keypoints_m, mug_wrap(generate("mug", 4)), atol=2e-5)


def test_import_writes_loadable_human_shards_with_the_functional_check_and_resumes(tmp_path):
    far = _sample("mug_wrap")
    far["keypoints_m"] = (np.array(far["keypoints_m"]) + [0.0, 0.0, 0.5]).tolist()   # hand above the mug
    records = load_records([SAMPLES / "mug_wrap.json", _write(tmp_path, far, "far.json"), SAMPLES / "drill_pistol.json"])
    out = tmp_path / "ds"
    config = HumanImportConfig(retarget=RetargetConfig(iterations=50))
    summary = import_human(records, TINY, out, config, progress=False)
    assert summary.retargeted == 2 and list(summary.unusable) == ["far"]
    assert "0 fingertip(s)" in summary.unusable["far"]
    assert verify_dataset(out) == []
    index = json.loads((out / "index.json").read_text())
    assert index["settings"]["source"] == "human" and len(index["shards"]) == 2
    shards = {s["meta"]["category"]: s for s in (load_shard(out / e["file"]) for e in index["shards"].values())}
    meta = shards["mug"]["meta"]
    assert meta["source"] == "human" and meta["hand"] == "oymotion" and set(meta["human_contacts"]) >= {"index", "middle"}
    assert meta["designated"] == {}                      # no functional region touched on a mug body
    assert shards["mug"]["grasp_q"].shape == (2, len(meta["joint_names"]))
    assert shards["mug"]["grasp_root_pose"].shape == (2, 4, 4) and len(shards["mug"]["grasp_reason"]) == 2
    assert len(shards["mug"]["mesh_faces"]) == len(records[0].instance.mesh.faces)
    # The drill record's index finger is on the trigger: the validator checks it (functional criterion).
    drill = shards["drill"]
    assert drill["meta"]["designated"] == {"index": "trigger"} and drill["meta"]["human_contacts"]["index"] == "trigger"
    assert not (drill["grasp_kept"] & ~drill["grasp_functional"]).any()
    again = import_human(records, TINY, out, config, progress=False)
    assert again.already_done == 2 and again.retargeted == 0 and again.shards.objects_written == 0
