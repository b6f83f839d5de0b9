"""Grasp predictor backends of the planner: the learned D(R,O) network and the optimisation-based synthesiser.

Both turn an object cloud (base frame) into ranked :class:`~grasp_planner.grasp_synthesis.GraspCandidate`\\ s;
the planner then runs the same IK, motion planning and safety checks on either.

- ``optimiser`` (:class:`OptimiserPredictor`): :class:`~grasp_planner.grasp_synthesis.GraspSynthesizer`
  on the convex proxy of the cloud.
- ``network`` (:class:`NetworkPredictor`): cloud (+ image) → K CVAE samples of the hand–object
  distance matrix → recovery (multilateration → per-link Kabsch → joint solve → refinement against
  the cloud's surface, bounded by the convex proxy, and the table) → contact closure (each finger
  closes until it touches that surface) → ranking by fit residual, penetration of the object proxy
  and the table, fingertip contact, fingers that never reach the object and, given the camera
  position, hand points hidden behind the visible surface (:mod:`~grasp_planner.network.visibility`)
  against hand points close to the cloud → the wrist standoff → the simulated check (every candidate
  closed and shaken in MuJoCo on the object shape estimated from the view; those that hold first:
  :mod:`~grasp_planner.network.sim_check`) → best first, only the
  candidates the arm can take: the hand's planning capsule clears the table at the grasp and the
  pre-grasp, and the Franka IK reaches both on one branch (the planner's own checks).

:func:`make_grasp_predictor` picks one by name; a missing network checkpoint or one made for another
hand or config gives a warning with the reason and the optimiser instead. :meth:`GraspPredictor.describe`
says which backend really plans (checkpoint path and SHA-256 for the network, the fallback reason for
an optimiser standing in for it); every candidate's ``info["backend"]`` names the backend that made it.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grasp_planner.grasp_synthesis import GraspCandidate, GraspSynthesizer
from grasp_planner.hands.description import HandDescription
from grasp_planner.image_input import ImageInputError, network_view
from grasp_planner.network.visibility import VisibleSurface
from grasp_planner.object_model import ObjectProxy

#: A completed surface point is kept only this far or farther behind the visible surface, metres.
COMPLETION_HIDDEN_M = 0.003

#: Names of the predictor backends (planner parameter ``grasp_backend``).
GRASP_BACKENDS = ("optimiser", "network")


class GraspPredictionError(ValueError):
    """The input cannot be used by this predictor (e.g. the network needs an image and got none)."""


class GraspPredictor(ABC):
    """Object cloud → ranked grasp candidates (best first), base frame, joints by name."""

    #: Backend name (one of :data:`GRASP_BACKENDS`).
    name: str = ""
    #: True when :meth:`predict` needs ``image`` and ``pixel_uv`` (a network trained with images).
    uses_image: bool = False

    @abstractmethod
    def predict(self, cloud: np.ndarray, proxy: ObjectProxy, max_results: int,
                image: np.ndarray | None = None, pixel_uv: np.ndarray | None = None,
                camera_xyz: np.ndarray | None = None) -> list[GraspCandidate]:
        """Ranked candidates, at most ``max_results``; empty when none is acceptable.

        Args:
            cloud: (N, 3) object points, base frame, metres.
            proxy: the convex solid proxy of the cloud (table height included).
            max_results: candidates returned at most.
            image: (H, W, 3) uint8 RGB view the cloud was seen in, any size (resized to the
                network's input by :func:`~grasp_planner.image_input.network_view`); needed when
                :attr:`uses_image`, ignored otherwise.
            pixel_uv: (N, 2) pixel (u, v) of each cloud point in ``image`` (column, row).
            camera_xyz: (3,) position of the camera that saw the cloud, base frame, metres, or None
                (the network then cannot tell the unseen side of the object from free space).

        Raises:
            GraspPredictionError: unusable input (too few points; with :attr:`uses_image`, no
                image or pixels, or ones that do not fit each other or the cloud).
        """

    @abstractmethod
    def no_candidate_reason(self) -> str:
        """Why :meth:`predict` may return nothing (for the planner's failure message)."""

    def describe(self) -> dict:
        """What plans the grasps, for status messages and result files (plain JSON types).

        Returns:
            ``{"backend": name, "checkpoint": path or None, "checkpoint_sha256": hex or None,
            "fallback_reason": why the network was asked for but this backend plans, or None}``.
        """
        return {"backend": self.name, "checkpoint": None, "checkpoint_sha256": None, "fallback_reason": None}


class OptimiserPredictor(GraspPredictor):
    """The optimisation-based synthesiser as a predictor (the default backend).

    Args:
        synthesizer: the optimiser.
        fallback_reason: set when it stands in for a network that could not be used (the warning text).
    """

    name = "optimiser"

    def __init__(self, synthesizer: GraspSynthesizer, fallback_reason: str = ""):
        self.synthesizer = synthesizer
        self.fallback_reason = fallback_reason

    def predict(self, cloud, proxy, max_results, image=None, pixel_uv=None, camera_xyz=None):
        candidates = self.synthesizer.synthesize(proxy, max_results=max_results)
        for candidate in candidates:
            candidate.info.setdefault("backend", self.name)
        return candidates

    def describe(self) -> dict:
        return {**super().describe(), "fallback_reason": self.fallback_reason or None}

    def no_candidate_reason(self) -> str:
        return (f"no hand pose puts the thumb and {self.synthesizer.config.min_contacts - 1} fingers on the "
                "object without touching the table")


#: Surface points weighed per query by the contact closure's signed distance (the refinement's default).
CLOSURE_NEIGHBOURS = 8


@dataclass(frozen=True)
class NetworkPredictorConfig:
    """Settings of :class:`NetworkPredictor`.

    Attributes:
        num_samples: K CVAE samples (candidates recovered) per request.
        squeeze: commanded squeeze target = predicted contact joints + ``squeeze`` × (closed − open
            synergy), clipped to the limits (the optimiser's convention), unitless.
        contact_m: a fingertip within this distance of the object proxy counts as a contact, metres.
        table_clearance_m: hand points must stay this far above the table, metres.
        weight_penetration, weight_table, weight_contact: ranking weights per metre of penetration
            depth (summed over hand points), table intrusion (deepest point) and mean fingertip gap.
        weight_untouched_finger: ranking cost per finger that does not reach the object in the contact
            closure (``close_fingers``): 0.1 weighs like 5 mm of penetration, so a floating hand
            (nothing to penetrate, nothing held) does not outrank one that grips.
        weight_open_penetration: ranking weight per metre of penetration (summed over hand points) of
            the object proxy by the hand opened ``open_fraction`` of the way toward the open pose: where
            the fingers start closing (the D(R,O) validator starts 25 % open and refuses more than 5 mm
            of penetration there). 0 = off (the default): 30 doubled the top grasp's held-out
            successes on the set it was tuned on (6 → 12 of 60 OYMotion objects) and changed nothing
            on the reported set (9 → 9), nor in the arm pipeline (50 → 51 of 80).
        open_fraction: that opening, 0..1.
        weight_hidden_point: ranking cost per hand point at that opening that lies behind the visible
            surface seen from the camera and within ``hidden_near_m`` of the cloud: likely inside the
            unseen back of the object (:mod:`~grasp_planner.network.visibility`; needs the camera
            position). 0 = off.
        hidden_near_m: that distance, metres.
        weight_near_point: ranking reward (negative cost) per hand point at the grasp within ``near_m``
            of the cloud: a hand that wraps the object (only with the camera position, as the
            hidden-point term it balances). 0 = off.
        near_m: that distance, metres.
        one_sided_surface: with a shape-completion model, the surface weighs only the side of each
            query's nearest point (:class:`~grasp_planner.network.recovery.ObjectSurface`
            ``one_sided``: thin walls such as a mug's read right).
        weight_surface_penetration: with a shape-completion model, ranking cost per metre of summed
            penetration of the hand points into the refinement's surface (view + completed side); the
            term is recorded (``surface_penetration_m``) even at weight 0.
        weight_surface_gap: with a completion model, cost per metre of the fingertips' mean distance
            to that surface (``surface_gap_m``; recorded even at weight 0).
        max_penetration_m: candidates whose summed penetration exceeds this are dropped.
        standoff_m: after the ranking, every candidate's wrist backs off this far along its approach
            axis (palm normal), fingers unchanged, metres: the closing hand still reaches the object
            (the judge squeezes 15 % of the way toward the closed pose) but starts out of what a
            single view's surface and the sparse hand points do not show; None = the hand's
            ``network_standoff_m`` (OYMotion 4 mm: held-out top grasps stable 94 → 114 of 480,
            p = 0.013; Shadow 0: README, "Standoff"). The ranking terms in a candidate's ``info``
            are those of the grasp before the standoff (``info["standoff_m"]``).
        refine_iterations: Gauss–Newton iterations of the contact/penetration refinement after the joint solve
            (:func:`~grasp_planner.network.recovery.refine_grasps`); 0 = off.
        refine_margin_m: the refinement pushes hand points this far outside the surface, metres (its
            implicit surface reads a few mm shallower than the simulator's collision depth).
        collision_points: hand surface points (besides the network's rows) that the refinement keeps
            out of the object; 0 = the rows only (default). The rows alone are too sparse: an object
            edge passes between them. 1024 with 30 iterations and a 3 mm margin held 1.3x as many
            held-out candidates, but the top-ranked grasp did not gain and a request took about twice as
            long, so it is off by default (README, "Collision points"). The contact closure tests
            touching on the rows either way (on these points: 84 vs 92 of 960 candidates held).
        close_fingers: after the refinement, close each finger from its recovered joints toward the
            closed pose until it touches the observed surface (the proxy when ``refine_iterations`` is 0;
            :func:`~grasp_planner.network.closure.close_fingers`).
        free_fingers: what the closure does with a finger that touches nothing of the observed
            surface: let it ``"stay"`` at its recovered joints (default: held-out OYMotion S+F 43/480
            vs 31/480 closing it, arm pipeline 56/80 vs 54/80), or ``"close"`` it fully.
        reachability: keep only candidates the arm can take, checked best first until ``max_results``
            are kept: the hand's arm-planning capsule (``HandDescription.capsule_length_m`` /
            ``capsule_radius_m``, the motion planner's envelope) clears the table at the grasp and the
            pre-grasp, and the Franka IK reaches the grasp and the pre-grasp on one branch.
        approach_offset_m: pre-grasp stand-off along the approach for that check (the planner's
            ``approach_offset_m``), metres.
        sim_check: after the ranking, the standoff and the arm check, judge the candidates in MuJoCo
            on the object shape estimated from the view (plus the shape completion's guess of the
            unseen side) and put those that hold first, in ranking order
            (:mod:`~grasp_planner.network.sim_check`; README, "Simulated check"); None = the hand's
            ``network_sim_check`` (OYMotion on, Shadow and Inspire off). A judged candidate's ``info``
            records ``sim_check_held`` and ``sim_check_reason``.
        threads: torch threads while predicting (restored afterwards). 1 by default: on this 2-core
            CPU with one core busy elsewhere, 2 threads made a 32-sample request 16x slower (13.9 s
            instead of 0.86 s; OpenMP threads waiting for the busy core).
        seed: seed of the point subsampling and the latent draws (same cloud + seed = same grasps).
    """

    num_samples: int = 32
    squeeze: float = 0.3
    contact_m: float = 0.01
    table_clearance_m: float = 0.005
    weight_penetration: float = 20.0
    weight_table: float = 50.0
    weight_contact: float = 2.0
    weight_untouched_finger: float = 0.1
    weight_open_penetration: float = 0.0
    open_fraction: float = 0.25
    weight_hidden_point: float = 1.0
    hidden_near_m: float = 0.01
    weight_near_point: float = 0.1
    near_m: float = 0.02
    one_sided_surface: bool = True
    weight_surface_penetration: float = 0.0
    weight_surface_gap: float = 0.0
    max_penetration_m: float = 0.5
    standoff_m: float | None = None
    refine_iterations: int = 15
    refine_margin_m: float = 0.001
    collision_points: int = 0
    close_fingers: bool = True
    free_fingers: str = "stay"
    reachability: bool = True
    approach_offset_m: float = 0.10
    sim_check: bool | None = None
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if not 0.0 <= self.squeeze <= 1.0:
            raise ValueError(f"squeeze must be in [0, 1], got {self.squeeze}")
        if self.refine_iterations < 0:
            raise ValueError(f"refine_iterations must be >= 0, got {self.refine_iterations}")
        if self.collision_points < 0:
            raise ValueError(f"collision_points must be >= 0, got {self.collision_points}")
        if not self.refine_margin_m >= 0:
            raise ValueError(f"refine_margin_m must be >= 0, got {self.refine_margin_m}")
        if self.standoff_m is not None and not 0.0 <= self.standoff_m <= 0.05:
            raise ValueError(f"standoff_m must be in [0, 0.05] m, got {self.standoff_m}")
        if self.free_fingers not in ("close", "stay"):
            raise ValueError(f"free_fingers must be close or stay, got '{self.free_fingers}'")
        if not 0.0 <= self.open_fraction <= 1.0:
            raise ValueError(f"open_fraction must be in [0, 1], got {self.open_fraction}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.approach_offset_m < 0:
            raise ValueError(f"approach_offset_m must be >= 0, got {self.approach_offset_m}")


class NetworkPredictor(GraspPredictor):
    """The D(R,O) network + grasp recovery as a predictor; see the module docstring.

    Args:
        hand: the hand to plan for.
        checkpoint: ``.safetensors`` network checkpoint for this hand.
        config: predictor settings.
        kinematics: Franka IK for the reachability check (built when None and ``config.reachability``).
        arm_check: optional extra check of an arm configuration, ``arm_check(q_arm, object_points)``:
            (7,) radians and the (N, 3) object cloud to keep clear of (None: table only) → "" or why
            the motion planner would refuse it (e.g. a link in the table). Run on the grasp (table
            only: the hand touches the object there) and the pre-grasp (table and object) IK
            solutions of the reachability check.

    Raises:
        FileNotFoundError: no checkpoint file.
        CheckpointMismatchError: the checkpoint is for another hand, or its weights do not fit its config.
        ValueError: the file is not a network checkpoint.
    """

    name = "network"

    def __init__(self, hand: HandDescription, checkpoint: str | Path, config: NetworkPredictorConfig | None = None,
                 kinematics=None, arm_check: Callable[[np.ndarray, np.ndarray | None], str] | None = None,
                 completion: str | Path | None = None):
        import torch

        from grasp_planner.network.checkpoint import load_checkpoint
        from grasp_planner.network.closure import FingerMap
        from grasp_planner.network.hand_chain import actuated_vector, cached_hand_chain, full_vector

        self.hand, self.config = hand, config or NetworkPredictorConfig()
        #: metres: the wrist standoff after the ranking (the config's, else the hand's).
        self.standoff_m = hand.network_standoff_m if self.config.standoff_m is None else self.config.standoff_m
        self.checkpoint = Path(checkpoint)
        self.model, self.extra = load_checkpoint(self.checkpoint, hand=hand.name)
        self.checkpoint_sha256 = file_sha256(self.checkpoint)
        self.network_config = self.model.config
        self.uses_image = bool(self.network_config.use_image)
        _, self.kin, self.chain = cached_hand_chain(hand.name, self.network_config.hand_points)
        self._collision_chain = (cached_hand_chain(hand.name, self.config.collision_points)[2]
                                 if self.config.collision_points else None)
        self._canonical = self.chain.canonical_points.float()
        self._palm = self.kin.link_names.index(hand.palm_body)
        self._palm_normal = torch.tensor(hand.palm_normal, dtype=torch.float64)
        lower, upper = self.chain.lower.numpy(), self.chain.upper.numpy()
        delta = actuated_vector(hand, hand.closed_pose) - actuated_vector(hand, hand.open_pose)
        self._squeeze = lambda q: np.clip(q + self.config.squeeze * delta, lower, upper)  # noqa: E731
        self._q_open_full = torch.as_tensor(full_vector(hand, hand.open_pose))[None]
        self._root_to_flange = np.linalg.inv(hand.mount_transform)
        self._fingers = FingerMap.for_hand(hand, self.kin.model, self.kin.point_link, self.chain.joint_names)
        self._ik = kinematics
        self._arm_check = arm_check
        self.completion_path, self._completion = None, None
        if completion is not None:
            self.use_completion(completion)
        self._rejected: dict[str, int] = {}
        self._sim_check, self._check_completion = None, None
        if hand.network_sim_check if self.config.sim_check is None else self.config.sim_check:
            self._setup_sim_check()
        if self.config.reachability and kinematics is None:
            from grasp_planner.franka_ik import FrankaKinematics

            self._ik = FrankaKinematics()

    def use_completion(self, path: str | Path) -> None:
        """Load a shape-completion checkpoint for the refinement's surface (:meth:`completed_points`).

        Raises:
            FileNotFoundError: no such file.
            CompletionCheckpointError: not a usable completion checkpoint (the message says why).
        """
        from grasp_planner.network.completion import load_completion

        self._completion, _ = load_completion(path)
        self.completion_path = Path(path)

    def _setup_sim_check(self) -> None:
        """The simulated check and its shape completion (the shipped one; a missing or unusable file
        warns, and the check estimates the shape from the view alone)."""
        import warnings

        from grasp_planner.network.completion import CompletionCheckpointError, load_completion
        from grasp_planner.network.sim_check import SimCheck, SimCheckConfig

        self._sim_check = SimCheck(self.hand, SimCheckConfig(threads=self.config.threads))
        path = default_completion_checkpoint()
        try:
            self._check_completion, _ = load_completion(path)
        except (FileNotFoundError, CompletionCheckpointError) as exc:
            warnings.warn(f"sim_check: no shape completion ({exc}); the check sees the view alone", RuntimeWarning,
                          stacklevel=3)

    def describe(self) -> dict:
        return {**super().describe(), "checkpoint": str(self.checkpoint.resolve()),
                "checkpoint_sha256": self.checkpoint_sha256,
                "completion": None if self.completion_path is None else str(self.completion_path.resolve())}

    def no_candidate_reason(self) -> str:
        rejected = ", ".join(f"{n} {why}" for why, n in self._rejected.items() if n)
        return (f"every one of the network's {self.config.num_samples} samples penetrates the object or the "
                "table, or is out of the arm's reach" + (f" (last request: {rejected})" if rejected else ""))

    def capsule_table_gap(self, T_base_root: np.ndarray, approach: np.ndarray,
                          table_z_m: float) -> tuple[np.ndarray, np.ndarray]:
        """Clearance of the hand's arm-planning capsule above the table at the grasp and the pre-grasp.

        The capsule (``HandDescription.capsule_length_m`` / ``capsule_radius_m``, the motion planner's
        envelope) runs from the flange along the flange z axis; the pre-grasp is the grasp backed off
        ``approach_offset_m`` against the approach.

        Args:
            T_base_root: (B, 4, 4) hand root poses at the grasp, base frame, metres.
            approach: (B, 3) unit approach directions, base frame.
            table_z_m: table top height, metres.

        Returns:
            (B,) smallest clearance over both poses, metres (negative: in the table), and (B,) which
            pose has it (``"grasp"`` or ``"pre-grasp"``).
        """
        hand = self.hand
        T_flange = np.asarray(T_base_root) @ self._root_to_flange
        gaps = []
        for shift in (0.0, self.config.approach_offset_m):
            base = T_flange[:, :3, 3] - shift * approach
            tip = base + hand.capsule_length_m * T_flange[:, :3, 2]
            gaps.append(np.minimum(base[:, 2], tip[:, 2]) - hand.capsule_radius_m - table_z_m)
        gaps = np.stack(gaps, axis=1)
        return gaps.min(axis=1), np.where(gaps[:, 0] <= gaps[:, 1], "grasp", "pre-grasp")

    def approaches(self, solution) -> np.ndarray:
        """(B, 3) unit approach directions (palm normals), base frame, of a batch of recovered grasps."""
        palm = self.kin.link_poses(solution.q_full)[:, self._palm, :3, :3]                 # root frame
        approach = (solution.wrist_pose[:, :3, :3] @ palm @ self._palm_normal).numpy()
        return approach / np.linalg.norm(approach, axis=1, keepdims=True)

    def arm_rejection(self, T_base_root: np.ndarray, approach: np.ndarray, table_z_m: float,
                      cloud: np.ndarray | None = None) -> str:
        """Why the arm cannot take a grasp ("" when it can): see ``NetworkPredictorConfig.reachability``.

        Args:
            T_base_root: (4, 4) hand root pose at the grasp, base frame, metres.
            approach: (3,) unit approach direction, base frame.
            table_z_m: table top height, base frame, metres.
            cloud: (N, 3) object points the pre-grasp must keep clear of (``arm_check``), or None.

        Returns:
            "" or a short reason ("hand capsule in the table at the grasp", "grasp out of the arm's reach", ...).
        """
        cfg = self.config
        T_flange = T_base_root @ self._root_to_flange
        gap, where = self.capsule_table_gap(T_base_root[None], np.asarray(approach)[None], table_z_m)
        if gap[0] < 0.0:
            return f"hand capsule in the table at the {where[0]}"
        if self._ik is None:
            return ""
        pre, grasp = self._ik.solve_pregrasp_grasp(T_flange, cfg.approach_offset_m, T_flange[:3, :3].T @ approach)
        if not grasp.success:
            return "grasp out of the arm's reach"
        if not pre.success:
            return "pre-grasp out of the arm's reach"
        if self._arm_check is not None:
            for where, q, obstacle in (("grasp", grasp.q, None), ("pre-grasp", pre.q, cloud)):
                why = self._arm_check(q, obstacle)
                if why:
                    return f"{why} at the {where}"
        return ""

    def _inputs(self, cloud: np.ndarray, image, pixel_uv, rng: np.random.Generator):
        import torch

        from grasp_planner.network.model import DROBatch

        c = self.network_config
        cloud = np.asarray(cloud, dtype=np.float32).reshape(-1, 3)
        finite = np.isfinite(cloud).all(axis=1)
        if finite.sum() < c.knn_k + 1:
            raise GraspPredictionError(f"object cloud has {int(finite.sum())} finite points; the network needs "
                                       f"at least {c.knn_k + 1}")
        keep = np.flatnonzero(finite)
        pick = keep[rng.choice(len(keep), c.object_points, replace=len(keep) < c.object_points)]
        batch = DROBatch(object_points=torch.from_numpy(cloud[pick])[None], hand_points=self._canonical)
        if c.use_image:
            missing = [name for name, value in (("colour image", image), ("per-point pixels (u, v)", pixel_uv))
                       if value is None]
            if missing:
                raise GraspPredictionError(
                    f"the network of {self.checkpoint} was trained with images (use_image: true) but the object "
                    f"cloud came without its {' and '.join(missing)}: feed the planner grasp_perception's cloud "
                    "(fields u, v) and colour image, or use a geometry-only checkpoint")
            try:
                img, uv = network_view(image, pixel_uv, len(cloud), tuple(c.image_size))
            except ImageInputError as exc:
                raise GraspPredictionError(str(exc)) from exc
            batch.image = torch.from_numpy(img.astype(np.float32).transpose(2, 0, 1) / 255.0)[None]
            batch.pixel_uv = torch.from_numpy(uv[pick])[None]
        return batch

    def completed_points(self, cloud: np.ndarray, visible: VisibleSurface | None = None,
                         hidden_m: float = COMPLETION_HIDDEN_M, model=None) -> tuple[np.ndarray, np.ndarray]:
        """The completion model's guess of the surface the view does not show (the refinement's and
        the closure's surface with :meth:`object_surface`).

        Args:
            cloud: (N, 3) the object cloud, metres.
            visible: the cloud with its camera: only guessed points at least ``hidden_m`` (metres)
                behind the visible surface on their camera ray are kept; None keeps all.
            model: the completion model (default: the one of :meth:`use_completion`).

        Returns:
            ``points (M, 3)`` and unit outward ``normals (M, 3)``, float64, the cloud's frame (M may be 0).
        """
        from grasp_planner.network.completion import complete_cloud

        done, normals = complete_cloud(model or self._completion, cloud, self.config.seed)
        if visible is not None:
            behind, on_object = visible.depth_behind(done)
            hidden = on_object & (behind > hidden_m)
            done, normals = done[hidden], normals[hidden]
        return done, normals

    def object_surface(self, points, proxy: ObjectProxy, guess: tuple[np.ndarray, np.ndarray] | None = None):
        """The refinement's :class:`~grasp_planner.network.recovery.ObjectSurface` of the network's input points.

        Without a guessed side: normals by local PCA, oriented by the proxy's nearest facet; the
        signed distance is bounded by the convex proxy (outside it nothing is inside the object, so
        the unseen back of a single view is not mistaken for the inside). With one
        (:meth:`completed_points`): the input points plus the guessed points, the input points'
        normals oriented by the nearest guessed normal, bounded by the convex hull of both, each
        query reading the side of its nearest point (``one_sided_surface``). The table is an
        obstacle either way.

        Args:
            points: (N, 3) torch object points, base frame, metres.
            proxy: the object's convex proxy (with the table height).
            guess: ``(points (M, 3), normals (M, 3))`` of the unseen side, or None.
        """
        import torch

        from grasp_planner.network.recovery import ObjectSurface, estimate_normals

        pts = points.double()

        def table(x):
            return x[..., 2] - proxy.table_z

        completed = guess is not None and len(guess[0]) > 0
        if completed:
            from scipy.spatial import ConvexHull

            guessed, guessed_normals = (torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in guess)

            def outward(x):
                return guessed_normals[torch.cdist(x, guessed).argmin(dim=1)]

            surface_pts = torch.cat([pts, guessed])
            normals = torch.cat([estimate_normals(pts, outward=outward), guessed_normals])
            planes = torch.as_tensor(ConvexHull(surface_pts.numpy(), qhull_options="Qt").equations, dtype=torch.float64)
        else:
            planes = torch.as_tensor(proxy.equations, dtype=torch.float64)

            def outward(x):
                return torch.as_tensor(proxy.normal_at(x.detach().numpy()), dtype=x.dtype)

            surface_pts, normals = pts, estimate_normals(pts, outward=outward)

        def hull(x):
            return (x @ planes[:, :3].T.to(x.dtype) + planes[:, 3].to(x.dtype)).amax(dim=-1)
        return ObjectSurface(surface_pts, normals, bound=hull, obstacle=table,
                             one_sided=completed and self.config.one_sided_surface)

    def ranking_terms(self, proxy: ObjectProxy, touching=None, visible: VisibleSurface | None = None,
                      surface=None) -> dict[str, tuple[float, Callable]]:
        """The ranking terms of :func:`~grasp_planner.network.recovery.rank_candidates` for this object.

        Args:
            proxy: the object proxy.
            touching: (K, F) bool fingers touching after the contact closure, or None (no closure term).
            visible: the cloud with its camera, or None (no hidden-side and contact-point terms).
            surface: the refinement's surface when it holds a completed side, or None (no surface terms).
        """
        import torch

        cfg = self.config
        cache: dict[object, torch.Tensor] = {}

        def penetration(g) -> torch.Tensor:
            if id(g) not in cache:
                pts = g.solution.points.detach().double().numpy()
                sd = proxy.signed_distance(pts.reshape(-1, 3)).reshape(pts.shape[:2])
                depth = np.maximum(-sd, 0.0).sum(axis=1)
                cache[id(g)] = torch.as_tensor(np.where(depth > cfg.max_penetration_m, np.inf, depth))
            return cache[id(g)]

        def table(g) -> torch.Tensor:
            z = g.solution.points[..., 2].double()
            return torch.relu(proxy.table_z + cfg.table_clearance_m - z).amax(dim=-1)

        def start_points(g) -> np.ndarray:                # the pose the fingers start closing from
            if ("start", id(g)) not in cache:
                q = g.solution.q_full.detach().double()
                start = q + cfg.open_fraction * (self._q_open_full.to(q.dtype) - q)
                root = g.solution.wrist_pose.detach().double()
                cache["start", id(g)] = self.kin.forward(start, root_pose=root).points
            return cache["start", id(g)].numpy()

        def opening(g) -> torch.Tensor:
            pts = start_points(g)
            sd = proxy.signed_distance(pts.reshape(-1, 3)).reshape(pts.shape[:2])
            return torch.as_tensor(np.maximum(-sd, 0.0).sum(axis=1))

        def hidden(g) -> torch.Tensor:
            pts = start_points(g)
            return torch.as_tensor(visible.hidden_near(pts.reshape(-1, 3), cfg.hidden_near_m)
                                   .reshape(pts.shape[:2]).sum(axis=1), dtype=torch.float64)

        def near_points(g) -> torch.Tensor:
            pts = g.solution.points.detach().double().numpy()
            dist = visible.nearest(pts.reshape(-1, 3))[0].reshape(pts.shape[:2])
            return torch.as_tensor((dist < cfg.near_m).sum(axis=1), dtype=torch.float64)

        def contact(g) -> torch.Tensor:
            tips = self.kin.forward(g.solution.q_full, root_pose=g.solution.wrist_pose).fingertips
            sd = proxy.signed_distance(tips.detach().double().numpy().reshape(-1, 3)).reshape(tips.shape[:2])
            return torch.as_tensor(np.abs(sd).mean(axis=1))

        def surface_sd(x: torch.Tensor) -> torch.Tensor:
            x = x.detach().double()
            return surface.signed_distance(x, surface.neighbours(x, CLOSURE_NEIGHBOURS)).detach().double()

        def surface_penetration(g) -> torch.Tensor:
            return torch.relu(-surface_sd(g.solution.points)).sum(dim=1)

        def surface_gap(g) -> torch.Tensor:
            tips = self.kin.forward(g.solution.q_full, root_pose=g.solution.wrist_pose).fingertips
            return surface_sd(tips).abs().mean(dim=1)

        terms = {"penetration_m": (cfg.weight_penetration, penetration), "table_m": (cfg.weight_table, table),
                 "fingertip_gap_m": (cfg.weight_contact, contact)}
        if cfg.weight_open_penetration > 0:
            terms["open_penetration_m"] = (cfg.weight_open_penetration, opening)
        if visible is not None and cfg.weight_hidden_point > 0:
            terms["hidden_points"] = (cfg.weight_hidden_point, hidden)
        if visible is not None and cfg.weight_near_point > 0:
            terms["near_points"] = (-cfg.weight_near_point, near_points)
        if surface is not None:
            terms["surface_penetration_m"] = (cfg.weight_surface_penetration, surface_penetration)
            terms["surface_gap_m"] = (cfg.weight_surface_gap, surface_gap)
        if touching is not None:
            untouched = (~touching).sum(dim=1).double()
            terms["untouched_fingers"] = (cfg.weight_untouched_finger, lambda g: untouched)
        return terms

    def predict(self, cloud, proxy, max_results, image=None, pixel_uv=None, camera_xyz=None):
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.config.threads)
        try:
            return self._predict(cloud, proxy, max_results, image, pixel_uv, camera_xyz)
        finally:
            torch.set_num_threads(before)

    def _predict(self, cloud, proxy, max_results, image, pixel_uv, camera_xyz):
        import torch

        from grasp_planner.network.closure import close_fingers
        from grasp_planner.network.recovery import RefineConfig, rank_candidates, recover_grasps

        rng = np.random.default_rng(self.config.seed)
        batch = self._inputs(cloud, image, pixel_uv, rng)
        try:
            visible = None if camera_xyz is None else VisibleSurface(cloud, camera_xyz)
        except ValueError as exc:                # e.g. a NaN camera position: say so, plan nothing
            raise GraspPredictionError(f"free-space ranking: {exc}") from exc
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(self.config.seed)
            out = self.model(batch, num_samples=self.config.num_samples)
        self._rejected = {}
        refine = self.config.refine_iterations > 0
        # Every sample is refined before the arm check: the refinement lifts hands out of the table (the
        # wrist capsule moved up by 8-12 cm for one sample in ten on the sim mug/drill/box clouds).
        guess = self.completed_points(cloud, visible) if refine and self._completion is not None else None
        surface = self.object_surface(batch.object_points[0], proxy, guess) if refine else None
        grasps = recover_grasps(out.distances[0].double(), out.object_points[0].double(), self.chain,
                                surface=surface, refine_config=RefineConfig(iterations=self.config.refine_iterations,
                                                                            margin_m=self.config.refine_margin_m),
                                collision=self._collision_chain)
        touching = None
        if self.config.close_fingers:            # onto the observed surface (the hull over-fills concave parts)
            def observed(x: np.ndarray) -> np.ndarray:
                query = torch.from_numpy(x)[None]
                return surface.signed_distance(query, surface.neighbours(query, CLOSURE_NEIGHBOURS))[0].numpy()
            closed = close_fingers(grasps.solution, self.chain, self._fingers,
                                   proxy.signed_distance if surface is None else observed,
                                   free_fingers=self.config.free_fingers)
            grasps, touching = dataclasses.replace(grasps, solution=closed.solution), closed.touching
        completed = surface if guess is not None and len(guess[0]) else None
        ranking = rank_candidates(grasps, self.ranking_terms(proxy, touching, visible, completed))  # refined, closed
        sol = grasps.solution
        approach = self.approaches(sol)
        back = self.standoff_m * approach                                    # (K, 3) wrist standoff
        wrist = sol.wrist_pose.numpy().copy()
        wrist[:, :3, 3] -= back
        tips = self.kin.forward(sol.q_full, root_pose=sol.wrist_pose).fingertips.numpy() - back[:, None]
        q_open = self.hand.expand(self.hand.open_pose)
        by_name = lambda q: self.hand.expand(dict(zip(self.chain.joint_names, q.tolist())))  # noqa: E731
        order = [i for i in ranking.order.tolist() if np.isfinite(float(ranking.cost[i]))]
        # The arm check first (best first; every candidate when the simulated check follows, so the
        # check picks among grasps the arm can take), then the simulated check reorders those.
        reachable = []
        for idx in order:
            if self._sim_check is None and len(reachable) >= max_results:
                break
            why = (self.arm_rejection(wrist[idx], approach[idx], proxy.table_z, cloud)
                   if self.config.reachability else "")
            if why:
                self._rejected[why] = self._rejected.get(why, 0) + 1
            else:
                reachable.append(idx)
        checked: dict[int, dict] = {}
        if self._sim_check is not None and reachable:
            reachable, checked = self._simulated_check(cloud, visible, camera_xyz, reachable, wrist,
                                                       [by_name(sol.q[i].numpy()) for i in reachable])
        results = []
        for idx in reachable[:max_results]:
            unit_approach = approach[idx]
            q_act = sol.q[idx].numpy()
            gaps = proxy.signed_distance(tips[idx])
            results.append(GraspCandidate(
                T_base_root=wrist[idx].copy(), approach=unit_approach,
                q_open=dict(q_open), q_grasp=by_name(q_act), q_squeeze=by_name(self._squeeze(q_act)),
                contacts={f: (tips[idx, k].copy() if abs(gaps[k]) <= self.config.contact_m else None)
                          for k, f in enumerate(self.kin.fingers)},
                score=-float(ranking.cost[idx]),
                info={"backend": self.name, "sample": idx, "standoff_m": self.standoff_m, **checked.get(idx, {}),
                      **({} if touching is None else {"fingers_touching": int(touching[idx].sum())}),
                      **{k: float(v[idx]) for k, v in ranking.terms.items()},
                      **({} if grasps.refinement is None else
                         {"refine_penetration_before_m": float(grasps.refinement.penetration_before_m[idx]),
                          "refine_penetration_after_m": float(grasps.refinement.penetration_after_m[idx])})}))
        return results


    def _simulated_check(self, cloud: np.ndarray, visible: VisibleSurface | None, camera_xyz, order: list[int],
                         wrist: np.ndarray, q_by_name: list[dict[str, float]]) -> tuple[list[int], dict[int, dict]]:
        """Judge the ranked candidates ``order`` on the estimated shape and put those that hold first.

        Args:
            cloud: (N, 3) the object cloud, metres.
            visible: the cloud with its camera, or None.
            camera_xyz: (3,) camera position, or None.
            order: candidate indices, best first (finite cost only).
            wrist: (K, 4, 4) every candidate's hand root pose after the standoff.
            q_by_name: each of ``order``'s joint angles by name, radians.

        Candidates are judged best first, a chunk at a time, until a chunk holds one
        (:meth:`~grasp_planner.network.sim_check.SimCheck.judge`): the first candidate that holds is the
        one a full check would put first, at a fraction of the cost when the ranking is good.

        Returns:
            The new order (held on the estimate, then not judged, then failed; each group in ranking
            order) and per judged candidate the ``info`` entries ``sim_check_held`` / ``sim_check_reason``.
            A cloud that gives no shape leaves the order as it is and says why in ``sim_check_reason``.
        """
        from grasp_planner.network.sim_check import ShapeEstimateError, estimate_shape, holds, inward_directions

        cfg = self._sim_check.config
        points = np.asarray(cloud, np.float64).reshape(-1, 3)
        points = points[np.isfinite(points).all(axis=1)]
        try:
            guess = (self.completed_points(points, visible, hidden_m=cfg.hidden_m, model=self._check_completion)
                     if self._check_completion is not None and len(points) >= 3 else None)
            shape = estimate_shape(points, inward_directions(points, camera_xyz), guess, cfg, self.config.seed)
        except ShapeEstimateError as exc:
            return order, {i: {"sim_check_reason": f"no shape estimate: {exc}"} for i in order}
        q = np.array([[q_i[j] for j in self.hand.joint_names] for q_i in q_by_name])
        outcomes = dict(zip(order, self._sim_check.judge(shape, wrist[order], q, stop_after_held=True)))
        info = {i: {"sim_check_held": holds(o), "sim_check_reason": o.reason} for i, o in outcomes.items()
                if o is not None}
        held = [i for i in order if holds(outcomes[i])]
        unchecked = [i for i in order if outcomes[i] is None]
        failed = [i for i in order if outcomes[i] is not None and not holds(outcomes[i])]
        return held + unchecked + failed, info


def default_completion_checkpoint() -> Path:
    """The shipped shape-completion checkpoint: ``config/checkpoints/completion.safetensors``."""
    from grasp_common.rosenv import config_dir

    return config_dir() / "checkpoints" / "completion.safetensors"


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (identifies a checkpoint in status messages and result files)."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def default_checkpoint(hand_name: str) -> Path:
    """Where the planner looks for a hand's shipped checkpoint: ``config/checkpoints/<hand>.safetensors``."""
    from grasp_common.rosenv import config_dir

    return config_dir() / "checkpoints" / f"{hand_name}.safetensors"


def resolve_config_file(path: str | Path) -> Path:
    """A file named in the planner's parameters: absolute, else relative to the working directory when
    it exists there, else relative to the project's config folder (``checkpoints/completion.safetensors``)."""
    from grasp_common.rosenv import config_dir

    path = Path(path)
    return path if path.is_absolute() or path.exists() else config_dir() / path


def make_grasp_predictor(backend: str, hand: HandDescription, synthesizer: GraspSynthesizer,
                         checkpoint: str | Path | None = None, config: NetworkPredictorConfig | None = None,
                         kinematics=None, warn: Callable[[str], None] | None = None,
                         arm_check: Callable[[np.ndarray, np.ndarray | None], str] | None = None,
                         completion: str | Path | None = None) -> GraspPredictor:
    """The predictor named ``backend``; the optimiser (with a warning saying why) when the network cannot be used.

    Args:
        backend: ``"network"`` or ``"optimiser"``.
        hand: the hand.
        synthesizer: the optimiser (used directly, or as the fallback).
        checkpoint: network checkpoint (default :func:`default_checkpoint`).
        config: network predictor settings.
        kinematics: Franka IK shared with the planner (reachability check).
        arm_check: the network predictor's extra arm-configuration check (see :class:`NetworkPredictor`).
        warn: sink of the fallback warning (default: :func:`warnings.warn`).
        completion: shape-completion checkpoint of the network predictor (:func:`resolve_config_file`), or
            None. A missing or unusable one warns and the network plans without it (the view alone).

    Raises:
        ValueError: unknown backend name.
    """
    if backend not in GRASP_BACKENDS:
        raise ValueError(f"unknown grasp_backend '{backend}'; choose one of: {', '.join(GRASP_BACKENDS)}")
    if backend == "optimiser":
        return OptimiserPredictor(synthesizer)
    if warn is None:
        import warnings

        warn = lambda text: warnings.warn(text, RuntimeWarning, stacklevel=3)  # noqa: E731
    path = Path(checkpoint) if checkpoint else default_checkpoint(hand.name)
    if not path.is_file():
        text = (f"grasp_backend network: no network checkpoint for hand '{hand.name}' at {path}; planning with the "
                f"optimiser instead. Train one with `fgrasp train --hand {hand.name} --data DIR --out DIR` and set "
                "grasp_checkpoint to its last.safetensors")
        warn(text)
        return OptimiserPredictor(synthesizer, fallback_reason=text)
    try:
        predictor = NetworkPredictor(hand, path, config, kinematics, arm_check)
    except ValueError as exc:                       # CheckpointMismatchError and unreadable files
        text = f"grasp_backend network: refused checkpoint {path}: {exc}; planning with the optimiser instead"
        warn(text)
        return OptimiserPredictor(synthesizer, fallback_reason=text)
    if completion is not None:
        from grasp_planner.network.completion import CompletionCheckpointError

        try:
            predictor.use_completion(resolve_config_file(completion))
        except (FileNotFoundError, CompletionCheckpointError) as exc:
            warn(f"completion_checkpoint: {exc}; the network plans on the view alone (no shape completion)")
    return predictor
