"""Hot-glue gun standing on a foot under its grip: boxy housing along +x, tapered nozzle in
front, glue stick out of the back, trigger in front of the grip.

Regions: body, handle (grip), trigger (functional), nozzle (avoid). Sizes in metres.
"""
from __future__ import annotations

from typing import Any

from grasp_data.objects.parts import Part, ParamRange, box, rod
from grasp_data.objects.pistol import build_pistol

#: Parameter ranges (uniform), metres / radians / choices.
SPACE: dict[str, ParamRange] = {
    "foot_length_m": (0.04, 0.065),      # along x
    "foot_height_m": (0.006, 0.014),
    "grip_length_m": (0.075, 0.11),
    "grip_depth_m": (0.028, 0.042),
    "grip_width_m": (0.022, 0.032),
    "grip_lean_rad": (0.15, 0.45),
    "grip_shape": ("oval", "rounded_box"),
    "housing_length_m": (0.11, 0.17),
    "housing_half_width_m": (0.016, 0.024),   # along y
    "housing_half_height_m": (0.024, 0.036),  # along z
    "housing_shape": ("oval", "rounded_box"),
    "nozzle_length_m": (0.02, 0.035),
    "nozzle_radius_m": (0.007, 0.011),
    "stick_length_m": (0.02, 0.06),
    "stick_radius_m": (0.0055, 0.0062),
    "trigger_height_m": (0.025, 0.042),
    "trigger_depth_m": (0.012, 0.02),
}


def build(p: dict[str, Any], label: dict[str, int]) -> list[Part]:
    """The glue gun's parts for parameters ``p`` (a full draw from :data:`SPACE`)."""
    fh = p["foot_height_m"]
    foot = box([0.0, 0.0, fh / 2], [p["foot_length_m"], p["grip_width_m"] * 1.2, fh])
    pistol = build_pistol(p, label, 0.5 * fh, p["housing_half_width_m"], p["housing_half_height_m"],
                          p["housing_shape"])
    z = pistol.axis_z
    nozzle = rod([pistol.front_x - 0.004, 0, z], [pistol.front_x + p["nozzle_length_m"], 0, z],
                 p["nozzle_radius_m"], p["nozzle_radius_m"], end_scale=0.3)
    sr = p["stick_radius_m"]
    stick = rod([pistol.rear_x + 0.004, 0, z], [pistol.rear_x - p["stick_length_m"], 0, z], sr, sr)
    return [Part(foot, label["body"]), *pistol.parts, Part(nozzle, label["nozzle"]), Part(stick, label["body"])]
