"""Launch files, graphs.yaml and the params file: no drift between `ros2 launch` and the launcher.

launch/launch_ros are not installable here, so the launch files run against small fakes of
exactly the API they use; the fakes reject keyword arguments the real classes do not take.
"""
from __future__ import annotations

import math
import re
import sys
import tomllib
import types
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from functional_grasp import graph_config
from functional_grasp.graph_config import GraphConfigError, get_graph, load_graphs, resolve_graph
from functional_grasp.launcher import node_command
from grasp_common import topics
from grasp_common.rosenv import config_dir, project_root

ROOT = project_root()
LAUNCH_DIR = ROOT / "launch"
PARAMS_FILE = config_dir() / "functional_grasp.yaml"
OBJECT_AREA_M = np.array([0.5, 0.0, 0.05])


# --------------------------------------------------------------------------------------------
# Fake launch / launch_ros (the surface the launch files use, with the real signatures)


class _Recorder:
    allowed: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        unknown = set(kwargs) - set(self.allowed)
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword arguments {unknown}")
        self.args, self.kwargs = args, kwargs


class FakeLaunchDescription(_Recorder):
    def __init__(self, initial_entities=None):
        super().__init__()
        self.entities = list(initial_entities or [])


class FakeDeclareLaunchArgument(_Recorder):
    allowed = ("default_value", "description", "choices")

    def __init__(self, name, **kwargs):
        super().__init__(name, **kwargs)
        self.name = name


class FakeSetEnvironmentVariable(_Recorder):
    def __init__(self, name, value):
        super().__init__(name, value)
        self.name, self.value = name, value


class FakeOpaqueFunction(_Recorder):
    allowed = ("function", "args", "kwargs")


class FakeLaunchConfiguration(_Recorder):
    allowed = ("default",)

    def __init__(self, variable_name, **kwargs):
        super().__init__(variable_name, **kwargs)
        self.variable_name = variable_name

    def perform(self, context):
        return context.launch_configurations[self.variable_name]


class FakeNode(_Recorder):
    allowed = ("package", "executable", "name", "namespace", "output", "parameters",
               "remappings", "arguments", "ros_arguments", "condition")


class FakeContext:
    def __init__(self, launch_configurations: dict[str, str]):
        self.launch_configurations = launch_configurations


@pytest.fixture
def fake_launch(monkeypatch):
    """Install fake launch, launch.actions, launch.substitutions, launch_ros(.actions) modules."""
    surface = {
        "launch": {"LaunchDescription": FakeLaunchDescription},
        "launch.actions": {"DeclareLaunchArgument": FakeDeclareLaunchArgument,
                           "SetEnvironmentVariable": FakeSetEnvironmentVariable,
                           "OpaqueFunction": FakeOpaqueFunction},
        "launch.substitutions": {"LaunchConfiguration": FakeLaunchConfiguration},
        "launch_ros": {},
        "launch_ros.actions": {"Node": FakeNode},
    }
    for name, attrs in surface.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(sys.modules["launch"], "actions", sys.modules["launch.actions"], raising=False)
    monkeypatch.setattr(sys.modules["launch"], "substitutions", sys.modules["launch.substitutions"],
                        raising=False)
    monkeypatch.setattr(sys.modules["launch_ros"], "actions", sys.modules["launch_ros.actions"],
                        raising=False)


