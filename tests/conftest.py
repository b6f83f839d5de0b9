"""Shared test fixtures: localhost-only DDS for every test, an isolated ROS domain per ROS test."""
from __future__ import annotations

import itertools
import os
import random

import pytest

from grasp_common.rosenv import localhost_env

# Every process started by the suite keeps DDS on this host (set before any rclpy import).
localhost_env(force=True)
os.environ.setdefault("MUJOCO_GL", "egl")

_DOMAIN_IDS = itertools.cycle(random.Random(os.getpid()).sample(range(1, 101), 100))


@pytest.fixture
def ros_domain_id() -> int:
    """A ROS_DOMAIN_ID not used by any other test of this run; exported for child processes."""
    domain = next(_DOMAIN_IDS)
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    return domain


@pytest.fixture
def ros_context(ros_domain_id):
    """An rclpy context initialised on the test's own domain; shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture
def one_torch_thread():
    """One torch thread for tiny tensors: faster, and immune to OpenMP spin-waits on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
