"""Shared ROS plumbing for functional_grasp: topic names, QoS profiles and the localhost DDS environment.

A leaf package: it imports nothing of ours, so every node package may depend on it.
"""