def run_launch_file(graph: str, arguments: dict[str, str]):
    """Exec launch/<graph>.launch.py as `ros2 launch` would; return (declared args, env, nodes)."""
    path = LAUNCH_DIR / f"{graph}.launch.py"
    namespace: dict = {"__file__": str(path), "__name__": f"launch_{graph}"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102 - our own file
    description = namespace["generate_launch_description"]()
    assert isinstance(description, FakeLaunchDescription)
    declared = {e.name: e for e in description.entities if isinstance(e, FakeDeclareLaunchArgument)}
    env = {e.name: e.value for e in description.entities if isinstance(e, FakeSetEnvironmentVariable)}
    unknown = set(arguments) - set(declared)
    assert not unknown, f"ros2 launch would reject {unknown}: not declared by {path.name}"
    configs = {name: arg.kwargs["default_value"] for name, arg in declared.items()}
    configs.update(arguments)
    for name, arg in declared.items():  # real launch validates choices
        assert configs[name] in arg.kwargs.get("choices", [configs[name]])
    nodes = []
    for entity in description.entities:
        if isinstance(entity, FakeOpaqueFunction):
            nodes += entity.kwargs["function"](FakeContext(configs))
    assert all(isinstance(n, FakeNode) for n in nodes)
    return declared, env, [n.kwargs for n in nodes]


def _split_override_files(files: list[str]) -> tuple[list[str], dict]:
    """Shared params files, and the merged parameters of the node-keyed override files."""
    shared, params = [], {}
    for f in files:
        if f.endswith(".overrides.yaml"):
            for section in yaml.safe_load(Path(f).read_text()).values():
                params.update(section["ros__parameters"])
        else:
            shared.append(f)
    return shared, params


def launcher_view(graph: str, arguments: dict[str, str], tmp: Path) -> dict[str, dict]:
    """What the project launcher runs, parsed back from its command lines: name -> node facts."""
    out = {}
    for node in resolve_graph(graph, arguments):
        argv = node_command(node, overrides_dir=tmp / "launcher")
        ros = argv[argv.index("--ros-args") + 1:]
        files, params, remaps, name = [], {}, [], None
        for flag, value in zip(ros[::2], ros[1::2]):
            if flag == "--params-file":
                files.append(value)
            elif flag == "-p":
                key, text = value.split(":=", 1)
                params[key] = yaml.safe_load(text)
            elif value.startswith("__node:="):
                name = value.split(":=", 1)[1]
            else:
                remaps.append(tuple(value.split(":=", 1)))
        module = re.search(r"from (\S+) import main", argv[2]).group(1)
        files, from_files = _split_override_files(files)
        params.update(from_files)
        out[name] = {"executable": node.executable, "package": node.package, "module": module,
                     "files": files, "params": params, "remappings": remaps}
    return out


def launch_view(nodes: list[dict]) -> dict[str, dict]:
    """The same facts from the launch_ros Node kwargs of the launch file."""
    out = {}
    for kw in nodes:
        if kw["package"] != "functional_grasp":
            continue
        assert all(isinstance(p, str) for p in kw["parameters"]), "dict overrides lose to YAML node sections"
        files, merged = _split_override_files(list(kw["parameters"]))
        out[kw["name"]] = {"executable": kw["executable"], "package": kw["package"],
                           "files": files, "params": merged,
                           "remappings": [tuple(r) for r in kw.get("remappings", [])]}
    return out


CASES = [
    ("sim", {}),
    ("sim", {"hand": "shadow", "object": "power_drill", "motion_backend": "moveit_py", "rviz": "true"}),
    ("real_arm", {}),
    ("real_arm", {"camera": "realsense", "execute": "true", "motion_backend": "builtin"}),
    ("replay", {}),
    ("replay", {"hand": "inspire"}),
    ("replay", {"seed": "3"}),
]


@pytest.mark.parametrize(("graph", "arguments"), CASES)
def test_launch_file_starts_exactly_what_the_launcher_starts(fake_launch, graph, arguments, tmp_path):
    _, _, nodes = run_launch_file(graph, arguments)
    launched = launch_view(nodes)
    started = launcher_view(graph, arguments, tmp_path)
    assert list(launched) == list(started)  # same nodes, same order
    for name, facts in started.items():
        mine = dict(facts)
        mine.pop("module")
        assert launched[name] == mine, name


def test_graph_modules_match_the_console_scripts_of_pyproject():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for graph in load_graphs().values():
        for node in graph.nodes:
            assert scripts.get(node.executable) == f"{node.module}:main", (graph.name, node.name)


def test_declared_launch_arguments_are_the_documented_ones(fake_launch):
    expected = {"sim": {"hand", "object", "motion_backend", "sim_backend", "rviz"},
                "real_arm": {"hand", "camera", "calibration", "execute", "motion_backend", "hand_command_type"},
                "replay": {"hand", "seed"}}
    for graph, names in expected.items():
        declared, _, _ = run_launch_file(graph, {})
        assert set(declared) == names, graph
        spec = get_graph(graph)
        for name, action in declared.items():
            assert action.kwargs["default_value"] == spec.argument(name).default
            assert action.kwargs["description"], f"{graph}:{name} needs a description"


def test_sim_and_replay_pin_dds_to_localhost_but_real_arm_does_not(fake_launch):
    for graph in ("sim", "replay"):
        _, env, _ = run_launch_file(graph, {})
        assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
        assert Path(env["FASTRTPS_DEFAULT_PROFILES_FILE"]).is_file()
    _, env, _ = run_launch_file("real_arm", {})
    assert env == {}


def test_real_arm_never_executes_motion_unless_asked(fake_launch):
    def planner(arguments):
        _, _, nodes = run_launch_file("real_arm", arguments)
        return launch_view(nodes)["grasp_planner"]["params"]

    assert planner({})["execute"] is False  # overrides execute: true of functional_grasp.yaml
    assert planner({"execute": "false"})["execute"] is False
    assert planner({"execute": "true"})["execute"] is True
    assert planner({})["motion_backend"] == "moveit_py"
    assert planner({})["command_target"] == "hardware"   # controller topics, never the simulator's
    assert planner({"hand_command_type": "std_msgs/Float64MultiArray"})["hand_command_type"] == \
        "std_msgs/Float64MultiArray"
    with pytest.raises(GraphConfigError, match="execute:=maybe: expected true or false"):
        resolve_graph("real_arm", {"execute": "maybe"})


def test_real_arm_camera_argument_selects_driver_topics(fake_launch):
    def remaps(camera):
        _, _, nodes = run_launch_file("real_arm", {"camera": camera})
        return dict(launch_view(nodes)["grasp_perception"]["remappings"])

    zed, realsense = remaps("zed"), remaps("realsense")
    assert zed[topics.COLOR_IMAGE] == "/zed/zed_node/rgb/image_rect_color"
    assert zed[topics.CAMERA_INFO] == "/zed/zed_node/rgb/camera_info"
    assert realsense == {topics.COLOR_IMAGE: "/camera/camera/color/image_raw",
                         topics.DEPTH_IMAGE: "/camera/camera/aligned_depth_to_color/image_raw",
                         topics.CAMERA_INFO: "/camera/camera/color/camera_info"}
    assert set(zed) == set(realsense)


def test_real_arm_calibration_file_overrides_the_camera_pose(fake_launch, tmp_path):
    calib = tmp_path / "hand_eye.yaml"
    calib.write_text("/**:\n  ros__parameters:\n    camera_xyz: [1.0, 0.0, 0.8]\n"
                     "    camera_quat_xyzw: [0.0, 0.0, 0.0, 1.0]\n")
    _, _, nodes = run_launch_file("real_arm", {"calibration": str(calib)})
    params = launch_view(nodes)["grasp_perception"]["params"]
    assert params["camera_xyz"] == [1.0, 0.0, 0.8]
    assert params["camera_quat_xyzw"] == [0.0, 0.0, 0.0, 1.0]

    calib.write_text("camera_xyz: [1.0, 0.0, 0.8]\ncamera_quat_xyzw: [0.0, 0.0, 0.5, 1.0]\n")
    with pytest.raises(GraphConfigError, match="camera_quat_xyzw .* norm 1.1180"):
        resolve_graph("real_arm", {"calibration": str(calib)})
    calib.write_text("camera_xyz: [1.0, 0.0]\ncamera_quat_xyzw: [0.0, 0.0, 0.0, 1.0]\n")
    with pytest.raises(GraphConfigError, match="camera_xyz: expected 3 finite numbers"):
        resolve_graph("real_arm", {"calibration": str(calib)})
    calib.write_text("camera_xyz: [1.0, 0.0, 0.8]\n")
    with pytest.raises(GraphConfigError, match="missing camera_quat_xyzw"):
        resolve_graph("real_arm", {"calibration": str(calib)})
    with pytest.raises(GraphConfigError, match="file not found"):
        resolve_graph("real_arm", {"calibration": str(tmp_path / "missing.yaml")})


def test_rviz_only_with_rviz_true_and_with_the_shipped_config(fake_launch):
    _, _, nodes = run_launch_file("sim", {})
    assert not [n for n in nodes if n["package"] == "rviz2"]
    _, _, nodes = run_launch_file("sim", {"rviz": "true"})
    (rviz,) = [n for n in nodes if n["package"] == "rviz2"]
    config = Path(rviz["arguments"][rviz["arguments"].index("-d") + 1])
    text = yaml.safe_load(config.read_text())
    manager = text["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "panda_link0"
    shown = {d["Class"]: d.get("Topic", {}).get("Value") for d in manager["Displays"]}
    assert shown["rviz_default_plugins/PointCloud2"] == topics.OBJECT_CLOUD
    assert shown["rviz_default_plugins/MarkerArray"] == topics.GRASP_MARKERS
    images = [d["Topic"]["Value"] for d in manager["Displays"] if d["Class"].endswith("/Image")]
    assert topics.COLOR_IMAGE in images and topics.OBJECT_MASK in images


# --------------------------------------------------------------------------------------------
# graph_config errors


def test_unknown_graph_names_the_known_ones():
    with pytest.raises(GraphConfigError, match="unknown graph 'simulation'; known graphs: sim, real_arm, replay"):
        get_graph("simulation")


def test_unknown_or_invalid_argument_is_rejected_with_the_valid_ones():
    with pytest.raises(GraphConfigError, match="no launch argument 'camera'; known arguments: hand, object"):
        resolve_graph("sim", {"camera": "zed"})
    with pytest.raises(GraphConfigError, match="camera:=kinect: expected one of zed, realsense"):
        resolve_graph("real_arm", {"camera": "kinect"})
    with pytest.raises(GraphConfigError, match="no node 'planner'; its nodes: sim_bridge"):
        resolve_graph("sim", extra_params={"planner": {"seed": 1}})


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda g: g["graphs"]["sim"]["nodes"][0].update(remaps=[]), r"nodes\[0\]: unknown keys \['remaps'\]"),
    (lambda g: g["graphs"]["sim"]["nodes"][0].update(arguments={"colour": "x"}), "'colour' is not an argument"),
    (lambda g: g["graphs"]["sim"]["nodes"][0].update(params_files=["nope.yaml"]), "file not found"),
    (lambda g: g["graphs"]["sim"]["nodes"][0].update(remappings=[["/a"]]), r"remappings\[0\]: expected \[from_topic"),
    (lambda g: g["graphs"]["sim"]["nodes"].append(dict(g["graphs"]["sim"]["nodes"][0])), "node names must be unique"),
    (lambda g: g["graphs"]["sim"]["arguments"]["hand"].update(type="colour"), "is not one of string, bool"),
    (lambda g: g["graphs"]["sim"]["arguments"]["rviz"].update(default="yes please"), "expected true or false"),
])
def test_invalid_graphs_yaml_is_rejected_naming_the_entry(tmp_path, mutate, message):
    data = yaml.safe_load((config_dir() / "graphs.yaml").read_text())
    data.pop("templates")
    mutate(data)
    for name in ("functional_grasp.yaml", "hand_eye_calibration.example.yaml", "functional_grasp.rviz"):
        (tmp_path / name).write_text((config_dir() / name).read_text())
    path = tmp_path / "graphs.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(GraphConfigError, match=message):
        load_graphs(path)


