"""Shared layout of pistol-grip tools (drill, glue gun): a leaning grip, a housing along +x on
top of it, and a trigger on the grip's front face just under the housing. Metres."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from grasp_data.objects.parts import Part, box, rod

#: Parameters every pistol-grip category declares (ranges are the category's own).
PISTOL_PARAMS = ("grip_length_m", "grip_depth_m", "grip_width_m", "grip_lean_rad", "grip_shape",
                 "housing_length_m", "trigger_height_m", "trigger_depth_m")
#: Superellipse exponent of each grip / housing shape choice.
SHAPE_EXPONENT = {"oval": 2.0, "round": 2.0, "rounded_box": 4.0}


@dataclass(frozen=True)
class Pistol:
    """The grip, housing and trigger, and where the category's own parts attach.

    Attributes:
        parts: grip (handle label), housing (body), trigger (trigger label).
        axis_z: height of the housing's axis, metres.
        rear_x, front_x: x of the housing's rear and front ends, metres.
    """

    parts: list[Part]
    axis_z: float
    rear_x: float
    front_x: float


def build_pistol(p: dict[str, Any], label: dict[str, int], base_z: float, housing_half_width_m: float,
                 housing_half_height_m: float, housing_shape: str) -> Pistol:
    """Grip from height ``base_z`` (leaning back by ``grip_lean_rad``), housing, trigger.

    Args:
        p: the category's parameters (must contain :data:`PISTOL_PARAMS`).
        label: region name -> label id (needs body, handle, trigger).
        base_z: height of the grip's lower end centre, metres.
        housing_half_width_m, housing_half_height_m: housing cross-section half sizes (y, z), metres.
        housing_shape: a key of :data:`SHAPE_EXPONENT`.
    """
    lean = p["grip_lean_rad"]
    grip_dir = np.array([-np.sin(lean), 0.0, np.cos(lean)])
    g0 = np.array([0.0, 0.0, base_z])
    g1 = g0 + grip_dir * p["grip_length_m"]
    grip = rod(g0, g1, p["grip_width_m"] / 2, p["grip_depth_m"] / 2, SHAPE_EXPONENT[p["grip_shape"]],
               up=(1.0, 0.0, 0.0))
    hh = housing_half_height_m
    axis_z = g1[2] + 0.8 * hh
    rear_x = g1[0] - 0.55 * hh - 0.02
    front_x = rear_x + p["housing_length_m"]
    housing = rod([rear_x, 0, axis_z], [front_x, 0, axis_z], housing_half_width_m, hh,
                  SHAPE_EXPONENT[housing_shape], up=(0.0, 0.0, 1.0))
    th, td = p["trigger_height_m"], p["trigger_depth_m"]
    t_centre_z = axis_z - hh + 0.002 - th / 2  # top 2 mm inside the housing
    grip_front_x = g0[0] + grip_dir[0] * (t_centre_z - g0[2]) / grip_dir[2] + p["grip_depth_m"] / 2
    trigger = box([grip_front_x + td / 2 - 0.003, 0.0, t_centre_z], [td + 0.003, 0.6 * p["grip_width_m"], th])
    return Pistol([Part(grip, label["handle"]), Part(housing, label["body"]), Part(trigger, label["trigger"])],
                  float(axis_z), float(rear_x), float(front_x))
