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
from dataclasses import dataclass
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
#: Precision pinch: thumb and index tips meet; the other fingers curl half-way out of the way.
PINCH = Posture(flex={"thumb": (0.3, 0.4, 0.5), "index": (0.9, 0.9, 0.5), "middle": (1.5, 1.8, 1.1),
                      "ring": (1.5, 1.8, 1.1), "little": (1.5, 1.8, 1.1)},
                spread={"index": -0.05, "middle": 0.05, "ring": 0.12, "little": 0.2},
                thumb_across=0.9, thumb_lift=1.0,
                max_closure={"thumb": 1.4, "index": 1.5, "middle": 0.5, "ring": 0.5, "little": 0.5})


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


def fit_hand(instance: LabelledMesh, posture: Posture, closure: float, tips: dict[str, np.ndarray],
             wrist: np.ndarray) -> np.ndarray:
    """(4, 4) hand pose that puts the posture's fingertips (at ``closure``) one finger radius off
    the surface at the surface points nearest to ``tips`` (finger → (3,) object frame) and its
    wrist at ``wrist``: a Kabsch fit."""
    from grasp_data.adaptation import kabsch

    surface = _Surface(instance)
    _, i = surface.tree.query(np.array(list(tips.values())))
    dst = surface.points[i] + FINGER_RADIUS_M * surface.normals[i]
    kp = hand_keypoints(posture, dict.fromkeys(FINGER_KEYPOINTS, closure))
    src = np.vstack([kp[[FINGER_KEYPOINTS[f][-1] for f in tips]], kp[:1]])
    return kabsch(src, np.vstack([dst, wrist]), np.r_[np.ones(len(tips)), 0.5])


def _ring(instance: LabelledMesh, angle_deg: float, height: float) -> np.ndarray:
    """Point on a mug's outer wall at ``angle_deg`` around +z (0 = +x, the handle) and ``height`` × its height."""
    r, h = float(instance.params["radius_m"]), float(instance.params["height_m"])
    a = np.radians(angle_deg)
    return np.array([r * np.cos(a), r * np.sin(a), height * h])


def mug_wrap(instance: LabelledMesh) -> np.ndarray:
    """Power grasp around a mug's body, palm on the side opposite the handle (object frame keypoints)."""
    r, h = float(instance.params["radius_m"]), float(instance.params["height_m"])
    T = fit_hand(instance, POWER, 0.7, {"index": _ring(instance, 285, 0.55), "little": _ring(instance, 280, 0.15),
                                        "thumb": _ring(instance, 150, 0.8)},
                 wrist=np.array([-(r + 0.05), 0.06, 0.2 * h]))
    return close_hand(instance, T, POWER)[0]


def mug_handle_pinch(instance: LabelledMesh) -> np.ndarray:
    """Pinch of a mug's handle: thumb on top of it, index finger on its outer side."""
    pts, _, labels = instance.sample_surface(20000, seed=0)
    handle = pts[labels == instance.label("handle")]
    top = handle[np.argmax(handle[:, 2])]
    outer = handle[np.argmax(handle[:, 0] - 2.0 * np.abs(handle[:, 2] - (top[2] - 0.02)))]
    T = fit_hand(instance, PINCH, 0.8, {"thumb": top, "index": outer},
                 wrist=top + np.array([0.07, 0.06, 0.09]))
    return close_hand(instance, T, PINCH)[0]


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
    samples = {
        "mug_wrap.json": record(mug_wrap(mug), {"mesh": "mug.ply", "scale": 1.0, "category": "mug",
                                                "labels": "mug.labels.json"},
                                "synthetic power grasp (grasp_data.human_synthetic.mug_wrap)"),
        "mug_handle_pinch.json": record(mug_handle_pinch(mug), {"mesh": "mug.ply", "scale": 1.0, "category": "mug",
                                                                "labels": "mug.labels.json"},
                                        "synthetic pinch (grasp_data.human_synthetic.mug_handle_pinch)"),
        "mug_wrap_left.json": mirrored,
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
