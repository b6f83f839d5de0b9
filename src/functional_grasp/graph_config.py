"""Load and validate the node graphs of config/graphs.yaml and resolve launch arguments.

Pure module (PyYAML + numpy only, no rclpy, no launch): the ROS 2 launch files in ``launch/``
and the project launcher (:mod:`functional_grasp.launcher`) both build their node list from
:func:`resolve_graph`, so what ``ros2 launch`` starts and what ``fgrasp`` starts cannot drift.

Typical use::

    graph = get_graph("real_arm")
    nodes = resolve_graph(graph, {"camera": "realsense", "execute": "true"})
    for node in nodes:
        print(node.name, node.params_files, node.parameters, node.remappings)
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
import tempfile
from pathlib import Path
from types import MappingProxyType
from typing import Any, Union

import yaml

#: File name of the graph description inside the config folder.
GRAPHS_FILE = "graphs.yaml"

#: Fast DDS profile that keeps DDS on this host (same file as grasp_common.rosenv.PROFILE_NAME).
LOCALHOST_PROFILE = "fastdds_localhost.xml"

#: Types a launch argument may have (all arrive as strings and are converted).
ARGUMENT_TYPES = ("string", "bool", "int", "float", "yaml_file")

#: A ROS parameter value as the launch files and the launcher pass it.
ParamValue = Union[bool, int, float, str, list]

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_GRAPH_KEYS = {"description", "localhost_only", "rviz_config", "arguments", "nodes"}
_ARG_KEYS = {"default", "description", "type", "choices", "launch_only"}
_NODE_KEYS = {"name", "package", "executable", "module", "params_files", "parameters",
              "arguments", "remappings", "remappings_by_argument"}
_QUAT_NORM_TOL = 1e-3


class GraphConfigError(ValueError):
    """graphs.yaml, a graph name, a launch argument or a file it names is invalid."""


@dataclass(frozen=True)
class ArgumentSpec:
    """One launch argument of a graph.

    Attributes:
        name: argument name (``hand`` in ``hand:=shadow``).
        default: default value as typed on a command line; ``yaml_file`` defaults are absolute.
        description: one line for ``ros2 launch --show-args``.
        type: one of :data:`ARGUMENT_TYPES`.
        choices: allowed values (empty: any value of ``type``).
        launch_only: only the ROS 2 launch file acts on it (e.g. ``rviz``); maps to no parameter.
    """

    name: str
    default: str
    description: str = ""
    type: str = "string"
    choices: tuple[str, ...] = ()
    launch_only: bool = False


@dataclass(frozen=True)
class NodeSpec:
    """One node of a graph as described in graphs.yaml.

    Attributes:
        name: ROS node name (``-r __node:=<name>`` / ``Node(name=...)``).
        package: ROS package of the executable (``functional_grasp``).
        executable: console script of the package (``perception_node``).
        module: python module whose ``main()`` runs the node (``grasp_perception.node``).
        params_files: absolute paths of ROS params files, applied in order.
        parameters: fixed parameter overrides applied after the params files.
        argument_parameters: launch argument -> parameter name, or for a ``yaml_file`` argument
            the tuple of keys copied from that file.
        remappings: ``(from, to)`` topic remappings always applied.
        remappings_by_argument: argument -> argument value -> extra ``(from, to)`` remappings.
    """

    name: str
    package: str
    executable: str
    module: str
    params_files: tuple[Path, ...]
    parameters: Mapping[str, ParamValue]
    argument_parameters: Mapping[str, Union[str, tuple[str, ...]]]
    remappings: tuple[tuple[str, str], ...]
    remappings_by_argument: Mapping[str, Mapping[str, tuple[tuple[str, str], ...]]]


@dataclass(frozen=True)
class GraphSpec:
    """A named node graph (``sim``, ``real_arm``, ``replay``)."""

    name: str
    description: str
    localhost_only: bool
    arguments: tuple[ArgumentSpec, ...]
    nodes: tuple[NodeSpec, ...]
    config_dir: Path
    rviz_config: Path | None = None

    def argument(self, name: str) -> ArgumentSpec:
        """The argument called ``name``; :class:`GraphConfigError` listing the known ones if absent."""
        for arg in self.arguments:
            if arg.name == name:
                return arg
        raise GraphConfigError(
            f"graph '{self.name}' has no launch argument '{name}'; "
            f"known arguments: {', '.join(a.name for a in self.arguments) or '(none)'}")

    def node(self, name: str) -> NodeSpec:
        """The node called ``name``; :class:`GraphConfigError` listing the graph's nodes if absent."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise GraphConfigError(f"graph '{self.name}' has no node '{name}'; "
                               f"its nodes: {', '.join(n.name for n in self.nodes)}")


