"""The recovery's :class:`~grasp_planner.network.recovery.HandChain` from the project's torch hand FK.

The network's rows are the surface points of :class:`~grasp_planner.hand_fk_torch.TorchHandKinematics`
(``num_points`` of them, seeded farthest-point samples grouped by link); the recovery solves for the
hand's actuated joints (``hand.actuated_joints``), expanded to the full joint vector through
``hand.coupling_matrix()`` (mimic followers and fixed joints). The canonical pose — the pose of the
network's hand-point input — is the hand's open synergy pose.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from grasp_planner.hand_fk_torch import HandPointConfig, TorchHandKinematics
from grasp_planner.hands.description import HandDescription, load_hand
from grasp_planner.network.recovery import HandChain


def actuated_limits(hand: HandDescription) -> tuple[np.ndarray, np.ndarray]:
    """(nA,), (nA,) lower/upper limits of ``hand.actuated_joints``, radians, narrowed so that the
    joints they drive stay within their own limits (:attr:`HandDescription.actuated_limits`)."""
    limits = hand.actuated_limits
    return limits[:, 0].copy(), limits[:, 1].copy()


def actuated_vector(hand: HandDescription, pose: dict[str, float]) -> np.ndarray:
    """(nA,) actuated joint values of a pose given by name (missing joints: 0), ``actuated_joints`` order."""
    return np.array([float(pose.get(n, 0.0)) for n in hand.actuated_joints], dtype=float)


def full_vector(hand: HandDescription, pose: dict[str, float]) -> np.ndarray:
    """(nq,) full joint vector (``hand.joint_names`` order) of a pose by name, couplings applied."""
    full = hand.expand(pose)
    return np.array([full[n] for n in hand.joint_names], dtype=float)


def torch_hand_chain(hand: HandDescription, num_points: int = 512,
                     kinematics: TorchHandKinematics | None = None) -> HandChain:
    """A :class:`HandChain` over the hand's torch FK points.

    Args:
        hand: the hand description.
        num_points: surface points (the network's ``hand_points``).
        kinematics: an existing :class:`TorchHandKinematics` with ``num_points`` points (built when None).

    Returns:
        The chain: ``fk`` maps (B, nq) full joints (``hand.joint_names``) to (B, num_points, 3)
        points in the hand root frame; the active joints are ``hand.actuated_joints``; the Jacobian
        is one batched finite-difference FK call (cheaper here than autograd through the FK).

    Raises:
        ValueError: ``kinematics`` has another number of points.
    """
    kin = kinematics or TorchHandKinematics(hand, HandPointConfig(num_points=num_points))
    if len(kin.point_link) != num_points:
        raise ValueError(f"hand '{hand.name}': the kinematics has {len(kin.point_link)} points, "
                         f"the network needs {num_points}")
    a, b = kin.coupling(torch.float64)
    lower, upper = actuated_limits(hand)
    lower_t, upper_t = torch.as_tensor(lower), torch.as_tensor(upper)
    canonical = torch.as_tensor(actuated_vector(hand, hand.open_pose)).clamp(lower_t, upper_t)
    # Dense link ids of the points (TorchHandKinematics numbers all links; the recovery wants 0..L-1).
    _, link_index = np.unique(kin.point_link, return_inverse=True)

    def fk(q_full: torch.Tensor) -> torch.Tensor:
        return kin.surface_points(q_full)

    return HandChain(fk=fk, lower=lower_t, upper=upper_t, link_index=torch.as_tensor(link_index),
                     joint_names=tuple(hand.actuated_joints), coupling=a, offset=b, canonical_q=canonical)


@lru_cache(maxsize=8)
def cached_hand_chain(hand_name: str, num_points: int = 512) -> tuple[HandDescription, TorchHandKinematics, HandChain]:
    """``(hand, kinematics, chain)`` of a hand by name, built once per process (the FK set-up takes ~1 s)."""
    hand = load_hand(hand_name)
    kin = TorchHandKinematics(hand, HandPointConfig(num_points=num_points))
    return hand, kin, torch_hand_chain(hand, num_points, kin)
