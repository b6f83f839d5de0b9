"""Save and load D(R,O) network checkpoints as ``.safetensors`` (no pickle: loading runs no code).

The safetensors header holds the JSON config, the hand name and a format tag; a checkpoint for
another hand or another config is refused with the differing fields named.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from grasp_planner.network.config import NetworkConfig
from grasp_planner.network.model import DRONetwork

#: Format tag stored in every checkpoint header.
CHECKPOINT_FORMAT = "functional_grasp.dro_network/1"


class CheckpointMismatchError(ValueError):
    """The checkpoint was made for another hand or another network config."""


def save_checkpoint(path: str | Path, model: DRONetwork, extra: dict[str, Any] | None = None) -> Path:
    """Write the model weights, config and hand name to ``path`` (atomically: temp file + rename).

    Args:
        path: destination ``.safetensors`` file (parent folders are created).
        model: the network.
        extra: small JSON-serialisable metadata (e.g. ``{"step": 1200, "l1_m": 0.004}``).

    Returns:
        The path written.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": CHECKPOINT_FORMAT, "hand": model.config.hand,
                "config": json.dumps(model.config.to_dict(), sort_keys=True),
                "extra": json.dumps(extra or {}, sort_keys=True)}
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    return write_safetensors_atomic(path, state, metadata)


def write_safetensors_atomic(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write ``tensors`` + string ``metadata`` to ``path`` via a temp file and a rename: a reader
    never sees a half-written file, and an interrupted write leaves the old one in place."""
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_header(path: str | Path) -> tuple[NetworkConfig, dict[str, Any]]:
    """Config and extra metadata of a checkpoint, without loading the weights.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a functional_grasp network checkpoint.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"network checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"{path} is not a readable .safetensors checkpoint: {exc}") from exc
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a D(R,O) network checkpoint (format {meta.get('format')!r}, "
                         f"expected {CHECKPOINT_FORMAT!r})")
    return NetworkConfig.from_dict(json.loads(meta["config"])), json.loads(meta.get("extra", "{}"))


def load_checkpoint(path: str | Path, hand: str | None = None,
                    expected_config: NetworkConfig | None = None) -> tuple[DRONetwork, dict[str, Any]]:
    """Build the network from a checkpoint, refusing one made for another hand or config.

    Args:
        path: ``.safetensors`` file written by :func:`save_checkpoint`.
        hand: the hand the caller plans for; refused if the checkpoint is for another hand.
        expected_config: the config the caller expects; refused if any field differs.

    Returns:
        ``(model in eval mode, extra metadata)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointMismatchError: other hand, other config, or weights that do not fit the config.
    """
    from safetensors.torch import load_file

    config, extra = read_header(path)
    if hand is not None and config.hand != hand:
        raise CheckpointMismatchError(f"checkpoint {path} was trained for hand '{config.hand}', not '{hand}': "
                                      f"train one for '{hand}' or plan with the optimiser")
    if expected_config is not None:
        diff = expected_config.differences(config)
        if diff:
            listed = ", ".join(f"{k}: expected {a!r}, checkpoint has {b!r}" for k, (a, b) in diff.items())
            raise CheckpointMismatchError(f"checkpoint {path} was made with another network config ({listed})")
    # The image encoder weights are in the checkpoint: do not require the pretrained file again.
    model = DRONetwork(NetworkConfig.from_dict({**config.to_dict(), "image_encoder_checkpoint": ""}))
    model.config = config
    state = load_file(str(path))
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(f"checkpoint {path}: weights do not fit its config (missing {missing[:5]}, "
                                      f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]})")
    model.load_state_dict(state)
    model.eval()
    return model, extra


def parameter_bytes(model: torch.nn.Module) -> int:
    """Size of the model's parameters and buffers in bytes (≈ checkpoint size)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())
