"""One demonstration per category: fingertip contacts on a reference instance.

File format (``config/demonstrations/<category>.yaml``)::

    format: functional_grasp.demonstration/1
    category: drill
    reference:                 # the instance the contacts were taken on
      seed: 0                  # generator seed
      params: {...}            # the full parameter set: generate(category, seed, **params)
    contacts:                  # one entry per finger (thumb, index, middle, ring, little; a subset)
      - finger: index
        region: trigger        # the region of grasp_data.regions this finger must touch
        point_m: [x, y, z]     # contact point on the reference surface, object frame, metres
        normal: [nx, ny, nz]   # outward unit surface normal there

A human demonstration (hand keypoints on a scanned object) maps onto this format: the
fingertip positions' nearest points on the object surface, with their normals and labels.

The demonstrations shipped in ``config/demonstrations/`` were authored by
:func:`author_demonstration` from the per-category :data:`RECIPES` (``python -m
grasp_data.demonstrations`` rewrites them): each finger goes to the point of its region that
faces a given direction and sits at given fractions of the region's extent — e.g. the index
finger on the front of the drill trigger, the thumb on the left side of the grip (right hand).
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.spatial import cKDTree

from grasp_data.labelled_mesh import LabelledMesh
from grasp_data.mesh_io import write_atomic
from grasp_data.objects import generate
from grasp_data.regions import category_regions

#: Value of the file's ``format`` key.
DEMO_FORMAT = "functional_grasp.demonstration/1"
#: Finger names, thumb to little finger.
FINGERS = ("thumb", "index", "middle", "ring", "little")
#: A demonstrated contact may lie at most this far from the reference surface, metres.
SURFACE_TOLERANCE_M = 0.002
#: Surface samples used to author and check contacts.
SURFACE_SAMPLES = 40000


class DemonstrationError(ValueError):
    """A demonstration file is missing or wrong; the message names the file and the problem."""


@dataclass(frozen=True)
class FingerContact:
    """One fingertip contact.

    Attributes:
        finger: one of :data:`FINGERS`.
        region: region name the finger touches.
        point_m: ``(3,)`` metres, object frame.
        normal: ``(3,)`` outward unit surface normal.
    """

    finger: str
    region: str
    point_m: np.ndarray
    normal: np.ndarray


@dataclass(frozen=True)
class Demonstration:
    """Fingertip contacts on the reference instance of ``category``."""

    category: str
    seed: int
    params: dict[str, Any]
    contacts: tuple[FingerContact, ...]

    def reference_instance(self) -> LabelledMesh:
        """The instance the contacts were taken on (regenerated from seed and parameters)."""
        return generate(self.category, self.seed, **self.params)

    def contact(self, finger: str) -> FingerContact:
        """The contact of ``finger``; KeyError naming the demonstrated fingers otherwise."""
        for c in self.contacts:
            if c.finger == finger:
                return c
        raise KeyError(f"the {self.category} demonstration has no {finger} contact; it has "
                       f"{', '.join(c.finger for c in self.contacts)}")

    def to_dict(self) -> dict[str, Any]:
        """The file content as plain Python values."""
        return {"format": DEMO_FORMAT, "category": self.category,
                "reference": {"seed": self.seed, "params": dict(self.params)},
                "contacts": [{"finger": c.finger, "region": c.region,
                              "point_m": [round(float(v), 6) for v in c.point_m],
                              "normal": [round(float(v), 5) for v in c.normal]} for c in self.contacts]}

    def save(self, path: str | Path) -> Path:
        """Write the YAML file atomically; returns its path."""
        header = (f"# Demonstration for '{self.category}': fingertip contacts on the reference instance.\n"
                  "# Format: see grasp_data/demonstrations.py. Written by `python -m grasp_data.demonstrations`.\n")
        text = yaml.dump(self.to_dict(), Dumper=_FlowListDumper, sort_keys=False)
        write_atomic(Path(path), (header + text).encode())
        return Path(path)


class _FlowListDumper(yaml.SafeDumper):
    """Writes number lists inline (``point_m: [x, y, z]``), everything else as blocks."""


_FlowListDumper.add_representer(list, lambda dumper, data: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", data, flow_style=all(isinstance(v, (int, float)) for v in data)))


def demonstrations_dir() -> Path:
    """``config/demonstrations`` of the source tree or the installed share folder."""
    from grasp_common.rosenv import config_dir

    return config_dir() / "demonstrations"


def _vector(value: Any, what: str, path: Path) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.shape != (3,) or not np.isfinite(arr).all():
        raise DemonstrationError(f"{path}: {what} must be 3 finite numbers, got {value!r}")
    return arr


def load_demonstration(category_or_path: str | Path) -> Demonstration:
    """Read a demonstration: a category name (from :func:`demonstrations_dir`) or a YAML path.

    Raises:
        DemonstrationError: missing file, wrong format, unknown category / finger / region,
            a malformed vector, or a duplicate finger.
    """
    text = str(category_or_path)
    path = Path(text) if text.endswith((".yaml", ".yml")) else demonstrations_dir() / f"{text}.yaml"
    if not path.is_file():
        raise DemonstrationError(f"demonstration file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DemonstrationError(f"{path}: not readable YAML ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != DEMO_FORMAT:
        raise DemonstrationError(f"{path}: 'format' must be '{DEMO_FORMAT}'")
    try:
        regions = category_regions(data.get("category"))
        ref = data["reference"]
        seed, params = int(ref["seed"]), dict(ref.get("params") or {})
        contacts, seen = [], set()
        for entry in data["contacts"]:
            finger, region = entry["finger"], entry["region"]
            if finger not in FINGERS:
                raise ValueError(f"unknown finger '{finger}'; use {', '.join(FINGERS)}")
            if finger in seen:
                raise ValueError(f"finger '{finger}' appears twice")
            seen.add(finger)
            regions.label(region)
            normal = _vector(entry["normal"], f"{finger} normal", path)
            if abs(np.linalg.norm(normal) - 1.0) > 1e-3:
                raise ValueError(f"{finger} normal must have unit length, has {np.linalg.norm(normal):.4f}")
            contacts.append(FingerContact(finger, region, _vector(entry["point_m"], f"{finger} point_m", path),
                                          normal))
    except (KeyError, TypeError) as exc:
        raise DemonstrationError(f"{path}: missing or malformed entry ({exc!r})") from None
    except ValueError as exc:
        raise DemonstrationError(f"{path}: {exc}") from None
    if not contacts:
        raise DemonstrationError(f"{path}: no contacts")
    return Demonstration(regions.category, seed, params, tuple(contacts))


def check_on_reference(demo: Demonstration, reference: LabelledMesh | None = None) -> None:
    """Raise DemonstrationError unless every contact lies within :data:`SURFACE_TOLERANCE_M`
    of its region on the reference instance (guards against generator changes)."""
    reference = reference or demo.reference_instance()
    points, _, labels = reference.sample_surface(SURFACE_SAMPLES, seed=0)
    for c in demo.contacts:
        own = points[labels == reference.label(c.region)]
        gap = float(cKDTree(own).query(c.point_m)[0]) if len(own) else math.inf
        if gap > SURFACE_TOLERANCE_M + 0.003:  # + sample spacing (~3 mm at 40k samples)
            raise DemonstrationError(
                f"{demo.category} demonstration: the {c.finger} contact is {gap * 1000:.1f} mm from region "
                f"'{c.region}' of the reference instance; the generator changed — re-author it with "
                "`python -m grasp_data.demonstrations`")


@dataclass(frozen=True)
class FingerRecipe:
    """Where a finger goes when authoring a demonstration.

    Attributes:
        finger: one of :data:`FINGERS`.
        region: region to touch.
        facing: ``(3,)`` the surface there should face this way (object frame).
        fractions: per axis x, y, z a fraction 0..1 of the extent of the region's surface that
            faces ``facing``, or None for "any".
    """

    finger: str
    region: str
    facing: tuple[float, float, float]
    fractions: tuple[float | None, float | None, float | None]


_X, _Y, _Z, _MX, _MY, _MZ = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (-1.0, 0.0, 0.0), (0.0, -1.0, 0.0),
                             (0.0, 0.0, -1.0))
#: Authoring recipes per category (right hand; +y is the object's left side).
RECIPES: dict[str, tuple[FingerRecipe, ...]] = {
    "drill": (FingerRecipe("index", "trigger", _X, (None, 0.5, 0.5)),
              FingerRecipe("middle", "handle", _X, (None, 0.5, 0.55)),
              FingerRecipe("ring", "handle", _X, (None, 0.5, 0.35)),
              FingerRecipe("little", "handle", _X, (None, 0.5, 0.15)),
              FingerRecipe("thumb", "handle", _Y, (None, None, 0.85))),
    # the index alone pulls the trigger (near its top); middle and ring wrap the neck against the
    # thumb. OYMotion kept 21/96 (6 bottles of seed 7) vs 3/96 with index + middle on the trigger.
    "spray_bottle": (FingerRecipe("index", "trigger", _X, (None, 0.5, 0.85)),
                     FingerRecipe("middle", "neck", _MY, (None, None, 0.6)),
                     FingerRecipe("ring", "neck", _MY, (None, None, 0.2)),
                     FingerRecipe("thumb", "neck", _Y, (None, None, 0.6))),
    "hammer": (FingerRecipe("index", "handle", _MY, (0.85, None, 0.5)),
               FingerRecipe("middle", "handle", _MY, (0.6, None, 0.5)),
               FingerRecipe("ring", "handle", _MY, (0.4, None, 0.5)),
               FingerRecipe("little", "handle", _MY, (0.2, None, 0.5)),
               FingerRecipe("thumb", "handle", _Y, (0.75, None, 0.5))),
    # the index hooks through the handle loop (its inner side), the thumb presses on top of the
    # handle and the middle finger supports it from below: opposed pairs, so closing squeezes the
    # handle instead of pushing the cup away. Index and middle on the loop's outer side (the
    # earlier recipe) kept 35/512 Shadow and 36/192 OYMotion grasps on 16 / 6 mugs; this one 63/512
    # and 49/192 (`no_contact`, the cup flicked out while closing, 298 → 188 of 512 Shadow grasps).
    "mug": (FingerRecipe("thumb", "handle", _Z, (0.5, 0.5, 1.0)),
            FingerRecipe("index", "handle", _MX, (None, 0.5, 0.6)),
            FingerRecipe("middle", "handle", _MZ, (None, 0.5, 0.0))),
    "syringe": (FingerRecipe("thumb", "plunger", _MX, (None, 0.5, 0.5)),
                FingerRecipe("index", "flange", _X, (None, 0.9, 0.5)),
                FingerRecipe("middle", "flange", _X, (None, 0.1, 0.5))),
    "glue_gun": (FingerRecipe("index", "trigger", _X, (None, 0.5, 0.72)),
                 FingerRecipe("middle", "trigger", _X, (None, 0.5, 0.28)),
                 FingerRecipe("ring", "handle", _X, (None, 0.5, 0.45)),
                 FingerRecipe("little", "handle", _X, (None, 0.5, 0.2)),
                 FingerRecipe("thumb", "handle", _Y, (None, None, 0.85))),
}
#: Generator seed of every shipped reference instance.
REFERENCE_SEED = 0
#: Cosine of the largest angle between a chosen point's normal and its recipe's ``facing``.
FACING_MIN_COS = math.cos(math.radians(40.0))


def author_demonstration(category: str, seed: int = REFERENCE_SEED,
                         recipes: Sequence[FingerRecipe] | None = None) -> Demonstration:
    """Choose each finger's contact on the reference instance from its recipe (deterministic)."""
    instance = generate(category, seed)
    points, normals, labels = instance.sample_surface(SURFACE_SAMPLES, seed=0)
    contacts = []
    for r in recipes if recipes is not None else RECIPES[category]:
        facing = np.asarray(r.facing) / np.linalg.norm(r.facing)
        ok = (labels == instance.label(r.region)) & (normals @ facing >= FACING_MIN_COS)
        if not ok.any():
            raise ValueError(f"{category}: no surface of region '{r.region}' faces {r.facing}")
        pts = points[ok]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        cost = np.zeros(len(pts))
        for axis, frac in enumerate(r.fractions):
            if frac is not None:
                cost += (pts[:, axis] - (lo[axis] + frac * (hi[axis] - lo[axis]))) ** 2
        best = int(np.argmin(cost))
        contacts.append(FingerContact(r.finger, r.region, pts[best], normals[ok][best]))
    return Demonstration(category, int(seed), dict(instance.params), tuple(contacts))


def main(argv: Sequence[str] | None = None) -> int:
    """Re-author the shipped demonstrations: ``python -m grasp_data.demonstrations [--out DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder (default: config/demonstrations)")
    args = parser.parse_args(argv)
    out = args.out or demonstrations_dir()
    for category in RECIPES:
        path = author_demonstration(category).save(out / f"{category}.yaml")
        print(f"wrote {path}")  # noqa: T201 - developer tool output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
