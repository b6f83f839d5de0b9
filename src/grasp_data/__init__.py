"""The data engine's object side: functional objects, demonstrations and contact transfer.

* :mod:`grasp_data.regions` — the label registry: region names per category (functional,
  grip and avoidance regions).
* :mod:`grasp_data.labelled_mesh` — :class:`LabelledMesh`, a watertight triangle mesh with a
  region label per face (and per vertex).
* :mod:`grasp_data.objects` — parametric generators of diverse instances per category.
* :mod:`grasp_data.mesh_io` — user meshes (OBJ/STL/PLY) with a JSON label sidecar.
* :mod:`grasp_data.collision` — cached convex decomposition (CoACD) for the simulator.
* :mod:`grasp_data.demonstrations` — per-category fingertip contacts on a reference instance.
* :mod:`grasp_data.transfer` — correspondence transfer of those contacts to new instances.
* :mod:`grasp_data.gallery` — pictures of labelled instances.

Dependency direction: this package may use grasp_perception, grasp_planner and sim_bridge;
none of them imports it.
"""
