"""Keep DDS on this host and give ROS a log folder, for every process the project starts.

Call :func:`localhost_env` before ``rclpy.init()`` (the node ``main()`` functions and the
launcher do). It never touches the network settings of an environment that already set them
explicitly, except that ``force=True`` (used by the launcher, tests and CI) always pins them.
"""
from __future__ import annotations

import os
from pathlib import Path

#: Fast DDS profile shipped in config/: SHM 16 MiB + UDPv4 on 127.0.0.1 only, builtin transports off.
PROFILE_NAME = "fastdds_localhost.xml"

#: Variables the wheels' bootstrapper sets; strip them when spawning a different venv's Python.
BOOTSTRAP_VARS = ("_ROS_WHEELS_BOOTSTRAP_COMPLETE", "LD_LIBRARY_PATH")


def project_root() -> Path:
    """The repository root (editable install) — the folder holding ``config/``."""
    return Path(__file__).resolve().parents[2]


def config_dir() -> Path:
    """Folder with the project's YAML and DDS profile: the source tree, else the ament share dir."""
    here = project_root() / "config"
    if (here / PROFILE_NAME).is_file():
        return here
    try:  # colcon install on a real ROS 2 machine
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("functional_grasp")) / "config"
    except Exception as exc:  # noqa: BLE001 - any lookup failure means the same thing to the user
        raise FileNotFoundError(
            f"config folder not found: looked for {here / PROFILE_NAME} and the ament share "
            "directory of 'functional_grasp'; reinstall the package or run from the repository"
        ) from exc


def localhost_env(env: dict[str, str] | None = None, *, force: bool = False,
                  domain_id: int | None = None, log_dir: str | Path | None = None) -> dict[str, str]:
    """Set the localhost-only DDS variables in ``env`` (default: ``os.environ``) and return it.

    Args:
        env: environment mapping to update in place; ``None`` updates ``os.environ``.
        force: overwrite values that are already set (launcher, tests, CI).
        domain_id: ``ROS_DOMAIN_ID`` to set (0–101), or ``None`` to leave it.
        log_dir: ``ROS_LOG_DIR``; default ``<repo>/out/ros_logs`` when unset.
    """
    env = os.environ if env is None else env
    put = env.__setitem__ if force else env.setdefault
    put("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    put("FASTRTPS_DEFAULT_PROFILES_FILE", str(config_dir() / PROFILE_NAME))
    put("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if log_dir is not None or "ROS_LOG_DIR" not in env:
        path = Path(log_dir) if log_dir is not None else project_root() / "out" / "ros_logs"
        path.mkdir(parents=True, exist_ok=True)
        env["ROS_LOG_DIR"] = str(path)
    env.setdefault("HOME", str(Path.home()))
    if domain_id is not None:
        if not 0 <= int(domain_id) <= 101:
            raise ValueError(f"ROS_DOMAIN_ID {domain_id} is outside 0..101")
        env["ROS_DOMAIN_ID"] = str(int(domain_id))
    return env


def child_env(domain_id: int | None = None, **kwargs) -> dict[str, str]:
    """A copy of ``os.environ`` for a child process: localhost DDS forced, bootstrap vars stripped."""
    env = {k: v for k, v in os.environ.items() if k not in BOOTSTRAP_VARS}
    return localhost_env(env, force=True, domain_id=domain_id, **kwargs)
