"""Real arm graph: grasp_perception + grasp_planner on a camera driver (graphs.yaml 'real_arm').

    ros2 launch functional_grasp real_arm.launch.py camera:=realsense calibration:=my_hand_eye.yaml
    ros2 launch functional_grasp real_arm.launch.py execute:=true   # opt in to moving the arm

Motion execution is OFF unless execute:=true: the planner then only plans and publishes
markers. Start the camera driver (zed-ros2-wrapper, or realsense2_camera with
align_depth.enable:=true), the Franka + hand controllers and MoveIt yourself. DDS discovery is
NOT pinned to localhost here because the camera or the arm controller often runs on another
host; set ROS_AUTOMATIC_DISCOVERY_RANGE / ROS_DOMAIN_ID for your network. (Processes the
project starts itself, e.g. through functional_grasp.launcher, always use localhost.)
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

GRAPH = "real_arm"


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
    # Empty for real_arm (localhost_only: false in graphs.yaml); kept so the three files match.
    actions += [SetEnvironmentVariable(name, value) for name, value in graph_environment(graph).items()]
    actions.append(OpaqueFunction(function=_nodes))
    return LaunchDescription(actions)
