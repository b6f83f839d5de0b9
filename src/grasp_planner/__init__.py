"""Grasp planning: robot and hand descriptions, grasp synthesis, Franka IK, motion backends, node."""
