"""Motion backends: a planner interface, the built-in joint planner, and a lazy moveit_py adapter."""
from __future__ import annotations

from typing import Any

from grasp_planner.motion.base import (BASE_FRAME, JointDict, MotionBackend, MotionPlan, PlanningError,
                                       PlanningScene, resolve_goals)

#: Names accepted by :func:`make_backend`.
BACKEND_NAMES: tuple[str, ...] = ("builtin", "moveit_py")


def make_backend(name: str, **kwargs: Any) -> MotionBackend:
    """Create a motion backend by name.

    Args:
        name: ``"builtin"`` (:class:`~grasp_planner.motion.builtin.BuiltinJointPlanner`) or
            ``"moveit_py"`` (:class:`~grasp_planner.motion.moveit_py_backend.MoveItPyBackend`;
            moveit_py itself is imported on first use).
        **kwargs: passed to the backend constructor.

    Raises:
        ValueError: unknown ``name`` (the message lists the options).
    """
    if name == "builtin":
        from grasp_planner.motion.builtin import BuiltinJointPlanner

        return BuiltinJointPlanner(**kwargs)
    if name == "moveit_py":
        from grasp_planner.motion.moveit_py_backend import MoveItPyBackend

        return MoveItPyBackend(**kwargs)
    raise ValueError(f"unknown motion backend '{name}'; choose one of: {', '.join(BACKEND_NAMES)}")


__all__ = ["BACKEND_NAMES", "BASE_FRAME", "JointDict", "MotionBackend", "MotionPlan", "PlanningError",
           "PlanningScene", "make_backend", "resolve_goals"]
