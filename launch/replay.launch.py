"""Replay graph: grasp_perception + grasp_planner on recorded RGB-D (graphs.yaml 'replay').

    ros2 launch functional_grasp replay.launch.py hand:=shadow seed:=0
    ros2 bag play <bag>          # in another terminal, same ROS_DOMAIN_ID

Nodes run on wall-clock time (use_sim_time false) and never execute motion. Without ros2cli,
`fgrasp replay BAG [--expect REF]` starts this same graph (graphs.yaml 'replay'), plays the
bag, records the outputs into a new bag and compares the grasp with a reference. DDS is
pinned to this host.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

GRAPH = "replay"


def _nodes(context, *args, **kwargs):
    """Resolve the graph with the launch argument values of ``context`` into Node actions."""
    from functional_grasp.graph_config import get_graph, launch_node_kwargs, resolve_graph

    graph = get_graph(GRAPH)
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in graph.arguments}
    return [Node(**launch_node_kwargs(node)) for node in resolve_graph(graph, values)]


def generate_launch_description():
    from functional_grasp.graph_config import get_graph, graph_environment

    graph = get_graph(GRAPH)
    actions = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                     **({"choices": list(a.choices)} if a.choices else {}))
               for a in graph.arguments]
    actions += [SetEnvironmentVariable(name, value) for name, value in graph_environment(graph).items()]
    actions.append(OpaqueFunction(function=_nodes))
    return LaunchDescription(actions)
