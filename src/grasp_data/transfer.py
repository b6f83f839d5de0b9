"""Correspondence transfer of demonstrated fingertip contacts to new object instances.

Method (CorDex Sec. IV-B, adapted to what runs here). CorDex projects each demonstrated
contact into many views, matches every view with a pretrained 2D matcher, back-projects the
matches to 3D, clusters them with DBSCAN and keeps the three largest clusters per fingertip as
confidence-weighted candidates. No pretrained matcher can be installed here, so the default
:class:`GeometricMatcher` makes the hypotheses geometrically; the aggregation is CorDex's:

1. **Hypotheses** (a :class:`Matcher`): for every contact, many candidate 3D locations on the
   target, each with an expected normal, a weight and optionally the target region it must
   lie in. :class:`GeometricMatcher` makes two kinds:

   * *alignment views* — the reference is mapped onto the target by its bounding box
     (anisotropic scale, both in the object frame convention), then perturbed by a random
     small rotation, scale and shift per view (the "many views": each view is one plausible
     alignment, as each rendered viewpoint is in CorDex);
   * *part-aware descriptors* — when both meshes are labelled with the contact's region,
     the contact's normalised position inside that region's bounding box (``u`` in [0, 1]³)
     is placed at the same ``u`` in the target's region (jittered per hypothesis) and
     restricted to that region's surface.

2. **Back-projection** onto the target surface: the target is densely sampled; a hypothesis
   snaps to the sample minimising ``distance + normal_weight_m · (1 − n_expected · n_sample)``
   among its nearest samples (in its region, if it names one); its weight is multiplied by a
   Gaussian of the snap distance and by the normal agreement.

3. **DBSCAN** on the back-projected points (radius relative to the target size), then the
   **3 heaviest clusters** per finger become candidates: the member nearest the cluster's
   weighted mean, its normal and region, and ``confidence`` = the cluster's share of the
   finger's total hypothesis weight (so a finger's confidences sum to at most 1; noise and
   smaller clusters keep the rest).

A learned matcher (e.g. a 2D matcher over renders) plugs in as another :class:`Matcher`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from grasp_data.demonstrations import Demonstration, FingerContact
from grasp_data.labelled_mesh import LabelledMesh
from grasp_perception.cloud_ops import euclidean_clusters

#: Hypothesis region value meaning "anywhere on the target".
ANY_REGION = -1


@dataclass(frozen=True)
class TransferConfig:
    """Settings of the transfer (sizes relative to the target's bounding-box diagonal).

    Attributes:
        surface_samples: target surface samples for back-projection.
        eps_fraction: DBSCAN radius as a fraction of the diagonal ...
        eps_min_m, eps_max_m: ... clipped to this range, metres.
        min_samples: DBSCAN core-point neighbour count (including the point itself).
        max_candidates: candidates kept per finger (CorDex: 3).
        normal_weight_m: metres of snap distance one unit of normal disagreement costs.
        snap_sigma_fraction: Gaussian width of the snap-distance weight, fraction of the diagonal.
        snap_neighbours: nearest samples considered per hypothesis.
    """

    surface_samples: int = 20000
    eps_fraction: float = 0.03
    eps_min_m: float = 0.004
    eps_max_m: float = 0.015
    min_samples: int = 4
    max_candidates: int = 3
    normal_weight_m: float = 0.01
    snap_sigma_fraction: float = 0.05
    snap_neighbours: int = 24

    def __post_init__(self) -> None:
        if self.surface_samples < 100 or self.min_samples < 1 or self.max_candidates < 1:
            raise ValueError("surface_samples >= 100, min_samples >= 1 and max_candidates >= 1 are required")
        if not 0 < self.eps_min_m <= self.eps_max_m or self.eps_fraction <= 0:
            raise ValueError(f"need 0 < eps_min_m <= eps_max_m and eps_fraction > 0, got {self}")


class Surface:
    """Dense samples of a mesh surface (points, normals, labels) with KD-trees per label."""

    def __init__(self, instance: LabelledMesh, count: int, seed: int = 0) -> None:
        self.instance = instance
        self.points, self.normals, self.labels = instance.sample_surface(count, seed)
        self._trees: dict[int, tuple[cKDTree, np.ndarray]] = {}

    @cached_property
    def diagonal_m(self) -> float:
        """Bounding-box diagonal of the mesh, metres."""
        return float(np.linalg.norm(self.instance.mesh.extents))

    def tree(self, label: int) -> tuple[cKDTree, np.ndarray]:
        """KD-tree over the samples of ``label`` (:data:`ANY_REGION`: all) and their indices."""
        if label not in self._trees:
            idx = np.arange(len(self.points)) if label == ANY_REGION else np.flatnonzero(self.labels == label)
            self._trees[label] = (cKDTree(self.points[idx]) if len(idx) else None, idx)
        return self._trees[label]

    def region_box(self, label: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(lo, hi)`` corners of the samples of ``label``, or None if it has none."""
        pts = self.points[self.labels == label]
        return (pts.min(axis=0), pts.max(axis=0)) if len(pts) else None


@dataclass(frozen=True)
class Hypotheses:
    """Candidate target locations of one contact.

    Attributes:
        points: ``(H, 3)`` metres, target object frame (need not lie on the surface).
        normals: ``(H, 3)`` expected outward unit normals there.
        weights: ``(H,)`` ≥ 0 prior weights (e.g. a matcher's confidence).
        regions: ``(H,)`` int target label each must snap into, or :data:`ANY_REGION`.
    """

    points: np.ndarray
    normals: np.ndarray
    weights: np.ndarray
    regions: np.ndarray


class Matcher(ABC):
    """Proposes where a demonstrated contact lies on a target instance (see module docstring)."""

    @abstractmethod
    def propose(self, contact: FingerContact, source: Surface, target: Surface,
                rng: np.random.Generator) -> Hypotheses:
        """Hypotheses for ``contact`` (given on ``source``) on ``target``."""


@dataclass(frozen=True)
class GeometricMatcher(Matcher):
    """Default matcher: perturbed bounding-box alignments + part-aware region descriptors.

    Attributes:
        views: alignment hypotheses per contact.
        part_hypotheses: part-aware hypotheses per contact (used when the target has the
            contact's region).
        rotation_sigma_rad, scale_sigma, shift_sigma: per-view perturbation of the alignment
            (shift as a fraction of the target extent per axis).
        part_jitter: standard deviation of the normalised in-region position ``u``.
    """

    views: int = 48
    part_hypotheses: int = 48
    rotation_sigma_rad: float = 0.12
    scale_sigma: float = 0.06
    shift_sigma: float = 0.03
    part_jitter: float = 0.04

    def propose(self, contact: FingerContact, source: Surface, target: Surface,
                rng: np.random.Generator) -> Hypotheses:
        blocks = [self._alignment_views(contact, source, target, rng)]
        region = contact.region
        if region in target.instance.region_names and region in source.instance.region_names:
            part = self._part_aware(contact, source.instance.label(region), target.instance.label(region),
                                    source, target, rng)
            if part is not None:
                blocks.append(part)
        return Hypotheses(*(np.concatenate([getattr(b, f) for b in blocks])
                            for f in ("points", "normals", "weights", "regions")))

    def _alignment_views(self, contact: FingerContact, source: Surface, target: Surface,
                         rng: np.random.Generator) -> Hypotheses:
        s_lo, s_hi = source.instance.mesh.bounds
        t_lo, t_hi = target.instance.mesh.bounds
        s_c, t_c = (s_lo + s_hi) / 2, (t_lo + t_hi) / 2
        scale = (t_hi - t_lo) / np.maximum(s_hi - s_lo, 1e-6)
        n = self.views
        rot = Rotation.from_rotvec(rng.normal(0.0, self.rotation_sigma_rad, (n, 3)))
        jitter = np.exp(rng.normal(0.0, self.scale_sigma, (n, 3)))
        shift = rng.normal(0.0, self.shift_sigma, (n, 3)) * (t_hi - t_lo)
        local = (contact.point_m - s_c) * scale * jitter  # (n, 3)
        points = t_c + rot.apply(local) + shift
        normals = rot.apply(np.tile(contact.normal / scale, (n, 1)))
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        return Hypotheses(points, normals, np.ones(n), np.full(n, ANY_REGION))

    def _part_aware(self, contact: FingerContact, s_label: int, t_label: int, source: Surface,
                    target: Surface, rng: np.random.Generator) -> Hypotheses | None:
        s_box, t_box = source.region_box(s_label), target.region_box(t_label)
        if s_box is None or t_box is None:
            return None
        u = (contact.point_m - s_box[0]) / np.maximum(s_box[1] - s_box[0], 1e-6)
        n = self.part_hypotheses
        u = np.clip(u + rng.normal(0.0, self.part_jitter, (n, 3)), 0.0, 1.0)
        points = t_box[0] + u * (t_box[1] - t_box[0])
        return Hypotheses(points, np.broadcast_to(contact.normal, (n, 3)).copy(), np.ones(n),
                          np.full(n, t_label))


@dataclass(frozen=True)
class ContactCandidate:
    """One transferred contact location.

    Attributes:
        finger: finger name.
        point_m: ``(3,)`` metres on the target surface, target object frame.
        normal: ``(3,)`` outward unit normal there.
        region: region name of the target surface there.
        confidence: share of the finger's hypothesis weight in this cluster, 0..1.
        members: hypotheses in the cluster.
    """

    finger: str
    point_m: np.ndarray
    normal: np.ndarray
    region: str
    confidence: float
    members: int


@dataclass(frozen=True)
class TransferResult:
    """Candidates per finger, most confident first (at most ``max_candidates`` each)."""

    candidates: dict[str, tuple[ContactCandidate, ...]]

    def best(self, finger: str) -> ContactCandidate:
        """The most confident candidate of ``finger``; KeyError if it has none."""
        found = self.candidates.get(finger)
        if not found:
            raise KeyError(f"no transferred candidate for finger '{finger}'")
        return found[0]


def dbscan(points: np.ndarray, eps_m: float, min_samples: int) -> np.ndarray:
    """DBSCAN cluster labels: ``(N,)`` int64, -1 = noise.

    Core points have at least ``min_samples`` points (themselves included) within ``eps_m``;
    core points closer than ``eps_m`` share a cluster; other points join the cluster of their
    nearest core point within ``eps_m``, else are noise.
    """
    n = len(points)
    labels = np.full(n, -1, np.int64)
    if n == 0:
        return labels
    tree = cKDTree(points)
    core = tree.query_ball_point(points, eps_m, return_length=True) >= min_samples
    if not core.any():
        return labels
    core_idx = np.flatnonzero(core)
    labels[core_idx], _ = euclidean_clusters(points[core_idx], eps_m)
    border = np.flatnonzero(~core)
    if len(border):
        dist, nearest = cKDTree(points[core_idx]).query(points[border], distance_upper_bound=eps_m)
        ok = np.isfinite(dist)
        labels[border[ok]] = labels[core_idx[nearest[ok]]]
    return labels


def back_project(hyp: Hypotheses, target: Surface, config: TransferConfig) -> tuple[np.ndarray, np.ndarray]:
    """Snap hypotheses to target samples (module docstring, step 2).

    Returns:
        ``(sample_index (H,), weight (H,))``; index -1 and weight 0 where a hypothesis names a
        region the target has no samples of.
    """
    count = len(hyp.points)
    index, weight = np.full(count, -1, np.int64), np.zeros(count)
    sigma = config.snap_sigma_fraction * target.diagonal_m
    for region in np.unique(hyp.regions):
        rows = np.flatnonzero(hyp.regions == region)
        tree, idx = target.tree(int(region))
        if tree is None:
            continue
        k = min(config.snap_neighbours, len(idx))
        dist, near = tree.query(hyp.points[rows], k=k)
        dist, near = dist.reshape(len(rows), k), idx[near.reshape(len(rows), k)]
        agree = np.einsum("hkj,hj->hk", target.normals[near], hyp.normals[rows])
        choice = np.argmin(dist + config.normal_weight_m * (1.0 - agree), axis=1)
        pick = np.arange(len(rows))
        index[rows] = near[pick, choice]
        d, a = dist[pick, choice], agree[pick, choice]
        weight[rows] = hyp.weights[rows] * np.exp(-0.5 * (d / sigma) ** 2) * np.clip(a, 0.0, 1.0)
    return index, weight


def aggregate(finger: str, index: np.ndarray, weight: np.ndarray, target: Surface,
              config: TransferConfig) -> tuple[ContactCandidate, ...]:
    """DBSCAN the back-projected hypotheses and keep the heaviest clusters (step 3)."""
    total = float(weight.sum())
    ok = (index >= 0) & (weight > 0)
    if total <= 0 or not ok.any():
        return ()
    pts, w = target.points[index[ok]], weight[ok]
    eps = float(np.clip(config.eps_fraction * target.diagonal_m, config.eps_min_m, config.eps_max_m))
    labels = dbscan(pts, eps, config.min_samples)
    clusters = [c for c in np.unique(labels) if c >= 0]
    mass = {c: float(w[labels == c].sum()) for c in clusters}
    out = []
    for c in sorted(clusters, key=lambda c: -mass[c])[:config.max_candidates]:
        members = np.flatnonzero(labels == c)
        mean = (pts[members] * w[members, None]).sum(axis=0) / w[members].sum()
        medoid = members[np.argmin(np.linalg.norm(pts[members] - mean, axis=1))]
        sample = index[ok][medoid]
        out.append(ContactCandidate(finger, target.points[sample].copy(), target.normals[sample].copy(),
                                    target.instance.region_names[target.labels[sample]],
                                    mass[c] / total, len(members)))
    return tuple(out)


def as_labelled(target: LabelledMesh | trimesh.Trimesh) -> LabelledMesh:
    """``target`` as a LabelledMesh (a bare mesh becomes all ``body``)."""
    if isinstance(target, LabelledMesh):
        return target
    return LabelledMesh(target, np.zeros(len(target.faces), np.int16), ("body",))


def transfer_contacts(demo: Demonstration, target: LabelledMesh | trimesh.Trimesh,
                      matcher: Matcher | None = None, config: TransferConfig = TransferConfig(),
                      seed: int = 0, reference: LabelledMesh | None = None,
                      fingers: tuple[str, ...] | None = None) -> TransferResult:
    """Transfer ``demo``'s fingertip contacts to ``target`` (module docstring).

    Args:
        demo: the category demonstration.
        target: the new instance, object frame convention; labelled (part-aware hypotheses
            are used) or a bare mesh (alignment views only).
        matcher: hypothesis source (default :class:`GeometricMatcher`).
        config: clustering and back-projection settings.
        seed: random seed (the result is deterministic for a seed).
        reference: the demonstration's reference instance if already built.
        fingers: a subset of the demonstrated fingers (default all).

    Returns:
        Up to ``config.max_candidates`` candidates per finger, most confident first.
    """
    matcher = matcher or GeometricMatcher()
    rng = np.random.default_rng(seed)
    source = Surface(reference or demo.reference_instance(), config.surface_samples, seed)
    tgt = Surface(as_labelled(target), config.surface_samples, seed + 1)
    result = {}
    for contact in demo.contacts:
        if fingers is not None and contact.finger not in fingers:
            continue
        hyp = matcher.propose(contact, source, tgt, rng)
        index, weight = back_project(hyp, tgt, config)
        result[contact.finger] = aggregate(contact.finger, index, weight, tgt, config)
    return TransferResult(result)


def transfer_labels(target: trimesh.Trimesh, reference: LabelledMesh, views: int = 16,
                    seed: int = 0) -> LabelledMesh:
    """Label a bare mesh from a labelled reference of its category.

    Each target face centre is mapped into the reference by ``views`` perturbed bounding-box
    alignments (as in :class:`GeometricMatcher`); the face takes the label most of the views'
    nearest reference samples have. Both meshes must follow the object frame convention
    (:mod:`grasp_data.labelled_mesh`).
    """
    rng = np.random.default_rng(seed)
    ref = Surface(reference, 20000, seed)
    tree, _ = ref.tree(ANY_REGION)
    s_lo, s_hi = reference.mesh.bounds
    t_lo, t_hi = target.bounds
    scale = (s_hi - s_lo) / np.maximum(t_hi - t_lo, 1e-6)
    centres = np.asarray(target.triangles_center)
    votes = np.zeros((len(centres), len(reference.region_names)), np.int32)
    for view in range(views):
        rot = Rotation.from_rotvec(rng.normal(0.0, 0.05, 3)) if view else Rotation.identity()
        mapped = (s_lo + s_hi) / 2 + rot.apply((centres - (t_lo + t_hi) / 2) * scale)
        _, nearest = tree.query(mapped)
        np.add.at(votes, (np.arange(len(centres)), ref.labels[nearest]), 1)
    return LabelledMesh(target, votes.argmax(axis=1).astype(np.int16), reference.region_names,
                        category=reference.category)
