"""Cordless drill standing on its battery: motor housing along +x, chuck and bit in front,
pistol grip leaning back, trigger at the top front of the grip.

Regions: body, handle (grip), trigger (functional), bit (avoid). Sizes in metres.
"""
from __future__ import annotations

from typing import Any

from grasp_data.objects.parts import Part, ParamRange, box, rod
from grasp_data.objects.pistol import build_pistol

#: Parameter ranges (uniform), metres / radians / choices.
SPACE: dict[str, ParamRange] = {
    "battery_length_m": (0.075, 0.11),   # along x
    "battery_width_m": (0.055, 0.08),    # along y
    "battery_height_m": (0.035, 0.06),
    "grip_length_m": (0.085, 0.13),      # battery top to housing, along the grip axis
    "grip_depth_m": (0.030, 0.045),      # along x
    "grip_width_m": (0.026, 0.036),      # along y
    "grip_lean_rad": (0.05, 0.35),       # grip axis tilt back from vertical
    "grip_shape": ("oval", "rounded_box"),
    "housing_length_m": (0.13, 0.21),
    "housing_radius_m": (0.024, 0.038),
    "housing_shape": ("round", "rounded_box"),
    "chuck_length_m": (0.03, 0.05),
    "chuck_radius_m": (0.013, 0.021),
    "bit_length_m": (0.04, 0.10),
    "bit_radius_m": (0.0025, 0.005),
    "trigger_height_m": (0.018, 0.03),
    "trigger_depth_m": (0.010, 0.016),
}


def build(p: dict[str, Any], label: dict[str, int]) -> list[Part]:
    """The drill's parts for parameters ``p`` (a full draw from :data:`SPACE`)."""
    hb = p["battery_height_m"]
    battery = box([0.0, 0.0, hb / 2], [p["battery_length_m"], p["battery_width_m"], hb])
    r = p["housing_radius_m"]
    pistol = build_pistol(p, label, 0.8 * hb, r, r, p["housing_shape"])
    z, front = pistol.axis_z, pistol.front_x
    chuck_end = front + p["chuck_length_m"]
    chuck = rod([front - 0.005, 0, z], [chuck_end, 0, z], p["chuck_radius_m"], p["chuck_radius_m"],
                end_scale=0.8)
    bit = rod([chuck_end - 0.003, 0, z], [chuck_end + p["bit_length_m"], 0, z],
              p["bit_radius_m"], p["bit_radius_m"], sections=12)
    return [Part(battery, label["body"]), *pistol.parts, Part(chuck, label["body"]), Part(bit, label["bit"])]
