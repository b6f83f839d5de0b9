"""Arm descriptions (constants modules, one per arm)."""
