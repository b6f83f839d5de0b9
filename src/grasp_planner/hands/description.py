"""Hand description: joints (by name), limits, couplings, mount onto the Franka flange, model file,
key frames.

Joint sets of a hand (all by name, model order):

- ``joint_names``: every hinge/slide joint of the model (what ``/joint_states`` reports);
- ``fixed_joints``: held at a constant by the planner (e.g. the Shadow Hand's wrist);
- coupling followers: driven by another joint, ``q_follower = multiplier * q_leader + offset``
  (URDF ``<mimic>``, MJCF joint equality constraints);
- ``actuated_joints``: the rest, the hand's independent DoF. ``coupling_matrix()`` maps them
  onto every joint: ``q_full = A @ q_act + b``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml
from scipy.spatial.transform import Rotation

from grasp_planner.hands.model_loading import joint_couplings, load_model_spec
from grasp_planner.model_paths import installed_model

#: A follower/fixed joint named in a pose must match its derived value this closely (radians).
_CONSISTENT_RAD = 1e-6


class UnknownHandError(ValueError):
    """The requested hand has no description YAML."""


def _hands_dir() -> Path:
    from grasp_common.rosenv import config_dir

    return config_dir() / "hands"


def available_hands() -> list[str]:
    """Names of the hands that have a ``config/hands/<name>.yaml``."""
    return sorted(p.stem for p in _hands_dir().glob("*.yaml"))


@dataclass(frozen=True)
class JointCoupling:
    """One joint driven by another: ``q_follower = multiplier * q_leader + offset`` (radians)."""

    follower: str
    leader: str
    multiplier: float
    offset: float = 0.0

    def __post_init__(self) -> None:
        if self.follower == self.leader:
            raise ValueError(f"joint '{self.follower}' cannot be coupled to itself")
        if not (np.isfinite(self.multiplier) and np.isfinite(self.offset)):
            raise ValueError(f"coupling {self.follower} <- {self.leader}: multiplier and offset "
                             "must be finite")


@dataclass(frozen=True)
class ActuatorGains:
    """Position servos the simulator puts on the actuated joints of a model that has none.

    Attributes:
        kp_nm_per_rad: position gain, N·m/rad.
        kv_nms_per_rad: actuator velocity damping, N·m·s/rad.
        force_limit_nm: actuator torque limit, N·m (symmetric).
        armature_kgm2: rotor inertia added to every hand joint, kg·m².
        joint_damping_nms_per_rad: passive damping of every hand joint, N·m·s/rad.
    """

    kp_nm_per_rad: float
    kv_nms_per_rad: float
    force_limit_nm: float
    armature_kgm2: float
    joint_damping_nms_per_rad: float

    def __post_init__(self) -> None:
        for name in ("kp_nm_per_rad", "force_limit_nm", "armature_kgm2"):
            if not getattr(self, name) > 0:
                raise ValueError(f"actuator {name} must be > 0, got {getattr(self, name)}")
        if self.kv_nms_per_rad < 0 or self.joint_damping_nms_per_rad < 0:
            raise ValueError("actuator kv and joint damping must be >= 0")


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
    fingertip_offset: tuple[float, float, float]   # metres, distal-body frame (all fingers)
    fixed_joints: dict[str, float] = field(default_factory=dict)
    capsule_length_m: float = 0.3   # arm-planning envelope flange -> knuckles, metres
    capsule_radius_m: float = 0.05
    open_pose: dict[str, float] = field(default_factory=dict)
    closed_pose: dict[str, float] = field(default_factory=dict)
    couplings: tuple[JointCoupling, ...] = ()
    #: metres, distal-body frame: per-finger pad points overriding ``fingertip_offset``.
    fingertip_offsets: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    #: servos for models without actuators (None: the model brings its own).
    actuators: ActuatorGains | None = None
    #: metres: the D(R,O) network's candidates back off this far along their approach axis after the
    #: ranking (``NetworkPredictorConfig.standoff_m``), measured per hand (README, "Standoff").
    network_standoff_m: float = 0.0
    #: the network predictor's simulated check of its candidates is on by default for this hand
    #: (``NetworkPredictorConfig.sim_check``), measured per hand (README, "Simulated check").
    network_sim_check: bool = False

    def __post_init__(self) -> None:
        if "thumb" not in self.fingertips:
            raise ValueError(f"hand '{self.name}': fingertips must include 'thumb'")
        n = np.asarray(self.palm_normal, dtype=float)
        if abs(np.linalg.norm(n) - 1.0) > 1e-6:
            raise ValueError(f"hand '{self.name}': palm_normal {self.palm_normal} is not a unit vector")
        unknown = set(self.fingertip_offsets) - set(self.fingertips)
        if unknown:
            raise ValueError(f"hand '{self.name}': fingertip offsets for unknown fingers {sorted(unknown)}")
        if not 0.0 <= self.network_standoff_m <= 0.05:
            raise ValueError(f"hand '{self.name}': network_standoff_m must be in [0, 0.05] m, got {self.network_standoff_m}")
        followers = [c.follower for c in self.couplings]
        if len(set(followers)) != len(followers):
            raise ValueError(f"hand '{self.name}': a joint follows more than one leader: {followers}")
        both = set(followers) & set(self.fixed_joints)
        if both:
            raise ValueError(f"hand '{self.name}': joints {sorted(both)} are both fixed and coupled")

    def tip_offset(self, finger: str) -> np.ndarray:
        """(3,) metres: the pad point of ``finger`` in its distal-body frame."""
        return np.asarray(self.fingertip_offsets.get(finger, self.fingertip_offset), dtype=float)

    def model_spec(self):
        """A fresh, editable :class:`mujoco.MjSpec` of the hand model (URDF converted in memory)."""
        return load_model_spec(self.model_path)

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

        model = self.model_spec().compile()
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

    @property
    def coupling_of(self) -> dict[str, JointCoupling]:
        """Follower joint name -> its coupling."""
        return {c.follower: c for c in self.couplings}

    @property
    def actuated_joints(self) -> tuple[str, ...]:
        """The independent DoF: ``joint_names`` minus coupling followers minus ``fixed_joints``."""
        dependent = set(self.coupling_of) | set(self.fixed_joints)
        return tuple(n for n in self.joint_names if n not in dependent)

    @cached_property
    def actuated_limits(self) -> np.ndarray:
        """(n_actuated, 2) float64 radians: the range of each actuated joint that keeps it and every
        joint it drives within their limits (``actuated_joints`` order).

        A leader's own limits can allow more than its followers do (Inspire: thumb leader at its upper
        limit drives a follower 0.4 mrad past its own); planners clip actuated values to this range.
        """
        A, b = self.coupling_matrix()
        limits = self.joint_limits
        act = self.actuated_joints
        out = np.array([limits[self.joint_names.index(n)] for n in act], dtype=float)
        for i in range(len(self.joint_names)):
            nonzero = np.flatnonzero(A[i])
            if len(nonzero) != 1:
                continue
            j, m = int(nonzero[0]), float(A[i, nonzero[0]])
            ends = sorted(((limits[i, 0] - b[i]) / m, (limits[i, 1] - b[i]) / m))
            out[j] = max(out[j, 0], ends[0]), min(out[j, 1], ends[1])
        out.setflags(write=False)
        return out

    @cached_property
    def _coupling_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        names, act = self.joint_names, self.actuated_joints
        missing = sorted({n for c in self.couplings for n in (c.follower, c.leader)}
                         - set(names)) + sorted(set(self.fixed_joints) - set(names))
        if missing:
            raise ValueError(f"hand '{self.name}': coupled/fixed joints {missing} are not in the "
                             f"model {self.model_path}")
        col = {n: k for k, n in enumerate(act)}
        coupling = self.coupling_of
        A = np.zeros((len(names), len(act)))
        b = np.zeros(len(names))

        def resolve(name: str, depth: int = 0) -> tuple[np.ndarray, float]:
            """Row of A and entry of b for joint ``name`` (follows chains of couplings)."""
            if depth > len(names):
                raise ValueError(f"hand '{self.name}': coupling cycle through '{name}'")
            row = np.zeros(len(act))
            if name in col:
                row[col[name]] = 1.0
                return row, 0.0
            if name in self.fixed_joints:
                return row, float(self.fixed_joints[name])
            c = coupling[name]
            lead_row, lead_b = resolve(c.leader, depth + 1)
            return c.multiplier * lead_row, c.multiplier * lead_b + c.offset

        for i, name in enumerate(names):
            A[i], b[i] = resolve(name)
        A.setflags(write=False)
        b.setflags(write=False)
        return A, b

    def coupling_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """Affine map from actuated to all joints: ``q_full = A @ q_act + b``.

        Returns:
            ``A`` (n_joints, n_actuated) float64 and ``b`` (n_joints,) float64 radians, rows in
            ``joint_names`` order, columns in ``actuated_joints`` order; fixed joints are carried
            in ``b`` (read-only arrays).

        Raises:
            ValueError: a coupled or fixed joint is not in the model, or couplings form a cycle.
        """
        return self._coupling_matrix

    def expand(self, pose_by_name: dict[str, float]) -> dict[str, float]:
        """Full hand pose (radians, every joint by name) from actuated-joint values.

        Actuated joints not named are 0; followers get ``multiplier * leader + offset``, fixed
        joints their constant. A value within 1e-6 rad past a joint limit (float rounding of a
        coupling) is put on the limit. A follower or fixed joint may be named only with the value it
        would get anyway (so a full pose round-trips).

        Raises:
            ValueError: unknown joint names, or a follower/fixed joint set to another value.
        """
        unknown = set(pose_by_name) - set(self.joint_names)
        if unknown:
            raise ValueError(f"hand '{self.name}': unknown joints {sorted(unknown)}; the model has "
                             f"{', '.join(self.joint_names)}")
        A, b = self.coupling_matrix()
        q_act = np.array([float(pose_by_name.get(n, 0.0)) for n in self.actuated_joints])
        values = A @ q_act + b
        # A follower of a leader at its limit can land a rounding error past its own limit
        # (1.1 * 1.5 > 1.65 in floats), which the trajectory safety check would refuse.
        lo, hi = self.joint_limits[:, 0], self.joint_limits[:, 1]
        values = np.where((values > hi) & (values - hi <= _CONSISTENT_RAD), hi, values)
        values = np.where((values < lo) & (lo - values <= _CONSISTENT_RAD), lo, values)
        full = dict(zip(self.joint_names, values.tolist()))
        actuated = set(self.actuated_joints)
        for name, value in pose_by_name.items():
            if name in actuated or abs(float(value) - full[name]) <= _CONSISTENT_RAD:
                continue
            if name in self.fixed_joints:
                raise ValueError(f"hand '{self.name}': joint '{name}' is fixed at "
                                 f"{full[name]:.4f} rad, got {float(value):.4f}")
            c = self.coupling_of[name]
            raise ValueError(f"hand '{self.name}': joint '{name}' follows '{c.leader}' "
                             f"(q = {c.multiplier:g} * q_{c.leader} {c.offset:+g}); set "
                             f"'{c.leader}' instead of {float(value):.4f} rad")
        return full

    def full_pose(self, pose: dict[str, float]) -> dict[str, float]:
        """Same as :meth:`expand` (kept for callers written before couplings existed)."""
        return self.expand(pose)

    @property
    def planned_joints(self) -> tuple[str, ...]:
        """Joints the planner optimises (all but ``fixed_joints``)."""
        return tuple(n for n in self.joint_names if n not in self.fixed_joints)


def load_hand(name: str) -> HandDescription:
    """Load ``config/hands/<name>.yaml``.

    Couplings come from the model itself (URDF ``<mimic>``, MJCF joint equality constraints).

    Raises:
        UnknownHandError: no YAML for ``name`` (the message lists the known hands).
        ModelNotFoundError: the model file named in the YAML is not installed (the message names
            the file and where it was looked for).
        ValueError: the synergy poses name joints that are not actuated.
    """
    path = _hands_dir() / f"{name}.yaml"
    if not path.is_file():
        raise UnknownHandError(f"unknown hand '{name}': no {path}; known hands: "
                               f"{', '.join(available_hands()) or 'none'}")
    cfg = yaml.safe_load(path.read_text())
    model = cfg["model"]
    model_path = installed_model(str(model.get("package")), str(model["file"]))
    offset = cfg["fingertip_offset"]
    per_finger = offset if isinstance(offset, dict) else {}
    default_offset = (0.0, 0.0, 0.0) if per_finger else tuple(float(v) for v in offset)
    act = cfg.get("actuators")
    if act is not None and set(act) != set(ActuatorGains.__dataclass_fields__):
        raise ValueError(f"hand '{name}' ({path}): 'actuators' needs exactly the keys "
                         f"{sorted(ActuatorGains.__dataclass_fields__)}, got {sorted(act)}")
    hand = HandDescription(
        name=cfg["name"],
        model_path=model_path,
        root_body=cfg["root_body"],
        mount_xyz=tuple(cfg["mount"]["xyz"]),
        mount_rpy=tuple(cfg["mount"]["rpy"]),
        palm_body=cfg["palm_body"],
        palm_center=tuple(cfg["palm_center"]),
        palm_normal=tuple(cfg["palm_normal"]),
        fingertips=dict(cfg["fingertips"]),
        fingertip_offset=default_offset,
        fingertip_offsets={f: tuple(float(v) for v in xyz) for f, xyz in per_finger.items()},
        fixed_joints={k: float(v) for k, v in (cfg.get("fixed_joints") or {}).items()},
        capsule_length_m=float(cfg.get("arm_planning_capsule", {}).get("length_m", 0.3)),
        capsule_radius_m=float(cfg.get("arm_planning_capsule", {}).get("radius_m", 0.05)),
        open_pose={k: float(v) for k, v in (cfg.get("open_pose") or {}).items()},
        closed_pose={k: float(v) for k, v in (cfg.get("closed_pose") or {}).items()},
        couplings=tuple(JointCoupling(*c) for c in joint_couplings(load_model_spec(model_path))),
        actuators=None if act is None else ActuatorGains(**{k: float(v) for k, v in act.items()}),
        network_standoff_m=float(cfg.get("network_standoff_m", 0.0)),
        network_sim_check=bool(cfg.get("network_sim_check", False)),
    )
    for label, pose in (("open_pose", hand.open_pose), ("closed_pose", hand.closed_pose)):
        bad = set(pose) - set(hand.actuated_joints)
        if bad:
            raise ValueError(f"hand '{name}' ({path}): {label} names joints that are not actuated "
                             f"{sorted(bad)}; actuated joints: {', '.join(hand.actuated_joints)}")
    return hand
