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


def _wall_scene(hand, chain, fingers):
    """Two open grasps and a wall the closing fingers of candidate 0 reach and candidate 1's never do."""
    grasps = _open_grasps(hand, chain, 2)
    far = 10.0                                             # candidate 1 sits 10 m along x, past the wall's end
    grasps.wrist_pose[1, 0, 3] = far
    grasps.points[1, :, 0] += far
    closed_pts = chain.points(torch.as_tensor(fingers.q_closed).clamp(chain.lower, chain.upper)[None])[0]
    # the palm faces -y: a wall at y = wall_y, inside for y < wall_y, that the closing fingers reach;
    # it ends at x = far / 2, so candidate 0 meets it and candidate 1 never does
    owned = torch.as_tensor(fingers.point_finger >= 0)
    open_y = grasps.points[0, owned, 1].min()
    wall_y = float(0.5 * (open_y + closed_pts[owned, 1].min()))

    def signed_distance(points: np.ndarray) -> np.ndarray:
        return np.where(points[:, 0] < far / 2, points[:, 1] - wall_y, 1.0)

    return grasps, signed_distance


def test_fingers_stop_at_first_contact_and_free_fingers_can_close(oymotion):
    hand, chain, fingers = oymotion
    grasps, signed_distance = _wall_scene(hand, chain, fingers)
    result = close_fingers(grasps, chain, fingers, signed_distance, free_fingers="close")
    sd = torch.as_tensor(signed_distance(result.solution.points.reshape(-1, 3).numpy())).reshape(2, -1)
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


def test_free_fingers_stay_where_recovery_put_them(oymotion):
    """free_fingers="stay" (the default): a finger that meets no observed surface keeps its recovered joints (it may be on
    the object's unseen side); fingers that touch close exactly as with "close"."""
    hand, chain, fingers = oymotion
    grasps, signed_distance = _wall_scene(hand, chain, fingers)
    closing = close_fingers(grasps, chain, fingers, signed_distance, free_fingers="close")
    staying = close_fingers(grasps, chain, fingers, signed_distance)
    assert torch.equal(staying.touching, closing.touching) and not staying.touching[1].any()
    assert torch.equal(staying.solution.q[1], grasps.q[1])                  # nothing touched: unchanged
    assert torch.equal(staying.closure[1], torch.zeros(len(fingers.fingers), dtype=torch.float64))
    touching = staying.touching[0]
    assert torch.equal(staying.closure[0, touching], closing.closure[0, touching])
    with pytest.raises(ValueError, match="free_fingers"):
        close_fingers(grasps, chain, fingers, signed_distance, free_fingers="open")


def test_a_candidates_closure_does_not_depend_on_its_batch(oymotion):
    """One candidate alone (every level in one FK call) closes exactly as in a batch of 20 (one level per call)."""
    hand, chain, fingers = oymotion
    owned = torch.as_tensor(fingers.point_finger >= 0)
    closed_pts = chain.points(torch.as_tensor(fingers.q_closed).clamp(chain.lower, chain.upper)[None])[0]
    alone = _open_grasps(hand, chain, 1)
    wall_y = float(0.5 * (alone.points[0, owned, 1].min() + closed_pts[owned, 1].min()))

    def signed_distance(points: np.ndarray) -> np.ndarray:
        return points[:, 1] - wall_y

    one = close_fingers(alone, chain, fingers, signed_distance)
    many = close_fingers(_open_grasps(hand, chain, 20), chain, fingers, signed_distance)
    assert one.touching.any()
    assert torch.equal(many.closure, one.closure.expand(20, -1))
    assert torch.equal(many.solution.q, one.solution.q.expand(20, -1))
