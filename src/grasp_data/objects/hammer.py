"""Claw or ball-peen hammer lying on its side: handle along +x, head across it (along y) at
the +x end, striking face toward +y, claw or peen toward −y.

Regions: body, handle (grip: the rear part of the handle), face (avoid). Sizes in metres.
"""
from __future__ import annotations

from typing import Any

from grasp_data.objects.parts import Part, ParamRange, rod

#: Parameter ranges (uniform), metres / choices.
SPACE: dict[str, ParamRange] = {
    "handle_length_m": (0.22, 0.34),
    "handle_half_width_m": (0.013, 0.019),   # along y (the swing plane)
    "handle_half_height_m": (0.010, 0.014),  # along z
    "handle_taper": (0.7, 0.95),             # cross-section scale at the head end
    "handle_shape": ("oval", "rounded_box"),
    "grip_fraction": (0.45, 0.6),            # rear share of the handle that is the grip region
    "head_half_size_m": (0.010, 0.015),      # head cross-section half size
    "head_front_m": (0.025, 0.045),          # face side length from the handle axis
    "head_back_m": (0.035, 0.07),            # claw / peen side length
    "back_shape": ("claw", "peen"),
    "face_radius_m": (0.011, 0.017),
    "face_thickness_m": (0.004, 0.01),
}


def build(p: dict[str, Any], label: dict[str, int]) -> list[Part]:
    """The hammer's parts for parameters ``p`` (a full draw from :data:`SPACE`)."""
    length, hw, hh = p["handle_length_m"], p["handle_half_width_m"], p["handle_half_height_m"]
    exponent = 2.0 if p["handle_shape"] == "oval" else 4.0
    split = p["grip_fraction"] * length
    taper = p["handle_taper"]
    mid_scale = 1.0 + (taper - 1.0) * p["grip_fraction"]
    grip = rod([0, 0, 0], [split, 0, 0], hw, hh, exponent, end_scale=mid_scale)
    shaft = rod([split - 0.001, 0, 0], [length, 0, 0], hw * mid_scale, hh * mid_scale, exponent,
                end_scale=taper / mid_scale)
    s = p["head_half_size_m"]
    hx = length - s
    front, back = p["head_front_m"], p["head_back_m"]
    head = rod([hx, -0.5 * back, 0], [hx, front, 0], s, s, 4.0, up=(0.0, 0.0, 1.0))
    fr = p["face_radius_m"]
    face = rod([hx, front - 0.002, 0], [hx, front + p["face_thickness_m"], 0], fr, fr, end_scale=0.95)
    if p["back_shape"] == "claw":
        tail = rod([hx, -0.5 * back + 0.002, 0], [hx, -back, 0], s, 0.6 * s, 4.0, end_scale=0.35)
    else:
        tail = rod([hx, -0.5 * back + 0.002, 0], [hx, -back, 0], s, s, 2.0, end_scale=0.7)
    return [Part(grip, label["handle"]), Part(shaft, label["body"]), Part(head, label["body"]),
            Part(face, label["face"]), Part(tail, label["body"])]
