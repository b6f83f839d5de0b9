"""Dexterous hand descriptions: one YAML per hand in config/hands/, loaded into a HandDescription."""
from grasp_planner.hands.description import (ActuatorGains, HandDescription, JointCoupling,
                                             UnknownHandError, available_hands, load_hand)

__all__ = ["ActuatorGains", "HandDescription", "JointCoupling", "UnknownHandError",
           "available_hands", "load_hand"]