# --------------------------------------------------------------------------------------------
# graphs.yaml <-> params file <-> topics


def test_remapped_topics_are_the_nodes_default_topics():
    defaults = {v for k, v in vars(topics).items() if k.isupper() and isinstance(v, str)}
    for graph in load_graphs().values():
        for node in graph.nodes:
            pairs = list(node.remappings) + [p for t in node.remappings_by_argument.values()
                                             for ps in t.values() for p in ps]
            for src, _ in pairs:
                assert src in defaults, f"{graph.name}/{node.name} remaps {src}, not a topic of grasp_common.topics"


def _params():
    return yaml.safe_load(PARAMS_FILE.read_text())


def test_params_file_has_the_agreed_keys_per_node():
    params = {k: set(v["ros__parameters"]) for k, v in _params().items()}
    assert params == {
        "/**": {"base_frame", "hand", "camera_xyz", "camera_quat_xyzw"},
        "sim_bridge": {"backend", "isaacgym_robot_asset", "object", "object_xy", "object_yaw", "real_time_factor", "camera_rate_hz",
                       "joint_state_rate_hz", "camera_width", "camera_height", "camera_fovy_deg",
                       "evaluate_after_execution"},
        "grasp_perception": {"max_rate_hz", "voxel_size_m", "plane_distance_m", "cluster_tolerance_m",
                             "min_cluster_points", "target", "target_point", "target_index",
                             "workspace_min_xyz", "workspace_max_xyz"},
        "grasp_planner": {"motion_backend", "execute", "approach_offset_m", "lift_height_m",
                          "num_candidates", "seed", "velocity_scale", "command_target", "arm_command_topic",
                          "hand_command_topic", "hand_command_type", "hand_setpoint_rate_hz",
                          "grasp_backend", "grasp_checkpoint", "network_samples", "completion_checkpoint",
                          "network_fallback"},
    }
    every_node = {n.name for g in load_graphs().values() for n in g.nodes}
    assert every_node <= set(params)


