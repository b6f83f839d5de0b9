"""``fgrasp record``: write the camera topics and the stack's outputs into a rosbag2 MCAP bag.

The bag appears at ``--out`` only when complete (written next to it, renamed at the end); Ctrl-C
or SIGTERM stops the recording and still leaves a valid bag of what arrived. Exit codes: 0 the
bag was written; 2 bad request (``--out`` exists, unknown message type); 1 any other failure
(nothing is left at ``--out``).
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from functional_grasp.bags import catalog
from functional_grasp.bags.bagfile import AtomicBagWriter, BagError
from functional_grasp.report import Reporter
from grasp_common import topics

EXIT_OK, EXIT_FAILED, EXIT_BAD_REQUEST = 0, 1, 2
#: Main-loop poll period while recording, seconds.
POLL_S = 0.05
#: With ``frames``: keep recording this long after the last colour image, so that the same
#: frame's depth image and CameraInfo (published right after it) are in the bag, seconds.
FRAME_GRACE_S = 0.1
#: With ``frames``: wait this long at most for the subscriptions to connect to the running
#: publishers before counting frames, so that the counted frames have every stream, seconds.
MATCH_TIMEOUT_S = 2.0
#: Time for the ROS graph to show the running publishers before matching is checked, seconds
#: (localhost discovery takes ~0.2 s with config/fastdds_localhost.xml).
DISCOVERY_S = 0.5


@dataclass(frozen=True)
class RecordConfig:
    """What one recording does.

    Attributes:
        out: bag folder to create (must not exist).
        topics: topics to record; catalog topics get their project QoS, others are discovered.
        duration_s: stop after this long, seconds (None: no limit).
        frames: stop after this many colour images (``/camera/color/image_raw``; None: no limit).
        domain_id: ``ROS_DOMAIN_ID`` to record on (None: the environment's).
        compress: zstd-compress the MCAP chunks.
    """

    out: Path
    topics: tuple[str, ...] = catalog.RECORD_DEFAULT
    duration_s: float | None = None
    frames: int | None = None
    domain_id: int | None = None
    compress: bool = True

    def __post_init__(self) -> None:
        if not self.topics or not all(t.startswith("/") and len(t) > 1 for t in self.topics):
            raise ValueError(f"topics must be absolute names like /camera/color/image_raw, got {list(self.topics)}")
        if self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError(f"duration must be > 0 s, got {self.duration_s}")
        if self.frames is not None and self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.frames is not None and topics.COLOR_IMAGE not in self.topics:
            raise ValueError(f"--frames counts {topics.COLOR_IMAGE}, which is not among the recorded topics")
        object.__setattr__(self, "out", Path(self.out))


def record_bag(config: RecordConfig, rep: Reporter | None = None) -> int:
    """Record until the duration or frame count is reached, or until interrupted; the exit code."""
    from tqdm import tqdm

    from functional_grasp.bags.recorder import BagRecorder
    from functional_grasp.bags.session import ros_node
    from grasp_common.rosenv import localhost_env

    rep = rep or Reporter()
    try:
        writer = AtomicBagWriter(config.out, compress=config.compress)
    except BagError as exc:
        rep.error(str(exc))
        return EXIT_BAD_REQUEST
    localhost_env(force=True)
    frames = threading.Semaphore(0)
    interrupted = False
    try:
        with writer, ros_node("fgrasp_record", config.domain_id) as node:
            recorder = BagRecorder(node, writer, config.topics,
                                   on_message=lambda t: frames.release() if t == topics.COLOR_IMAGE else None)
            t0, seen = time.monotonic(), 0
            bar = tqdm(total=config.frames, unit="frame", desc="recording", disable=True)
            try:
                if config.frames is not None:  # messages before this are recorded, frames counted after it
                    time.sleep(DISCOVERY_S)
                    recorder.wait_matched(MATCH_TIMEOUT_S)
                    while frames.acquire(blocking=False):
                        pass
                rep.stage("record", "started", f"{len(config.topics)} topics -> {config.out}"
                          + (f"; stopping after {config.duration_s:g} s" if config.duration_s else "")
                          + (f"; stopping after {config.frames} frames" if config.frames else "")
                          + ("" if config.duration_s or config.frames else "; Ctrl-C stops"))
                t0 = time.monotonic()
                bar = tqdm(total=config.frames, unit="frame", desc="recording", disable=None, leave=False)
                while config.duration_s is None or time.monotonic() - t0 < config.duration_s:
                    if frames.acquire(timeout=POLL_S):
                        seen += 1
                        bar.update(1)
                        if config.frames is not None and seen >= config.frames:
                            time.sleep(FRAME_GRACE_S)
                            break
            except KeyboardInterrupt:
                interrupted = True
            finally:
                bar.close()
                recorder.close()
            waiting = recorder.waiting
    except BagError as exc:
        rep.error(str(exc))
        return EXIT_BAD_REQUEST
    except ValueError as exc:  # an uninstalled message type of a catalog topic
        rep.error(f"cannot record: {exc}")
        return EXIT_BAD_REQUEST
    except Exception as exc:  # noqa: BLE001 - the partial bag is already removed; say what happened
        rep.error(f"recording failed: {type(exc).__name__}: {exc}; nothing was written to {config.out}")
        return EXIT_FAILED
    rep.stage("record", "stopped", ("interrupted; " if interrupted else "")
              + f"{sum(writer.counts.values())} messages in {time.monotonic() - t0:.1f} s")
    rep.table([(t, n) for t, n in writer.counts.items()] + [(t, "not published (type unknown)") for t in waiting],
              headers=("topic", "messages"), title=f"== wrote {config.out} ==")
    empty = [t for t, n in writer.counts.items() if n == 0] + waiting
    if empty:
        rep.warning(f"no messages on {', '.join(empty)}: check the names (remapped camera driver?) and that the "
                    "publishers run on this ROS_DOMAIN_ID")
    return EXIT_OK
