"""functional_grasp bring-up: node graphs (config/graphs.yaml) and a launcher that needs no launch_ros.

- :mod:`functional_grasp.graph_config` — load/validate graphs, resolve launch arguments (pure).
- :mod:`functional_grasp.launcher` — start a graph as child processes on localhost DDS.
The ROS 2 launch files in ``launch/`` build their node list from the same graph_config.
"""