def test_every_parameter_line_is_commented():
    keyed = re.compile(r"^\s{4}[a-z_]+:\s*\S")
    bare = [line for line in PARAMS_FILE.read_text().splitlines() if keyed.match(line) and "#" not in line]
    assert not bare, f"parameters without a comment (meaning + unit): {bare}"


def test_sim_defaults_are_well_formed():
    p = _params()
    planner = p["grasp_planner"]["ros__parameters"]
    assert planner["approach_offset_m"] > 0.0 and planner["lift_height_m"] >= 0.0
    assert planner["execute"] is True and planner["motion_backend"] == "builtin"
    assert 0.0 < planner["velocity_scale"] <= 1.0
    perception = p["grasp_perception"]["ros__parameters"]
    assert perception["target"] in ("largest", "nearest", "index")
    lo, hi = np.array(perception["workspace_min_xyz"]), np.array(perception["workspace_max_xyz"])
    assert np.all(lo < OBJECT_AREA_M) and np.all(OBJECT_AREA_M < hi)
    for section in p.values():  # a float written as an int would be typed int by rclpy
        for key, value in section["ros__parameters"].items():
            if key.endswith(("_m", "_hz", "_deg", "_yaw", "_factor", "_scale")):
                assert isinstance(value, float), key


# --------------------------------------------------------------------------------------------
# Camera extrinsics


