"""Human hand–object interaction records: 21 hand keypoints + the object, as a reconstruction tool gives them.

Web2Grasp (seeds/000) reconstructs a hand and the held object from a web image and retargets the
hand to a robot hand. This module reads such reconstructions in a small JSON format, checks them,
and brings hand and object into one frame; :mod:`grasp_data.retarget` then fits each robot hand
and :mod:`grasp_data.human_import` adapts, validates and stores the grasps.

Record format (one JSON object per file, or a JSON list of them; ``format`` is required)::

    {
      "format": "functional_grasp.human_grasp/1",
      "source": "HaMeR on img_0042.jpg",      # free text, kept in the dataset (optional)
      "handedness": "right",                  # "right" or "left" (a left hand is mirrored)
      "keypoint_order": "openpose",           # "openpose" (default) or "mano", see below
      "frame": "camera",                      # frame of keypoints_m: "camera" or "object"
      "keypoints_m": [[x, y, z], ...],        # 21 joint positions, metres
      "object": {
        "mesh": "mug.ply",                    # OBJ / STL / PLY, path relative to the record file
        "scale": 1.0,                         # mesh units → metres (0.001 for millimetres)
        "T_camera_object": [[...4x4...]],     # object mesh frame in the camera frame, metres;
                                              # null (or absent) when frame is "object"
        "category": "mug",                    # optional: a grasp_data.regions category
        "labels": "mug.labels.json"           # optional: region labels (grasp_data.mesh_io sidecar)
      }
    }

Instead of ``mesh``, ``"generated": {"category": "mug", "seed": 3}`` (optionally with
``"params"``) names an instance of the parametric generators (:mod:`grasp_data.objects`), which
come with their labels.

Keypoint order ``openpose`` (HaMeR, FrankMocap, MediaPipe, InterHand): wrist; thumb CMC, MCP,
IP, tip; index MCP, PIP, DIP, tip; then middle, ring and little finger likewise
(:data:`KEYPOINT_NAMES`). ``mano`` is the MANO layer's 16 joints (wrist; index, middle, little,
ring, thumb — three each) followed by the five fingertips thumb → little, as smplx returns them.
MANO *pose parameters* cannot be used: turning them into joints needs the MANO model files, a
licensed download that is not installed here — export the 21 joint positions instead (every
MANO-based tool can).

Labels: with ``labels`` the sidecar's regions are used; with only ``category`` the regions are
transferred from the category's demonstration reference (:func:`grasp_data.transfer.transfer_labels`,
which expects the object frame convention of :mod:`grasp_data.labelled_mesh`); with neither the
whole surface is ``body`` (stable grasps only, no functional criterion).

Left hands: the robot hands here are right hands, so a left-hand record is mirrored through the
object frame's x–z plane (y → −y) together with its object mesh; the dataset then stores the
mirrored object, so grasp and mesh stay consistent.

Errors: every problem raises :class:`HumanRecordError` naming the file (and the entry of a list)
and the field.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from grasp_data.labelled_mesh import LabelledMesh

#: Value of a record's ``format`` key.
RECORD_FORMAT = "functional_grasp.human_grasp/1"
#: The 21 keypoints in ``openpose`` order (the order used everywhere in this package).
KEYPOINT_NAMES = ("wrist",
                  "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
                  "index_mcp", "index_pip", "index_dip", "index_tip",
                  "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
                  "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
                  "little_mcp", "little_pip", "little_dip", "little_tip")
#: Finger → its four keypoints from the palm outwards (indices into :data:`KEYPOINT_NAMES`).
FINGER_KEYPOINTS = {f: tuple(KEYPOINT_NAMES.index(n) for n in KEYPOINT_NAMES if n.startswith(f + "_"))
                    for f in ("thumb", "index", "middle", "ring", "little")}
#: Finger → index of its tip keypoint.
TIP_INDEX = {f: idx[-1] for f, idx in FINGER_KEYPOINTS.items()}
#: ``mano`` order → names (smplx MANO joints followed by its five fingertip vertices).
MANO_NAMES = ("wrist", "index_mcp", "index_pip", "index_dip", "middle_mcp", "middle_pip", "middle_dip",
              "little_mcp", "little_pip", "little_dip", "ring_mcp", "ring_pip", "ring_dip",
              "thumb_cmc", "thumb_mcp", "thumb_ip",
              "thumb_tip", "index_tip", "middle_tip", "ring_tip", "little_tip")
KEYPOINT_ORDERS = {"openpose": KEYPOINT_NAMES, "mano": MANO_NAMES}
#: Largest plausible distance of any keypoint from the wrist, metres (a hand is ~0.19 m long).
MAX_HAND_EXTENT_M = 0.4
#: Smallest plausible wrist → middle-fingertip bone length, metres (rejects collapsed skeletons).
MIN_HAND_LENGTH_M = 0.05


class HumanRecordError(ValueError):
    """A human grasp record is unusable; the message names the file, the entry and the field."""


@dataclass(frozen=True)
class HumanGrasp:
    """One record, checked, with hand and object in the object frame.

    Attributes:
        name: ``<file stem>`` or ``<file stem>#<entry>`` for an entry of a list.
        path: the record file.
        entry: position in the file's list (0 for a single record).
        digest: sha256 of the entry's canonical JSON (identifies it across runs).
        keypoints_m: (21, 3) float64 :data:`KEYPOINT_NAMES` order, object frame, metres (a right
            hand: mirrored if the record was a left hand).
        instance: the object (labelled; mirrored with the hand for a left hand).
        handedness: the record's hand as given (``right`` / ``left``).
        source: the record's ``source`` text.
    """

    name: str
    path: Path
    entry: int
    digest: str
    keypoints_m: np.ndarray
    instance: LabelledMesh
    handedness: str
    source: str

    @property
    def mirrored(self) -> bool:
        return self.handedness == "left"


def _fail(where: str, field: str, what: str) -> HumanRecordError:
    return HumanRecordError(f"{where}: '{field}' {what}")


def _matrix(value: Any, shape: tuple[int, ...], where: str, field: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(where, field, f"must be numbers of shape {shape}, got {type(value).__name__}") from None
    if arr.shape != shape:
        raise _fail(where, field, f"must have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise _fail(where, field, f"holds NaN or infinite values (first at {bad})")
    return arr


def reorder_keypoints(points: np.ndarray, order: str) -> np.ndarray:
    """(21, 3) keypoints from ``order`` (a key of :data:`KEYPOINT_ORDERS`) to :data:`KEYPOINT_NAMES` order."""
    names = KEYPOINT_ORDERS[order]
    return points[[names.index(n) for n in KEYPOINT_NAMES]]


def bone_length_m(keypoints: np.ndarray, finger: str = "middle") -> float:
    """Wrist → fingertip length along ``finger``'s bones (sum of segment lengths), metres."""
    chain = keypoints[[0, *FINGER_KEYPOINTS[finger]]]
    return float(np.linalg.norm(np.diff(chain, axis=0), axis=1).sum())


