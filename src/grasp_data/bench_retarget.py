"""Human-grasp retargeting benchmark (part of the ``data`` section of ``fgrasp bench``; also
``python -m grasp_data.bench_retarget``).

Per hand, one batch of records — the sample records of ``tests/data/human_grasps`` (mug wraps,
mug handle hook, drill pistol grip) repeated with 2 mm Gaussian noise on every keypoint (seeded)
— is retargeted at once the way ``fgrasp data import-human`` does it (object terms on, one torch
thread). Printed per hand:

- ``retarget_<hand>_per_grasp_ms``: wall time of the batch / batch size (batched, so the per-grasp
  cost falls with the batch; the load average is printed beside it);
- ``retarget_<hand>_tip_error_median_m`` / ``_p90_m``: robot fingertip distance from its scaled
  human target (:attr:`~grasp_data.retarget.RetargetResult.tip_error_m`);
- ``retarget_<hand>_contact_gap_median_m``: |distance| from the surface of the fingertips whose
  human finger touches the object;
- ``retarget_<hand>_contact_error_median_m``: distance of those fingertips from the human
  finger's contact point (its tip keypoint's nearest surface point) — what the grasp keeps of
  the human's, where ``tip_error`` compares with the whole scaled human hand, which a robot hand of
  other proportions cannot match without entering the object;
- ``retarget_<hand>_penetration_max_m``: deepest summed hand-point penetration of the batch.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

#: Hands the benchmark retargets to.
RETARGET_HANDS = ("shadow", "oymotion", "inspire")
#: The sample records (written by ``python -m grasp_data.human_synthetic``).
SAMPLES = Path(__file__).resolve().parents[2] / "tests" / "data" / "human_grasps"


def bench_retarget(quick: bool = False, hands: tuple[str, ...] = RETARGET_HANDS,
                   samples: Path = SAMPLES) -> dict[str, float]:
    """Retargeting time per grasp and accuracy per hand (module docstring).

    Args:
        quick: a batch of 8 records and 100 iterations instead of 32 and the default 300.
        hands: hand names.
        samples: folder of record files (``*.json``; ``*.labels.json`` sidecars are skipped).

    Returns:
        ``{metric: value}`` (keys ``retarget_<hand>_…``, plus ``retarget_load_1min``); empty when
        ``samples`` holds no records (e.g. an installed package without the test data).
    """
    import torch

    from grasp_data.adaptation import ObjectSamples
    from grasp_data.engine import _hand_model
    from grasp_data.human_import import HumanImportConfig, human_contacts
    from grasp_data.human_records import load_records
    from grasp_data.retarget import RetargetConfig, Retargeter

    paths = sorted(p for p in Path(samples).glob("*.json") if not p.name.endswith(".labels.json"))
    if not paths:
        return {}
    records = load_records(paths)
    config = HumanImportConfig()
    batch = 8 if quick else 32
    rng = np.random.default_rng(0)
    pick = np.arange(batch) % len(records)
    keypoints = np.array([records[i].keypoints_m for i in pick]) + rng.normal(0.0, 0.002, (batch, 21, 3))
    objects = [ObjectSamples.of(r.instance, config.object_points) for r in records]
    contacts = [{c.finger: c.point_m for c in human_contacts(r, config)} for r in records]
    retarget_config = RetargetConfig(iterations=100) if quick else config.retarget
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out: dict[str, float] = {}
    try:
        for hand in hands:
            rt = Retargeter(_hand_model(hand), config=retarget_config)
            mask = np.array([[f in contacts[i] for f in rt.fingers] for i in pick])
            t0 = time.perf_counter()
            result = rt.retarget(keypoints, mask, [objects[i] for i in pick])
            wall = time.perf_counter() - t0
            gap = np.abs(result.surface_distance_m[mask])
            with torch.no_grad():
                tips = rt.keypoints(torch.as_tensor(result.root_pose), torch.as_tensor(result.q_act))[2].numpy()
            error = [np.linalg.norm(tips[b, rt.fingers.index(f)] - point) for b, i in enumerate(pick)
                     for f, point in contacts[i].items()]
            out.update({f"retarget_{hand}_per_grasp_ms": 1e3 * wall / batch,
                        f"retarget_{hand}_tip_error_median_m": float(np.median(result.tip_error_m)),
                        f"retarget_{hand}_tip_error_p90_m": float(np.percentile(result.tip_error_m, 90)),
                        f"retarget_{hand}_contact_gap_median_m": float(np.median(gap)),
                        f"retarget_{hand}_contact_error_median_m": float(np.median(error)),
                        f"retarget_{hand}_penetration_max_m": float(result.penetration_m.max())})
    finally:
        torch.set_num_threads(threads)
    out["retarget_load_1min"] = os.getloadavg()[0]
    return out


def main() -> int:
    """Print the benchmark as ``metric value`` lines."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--hands", nargs="+", default=list(RETARGET_HANDS))
    args = parser.parse_args()
    for key, value in bench_retarget(args.quick, tuple(args.hands)).items():
        print(f"{key:48s} {value:.4g}")  # noqa: T201 - developer tool output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
