"""IsaacGym backend: its translation to the gymapi calls, checked against a fake of exactly the gymapi surface it uses.

IsaacGym cannot be installed here (DESIGN.md). The fake ``isaacgym.gymapi`` has only the classes,
constants and Gym methods the backend calls, with IsaacGym's names, argument order and numpy
structured dtypes; anything else raises AttributeError. Its "physics" moves the object by the
applied force only (a free point mass), so the disturbance protocol's force sequence can be
read back from the object's motion.
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from grasp_planner.hands import load_hand
from grasp_planner.robots.panda import ARM_JOINT_NAMES, OBSERVE_Q
from sim_bridge import isaacgym_backend as igb
from sim_bridge.evaluation import DIRECTIONS, DisturbanceProtocol, run_disturbance_test
from sim_bridge.scene import SceneConfig
from sim_bridge.simulator import make_simulator

HAND = load_hand("shadow")
JOINTS = list(ARM_JOINT_NAMES) + list(HAND.joint_names)
OBJECT_MASS_KG = 0.2
DOF_MODE_POS = 1

_VEC3 = [("x", "f4"), ("y", "f4"), ("z", "f4")]
DOF_STATE = np.dtype([("pos", "f4"), ("vel", "f4")])
DOF_PROPS = np.dtype([("hasLimits", "?"), ("lower", "f4"), ("upper", "f4"), ("driveMode", "i4"),
                      ("velocity", "f4"), ("effort", "f4"), ("stiffness", "f4"), ("damping", "f4"),
                      ("friction", "f4"), ("armature", "f4")])
BODY_STATE = np.dtype([("pose", [("p", _VEC3), ("r", _VEC3 + [("w", "f4")])]),
                       ("vel", [("linear", _VEC3), ("angular", _VEC3)])])
CONTACT = np.dtype([("body0", "i4"), ("body1", "i4")])


class _Attrs:
    """A plain attribute bag (SimParams, AssetOptions, CameraProperties, shape/body properties)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


class Vec3:
    def __init__(self, x=0.0, y=0.0, z=0.0):
        self.x, self.y, self.z = float(x), float(y), float(z)


class Quat:
    def __init__(self, x=0.0, y=0.0, z=0.0, w=1.0):
        self.x, self.y, self.z, self.w = x, y, z, w


class Transform:
    def __init__(self):
        self.p, self.r = Vec3(), Quat()