def _camera_pose(params: dict) -> tuple[np.ndarray, np.ndarray]:
    xyz = np.asarray(params["camera_xyz"], float)
    quat = np.asarray(params["camera_quat_xyzw"], float)
    assert abs(np.linalg.norm(quat) - 1.0) < 1e-4
    return xyz, Rotation.from_quat(quat).as_matrix()


@pytest.mark.parametrize("source", ["params_file", "calibration_example"])
def test_default_camera_optical_axis_looks_at_the_object_area(source):
    if source == "params_file":
        params = _params()["/**"]["ros__parameters"]
    else:
        params = graph_config.read_parameter_yaml(config_dir() / "hand_eye_calibration.example.yaml")
    xyz, rot = _camera_pose(params)
    x_axis, y_axis, z_axis = rot.T  # optical frame: x right, y down, z forward
    to_object = OBJECT_AREA_M - xyz
    angle_deg = math.degrees(math.acos(np.clip(z_axis @ to_object / np.linalg.norm(to_object), -1, 1)))
    assert angle_deg < 5.0, f"optical axis is {angle_deg:.1f} deg off the object area"
    assert 0.6 < np.linalg.norm(to_object) < 0.8                       # ~0.7 m away
    assert 35.0 < math.degrees(math.asin(-z_axis[2])) < 45.0            # ~40 deg down
    assert abs(x_axis[2]) < 0.05                                        # no roll: image x level
    assert y_axis[2] < -0.5                                             # image down is world down


def test_simulator_default_camera_is_the_configured_camera():
    """Scripts that build a SceneConfig() see the table from where the node graph's camera is."""
    from sim_bridge.scene import SceneConfig

    shared = _params()["/**"]["ros__parameters"]
    scene = SceneConfig()
    np.testing.assert_allclose(scene.camera_xyz, shared["camera_xyz"], atol=1e-6)
    q_scene, q_yaml = np.array(scene.camera_quat_xyzw), np.array(shared["camera_quat_xyzw"])
    assert abs(abs(q_scene @ q_yaml) - 1.0) < 1e-5          # same rotation (q ~ -q)
