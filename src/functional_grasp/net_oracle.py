"""Oracle matrices: what the deployed recovery keeps of *perfect* network predictions.

``fgrasp eval --network CKPT --oracle DATASET`` replaces the network's predicted D(R,O) matrices by
the true ones of grasps the data engine kept (stable and functional under the same judge) and runs
everything after the network exactly as deployed: multilateration → per-link Kabsch → joint
solve → refinement → contact closure → ranking → the judge. The true matrix of a grasp holds the
distances from the hand points at that grasp to the object points the network samples from the
rendered view, so recovery reproduces the grasp exactly (the judge keeps it again); whatever is
lost is lost by the stages after recovery, which only see the partial view. A stage that loses
true grasps caps what any network can reach through it.

Objects are the data-engine dataset's first ``--objects`` per category with kept grasps
(:func:`~functional_grasp.net_deploy.dataset_objects`; split ``oracle``), seen from one rendered
view drawn like the held-out evaluation's; sample k of K is kept grasp ``k mod n`` of the object,
and only the first ``min(n, K)`` distinct ones are judged. Each candidate's record entry gets
``oracle_moved_m`` / ``oracle_turned_deg``: how far its wrist ended from the true grasp's.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from functional_grasp.net_deploy import DeployConfig, Deployer, ObjectRef, dataset_objects

#: The split name of oracle objects in records (``oracle_<category>_<index>``).
ORACLE_SPLIT = "oracle"


def rotation_angle_deg(rotation: np.ndarray) -> float:
    """Angle of a (3, 3) rotation, degrees, from both its sine and cosine (exact near 0, unlike arccos)."""
    r = np.asarray(rotation, dtype=float)
    sine = 0.5 * np.linalg.norm([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    return float(np.degrees(np.arctan2(sine, 0.5 * (np.trace(r) - 1.0))))


class TrueMatrixModel:
    """Stands in for a loaded network: its sampled object points, the true matrices of given grasps.

    Args:
        model: the loaded :class:`~grasp_planner.network.model.DROModel` (its object-point
            sampling is kept, so the recovery sees the points a prediction would have).
    """

    def __init__(self, model) -> None:
        self.model = model
        self.config = model.config
        self.hand_points = None          # (n, P, 3) torch, the grasps' hand points in the cloud's frame

    def __call__(self, batch, num_samples: int):
        import torch

        if self.hand_points is None:
            raise RuntimeError("TrueMatrixModel: set hand_points before predicting")
        out = self.model(batch, num_samples=num_samples)
        objects = out.object_points[0].to(self.hand_points.dtype)                       # (N', 3)
        true = torch.cdist(self.hand_points, objects.expand(len(self.hand_points), -1, -1))   # (n, P, N')
        pick = torch.arange(out.distances.shape[1]) % len(true)
        return replace(out, distances=true[pick][None].to(out.distances.dtype))


def kept_grasps(data_dir: str | Path, ref: ObjectRef) -> tuple[np.ndarray, np.ndarray]:
    """The kept grasps of one dataset object: (n, 4, 4) hand-root poses in the object frame and
    (n, nq) joint vectors (``hand.joint_names`` order).

    Raises:
        ValueError: the object is not in the dataset's index or has no kept grasp.
    """
    data_dir = Path(data_dir)
    shards = json.loads((data_dir / "index.json").read_text()).get("shards", {})
    entry = next((e for e in shards.values() if e["category"] == ref.category and int(e["index"]) == ref.index), None)
    if entry is None:
        raise ValueError(f"{data_dir} has no shard for {ref.category} #{ref.index}")
    with np.load(data_dir / entry["file"], allow_pickle=False) as shard:
        kept = np.flatnonzero(shard["grasp_kept"])
        if not len(kept):
            raise ValueError(f"{data_dir / entry['file']} has no kept grasp")
        return shard["grasp_root_pose"][kept], shard["grasp_q"][kept]


class OracleDeployer(Deployer):
    """A :class:`Deployer` whose network predicts the true matrices of a dataset's kept grasps.

    Args:
        hand_name: the dataset's hand.
        checkpoint: a checkpoint of that hand (only its object-point sampling is used).
        data_dir: the data-engine dataset.
        config: deployment settings (a partial view is the realistic setting).
        offset_m: shift each true grasp's hand by this distance in a random direction (per object
            seed) before its matrix is computed: a stand-in for a network whose predicted placement
            is off by that much, to see whether the stages after it bring the grasp back. Metres, ≥ 0.

    Raises:
        ValueError: the optimiser baseline, or a negative offset.
    """

    def __init__(self, hand_name: str, checkpoint: str | Path, data_dir: str | Path,
                 config: DeployConfig = DeployConfig(), offset_m: float = 0.0) -> None:
        if config.backend != "network":
            raise ValueError("--oracle feeds the network's recovery; it cannot be combined with the optimiser baseline")
        if not offset_m >= 0.0:
            raise ValueError(f"--oracle-offset-m must be >= 0, got {offset_m}")
        super().__init__(hand_name, checkpoint, config)
        self.data_dir, self.offset_m = Path(data_dir), float(offset_m)
        self.true_model = TrueMatrixModel(self.predictor.model)
        self.predictor.model = self.true_model
        self.chain = self.predictor.chain

    def predict(self, ref: ObjectRef, obs):
        """Candidates from the true matrices of ``ref``'s kept grasps, one per distinct grasp."""
        import torch

        poses, q = kept_grasps(self.data_dir, ref)
        n = min(len(poses), self.config.samples)
        world = torch.as_tensor(obs.T_world_object @ poses[:n])                                  # (n, 4, 4)
        points = self.chain.fk(torch.as_tensor(q[:n], dtype=torch.float64))                     # (n, P, 3) root
        hand = points @ world[:, :3, :3].transpose(1, 2) + world[:, None, :3, 3]
        if self.offset_m > 0.0:
            direction = np.random.default_rng(ref.seed).normal(size=(n, 3))
            shift = self.offset_m * direction / np.linalg.norm(direction, axis=1, keepdims=True)
            hand = hand + torch.as_tensor(shift)[:, None]
        self.true_model.hand_points = hand
        candidates = [c for c in super().predict(ref, obs) if c.info.get("sample", 0) < n]
        for c in candidates:                      # how far the stages after recovery moved the true grasp
            true = world[c.info["sample"]].numpy()
            c.info["oracle_moved_m"] = float(np.linalg.norm(c.T_base_root[:3, 3] - true[:3, 3]))
            c.info["oracle_turned_deg"] = rotation_angle_deg(c.T_base_root[:3, :3].T @ true[:3, :3])
        return candidates


def oracle_objects(data_dir: str | Path, categories: list[str], count: int) -> list[ObjectRef]:
    """The dataset's first ``count`` objects per category with kept grasps, as split ``oracle``."""
    return [ObjectRef(ORACLE_SPLIT, r.category, r.index, r.seed) for r in dataset_objects(data_dir, categories, count)]
