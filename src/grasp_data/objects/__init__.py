"""Parametric generators of functional objects: many diverse, labelled, watertight instances.

    from grasp_data.objects import generate
    drill = generate("drill", seed=3)                       # all parameters drawn from seed 3
    long = generate("drill", seed=3, bit_length_m=0.1)      # same draw, one parameter fixed

Each category module (``drill``, ``spray_bottle``, ``hammer``, ``mug``, ``syringe``,
``glue_gun``) documents its shape and declares ``SPACE``: every parameter with its range
(uniform ``(low, high)`` in metres / radians, or a tuple of shape choices). Parts are convex
solids unioned by ``manifold3d``; each face carries the label of the part it came from (see
:mod:`grasp_data.regions`). The result follows the object frame convention of
:mod:`grasp_data.labelled_mesh` (z up, resting on z = 0, x–y centred, +x to the working end).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from grasp_data.labelled_mesh import LabelledMesh, MeshValidationError
from grasp_data.objects import drill, glue_gun, hammer, mug, spray_bottle, syringe
from grasp_data.objects.parts import ParamRange, Part, compose, rest_on_ground, sample_params
from grasp_data.regions import category_regions

#: Plausible overall size of a generated instance: longest bounding-box side, metres.
PLAUSIBLE_EXTENT_M = (0.06, 0.45)


@dataclass(frozen=True)
class Generator:
    """One category's generator: its parameter space and the function that builds the parts."""

    category: str
    space: Mapping[str, ParamRange]
    build: Callable[[dict[str, Any], dict[str, int]], list[Part]]


GENERATORS: dict[str, Generator] = {m.__name__.rsplit(".", 1)[1]: Generator(
    m.__name__.rsplit(".", 1)[1], MappingProxyType(m.SPACE), m.build)
    for m in (drill, spray_bottle, hammer, mug, syringe, glue_gun)}


def categories() -> tuple[str, ...]:
    """Names of the categories that have a generator."""
    return tuple(GENERATORS)


def generate(category: str, seed: int | np.random.Generator = 0, **params: Any) -> LabelledMesh:
    """One labelled, watertight instance of ``category``.

    Args:
        category: one of :func:`categories`.
        seed: integer seed (recorded on the result) or a generator.
        **params: parameter overrides, each inside its range in the category's ``SPACE``.

    Returns:
        The instance; ``params`` holds the full parameter set, so
        ``generate(category, seed, **instance.params)`` rebuilds it exactly.

    Raises:
        ValueError: unknown category or parameter, or a parameter outside its range.
        MeshValidationError: the parts did not make one closed solid with every region
            (a generator bug; the message names category, seed and parameters).
    """
    regions = category_regions(category)
    if category not in GENERATORS:
        raise ValueError(f"category '{category}' has regions but no generator; generators exist for "
                         f"{', '.join(GENERATORS)}")
    gen = GENERATORS[category]
    rng = np.random.default_rng(seed)
    drawn = sample_params(gen.space, rng, params, category)
    label = {name: i for i, name in enumerate(regions.names)}
    mesh, face_labels = compose(gen.build(drawn, label))
    rest_on_ground(mesh)
    instance = LabelledMesh(mesh, face_labels, regions.names, category=category, params=drawn,
                            seed=int(seed) if isinstance(seed, (int, np.integer)) else None)
    try:
        instance.validate()
        pieces = mesh.body_count
        if pieces != 1:
            raise MeshValidationError(f"{pieces} disconnected pieces instead of one solid")
        extent = float(mesh.extents.max())
        if not PLAUSIBLE_EXTENT_M[0] <= extent <= PLAUSIBLE_EXTENT_M[1]:
            raise MeshValidationError(f"longest side {extent:.3f} m is outside {PLAUSIBLE_EXTENT_M} m")
    except MeshValidationError as exc:
        raise MeshValidationError(f"generator '{category}' (seed {seed}, params {drawn}) made a bad "
                                  f"instance: {exc}") from None
    return instance
