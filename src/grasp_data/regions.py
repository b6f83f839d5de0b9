"""Label registry: the named surface regions of every functional object category.

Every :class:`~grasp_data.labelled_mesh.LabelledMesh` stores one integer label per face; the
integer indexes the category's region tuple below, and label 0 is always ``body`` (plain
surface, no role). The other regions have one of three kinds:

* ``functional`` — a designated finger must touch it for the grasp to *use* the object
  (the drill's trigger, the syringe's plunger pad). CorDex's functionality criterion:
  the designated fingertip within tolerance of this region.
* ``grip`` — where the hand must hold the object (a handle, a bottle neck). Functional in the
  wide sense: stabilising fingers and the thumb go here.
* ``avoid`` — no part of the hand may touch it (drill bit, nozzle, needle, striking face,
  the inside of a mug).

Per category (index = label id):

============  =========================================================================
category      regions
============  =========================================================================
drill         0 body, 1 handle (grip), 2 trigger (functional), 3 bit (avoid)
spray_bottle  0 body, 1 neck (grip), 2 trigger (functional), 3 nozzle (avoid)
hammer        0 body, 1 handle (grip), 2 face (avoid: the striking face)
mug           0 body, 1 handle (grip), 2 interior (avoid)
syringe       0 body, 1 flange (functional: finger rests), 2 plunger (functional: thumb pad),
              3 needle (avoid)
glue_gun      0 body, 1 handle (grip), 2 trigger (functional), 3 nozzle (avoid)
============  =========================================================================

User meshes carry their own region names (see :mod:`grasp_data.mesh_io`); when they name a
category, their names must be this category's.
"""
from __future__ import annotations

from dataclasses import dataclass

#: Label id of plain surface in every category.
BODY_LABEL = 0
#: Region kinds, see the module docstring.
REGION_KINDS = ("body", "functional", "grip", "avoid")


@dataclass(frozen=True)
class Region:
    """One named surface region.

    Attributes:
        name: identifier (lower case, ``_`` separated), unique within its category.
        kind: one of :data:`REGION_KINDS`.
        description: one line for users.
    """

    name: str
    kind: str
    description: str

    def __post_init__(self) -> None:
        if self.kind not in REGION_KINDS:
            raise ValueError(f"region '{self.name}': kind '{self.kind}' is not one of {REGION_KINDS}")


_BODY = Region("body", "body", "plain surface, no role")


@dataclass(frozen=True)
class CategoryRegions:
    """The regions of one category; ``regions[i]`` is label ``i`` and ``regions[0]`` is body."""

    category: str
    regions: tuple[Region, ...]

    def __post_init__(self) -> None:
        if not self.regions or self.regions[0].name != "body":
            raise ValueError(f"category '{self.category}': region 0 must be 'body'")
        names = [r.name for r in self.regions]
        if len(set(names)) != len(names):
            raise ValueError(f"category '{self.category}': duplicate region names in {names}")

    @property
    def names(self) -> tuple[str, ...]:
        """Region names in label order."""
        return tuple(r.name for r in self.regions)

    def label(self, name: str) -> int:
        """Label id of region ``name``; ValueError naming the valid regions otherwise."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"category '{self.category}' has no region '{name}'; "
                             f"its regions are: {', '.join(self.names)}") from None

    def of_kind(self, *kinds: str) -> tuple[str, ...]:
        """Names of the regions whose kind is one of ``kinds``."""
        return tuple(r.name for r in self.regions if r.kind in kinds)


CATEGORY_REGIONS: dict[str, CategoryRegions] = {c.category: c for c in (
    CategoryRegions("drill", (
        _BODY,
        Region("handle", "grip", "pistol grip below the motor housing"),
        Region("trigger", "functional", "trigger at the top front of the grip (index finger)"),
        Region("bit", "avoid", "drill bit in front of the chuck"))),
    CategoryRegions("spray_bottle", (
        _BODY,
        Region("neck", "grip", "bottle neck and cap below the sprayer head"),
        Region("trigger", "functional", "sprayer trigger hanging below the head (index/middle)"),
        Region("nozzle", "avoid", "spray nozzle at the front of the head"))),
    CategoryRegions("hammer", (
        _BODY,
        Region("handle", "grip", "rear part of the handle where the hand holds"),
        Region("face", "avoid", "striking face of the head"))),
    CategoryRegions("mug", (
        _BODY,
        Region("handle", "grip", "handle loop"),
        Region("interior", "avoid", "inside of the cup"))),
    CategoryRegions("syringe", (
        _BODY,
        Region("flange", "functional", "finger flange at the rear of the barrel (index/middle)"),
        Region("plunger", "functional", "thumb pad at the end of the plunger rod"),
        Region("needle", "avoid", "needle and hub"))),
    CategoryRegions("glue_gun", (
        _BODY,
        Region("handle", "grip", "pistol grip"),
        Region("trigger", "functional", "trigger in front of the grip (index finger)"),
        Region("nozzle", "avoid", "hot nozzle at the front"))),
)}


def category_regions(category: str) -> CategoryRegions:
    """The :class:`CategoryRegions` of ``category``; ValueError naming the known categories otherwise."""
    try:
        return CATEGORY_REGIONS[category]
    except KeyError:
        raise ValueError(f"unknown object category '{category}'; known: "
                         f"{', '.join(sorted(CATEGORY_REGIONS))}") from None
