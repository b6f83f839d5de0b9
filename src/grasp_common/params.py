"""Parameter helpers shared by the nodes."""
from __future__ import annotations

from typing import Callable, Iterable

from rcl_interfaces.msg import SetParametersResult


def refuse_runtime_changes(names: Iterable[str], node_label: str) -> Callable[[list], SetParametersResult]:
    """An on-set-parameters callback refusing changes to ``names`` (read once at start-up).

    Args:
        names: parameters the node reads once into its frozen config.
        node_label: what the message calls the node, e.g. ``"perception"``.
    """
    frozen = frozenset(names)

    def callback(params) -> SetParametersResult:
        ours = [p.name for p in params if p.name in frozen]
        if ours:
            return SetParametersResult(successful=False, reason=(
                f"{', '.join(ours)}: {node_label} parameters are read once at start-up; restart the "
                "node (or relaunch with the new value in the YAML)"))
        return SetParametersResult(successful=True)

    return callback
