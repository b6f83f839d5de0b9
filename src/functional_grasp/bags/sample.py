"""Regenerate the shipped sample bags from the simulator (the bags ``tests/test_bags.py`` replays).

    .venv/bin/python -m functional_grasp.bags.sample --force      # rewrites tests/data/bags/mug_sim*

1. Starts the ``sim`` graph (default mug scene, Shadow hand) with the planner's ``execute``
   off, so the arm stays still, and lets the scene settle.
2. Records ``--frames`` RGB-D frames with CameraInfo and ``/joint_states`` into
   ``<out-dir>/mug_sim`` (``fgrasp record`` core, zstd-compressed MCAP).
3. Replays that bag through perception + planner (``fgrasp replay`` core) into
   ``<out-dir>/mug_sim_expected``: the reference outputs for ``--expect``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from functional_grasp.bags import catalog
from functional_grasp.report import Reporter

#: Default folder of the shipped sample bags.
DEFAULT_OUT_DIR = Path(__file__).resolve().parents[3] / "tests" / "data" / "bags"
#: Folder names of the input bag and of its reference outputs.
INPUT_NAME, EXPECTED_NAME = "mug_sim", "mug_sim_expected"
#: Frames recorded by default.
DEFAULT_FRAMES = 5
#: Wait after the simulator's first camera frame before recording (object settles), seconds.
SETTLE_S = 2.0
#: Budget for the simulator to publish its first frame, seconds.
FIRST_FRAME_TIMEOUT_S = 60.0


def make_sample(out_dir: Path, frames: int = DEFAULT_FRAMES, force: bool = False,
                rep: Reporter | None = None) -> int:
    """Write ``<out_dir>/mug_sim`` and ``<out_dir>/mug_sim_expected``; returns an exit code (0 ok)."""
    from functional_grasp.bags.record import RecordConfig, record_bag
    from functional_grasp.bags.replay import ReplayConfig, run_replay
    from functional_grasp.bags.session import ros_node
    from functional_grasp.demo import pick_domain_id
    from functional_grasp.launcher import launch_graph
    from grasp_common import qos, topics
    from grasp_common.rosenv import localhost_env

    rep = rep or Reporter()
    bag, expected = out_dir / INPUT_NAME, out_dir / EXPECTED_NAME
    for path in (bag, expected):
        if path.exists():
            if not force:
                rep.error(f"{path} exists; pass --force to regenerate it")
                return 2
            shutil.rmtree(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    domain = pick_domain_id()
    localhost_env(force=True, domain_id=domain)
    with launch_graph("sim", {"object": "mug", "hand": "shadow"}, domain_id=domain,
                      extra_params={"grasp_planner": {"execute": False}}) as graph:
        rep.stage("sim", "started", f"ROS domain {domain}, logs in {graph.log_dir}")
        from sensor_msgs.msg import Image

        seen: list[float] = []
        with ros_node("fgrasp_sample_probe", domain) as node:
            node.create_subscription(Image, topics.COLOR_IMAGE, lambda _m: seen.append(time.monotonic()),
                                     qos.SENSOR)
            deadline = time.monotonic() + FIRST_FRAME_TIMEOUT_S
            while not seen and time.monotonic() < deadline and graph.alive():
                time.sleep(0.05)
        if not seen:
            rep.error(f"the simulator published no camera frame within {FIRST_FRAME_TIMEOUT_S:g} s; "
                      f"see {graph.log_dir}")
            return 1
        time.sleep(SETTLE_S)
        code = record_bag(RecordConfig(out=bag, topics=tuple(s.name for s in catalog.INPUTS),
                                       frames=frames, domain_id=domain), rep)
    if code != 0:
        return code
    return run_replay(ReplayConfig(bag=bag, out=expected, fast=True), rep)


def main(argv: list[str] | None = None) -> int:
    """Command line of this module (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m functional_grasp.bags.sample", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help=f"default: {DEFAULT_OUT_DIR}")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help=f"RGB-D frames (default {DEFAULT_FRAMES})")
    parser.add_argument("--force", action="store_true", help="replace existing sample bags")
    args = parser.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    return make_sample(args.out_dir, args.frames, args.force)


if __name__ == "__main__":
    sys.exit(main())
