"""Publish a bag's messages as raw CDR bytes, with the original timing or frame by frame.

:class:`BagPlayer` takes a node (it is not one) and creates one publisher per played topic
with the project's QoS for it (:mod:`.catalog`). Original timing keeps each message's offset
from the first one (wall clock); ``fast`` publishes without waiting and, after each RGB-D frame
(colour and depth with the same header stamp), calls ``after_frame(stamp_ns)``, which blocks
until the stack has consumed the frame.
"""
from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Sequence

from rclpy.node import Node

from functional_grasp.bags.bagfile import BagMessage
from functional_grasp.bags.catalog import TopicSpec
from functional_grasp.bags.recorder import message_class, qos_profile
from grasp_common import topics

#: Sleep slice while waiting for a message's time (keeps Ctrl-C responsive), seconds.
SLEEP_SLICE_S = 0.05
#: Poll period while waiting for subscribers, seconds.
POLL_S = 0.02
#: The two streams that make one RGB-D frame.
FRAME_TOPICS = (topics.COLOR_IMAGE, topics.DEPTH_IMAGE)


def header_stamp_ns(data: bytes) -> int | None:
    """Header stamp of a serialized message whose first field is a ``std_msgs/Header``, ns.

    CDR layout: 4 bytes encapsulation (byte 1: 0 big-, 1 little-endian), then the stamp's
    ``int32 sec`` and ``uint32 nanosec``. None when ``data`` is too short.
    """
    if len(data) < 12:
        return None
    sec, nanosec = struct.unpack_from("<iI" if data[1] == 1 else ">iI", data, 4)
    return sec * 1_000_000_000 + nanosec


class BagPlayer:
    """Play messages of ``specs`` topics from a bag into the ROS graph.

    Args:
        node: the node owning the publishers.
        specs: the topics to play (name, type, QoS).
    """

    def __init__(self, node: Node, specs: Sequence[TopicSpec]) -> None:
        self._node = node
        self._pubs = {s.name: node.create_publisher(message_class(s.msgtype), s.name, qos_profile(s.qos))
                      for s in specs}
        self.published = 0

    def missing_subscribers(self) -> list[str]:
        """Played topics nobody subscribes to yet."""
        return [name for name, pub in self._pubs.items() if pub.get_subscription_count() == 0]

    def wait_for_subscribers(self, timeout_s: float, should_stop: Callable[[], bool] = lambda: False) -> list[str]:
        """Wait (bounded) until every played topic has a subscriber; returns those still without one."""
        deadline = time.monotonic() + timeout_s
        while (missing := self.missing_subscribers()) and time.monotonic() < deadline and not should_stop():
            time.sleep(POLL_S)
        return missing

    def play(self, messages: Iterable[BagMessage], fast: bool = False,
             after_frame: Callable[[int], None] | None = None,
             progress: Callable[[BagMessage], None] | None = None) -> int:
        """Publish ``messages`` (log-time order) on their topics; returns how many were published.

        Args:
            messages: from :func:`functional_grasp.bags.bagfile.read_messages`; topics without a
                publisher here are skipped.
            fast: no waiting between messages; ``after_frame`` paces the frames instead.
            after_frame: called with the stamp (ns) once both images of a frame are published
                (fast mode only).
            progress: called after each published message.
        """
        t0_wall = first_ns = None
        sent_frame: dict[int, set[str]] = {}
        count = 0
        for msg in messages:
            pub = self._pubs.get(msg.topic)
            if pub is None:
                continue
            if not fast:
                if first_ns is None:
                    t0_wall, first_ns = time.monotonic(), msg.log_time_ns
                target = t0_wall + (msg.log_time_ns - first_ns) * 1e-9
                while (wait := target - time.monotonic()) > 0:
                    time.sleep(min(wait, SLEEP_SLICE_S))
            pub.publish(msg.data)
            count += 1
            self.published += 1
            if progress is not None:
                progress(msg)
            if fast and after_frame is not None and msg.topic in FRAME_TOPICS:
                stamp = header_stamp_ns(msg.data)
                if stamp is not None:
                    done = sent_frame.setdefault(stamp, set())
                    done.add(msg.topic)
                    if done == set(FRAME_TOPICS):
                        del sent_frame[stamp]
                        after_frame(stamp)
        return count
