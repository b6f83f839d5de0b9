"""Test node for the launcher: publish its name and parameter values as JSON on `echo`, 10 Hz.

Started by tests/test_launcher.py through functional_grasp.launcher from a temporary graphs
YAML; `echo` is relative so a remapping moves it.
"""
from __future__ import annotations

import json

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

#: Period of the echo message, seconds.
ECHO_PERIOD_S = 0.1


class EchoNode(Node):
    """Publish the node's name and its parameters (greeting, gains, flag, count, label)."""

    def __init__(self):
        super().__init__("echo")
        self.declare_parameter("greeting", "default")
        self.declare_parameter("gains", [0.0])
        self.declare_parameter("flag", False)
        self.declare_parameter("count", 0)
        self.declare_parameter("label", "none")
        self._pub = self.create_publisher(String, "echo",
                                          QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        self.create_timer(ECHO_PERIOD_S, self._tick)

    def _tick(self) -> None:
        names = ("greeting", "gains", "flag", "count", "label")
        body = {name: self.get_parameter(name).value for name in names}
        body["gains"] = list(body["gains"])
        body["node"] = self.get_name()
        self._pub.publish(String(data=json.dumps(body)))


def main(args=None) -> int:
    rclpy.init(args=args)
    node = EchoNode()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
