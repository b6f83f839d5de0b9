"""MuJoCo simulator of the stack: Panda + dexterous hand + object scene, RGB-D camera, grasp judging.

Pure core (no rclpy): :mod:`sim_bridge.objects`, :mod:`sim_bridge.scene`, :mod:`sim_bridge.world`,
:mod:`sim_bridge.evaluation`. ROS side: :mod:`sim_bridge.conversions` and :mod:`sim_bridge.node`.
"""
from sim_bridge.evaluation import DisturbanceProtocol, DisturbanceResult, run_disturbance_test
from sim_bridge.objects import OBJECTS, ObjectSpec, get_object
from sim_bridge.scene import SceneConfig, build_scene, build_spec, compile_spec
from sim_bridge.world import CameraIntrinsics, RGBDFrame, SimWorld

__all__ = ["OBJECTS", "CameraIntrinsics", "DisturbanceProtocol", "DisturbanceResult", "ObjectSpec",
           "RGBDFrame", "SceneConfig", "SimWorld", "build_scene", "build_spec", "compile_spec", "get_object",
           "run_disturbance_test"]
