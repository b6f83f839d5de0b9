"""Close each finger of recovered grasps onto the observed object (contact closure).

A recovered grasp puts the hand near the object, but a few centimetres of error leave the
fingertips in the air, and a judge (or a real hand) that closes only a little beyond the grasp
then never touches the object. This stage does what the optimiser does for its own grasps: each
finger moves from its recovered joints toward the hand's closed pose until it first touches the
object (signed distance < 0), refined by bisection. A finger already touching stays where it is.
A finger that meets nothing of the *observed* surface keeps its recovered joints (``free_fingers=
"stay"``, the default) and is reported as not touching: it may be on the object's unseen side, where
closing it fully drives it into the object (``"close"``, the behaviour before: true grasps of the
data engine fed through the recovery kept 108/157 with it and 127/157 staying; see README).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from grasp_planner.hands.description import HandDescription
from grasp_planner.network.hand_chain import actuated_vector
from grasp_planner.network.recovery import HandChain, JointSolution

#: A signed distance to the object: (M, 3) world points, metres → (M,) metres, negative inside.
SignedDistance = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FingerMap:
    """Which finger each active joint and each hand point belongs to.

    Attributes:
        joint_finger: (nA,) finger index of each active joint (``HandChain.joint_names`` order), -1
            for joints of no finger.
        point_finger: (P,) finger index of each hand point, -1 for palm points.
        fingers: finger names (``hand.fingertips`` order).
        q_closed: (nA,) the hand's closed pose, active joints, radians.
    """

    joint_finger: np.ndarray
    point_finger: np.ndarray
    fingers: tuple[str, ...]
    q_closed: np.ndarray

    @classmethod
    def for_hand(cls, hand: HandDescription, model, point_link: np.ndarray,
                 joint_names: tuple[str, ...]) -> "FingerMap":
        """Build the map from the hand's MuJoCo model.

        Args:
            hand: the hand description (fingertip bodies, palm and root bodies, closed pose).
            model: the hand's ``mujoco.MjModel`` (body ``l + 1`` is link ``l`` of ``point_link``).
            point_link: (P,) link of each hand point (``TorchHandKinematics.point_link``).
            joint_names: the active joints.
        """
        fingers = tuple(hand.fingertips)
        stop = {hand.palm_body, hand.root_body}
        body_finger = np.full(model.nbody, -1)
        for k, finger in enumerate(fingers):
            body = model.body(hand.fingertips[finger]).id
            while body > 0 and model.body(body).name not in stop:
                body_finger[body] = k
                body = model.body_parentid[body]
        joint_finger = np.array([body_finger[model.jnt_bodyid[model.joint(n).id]] for n in joint_names])
        return cls(joint_finger=joint_finger, point_finger=body_finger[np.asarray(point_link) + 1],
                   fingers=fingers, q_closed=actuated_vector(hand, hand.closed_pose))


@dataclass
class ClosureResult:
    """Grasps after :func:`close_fingers`.

    Attributes:
        solution: the closed grasps (same wrist poses; joints, full joints and points updated).
        touching: (B, F) bool: finger f of candidate b touches the object at its closure.
        closure: (B, F) fraction of the way from the recovered joints to the closed pose, 0..1.
    """

    solution: JointSolution
    touching: torch.Tensor
    closure: torch.Tensor


#: Candidates × closure levels evaluated per FK call (1 candidate: all 10 levels at once).
LEVELS_PER_CALL_BUDGET = 16


#: What :func:`close_fingers` does with a finger that touches nothing: close it fully, or leave it.
FREE_FINGERS = ("close", "stay")


def close_fingers(solution: JointSolution, chain: HandChain, fingers: FingerMap, signed_distance: SignedDistance,
                  steps: int = 10, bisection_steps: int = 4, free_fingers: str = "stay") -> ClosureResult:
    """Close every finger of B grasps until it touches the object (module docstring).

    Args:
        solution: recovered grasps (wrist pose, active joints).
        chain: the hand chain the joints belong to.
        fingers: joint and point ownership per finger.
        signed_distance: the object's signed distance, world frame.
        steps: closure levels tried from the recovered joints (0) to closed (1).
        bisection_steps: halvings of the step that first touches.
        free_fingers: a finger that touches nothing is closed fully (``"close"``) or stays at its
            recovered joints (``"stay"``); :data:`FREE_FINGERS`.

    Returns:
        :class:`ClosureResult`.
    """
    if free_fingers not in FREE_FINGERS:
        raise ValueError(f"free_fingers must be one of {', '.join(FREE_FINGERS)}, got '{free_fingers}'")
    q0 = solution.q.detach().double()
    b, n_fingers = q0.shape[0], len(fingers.fingers)
    target = torch.as_tensor(fingers.q_closed, dtype=q0.dtype).clamp(chain.lower.double(), chain.upper.double())
    joint_finger = torch.as_tensor(fingers.joint_finger)
    owned = joint_finger >= 0
    rot, trans = solution.wrist_pose[:, :3, :3].double(), solution.wrist_pose[:, :3, 3].double()
    finger_points = torch.as_tensor(np.flatnonzero(fingers.point_finger >= 0))   # only these can touch
    point_finger = torch.as_tensor(fingers.point_finger)[finger_points]

    def joints(s: torch.Tensor) -> torch.Tensor:              # (..., B, F) closure → (..., B, nA) joints
        per_joint = torch.where(owned, s[..., joint_finger.clamp_min(0)], torch.zeros_like(q0))
        return q0 + per_joint * (target - q0)

    def finger_min_sd(s: torch.Tensor) -> torch.Tensor:
        """(..., B, F) closures → (..., B, F) smallest signed distance of each finger's points."""
        q = joints(s)
        pts = chain.points(q.reshape(-1, q.shape[-1]))[:, finger_points].reshape(*q.shape[:-1], -1, 3)
        pts = pts @ rot.transpose(1, 2) + trans[:, None]
        sd = torch.as_tensor(signed_distance(pts.reshape(-1, 3).numpy()), dtype=q.dtype).reshape(pts.shape[:-1])
        mins = torch.full(s.shape, float("inf"), dtype=q.dtype)
        for k in range(n_fingers):
            sel = point_finger == k
            if bool(sel.any()):
                mins[..., k] = sd[..., sel].amin(dim=-1)
        return mins

    touching = finger_min_sd(torch.zeros(b, n_fingers, dtype=q0.dtype)) < 0.0    # already on the object
    closure = torch.ones(b, n_fingers, dtype=q0.dtype)
    closure[touching] = 0.0
    hit_level = torch.zeros(b, n_fingers, dtype=q0.dtype)
    # A finger's points move with its own joints only, so several levels can be tried in one FK call
    # (few candidates: the call's overhead dominates); a free finger touches at the first level
    # where its points reach the surface.
    levels = torch.linspace(0.0, 1.0, steps + 1, dtype=q0.dtype)[1:]
    per_call = max(1, LEVELS_PER_CALL_BUDGET // b)
    for start in range(0, steps, per_call):
        if not bool((~touching).any()):
            break
        chunk = levels[start:start + per_call]
        hits = finger_min_sd(chunk[:, None, None].expand(-1, b, n_fingers)) < 0.0       # (C, B, F)
        first = torch.where(hits.any(dim=0), hits.to(torch.int8).argmax(dim=0), -1)   # first touching level
        hit = ~touching & (first >= 0)
        hit_level[hit] = chunk[first[hit]]
        touching |= hit
    moved = touching & (hit_level > 0)                        # fingers that reached the object while closing
    lo = torch.where(moved, hit_level - 1.0 / steps, closure)
    hi = torch.where(moved, hit_level, closure)
    for _ in range(bisection_steps):
        mid = torch.where(moved, 0.5 * (lo + hi), closure)
        inside = finger_min_sd(mid) < 0.0
        hi = torch.where(moved & inside, mid, hi)
        lo = torch.where(moved & ~inside, mid, lo)
    closure = torch.where(moved, lo, closure)                 # the last free level: touching, not inside
    if free_fingers == "stay":
        closure = torch.where(touching, closure, torch.zeros_like(closure))
    q = joints(closure)
    q_full = chain.full_q(q)
    points = chain.fk(q_full) @ rot.transpose(1, 2) + trans[:, None]
    closed = replace(solution, q=q.to(solution.q.dtype), q_full=q_full.to(solution.q_full.dtype),
                     points=points.to(solution.points.dtype))
    return ClosureResult(solution=closed, touching=touching, closure=closure)
