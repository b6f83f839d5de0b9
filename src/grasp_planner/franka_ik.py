"""Franka Panda forward/inverse kinematics with Pinocchio (damped least squares with random restarts).

The model is the example-robot-data Panda URDF with the two finger joints locked, so it has exactly
the seven arm joints. Every public array of joint values is ordered like
:data:`grasp_planner.robots.panda.ARM_JOINT_NAMES`; the mapping to Pinocchio's own order is made by
joint name. Poses are (4, 4) homogeneous transforms in metres of the flange frame ``panda_link8``
expressed in the base frame ``panda_link0``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pinocchio as pin

from grasp_planner.model_paths import example_robot_data_file
from grasp_planner.robots import panda
from grasp_planner.safety import JOINT_LIMIT_MARGIN_RAD

#: Shoulder (panda_joint2 axis) position in the base frame, metres.
SHOULDER_POSITION_M = np.array([0.0, 0.0, 0.333])
#: Largest shoulder→flange distance over the joint limits (sampled: 0.8579 m), metres.
MAX_REACH_M = 0.858
#: Targets farther than MAX_REACH_M + this from the shoulder are refused without iterating, metres.
REACH_MARGIN_M = 0.02
#: Base keep-out cylinder (around the base z axis): a flange inside it would be inside link0/link1.
BASE_KEEPOUT_RADIUS_M = 0.10
BASE_KEEPOUT_TOP_M = 0.30
#: Default convergence tolerances.
POSITION_TOLERANCE_M = 1e-3
ORIENTATION_TOLERANCE_RAD = 1e-2
#: Joint names of the Panda gripper fingers, locked when present in the URDF.
FINGER_JOINT_NAMES: tuple[str, ...] = ("panda_finger_joint1", "panda_finger_joint2")
#: Frame whose origin is the elbow; used to detect elbow flips between pre-grasp and grasp.
ELBOW_FRAME = "panda_link4"


@dataclass(frozen=True)
class IKResult:
    """Outcome of one IK solve.

    Attributes:
        success: True when both tolerances were met within joint limits.
        q: (7,) float64 radians in ``ARM_JOINT_NAMES`` order when ``success``; otherwise the best
            configuration found (or None when the target was refused without iterating).
        position_error_m: flange position error of ``q`` (or of the best attempt), metres.
        orientation_error_rad: flange rotation error angle of ``q``, radians.
        iterations: total DLS iterations over all restarts.
        reason: empty on success; otherwise why it failed, e.g.
            ``"unreachable: best position error 0.31 m after 20 restarts"``.
    """

    success: bool
    q: np.ndarray | None
    position_error_m: float
    orientation_error_rad: float
    iterations: int
    reason: str = ""


@dataclass(frozen=True)
class IKConfig:
    """Solver parameters (validated in ``__post_init__``).

    Attributes:
        position_tolerance_m: success threshold on flange position error, metres.
        orientation_tolerance_rad: success threshold on flange rotation angle error, radians.
        max_iterations: DLS iterations per attempt.
        restarts: restarts after the seeded attempt: first from the ``library_seeds`` library
            configurations whose flange pose is nearest the target, then uniform random ones.
        damping: DLS damping λ² (adds λ²·I to J·Jᵀ), unitless.
        max_step_rad: largest joint change per iteration (the step is scaled down), radians.
        stall_iterations: abandon an attempt when the error has not dropped by 1 % in this many
            iterations (unless it is already within 10× the position tolerance).
        seed: seed of the restart starts and of the seed library; :meth:`FrankaKinematics.solve`
            restarts the generator on every call, so a target and seed always give the same answer.
        library_size: in-limit configurations (FK precomputed once) that restarts are drawn from
            nearest-first; 0 disables the library.
        library_seeds: how many of the nearest library configurations are tried before random
            restarts.
        limit_margin_rad: solutions stay this far inside the URDF joint limits, radians (the
            trajectory safety check's margin, so a solution at a hard stop is not refused later).
    """

    position_tolerance_m: float = POSITION_TOLERANCE_M
    orientation_tolerance_rad: float = ORIENTATION_TOLERANCE_RAD
    max_iterations: int = 100
    restarts: int = 20
    damping: float = 1e-4
    max_step_rad: float = 0.4
    stall_iterations: int = 12
    seed: int = 0
    library_size: int = 2048
    library_seeds: int = 4
    limit_margin_rad: float = JOINT_LIMIT_MARGIN_RAD

    def __post_init__(self) -> None:
        if self.position_tolerance_m <= 0 or self.orientation_tolerance_rad <= 0:
            raise ValueError("IK tolerances must be > 0, got "
                             f"{self.position_tolerance_m} m / {self.orientation_tolerance_rad} rad")
        if self.max_iterations < 1 or self.restarts < 0 or self.stall_iterations < 2:
            raise ValueError(f"IK iteration counts out of range: max_iterations={self.max_iterations} "
                             f"(>=1), restarts={self.restarts} (>=0), "
                             f"stall_iterations={self.stall_iterations} (>=2)")
        if self.library_size < 0 or self.library_seeds < 0:
            raise ValueError(f"library_size ({self.library_size}) and library_seeds "
                             f"({self.library_seeds}) must be >= 0")
        if self.limit_margin_rad < 0:
            raise ValueError(f"limit_margin_rad must be >= 0, got {self.limit_margin_rad}")
        if self.damping <= 0 or self.max_step_rad <= 0:
            raise ValueError(f"damping ({self.damping}) and max_step_rad ({self.max_step_rad}) "
                             "must be > 0")


def _as_pose(T: np.ndarray, what: str) -> np.ndarray:
    T = np.asarray(T, dtype=float)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError(f"{what} must be a finite (4, 4) homogeneous transform, got shape {T.shape}")
    R = T[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-5) or np.linalg.det(R) < 0:
        raise ValueError(f"{what} rotation part is not a proper rotation matrix")
    return T


def pose_distance(positions: np.ndarray, rotations: np.ndarray, T: np.ndarray) -> np.ndarray:
    """(N,) metres: position error + 0.1 m/rad × rotation angle between N poses and ``T``.

    Args:
        positions: (N, 3) metres; rotations: (N, 3, 3); T: (4, 4) pose, same frame.
    """
    cos = (np.einsum("nij,ij->n", rotations, T[:3, :3]) - 1.0) / 2.0
    return np.linalg.norm(positions - T[:3, 3], axis=1) + 0.1 * np.arccos(np.clip(cos, -1.0, 1.0))


def translate(T: np.ndarray, offset_m: np.ndarray) -> np.ndarray:
    """``T`` moved by ``offset_m`` (3,) metres expressed in the frame ``T`` lives in (base frame)."""
    out = np.array(T, dtype=float)
    out[:3, 3] += np.asarray(offset_m, dtype=float)
    return out


class FrankaKinematics:
    """Panda FK, Jacobian and DLS IK on the flange frame ``panda_link8``.

    Not thread-safe (one Pinocchio ``Data`` per instance); create one per thread.
    """

    def __init__(self, urdf_path: Path | str | None = None, config: IKConfig | None = None,
                 flange_frame: str = panda.FLANGE_FRAME) -> None:
        """Load the URDF (meshes ignored) and lock the finger joints.

        Args:
            urdf_path: Panda URDF; default the one shipped in example-robot-data.
            config: solver parameters; default :class:`IKConfig()`.
            flange_frame: frame that FK/IK are about.

        Raises:
            ValueError: the URDF lacks one of ``ARM_JOINT_NAMES`` or ``flange_frame``, or has other
                movable joints.
        """
        path = Path(urdf_path) if urdf_path is not None else example_robot_data_file(panda.URDF_RELATIVE)
        full = pin.buildModelFromUrdf(str(path))
        lock = [full.getJointId(n) for n in FINGER_JOINT_NAMES if full.existJointName(n)]
        model = pin.buildReducedModel(full, lock, pin.neutral(full)) if lock else full
        missing = [n for n in panda.ARM_JOINT_NAMES if not model.existJointName(n)]
        if missing:
            raise ValueError(f"URDF {path} lacks arm joints {missing}")
        if model.nq != len(panda.ARM_JOINT_NAMES):
            extra = [n for n in model.names[1:] if n not in panda.ARM_JOINT_NAMES]
            raise ValueError(f"URDF {path} has movable joints besides the arm: {extra}")
        if not model.existFrame(flange_frame):
            raise ValueError(f"URDF {path} has no frame '{flange_frame}'")
        self.model = model
        self.data = model.createData()
        self.config = config or IKConfig()
        self.flange_frame = flange_frame
        self._fid = model.getFrameId(flange_frame)
        self._elbow_fid = model.getFrameId(ELBOW_FRAME) if model.existFrame(ELBOW_FRAME) else None
        # Pinocchio q index of each ARM_JOINT_NAMES entry (mapping by name, not by position).
        self._pin_idx = np.array([model.joints[model.getJointId(n)].idx_q for n in panda.ARM_JOINT_NAMES])
        self._is_identity_order = bool(np.all(self._pin_idx == np.arange(7)))
        self.lower_rad = model.lowerPositionLimit[self._pin_idx].copy()
        self.upper_rad = model.upperPositionLimit[self._pin_idx].copy()
        self._rng = np.random.default_rng(self.config.seed)
        self._build_seed_library()

    def _build_seed_library(self) -> None:
        """Precompute FK of ``config.library_size`` seeded in-limit configurations whose flange is
        outside the base keep-out (restarts start from the ones nearest a target)."""
        rng = np.random.default_rng(self.config.seed + 1)
        qs, pos, rot = [], [], []
        while len(qs) < self.config.library_size:
            q = rng.uniform(self.lower_rad, self.upper_rad)
            T = self.fk(q)
            if self.refusal_reason(T):
                continue
            qs.append(q)
            pos.append(T[:3, 3].copy())
            rot.append(T[:3, :3].copy())
        self._lib_q = np.asarray(qs).reshape(-1, 7)
        self._lib_pos = np.asarray(pos).reshape(-1, 3)
        self._lib_rot = np.asarray(rot).reshape(-1, 3, 3)

    def nearest_library_configurations(self, T_target: np.ndarray, k: int) -> np.ndarray:
        """(≤k, 7) radians: library configurations whose flange pose is nearest ``T_target``
        (:func:`pose_distance`, the solver's own cost), nearest first."""
        if k <= 0 or not len(self._lib_q):
            return np.zeros((0, 7))
        cost = pose_distance(self._lib_pos, self._lib_rot, T_target)
        k = min(k, len(cost))
        nearest = np.argpartition(cost, k - 1)[:k]
        return self._lib_q[nearest[np.argsort(cost[nearest])]]

    # ----------------------------------------------------------------- ordering helpers
    def _to_pin(self, q: np.ndarray) -> np.ndarray:
        if self._is_identity_order:
            return q
        out = np.empty(7)
        out[self._pin_idx] = q
        return out

    def _from_pin(self, q_pin: np.ndarray) -> np.ndarray:
        return q_pin.copy() if self._is_identity_order else q_pin[self._pin_idx]

    @staticmethod
    def _check_q(q: np.ndarray, what: str = "q") -> np.ndarray:
        q = np.asarray(q, dtype=float).reshape(-1)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            raise ValueError(f"{what} must be 7 finite joint angles (rad, ARM_JOINT_NAMES order), "
                             f"got shape {q.shape}")
        return q

    # ----------------------------------------------------------------- kinematics
    def within_limits(self, q: np.ndarray, tol_rad: float = 1e-9) -> bool:
        """True when (7,) ``q`` radians is inside the URDF joint limits (± ``tol_rad``)."""
        q = self._check_q(q)
        return bool(np.all(q >= self.lower_rad - tol_rad) and np.all(q <= self.upper_rad + tol_rad))

    def fk(self, q: np.ndarray) -> np.ndarray:
        """Flange pose for a configuration.

        Args:
            q: (7,) radians, ``ARM_JOINT_NAMES`` order.

        Returns:
            (4, 4) float64: pose of ``panda_link8`` in ``panda_link0``, metres.
        """
        qp = self._to_pin(self._check_q(q))
        pin.forwardKinematics(self.model, self.data, qp)
        return pin.updateFramePlacement(self.model, self.data, self._fid).homogeneous

    def frame_poses(self, q: np.ndarray, frames: Sequence[str]) -> np.ndarray:
        """Poses of several named frames for one configuration.

        Args:
            q: (7,) radians, ``ARM_JOINT_NAMES`` order.
            frames: frame names of the URDF (e.g. ``panda_link3``).

        Returns:
            (len(frames), 4, 4) float64, base frame, metres.
        """
        qp = self._to_pin(self._check_q(q))
        pin.forwardKinematics(self.model, self.data, qp)
        out = np.empty((len(frames), 4, 4))
        for i, name in enumerate(frames):
            if not self.model.existFrame(name):
                raise ValueError(f"unknown frame '{name}' in the Panda model")
            out[i] = pin.updateFramePlacement(self.model, self.data, self.model.getFrameId(name)).homogeneous
        return out

    def frame_ids(self, frames: Sequence[str]) -> list[int]:
        """Pinocchio ids of named frames (for :meth:`frame_positions`)."""
        missing = [f for f in frames if not self.model.existFrame(f)]
        if missing:
            raise ValueError(f"unknown frames {missing} in the Panda model")
        return [self.model.getFrameId(f) for f in frames]

    def frame_poses_by_id(self, q: np.ndarray, frame_ids: Sequence[int]) -> list[np.ndarray]:
        """Like :meth:`frame_poses` with pre-resolved ids; returns a list of (4, 4) arrays."""
        pin.forwardKinematics(self.model, self.data, self._to_pin(q))
        return [pin.updateFramePlacement(self.model, self.data, f).homogeneous for f in frame_ids]

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """Geometric Jacobian of the flange.

        Args:
            q: (7,) radians, ``ARM_JOINT_NAMES`` order.

        Returns:
            (6, 7) float64: rows = [linear velocity of the flange origin (m/s); angular velocity
            (rad/s)], both expressed in the base frame (Pinocchio LOCAL_WORLD_ALIGNED); columns in
            ``ARM_JOINT_NAMES`` order.
        """
        qp = self._to_pin(self._check_q(q))
        pin.computeJointJacobians(self.model, self.data, qp)
        pin.updateFramePlacement(self.model, self.data, self._fid)
        J = pin.getFrameJacobian(self.model, self.data, self._fid, pin.LOCAL_WORLD_ALIGNED)
        return J[:, self._pin_idx].copy()

    @staticmethod
    def pose_error(T_a: np.ndarray, T_b: np.ndarray) -> tuple[float, float]:
        """(position error m, rotation angle rad) between two (4, 4) poses."""
        dp = float(np.linalg.norm(T_a[:3, 3] - T_b[:3, 3]))
        c = (np.trace(T_a[:3, :3].T @ T_b[:3, :3]) - 1.0) / 2.0
        return dp, float(np.arccos(np.clip(c, -1.0, 1.0)))

    # ----------------------------------------------------------------- IK
    def refusal_reason(self, T_target: np.ndarray) -> str:
        """Why a target is refused without iterating, or "" when it may be reachable."""
        p = np.asarray(T_target, dtype=float)[:3, 3]
        dist = float(np.linalg.norm(p - SHOULDER_POSITION_M))
        if dist > MAX_REACH_M + REACH_MARGIN_M:
            return (f"unreachable: target flange position {np.round(p, 3).tolist()} m is {dist:.3f} m "
                    f"from the shoulder, beyond the Panda reach {MAX_REACH_M:.3f} m")
        if np.hypot(p[0], p[1]) < BASE_KEEPOUT_RADIUS_M and p[2] < BASE_KEEPOUT_TOP_M:
            return (f"unreachable: target flange position {np.round(p, 3).tolist()} m is inside the "
                    f"robot base (cylinder r={BASE_KEEPOUT_RADIUS_M} m below z={BASE_KEEPOUT_TOP_M} m)")
        return ""

    def random_configuration(self) -> np.ndarray:
        """(7,) radians drawn uniformly inside the joint limits (instance generator, seeded once)."""
        return self._rng.uniform(self.lower_rad, self.upper_rad)

    def _attempt(self, oMdes: pin.SE3, q0_pin: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 tol_p: float, tol_r: float) -> tuple[bool, np.ndarray, float, float, int]:
        """One DLS descent from ``q0_pin`` (Pinocchio order); returns (ok, q, pos err, rot err, iters)."""
        cfg = self.config
        model, data, fid = self.model, self.data, self._fid
        q = q0_pin.copy()
        eye6 = np.eye(6) * cfg.damping
        best_cost = np.inf
        best_it = 0
        it = 0
        pos_err = rot_err = np.inf
        for it in range(1, cfg.max_iterations + 1):
            # computeFrameJacobian does not refresh data.oMi; computeJointJacobians runs FK too.
            pin.computeJointJacobians(model, data, q)
            oMf = pin.updateFramePlacement(model, data, fid)
            J = pin.getFrameJacobian(model, data, fid, pin.LOCAL)
            err = pin.log6(oMf.actInv(oMdes)).vector   # local-frame twist that moves oMf onto oMdes
            # Position error in metres (frame-independent), rotation angle in radians.
            pos_err = float(np.linalg.norm(oMdes.translation - oMf.translation))
            rot_err = float(np.linalg.norm(err[3:]))
            if pos_err < tol_p and rot_err < tol_r:
                return True, q, pos_err, rot_err, it
            cost = pos_err + 0.1 * rot_err
            if cost < 0.99 * best_cost:
                best_cost, best_it = cost, it
            elif it - best_it > cfg.stall_iterations and pos_err > 10 * tol_p:
                break   # stalled far from the target (a limit or a singularity): restart elsewhere
            dq = J.T @ np.linalg.solve(J @ J.T + eye6, err)
            step = float(np.max(np.abs(dq)))
            if step > cfg.max_step_rad:
                dq *= cfg.max_step_rad / step
            q = np.minimum(np.maximum(q + dq, lo), hi)
        return False, q, pos_err, rot_err, it

    def solve(self, T_target: np.ndarray, q_seed: np.ndarray | None = None, *,
              restarts: int | None = None, position_tolerance_m: float | None = None,
              orientation_tolerance_rad: float | None = None) -> IKResult:
        """Joint angles that put the flange at ``T_target``.

        The first attempt starts at ``q_seed`` (``READY_Q`` when None, clipped into the limits);
        the next ones at the ``config.library_seeds`` library configurations whose flange pose is
        nearest the target, the rest at uniform random in-limit configurations. Each attempt is
        damped least squares on the 6D SE(3) log error, with the configuration clamped into the
        joint limits after every step.

        Args:
            T_target: (4, 4) flange pose in the base frame, metres.
            q_seed: (7,) radians, ``ARM_JOINT_NAMES`` order, or None.
            restarts: random restarts after the seeded attempt (default ``config.restarts``).
            position_tolerance_m: override of ``config.position_tolerance_m``.
            orientation_tolerance_rad: override of ``config.orientation_tolerance_rad``.

        Returns:
            IKResult; ``success`` False with ``reason`` when no attempt met the tolerances.

        Raises:
            ValueError: malformed ``T_target`` or ``q_seed``.
        """
        T_target = _as_pose(T_target, "T_target")
        seed = panda.READY_Q if q_seed is None else self._check_q(q_seed, "q_seed")
        refusal = self.refusal_reason(T_target)
        if refusal:
            return IKResult(False, None, float("nan"), float("nan"), 0, refusal)
        cfg = self.config
        n_restarts = cfg.restarts if restarts is None else int(restarts)
        tol_p = cfg.position_tolerance_m if position_tolerance_m is None else position_tolerance_m
        tol_r = cfg.orientation_tolerance_rad if orientation_tolerance_rad is None else orientation_tolerance_rad
        oMdes = pin.SE3(T_target[:3, :3].copy(), T_target[:3, 3].copy())
        lo = self.model.lowerPositionLimit + cfg.limit_margin_rad
        hi = self.model.upperPositionLimit - cfg.limit_margin_rad
        q0 = np.clip(self._to_pin(seed), lo, hi)
        total_it = 0
        best = (np.inf, None, np.inf, np.inf)
        rng = None
        near = self.nearest_library_configurations(T_target, min(cfg.library_seeds, n_restarts))
        for attempt in range(n_restarts + 1):
            if 0 < attempt <= len(near):
                q0 = self._to_pin(near[attempt - 1])
            elif attempt > 0:
                # A fresh generator per solve: the same target and seed give the same answer
                # whatever was solved before.
                rng = rng or np.random.default_rng(cfg.seed)
                q0 = self._to_pin(rng.uniform(self.lower_rad, self.upper_rad))
            ok, q, pe, re, it = self._attempt(oMdes, q0, lo, hi, tol_p, tol_r)
            total_it += it
            if ok:
                return IKResult(True, self._from_pin(q), pe, re, total_it)
            score = pe + 0.1 * re
            if score < best[0]:
                best = (score, q, pe, re)
        _, q_best, pe, re = best
        return IKResult(False, None if q_best is None else self._from_pin(q_best), pe, re, total_it,
                        f"unreachable: best position error {pe:.3g} m, orientation error {re:.3g} rad "
                        f"after {n_restarts} restarts")

    def solve_many(self, targets: Sequence[np.ndarray],
                   seeds: np.ndarray | Sequence[np.ndarray | None] | None = None) -> list[IKResult]:
        """Solve several targets independently.

        Args:
            targets: sequence of (4, 4) flange poses, base frame, metres.
            seeds: None (``READY_Q`` for each), one (7,) seed for all, or one seed (or None) per
                target.

        Returns:
            One IKResult per target, in order.
        """
        n = len(targets)
        if seeds is None:
            seed_list: list = [None] * n
        elif isinstance(seeds, np.ndarray) and seeds.ndim == 1:
            seed_list = [seeds] * n
        else:
            seed_list = list(seeds)
            if len(seed_list) != n:
                raise ValueError(f"got {len(seed_list)} seeds for {n} targets; pass one per target, "
                                 "a single (7,) seed, or None")
        return [self.solve(T, s) for T, s in zip(targets, seed_list)]

    def solve_batch(self, targets: Sequence[np.ndarray] | np.ndarray, q_seed: np.ndarray | None = None, *,
                    neighbour_radius_m: float = 0.10) -> list[IKResult]:
        """Solve many candidate flange poses, warm-starting each from an already solved neighbour.

        Targets are visited nearest-neighbour first (starting from the one closest to the seed's
        flange pose). Each is solved from the solution of its nearest already-solved neighbour
        when that one lies within ``neighbour_radius_m`` (pose distance: position error +
        0.1 m/rad × rotation angle), without restarts; if that attempt fails, or no neighbour is
        close, it gets a full :meth:`solve` from ``q_seed``. Neighbouring candidates therefore end
        on the same IK branch, and clustered candidates cost a few iterations each.

        Args:
            targets: K (4, 4) flange poses (sequence or (K, 4, 4) array), base frame, metres.
            q_seed: (7,) radians for the first target (``READY_Q`` when None).
            neighbour_radius_m: largest pose distance for a warm start, metres.

        Returns:
            K IKResults in the order of ``targets`` (unreachable ones refused as in :meth:`solve`).

        Raises:
            ValueError: a malformed target or seed.
        """
        Ts = [_as_pose(T, f"targets[{i}]") for i, T in enumerate(targets)]
        seed = panda.READY_Q if q_seed is None else self._check_q(q_seed, "q_seed")
        if not Ts:
            return []
        pos = np.array([T[:3, 3] for T in Ts])
        rot = np.array([T[:3, :3] for T in Ts])

        results: list[IKResult | None] = [None] * len(Ts)
        T_seed = self.fk(seed)
        todo = np.arange(len(Ts))
        current = int(todo[np.argmin(pose_distance(pos[todo], rot[todo], T_seed))])
        solved: list[int] = []
        while True:
            T = Ts[current]
            res = None
            if solved:
                idx = np.asarray(solved)
                d = pose_distance(pos[idx], rot[idx], T)
                if d.min() <= neighbour_radius_m and not self.refusal_reason(T):
                    warm = self.solve(T, results[int(idx[np.argmin(d)])].q, restarts=0)
                    res = warm if warm.success else None
            if res is None:
                res = self.solve(T, seed)
            results[current] = res
            todo = todo[todo != current]
            if res.success:
                solved.append(current)
            if not len(todo):
                break
            current = int(todo[np.argmin(pose_distance(pos[todo], rot[todo], T))])
        return results  # type: ignore[return-value]

    def elbow_position(self, q: np.ndarray) -> np.ndarray:
        """(3,) metres: origin of ``panda_link4`` (the elbow) in the base frame."""
        pin.forwardKinematics(self.model, self.data, self._to_pin(self._check_q(q)))
        return pin.updateFramePlacement(self.model, self.data, self._elbow_fid).translation.copy()

    def solve_pregrasp_grasp(self, T_grasp: np.ndarray, approach_offset_m: float,
                             approach_axis_in_flange: np.ndarray = (0.0, 0.0, 1.0),
                             q_seed: np.ndarray | None = None, *, max_joint_step_rad: float = 0.6,
                             max_elbow_shift_m: float = 0.15, attempts: int = 8
                             ) -> tuple[IKResult, IKResult]:
        """Grasp and pre-grasp configurations on the same IK branch.

        The pre-grasp pose is the grasp pose backed off by ``approach_offset_m`` against the
        approach direction: ``T_pre = T_grasp · Trans(-approach_offset_m · axis)``. The grasp is
        solved first (from ``q_seed``, then random restarts), the pre-grasp is solved seeded from
        the grasp solution; the pair is accepted when every joint differs by less than
        ``max_joint_step_rad`` and the elbow moves less than ``max_elbow_shift_m`` (no elbow flip).
        Otherwise the grasp is re-solved from another random start, up to ``attempts`` times.

        Args:
            T_grasp: (4, 4) flange pose at the grasp, base frame, metres.
            approach_offset_m: pre-grasp stand-off, metres (>= 0).
            approach_axis_in_flange: (3,) direction the hand moves while approaching, in the flange
                frame (default +z, out of the flange).
            q_seed: (7,) radians or None (``READY_Q``).
            max_joint_step_rad: largest allowed per-joint difference pre-grasp ↔ grasp, radians.
            max_elbow_shift_m: largest allowed elbow displacement pre-grasp ↔ grasp, metres.
            attempts: how many grasp solutions to try.

        Returns:
            (pre-grasp IKResult, grasp IKResult). If the pair cannot be made consistent, the
            pre-grasp result has ``success`` False and says why.
        """
        T_grasp = _as_pose(T_grasp, "T_grasp")
        axis = np.asarray(approach_axis_in_flange, dtype=float).reshape(3)
        norm = np.linalg.norm(axis)
        if norm < 1e-9 or approach_offset_m < 0:
            raise ValueError(f"approach axis must be non-zero (got {axis}) and the offset >= 0 "
                             f"(got {approach_offset_m} m)")
        T_pre = T_grasp.copy()
        T_pre[:3, 3] -= T_grasp[:3, :3] @ (axis / norm) * approach_offset_m
        refusal = self.refusal_reason(T_pre)
        grasp_seed = q_seed
        last_grasp: IKResult | None = None
        last_reason = ""
        for attempt in range(max(1, attempts)):
            grasp = self.solve(T_grasp, grasp_seed, restarts=None if attempt == 0 else 2)
            grasp_seed = self.random_configuration()
            if not grasp.success:
                if attempt == 0:
                    return (IKResult(False, None, float("nan"), float("nan"), 0,
                                     f"pre-grasp not solved: grasp failed ({grasp.reason})"), grasp)
                continue
            last_grasp = grasp
            if refusal:
                return IKResult(False, None, float("nan"), float("nan"), 0, refusal), grasp
            pre = self.solve(T_pre, grasp.q, restarts=0)
            if not pre.success:
                last_reason = f"pre-grasp from the grasp solution did not converge ({pre.reason})"
                continue
            dq = float(np.max(np.abs(pre.q - grasp.q)))
            shift = float(np.linalg.norm(self.elbow_position(pre.q) - self.elbow_position(grasp.q)))
            if dq < max_joint_step_rad and shift < max_elbow_shift_m:
                return pre, grasp
            last_reason = (f"pre-grasp and grasp are on different IK branches (max joint difference "
                           f"{dq:.2f} rad, elbow shift {shift:.3f} m)")
        # The first grasp attempt succeeded (else we returned above), so last_grasp is set.
        return (IKResult(False, None, float("nan"), float("nan"), 0,
                         f"no consistent pre-grasp after {attempts} grasp solutions: {last_reason}"),
                last_grasp)

    def cartesian_path(self, q_from: np.ndarray, offset_world_m: np.ndarray,
                       max_step_m: float = 0.01) -> tuple[IKResult, np.ndarray]:
        """Straight-line flange translation (orientation kept) from a configuration.

        The line is cut into steps of at most ``max_step_m``; each step is solved seeded from the
        previous one without restarts, so the arm stays on the branch of ``q_from``.

        Args:
            q_from: (7,) radians, ``ARM_JOINT_NAMES`` order.
            offset_world_m: (3,) translation of the flange in the base frame, metres
                (e.g. ``[0, 0, 0.10]`` to lift 10 cm).
            max_step_m: largest Cartesian step between waypoints, metres.

        Returns:
            (IKResult of the final pose, (K+1, 7) radians waypoints from ``q_from`` to the end;
            only the waypoints solved so far when it fails).
        """
        q = self._check_q(q_from, "q_from")
        offset = np.asarray(offset_world_m, dtype=float).reshape(3)
        T0 = self.fk(q).copy()
        n = max(1, int(np.ceil(np.linalg.norm(offset) / max_step_m)))
        path = [q]
        total_it = 0
        res = IKResult(True, q, 0.0, 0.0, 0)
        for k in range(1, n + 1):
            res = self.solve(translate(T0, offset * k / n), path[-1], restarts=0)
            total_it += res.iterations
            if not res.success:
                return (IKResult(False, res.q, res.position_error_m, res.orientation_error_rad, total_it,
                                 f"cartesian offset {np.round(offset, 3).tolist()} m failed at step "
                                 f"{k}/{n}: {res.reason}"), np.asarray(path))
            if np.max(np.abs(res.q - path[-1])) > 0.5:
                return (IKResult(False, res.q, res.position_error_m, res.orientation_error_rad, total_it,
                                 f"cartesian offset jumps branches at step {k}/{n} (joint change "
                                 f"{np.max(np.abs(res.q - path[-1])):.2f} rad)"), np.asarray(path))
            path.append(res.q)
        return (IKResult(True, res.q, res.position_error_m, res.orientation_error_rad, total_it),
                np.asarray(path))

    def cartesian_offset_ik(self, q_from: np.ndarray, offset_world_m: np.ndarray,
                            max_step_m: float = 0.01) -> IKResult:
        """Final configuration of :meth:`cartesian_path` (e.g. a 10 cm lift after the grasp)."""
        return self.cartesian_path(q_from, offset_world_m, max_step_m)[0]
