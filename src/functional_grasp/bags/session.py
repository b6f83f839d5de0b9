"""A short-lived rclpy node on its own context and domain, spun on a background thread."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Bound on stopping the executor and joining its thread, seconds.
SHUTDOWN_TIMEOUT_S = 2.0


@contextmanager
def ros_node(name: str, domain_id: int | None = None) -> Iterator:
    """Yield an rclpy node spinning on a daemon thread; always shuts the context down.

    Args:
        name: node name.
        domain_id: ``ROS_DOMAIN_ID`` of the context (None: the environment's). Call
            :func:`grasp_common.rosenv.localhost_env` before this.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor

    context = Context()
    rclpy.init(args=[], context=context, **({} if domain_id is None else {"domain_id": int(domain_id)}))
    node = executor = thread = None
    try:
        node = rclpy.create_node(name, context=context)
        executor = MultiThreadedExecutor(num_threads=2, context=context)
        executor.add_node(node)
        thread = threading.Thread(target=executor.spin, name=f"{name}_spin", daemon=True)
        thread.start()
        yield node
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=SHUTDOWN_TIMEOUT_S)
        if thread is not None:
            thread.join(timeout=SHUTDOWN_TIMEOUT_S)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
