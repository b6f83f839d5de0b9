"""Validation of adapted grasps in MuJoCo: the D(R,O) disturbance protocol + CorDex's functional test.

Scene (one per hand × object, compiled once, reused for every grasp): the hand alone, its root
body a **mocap body** (fixed in space at the grasp's wrist pose), and the object with a free joint
at the world origin — so the world frame *is* the object frame and the disturbance forces act
along the object's ±x, ±y, ±z as in D(R,O). Gravity 0; friction 3.0 and density 500 kg/m³
(:class:`sim_bridge.objects.ObjectSpec` builds the object, CoACD pieces or its hull from
:mod:`grasp_data.collision`); the hand's own servos (the Shadow Hand's model actuators, the
coupled hands' ``actuators`` block via :func:`sim_bridge.scene.add_hand_servos`). PD gains of
1000/200 as in IsaacGym are not stable for MuJoCo finger links at a 2 ms step, so the scene's
position servos are used instead.

Per grasp ``(T, q)`` (:mod:`grasp_data.adaptation`):

1. start with the fingers 25 % of the way toward the open pose (``q + 0.25 (q_open − q)``) and
   ramp the servo targets over ``close_s`` to 15 % of the way toward the closed pose
   (``q + 0.15 (q_closed − q)``: every finger presses, also one that touches nearly open);
   a grasp whose start pose already penetrates the object by more than
   ``max_initial_penetration_m`` is rejected without simulation;
2. from the state after closing, six independent trials (the
   :class:`sim_bridge.evaluation.DisturbanceProtocol`: ``force_scale × mass`` N along each
   direction for ``duration_s``); held if the object moved ≤ ``threshold_m`` in all of them;
3. functional criterion (CorDex): every finger the demonstration puts on a *functional* region
   (trigger, plunger, flange) touches that region — a MuJoCo contact of the finger's middle or
   distal link within ``functional_tolerance_m`` of the region's surface samples — and no hand
   contact lies on an *avoid* region. CorDex uses 1 mm; our meshes' regions are sampled at
   ~1–2 mm spacing and MuJoCo contact points lie on convex pieces, so the default is 5 mm.

Kept = held and functional. Every grasp gets a :class:`GraspOutcome` with the reason.

Throughput: :meth:`GraspValidator.validate` runs all grasps' physics through
``mujoco.rollout`` (C loop, ``threads`` MjData stepped in parallel threads);
:meth:`GraspValidator.validate_naive` steps the same physics one trial at a time with
``mj_step`` from Python — the baseline the benchmark compares against. Both give the same
outcomes (the test suite checks it). Two things cut the work without changing a verdict:

- hand link pairs that never come within 5 mm of each other over the joint range skip their
  collision checks (:mod:`grasp_data.contact_filter`; hand–object pairs are never skipped).
  The trajectories stay bit-identical (checked on 443 grasps: Shadow 231, OYMotion 128,
  Inspire 84). CPU per trial: Inspire −18…27 % (50 pairs), OYMotion −3…4 % (38), Shadow
  −2…6 % (153: its cost is in the fingertip–object mesh contacts and the solver);
- a grasp whose hand does not touch the object after closing is rejected as ``no_contact``
  without its disturbance trials (``skip_contactless``, on by default): no trial could change
  that verdict. Its ``held`` is then False and its displacements NaN. Contactless grasps are
  common: 865 of the 1408 Shadow Hand mug grasps of the engine's seed-600 run, and 136 of the
  226 simulated OYMotion network candidates of a held-out evaluation (seed 0);
- ``stop_when_decided`` (off by default): a 0.35 s probe of all six directions first; a grasp
  displaced beyond the threshold in any of them is rejected there, every other grasp runs the
  full protocol again from the closed state (its outcome is then exactly the full run's). On
  the Shadow Hand's engine grasps (nearly all rejected) it simulates ~45 % of the steps; when
  most grasps hold, the probe is extra work (up to +35 %).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import mujoco
import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from grasp_data.adaptation import AdaptationResult, HandModel
from grasp_data.contact_filter import unreachable_hand_pairs
from grasp_data.demonstrations import Demonstration
from grasp_data.labelled_mesh import LabelledMesh
from grasp_data.regions import category_regions
from grasp_planner.hands import HandDescription
from sim_bridge.evaluation import DIRECTIONS, DisturbanceProtocol
from sim_bridge.objects import OBJECT_BODY, OBJECT_JOINT, ObjectSpec
from sim_bridge.scene import compile_spec, hand_root_for_attachment, quiet_empty_prefix_warning

#: Outcome reasons (a displaced grasp's reason names the direction: ``displaced:+x``).
REASONS = ("ok", "initial_penetration", "no_contact", "displaced", "functional_miss", "avoid_contact")
#: ``mujoco.rollout`` control vectors: servo controls + hand root pose (closing), + the object's
#: applied wrench (trials); rollout states hold no mocap pose, so it travels with the controls.
_CTRL_MOCAP = int(mujoco.mjtState.mjSTATE_CTRL | mujoco.mjtState.mjSTATE_MOCAP_POS | mujoco.mjtState.mjSTATE_MOCAP_QUAT)
_CTRL_XFRC_MOCAP = _CTRL_MOCAP | int(mujoco.mjtState.mjSTATE_XFRC_APPLIED)


@dataclass(frozen=True)
class ValidationConfig:
    """Settings of the validation (SI units).

    Attributes:
        protocol: the disturbance protocol (force scale, directions, duration, threshold); its
            gravity/support switches are implied by the floating-hand scene.
        timestep_s: physics step.
        close_s: duration of the closing ramp.
        open_fraction: closing starts this fraction of the way from the grasp toward the open pose.
        squeeze_fraction: the closing target lies this fraction of the way from the grasp toward
            the closed pose (DESIGN.md: "15 % toward closed"; the mirror of ``open_fraction``).
        friction: object sliding friction (MuJoCo takes the max of the pair).
        density_kg_m3: object density (mass = density × collision volume).
        functional_tolerance_m: a designated finger's contact must be this close to its region.
        max_initial_penetration_m: deepest hand–object penetration accepted at the start pose.
        threads: MjData stepped in parallel by ``mujoco.rollout``.
        chunk_grasps: grasps per rollout call (bounds memory: ~2 MB per grasp).
        self_pair_samples: hand configurations sampled to find hand link pairs that never come
            within ``self_pair_margin_m`` of each other (:mod:`grasp_data.contact_filter`); the
            scene skips their collision checks (same trajectories, less work). 0 keeps every pair.
        self_pair_margin_m: a hand link pair closer than this in any sample keeps its collision checks.
        stop_when_decided: stop the disturbance trials of a grasp once its verdict is known: all
            six directions first run for ``probe_s``; a grasp displaced beyond ``threshold_m`` in
            any of them is not held whatever the rest would do, so its trials end there (its
            ``displacement_m`` are the displacements within the probe, lower bounds of the full
            run's; its reason names the direction displaced most within the probe); every other
            grasp's six trials are run again in full from the closed state, so its outcome is
            exactly the full run's. Held / kept verdicts never change (tests check it).
        probe_s: length of the probe trials of ``stop_when_decided``, seconds.
        skip_contactless: a grasp with no hand–object contact after closing gets no disturbance
            trials (its verdict is ``no_contact`` whatever they would show; ``held`` False,
            displacements NaN).
    """

    protocol: DisturbanceProtocol = field(default_factory=DisturbanceProtocol)
    timestep_s: float = 0.002
    close_s: float = 1.0
    open_fraction: float = 0.25
    squeeze_fraction: float = 0.15
    friction: float = 3.0
    density_kg_m3: float = 500.0
    functional_tolerance_m: float = 0.005
    max_initial_penetration_m: float = 0.005
    threads: int = 2
    chunk_grasps: int = 32
    self_pair_samples: int = 10000
    self_pair_margin_m: float = 0.005
    stop_when_decided: bool = False
    probe_s: float = 0.35
    skip_contactless: bool = True

    def __post_init__(self) -> None:
        if not 1e-4 <= self.timestep_s <= 0.01:
            raise ValueError(f"timestep_s {self.timestep_s} is outside 0.0001..0.01 s")
        if self.close_s <= 0 or self.friction <= 0 or self.density_kg_m3 <= 0:
            raise ValueError("close_s, friction and density_kg_m3 must be > 0")
        if not (0 <= self.open_fraction <= 1 and 0 <= self.squeeze_fraction <= 1):
            raise ValueError("open_fraction and squeeze_fraction must be in 0..1")
        if self.functional_tolerance_m < 0 or self.max_initial_penetration_m < 0:
            raise ValueError("functional_tolerance_m and max_initial_penetration_m must be ≥ 0")
        if self.threads < 1 or self.chunk_grasps < 1:
            raise ValueError(f"threads ({self.threads}) and chunk_grasps ({self.chunk_grasps}) must be ≥ 1")
        if self.self_pair_samples < 0 or self.self_pair_margin_m < 0:
            raise ValueError(f"self_pair_samples ({self.self_pair_samples}) and self_pair_margin_m "
                             f"({self.self_pair_margin_m}) must be ≥ 0")
        if not 0 < self.probe_s <= self.protocol.duration_s:
            raise ValueError(f"probe_s {self.probe_s} must be in (0, protocol.duration_s = "
                             f"{self.protocol.duration_s}] s")


@dataclass(frozen=True)
class GraspOutcome:
    """Validation result of one grasp.

    Attributes:
        kept: held and functional.
        reason: ``ok`` or the first failed check (:data:`REASONS`; ``displaced:<direction>``,
            ``functional_miss:<finger>``, ``avoid_contact:<region>``).
        held: passed the disturbance trials (False if they were not run).
        functional: passed the functional criterion (False if not evaluated).
        simulated: the physics ran (False for an initial penetration).
        initial_penetration_m: deepest hand–object penetration at the start pose, metres.
        hand_contacts: hand–object contacts after closing.
        max_displacement_m: largest displacement over the trials (NaN if not simulated).
        displacement_m: per direction (protocol order), metres (NaN if not simulated).
        finger_distance_m: designated finger → distance of its nearest contact (or surface
            point) to its functional region, metres.
        steps: physics steps simulated for this grasp (closing + disturbance trials; fewer than
            the full protocol's when ``stop_when_decided`` ended its trials early).
    """

    kept: bool
    reason: str
    held: bool
    functional: bool
    simulated: bool
    initial_penetration_m: float
    hand_contacts: int = 0
    max_displacement_m: float = float("nan")
    displacement_m: tuple[float, ...] = ()
    finger_distance_m: dict[str, float] = field(default_factory=dict)
    steps: int = 0


def designated_fingers(demo: Demonstration) -> dict[str, str]:
    """finger → functional region name: the demonstration's contacts on *functional* regions."""
    functional = set(category_regions(demo.category).of_kind("functional"))
    return {c.finger: c.region for c in demo.contacts if c.region in functional}


class FloatingHandScene:
    """The compiled hand + object scene of one hand and one object (module docstring).

    Args:
        hand: the hand model (:class:`~grasp_data.adaptation.HandModel`: its finger link groups are reused).
        instance: the labelled object (object frame = world).
        object_spec: the simulator object of ``instance`` (collision pieces), e.g.
            ``convex_decomposition(instance.mesh).spec`` or ``mesh_object(instance.mesh)``.
        config: validation settings.
    """

    def __init__(self, hand: HandModel, instance: LabelledMesh, object_spec: ObjectSpec,
                 config: ValidationConfig = ValidationConfig()) -> None:
        self.hand_model, self.instance, self.config = hand, instance, config
        desc: HandDescription = hand.hand
        #: Hand link pairs whose collision checks the scene skips (they never touch:
        #: :mod:`grasp_data.contact_filter`); never a pair with the object.
        self.skipped_pairs = (unreachable_hand_pairs(desc, config.self_pair_samples, config.self_pair_margin_m)
                              if config.self_pair_samples else ())
        self.model = compile_spec(self._spec(desc, object_spec))
        m = self.model
        self.data = mujoco.MjData(m)
        self.joint_qadr = np.array([m.jnt_qposadr[m.joint(n).id] for n in desc.joint_names])
        self.object_body = m.body(OBJECT_BODY).id
        self.object_qadr = int(m.jnt_qposadr[m.joint(OBJECT_JOINT).id])
        self.mocap_id = int(m.body_mocapid[m.body(desc.root_body).id])
        self.state_spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self.nstate = mujoco.mj_stateSize(m, self.state_spec)
        #: Offset of the object's position inside a FULLPHYSICS state (time, then qpos).
        self.state_object_pos = mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_TIME) + self.object_qadr
        root = m.body(desc.root_body).id
        self.hand_bodies = np.array([b for b in range(m.nbody) if self._below(b, root)])
        kin = hand.kin
        self.finger_bodies = {f: {m.body(kin.link_names[l]).id for l in np.unique(kin.point_link[idx])}
                              for f, idx in hand.finger_points.items()}
        self.mass_kg = float(m.body_subtreemass[self.object_body])

    def _below(self, body: int, root: int) -> bool:
        while body > 0:
            if body == root:
                return True
            body = int(self.model.body_parentid[body])
        return False

    def _spec(self, desc: HandDescription, object_spec: ObjectSpec) -> mujoco.MjSpec:
        c = self.config
        world = mujoco.MjSpec()
        world.modelname = f"fgrasp_validate_{desc.name}"
        world.option.timestep = c.timestep_s
        world.option.gravity = [0.0, 0.0, 0.0]
        world.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        world.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
        world.option.impratio = 10.0
        root = hand_root_for_attachment(desc, c.timestep_s)
        frame = world.worldbody.add_frame()
        with quiet_empty_prefix_warning():
            attached = frame.attach_body(root, "", "")
        attached.mocap = True
        object_spec.add_to_spec(world, pos=np.zeros(3), quat_wxyz=np.array([1.0, 0, 0, 0]),
                                density_kg_m3=c.density_kg_m3, friction=c.friction)
        for a, b in self.skipped_pairs:
            world.add_exclude(bodyname1=a, bodyname2=b)
        return world

    # ------------------------------------------------------------------ states
    def actuator_targets(self, q: np.ndarray) -> np.ndarray:
        """(nu,) servo controls that hold hand joints ``q`` ((n_joints,) rad): each position
        servo's transmission length at ``q`` (joint angle, or tendon length for the Shadow Hand's
        coupled distal joints), clipped to its control range."""
        d = self.data
        d.qpos[self.joint_qadr] = q
        mujoco.mj_kinematics(self.model, d)
        mujoco.mj_comPos(self.model, d)
        mujoco.mj_tendon(self.model, d)
        mujoco.mj_transmission(self.model, d)
        ctrl = d.actuator_length.copy()
        limited = self.model.actuator_ctrllimited.astype(bool)
        lo, hi = self.model.actuator_ctrlrange.T
        ctrl[limited] = np.clip(ctrl[limited], lo[limited], hi[limited])
        return ctrl

    @staticmethod
    def mocap_of(root_pose: np.ndarray) -> np.ndarray:
        """(7,) mocap ``pos (3), quat w x y z (4)`` of a (4, 4) hand root pose."""
        x, y, z, w = Rotation.from_matrix(root_pose[:3, :3]).as_quat()
        return np.concatenate([root_pose[:3, 3], [w, x, y, z]])

    def set_mocap(self, d: mujoco.MjData, mocap: np.ndarray) -> None:
        """Put the hand root at ``mocap`` (7,) (FULLPHYSICS states do not hold mocap poses)."""
        d.mocap_pos[self.mocap_id] = mocap[:3]
        d.mocap_quat[self.mocap_id] = mocap[3:]

    def initial_state(self, root_pose: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, float]:
        """FULLPHYSICS state with joints ``q``, the object at rest at the origin, and the deepest
        hand–object penetration, metres (≥ 0), with the hand root at ``root_pose`` (4, 4) (the
        state itself holds no mocap pose: pass :meth:`mocap_of` along)."""
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        self.set_mocap(d, self.mocap_of(root_pose))
        d.qpos[self.joint_qadr] = q
        mujoco.mj_forward(m, d)
        depth = 0.0
        for con in d.contact[:d.ncon]:
            if self._hand_object(con):
                depth = max(depth, -float(con.dist))
        state = np.empty(self.nstate)
        mujoco.mj_getState(m, d, state, self.state_spec)
        return state, depth

    def _hand_object(self, con) -> bool:
        b1, b2 = self.model.geom_bodyid[con.geom1], self.model.geom_bodyid[con.geom2]
        return (b1 == self.object_body and b2 in self.hand_bodies) or (b2 == self.object_body and b1 in self.hand_bodies)

    def contacts_at(self, state: np.ndarray, mocap: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Hand–object contacts at ``state`` with the hand root at ``mocap`` (7,): (hand body id,
        (3,) contact point in the object frame)."""
        m, d = self.model, self.data
        mujoco.mj_setState(m, d, state, self.state_spec)
        self.set_mocap(d, mocap)
        mujoco.mj_forward(m, d)
        R = d.xmat[self.object_body].reshape(3, 3)
        p = d.xpos[self.object_body]
        out = []
        for con in d.contact[:d.ncon]:
            if self._hand_object(con):
                b1 = int(m.geom_bodyid[con.geom1])
                hand_body = b1 if b1 != self.object_body else int(m.geom_bodyid[con.geom2])
                out.append((hand_body, R.T @ (con.pos - p)))
        return out


class GraspValidator:
    """Validates batches of grasps of one object with one hand (module docstring).

    Args:
        scene: the compiled scene.
        demo: the category demonstration (designated fingers and their functional regions).
        region_samples: surface samples used to label contact points.
    """

    def __init__(self, scene: FloatingHandScene, demo: Demonstration | None, region_samples: int = 20000) -> None:
        self.scene = scene
        c = scene.config
        self.config = c
        inst = scene.instance
        pts, _, labels = inst.sample_surface(region_samples, seed=0)
        self._labels_tree, self._labels = cKDTree(pts), labels
        self._region_trees = {}
        self.designated = designated_fingers(demo) if demo is not None else {}
        for region in set(self.designated.values()):
            if region in inst.region_names:
                self._region_trees[region] = cKDTree(pts[labels == inst.label(region)])
        kinds = category_regions(inst.category).of_kind("avoid") if inst.category else ()
        self._avoid = {inst.label(r): r for r in kinds if r in inst.region_names}
        h = scene.hand_model
        self.q_open = h.full(torch.as_tensor(h.q_open[None])).numpy()[0]
        self.q_closed = h.full(torch.as_tensor(h.q_closed[None])).numpy()[0]
        lim = np.asarray(h.hand.joint_limits)
        self._lo, self._hi = lim[:, 0], lim[:, 1]
        self.n_close = int(round(c.close_s / c.timestep_s))
        self.n_trial = int(round(c.protocol.duration_s / c.timestep_s))
        self.n_probe = max(1, int(round(c.probe_s / c.timestep_s)))

    # ------------------------------------------------------------------ set-up shared by both paths
    def _prepare(self, grasps: AdaptationResult):
        """Per grasp: start state, closing controls (n_close, nu), mocap pose (7,), penetration."""
        c, s = self.config, self.scene
        starts, ramps, depth = [], [], []
        mocaps = np.array([s.mocap_of(T) for T in grasps.root_pose])
        for T, q in zip(grasps.root_pose, grasps.q):
            q_start = np.clip(q + c.open_fraction * (self.q_open - q), self._lo, self._hi)
            q_target = np.clip(q + c.squeeze_fraction * (self.q_closed - q), self._lo, self._hi)
            u0, u1 = s.actuator_targets(q_start), s.actuator_targets(q_target)
            state, pen = s.initial_state(T, q_start)
            a = (np.arange(1, self.n_close + 1) / self.n_close)[:, None]
            starts.append(state)
            ramps.append((1 - a) * u0 + a * u1)
            depth.append(pen)
        return np.array(starts), np.array(ramps), mocaps, np.array(depth)

    def _forces(self) -> np.ndarray:
        """(n_dir, nbody * 6) xfrc_applied vectors of the protocol's directions."""
        s, p = self.scene, self.config.protocol
        out = np.zeros((len(p.directions), s.model.nbody * 6))
        for i, label in enumerate(p.directions):
            out[i, s.object_body * 6:s.object_body * 6 + 3] = p.force_scale_n_per_kg * s.mass_kg * np.asarray(DIRECTIONS[label])
        return out

    # ------------------------------------------------------------------ batched path
    def validate(self, grasps: AdaptationResult) -> list[GraspOutcome]:
        """Validate every grasp; the physics of all of them runs in ``mujoco.rollout`` chunks."""
        s, c = self.scene, self.config
        starts, ramps, mocaps, depth = self._prepare(grasps)
        run = np.flatnonzero(depth <= c.max_initial_penetration_m)
        datas = [mujoco.MjData(s.model) for _ in range(c.threads)]
        closed = np.empty((len(grasps), s.nstate))
        disp = np.full((len(grasps), len(c.protocol.directions)), np.nan)
        steps = np.zeros(len(grasps), dtype=int)
        # Rollout states hold no mocap pose: it is part of the control vector (bit order: ctrl,
        # xfrc_applied, mocap_pos, mocap_quat), constant over the steps.
        for k in range(0, len(run), c.chunk_grasps):
            idx = run[k:k + c.chunk_grasps]
            pose = np.repeat(mocaps[idx, None], self.n_close, axis=1)
            control = np.concatenate([ramps[idx], pose], axis=2)
            states, _ = self._rollout(datas, starts[idx], control, _CTRL_MOCAP, self.n_close)
            closed[idx] = states[:, -1]
            steps[idx] = self.n_close
            todo = idx[self._touching(closed[idx], mocaps[idx])]
            if c.stop_when_decided:
                probe = self._trials_batched(datas, closed[todo], ramps[todo, -1], mocaps[todo], self.n_probe)
                steps[todo] += probe.shape[1] * self.n_probe
                decided = np.any(probe > c.protocol.threshold_m, axis=1)
                disp[todo[decided]] = probe[decided]
                todo = todo[~decided]
            if len(todo):
                disp[todo] = self._trials_batched(datas, closed[todo], ramps[todo, -1], mocaps[todo], self.n_trial)
                steps[todo] += disp.shape[1] * self.n_trial
        return [self._outcome(i, depth[i], closed[i] if i in run else None, mocaps[i], disp[i], steps[i])
                for i in range(len(grasps))]

    def _touching(self, closed: np.ndarray, mocaps: np.ndarray) -> np.ndarray:
        """(k,) bool: which of ``k`` closed states (k, nstate) need disturbance trials — all of
        them, or with ``skip_contactless`` those whose hand touches the object."""
        if not self.config.skip_contactless:
            return np.ones(len(closed), dtype=bool)
        return np.array([bool(self.scene.contacts_at(s, m)) for s, m in zip(closed, mocaps)], dtype=bool)

    def _rollout(self, datas: list[mujoco.MjData], init: np.ndarray, control: np.ndarray, spec: int,
                 nstep: int) -> tuple[np.ndarray, np.ndarray]:
        from mujoco import rollout

        return rollout.rollout(self.scene.model, datas, init, control, control_spec=spec, nstep=nstep)

    def _trials_batched(self, datas: list[mujoco.MjData], closed: np.ndarray, hold: np.ndarray,
                        mocaps: np.ndarray, nstep: int) -> np.ndarray:
        """(k, n_dir) largest object displacement, metres, of every protocol direction's trial of
        ``k`` grasps over ``nstep`` steps from their closed states (k, nstate), servo controls
        ``hold`` (k, nu) and hand root poses ``mocaps`` (k, 7)."""
        s = self.scene
        forces = self._forces()
        n, n_dir = len(closed), len(forces)
        init = np.repeat(closed, n_dir, axis=0)
        control = np.concatenate([np.repeat(hold, n_dir, axis=0), np.tile(forces, (n, 1)),
                                  np.repeat(mocaps, n_dir, axis=0)], axis=1)[:, None, :]
        traj, _ = self._rollout(datas, init, control, _CTRL_XFRC_MOCAP, nstep)
        p = s.state_object_pos
        moved = np.linalg.norm(traj[:, :, p:p + 3] - init[:, None, p:p + 3], axis=-1)
        return moved.max(axis=1).reshape(n, n_dir)

    # ------------------------------------------------------------------ naive path
    def validate_naive(self, grasps: AdaptationResult) -> list[GraspOutcome]:
        """The same validation, one trial at a time, ``mj_step`` from Python (the baseline)."""
        s, c = self.scene, self.config
        m = s.model
        starts, ramps, mocaps, depth = self._prepare(grasps)
        forces = self._forces()
        d = mujoco.MjData(m)
        out = []
        for i in range(len(grasps)):
            if depth[i] > c.max_initial_penetration_m:
                out.append(self._outcome(i, depth[i], None, mocaps[i], np.full(len(forces), np.nan), 0))
                continue
            self._set(d, starts[i], mocaps[i])
            for u in ramps[i]:
                d.ctrl[:] = u
                mujoco.mj_step(m, d)
            closed = np.empty(s.nstate)
            mujoco.mj_getState(m, d, closed, s.state_spec)
            steps = self.n_close
            disp = None
            if not self._touching(closed[None], mocaps[i][None])[0]:
                disp = np.full(len(forces), np.nan)
            elif c.stop_when_decided:
                probe = self._trials_naive(d, closed, ramps[i, -1], mocaps[i], self.n_probe)
                steps += len(forces) * self.n_probe
                if np.any(probe > c.protocol.threshold_m):
                    disp = probe
            if disp is None:
                disp = self._trials_naive(d, closed, ramps[i, -1], mocaps[i], self.n_trial)
                steps += len(forces) * self.n_trial
            out.append(self._outcome(i, depth[i], closed, mocaps[i], disp, steps))
        return out

    def _trials_naive(self, d: mujoco.MjData, closed: np.ndarray, hold: np.ndarray, mocap: np.ndarray,
                      nstep: int) -> np.ndarray:
        """(n_dir,) :meth:`_trials_batched` for one grasp, one trial after the other with ``mj_step``."""
        s, m = self.scene, self.scene.model
        disp = []
        for f in self._forces():
            self._set(d, closed, mocap)
            d.ctrl[:] = hold
            d.xfrc_applied[:] = f.reshape(-1, 6)
            p0 = d.qpos[s.object_qadr:s.object_qadr + 3].copy()
            worst = 0.0
            for _ in range(nstep):
                mujoco.mj_step(m, d)
                worst = max(worst, float(np.linalg.norm(d.qpos[s.object_qadr:s.object_qadr + 3] - p0)))
            disp.append(worst)
        d.xfrc_applied[:] = 0.0
        return np.array(disp)

    def _set(self, d: mujoco.MjData, state: np.ndarray, mocap: np.ndarray) -> None:
        """Put ``d`` at ``state`` (hand root at ``mocap``) as ``mujoco.rollout`` starts a trajectory."""
        mujoco.mj_resetData(self.scene.model, d)
        mujoco.mj_setState(self.scene.model, d, state, self.scene.state_spec)
        self.scene.set_mocap(d, mocap)

    # ------------------------------------------------------------------ judging
    def _outcome(self, i: int, depth: float, closed: np.ndarray | None, mocap: np.ndarray,
                 disp: np.ndarray, steps: int) -> GraspOutcome:
        c = self.config
        if closed is None:
            return GraspOutcome(False, "initial_penetration", False, False, False, float(depth))
        contacts = self.scene.contacts_at(closed, mocap)
        max_disp = float(np.max(disp))
        held = bool(max_disp <= c.protocol.threshold_m)
        base = dict(simulated=True, initial_penetration_m=float(depth), hand_contacts=len(contacts),
                    max_displacement_m=max_disp, displacement_m=tuple(float(v) for v in disp), steps=int(steps))
        functional, why, dist = self._functional(contacts)
        if not contacts:
            reason = "no_contact"
        elif not held:
            reason = f"displaced:{c.protocol.directions[int(np.argmax(disp))]}"
        else:
            reason = why
        return GraspOutcome(kept=held and functional and bool(contacts), reason=reason, held=held,
                            functional=functional, finger_distance_m=dist, **base)

    def _functional(self, contacts: list[tuple[int, np.ndarray]]) -> tuple[bool, str, dict[str, float]]:
        """(passed, reason, finger → distance to its functional region) from the closed state's contacts."""
        if contacts and self._avoid:
            _, nearest = self._labels_tree.query(np.array([p for _, p in contacts]))
            for label in self._labels[nearest]:
                if int(label) in self._avoid:
                    return False, f"avoid_contact:{self._avoid[int(label)]}", {}
        dist: dict[str, float] = {}
        for finger, region in self.designated.items():
            tree = self._region_trees.get(region)
            pts = [p for b, p in contacts if b in self.scene.finger_bodies.get(finger, ())]
            dist[finger] = float(tree.query(np.array(pts))[0].min()) if (tree is not None and pts) else float("inf")
        for finger, d in dist.items():
            if d > self.config.functional_tolerance_m:
                return False, f"functional_miss:{finger}", dist
        return True, "ok", dist
