"""Hand link pairs that can never touch each other: collision checks the validator may skip.

MuJoCo tests every pair of hand links that are not parent and child, every physics step. Many of
those pairs stay apart over the whole joint range (the forearm and the fingertips, a knuckle and
the distal link of its own finger) yet sit close enough that their bounding volumes overlap, so
MuJoCo runs the narrow-phase test on them at every step and always finds no contact. Excluding
them changes nothing in the simulation (no contact is lost; the trajectories are bit-identical)
and saves that work.

A pair is *unreachable* when it never comes within ``margin_m`` in ``samples`` random hand
configurations drawn over the joint limits (each joint at either limit with probability 0.2 each,
else uniform in between, so the extremes where links approach each other are well covered).
Coupled joints are sampled independently (a superset of what the couplings allow: conservative);
joints the hand keeps fixed (``fixed_joints``, e.g. the Shadow Hand's wrist, servo-held at 0 in
the validation scene) are sampled within ``fixed_play_rad`` of their value. Only pairs of *hand*
links are ever returned: contacts between the hand and an object are never filtered.
"""
from __future__ import annotations

from functools import lru_cache

import mujoco
import numpy as np

from grasp_planner.hands import HandDescription


def unreachable_hand_pairs(hand: HandDescription, samples: int = 10000, margin_m: float = 0.005,
                           fixed_play_rad: float = 0.2, seed: int = 0) -> tuple[tuple[str, str], ...]:
    """Hand body pairs (names, sorted) that MuJoCo would collide but that never come within
    ``margin_m`` of each other over the sampled joint range (module docstring).

    Args:
        hand: the hand description (its model is compiled alone, without servos).
        samples: random joint configurations checked.
        margin_m: a pair closer than this in any sample is kept, metres.
        fixed_play_rad: joints in ``hand.fixed_joints`` are sampled within this of their value.
        seed: random seed (the result is deterministic for a given seed).

    Returns:
        Sorted ``(body_a, body_b)`` name pairs, safe to exclude from collision checking.

    Raises:
        ValueError: ``samples`` < 1 or a negative margin or play.
    """
    if samples < 1 or margin_m < 0 or fixed_play_rad < 0:
        raise ValueError(f"samples ({samples}) must be ≥ 1, margin_m ({margin_m}) and fixed_play_rad "
                         f"({fixed_play_rad}) ≥ 0")
    fixed = tuple(sorted(hand.fixed_joints.items()))
    return _unreachable(str(hand.model_path), hand.joint_names, tuple(map(tuple, hand.joint_limits.tolist())),
                        fixed, samples, margin_m, fixed_play_rad, seed)


@lru_cache(maxsize=16)
def _unreachable(model_path: str, joint_names: tuple[str, ...], limits: tuple[tuple[float, float], ...],
                 fixed: tuple[tuple[str, float], ...], samples: int, margin_m: float, play: float,
                 seed: int) -> tuple[tuple[str, str], ...]:
    from grasp_planner.hands.model_loading import load_model_spec

    m = load_model_spec(model_path).compile()
    d = mujoco.MjData(m)
    colliding = (m.geom_contype | m.geom_conaffinity) > 0
    m.geom_margin[:] = np.where(colliding, margin_m / 2, 0.0)   # a pair's margin is the sum of both
    lo, hi = np.array(limits, dtype=float).T
    for name, value in fixed:
        k = joint_names.index(name)
        lo[k], hi[k] = max(lo[k], value - play), min(hi[k], value + play)
    qadr = np.array([m.jnt_qposadr[m.joint(n).id] for n in joint_names])
    rng = np.random.default_rng(seed)
    near: set[tuple[int, int]] = set()
    for _ in range(samples):
        u, pick = rng.random(len(qadr)), rng.random(len(qadr))
        d.qpos[qadr] = lo + np.where(pick < 0.2, 0.0, np.where(pick < 0.4, 1.0, u)) * (hi - lo)
        mujoco.mj_kinematics(m, d)
        mujoco.mj_collision(m, d)
        if d.ncon:
            near.update(map(tuple, np.sort(m.geom_bodyid[d.contact.geom[:d.ncon]], axis=1).tolist()))
    return tuple(sorted((m.body(a).name, m.body(b).name) for a, b in _tested_pairs(m) - near))


def _tested_pairs(m: mujoco.MjModel) -> set[tuple[int, int]]:
    """Body pairs (a < b) MuJoCo's contact filter lets through: compatible contype/conaffinity of
    some geom pair, different weld bodies, not parent and child, not in the model's exclude list."""
    geoms = np.flatnonzero((m.geom_contype | m.geom_conaffinity) > 0)
    weld = m.body_weldid
    excluded = {(int(s) >> 16, int(s) & 0xFFFF) for s in m.exclude_signature}
    out = set()
    for i, g1 in enumerate(geoms):
        for g2 in geoms[i + 1:]:
            a, b = sorted((int(m.geom_bodyid[g1]), int(m.geom_bodyid[g2])))
            wa, wb = weld[a], weld[b]
            if wa == wb or weld[m.body_parentid[wa]] == wb or weld[m.body_parentid[wb]] == wa:
                continue
            if (a, b) in excluded or (b, a) in excluded:
                continue
            if (m.geom_contype[g1] & m.geom_conaffinity[g2]) or (m.geom_contype[g2] & m.geom_conaffinity[g1]):
                out.add((a, b))
    return out
