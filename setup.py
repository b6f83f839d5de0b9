"""colcon (ament_python) entry: metadata lives in pyproject.toml; this adds the ROS share files."""
from glob import glob

from setuptools import setup

PACKAGE = "functional_grasp"

setup(
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.rviz")),
        (f"share/{PACKAGE}/config/hands", glob("config/hands/*.yaml")),
        (f"share/{PACKAGE}/config/demonstrations", glob("config/demonstrations/*.yaml")),
        (f"share/{PACKAGE}/config/checkpoints", glob("config/checkpoints/*.yaml") + glob("config/checkpoints/*.safetensors")),
    ],
)
