"""All QoS profiles of the stack, in one place."""
from __future__ import annotations

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

#: Camera streams (color, depth, camera info): best effort, keep last 5.
SENSOR = qos_profile_sensor_data

#: Latched results (object cloud, mask, grasp, joint goal, grasp result): reliable, transient local, depth 1.
LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)

#: State streams (joint states, object pose): reliable, volatile, keep last 10.
STATE = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                   reliability=ReliabilityPolicy.RELIABLE,
                   durability=DurabilityPolicy.VOLATILE)

#: Commands (joint goals, trajectories): reliable, volatile, keep last 1.
COMMAND = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
