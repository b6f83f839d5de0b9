"""The data engine's on-disk dataset: versioned, one shard per object, atomic writes, resumable.

Layout of a dataset folder::

    DIR/index.json                       # the index (below); rewritten atomically after every shard
    DIR/shards/<category>_<index:05d>.npz

``index.json``::

    {"format": "functional_grasp.dataset", "schema_version": 1,
     "settings": {...},                  # everything that determines the shards (hand, seeds,
                                         # batch sizes, protocol, render size, ...); a resumed run
                                         # must use the same settings
     "shards": {"drill_00003": {"file": "shards/drill_00003.npz", "sha256": "...", "bytes": N,
                                "category": "drill", "index": 3, "seed": S,
                                "grasps_tried": G, "grasps_kept": K, "views": V}}}

One shard (``numpy.savez_compressed``; all arrays, no pickled objects; read with
:func:`load_shard`):

==========================  =================  ==================================================
key                         shape, dtype       meaning
==========================  =================  ==================================================
``meta``                    () str            JSON: schema_version, category, index, seed, params
                                               (generator parameters: ``generate(category, seed,
                                               **params)`` rebuilds the mesh), region_names,
                                               region_kinds, hand, joint_names, directions,
                                               designated (finger → functional region),
                                               adaptation_time_s, validation_time_s
``mesh_vertices``           (V, 3) float64     object frame, metres
``mesh_faces``              (F, 3) int32       triangles
``face_labels``             (F,) int16         index into ``region_names``
``grasp_root_pose``         (G, 4, 4) float64  hand root (``hand.root_body``) in the object frame
``grasp_q``                 (G, J) float64     joints, radians, ``joint_names`` order (by name!)
``grasp_energy``            (G,) float64       final adaptation energy
``grasp_kept``              (G,) bool          held and functional
``grasp_held``              (G,) bool          passed the disturbance trials
``grasp_functional``        (G,) bool          passed the functional criterion
``grasp_reason``            (G,) str           ``ok`` or why it failed (validation.REASONS)
``grasp_max_displacement_m``(G,) float64       NaN if not simulated
``grasp_displacement_m``    (G, 6) float64     per direction (``directions`` order)
``grasp_initial_penetration_m`` (G,) float64   at the start pose
``render_rgb``              (N, H, W, 3) uint8 views (N may be 0)
``render_depth``            (N, H, W) float32  metres along the optical axis, NaN = no return
``render_mask``             (N, H, W) bool     object pixels
``render_K``                (N, 3, 3) float64  camera matrix, pixels
``render_T_world_camera``   (N, 4, 4) float64  optical frame (z forward, x right, y down)
``render_T_world_object``   (N, 4, 4) float64  object frame in the render world
==========================  =================  ==================================================

Writes: a shard goes to a temporary file in ``shards/`` and is renamed into place, then the
index is rewritten the same way; a crash loses at most the object in progress. A shard on disk
but missing from the index (a crash between the two renames) is checked and adopted on resume.
A shard whose checksum or content is wrong raises :class:`CorruptShardError` naming its path —
it is never silently skipped or overwritten.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: ``format`` value of ``index.json``.
DATASET_FORMAT = "functional_grasp.dataset"
#: Bump when a field changes meaning; readers refuse other versions.
SCHEMA_VERSION = 1
INDEX_FILE = "index.json"
SHARDS_DIR = "shards"
#: Keys every shard holds.
SHARD_KEYS = ("meta", "mesh_vertices", "mesh_faces", "face_labels", "grasp_root_pose", "grasp_q",
              "grasp_energy", "grasp_kept", "grasp_held", "grasp_functional", "grasp_reason",
              "grasp_max_displacement_m", "grasp_displacement_m", "grasp_initial_penetration_m",
              "render_rgb", "render_depth", "render_mask", "render_K", "render_T_world_camera",
              "render_T_world_object")


class DatasetError(ValueError):
    """The dataset folder cannot be used as asked; the message says why and what to do."""


class CorruptShardError(DatasetError):
    """A shard file is damaged or does not match the index.

    Attributes:
        path: the shard file.
    """

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"corrupt shard {path}: {why}; delete it (and its entry in "
                         f"{path.parent.parent / INDEX_FILE}) to regenerate that object")
        self.path = path


def shard_name(category: str, index: int) -> str:
    """File stem of an object's shard: ``<category>_<index:05d>``."""
    return f"{category}_{index:05d}"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_shard(arrays: dict[str, Any]) -> bytes:
    """The ``.npz`` bytes of one shard; ValueError naming missing or unexpected keys."""
    missing, extra = set(SHARD_KEYS) - set(arrays), set(arrays) - set(SHARD_KEYS)
    if missing or extra:
        raise ValueError(f"shard keys: missing {sorted(missing)}, unexpected {sorted(extra)}")
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(arrays[k]) for k in SHARD_KEYS})
    return buf.getvalue()


