"""Point-cloud building blocks: voxel downsampling, RANSAC plane, Euclidean clustering.

numpy/scipy only. All points are ``(N, 3)`` metres in one frame (the robot base frame in the
segmentation pipeline).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

#: Plane hypotheses scored per batch (bounds the (N, batch) distance matrix in memory).
_RANSAC_BATCH = 64
#: Hypotheses are scored on at most this many random points; the winner is then scored on all.
_RANSAC_SCORE_POINTS = 4000


def voxel_downsample(points: np.ndarray, voxel_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Replace the points of each occupied voxel by their centroid.

    Args:
        points: ``(N, 3)`` metres.
        voxel_m: voxel edge length, metres (> 0).

    Returns:
        ``centroids``: ``(M, 3)`` float32 voxel centroids, metres, ordered by voxel key.
        ``inverse``: ``(N,)`` int64 index of each input point's voxel in ``centroids``.
    """
    if len(points) == 0:
        return np.zeros((0, 3), np.float32), np.zeros(0, np.int64)
    cells = np.floor((points - points.min(axis=0)) / voxel_m).astype(np.int64)
    dims = cells.max(axis=0) + 1
    keys = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    centroids = np.empty((len(counts), 3), np.float64)
    for axis in range(3):
        centroids[:, axis] = np.bincount(inverse, weights=points[:, axis], minlength=len(counts))
    centroids /= counts[:, None]
    return centroids.astype(np.float32), inverse


def fit_plane_lstsq(points: np.ndarray) -> np.ndarray:
    """Least-squares plane through points, normal oriented towards +z.

    Args:
        points: ``(N, 3)`` metres, N >= 3.

    Returns:
        ``(4,)`` float64 ``(a, b, c, d)`` with unit normal ``(a, b, c)``, ``c >= 0``, and
        ``a x + b y + c z + d = 0`` on the plane.
    """
    pts = np.asarray(points, dtype=np.float64)
    centroid = pts.mean(axis=0)
    centred = pts - centroid
    _, vectors = np.linalg.eigh(centred.T @ centred)
    normal = vectors[:, 0]  # eigenvector of the smallest eigenvalue
    if normal[2] < 0.0:
        normal = -normal
    return np.append(normal, -normal @ centroid)


def ransac_plane(points: np.ndarray, distance_m: float, iterations: int, *, max_tilt_deg: float = 90.0,
                 seed: int = 0, min_inliers: int = 3) -> tuple[np.ndarray, np.ndarray] | None:
    """Dominant plane whose normal is within ``max_tilt_deg`` of +z, by RANSAC + least-squares refit.

    Only near-horizontal hypotheses are scored, so a wall or a box side never wins over the table.

    Args:
        points: ``(N, 3)`` metres, base frame (+z up).
        distance_m: inlier distance threshold, metres.
        iterations: number of 3-point hypotheses.
        max_tilt_deg: largest angle between the plane normal and +z, degrees.
        seed: random seed (the result is deterministic for a given seed and input).
        min_inliers: fewest inliers accepted.

    Returns:
        ``(plane, inliers)``: ``(4,)`` float64 plane as in :func:`fit_plane_lstsq` and ``(N,)``
        bool inlier mask; ``None`` when no acceptable plane exists.
    """
    n = len(points)
    if n < max(3, min_inliers):
        return None
    pts = np.asarray(points, dtype=np.float32)
    rng = np.random.default_rng(seed)
    samples = pts[rng.integers(0, n, size=(iterations, 3))]
    normals = np.cross(samples[:, 1] - samples[:, 0], samples[:, 2] - samples[:, 0])
    norms = np.linalg.norm(normals, axis=1)
    ok = norms > 1e-9
    normals[ok] /= norms[ok, None]
    normals *= np.where(normals[:, 2:3] < 0.0, -1.0, 1.0).astype(np.float32)
    ok &= normals[:, 2] >= math.cos(math.radians(max_tilt_deg))
    if not np.any(ok):
        return None
    normals = normals[ok]
    offsets = -np.einsum("ij,ij->i", normals, samples[ok, 0])
    scored = pts if n <= _RANSAC_SCORE_POINTS else pts[rng.choice(n, _RANSAC_SCORE_POINTS, replace=False)]
    best_count, best = -1, None
    for start in range(0, len(normals), _RANSAC_BATCH):
        stop = start + _RANSAC_BATCH
        counts = (np.abs(scored @ normals[start:stop].T + offsets[start:stop]) <= distance_m).sum(axis=0)
        i = int(np.argmax(counts))
        if counts[i] > best_count:
            best_count, best = int(counts[i]), (normals[start + i], offsets[start + i])
    inliers = np.abs(pts @ best[0] + best[1]) <= distance_m
    if inliers.sum() < max(3, min_inliers):
        return None
    plane = fit_plane_lstsq(pts[inliers])
    if plane[2] < math.cos(math.radians(max_tilt_deg)):
        plane = np.append(best[0].astype(np.float64), float(best[1]))
    inliers = np.abs(pts @ plane[:3].astype(np.float32) + np.float32(plane[3])) <= distance_m
    return plane, inliers


def euclidean_clusters(points: np.ndarray, tolerance_m: float) -> tuple[np.ndarray, int]:
    """Connected components of the graph linking points closer than ``tolerance_m``.

    Args:
        points: ``(N, 3)`` metres (downsample first: this is O(N · neighbours)).
        tolerance_m: link distance, metres.

    Returns:
        ``labels``: ``(N,)`` int64 component id per point; ``count``: number of components.
    """
    n = len(points)
    if n == 0:
        return np.zeros(0, np.int64), 0
    pairs = cKDTree(points).query_pairs(tolerance_m, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64), int(count)
