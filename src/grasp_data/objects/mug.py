"""Mug standing upright, open at the top, handle loop on the +x side.

Regions: body, handle (grip), interior (avoid). Sizes in metres.
"""
from __future__ import annotations

from typing import Any

from grasp_data.objects.parts import Part, ParamRange, loop, rod

#: Parameter ranges (uniform), metres.
SPACE: dict[str, ParamRange] = {
    "height_m": (0.075, 0.12),
    "radius_m": (0.033, 0.048),          # outer radius at the bottom
    "flare": (1.0, 1.18),                # top radius / bottom radius
    "wall_m": (0.004, 0.007),
    "bottom_m": (0.006, 0.012),          # floor thickness
    "handle_reach_m": (0.018, 0.03),     # horizontal radius of the handle loop
    "handle_span": (0.55, 0.8),          # vertical loop radius / (height / 2)
    "handle_tube_m": (0.005, 0.009),
    "handle_height": (0.42, 0.58),       # loop centre height / mug height
}


def build(p: dict[str, Any], label: dict[str, int]) -> list[Part]:
    """The mug's parts for parameters ``p`` (a full draw from :data:`SPACE`)."""
    h, r, flare, wall = p["height_m"], p["radius_m"], p["flare"], p["wall_m"]
    up_y = (0.0, 1.0, 0.0)
    outer = rod([0, 0, 0], [0, 0, h], r, r, end_scale=flare, up=up_y, sections=48)
    ri = r - wall
    cut_top = h + 0.01
    inner_top_r = r * (1 + (flare - 1) * cut_top / h) - wall
    inner = rod([0, 0, p["bottom_m"]], [0, 0, cut_top], ri, ri, end_scale=inner_top_r / ri, up=up_y,
                sections=48)
    tube = p["handle_tube_m"]
    zc = p["handle_height"] * h
    rz = min(p["handle_span"] * h / 2, min(zc, h - zc) - tube - 0.004)
    wall_x = r * (1 + (flare - 1) * zc / h)
    reach = p["handle_reach_m"]
    handle = loop([wall_x + 0.7 * reach, 0.0, zc], reach, rz, tube)
    return [Part(outer, label["body"]), Part(handle, label["handle"]), Part(inner, label["interior"], subtract=True)]
