"""Simulation graph: MuJoCo sim_bridge + grasp_perception + grasp_planner (graphs.yaml 'sim').

    ros2 launch functional_grasp sim.launch.py hand:=shadow object:=mug rviz:=true

The node list, parameters and remappings come from config/graphs.yaml through
functional_grasp.graph_config, the same source the project launcher uses. DDS is pinned to
this host (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST + the Fast DDS localhost profile); choose a
ROS_DOMAIN_ID of your own to isolate concurrent runs.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

GRAPH = "sim"


def _nodes(context, *args, **kwargs):
    """Resolve the graph with the launch argument values of ``context`` into Node actions."""
    from functional_grasp.graph_config import (get_graph, launch_node_kwargs, resolve_arguments,
                                               resolve_graph)

    graph = get_graph(GRAPH)
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in graph.arguments}
    actions = [Node(**launch_node_kwargs(node)) for node in resolve_graph(graph, values)]
    if graph.rviz_config is not None and resolve_arguments(graph, values).get("rviz"):
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                            arguments=["-d", str(graph.rviz_config)]))
    return actions


def generate_launch_description():
    from functional_grasp.graph_config import get_graph, graph_environment

    graph = get_graph(GRAPH)
    actions = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                     **({"choices": list(a.choices)} if a.choices else {}))
               for a in graph.arguments]
    actions += [SetEnvironmentVariable(name, value) for name, value in graph_environment(graph).items()]
    actions.append(OpaqueFunction(function=_nodes))
    return LaunchDescription(actions)