@dataclass(frozen=True)
class ResolvedNode:
    """A node ready to start: files, parameter overrides (in order) and remappings."""

    name: str
    package: str
    executable: str
    module: str
    params_files: tuple[Path, ...]
    parameters: Mapping[str, ParamValue]
    remappings: tuple[tuple[str, str], ...]


# --------------------------------------------------------------------------------------------
# Loading


def default_graphs_path() -> Path:
    """``graphs.yaml`` in the project's config folder (source tree or ament share directory)."""
    from grasp_common.rosenv import config_dir

    return config_dir() / GRAPHS_FILE


def load_graphs(path: str | Path | None = None) -> dict[str, GraphSpec]:
    """Load and validate every graph of a graphs YAML.

    Args:
        path: graphs YAML; default :func:`default_graphs_path`. Relative file names inside it
            (params files, rviz config, ``yaml_file`` defaults) are resolved against its folder.

    Returns:
        Graph name -> :class:`GraphSpec`, in file order.

    Raises:
        GraphConfigError: the file is missing, not YAML, or any entry is invalid (the message
            names the entry, e.g. ``graphs.sim.nodes[1].remappings[0]``).
    """
    path = Path(path) if path is not None else default_graphs_path()
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise GraphConfigError(f"graph file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise GraphConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("graphs"), dict) or not data["graphs"]:
        raise GraphConfigError(f"{path}: expected a top-level mapping 'graphs: {{<name>: ...}}'")
    unknown = set(data) - {"graphs", "templates"}
    if unknown:
        raise GraphConfigError(f"{path}: unknown top-level keys {sorted(unknown)}; "
                               "expected 'graphs' (and optional 'templates')")
    folder = path.resolve().parent
    return {str(name): _parse_graph(str(name), body, folder, f"{path}: graphs.{name}")
            for name, body in data["graphs"].items()}


def get_graph(name: str, path: str | Path | None = None) -> GraphSpec:
    """The graph called ``name`` from :func:`load_graphs`; the error lists the known graphs."""
    graphs = load_graphs(path)
    if name not in graphs:
        raise GraphConfigError(f"unknown graph '{name}'; known graphs: {', '.join(graphs)}")
    return graphs[name]


def _parse_graph(name: str, body: Any, folder: Path, where: str) -> GraphSpec:
    body = _mapping(body, where, _GRAPH_KEYS)
    args = tuple(_parse_argument(str(k), v, folder, f"{where}.arguments.{k}")
                 for k, v in _mapping(body.get("arguments", {}), f"{where}.arguments").items())
    nodes_raw = body.get("nodes")
    if not isinstance(nodes_raw, list) or not nodes_raw:
        raise GraphConfigError(f"{where}.nodes: expected a non-empty list of nodes")
    nodes = tuple(_parse_node(raw, folder, {a.name: a for a in args}, f"{where}.nodes[{i}]")
                  for i, raw in enumerate(nodes_raw))
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise GraphConfigError(f"{where}.nodes: node names must be unique, got {names}")
    rviz = body.get("rviz_config")
    rviz_path = _existing_file(folder / str(rviz), f"{where}.rviz_config") if rviz else None
    return GraphSpec(name=name, description=str(body.get("description", "")),
                     localhost_only=_strict_bool(body.get("localhost_only", True),
                                                 f"{where}.localhost_only"),
                     arguments=args, nodes=nodes, config_dir=folder, rviz_config=rviz_path)


def _parse_argument(name: str, body: Any, folder: Path, where: str) -> ArgumentSpec:
    body = _mapping(body, where, _ARG_KEYS)
    if "default" not in body:
        raise GraphConfigError(f"{where}: every argument needs a default")
    kind = str(body.get("type", "string"))
    if kind not in ARGUMENT_TYPES:
        raise GraphConfigError(f"{where}.type: '{kind}' is not one of {', '.join(ARGUMENT_TYPES)}")
    choices = tuple(str(c) for c in body.get("choices", ()) or ())
    default = _scalar_text(body["default"])
    if kind == "yaml_file":
        default = str(_find_file(default, folder, where))
    spec = ArgumentSpec(name=name, default=default, description=str(body.get("description", "")),
                        type=kind, choices=choices,
                        launch_only=_strict_bool(body.get("launch_only", False), f"{where}.launch_only"))
    _convert_argument(spec, spec.default, folder)  # the default itself must be valid
    return spec


def _parse_node(raw: Any, folder: Path, args: dict[str, ArgumentSpec], where: str) -> NodeSpec:
    body = _mapping(raw, where, _NODE_KEYS)
    for key in ("name", "package", "executable", "module"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise GraphConfigError(f"{where}.{key}: expected a non-empty string")
    files = body.get("params_files", [])
    if not isinstance(files, list):
        raise GraphConfigError(f"{where}.params_files: expected a list of file names")
    params_files = tuple(_existing_file(folder / str(f), f"{where}.params_files") for f in files)
    parameters = {str(k): _param_value(v, f"{where}.parameters.{k}")
                  for k, v in _mapping(body.get("parameters", {}), f"{where}.parameters").items()}

    mapping: dict[str, Union[str, tuple[str, ...]]] = {}
    for arg_name, target in _mapping(body.get("arguments", {}), f"{where}.arguments").items():
        spec = args.get(arg_name)
        if spec is None:
            raise GraphConfigError(f"{where}.arguments: '{arg_name}' is not an argument of the "
                                   f"graph (declared: {', '.join(args) or 'none'})")
        if spec.launch_only:
            raise GraphConfigError(f"{where}.arguments: '{arg_name}' is launch_only and maps to "
                                   "no parameter")
        if spec.type == "yaml_file":
            if not isinstance(target, list) or not target or not all(isinstance(k, str) for k in target):
                raise GraphConfigError(f"{where}.arguments.{arg_name}: a yaml_file argument maps "
                                       "to the list of keys copied from the file")
            mapping[arg_name] = tuple(target)
        elif isinstance(target, str) and target:
            mapping[arg_name] = target
        else:
            raise GraphConfigError(f"{where}.arguments.{arg_name}: expected a parameter name")

    by_arg: dict[str, Mapping[str, tuple[tuple[str, str], ...]]] = {}
    for arg_name, table in _mapping(body.get("remappings_by_argument", {}),
                                    f"{where}.remappings_by_argument").items():
        spec = args.get(arg_name)
        if spec is None or not spec.choices:
            raise GraphConfigError(f"{where}.remappings_by_argument: '{arg_name}' must be an "
                                   "argument of the graph with choices")
        table = _mapping(table, f"{where}.remappings_by_argument.{arg_name}")
        missing = set(spec.choices) - set(map(str, table))
        extra = set(map(str, table)) - set(spec.choices)
        if missing or extra:
            raise GraphConfigError(f"{where}.remappings_by_argument.{arg_name}: needs exactly the "
                                   f"choices {list(spec.choices)} (missing {sorted(missing)}, "
                                   f"unknown {sorted(extra)})")
        by_arg[arg_name] = MappingProxyType({
            str(choice): _remappings(pairs, f"{where}.remappings_by_argument.{arg_name}.{choice}")
            for choice, pairs in table.items()})

    return NodeSpec(name=body["name"], package=body["package"], executable=body["executable"],
                    module=body["module"], params_files=params_files,
                    parameters=MappingProxyType(dict(parameters)),
                    argument_parameters=MappingProxyType(mapping),
                    remappings=_remappings(body.get("remappings", []), f"{where}.remappings"),
                    remappings_by_argument=MappingProxyType(by_arg))


# --------------------------------------------------------------------------------------------
# Resolving arguments


def resolve_arguments(graph: GraphSpec, arguments: Mapping[str, Any] | None = None
                      ) -> dict[str, ParamValue]:
    """Typed values of all arguments of ``graph``: defaults updated by ``arguments``.

    Args:
        graph: the graph.
        arguments: argument name -> value, as strings (``"true"``) or already typed (``True``).

    Raises:
        GraphConfigError: an unknown argument name, a value not among the choices, a value not
            convertible to the argument's type, or an invalid ``yaml_file``.
    """
    given = dict(arguments or {})
    for name in given:
        graph.argument(name)  # raises with the list of known arguments
    values: dict[str, ParamValue] = {}
    for spec in graph.arguments:
        raw = given.get(spec.name, spec.default)
        values[spec.name] = _convert_argument(spec, raw, graph.config_dir)
    return values


def resolve_graph(graph: GraphSpec | str, arguments: Mapping[str, Any] | None = None,
                  extra_params: Mapping[str, Mapping[str, ParamValue]] | None = None,
                  path: str | Path | None = None) -> tuple[ResolvedNode, ...]:
    """The nodes to start for ``graph`` with ``arguments``, with their parameter overrides.

    Override order (later wins): params files, the node's fixed ``parameters``, parameters
    mapped from launch arguments (including keys from ``yaml_file`` arguments), ``extra_params``.

    Args:
        graph: a :class:`GraphSpec` or a graph name looked up in ``path``.
        arguments: launch argument values (see :func:`resolve_arguments`).
        extra_params: node name -> parameter overrides applied last (tests, CLI flags).
        path: graphs YAML when ``graph`` is a name; default :func:`default_graphs_path`.

    Raises:
        GraphConfigError: unknown graph, argument or node name, or an invalid value.
    """
    spec = get_graph(graph, path) if isinstance(graph, str) else graph
    values = resolve_arguments(spec, arguments)
    extra = dict(extra_params or {})
    for node_name in extra:
        spec.node(node_name)  # raises with the list of nodes
    yaml_cache: dict[str, dict[str, Any]] = {}
    nodes = []
    for node in spec.nodes:
        params: dict[str, ParamValue] = dict(node.parameters)
        for arg_name, target in node.argument_parameters.items():
            if isinstance(target, tuple):  # yaml_file argument: copy the listed keys
                path_text = str(values[arg_name])
                if path_text not in yaml_cache:
                    yaml_cache[path_text] = read_parameter_yaml(Path(path_text))
                params.update(_pick_keys(yaml_cache[path_text], target, path_text))
            else:
                params[target] = values[arg_name]
        for key, value in dict(extra.get(node.name, {})).items():
            params[str(key)] = _param_value(value, f"extra_params.{node.name}.{key}")
        remaps = list(node.remappings)
        for arg_name, table in node.remappings_by_argument.items():
            remaps.extend(table[str(values[arg_name])])
        nodes.append(ResolvedNode(name=node.name, package=node.package, executable=node.executable,
                                  module=node.module, params_files=node.params_files,
                                  parameters=MappingProxyType(params), remappings=tuple(remaps)))
    return tuple(nodes)


def graph_environment(graph: GraphSpec) -> dict[str, str]:
    """Environment a launch file sets for ``graph``: localhost DDS when ``localhost_only``, else {}."""
    if not graph.localhost_only:
        return {}
    return {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "FASTRTPS_DEFAULT_PROFILES_FILE": str(graph.config_dir / LOCALHOST_PROFILE)}


def write_overrides_file(node: ResolvedNode, directory: str | Path | None = None) -> Path | None:
    """Write ``node.parameters`` as a params file keyed by the node's own name; ``None`` if empty.

    ROS 2 applies a node's own section of a params file after the ``/**`` section, so overrides
    given as ``-p key:=value`` or as a launch_ros dict (both ``/**``) lose to a key in the node's
    section of config/functional_grasp.yaml. A second file keyed by the same node name, passed
    after the first, replaces those keys: the same rule for ``ros2 launch`` and our launcher.

    Args:
        node: resolved node.
        directory: where to write ``<node>.overrides.yaml``; default a new temporary folder.
    """
    if not node.parameters:
        return None
    folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="fgrasp_params_"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{node.name}.overrides.yaml"
    path.write_text(yaml.safe_dump({node.name: {"ros__parameters": dict(node.parameters)}},
                                   sort_keys=True))
    return path


def launch_node_kwargs(node: ResolvedNode, overrides_dir: str | Path | None = None) -> dict[str, Any]:
    """Keyword arguments of ``launch_ros.actions.Node`` for ``node`` (plain data, no launch import).

    Parameter overrides go into a node-keyed params file after the shared ones
    (:func:`write_overrides_file`), so they win over the node's section of the YAML.
    """
    parameters: list[Any] = [str(p) for p in node.params_files]
    overrides = write_overrides_file(node, overrides_dir)
    if overrides is not None:
        parameters.append(str(overrides))
    return {"package": node.package, "executable": node.executable, "name": node.name,
            "output": "screen", "parameters": parameters,
            "remappings": [tuple(r) for r in node.remappings]}


# --------------------------------------------------------------------------------------------
# Parameter YAML files (hand-eye calibration and similar)


def read_parameter_yaml(path: Path) -> dict[str, Any]:
    """Parameters of a YAML file: a flat mapping, or a ROS params file (the ``/**`` section
    updated by every node section).

    Raises:
        GraphConfigError: the file is missing, not YAML, or not a mapping.
    """
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise GraphConfigError(f"parameter file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise GraphConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise GraphConfigError(f"{path}: expected a mapping of parameter names to values")
    sections = {k: v["ros__parameters"] for k, v in data.items()
                if isinstance(v, dict) and isinstance(v.get("ros__parameters"), dict)}
    if sections:  # ROS params file: the /** section first, node sections override it
        merged: dict[str, Any] = dict(sections.pop("/**", {}))
        for section in sections.values():
            merged.update(section)
        return merged
    return data


def _pick_keys(params: Mapping[str, Any], keys: tuple[str, ...], source: str) -> dict[str, ParamValue]:
    missing = [k for k in keys if k not in params]
    if missing:
        raise GraphConfigError(f"{source}: missing {', '.join(missing)} (needs {', '.join(keys)}; "
                               "see config/hand_eye_calibration.example.yaml)")
    picked = {}
    for key in keys:
        value = _param_value(params[key], f"{source}: {key}")
        picked[key] = _validate_known(key, value, source)
    return picked


def _validate_known(key: str, value: Any, source: str) -> ParamValue:
    """Shape checks for parameters with a fixed meaning (camera extrinsics)."""
    if key == "camera_xyz":
        vec = _floats(value, 3, f"{source}: camera_xyz")
        if max(abs(v) for v in vec) > 10.0:
            raise GraphConfigError(f"{source}: camera_xyz {vec} is more than 10 m from the base; "
                                   "it must be in metres")
        return vec
    if key == "camera_quat_xyzw":
        quat = _floats(value, 4, f"{source}: camera_quat_xyzw")
        norm = math.sqrt(sum(q * q for q in quat))
        if abs(norm - 1.0) > _QUAT_NORM_TOL:
            raise GraphConfigError(f"{source}: camera_quat_xyzw {quat} has norm {norm:.4f}; "
                                   "expected a unit quaternion in [x, y, z, w] order")
        return quat
    return value


def _floats(value: Any, n: int, where: str) -> list[float]:
    if (not isinstance(value, (list, tuple)) or len(value) != n
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or not all(math.isfinite(v) for v in value)):
        raise GraphConfigError(f"{where}: expected {n} finite numbers, got {value!r}")
    return [float(v) for v in value]


# --------------------------------------------------------------------------------------------
# Small helpers


def _convert_argument(spec: ArgumentSpec, raw: Any, folder: Path) -> ParamValue:
    text = _scalar_text(raw)
    where = f"argument {spec.name}:={text}"
    if spec.choices and text not in spec.choices:
        raise GraphConfigError(f"{where}: expected one of {', '.join(spec.choices)}")
    if spec.type == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise GraphConfigError(f"{where}: expected true or false")
    if spec.type == "int":
        try:
            return int(text)
        except ValueError:
            raise GraphConfigError(f"{where}: expected an integer") from None
    if spec.type == "float":
        try:
            return float(text)
        except ValueError:
            raise GraphConfigError(f"{where}: expected a number") from None
    if spec.type == "yaml_file":
        return str(_find_file(text, folder, where))
    return text


def _find_file(text: str, folder: Path, where: str) -> Path:
    """A file given absolute, relative to the working directory, or relative to ``folder``."""
    path = Path(text).expanduser()
    for candidate in ([path] if path.is_absolute() else [Path.cwd() / path, folder / path]):
        if candidate.is_file():
            return candidate.resolve()
    raise GraphConfigError(f"{where}: file not found (looked in the working directory and {folder})")


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str, Path)):
        return str(value)
    raise GraphConfigError(f"launch argument values are scalars, got {value!r}")


def _mapping(value: Any, where: str, allowed: set[str] | None = None) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GraphConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    if allowed is not None:
        unknown = set(map(str, value)) - allowed
        if unknown:
            raise GraphConfigError(f"{where}: unknown keys {sorted(unknown)}; "
                                   f"allowed: {', '.join(sorted(allowed))}")
    return value


def _strict_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise GraphConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def _existing_file(path: Path, where: str) -> Path:
    if not path.is_file():
        raise GraphConfigError(f"{where}: file not found: {path}")
    return path.resolve()


def _remappings(pairs: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(pairs, list):
        raise GraphConfigError(f"{where}: expected a list of [from, to] pairs")
    out = []
    for i, pair in enumerate(pairs):
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(t, str) and t for t in pair)):
            raise GraphConfigError(f"{where}[{i}]: expected [from_topic, to_topic], got {pair!r}")
        out.append((pair[0], pair[1]))
    return tuple(out)


def _param_value(value: Any, where: str) -> ParamValue:
    """``value`` as a ROS parameter: bool, int, float, str, or a non-empty homogeneous list.

    A list mixing ints and floats becomes all floats (ROS arrays hold one type).
    """
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and value:
        kinds = {bool if isinstance(v, bool) else type(v) for v in value}
        if len(kinds) == 1 and kinds <= {bool, int, float, str}:
            return list(value)
        if kinds == {int, float}:
            return [float(v) for v in value]
    raise GraphConfigError(f"{where}: {value!r} is not a ROS parameter value (bool, int, float, "
                           "string, or a non-empty list of one of those)")
