"""The D(R,O) network's image input: a colour view at the network's size, and each object point's pixel in it.

One resize serves training (:mod:`functional_grasp.train_data`), deployment in simulation
(:mod:`functional_grasp.net_deploy`) and the planner (:class:`~grasp_planner.grasp_predictor.NetworkPredictor`),
so a point lands on the same network pixel everywhere.

Pixel convention: ``(u, v)`` = (column, row), pixel centres at integer values (the centre of the
top-left pixel is (0, 0), the image spans [-0.5, W - 0.5] × [-0.5, H - 0.5]). This is how the
image encoder samples its feature map (``align_corners=False``), and how PIL resizes; a point at
``u`` in a ``W``-wide image is at ``(u + 0.5) · w / W − 0.5`` in the ``w``-wide one.

numpy + PIL only (no torch, no ROS).
"""
from __future__ import annotations

import numpy as np


class ImageInputError(ValueError):
    """The colour image or the per-point pixels cannot be the network's input; the message says why."""


def resize_view(rgb: np.ndarray, uv: np.ndarray, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize a colour view to the network's ``image_size`` and move the points' pixels with it.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        uv: (M, 2) pixel (u, v) of each point in ``rgb`` (column, row; pixel centres at integers).
        image_size: (height, width) of the network input, pixels.

    Returns:
        ``(image, uv)``: (h, w, 3) uint8 RGB resized bilinearly (antialiased when shrinking), and
        the (M, 2) float32 pixels in it.
    """
    from PIL import Image

    h, w = (int(s) for s in image_size)
    height, width = rgb.shape[:2]
    scale = np.array([w / width, h / height], np.float32)
    scaled = (np.asarray(uv, np.float32) + 0.5) * scale - 0.5
    if (height, width) == (h, w):
        return np.ascontiguousarray(rgb, np.uint8), scaled
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb, np.uint8)).resize((w, h), Image.BILINEAR)), scaled


def network_view(image: np.ndarray, pixel_uv: np.ndarray, num_points: int,
                 image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Check a colour view and its points' pixels, then :func:`resize_view` it to ``image_size``.

    Args:
        image: (H, W, 3) uint8 RGB the object cloud was seen in (any size).
        pixel_uv: (num_points, 2) pixel (u, v) of each cloud point in ``image``.
        num_points: points of the object cloud.
        image_size: (height, width) of the network input, pixels.

    Returns:
        ``(image, uv)`` as :func:`resize_view`.

    Raises:
        ImageInputError: not an (H, W, 3) uint8 image, not one finite pixel per point, or pixels
            outside the image (the image is not the one the cloud was segmented from).
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or min(img.shape[:2]) < 1:
        raise ImageInputError(f"the colour image must be (H, W, 3) uint8 RGB, got shape {img.shape} {img.dtype}")
    uv = np.asarray(pixel_uv, dtype=np.float32)
    if uv.shape != (num_points, 2):
        raise ImageInputError(f"pixel_uv has shape {uv.shape} but the object cloud has {num_points} points: "
                              "one (u, v) per point is needed")
    if not np.isfinite(uv).all():
        raise ImageInputError(f"pixel_uv holds {int((~np.isfinite(uv)).any(axis=1).sum())} non-finite (u, v)")
    height, width = img.shape[:2]
    lo, hi = (uv.min(axis=0), uv.max(axis=0)) if num_points else (np.zeros(2), np.zeros(2))
    if lo.min() < -0.5 or hi[0] > width - 0.5 or hi[1] > height - 0.5:
        raise ImageInputError(
            f"point pixels span u {lo[0]:.1f}..{hi[0]:.1f}, v {lo[1]:.1f}..{hi[1]:.1f}, outside the {width}×{height} "
            "colour image: the image is not the frame the cloud was segmented from (or was resized without its u, v)")
    return resize_view(img, uv, image_size)
