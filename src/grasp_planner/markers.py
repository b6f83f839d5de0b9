"""RViz marker descriptions of a planning result as plain data (numpy only; messages are built in conversions).

Namespaces (each with id 0, so an update replaces the previous marker), preceded by a DELETEALL
marker so grasps of an earlier plan never linger:

* ``grasp_0`` … ``grasp_{k-1}``: hand surface points of the top-k candidates at their predicted
  grasp (contact) configuration, coloured by rank (best green → worst red, fading alpha);
* ``pregrasp``: the chosen grasp's open hand at the pre-grasp pose (grey, transparent);
* ``contacts``: the chosen grasp's fingertip contact points (yellow);
* ``approach``: arrow from the pre-grasp palm centre to the grasp palm centre.

Everything is in the base frame, metres.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

#: Candidates drawn by default (``grasp_0`` … ``grasp_4``).
TOP_K = 5
#: Sphere diameter of hand surface points, metres (about the hand point spacing).
HAND_POINT_DIAMETER_M = 0.006
#: Sphere diameter of contact points, metres.
CONTACT_DIAMETER_M = 0.015
#: Approach arrow: shaft diameter, head diameter, head length, metres.
ARROW_SCALE_M = (0.008, 0.016, 0.02)
#: Shortest approach arrow, metres (used when the approach offset is shorter).
MIN_ARROW_LENGTH_M = 0.05
#: Alpha of the best and of the worst drawn candidate.
ALPHA_BEST, ALPHA_WORST = 0.9, 0.35
PREGRASP_RGBA = (0.6, 0.6, 0.6, 0.3)
CONTACT_RGBA = (1.0, 0.9, 0.0, 1.0)
APPROACH_RGBA = (0.1, 0.4, 1.0, 1.0)

#: Joint dict (radians) → ((P, 3) hand surface points, (3,) palm centre), both in the hand ROOT
#: frame, metres.
HandSurfaceFn = Callable[[Mapping[str, float]], tuple[np.ndarray, np.ndarray]]

KINDS = ("delete_all", "sphere_list", "arrow")


@dataclass(frozen=True)
class MarkerSpec:
    """One marker as plain data.

    Attributes:
        ns: namespace (stable per role, see the module docstring).
        id: id within the namespace.
        kind: ``"delete_all"``, ``"sphere_list"`` or ``"arrow"`` (arrow: points = [tail, head]).
        points: (K, 3) float64, base frame, metres (empty for delete_all).
        scale: sphere diameter ×3 for sphere lists; (shaft diameter, head diameter, head length)
            for arrows; metres.
        rgba: colour, each channel in [0, 1].
    """

    ns: str
    id: int
    kind: str
    points: np.ndarray
    scale: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rgba: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"marker kind '{self.kind}' is not one of {KINDS}")
        pts = np.asarray(self.points, dtype=float).reshape(-1, 3)
        if not np.all(np.isfinite(pts)):
            raise ValueError(f"marker {self.ns}/{self.id}: points contain NaN/inf")
        if self.kind == "arrow" and len(pts) != 2:
            raise ValueError(f"arrow marker {self.ns}/{self.id} needs 2 points (tail, head), got {len(pts)}")
        object.__setattr__(self, "points", pts)


def delete_all() -> MarkerSpec:
    """The marker that clears every marker previously published on the topic."""
    return MarkerSpec(ns="", id=0, kind="delete_all", points=np.zeros((0, 3)))


def rank_rgba(rank: int, count: int) -> tuple[float, float, float, float]:
    """Colour of candidate ``rank`` (0 = best) of ``count``: green → red, alpha fading with rank."""
    if count < 1 or not 0 <= rank < count:
        raise ValueError(f"rank {rank} is outside 0..{count - 1}")
    f = rank / (count - 1) if count > 1 else 0.0
    return (f, 1.0 - f, 0.0, ALPHA_BEST + f * (ALPHA_WORST - ALPHA_BEST))


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) points mapped by a (4, 4) transform."""
    T = np.asarray(T, dtype=float)
    return np.asarray(points, dtype=float).reshape(-1, 3) @ T[:3, :3].T + T[:3, 3]


