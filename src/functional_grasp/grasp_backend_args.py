"""``--grasp-backend`` / ``--grasp-checkpoint``: choose the planner's grasp predictor from the command line.

Shared by ``fgrasp demo`` and the pipeline ``fgrasp eval``. The choice becomes the
``grasp_planner`` parameters ``grasp_backend`` and ``grasp_checkpoint`` of the ``sim`` graph
(:func:`planner_overrides`, applied after config/functional_grasp.yaml); flags left out keep the
file's values. An explicit checkpoint is checked before anything starts (file exists, is a network
checkpoint, is for the hand); the config-default checkpoint is not, because the planner then falls
back to the optimiser with a warning, which the commands show (:func:`fallback_warning`).

Pure module (argparse, PyYAML through :mod:`functional_grasp.graph_config`); no rclpy. The planner
modules are imported lazily (they load MuJoCo, which reads ``MUJOCO_GL`` once at import).
"""
from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Node whose parameters the flags set, and the graph whose parameters are the defaults.
PLANNER_NODE, GRAPH = "grasp_planner", "sim"
#: Exit code of a command refused for its backend flags (as argparse's usage errors): nothing started.
EXIT_BAD_BACKEND = 2
#: Hex digits of a checkpoint's SHA-256 shown in one-line summaries (result files keep all 64).
SHORT_SHA_CHARS = 12


class GraspBackendError(ValueError):
    """The grasp backend flags cannot be used (checkpoint missing, unreadable, for another hand, or unused)."""


def add_grasp_backend_arguments(parser, what: str) -> None:
    """Add ``--grasp-backend`` and ``--grasp-checkpoint`` to ``parser`` (a parser or an argument group).

    Args:
        parser: where the flags go.
        what: the command's planner, for the help text (e.g. "the demo's planner node").
    """
    from grasp_planner.grasp_predictor import GRASP_BACKENDS    # lazily: it imports MuJoCo (MUJOCO_GL first)

    parser.add_argument(
        "--grasp-backend", choices=GRASP_BACKENDS, default=None,
        help=f"grasp predictor of {what}: optimiser (search over wrist poses + finger closure) or network "
             "(the D(R,O) network; without a usable checkpoint it warns and plans with the optimiser) "
             "(default: grasp_backend in config/functional_grasp.yaml)")
    parser.add_argument(
        "--grasp-checkpoint", default=None, metavar="PATH",
        help="network checkpoint (.safetensors) for --hand; checked before anything starts (default: "
             "grasp_checkpoint in config/functional_grasp.yaml, empty = config/checkpoints/<hand>.safetensors)")


def configured_planner_parameters(hand: str) -> dict[str, Any]:
    """The ``grasp_planner`` parameters of the ``sim`` graph for ``hand``, without command-line overrides."""
    from functional_grasp.demo import node_parameters

    return node_parameters(GRAPH, PLANNER_NODE, {"hand": hand})


def planner_overrides(hand: str, backend: str | None, checkpoint: str | Path | None) -> dict[str, str]:
    """Validated ``grasp_planner`` parameter overrides for the flags (empty when neither was given).

    Args:
        hand: the hand the planner plans for.
        backend: ``--grasp-backend`` (None: the params file's).
        checkpoint: ``--grasp-checkpoint`` (None: the params file's).

    Returns:
        ``{"grasp_backend": ..., "grasp_checkpoint": <absolute path>}``, only the keys given.

    Raises:
        GraspBackendError: unknown backend; a checkpoint that is missing, not a network
            checkpoint or for another hand; a checkpoint while the backend is not ``network``.
    """
    from grasp_planner.grasp_predictor import GRASP_BACKENDS

    out: dict[str, str] = {}
    if backend is not None:
        if backend not in GRASP_BACKENDS:
            raise GraspBackendError(f"unknown grasp backend '{backend}'; choose one of: {', '.join(GRASP_BACKENDS)}")
        out["grasp_backend"] = backend
    if checkpoint is None:
        return out
    path = Path(checkpoint).expanduser().resolve()
    if not path.is_file():
        raise GraspBackendError(f"grasp checkpoint not found: {path} (--grasp-checkpoint {checkpoint}); give an "
                                f"existing .safetensors file, e.g. config/checkpoints/{hand}.safetensors or the "
                                "last.safetensors of `fgrasp train`")
    effective = backend or str(configured_planner_parameters(hand).get("grasp_backend", ""))
    if effective != "network":
        raise GraspBackendError(
            f"--grasp-checkpoint {checkpoint} is read only by the network backend, but the planner would use "
            f"'{effective}'" + ("" if backend else " (grasp_backend in config/functional_grasp.yaml)")
            + ": add --grasp-backend network, or drop --grasp-checkpoint")
    check_checkpoint(path, hand)
    out["grasp_checkpoint"] = str(path)
    return out


