"""Syringe lying on the table along x: needle toward +x, barrel, finger flange at the rear of
the barrel, plunger rod drawn out behind it and the thumb pad at its end.

Regions: body, flange (functional: index/middle rest), plunger (functional: thumb pad),
needle (avoid: needle and hub tip). Sizes in metres.
"""
from __future__ import annotations

from typing import Any

from grasp_data.objects.parts import Part, ParamRange, rod

#: Parameter ranges (uniform), metres.
SPACE: dict[str, ParamRange] = {
    "barrel_length_m": (0.05, 0.10),
    "barrel_radius_m": (0.006, 0.013),
    "flange_half_span_m": (0.013, 0.022),  # along y
    "flange_thickness_m": (0.002, 0.004),
    "plunger_length_m": (0.03, 0.08),      # rod drawn out behind the flange
    "rod_fraction": (0.45, 0.75),          # rod half size / barrel radius
    "pad_ratio": (0.9, 1.4),              # thumb pad radius / barrel radius
    "pad_thickness_m": (0.002, 0.004),
    "hub_length_m": (0.006, 0.012),
    "needle_length_m": (0.012, 0.04),
    "needle_radius_m": (0.0006, 0.0012),
}


def build(p: dict[str, Any], label: dict[str, int]) -> list[Part]:
    """The syringe's parts for parameters ``p`` (a full draw from :data:`SPACE`)."""
    lb, rb = p["barrel_length_m"], p["barrel_radius_m"]
    barrel = rod([0, 0, 0], [lb, 0, 0], rb, rb)
    ft = p["flange_thickness_m"]
    flange = rod([-ft, 0, 0], [0.001, 0, 0], p["flange_half_span_m"] + rb, 1.15 * rb, 4.0)
    rr = p["rod_fraction"] * rb
    rod_end = -ft - p["plunger_length_m"]
    plunger_rod = rod([-ft + 0.001, 0, 0], [rod_end, 0, 0], rr, rr, 4.0)
    pad = rod([rod_end + 0.001, 0, 0], [rod_end - p["pad_thickness_m"], 0, 0], p["pad_ratio"] * rb,
              p["pad_ratio"] * rb)
    hub_end = lb + p["hub_length_m"]
    hub = rod([lb - 0.001, 0, 0], [hub_end, 0, 0], 0.8 * rb, 0.8 * rb, end_scale=0.35)
    nr = p["needle_radius_m"]
    needle = rod([hub_end - 0.002, 0, 0], [hub_end + p["needle_length_m"], 0, 0], nr, nr, sections=8)
    return [Part(barrel, label["body"]), Part(flange, label["flange"]), Part(plunger_rod, label["body"]),
            Part(pad, label["plunger"]), Part(hub, label["body"]), Part(needle, label["needle"])]
