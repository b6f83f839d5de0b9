"""Trigger spray bottle standing upright: bottle, shoulder, neck, sprayer head reaching
forward (+x) with the nozzle at its front and the trigger hanging below it.

Regions: body, neck (grip), trigger (functional), nozzle (avoid). Sizes in metres.
"""
from __future__ import annotations

from typing import Any

from grasp_data.objects.parts import Part, ParamRange, box, rod

#: Parameter ranges (uniform), metres / choices.
SPACE: dict[str, ParamRange] = {
    "bottle_height_m": (0.11, 0.20),
    "bottle_radius_m": (0.030, 0.045),   # half size along y
    "bottle_depth_ratio": (0.65, 1.0),   # half size along x / along y
    "bottle_shape": ("round", "rounded_box"),
    "shoulder_height_m": (0.015, 0.035),
    "neck_radius_m": (0.012, 0.018),
    "neck_height_m": (0.025, 0.045),
    "head_length_m": (0.06, 0.09),       # along x
    "head_height_m": (0.028, 0.042),
    "head_width_m": (0.024, 0.034),
    "nozzle_radius_m": (0.005, 0.008),
    "nozzle_length_m": (0.008, 0.018),
    "trigger_length_m": (0.035, 0.055),  # how far it hangs below the head
    "trigger_depth_m": (0.010, 0.016),
    "trigger_width_m": (0.012, 0.02),
}


def build(p: dict[str, Any], label: dict[str, int]) -> list[Part]:
    """The spray bottle's parts for parameters ``p`` (a full draw from :data:`SPACE`)."""
    up_y = (0.0, 1.0, 0.0)  # vertical rods: cross-section u = x, v = y
    h, ry = p["bottle_height_m"], p["bottle_radius_m"]
    rx = ry * p["bottle_depth_ratio"]
    exponent = 2.0 if p["bottle_shape"] == "round" else 4.0
    bottle = rod([0, 0, 0], [0, 0, h], rx, ry, exponent, up=up_y)
    rn = p["neck_radius_m"]
    top = h + p["shoulder_height_m"]
    shoulder = rod([0, 0, h - 0.001], [0, 0, top], rx, ry, exponent, end_scale=rn / min(rx, ry), up=up_y)
    neck_top = top + p["neck_height_m"]
    neck = rod([0, 0, top - 0.002], [0, 0, neck_top], rn, rn, up=up_y)
    hl, hh = p["head_length_m"], p["head_height_m"]
    front = hl - 0.01
    head_z = neck_top - 0.002 + hh / 2
    head = rod([-0.01, 0, head_z], [front, 0, head_z], p["head_width_m"] / 2, hh / 2, 4.0)
    nr = p["nozzle_radius_m"]
    nozzle = rod([front - 0.002, 0, head_z], [front + p["nozzle_length_m"], 0, head_z], nr, nr, end_scale=0.85)
    td, tl = p["trigger_depth_m"], p["trigger_length_m"]
    head_bottom = head_z - hh / 2
    trigger = box([front - td / 2 - 0.004, 0.0, head_bottom - tl / 2 + 0.002], [td, p["trigger_width_m"], tl + 0.004])
    return [Part(bottle, label["body"]), Part(shoulder, label["body"]), Part(neck, label["neck"]),
            Part(head, label["body"]), Part(nozzle, label["nozzle"]), Part(trigger, label["trigger"])]