def _check_hand(kp: np.ndarray, where: str) -> None:
    extent = float(np.linalg.norm(kp - kp[0], axis=1).max())
    if extent > MAX_HAND_EXTENT_M:
        raise _fail(where, "keypoints_m", f"span {extent:.3f} m from the wrist: not metres (millimetres? "
                    "divide by 1000) or not one hand")
    length = bone_length_m(kp)
    if length < MIN_HAND_LENGTH_M:
        raise _fail(where, "keypoints_m", f"give a wrist → middle fingertip length of {length:.4f} m; "
                    "the skeleton is collapsed (all joints at one point?)")


def mirror_y(points: np.ndarray) -> np.ndarray:
    """Points reflected through the x–z plane (y → −y)."""
    return points * np.array([1.0, -1.0, 1.0])


def mirrored_instance(instance: LabelledMesh) -> LabelledMesh:
    """``instance`` reflected through the x–z plane (faces re-wound so normals stay outward)."""
    mesh = trimesh.Trimesh(mirror_y(np.asarray(instance.mesh.vertices)),
                           np.asarray(instance.mesh.faces)[:, ::-1], process=False)
    return LabelledMesh(mesh, instance.face_labels, instance.region_names, instance.category,
                        dict(instance.params, mirrored=True), instance.seed)


def _load_object(obj: Any, base: Path, where: str) -> tuple[LabelledMesh, np.ndarray]:
    """The record's object (object frame) and its mesh's (4, 4) pose in the camera frame (or None)."""
    from grasp_data.mesh_io import MeshFileError, load_labelled_mesh, load_mesh
    from grasp_data.objects import categories, generate
    from grasp_data.transfer import as_labelled

    if not isinstance(obj, dict):
        raise _fail(where, "object", "must be a JSON object with 'mesh' (or 'generated')")
    T = obj.get("T_camera_object")
    T = None if T is None else _matrix(T, (4, 4), where, "object.T_camera_object")
    if T is not None and not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-4):
        raise _fail(where, "object.T_camera_object", "has a rotation block that is not orthonormal")
    category = obj.get("category")
    if category is not None and category not in categories():
        raise _fail(where, "object.category", f"'{category}' is unknown; use one of {', '.join(categories())} "
                    "or leave it out")
    if "generated" in obj:
        gen = obj["generated"]
        if not isinstance(gen, dict) or gen.get("category") not in categories() or not isinstance(gen.get("seed"), int):
            raise _fail(where, "object.generated", f"must be {{'category': one of {', '.join(categories())}, "
                        "'seed': integer[, 'params': {...}]}")
        try:
            return generate(gen["category"], gen["seed"], **dict(gen.get("params") or {})), T
        except (TypeError, ValueError) as exc:
            raise _fail(where, "object.generated", f"cannot be generated ({exc})") from None
    if not isinstance(obj.get("mesh"), str):
        raise _fail(where, "object.mesh", "is missing: give a mesh file path (OBJ/STL/PLY, relative to the record)")
    scale = obj.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not np.isfinite(scale) or scale <= 0:
        raise _fail(where, "object.scale", f"must be a positive number (mesh units → metres), got {scale!r}")
    mesh_path = base / obj["mesh"]
    if not mesh_path.is_file():
        raise _fail(where, "object.mesh", f"file not found: {mesh_path}")
    try:
        if obj.get("labels") is not None:
            instance = load_labelled_mesh(mesh_path, base / str(obj["labels"]), category=category,
                                          scale=float(scale), require_watertight=False)
        else:
            mesh = load_mesh(mesh_path, float(scale))
            instance = as_labelled(mesh) if category is None else _transferred_labels(mesh, category)
    except MeshFileError as exc:
        raise _fail(where, "object.mesh", f"cannot be used: {exc}") from None
    if float(np.max(instance.mesh.extents)) < 0.005:
        raise _fail(where, "object.scale", f"makes the object {np.max(instance.mesh.extents):.2e} m large; "
                    "check the unit")
    return instance, T


