"""Dexterous hand descriptions: one YAML per hand in config/hands/, loaded into a HandDescription."""
from grasp_planner.hands.description import (HandDescription, UnknownHandError, available_hands,
                                             load_hand)

__all__ = ["HandDescription", "UnknownHandError", "available_hands", "load_hand"]
