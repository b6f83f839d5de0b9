"""The simulator interface the sim_bridge node and the disturbance protocol run against.

Two backends implement it: :class:`sim_bridge.world.SimWorld` (MuJoCo, the default) and
:class:`sim_bridge.isaacgym_backend.IsaacGymSimulator` (NVIDIA IsaacGym Preview, imported only
when selected). Joints are addressed by their ROS names; poses are in the robot base frame
(= simulator world), metres; quaternions are (w, x, y, z).

Pure interface module: imports neither simulator.
"""
from __future__ import annotations

import abc
from typing import Any, Callable, Mapping, Sequence

import numpy as np

#: Simulator backends selectable with the sim_bridge ``backend`` parameter.
BACKENDS = ("mujoco", "isaacgym")


class Simulator(abc.ABC):
    """One simulated scene: Franka + hand + one object on a table, an RGB-D camera.

    Also a context manager (``close`` on exit).
    """

    #: Arm then hand joint names (ROS names), the order of :meth:`joint_state_arrays`; set by the backend.
    joint_names: tuple[str, ...] = ()

    # -------------------------------------------------------------- description
    @property
    @abc.abstractmethod
    def timestep_s(self) -> float:
        """Physics step, seconds."""

    @property
    @abc.abstractmethod
    def sim_time_s(self) -> float:
        """Simulated time since the last reset, seconds."""

    @property
    @abc.abstractmethod
    def object_mass_kg(self) -> float:
        """Mass of the object, kg."""

    #: Height (z, metres) of the object's body origin when it rests on the table after reset.
    object_rest_z: float = 0.0

    # -------------------------------------------------------------- state
    @abc.abstractmethod
    def joint_positions(self) -> dict[str, float]:
        """Joint name → position, radians."""

    @abc.abstractmethod
    def joint_velocities(self) -> dict[str, float]:
        """Joint name → velocity, rad/s."""

    def joint_state_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, velocities)``, each (n,) in :attr:`joint_names` order (rad, rad/s)."""
        q, v = self.joint_positions(), self.joint_velocities()
        return (np.array([q[n] for n in self.joint_names]), np.array([v[n] for n in self.joint_names]))

    @abc.abstractmethod
    def object_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """``(pos (3,) metres, quat (4,) w x y z)`` of the object in the base frame."""

    @abc.abstractmethod
    def object_hand_contacts(self) -> int:
        """Number of active contacts between the object and the hand."""

    # -------------------------------------------------------------- control
    @abc.abstractmethod
    def reset(self) -> None:
        """Arm at its observation pose, hand open, object resting on the table, time 0, no trajectory."""

    @abc.abstractmethod
    def set_targets(self, targets: Mapping[str, float]) -> None:
        """Position targets (rad) by joint name; ValueError naming unknown joints (nothing changed then)."""

    @abc.abstractmethod
    def step(self, n: int = 1) -> None:
        """Advance physics ``n`` steps, following an active trajectory."""

    @abc.abstractmethod
    def execute_trajectory(self, joint_names: Sequence[str], positions: np.ndarray, times_s: np.ndarray, *,
                           wait: bool = True, hold_s: float = 0.0) -> None:
        """Follow a joint trajectory ((T, n) radians at (T,) seconds from now) by interpolated targets.

        With ``wait`` step physics to the end (+ ``hold_s``); otherwise only start it. ValueError
        for unknown joints, shape mismatch, non-finite values or times not strictly increasing.
        """

    @property
    @abc.abstractmethod
    def trajectory_active(self) -> bool:
        """True while a trajectory is being followed."""

    @abc.abstractmethod
    def cancel_trajectory(self) -> None:
        """Stop following the trajectory; joints hold their current targets."""

    # -------------------------------------------------------------- disturbance protocol
    @abc.abstractmethod
    def save_state(self) -> Any:
        """An opaque snapshot of the whole dynamic state (positions, velocities, targets, time,
        trajectory) for :meth:`restore_state`."""

    @abc.abstractmethod
    def restore_state(self, state: Any) -> None:
        """Return exactly to a snapshot of :meth:`save_state` (kinematics updated)."""

    @property
    @abc.abstractmethod
    def gravity_enabled(self) -> bool:
        """Whether gravity acts."""

    @abc.abstractmethod
    def set_gravity(self, enabled: bool) -> None:
        """Switch gravity off, or back to the scene's gravity."""

    @property
    @abc.abstractmethod
    def support_contacts_enabled(self) -> bool:
        """Whether the table and floor collide with the object."""

    @abc.abstractmethod
    def set_support_contacts(self, enabled: bool) -> None:
        """Switch the object's contacts with the table and floor off or on (the hand still touches it)."""

    @abc.abstractmethod
    def apply_object_force(self, force_n: Sequence[float]) -> None:
        """Apply a constant (3,) force in the world frame, newtons, at the object's centre of mass
        until replaced (zeros to remove it)."""

    # -------------------------------------------------------------- camera
    @abc.abstractmethod
    def render_rgbd(self) -> Any:
        """One registered RGB-D frame of the scene camera (:class:`sim_bridge.world.RGBDFrame`)."""

    # -------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Release renderers, contexts and simulator handles (idempotent)."""

    def __enter__(self) -> "Simulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def validate_trajectory(indices: Callable[[Sequence[str]], np.ndarray], joint_names: Sequence[str],
                        positions: np.ndarray, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check a trajectory for :meth:`Simulator.execute_trajectory`.

    Args:
        indices: the backend's joint-name → index lookup (raises ValueError on unknown names).
        joint_names: n joint names.
        positions: (T, n) radians.
        times_s: (T,) seconds from now.

    Returns:
        ``(indices (n,), positions (T, n) float, times (T,) float)``.

    Raises:
        ValueError: unknown or repeated names, shape mismatch, NaN/inf, times negative or not
            strictly increasing.
    """
    names = tuple(joint_names)
    idx = indices(names)
    if len(set(names)) != len(names):
        raise ValueError(f"trajectory joint names are not unique: {list(names)}")
    pos = np.asarray(positions, dtype=float)
    times = np.asarray(times_s, dtype=float).reshape(-1)
    if pos.ndim != 2 or pos.shape != (len(times), len(names)) or len(times) == 0:
        raise ValueError(f"trajectory positions have shape {pos.shape}; expected "
                         f"(T={len(times)}, n={len(names)}) with T ≥ 1")
    if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(times))):
        raise ValueError("trajectory contains NaN or infinite positions/times")
    if times[0] < 0 or np.any(np.diff(times) <= 0):
        raise ValueError(f"trajectory times must be ≥ 0 and strictly increasing, got "
                         f"{np.round(times, 4).tolist()}")
    return idx, pos, times


def make_simulator(backend: str, config, options: Mapping[str, Any] | None = None) -> Simulator:
    """The simulator ``backend`` (one of :data:`BACKENDS`) for a :class:`sim_bridge.scene.SceneConfig`.

    Args:
        backend: ``mujoco`` or ``isaacgym``.
        config: the scene.
        options: backend specifics (isaacgym: :class:`sim_bridge.isaacgym_backend.IsaacGymConfig` fields,
            e.g. ``robot_asset``).

    Raises:
        ValueError: unknown backend (the message lists the options) or bad backend options.
        ImportError: ``isaacgym`` without an IsaacGym install (the message says how to get one).
    """
    if backend == "mujoco":
        from sim_bridge.world import SimWorld

        return SimWorld(config)
    if backend == "isaacgym":
        from sim_bridge.isaacgym_backend import IsaacGymConfig, IsaacGymSimulator

        return IsaacGymSimulator(config, IsaacGymConfig(**dict(options or {})))
    raise ValueError(f"unknown simulator backend '{backend}'; choose one of: {', '.join(BACKENDS)}")
