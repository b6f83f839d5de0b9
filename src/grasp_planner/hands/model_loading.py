"""Hand model files (MJCF or URDF) → an editable :class:`mujoco.MjSpec`, built in memory.

MJCF files load as they are. URDF files are converted on the fly: ``<visual>`` elements are
dropped (the Inspire hand's visual meshes are ``.glb``, which MuJoCo cannot read; the collision
geometry is drawn instead), mesh paths resolve against the URDF's folder, links joined by fixed
joints are kept as bodies (fingertip frames such as ``thumb_tip`` survive), and MuJoCo's own URDF
importer turns every ``<mimic>`` into a joint equality constraint (``polycoef = offset,
multiplier``). No converted file is written anywhere.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco

#: Model file suffixes this module reads.
SUPPORTED_SUFFIXES = (".xml", ".urdf")


def load_model_spec(path: Path) -> mujoco.MjSpec:
    """A fresh :class:`mujoco.MjSpec` of the hand model at ``path`` (keyframes removed).

    Raises:
        ValueError: the suffix is neither ``.xml`` (MJCF) nor ``.urdf``, or the URDF is malformed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xml":
        spec = mujoco.MjSpec.from_file(str(path))
    elif suffix == ".urdf":
        spec = mujoco.MjSpec.from_string(urdf_for_mujoco(path))
    else:
        raise ValueError(f"hand model {path}: unsupported file type '{path.suffix}'; "
                         f"expected one of {', '.join(SUPPORTED_SUFFIXES)}")
    for key in list(spec.keys):
        spec.delete(key)
    return spec


def urdf_for_mujoco(path: Path) -> str:
    """URDF text of ``path`` prepared for MuJoCo's importer (see the module docstring)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"hand model {path} is not valid URDF XML: {exc}") from exc
    for link in root.iter("link"):
        for visual in link.findall("visual"):
            link.remove(visual)
    for old in root.findall("mujoco"):
        root.remove(old)
    ext = ET.Element("mujoco")
    ET.SubElement(ext, "compiler", meshdir=str(path.parent), strippath="false",
                  fusestatic="false", discardvisual="false", balanceinertia="true")
    root.insert(0, ext)
    return ET.tostring(root, encoding="unicode")


def joint_couplings(spec: mujoco.MjSpec) -> list[tuple[str, str, float, float]]:
    """Linear joint couplings declared in the model as joint equality constraints.

    Returns:
        ``(follower, leader, multiplier, offset)`` per constraint: MuJoCo's joint equality
        ``q1 = c0 + c1 q2 + c2 q2² + …`` gives ``(joint1, joint2, c1, c0)``.

    Raises:
        ValueError: a joint equality is not affine (non-zero quadratic or higher terms) or has no
            second joint (a joint held at a constant: declare it in ``fixed_joints`` instead).
    """
    out = []
    for eq in spec.equalities:
        if eq.type != mujoco.mjtEq.mjEQ_JOINT or not eq.active:
            continue
        c = [float(v) for v in eq.data[:5]]
        if not eq.name2:
            raise ValueError(f"joint equality on '{eq.name1}' has no leader joint; put a constant "
                             "joint into the hand YAML's fixed_joints instead")
        if any(abs(v) > 1e-12 for v in c[2:]):
            raise ValueError(f"joint equality '{eq.name1}' <- '{eq.name2}' has polycoef {c}: only "
                             "affine couplings (c0 + c1*q) are supported")
        out.append((eq.name1, eq.name2, c[1], c[0]))
    return out