def check_checkpoint(path: Path, hand: str) -> None:
    """Refuse an existing file the planner would not load: not a network checkpoint, or for another hand.

    Raises:
        GraspBackendError: the message names the path and what to do.
    """
    from grasp_planner.network.checkpoint import read_header

    try:
        config, _ = read_header(path)
    except ValueError as exc:
        raise GraspBackendError(f"--grasp-checkpoint: {exc}") from None
    if config.hand != hand:
        raise GraspBackendError(f"grasp checkpoint {path} was trained for hand '{config.hand}', not '{hand}': "
                                f"pass --hand {config.hand}, or a checkpoint trained for '{hand}'")


def refuse_with_network_mode(args: argparse.Namespace) -> str:
    """Why ``fgrasp eval --network`` cannot take the backend flags (empty when none was given)."""
    given = [flag for flag, value in (("--grasp-backend", getattr(args, "grasp_backend", None)),
                                      ("--grasp-checkpoint", getattr(args, "grasp_checkpoint", None)))
             if value is not None]
    if not given:
        return ""
    verb = "choose" if len(given) > 1 else "chooses"
    return (f"{' and '.join(given)} {verb} the planner's predictor for the full-pipeline evaluation (fgrasp eval "
            "without --network); --network CHECKPOINT is a different evaluation (that checkpoint alone on "
            "generated objects, judged by the data-engine validator). Drop one of them")


def describe_backend(info: Mapping[str, Any] | None) -> str:
    """One summary line: ``network (<checkpoint>, sha256 1a2b…)``, ``optimiser``, or ``optimiser (… fell back …)``."""
    if not info:
        return "unknown (the planner reported no status)"
    text = str(info.get("backend"))
    if info.get("checkpoint"):
        sha = str(info.get("checkpoint_sha256") or "")[:SHORT_SHA_CHARS]
        text += f" ({info['checkpoint']}, sha256 {sha}…)"
    if info.get("fallback_reason"):
        text += f" (asked for {info.get('requested', 'network')}; fell back, see the warning)"
    if "goal_from" in info and info["goal_from"] is None:
        text += ", no goal"
    elif info.get("goal_from") and info.get("goal_from") != info.get("backend"):
        text += (f", goal from the {info['goal_from']} (none of the {info.get('backend')}'s candidates "
                 "could be executed)")
    return text


def fallback_warning(info: Mapping[str, Any] | None) -> str:
    """The planner's warning when it plans with the optimiser instead of the network asked for (else empty)."""
    return str((info or {}).get("fallback_reason") or "")


def backend_mismatch(overrides: Mapping[str, str], info: Mapping[str, Any] | None) -> str:
    """Why the planner's reported backend differs from the command line's (empty when it matches or is unknown).

    Args:
        overrides: :func:`planner_overrides` of the run.
        info: the ``grasp_backend`` entry of the planner's status.
    """
    if not info:
        return ""
    wrong = []
    if "grasp_backend" in overrides and info.get("requested") != overrides["grasp_backend"]:
        wrong.append(f"grasp_backend '{info.get('requested')}' (asked for '{overrides['grasp_backend']}')")
    if ("grasp_checkpoint" in overrides and info.get("checkpoint")
            and Path(str(info["checkpoint"])).resolve() != Path(overrides["grasp_checkpoint"])):
        wrong.append(f"checkpoint {info['checkpoint']} (asked for {overrides['grasp_checkpoint']})")
    if not wrong:
        return ""
    return ("grasp_planner is running with " + ", ".join(wrong) + ": the --grasp-backend/--grasp-checkpoint "
            "overrides did not reach the node")
