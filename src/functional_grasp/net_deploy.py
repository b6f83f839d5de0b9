"""Deploy the D(R,O) network on generated objects in simulation and judge its grasps.

Shared by ``fgrasp eval --network`` (top-ranked grasp of held-out instances) and ``fgrasp augment``
(every candidate, the passing ones become training data). Per object:

1. **instance**: :func:`grasp_data.objects.generate` (category, seed);
2. **observation**: the full surface (area-uniform samples, the object upright on the table plane
   with a random yaw at a random spot of :data:`~grasp_planner.network.data.BOOTSTRAP_XY_RANGE_M`,
   as the bootstrap examples) or one rendered RGB-D view (:mod:`grasp_data.renders`, the object
   pixels back-projected, as the data engine's training views);
3. **prediction**: :class:`grasp_planner.grasp_predictor.NetworkPredictor` — K CVAE samples →
   recovery → refinement → contact closure → ranking by fit, penetration, fingertip contact,
   fingers reaching the object and (partial view: the render's camera) hand points hidden behind the
   visible surface vs near the cloud, against the convex hull of the observed cloud (completing it behind
   the visible side as the planner's proxy does — mirrored one visible width back — made every
   elongated object a slab and cut held grasps from 8/60 to 0/60). The judge is a floating hand, so there is no table term and no arm
   reachability term (no table, no arm in that scene), and no candidate is dropped for
   penetrating the hull (it over-fills concave objects; the judge measures penetration itself);
4. **judge**: :class:`grasp_data.validation.GraspValidator` — floating hand, D(R,O) disturbance
   protocol (0.5 × mass N, ±x ±y ±z, 1 s each, held if ≤ 2 cm), CorDex functional criterion with
   the category's demonstration (5 mm), avoidance regions. Its settings are not changed here.

**Held-out instances.** The data engine draws object seeds with
:func:`grasp_data.engine.object_seed` (32-bit, ``< 2**32``); the optimiser bootstrap uses
``seed + k`` (small integers). Held-out seeds are ``2**32 + object_seed(seed, category, index)``
(:func:`heldout_seed`): a range neither producer can reach, so an evaluation instance is never a
training instance. Generators accept any non-negative integer seed.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Held-out seeds start here (data-engine seeds are 32-bit).
HELDOUT_SEED_OFFSET = 2 ** 32
#: Observation views of the object.
VIEWS = ("full", "partial")
#: Candidate validation modes: only the top-ranked grasp, or every candidate.
VALIDATE = ("top", "all")
#: Collision geometry of the judged object (as the data engine: CoACD pieces, or one hull).
COLLISIONS = ("coacd", "hull")
#: Outcomes of an object that are not validator reasons.
NO_GRASP, NO_OBJECT, BAD_INSTANCE = "no_grasp", "no_object", "bad_instance"


class DeployInputError(ValueError):
    """The checkpoint cannot be deployed as asked (e.g. it needs images and the view has none)."""


def heldout_seed(seed: int, category: str, index: int) -> int:
    """Generator seed of held-out instance ``index`` of ``category`` (module docstring: never a training seed)."""
    from grasp_data.engine import object_seed

    return HELDOUT_SEED_OFFSET + object_seed(seed, category, index)


@dataclass(frozen=True)
class ObjectRef:
    """One object to deploy on.

    Attributes:
        split: ``"train"`` (an instance of the training data) or ``"unseen"`` (held out).
        category: generator category.
        index: index within its split and category.
        seed: generator seed.
    """

    split: str
    category: str
    index: int
    seed: int

    @property
    def name(self) -> str:
        """Unique stem: ``<split>_<category>_<index:05d>``."""
        return f"{self.split}_{self.category}_{self.index:05d}"


def heldout_objects(categories: list[str] | tuple[str, ...], count: int, seed: int = 0,
                    split: str = "unseen") -> list[ObjectRef]:
    """``count`` held-out instances per category (:func:`heldout_seed`)."""
    return [ObjectRef(split, c, i, heldout_seed(seed, c, i)) for c in categories for i in range(count)]


def dataset_objects(data_dir: str | Path, categories: list[str] | tuple[str, ...], count: int) -> list[ObjectRef]:
    """The first ``count`` objects per category of a data-engine dataset that gave training examples
    (shards with kept grasps), in index order, as split ``"train"``.

    Raises:
        ValueError: ``data_dir`` is not a data-engine dataset, or holds fewer such objects.
    """
    import json

    from functional_grasp.train_data import is_engine_dataset

    if not is_engine_dataset(data_dir):
        raise ValueError(f"{data_dir} is not a data-engine dataset (index.json): training-split objects are "
                         "read from one; pass the dataset the checkpoint was trained on, or --train-objects 0")
    shards = json.loads((Path(data_dir) / "index.json").read_text()).get("shards", {})
    out = []
    for category in categories:
        entries = sorted((e for e in shards.values() if e["category"] == category and e.get("grasps_kept")),
                         key=lambda e: e["index"])
        if len(entries) < count:
            raise ValueError(f"{data_dir} has {len(entries)} {category} object(s) with kept grasps, fewer than the "
                             f"{count} training-split objects asked for")
        out += [ObjectRef("train", category, int(e["index"]), int(e["seed"])) for e in entries[:count]]
    return out


@dataclass(frozen=True)
class DeployConfig:
    """Settings of :class:`Deployer` (the judge's protocol is :class:`grasp_data.validation.ValidationConfig`'s).

    Attributes:
        view: ``"full"`` surface or one rendered ``"partial"`` view.
        samples: K CVAE samples (candidates) per object.
        validate: ``"top"`` (the top-ranked candidate only) or ``"all"``.
        collision: collision geometry of the judged object (``coacd`` cached, or ``hull``).
        surface_points: surface samples of the full view.
        views: RGB-D views rendered per object for training data (``"all"`` mode); the partial
            view is the first of them (at least one is rendered then).
        render_width, render_height: render size, pixels.
        seed: seed of the placement, sampling and render draws (per object with its seed).
        validation_threads: MjData stepped in parallel by the validator.
        refine_iterations: the predictor's refinement iterations (0 = off).
        refine_margin_m: how far the refinement pushes hand points out of the surface, metres.
        collision_points: denser hand points the refinement keeps out of the object (0 = the
            network's rows only; :class:`~grasp_planner.grasp_predictor.NetworkPredictorConfig`).
        close_fingers: the predictor's contact closure of the fingers.
        free_fingers: the closure's fingers that touch nothing: ``"close"`` fully or ``"stay"``
            (:class:`~grasp_planner.grasp_predictor.NetworkPredictorConfig`); None = the predictor's default.
        completion: shape-completion checkpoint for the refinement and closure's surface, or None (the view alone).
        standoff_m: the predictor's wrist standoff after the ranking, metres; None = the hand's
            (:class:`~grasp_planner.grasp_predictor.NetworkPredictorConfig`).
        sim_check: the predictor's simulated check of every candidate on the shape estimated from
            the view; None = the hand's (:class:`~grasp_planner.grasp_predictor.NetworkPredictorConfig`).
        backend: whose grasps are judged: ``"network"``, or ``"optimiser"`` — the planner's
            synthesiser on the same instances and views, as a baseline (no functional notion).
    """

    view: str = "full"
    samples: int = 16
    validate: str = "top"
    collision: str = "coacd"
    surface_points: int = 2048
    views: int = 0
    render_width: int = 320
    render_height: int = 240
    seed: int = 0
    validation_threads: int = 2
    refine_iterations: int = 15
    refine_margin_m: float = 0.001
    collision_points: int = 0
    close_fingers: bool = True
    free_fingers: str | None = None
    completion: str | None = None
    standoff_m: float | None = None
    sim_check: bool | None = None
    backend: str = "network"

    def __post_init__(self) -> None:
        if self.backend not in ("network", "optimiser"):
            raise ValueError(f"backend must be network or optimiser, got '{self.backend}'")
        for name, value, allowed in (("view", self.view, VIEWS), ("validate", self.validate, VALIDATE),
                                     ("collision", self.collision, COLLISIONS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got '{value}'")
        if self.samples < 1 or self.surface_points < 64 or self.views < 0 or self.validation_threads < 1:
            raise ValueError(f"samples ({self.samples}) and validation_threads ({self.validation_threads}) must be "
                             f">= 1, surface_points ({self.surface_points}) >= 64, views ({self.views}) >= 0")


@dataclass
class Observation:
    """What the network sees of one object.

    Attributes:
        cloud: (M, 3) object points, observation world frame, metres.
        T_world_object: (4, 4) the object frame in that world.
        image: (h, w, 3) uint8 at the network's image size, or None.
        pixel_uv: (M, 2) pixel of each point in ``image``, or None.
        views: rendered views (stored with training data).
        camera_xyz: (3,) the camera of a partial view, same world, or None (full surface).
    """

    cloud: np.ndarray
    T_world_object: np.ndarray
    image: np.ndarray | None
    pixel_uv: np.ndarray | None
    views: list
    camera_xyz: np.ndarray | None = None


def floating_proxy(cloud: np.ndarray):
    """The convex hull of ``cloud`` as the predictor's :class:`~grasp_planner.object_model.ObjectProxy`,
    with no support plane (``table_z = -inf``): the judge's hand floats, nothing supports the object."""
    from scipy.spatial import ConvexHull

    from grasp_planner.object_model import ObjectProxy

    hull = ConvexHull(cloud, qhull_options="Qt")
    return ObjectProxy(hull_points=cloud[hull.vertices], equations=hull.equations, center=cloud.mean(axis=0),
                       top_z=float(cloud[:, 2].max()), table_z=float("-inf"))


def _outcome_dict(o) -> dict[str, Any]:
    """The verdict of one grasp as plain JSON types (NaN where not simulated; a designated finger
    that touched nothing is infinitely far from its functional region)."""
    return {"reason": o.reason, "held": bool(o.held), "functional": bool(o.functional), "kept": bool(o.kept),
            "hand_contacts": int(o.hand_contacts), "max_displacement_m": float(o.max_displacement_m),
            "initial_penetration_m": float(o.initial_penetration_m),
            "finger_distance_m": {f: float(d) for f, d in o.finger_distance_m.items()}}


def is_stable(o) -> bool:
    """The grasp held the object through the disturbance trials and touched it."""
    return bool(o.held and o.hand_contacts > 0)


class Deployer:
    """Runs the network on objects and judges its grasps (module docstring).

    Args:
        hand_name: the hand (``config/hands/<name>.yaml``).
        checkpoint: network checkpoint of that hand.
        config: deployment settings.

    Raises:
        FileNotFoundError: no checkpoint file.
        CheckpointMismatchError: the checkpoint is for another hand (message says which).
        ValueError: not a network checkpoint.
        DeployInputError: the network needs images and ``view`` is "full".
    """

    def __init__(self, hand_name: str, checkpoint: str | Path, config: DeployConfig = DeployConfig()):
        from grasp_planner.grasp_predictor import NetworkPredictor, NetworkPredictorConfig
        from grasp_planner.hands import load_hand

        self.config = config
        self.hand = load_hand(hand_name)
        # No candidate is dropped for penetrating the proxy: the convex hull over-fills concave objects
        # (the space between a drill's handle and body), and the judge measures penetration itself.
        self.predictor = NetworkPredictor(self.hand, checkpoint, NetworkPredictorConfig(
            num_samples=config.samples, reachability=False, max_penetration_m=float("inf"), seed=config.seed,
            refine_iterations=config.refine_iterations, refine_margin_m=config.refine_margin_m,
            collision_points=config.collision_points, close_fingers=config.close_fingers,
            sim_check=config.sim_check,
            **({} if config.free_fingers is None else {"free_fingers": config.free_fingers}),
            **({} if config.standoff_m is None else {"standoff_m": config.standoff_m})),
            completion=config.completion)
        self.network_config = self.predictor.network_config
        if config.backend == "optimiser":
            from grasp_planner.grasp_predictor import OptimiserPredictor
            from grasp_planner.grasp_synthesis import GraspSynthesizer

            self.predictor = OptimiserPredictor(GraspSynthesizer(self.hand))
        if self.network_config.use_image and config.view == "full":
            raise DeployInputError(f"the network of {checkpoint} uses images (use_image: true): evaluate it on rendered "
                             "views (--view partial)")
        from grasp_data.engine import _hand_model      # the data engine's per-process hand (built once)

        self.hand_model = _hand_model(hand_name)

    # ------------------------------------------------------------------ observation
    def observe(self, instance, rng: np.random.Generator) -> Observation:
        """The network's view of ``instance`` (module docstring, step 2)."""
        from functional_grasp.train_data import view_cloud
        from grasp_data.renders import RenderConfig, render_views
        from grasp_planner.image_input import resize_view
        from grasp_planner.network.data import BOOTSTRAP_XY_RANGE_M

        c = self.config
        n_views = max(c.views, 1) if c.view == "partial" else c.views
        views = render_views(instance, n_views, seed=int(rng.integers(2 ** 31)),
                             config=RenderConfig(width=c.render_width, height=c.render_height)) if n_views else []
        image = uv = camera = None
        if c.view == "partial":
            v = views[0]
            camera = v.T_world_camera[:3, 3].copy()
            cloud, uv = view_cloud(v.depth, v.mask, v.K, v.T_world_camera)
            T_wo = v.T_world_object
            if self.network_config.use_image:
                image, uv = resize_view(v.rgb, uv, tuple(self.network_config.image_size))
        else:
            pts, _, _ = instance.sample_surface(c.surface_points, seed=rng)
            yaw = rng.uniform(-np.pi, np.pi)
            T_wo = np.eye(4)
            T_wo[:3, :3] = [[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]]
            T_wo[:2, 3] = [rng.uniform(*BOOTSTRAP_XY_RANGE_M[0]), rng.uniform(*BOOTSTRAP_XY_RANGE_M[1])]
            cloud = pts @ T_wo[:3, :3].T + T_wo[:3, 3]
        return Observation(cloud, T_wo, image, uv, views, camera)

    # ------------------------------------------------------------------ judge
    def validator(self, instance, category: str):
        """The data engine's validator for ``instance`` (collision geometry per ``config.collision``)."""
        from grasp_data.collision import convex_decomposition, mesh_name
        from grasp_data.demonstrations import load_demonstration
        from grasp_data.validation import FloatingHandScene, GraspValidator, ValidationConfig
        from sim_bridge.mesh_objects import cache_dir, mesh_object

        if self.config.collision == "coacd":
            spec = convex_decomposition(instance.mesh).spec
        else:
            spec = mesh_object(instance.mesh, name=mesh_name(instance.mesh, "hull", cache_dir()), collision="hull")
        scene = FloatingHandScene(self.hand_model, instance, spec,
                                  ValidationConfig(threads=self.config.validation_threads))
        return GraspValidator(scene, load_demonstration(category))

    def grasps(self, candidates, T_world_object: np.ndarray):
        """Predicted candidates as the validator's :class:`~grasp_data.adaptation.AdaptationResult`
        (root poses moved into the object frame, every joint in ``hand.joint_names`` order;
        ``energy`` = the ranking cost)."""
        from grasp_data.adaptation import AdaptationResult

        n = len(candidates)
        T_ow = np.linalg.inv(T_world_object)
        poses = np.array([T_ow @ c.T_base_root for c in candidates]).reshape(n, 4, 4)
        q = np.array([[c.q_grasp[j] for j in self.hand.joint_names] for c in candidates]).reshape(n, -1)
        cost = np.array([-c.score for c in candidates], float)
        return AdaptationResult(self.hand.name, tuple(self.hand.joint_names), poses, q, cost, cost,
                                np.zeros((n, 6)), np.zeros((n, 6)), np.zeros(n))

    def predict(self, ref: ObjectRef, obs: Observation) -> list:
        """The predictor's ranked candidates for the observation of ``ref`` (K = ``config.samples``).

        Raises:
            GraspPredictionError, QhullError: no usable cloud (recorded as ``no_object``).
        """
        return self.predictor.predict(obs.cloud, floating_proxy(obs.cloud), self.config.samples,
                                      image=obs.image, pixel_uv=obs.pixel_uv, camera_xyz=obs.camera_xyz)

    # ------------------------------------------------------------------ one object
    def run(self, ref: ObjectRef) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Deploy on one object.

        Returns:
            ``(record, shard)``: the JSON-ready record (``outcome`` is ``"success"`` when the
            top-ranked grasp is stable and functional, else the reason it failed; ``stable`` and
            ``stable_functional`` are the top grasp's verdicts; with more than one candidate judged,
            ``judged`` lists each one's rank, ranking cost and terms, and verdict), and the object's
            :mod:`grasp_data.dataset` shard arrays (``validate="all"`` only; None otherwise or
            when nothing was validated).
        """
        from scipy.spatial import QhullError

        from grasp_data.labelled_mesh import MeshValidationError
        from grasp_data.objects import generate
        from grasp_planner.grasp_predictor import GraspPredictionError

        c = self.config
        record: dict[str, Any] = {"name": ref.name, "split": ref.split, "category": ref.category,
                                  "index": ref.index, "seed": ref.seed, "stable": False, "stable_functional": False,
                                  "candidates": 0, "validated": 0, "kept": 0, "held": 0, "reasons": {}, "times_s": {}}
        times = record["times_s"]
        t0 = time.perf_counter()
        try:
            instance = generate(ref.category, ref.seed)
        except MeshValidationError as exc:                 # a rare bad draw: reported, not counted
            return {**record, "outcome": BAD_INSTANCE, "error": str(exc)}, None
        rng = np.random.default_rng([c.seed, ref.seed % 2 ** 63])
        obs = self.observe(instance, rng)
        times["observe"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            candidates = self.predict(ref, obs)
        except (GraspPredictionError, QhullError) as exc:  # too few points, or a degenerate (flat) cloud
            return {**record, "outcome": NO_OBJECT, "error": str(exc)}, None
        times["predict"] = time.perf_counter() - t0
        record["candidates"] = len(candidates)
        if not candidates:
            return {**record, "outcome": NO_GRASP}, None
        judged = candidates if c.validate == "all" else candidates[:1]
        t0 = time.perf_counter()
        validator = self.validator(instance, ref.category)
        times["collision"] = time.perf_counter() - t0
        grasps = self.grasps(judged, obs.T_world_object)
        t0 = time.perf_counter()
        outcomes = validator.validate(grasps)
        times["validate"] = time.perf_counter() - t0
        top = outcomes[0]
        record.update(
            outcome="success" if top.kept else top.reason.split(":")[0], stable=is_stable(top),
            stable_functional=bool(top.kept), top={**_outcome_dict(top), "cost": float(grasps.energy[0]),
                                                   **{k: v for k, v in judged[0].info.items() if k != "backend"}},
            validated=len(outcomes), kept=sum(o.kept for o in outcomes), held=sum(is_stable(o) for o in outcomes),
            reasons=dict(Counter(o.reason.split(":")[0] for o in outcomes)))
        if len(outcomes) > 1:                       # every candidate judged: ranking terms next to verdicts
            record["judged"] = [{"rank": k, "cost": float(grasps.energy[k]), "stable": is_stable(o),
                                 **{n: v for n, v in judged[k].info.items() if isinstance(v, (int, float))},
                                 **_outcome_dict(o)} for k, o in enumerate(outcomes)]
        shard = self.shard(ref, instance, grasps, outcomes, validator, obs, times) if c.validate == "all" else None
        return record, shard

    def shard(self, ref: ObjectRef, instance, grasps, outcomes, validator, obs: Observation,
              times: dict[str, float]) -> dict[str, Any]:
        """The object's :mod:`grasp_data.dataset` shard: instance, ranked candidates (best first) with
        their verdicts, and the rendered views (``grasp_energy`` holds the ranking cost)."""
        from grasp_data.dataset import SCHEMA_VERSION
        from grasp_data.regions import category_regions

        s, n = self.config, len(outcomes)
        directions = list(validator.config.protocol.directions)
        meta = {"schema_version": SCHEMA_VERSION, "category": ref.category, "index": ref.index, "seed": ref.seed,
                "params": {k: (v.item() if isinstance(v, np.generic) else v) for k, v in instance.params.items()},
                "region_names": list(instance.region_names),
                "region_kinds": [r.kind for r in category_regions(ref.category).regions], "hand": self.hand.name,
                "joint_names": list(grasps.joint_names), "directions": directions, "designated": validator.designated,
                "adaptation_time_s": times.get("predict", 0.0), "validation_time_s": times.get("validate", 0.0),
                "simulated": int(sum(o.simulated for o in outcomes)), "source": "network", "split": ref.split,
                "view": s.view, "grasp_energy": "ranking cost of the network predictor (candidates best first)"}
        h, w = s.render_height, s.render_width
        verdicts = {f"grasp_{k}": np.array([getattr(o, k) for o in outcomes], dtype)
                    for k, dtype in (("kept", bool), ("held", bool), ("functional", bool), ("reason", str),
                                     ("max_displacement_m", float), ("initial_penetration_m", float))}
        verdicts["grasp_displacement_m"] = np.array([o.displacement_m or (np.nan,) * len(directions)
                                                     for o in outcomes], float).reshape(n, len(directions))
        renders = {f"render_{k}": np.array([getattr(v, k) for v in obs.views], dtype).reshape(-1, *shape)
                   for k, dtype, shape in (("rgb", np.uint8, (h, w, 3)), ("depth", np.float32, (h, w)),
                                           ("mask", bool, (h, w)), ("K", float, (3, 3)),
                                           ("T_world_camera", float, (4, 4)), ("T_world_object", float, (4, 4)))}
        return {"meta": meta, "mesh_vertices": np.asarray(instance.mesh.vertices, np.float64),
                "mesh_faces": np.asarray(instance.mesh.faces, np.int32), "face_labels": instance.face_labels,
                "grasp_root_pose": grasps.root_pose, "grasp_q": grasps.q, "grasp_energy": grasps.energy,
                **verdicts, **renders}
