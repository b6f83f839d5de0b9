"""Disturbance test that judges whether a grasp holds (D(R,O) validation protocol).

Runs against the :class:`~sim_bridge.simulator.Simulator` interface, so MuJoCo and IsaacGym judge
grasps the same way. Protocol (DESIGN.md, "D(R,O) validation protocol"): gravity off; the hand and arm keep their
position targets; a force of ``force_scale × object mass`` newtons is applied to the object
along +x, +y, +z, −x, −y, −z (world frame), each for ``duration_s`` as an independent trial
from the same snapshot of the state after the grasp; the grasp holds if the object moves at
most ``threshold_m`` in every trial.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from sim_bridge.simulator import Simulator

#: Direction label -> unit vector (world/base frame).
DIRECTIONS: dict[str, tuple[float, float, float]] = {
    "+x": (1.0, 0.0, 0.0), "+y": (0.0, 1.0, 0.0), "+z": (0.0, 0.0, 1.0),
    "-x": (-1.0, 0.0, 0.0), "-y": (0.0, -1.0, 0.0), "-z": (0.0, 0.0, -1.0),
}


@dataclass(frozen=True)
class DisturbanceProtocol:
    """Parameters of the disturbance test (SI units).

    Attributes:
        force_scale_n_per_kg: force magnitude per kg of object mass (0.5 → 0.5 × mass N).
        directions: labels from :data:`DIRECTIONS`, each an independent trial.
        duration_s: how long the force is applied in each trial.
        threshold_m: maximum object displacement for the grasp to count as held.
        gravity_off: switch gravity off for the whole test (restored afterwards).
        settle_s: physics time with gravity off and no force before the snapshot.
        lift_margin_m: the object counts as lifted if its height is this much above its rest height.
        support_off: switch off the object's contacts with the table and floor for the test, so
            only the hand can hold it (D(R,O): a floating hand; the table would otherwise carry
            the -z trial). Restored afterwards.
    """

    force_scale_n_per_kg: float = 0.5
    directions: tuple[str, ...] = ("+x", "+y", "+z", "-x", "-y", "-z")
    duration_s: float = 1.0
    threshold_m: float = 0.02
    gravity_off: bool = True
    settle_s: float = 0.1
    lift_margin_m: float = 0.01
    support_off: bool = True

    def __post_init__(self) -> None:
        bad = [d for d in self.directions if d not in DIRECTIONS]
        if bad or not self.directions:
            raise ValueError(f"unknown disturbance direction(s) {bad}; use {', '.join(DIRECTIONS)}")
        if self.force_scale_n_per_kg < 0 or self.duration_s <= 0 or self.threshold_m <= 0:
            raise ValueError("force_scale_n_per_kg must be ≥ 0, duration_s and threshold_m > 0")
        if self.settle_s < 0 or self.lift_margin_m < 0:
            raise ValueError("settle_s and lift_margin_m must be ≥ 0")


@dataclass(frozen=True)
class DisturbanceResult:
    """Outcome of :func:`run_disturbance_test` (JSON-ready through :meth:`to_dict`).

    Attributes:
        held: every trial kept the object within ``threshold_m``.
        max_displacement_m: largest displacement over all trials.
        displacement_m: direction label -> largest displacement during that trial (metres).
        object_in_contact_with_hand: the hand touched the object at the snapshot.
        hand_contacts: number of object–hand contacts at the snapshot.
        lifted: object height at the snapshot is above rest height + lift margin.
        object_height_above_rest_m: object height at the snapshot minus its rest height.
        force_n: magnitude of the applied force.
        object_mass_kg: object mass.
        sim_time_s: physics time simulated by the test (settle + trials).
        wall_time_s: wall-clock time the test took.
        protocol: the protocol used.
    """

    held: bool
    max_displacement_m: float
    displacement_m: dict[str, float]
    object_in_contact_with_hand: bool
    hand_contacts: int
    lifted: bool
    object_height_above_rest_m: float
    force_n: float
    object_mass_kg: float
    sim_time_s: float
    wall_time_s: float
    protocol: DisturbanceProtocol = field(default_factory=DisturbanceProtocol)

    def to_dict(self) -> dict:
        """Plain dict of built-in types (for ``json.dumps``)."""
        d = asdict(self)
        d["protocol"]["directions"] = list(self.protocol.directions)
        return d


def run_disturbance_test(sim: Simulator, protocol: DisturbanceProtocol = DisturbanceProtocol()
                         ) -> DisturbanceResult:
    """Run the disturbance trials on the simulator's current state; the state is restored afterwards.

    Works on any :class:`~sim_bridge.simulator.Simulator` backend (MuJoCo, IsaacGym). Blocks for
    ≈ (settle + n_directions × duration) of physics (≈0.2–2 s wall for 6 × 1 s in MuJoCo).
    """
    wall0 = time.perf_counter()
    original = sim.save_state()
    gravity, support = sim.gravity_enabled, sim.support_contacts_enabled
    sim.cancel_trajectory()
    dt = sim.timestep_s
    sim_steps = 0
    zero = np.zeros(3)
    try:
        if protocol.gravity_off:
            sim.set_gravity(False)
        if protocol.support_off:
            sim.set_support_contacts(False)
        sim.apply_object_force(zero)
        n_settle = int(round(protocol.settle_s / dt))
        sim.step(n_settle)
        sim_steps += n_settle
        contacts = sim.object_hand_contacts()
        height = float(sim.object_pose()[0][2]) - sim.object_rest_z
        snapshot = sim.save_state()
        force = protocol.force_scale_n_per_kg * sim.object_mass_kg
        n_trial = int(round(protocol.duration_s / dt))
        displacement: dict[str, float] = {}
        for label in protocol.directions:
            sim.restore_state(snapshot)
            p0 = sim.object_pose()[0]
            sim.apply_object_force(force * np.asarray(DIRECTIONS[label]))
            worst = 0.0
            for _ in range(n_trial):
                sim.step(1)
                worst = max(worst, float(np.linalg.norm(sim.object_pose()[0] - p0)))
            sim.apply_object_force(zero)
            displacement[label] = worst
            sim_steps += n_trial
    finally:
        sim.apply_object_force(zero)
        sim.set_gravity(gravity)
        sim.set_support_contacts(support)
        sim.restore_state(original)
    max_disp = max(displacement.values())
    return DisturbanceResult(
        held=bool(max_disp <= protocol.threshold_m), max_displacement_m=max_disp,
        displacement_m=displacement, object_in_contact_with_hand=contacts > 0,
        hand_contacts=int(contacts), lifted=bool(height > protocol.lift_margin_m),
        object_height_above_rest_m=height, force_n=float(force),
        object_mass_kg=sim.object_mass_kg, sim_time_s=sim_steps * dt,
        wall_time_s=time.perf_counter() - wall0, protocol=protocol)