def pregrasp_root_pose(T_base_root: np.ndarray, approach: np.ndarray, approach_offset_m: float) -> np.ndarray:
    """(4, 4) hand root pose at the pre-grasp: the grasp pose backed off against the approach direction."""
    T = np.array(T_base_root, dtype=float)
    a = np.asarray(approach, dtype=float)
    T[:3, 3] -= approach_offset_m * a / np.linalg.norm(a)
    return T


def make_hand_surface_fn(kinematics: Any, palm_center: Sequence[float]) -> HandSurfaceFn:
    """A :data:`HandSurfaceFn` from a ``HandKinematics``-like object.

    Args:
        kinematics: has ``forward(q) -> HandPose`` (``points`` (P, 3) and ``palm`` (4, 4), root frame).
        palm_center: (3,) palm centre in the palm body frame, metres (``HandDescription.palm_center``).
    """
    c = np.asarray(palm_center, dtype=float)

    def surface(q: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        pose = kinematics.forward(dict(q))
        return pose.points, pose.palm[:3, :3] @ c + pose.palm[:3, 3]

    return surface


def grasp_markers(candidates: Sequence[Any], hand_surface: HandSurfaceFn, chosen: Any | None = None,
                  approach_offset_m: float = 0.10, top_k: int = TOP_K) -> list[MarkerSpec]:
    """Markers of one planning result, DELETEALL first.

    Args:
        candidates: ranked grasp candidates (best first), each with ``T_base_root`` (4, 4),
            ``approach`` (3,), ``q_open``, ``q_grasp`` (joint dicts) and ``contacts``
            (finger → (3,) base-frame point or None), like ``GraspCandidate``.
        hand_surface: hand surface points and palm centre in the root frame for a configuration.
        chosen: the candidate that was planned (pregrasp, contacts and approach markers), or None.
        approach_offset_m: pre-grasp stand-off along the approach direction, metres.
        top_k: at most this many candidates get a ``grasp_<rank>`` marker.

    Returns:
        [delete_all, grasp_0 … grasp_{k-1}, (pregrasp, contacts, approach if ``chosen``)].
    """
    specs = [delete_all()]
    shown = list(candidates)[:max(0, top_k)]
    d = HAND_POINT_DIAMETER_M
    for rank, cand in enumerate(shown):
        points, _ = hand_surface(cand.q_grasp)
        specs.append(MarkerSpec(ns=f"grasp_{rank}", id=0, kind="sphere_list",
                                points=transform_points(cand.T_base_root, points), scale=(d, d, d),
                                rgba=rank_rgba(rank, len(shown))))
    if chosen is None:
        return specs
    T_pre = pregrasp_root_pose(chosen.T_base_root, chosen.approach, approach_offset_m)
    open_points, _ = hand_surface(chosen.q_open)
    specs.append(MarkerSpec(ns="pregrasp", id=0, kind="sphere_list", points=transform_points(T_pre, open_points),
                            scale=(d, d, d), rgba=PREGRASP_RGBA))
    contacts = [np.asarray(p, dtype=float) for p in chosen.contacts.values() if p is not None]
    c = CONTACT_DIAMETER_M
    specs.append(MarkerSpec(ns="contacts", id=0, kind="sphere_list",
                            points=np.reshape(contacts, (-1, 3)), scale=(c, c, c), rgba=CONTACT_RGBA))
    _, palm_grasp = hand_surface(chosen.q_grasp)
    head = transform_points(chosen.T_base_root, palm_grasp)[0]
    a = np.asarray(chosen.approach, dtype=float)
    tail = head - max(approach_offset_m, MIN_ARROW_LENGTH_M) * a / np.linalg.norm(a)
    specs.append(MarkerSpec(ns="approach", id=0, kind="arrow", points=np.stack([tail, head]),
                            scale=ARROW_SCALE_M, rgba=APPROACH_RGBA))
    return specs