def _transferred_labels(mesh: trimesh.Trimesh, category: str) -> LabelledMesh:
    from grasp_data.demonstrations import load_demonstration
    from grasp_data.transfer import transfer_labels

    return transfer_labels(mesh, load_demonstration(category).reference_instance())


def parse_record(data: Any, path: Path, entry: int = 0, in_list: bool = False) -> HumanGrasp:
    """Check one record (already parsed JSON) and bring its hand into the object frame.

    Args:
        data: the record.
        path: its file (mesh paths are relative to its folder; named in errors).
        entry: its position in the file's list.
        in_list: the file holds a list (errors then name the entry).

    Raises:
        HumanRecordError: naming the file, entry and field.
    """
    import hashlib

    where = f"{path}" + (f" entry {entry}" if in_list else "")
    if not isinstance(data, dict):
        raise HumanRecordError(f"{where}: a record must be a JSON object, got {type(data).__name__}")
    if data.get("format") != RECORD_FORMAT:
        raise _fail(where, "format", f"must be '{RECORD_FORMAT}', got {data.get('format')!r}")
    hand = data.get("handedness", "right")
    if hand not in ("right", "left"):
        raise _fail(where, "handedness", f"must be 'right' or 'left', got {hand!r}")
    order = data.get("keypoint_order", "openpose")
    if order not in KEYPOINT_ORDERS:
        raise _fail(where, "keypoint_order", f"must be one of {', '.join(KEYPOINT_ORDERS)}, got {order!r}")
    if "keypoints_m" not in data:
        raise _fail(where, "keypoints_m", "is missing (21 joint positions, metres; MANO pose parameters "
                    "cannot be used without the licensed MANO model: export joint positions)")
    raw = np.asarray(data["keypoints_m"], dtype=object)
    if raw.ndim >= 1 and raw.shape[0] != 21:
        raise _fail(where, "keypoints_m", f"has {raw.shape[0]} keypoints; 21 are needed ({order} order)")
    kp = reorder_keypoints(_matrix(data["keypoints_m"], (21, 3), where, "keypoints_m"), order)
    frame = data.get("frame")
    if frame not in ("camera", "object"):
        raise _fail(where, "frame", f"must be 'camera' or 'object', got {frame!r}")
    instance, T = _load_object(data.get("object"), path.parent, where)
    if frame == "camera":
        if T is None:
            raise _fail(where, "object.T_camera_object", "is needed when frame is 'camera'")
        kp = (kp - T[:3, 3]) @ T[:3, :3]
    _check_hand(kp, where)
    if hand == "left":
        kp, instance = mirror_y(kp), mirrored_instance(instance)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return HumanGrasp(name=path.stem + (f"#{entry}" if in_list else ""), path=path, entry=entry, digest=digest,
                      keypoints_m=kp, instance=instance, handedness=hand, source=str(data.get("source", "")))


def load_records(paths: list[str | Path]) -> list[HumanGrasp]:
    """Read and check every record of the given files (each a record or a list of records).

    Raises:
        HumanRecordError: the first unusable file or record (nothing is returned then).
    """
    out = []
    for p in paths:
        path = Path(p)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise HumanRecordError(f"{path}: record file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HumanRecordError(f"{path}: not a readable JSON file ({exc})") from None
        if isinstance(data, list):
            if not data:
                raise HumanRecordError(f"{path}: the list holds no records")
            out += [parse_record(d, path, i, in_list=True) for i, d in enumerate(data)]
        else:
            out.append(parse_record(data, path))
    return out