class FakeGym:
    """Records every call; the object is a free point mass pushed by applied forces."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.actors: dict[int, dict] = {}
        self.forces: list[tuple[float, float, float]] = []   # force of every simulate() step
        self._pending = np.zeros(3)
        self.gravity_history: list[tuple] = []
        self.dt = None
        # The asset lists the joints in another order than ours, plus one DOF we do not use.
        order = JOINTS[::-1][:10] + ["rh_unused"] + JOINTS[::-1][10:]
        self.dof_dict = {n: i for i, n in enumerate(order)}

    def _log(self, name, *args):
        self.calls.append((name, *args))

    def create_sim(self, compute_device, graphics_device, physics_engine, params):
        self._log("create_sim", compute_device, graphics_device, physics_engine)
        self.params, self.dt = params, params.dt
        return "sim"

    def load_asset(self, sim, root, filename, options):
        self._log("load_asset", root, filename, options)
        return f"asset:{filename}"

    def create_box(self, sim, width, depth, height, options):
        self._log("create_box", width, depth, height, options)
        return "asset:box"

    def create_env(self, sim, lower, upper, per_row):
        return "env"

    def create_actor(self, env, asset, pose, name, group, filter_):
        handle = len(self.actors)
        n_dof = len(self.dof_dict) if name == "robot" else 0
        self.actors[handle] = {
            "name": name, "asset": asset, "pose": pose,
            "dof_states": np.zeros(n_dof, DOF_STATE),
            "dof_props": np.array([(True, -3.0, 3.0, 0, 2.0, 80.0, 0.0, 0.0, 0.0, 0.0)] * n_dof, DOF_PROPS),
            "targets": np.zeros(n_dof, np.float32),
            "shapes": [_Attrs(friction=1.0, filter=0) for _ in range(3)],
            "bodies": np.zeros(1, BODY_STATE),
        }
        self.actors[handle]["bodies"][0]["pose"]["r"]["w"] = 1.0
        return handle

    def get_actor_dof_dict(self, env, actor):
        return dict(self.dof_dict)

    def get_actor_dof_properties(self, env, actor):
        return self.actors[actor]["dof_props"].copy()

    def set_actor_dof_properties(self, env, actor, props):
        self.actors[actor]["dof_props"] = props.copy()

    def get_actor_rigid_shape_properties(self, env, actor):
        return [_Attrs(**vars(s)) for s in self.actors[actor]["shapes"]]

    def set_actor_rigid_shape_properties(self, env, actor, props):
        self.actors[actor]["shapes"] = [_Attrs(**vars(s)) for s in props]

    def get_actor_rigid_body_handle(self, env, actor, index):
        return ("body", actor, index)

    def get_actor_rigid_body_index(self, env, actor, index, domain):
        return 100 * actor + index

    def get_actor_rigid_body_dict(self, env, actor):
        return {"panda_link0": 0, "rh_palm": 1, "rh_ffdistal": 2}

    def get_actor_rigid_body_properties(self, env, actor):
        return [_Attrs(mass=OBJECT_MASS_KG)]

    def set_actor_dof_position_targets(self, env, actor, targets):
        self.actors[actor]["targets"] = np.asarray(targets, np.float32).copy()

    def get_actor_dof_states(self, env, actor, flags):
        return self.actors[actor]["dof_states"].copy()

    def set_actor_dof_states(self, env, actor, states, flags):
        self.actors[actor]["dof_states"] = states.copy()

    def get_actor_rigid_body_states(self, env, actor, flags):
        return self.actors[actor]["bodies"].copy()

    def set_actor_rigid_body_states(self, env, actor, states, flags):
        self.actors[actor]["bodies"] = states.copy()

    def apply_body_forces(self, env, body, force, torque, space):
        assert space == "ENV_SPACE" and (torque.x, torque.y, torque.z) == (0.0, 0.0, 0.0)
        self._pending = np.array([force.x, force.y, force.z])

    def simulate(self, sim):
        obj = next(a for a in self.actors.values() if a["name"] == "object")
        b = obj["bodies"][0]
        v = np.array([b["vel"]["linear"][k] for k in "xyz"], float) + self._pending / OBJECT_MASS_KG * self.dt
        for k, vk in zip("xyz", v):
            b["vel"]["linear"][k] = vk
            b["pose"]["p"][k] += vk * self.dt
        for a in self.actors.values():   # PD drives reach their targets at once
            a["dof_states"]["pos"] = a["targets"]
        self.forces.append(tuple(self._pending))
        self._pending = np.zeros(3)      # PhysX clears applied forces after a step

    def fetch_results(self, sim, wait):
        assert wait is True

    def set_sim_params(self, sim, params):
        self.gravity_history.append((params.gravity.x, params.gravity.y, params.gravity.z))

    def get_env_rigid_contacts(self, env):
        return np.array([(200, 1), (2, 200), (200, 0), (200, 100)], CONTACT)   # object (actor 2) with palm, fingertip, link0, table

    def destroy_sim(self, sim):
        self._log("destroy_sim")


def fake_gymapi() -> types.ModuleType:
    g = types.ModuleType("isaacgym.gymapi")
    gym = FakeGym()
    g.acquire_gym = lambda: gym
    g.SimParams = lambda: _Attrs(physx=_Attrs())
    g.AssetOptions = _Attrs
    g.CameraProperties = _Attrs
    g.Vec3, g.Quat, g.Transform = Vec3, Quat, Transform
    g.DOF_MODE_POS = DOF_MODE_POS   # an int-like enum in IsaacGym (stored in the driveMode field)
    for name in ("SIM_PHYSX", "UP_AXIS_Z", "STATE_ALL", "STATE_POS", "ENV_SPACE", "DOMAIN_ENV",
                 "IMAGE_COLOR", "IMAGE_DEPTH"):
        setattr(g, name, name)
    return g


@pytest.fixture
def sim(tmp_path):
    robot = tmp_path / "franka_shadow.urdf"
    robot.write_text("<robot name='franka_shadow'/>")
    g = fake_gymapi()
    s = igb.IsaacGymSimulator(SceneConfig(object="box"), igb.IsaacGymConfig(robot_asset=str(robot)), gymapi=g)
    yield s
    s.close()


def test_joint_names_map_to_the_assets_dof_indices_by_name(sim):
    dof_dict = sim.gym.dof_dict
    np.testing.assert_array_equal(sim._dof, [dof_dict[n] for n in JOINTS])
    sim.set_targets({"panda_joint2": -0.5, "rh_FFJ3": 0.7})
    targets = sim.gym.actors[sim.robot]["targets"]
    assert targets[dof_dict["panda_joint2"]] == pytest.approx(-0.5)
    assert targets[dof_dict["rh_FFJ3"]] == pytest.approx(0.7)
    assert targets[dof_dict["rh_unused"]] == 0.0
    sim.step(1)
    q = sim.joint_positions()
    assert q["panda_joint2"] == pytest.approx(-0.5) and q["panda_joint1"] == pytest.approx(OBSERVE_Q[0], abs=1e-6)
    with pytest.raises(ValueError, match=r"unknown joint name\(s\) \['rh_nope'\]"):
        sim.set_targets({"rh_nope": 0.0})
    with pytest.raises(ValueError, match=r"no DOF named \['panda_joint7'\]"):
        igb.dof_indices({n: i for i, n in enumerate(JOINTS) if n != "panda_joint7"}, JOINTS)


def test_drives_friction_and_asset_options_follow_the_protocol(sim):
    props = sim.gym.actors[sim.robot]["dof_props"]
    assert np.all(props["driveMode"] == DOF_MODE_POS)
    assert np.all(props["stiffness"] == 1000.0) and np.all(props["damping"] == 200.0)
    for actor in (sim.robot, sim.object):
        assert all(s.friction == 3.0 for s in sim.gym.actors[actor]["shapes"])
    loads = {c[2]: c[3] for c in sim.gym.calls if c[0] == "load_asset"}
    robot, obj = loads["franka_shadow.urdf"], loads["object.urdf"]
    assert robot.fix_base_link is True and robot.flip_visual_attachments is False
    assert robot.default_dof_drive_mode == DOF_MODE_POS and robot.disable_gravity is True
    assert obj.fix_base_link is False and obj.density == 500.0 and obj.vhacd_enabled is True
    (box,) = [c for c in sim.gym.calls if c[0] == "create_box"]
    assert box[1:4] == pytest.approx((1.2, 1.2, igb.TABLE_THICKNESS_M)) and box[4].fix_base_link is True
    params = sim.gym.params
    assert params.dt == 0.002 and params.use_gpu_pipeline is False and params.up_axis == "UP_AXIS_Z"


def test_disturbance_protocol_pushes_along_each_axis_with_half_the_mass(sim):
    result = run_disturbance_test(sim, DisturbanceProtocol(settle_s=0.0))
    n_trial = int(round(1.0 / sim.timestep_s))
    forces = np.array(sim.gym.forces)
    assert len(forces) == 6 * n_trial
    for k, label in enumerate(("+x", "+y", "+z", "-x", "-y", "-z")):
        trial = forces[k * n_trial:(k + 1) * n_trial]
        np.testing.assert_allclose(trial, np.tile(0.5 * OBJECT_MASS_KG * np.array(DIRECTIONS[label]), (n_trial, 1)),
                                   rtol=1e-6)
        # a free object under 0.5 N/kg for 1 s drifts 0.5 * 0.5 * 1² = 0.25 m (semi-implicit Euler)
        assert result.displacement_m[label] == pytest.approx(0.25, rel=0.01)
    assert not result.held and result.force_n == pytest.approx(0.1)
    assert result.hand_contacts == 2 and result.object_in_contact_with_hand
    # gravity off for the test, back on afterwards; the table's collisions with the object off and back on
    assert sim.gym.gravity_history == [(0.0, 0.0, 0.0), (0.0, 0.0, -9.81)]
    assert sim.gravity_enabled and sim.support_contacts_enabled
    assert all(s.filter == 0 for s in sim.gym.actors[sim.table]["shapes"])
    # the state is restored: object back where it was, no force pending
    np.testing.assert_allclose(sim.object_pose()[0], sim._rest_pos, atol=1e-6)
    sim.step(1)
    assert sim.gym.forces[-1] == (0.0, 0.0, 0.0)


def test_support_contacts_off_sets_a_shared_filter_bit_on_table_and_object(sim):
    sim.set_support_contacts(False)
    for actor in (sim.table, sim.object):
        assert all(s.filter == igb.SUPPORT_FILTER_BIT for s in sim.gym.actors[actor]["shapes"])
    assert all(s.filter == 0 for s in sim.gym.actors[sim.robot]["shapes"])   # the hand still touches it


def test_object_urdf_camera_and_depth_translation():
    box = igb.object_urdf(__import__("sim_bridge.objects", fromlist=["get_object"]).get_object("box"))
    assert '<box size="0.05 0.05 0.05"/>' in box and box.count("<collision>") == 1
    drill = igb.object_urdf(__import__("sim_bridge.objects", fromlist=["get_object"]).get_object("drill"))
    assert drill.count("<collision>") == 4 and "textured_coacd_0.stl" in drill
    assert igb.horizontal_fov_deg(58.0, 480, 480) == pytest.approx(58.0)
    assert igb.horizontal_fov_deg(58.0, 640, 480) > 58.0
    depth = igb.depth_from_gym(np.array([[-0.5, -np.inf], [0.0, -20.0]], np.float32), max_depth_m=10.0)
    assert depth[0, 0] == pytest.approx(0.5) and np.isnan(depth[0, 1]) and np.isnan(depth[1]).all()


def test_missing_isaacgym_or_robot_asset_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "isaacgym", None)   # import isaacgym -> ImportError
    robot = tmp_path / "r.urdf"
    robot.write_text("<robot/>")
    with pytest.raises(ImportError, match="needs the 'isaacgym' package.*IsaacGym Preview 4.*backend 'mujoco'"):
        make_simulator("isaacgym", SceneConfig(object="box"), {"robot_asset": str(robot)})
    with pytest.raises(ValueError, match="isaacgym_robot_asset"):
        make_simulator("isaacgym", SceneConfig(object="box"), {})
    with pytest.raises(ValueError, match="unknown simulator backend 'bullet'; choose one of: mujoco, isaacgym"):
        make_simulator("bullet", SceneConfig(object="box"))
