"""Franka Emika Panda constants (names as the URDF and franka_ros2 name them; SI units)."""
from __future__ import annotations

import numpy as np

ARM_JOINT_NAMES: tuple[str, ...] = tuple(f"panda_joint{i}" for i in range(1, 8))
BASE_FRAME = "panda_link0"
FLANGE_FRAME = "panda_link8"          # 0.107 m beyond panda_link7 along its z axis
URDF_RELATIVE = "panda_description/urdf/panda.urdf"   # inside example-robot-data

#: (7, 2) radians, from the Franka datasheet / URDF.
JOINT_LIMITS_RAD = np.array([
    [-2.8973, 2.8973], [-1.7628, 1.7628], [-2.8973, 2.8973], [-3.0718, -0.0698],
    [-2.8973, 2.8973], [-0.0175, 3.7525], [-2.8973, 2.8973]])
#: (7,) rad/s, from the Franka datasheet / URDF.
VELOCITY_LIMITS_RAD_S = np.array([2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61])
#: Ready pose (radians), the usual franka_ros "ready" configuration.
READY_Q = np.array([0.0, -0.785398, 0.0, -2.356194, 0.0, 1.570796, 0.785398])
#: Observation pose (radians): arm folded back and up so a wrist-mounted dexterous hand stays
#: out of the tabletop camera's view (all hand geometry above 0.40 m and behind x = 0.30 m).
OBSERVE_Q = np.array([-0.101, -0.915, -0.053, -2.231, -0.931, 1.541, 0.549])
