"""Record topics into a bag over real rclpy: raw (CDR bytes) subscriptions, the right QoS per topic.

:class:`BagRecorder` takes a node (it is not one), like pymoveit2's helpers. Topics of
:mod:`.catalog` are subscribed at once with their project QoS; any other topic is subscribed as
soon as a publisher appears, with its type from the graph and QoS compatible with every
publisher (best effort if any publisher is, transient local only if all are).
"""
from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterable

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from functional_grasp.bags.bagfile import AtomicBagWriter, BagError
from functional_grasp.bags.catalog import KNOWN, ros_type_parts
from grasp_common import qos as project_qos

#: How often topics not in the catalog are looked up in the ROS graph, seconds.
DISCOVERY_PERIOD_S = 0.5
#: Queue depth used for a discovered topic, messages.
DISCOVERED_DEPTH = 10


def qos_profile(name: str) -> QoSProfile:
    """The :mod:`grasp_common.qos` profile called ``name`` (``sensor``, ``latched``, ``state``, ``command``)."""
    profiles = {"sensor": project_qos.SENSOR, "latched": project_qos.LATCHED,
                "state": project_qos.STATE, "command": project_qos.COMMAND}
    if name not in profiles:
        raise ValueError(f"unknown QoS profile '{name}'; known: {', '.join(profiles)}")
    return profiles[name]


def message_class(msgtype: str) -> type:
    """The rclpy message class of ``sensor_msgs/msg/Image``-style type names.

    Raises:
        ValueError: the type name is malformed or its package is not installed.
    """
    module, name = ros_type_parts(msgtype)
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ValueError(f"message type {msgtype} is not installed in this environment "
                         f"(pip install the ros-jazzy-{module.split('.')[0].replace('_', '-')} wheel)") from None


def rosbags_qos(profile: QoSProfile):
    """``profile`` as a rosbags ``Qos`` (for the bag's offered_qos_profiles metadata)."""
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                    QosTime)

    zero = QosTime(0, 0)
    return Qos(history=QosHistory(int(profile.history)), depth=int(profile.depth),
               reliability=QosReliability(int(profile.reliability)),
               durability=QosDurability(int(profile.durability)),
               deadline=zero, lifespan=zero, liveliness=QosLiveliness(int(profile.liveliness)),
               liveliness_lease_duration=zero, avoid_ros_namespace_conventions=False)


def compatible_qos(publishers: Iterable) -> QoSProfile:
    """A subscription QoS that matches every publisher in ``publishers`` (rclpy TopicEndpointInfo)."""
    infos = list(publishers)
    best_effort = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos)
    latched = bool(infos) and all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
    return QoSProfile(depth=DISCOVERED_DEPTH, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


class BagRecorder:
    """Write every message of ``topics`` into ``writer`` with its receive time (wall clock, ns).

    Args:
        node: the node that owns the subscriptions.
        writer: the open output bag.
        topics: topic names; catalog topics get their type and QoS from :mod:`.catalog`.
        on_message: called with the topic name after each message is written (any thread).
        callback_group: of the subscriptions and the discovery timer.
    """

    def __init__(self, node: Node, writer: AtomicBagWriter, topics: Iterable[str],
                 on_message: Callable[[str], None] | None = None, callback_group=None) -> None:
        self._node = node
        self._writer = writer
        self._on_message = on_message
        self._group = callback_group
        self._lock = threading.Lock()
        self._closed = False
        self._subs: dict[str, object] = {}
        self._pending: list[str] = []
        for topic in dict.fromkeys(topics):
            spec = KNOWN.get(topic)
            if spec is None:
                self._pending.append(topic)
            else:
                self._subscribe(spec.name, spec.msgtype, qos_profile(spec.qos))
        self._timer = None
        if self._pending:
            self._timer = node.create_timer(DISCOVERY_PERIOD_S, self._discover, callback_group=callback_group)
            self._discover()

    @property
    def subscribed(self) -> list[str]:
        """Topics with a subscription so far."""
        return list(self._subs)

    @property
    def waiting(self) -> list[str]:
        """Topics not in the catalog whose type is not known yet (no publisher seen)."""
        return list(self._pending)

    def unmatched(self) -> list[str]:
        """Subscribed topics with a publisher in the graph that is not connected to us yet."""
        return [t for t, sub in self._subs.items() if sub.get_publisher_count() < self._node.count_publishers(t)]

    def wait_matched(self, timeout_s: float) -> list[str]:
        """Wait (bounded) until :meth:`unmatched` is empty; returns the topics still unmatched."""
        deadline = time.monotonic() + timeout_s
        while (left := self.unmatched()) and time.monotonic() < deadline:
            time.sleep(0.02)
        return left

    def _subscribe(self, topic: str, msgtype: str, profile: QoSProfile) -> None:
        conn = self._writer.add_topic(topic, msgtype, [rosbags_qos(profile)])

        def callback(data: bytes, conn=conn, topic=topic) -> None:
            with self._lock:
                if self._closed:
                    return
                self._writer.write(conn, time.time_ns(), data)
            if self._on_message is not None:
                self._on_message(topic)

        self._subs[topic] = self._node.create_subscription(
            message_class(msgtype), topic, callback, profile, raw=True, callback_group=self._group)

    def _discover(self) -> None:
        if not self._pending:
            return
        types = dict(self._node.get_topic_names_and_types())
        for topic in list(self._pending):
            if topic in types and types[topic]:
                profile = compatible_qos(self._node.get_publishers_info_by_topic(topic))
                self._pending.remove(topic)
                try:
                    self._subscribe(topic, types[topic][0], profile)
                except (BagError, ValueError) as exc:
                    self._node.get_logger().error(f"not recording {topic}: {exc}")
                    continue
                self._node.get_logger().info(f"recording {topic} ({types[topic][0]})")

    def close(self) -> None:
        """Stop writing (messages arriving later are dropped) and remove the subscriptions."""
        with self._lock:
            self._closed = True
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
        for sub in self._subs.values():
            self._node.destroy_subscription(sub)
        self._subs.clear()