def load_shard(path: str | Path) -> dict[str, Any]:
    """Read one shard: its arrays plus ``meta`` decoded from JSON.

    Raises:
        CorruptShardError: unreadable, truncated, missing keys, or a different schema version.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CorruptShardError(path, f"not a readable .npz ({type(exc).__name__}: {exc})") from None
    missing = set(SHARD_KEYS) - set(data)
    if missing:
        raise CorruptShardError(path, f"missing arrays {sorted(missing)}")
    try:
        data["meta"] = json.loads(str(data["meta"]))
    except ValueError as exc:
        raise CorruptShardError(path, f"meta is not JSON ({exc})") from None
    if data["meta"].get("schema_version") != SCHEMA_VERSION:
        raise CorruptShardError(path, f"schema_version {data['meta'].get('schema_version')} is not {SCHEMA_VERSION}")
    return data


@dataclass
class DatasetWriter:
    """Writes shards into a dataset folder and keeps its index (module docstring).

    Args:
        root: the dataset folder (created if missing).
        settings: JSON-ready dict of everything that determines the shards.

    Raises:
        DatasetError: ``root`` holds a dataset of another format/version or other settings.
    """

    root: Path
    settings: dict[str, Any]

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.index_path = self.root / INDEX_FILE
        self.settings = json.loads(json.dumps(self.settings))
        if self.index_path.is_file():
            try:
                index = json.loads(self.index_path.read_text())
            except ValueError as exc:
                raise DatasetError(f"{self.index_path} is not JSON ({exc}); move the folder away or "
                                   "restore the file") from None
            if index.get("format") != DATASET_FORMAT or index.get("schema_version") != SCHEMA_VERSION:
                raise DatasetError(f"{self.index_path}: format {index.get('format')} v{index.get('schema_version')}; "
                                   f"this version writes {DATASET_FORMAT} v{SCHEMA_VERSION}: use a new --out folder")
            if index.get("settings") != self.settings:
                diff = sorted(k for k in set(index.get("settings", {})) | set(self.settings)
                              if index.get("settings", {}).get(k) != self.settings.get(k))
                raise DatasetError(f"{self.root} was generated with other settings (differs in: "
                                   f"{', '.join(diff)}); resume with the same options or use a new --out folder")
            self.shards: dict[str, dict] = dict(index.get("shards", {}))
        else:
            self.shards = {}

    def shard_path(self, name: str) -> Path:
        return self.root / SHARDS_DIR / f"{name}.npz"

    def done(self, name: str) -> bool:
        """True if shard ``name`` is complete on disk (verified: checksum against the index, or
        for a shard the index does not list yet, readable — it is then adopted into the index).

        Raises:
            CorruptShardError: the shard exists but is damaged.
        """
        path = self.shard_path(name)
        entry = self.shards.get(name)
        if entry is not None:
            if not path.is_file():
                raise CorruptShardError(path, "listed in the index but missing")
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != entry["sha256"]:
                raise CorruptShardError(path, f"sha256 {digest[:12]}… does not match the index ({entry['sha256'][:12]}…)")
            return True
        if path.is_file():
            data = load_shard(path)
            self._record(name, path, data["meta"], data)
            return True
        return False

    def write(self, name: str, arrays: dict[str, Any]) -> Path:
        """Write shard ``name`` atomically, then the index; returns the shard path."""
        path = self.shard_path(name)
        meta = arrays["meta"]
        arrays = dict(arrays, meta=json.dumps(meta, sort_keys=True))
        _write_atomic(path, encode_shard(arrays))
        self._record(name, path, meta, arrays)
        return path

    def _record(self, name: str, path: Path, meta: dict, arrays: dict) -> None:
        self.shards[name] = {
            "file": f"{SHARDS_DIR}/{path.name}", "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "bytes": path.stat().st_size, "category": meta["category"], "index": meta["index"],
            "seed": meta["seed"], "grasps_tried": int(len(arrays["grasp_kept"])),
            "grasps_kept": int(np.sum(arrays["grasp_kept"])), "views": int(len(arrays["render_rgb"]))}
        self.flush()

    def flush(self) -> None:
        """Rewrite the index atomically."""
        index = {"format": DATASET_FORMAT, "schema_version": SCHEMA_VERSION, "settings": self.settings,
                 "shards": dict(sorted(self.shards.items()))}
        _write_atomic(self.index_path, (json.dumps(index, indent=1) + "\n").encode())


def verify_dataset(root: str | Path) -> list[CorruptShardError]:
    """Check every shard of a dataset (index checksums, readability); the problems, each with its path.

    Raises:
        DatasetError: no readable index in ``root``.
    """
    root = Path(root)
    try:
        index = json.loads((root / INDEX_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{root / INDEX_FILE} is missing or not JSON ({exc}); is {root} a dataset folder?") from None
    problems = []
    for name, entry in index.get("shards", {}).items():
        path = root / entry["file"]
        try:
            if not path.is_file():
                raise CorruptShardError(path, "listed in the index but missing")
            if hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
                raise CorruptShardError(path, "sha256 does not match the index")
            load_shard(path)
        except CorruptShardError as exc:
            problems.append(exc)
    return problems
