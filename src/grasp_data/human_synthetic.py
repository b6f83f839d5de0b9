"""Synthetic human grasp records: our own 21-point hand skeleton closed around generated objects.

No human data can be downloaded here, so the import path (:mod:`grasp_data.human_import`) is
exercised on records made by this module. The skeleton has average adult bone lengths (metres;
metacarpals from the wrist joint centre, phalanges joint to joint, the distal phalanx to the
fingertip) and simple joint models: each long finger flexes in its own plane (MCP, PIP, DIP),
the thumb's metacarpal leaves the CMC joint turned across the palm and lifted out of its plane
(opposition), then flexes (CMC, MCP, IP) palmar, towards the fingertips.

Hand frame: origin at the wrist joint, +x from the wrist towards the middle finger MCP, +z the
palm normal (the side the fingers close towards), +y = z × x; a right hand's thumb is on −y.

A grasp (:func:`close_hand`) places the open hand at a given pose and closes every finger along
its posture until the finger (a chain of 8 mm-radius capsules) touches the object surface, then
stops — the skeleton's tip keypoint ends ~8 mm off the surface, as in a real reconstruction.

``python -m grasp_data.human_synthetic DIR`` writes the sample records of ``tests/data/human_grasps``.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from grasp_data.human_records import FINGER_KEYPOINTS, RECORD_FORMAT, mirror_y
from grasp_data.labelled_mesh import LabelledMesh

#: Wrist → MCP (thumb: CMC) positions, hand frame, metres.
BASES_M = {"thumb": (0.030, -0.022, 0.012), "index": (0.090, -0.024, 0.0), "middle": (0.093, -0.004, 0.0),
           "ring": (0.088, 0.015, 0.0), "little": (0.080, 0.032, 0.0)}
#: Bone lengths from the MCP (thumb: CMC) outwards, metres.
BONES_M = {"thumb": (0.044, 0.031, 0.026), "index": (0.040, 0.024, 0.021), "middle": (0.045, 0.028, 0.022),
           "ring": (0.042, 0.027, 0.022), "little": (0.034, 0.019, 0.020)}
#: Finger radius (skin around the bone line), metres.
FINGER_RADIUS_M = 0.008


@dataclass(frozen=True)
class Posture:
    """How a hand closes: joint angles at full closure (radians), scaled by each finger's closure.

    Attributes:
        flex: finger → (3,) angles of its three joints at closure 1 (thumb: CMC, MCP, IP).
        spread: finger → in-palm angle of the finger's base direction (positive towards +y).
        thumb_across: angle of the thumb metacarpal from +x towards −y in the palm plane.
        thumb_lift: angle of the thumb metacarpal out of the palm plane (opposition).
        max_closure: finger → largest closure tried.
    """

    flex: dict[str, tuple[float, float, float]]
    spread: dict[str, float]
    thumb_across: float
    thumb_lift: float
    max_closure: dict[str, float]


#: Cylindrical power grasp: every finger wraps, the thumb over the index finger.
POWER = Posture(flex={"thumb": (0.3, 0.6, 0.8), "index": (1.5, 1.8, 1.1), "middle": (1.5, 1.8, 1.1),
                      "ring": (1.5, 1.8, 1.1), "little": (1.5, 1.8, 1.1)},
                spread={"index": -0.08, "middle": 0.0, "ring": 0.08, "little": 0.16},
                thumb_across=0.7, thumb_lift=0.6,
                max_closure={"thumb": 1.0, "index": 1.0, "middle": 1.0, "ring": 1.0, "little": 1.0})
#: The thumb angles of :data:`POWER` for each sample grasp (radians; found with the hand poses
#: below, see :data:`PLACEMENTS`): a body wrap with the thumb around the far side, a hook of the
#: handle with the thumb on the body, a pistol grip with the thumb across the back of the tool.
WRAP = replace(POWER, thumb_across=1.569, thumb_lift=0.521)
HOOK = replace(POWER, thumb_across=1.974, thumb_lift=1.374)
PISTOL = replace(POWER, thumb_across=2.039, thumb_lift=1.127)


def finger_points(finger: str, posture: Posture, closure: float) -> np.ndarray:
    """(4, 3) hand-frame keypoints of ``finger`` (MCP/CMC … tip) at ``closure`` (0 open … 1 closed)."""
    x, y, z = np.eye(3)
    base = np.asarray(BASES_M[finger])
    angles = np.cumsum(closure * np.asarray(posture.flex[finger]))
    if finger == "thumb":
        a, b = posture.thumb_across, posture.thumb_lift
        e = np.cos(b) * (np.cos(a) * x - np.sin(a) * y) + np.sin(b) * z
        v = z + 0.5 * x                              # palmar, towards the fingertips
        g = v - (v @ e) * e
        g /= np.linalg.norm(g)
        first, bend = e, g
    else:
        s = posture.spread[finger]
        first, bend = np.cos(s) * x + np.sin(s) * y, z
    pts = [base]
    for theta, length in zip(angles, BONES_M[finger]):
        pts.append(pts[-1] + length * (np.cos(theta) * first + np.sin(theta) * bend))
    return np.array(pts)


def hand_keypoints(posture: Posture, closure: dict[str, float]) -> np.ndarray:
    """(21, 3) hand-frame keypoints (:data:`grasp_data.human_records.KEYPOINT_NAMES` order)."""
    kp = np.zeros((21, 3))
    for finger, idx in FINGER_KEYPOINTS.items():
        kp[list(idx)] = finger_points(finger, posture, closure.get(finger, 0.0))
    return kp


class _Surface:
    """Signed distance to an object from dense surface samples (negative behind the normal)."""

    def __init__(self, instance: LabelledMesh, count: int = 30000) -> None:
        self.points, self.normals, _ = instance.sample_surface(count, seed=0)
        self.tree = cKDTree(self.points)

    def signed_distance(self, x: np.ndarray) -> np.ndarray:
        d, i = self.tree.query(x)
        return np.where(((x - self.points[i]) * self.normals[i]).sum(-1) < 0, -d, d)


def _capsule_samples(points: np.ndarray, per_segment: int = 6) -> np.ndarray:
    a = np.linspace(0.0, 1.0, per_segment)[:, None, None]
    return (points[:-1][None] * (1 - a) + points[1:][None] * a).reshape(-1, 3)


def close_hand(instance: LabelledMesh, T_object_hand: np.ndarray, posture: Posture,
               step: float = 0.01) -> tuple[np.ndarray, dict[str, float]]:
    """Close each finger of a hand at ``T_object_hand`` (4, 4) until it touches ``instance``.

    Returns:
        ``(keypoints (21, 3) object frame, closure per finger)``.
    """
    surface = _Surface(instance)
    R, t = T_object_hand[:3, :3], T_object_hand[:3, 3]
    closure = {}
    for finger in FINGER_KEYPOINTS:
        c = 0.0
        while c + step <= posture.max_closure[finger] + 1e-9:
            pts = finger_points(finger, posture, c + step) @ R.T + t
            if surface.signed_distance(_capsule_samples(pts)).min() < FINGER_RADIUS_M:
                break
            c += step
        closure[finger] = c
    return hand_keypoints(posture, closure) @ R.T + t, closure


def hand_pose(palm_normal: np.ndarray, finger_dir: np.ndarray, wrist: np.ndarray) -> np.ndarray:
    """(4, 4) hand frame in the object frame from its palm normal (+z) and finger direction (+x)."""
    z = np.asarray(palm_normal, float) / np.linalg.norm(palm_normal)
    x = np.asarray(finger_dir, float) - (np.asarray(finger_dir, float) @ z) * z
    x /= np.linalg.norm(x)
    T = np.eye(4)
    T[:3, :3] = np.column_stack([x, np.cross(z, x), z])
    T[:3, 3] = wrist
    return T


def _region_centre(instance: LabelledMesh, region: str) -> np.ndarray:
    pts, _, labels = instance.sample_surface(20000, seed=0)
    return pts[labels == instance.label(region)].mean(axis=0)


#: Hand frame → palm centre, metres (between the wrist and the knuckles).
PALM_CENTRE_M = (0.05, 0.0, 0.0)
#: Sample grasp → (rotation vector (rad) about the palm centre, shift of the palm centre (m)),
#: both in the object frame, applied to the grasp's designed pose. Found offline by a seeded
#: random search (coarse, then fine) over these and the thumb angles on two generated instances
#: each, scoring fingertips on the intended regions, the thumb opposing the index and middle
#: fingers (surface normals at the contacts) and no skeleton point inside the object.
PLACEMENTS = {"mug_wrap": ((-0.4141, 0.1668, 0.0896), (-0.0339, 0.0084, -0.0183)),
              "mug_handle": ((0.0796, 0.3079, 0.1223), (0.0075, -0.0461, -0.0153)),
              "drill_pistol": ((0.097, 0.267, 0.074), (0.0157, -0.0269, -0.0086))}


def placed(T_designed: np.ndarray, grasp: str) -> np.ndarray:
    """(4, 4) ``T_designed`` turned about its palm centre and shifted by ``PLACEMENTS[grasp]``."""
    from scipy.spatial.transform import Rotation

    rotvec, shift = PLACEMENTS[grasp]
    R = Rotation.from_rotvec(rotvec).as_matrix()
    centre = T_designed[:3, 3] + T_designed[:3, :3] @ np.asarray(PALM_CENTRE_M)
    T = T_designed.copy()
    T[:3, :3] = R @ T_designed[:3, :3]
    T[:3, 3] = R @ (T_designed[:3, 3] - centre) + centre + np.asarray(shift)
    return T


def _palm_at(palm_normal: np.ndarray, finger_dir: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """:func:`hand_pose` with the palm centre (not the wrist) at ``centre``."""
    T = hand_pose(palm_normal, finger_dir, np.zeros(3))
    T[:3, 3] = np.asarray(centre, float) - T[:3, :3] @ np.asarray(PALM_CENTRE_M)
    return T


def mug_wrap(instance: LabelledMesh) -> np.ndarray:
    """Power wrap of a mug's body from the side away from the handle: the fingers round one side,
    the thumb round the other, opposing them (object frame keypoints, (21, 3))."""
    r, h = float(instance.params["radius_m"]), float(instance.params["height_m"])
    T = _palm_at([1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [-(r + 0.022), 0.0, 0.5 * h])
    return close_hand(instance, placed(T, "mug_wrap"), WRAP)[0]


def mug_handle(instance: LabelledMesh) -> np.ndarray:
    """Hook grip of a mug's handle from the side: the fingers curl round the handle's outer bar,
    the thumb rests on the body (object frame keypoints, (21, 3))."""
    pts, _, labels = instance.sample_surface(20000, seed=0)
    bar_x = pts[labels == instance.label("handle"), 0].max()
    z = float(instance.params["handle_height"]) * float(instance.params["height_m"])
    T = _palm_at([0.0, 1.0, 0.0], [1.0, 0.0, 0.0],
                 [bar_x - 0.045, -(float(instance.params["handle_tube_m"]) + 0.022), z + 0.012])
    return close_hand(instance, placed(T, "mug_handle"), HOOK)[0]


def drill_pistol(instance: LabelledMesh) -> np.ndarray:
    """Pistol grip of a drill: palm on the grip's right side, index finger on the trigger, the
    other fingers round the grip, the thumb across its back (object frame keypoints, (21, 3))."""
    lean = float(instance.params["grip_lean_rad"])
    forward = np.array([np.cos(lean), 0.0, np.sin(lean)])          # across the grip, towards the trigger
    up = np.array([-np.sin(lean), 0.0, np.cos(lean)])              # along the grip
    centre = (_region_centre(instance, "trigger") - 0.05 * forward - 0.012 * up
              - (float(instance.params["grip_width_m"]) / 2 + 0.022) * np.array([0.0, 1.0, 0.0]))
    return close_hand(instance, placed(_palm_at([0.0, 1.0, 0.0], forward, centre), "drill_pistol"), PISTOL)[0]


def record(keypoints: np.ndarray, obj: dict, source: str) -> dict:
    """A record (:mod:`grasp_data.human_records` format) with object-frame keypoints."""
    return {"format": RECORD_FORMAT, "source": source, "handedness": "right", "keypoint_order": "openpose",
            "frame": "object", "keypoints_m": np.round(keypoints, 5).tolist(), "object": obj}


def write_samples(out: Path) -> list[Path]:
    """Write the sample records (and the mug mesh they share) into ``out``; returns the record paths."""
    from grasp_data.mesh_io import save_labelled_mesh, write_atomic
    from grasp_data.objects import generate

    out.mkdir(parents=True, exist_ok=True)
    mug = generate("mug", 1)
    save_labelled_mesh(mug, out / "mug.ply")
    mug4 = generate("mug", 4)
    mirrored = record(mirror_y(mug_wrap(mug4)), {"generated": {"category": "mug", "seed": 4}},
                      "synthetic power grasp of a left hand (mirrored grasp_data.human_synthetic.mug_wrap)")
    mirrored["handedness"] = "left"           # the mug is symmetric about y = 0: its mirror is itself
    mesh = {"mesh": "mug.ply", "scale": 1.0, "category": "mug", "labels": "mug.labels.json"}
    samples = {
        "mug_wrap.json": record(mug_wrap(mug), mesh, "synthetic power grasp (grasp_data.human_synthetic.mug_wrap)"),
        "mug_handle.json": record(mug_handle(mug), mesh, "synthetic hook grip (grasp_data.human_synthetic.mug_handle)"),
        "mug_wrap_left.json": mirrored,
        "drill_pistol.json": record(drill_pistol(generate("drill", 2)), {"generated": {"category": "drill", "seed": 2}},
                                    "synthetic pistol grip (grasp_data.human_synthetic.drill_pistol)"),
    }
    paths = []
    for name, rec in samples.items():
        write_atomic(out / name, (json.dumps(rec, indent=1) + "\n").encode())
        paths.append(out / name)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write synthetic human grasp records.")
    parser.add_argument("out", type=Path, help="folder (e.g. tests/data/human_grasps)")
    for p in write_samples(parser.parse_args(argv).out):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
