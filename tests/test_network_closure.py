"""Contact closure of recovered grasps: each finger closes until it touches the object, no further."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from grasp_planner.network.closure import FingerMap, close_fingers
from grasp_planner.network.hand_chain import actuated_vector, cached_hand_chain
from grasp_planner.network.recovery import JointSolution

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def oymotion():
    hand, kin, chain = cached_hand_chain("oymotion", 256)
    return hand, chain, FingerMap.for_hand(hand, kin.model, kin.point_link, chain.joint_names)


def _open_grasps(hand, chain, b: int) -> JointSolution:
    q = torch.as_tensor(actuated_vector(hand, hand.open_pose)).clamp(chain.lower, chain.upper).repeat(b, 1)
    q_full = chain.full_q(q)
    return JointSolution(wrist_pose=torch.eye(4, dtype=torch.float64).repeat(b, 1, 1), q=q, q_full=q_full,
                         points=chain.fk(q_full), residual_m=torch.zeros(b), iterations=0)


def test_finger_map_assigns_every_finger_joint_and_its_points(oymotion):
    hand, chain, fingers = oymotion
    assert fingers.fingers == tuple(hand.fingertips)
    index = fingers.fingers.index("index")
    assert [n for n, f in zip(chain.joint_names, fingers.joint_finger) if f == index] == ["roh_index_flex"]
    assert (fingers.joint_finger >= 0).all()                   # all 6 actuators move a finger
    assert set(np.unique(fingers.point_finger)) == {-1, *range(len(fingers.fingers))}   # palm + 5 fingers


def test_fingers_stop_at_first_contact_and_free_fingers_close(oymotion):
    hand, chain, fingers = oymotion
    grasps = _open_grasps(hand, chain, 2)
    closed_pts = chain.points(torch.as_tensor(fingers.q_closed).clamp(chain.lower, chain.upper)[None])[0]
    # the palm faces -y: a wall at y = wall_y, inside for y < wall_y, that the closing fingers reach
    owned = torch.as_tensor(fingers.point_finger >= 0)
    open_y = grasps.points[0, owned, 1].min()
    wall_y = float(0.5 * (open_y + closed_pts[owned, 1].min()))
    walls = np.array([wall_y, -10.0])                      # candidate 0 meets the wall, candidate 1 never does

    def signed_distance(points: np.ndarray) -> np.ndarray:
        which = np.repeat([0, 1], len(points) // 2)
        return points[:, 1] - walls[which]

    result = close_fingers(grasps, chain, fingers, signed_distance)
    sd = result.solution.points[..., 1] - torch.as_tensor(walls)[:, None]
    touching = result.touching[0]
    assert touching.any() and not result.touching[1].any()
    for k in torch.nonzero(touching).flatten().tolist():
        gap = sd[0, torch.as_tensor(fingers.point_finger == k)].min()
        assert 0.0 <= float(gap) < 0.01, (fingers.fingers[k], float(gap))   # on the wall, not through it
        assert 0.0 < float(result.closure[0, k]) < 1.0
    assert torch.allclose(result.closure[1], torch.ones(len(fingers.fingers), dtype=torch.float64))
    target = torch.as_tensor(fingers.q_closed).clamp(chain.lower, chain.upper)
    assert torch.allclose(result.solution.q[1], target)               # closed freely to the closed pose
    assert torch.equal(result.solution.wrist_pose, grasps.wrist_pose)  # the wrist never moves
