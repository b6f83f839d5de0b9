"""sensor_msgs ↔ numpy: Image, CameraInfo and PointCloud2 (no cv_bridge, no sensor_msgs_py).

The only module besides ``node.py`` that imports message types.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from grasp_perception.camera import CameraIntrinsics
from grasp_perception.errors import (InvalidCameraInfoError, MalformedMessageError,
                                     UnsupportedEncodingError)

#: Color encodings read by :func:`image_to_rgb`: channels per pixel.
COLOR_ENCODINGS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
#: Depth encodings read by :func:`image_to_depth_m`: (numpy type code, metres per unit).
DEPTH_ENCODINGS = {"32FC1": ("f4", 1.0), "16UC1": ("u2", 1e-3)}
#: Encodings written by :func:`numpy_to_image`: (numpy type code, channels).
WRITE_ENCODINGS = {"rgb8": ("u1", 3), "bgr8": ("u1", 3), "mono8": ("u1", 1),
                   "32FC1": ("f4", 1), "16UC1": ("u2", 1)}

_CLOUD_DTYPE = np.dtype({"names": ["x", "y", "z", "rgb"], "formats": ["<f4", "<f4", "<f4", "<u4"],
                         "offsets": [0, 4, 8, 12], "itemsize": 16})
#: The same plus each point's pixel (u, v) in the colour image it was segmented from.
_CLOUD_UV_DTYPE = np.dtype({"names": ["x", "y", "z", "rgb", "u", "v"],
                            "formats": ["<f4", "<f4", "<f4", "<u4", "<f4", "<f4"],
                            "offsets": [0, 4, 8, 12, 16, 20], "itemsize": 24})
#: Names of the per-point pixel fields of an object cloud (column, row in its colour image).
PIXEL_FIELDS = ("u", "v")
_POINTFIELD_TYPES = {PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2",
                     PointField.UINT16: "u2", PointField.INT32: "i4", PointField.UINT32: "u4",
                     PointField.FLOAT32: "f4", PointField.FLOAT64: "f8"}


def _pixels(msg: Image, type_code: str, channels: int) -> np.ndarray:
    """``(H, W, C)`` view of an Image's pixels honouring ``step`` padding and ``is_bigendian``."""
    item = np.dtype(type_code).itemsize
    row_bytes = msg.width * channels * item
    if msg.step < row_bytes:
        raise MalformedMessageError(f"Image step {msg.step} B is smaller than one row "
                                    f"({msg.width} px × {channels * item} B = {row_bytes} B)")
    if len(msg.data) < msg.step * msg.height:
        raise MalformedMessageError(f"Image data has {len(msg.data)} B, expected step × height = "
                                    f"{msg.step} × {msg.height} = {msg.step * msg.height} B")
    raw = np.frombuffer(msg.data, dtype=np.uint8, count=msg.step * msg.height)
    rows = raw.reshape(msg.height, msg.step)[:, :row_bytes]
    order = ">" if msg.is_bigendian else "<"
    dtype = np.dtype(order + type_code) if item > 1 else np.dtype(type_code)
    return np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width, channels)


def _unsupported(encoding: str, supported) -> UnsupportedEncodingError:
    return UnsupportedEncodingError(f"image encoding {encoding!r} is not supported; use one of "
                                    f"{', '.join(supported)}")


def image_to_rgb(msg: Image) -> np.ndarray:
    """Decode a color image.

    Args:
        msg: Image with encoding rgb8, bgr8, rgba8, bgra8 or mono8 (any ``step`` padding).

    Returns:
        ``(H, W, 3)`` uint8 RGB (alpha dropped, mono replicated).

    Raises:
        UnsupportedEncodingError: any other encoding.
        MalformedMessageError: ``step`` or ``data`` inconsistent with the size.
    """
    encoding = msg.encoding
    if encoding not in COLOR_ENCODINGS:
        raise _unsupported(encoding, COLOR_ENCODINGS)
    px = _pixels(msg, "u1", COLOR_ENCODINGS[encoding])
    if encoding == "mono8":
        return np.repeat(px, 3, axis=2)
    if encoding.startswith("bgr"):
        return np.ascontiguousarray(px[:, :, 2::-1])
    return np.ascontiguousarray(px[:, :, :3])


def image_to_depth_m(msg: Image) -> np.ndarray:
    """Decode a depth image into metres.

    Args:
        msg: Image with encoding 32FC1 (metres) or 16UC1 (millimetres; 0 = no return).

    Returns:
        ``(H, W)`` float32 depth along the optical axis, metres (invalid values kept as is:
        NaN/inf/0; the segmenter skips them).

    Raises:
        UnsupportedEncodingError: any other encoding.
        MalformedMessageError: ``step`` or ``data`` inconsistent with the size.
    """
    if msg.encoding not in DEPTH_ENCODINGS:
        raise _unsupported(msg.encoding, DEPTH_ENCODINGS)
    type_code, scale_m = DEPTH_ENCODINGS[msg.encoding]
    depth = _pixels(msg, type_code, 1)[:, :, 0].astype(np.float32)
    if scale_m != 1.0:
        depth *= np.float32(scale_m)
    return depth


def numpy_to_image(array: np.ndarray, encoding: str, frame_id: str = "", stamp=None) -> Image:
    """Encode an array as an Image (little-endian, no row padding).

    Args:
        array: ``(H, W, 3)`` uint8 for rgb8/bgr8 (channels already in that order), ``(H, W)``
            uint8 for mono8, float32 metres for 32FC1, uint16 millimetres for 16UC1.
        encoding: one of ``WRITE_ENCODINGS``.
        frame_id: header frame id.
        stamp: ``builtin_interfaces/Time`` for the header, or None.

    Raises:
        UnsupportedEncodingError: encoding not in ``WRITE_ENCODINGS``.
        ValueError: array shape does not fit the encoding.
    """
    if encoding not in WRITE_ENCODINGS:
        raise _unsupported(encoding, WRITE_ENCODINGS)
    type_code, channels = WRITE_ENCODINGS[encoding]
    array = np.asarray(array)
    expected = 3 if channels > 1 else 2
    if array.ndim != expected or (channels > 1 and array.shape[2] != channels):
        raise ValueError(f"{encoding} needs an array of shape {'(H, W, 3)' if channels > 1 else '(H, W)'}, "
                         f"got {array.shape}")
    data = np.ascontiguousarray(array.astype("<" + type_code, copy=False))
    msg = Image()
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = False
    msg.step = msg.width * channels * np.dtype(type_code).itemsize
    msg.data = data.tobytes()
    return msg


def camera_info_to_intrinsics(msg: CameraInfo) -> CameraIntrinsics:
    """Intrinsics from CameraInfo ``k``, ``width`` and ``height`` (images assumed rectified).

    Raises:
        InvalidCameraInfoError: K unusable (all zeros when uncalibrated, fx/fy <= 0) or size 0.
    """
    try:
        return CameraIntrinsics.from_k(np.asarray(msg.k, dtype=np.float64), msg.width, msg.height)
    except ValueError as exc:
        raise InvalidCameraInfoError(f"CameraInfo (frame {msg.header.frame_id!r}) is unusable: {exc}; "
                                     "publish a calibrated CameraInfo") from exc


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """``(N, 3)`` uint8 RGB → ``(N,)`` uint32 ``0x00RRGGBB`` (reinterpret as float32 for the ``rgb`` field)."""
    rgb = np.asarray(rgb, dtype=np.uint32)
    return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """``(N,)`` uint32 ``0x00RRGGBB`` → ``(N, 3)`` uint8 RGB."""
    packed = np.asarray(packed, dtype=np.uint32)
    return np.stack(((packed >> 16) & 0xFF, (packed >> 8) & 0xFF, packed & 0xFF), axis=1).astype(np.uint8)


def numpy_to_cloud(xyz: np.ndarray, rgb: np.ndarray, frame_id: str, stamp=None,
                   pixel_uv: np.ndarray | None = None) -> PointCloud2:
    """Build an unorganised PointCloud2 with fields x, y, z (float32), rgb (packed float32) and optionally u, v.

    Args:
        xyz: ``(N, 3)`` float32 points, metres, in ``frame_id`` (must be finite).
        rgb: ``(N, 3)`` uint8 colors.
        frame_id: header frame id.
        stamp: ``builtin_interfaces/Time`` or None.
        pixel_uv: optional ``(N, 2)`` pixel (u = column, v = row) of each point in the colour
            image it came from, written as float32 fields ``u``, ``v`` (read with :func:`cloud_pixel_uv`).
    """
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
    if len(xyz) != len(rgb):
        raise ValueError(f"xyz has {len(xyz)} points but rgb has {len(rgb)} colors")
    if not np.all(np.isfinite(xyz)):
        raise ValueError("xyz contains NaN/inf; the cloud is published as dense (is_dense=True)")
    dtype = _CLOUD_DTYPE if pixel_uv is None else _CLOUD_UV_DTYPE
    points = np.empty(len(xyz), dtype=dtype)
    points["x"], points["y"], points["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    points["rgb"] = pack_rgb(rgb)
    if pixel_uv is not None:
        uv = np.asarray(pixel_uv, dtype=np.float32)
        if uv.shape != (len(xyz), 2):
            raise ValueError(f"pixel_uv has shape {uv.shape}, expected ({len(xyz)}, 2): one (u, v) per point")
        points["u"], points["v"] = uv[:, 0], uv[:, 1]
    msg = PointCloud2()
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    msg.height, msg.width = 1, len(xyz)
    msg.fields = [PointField(name=name, offset=dtype.fields[name][1], datatype=PointField.FLOAT32, count=1)
                  for name in dtype.names]
    msg.is_bigendian = False
    msg.point_step = dtype.itemsize
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = True
    msg.data = points.tobytes()
    return msg


def cloud_to_numpy(msg: PointCloud2, *, skip_nans: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Read x, y, z and (if present) rgb/rgba from a PointCloud2 of any field layout.

    Args:
        msg: the cloud; ``rgb`` may be FLOAT32 (ROS convention) or UINT32, packed ``0x00RRGGBB``.
        skip_nans: drop points with a non-finite coordinate.

    Returns:
        ``xyz``: ``(N, 3)`` float32 metres in ``msg.header.frame_id``; ``rgb``: ``(N, 3)`` uint8 or None.

    Raises:
        MalformedMessageError: missing x/y/z, unknown field type or a short data buffer.
    """
    fields = {f.name: f for f in msg.fields}
    color = "rgb" if "rgb" in fields else ("rgba" if "rgba" in fields else None)
    points = _cloud_points(msg, ("x", "y", "z") + ((color,) if color else ()), packed=color)
    xyz = np.stack((points["x"], points["y"], points["z"]), axis=1).astype(np.float32)
    rgb = unpack_rgb(points[color]) if color else None
    if skip_nans:
        finite = np.all(np.isfinite(xyz), axis=1)
        if not np.all(finite):
            xyz = xyz[finite]
            rgb = rgb[finite] if rgb is not None else None
    return xyz, rgb


def cloud_pixel_uv(msg: PointCloud2, *, skip_nans: bool = True) -> np.ndarray | None:
    """Each point's pixel (u, v) in the colour image the cloud came from, when the cloud has fields ``u``, ``v``.

    Args:
        msg: the cloud (``u``, ``v`` of any numeric type, as :func:`numpy_to_cloud` writes them).
        skip_nans: drop the rows of points with a non-finite coordinate (as :func:`cloud_to_numpy` does).

    Returns:
        ``(N, 2)`` float32 (column, row), rows aligned with :func:`cloud_to_numpy`'s ``xyz``; None
        when the cloud has no pixel fields (e.g. clouds recorded before they were added).

    Raises:
        MalformedMessageError: missing x/y/z, unknown field type or a short data buffer.
    """
    if not all(name in {f.name for f in msg.fields} for name in PIXEL_FIELDS):
        return None
    points = _cloud_points(msg, ("x", "y", "z") + PIXEL_FIELDS)
    uv = np.stack([points[name] for name in PIXEL_FIELDS], axis=1).astype(np.float32)
    if skip_nans:
        uv = uv[np.all(np.isfinite(np.stack((points["x"], points["y"], points["z"]), axis=1)), axis=1)]
    return uv


def _cloud_points(msg: PointCloud2, names: tuple[str, ...], packed: str | None = None) -> np.ndarray:
    """``(N,)`` structured array of the named fields of a PointCloud2 (``packed``: that field read as uint32).

    Raises:
        MalformedMessageError: a named field missing (x, y, z always needed), unknown field type
            or a short data buffer.
    """
    fields = {f.name: f for f in msg.fields}
    if not all(name in fields for name in "xyz"):
        raise MalformedMessageError(f"PointCloud2 needs fields x, y, z; has {sorted(fields)}")
    order = ">" if msg.is_bigendian else "<"
    formats, offsets = [], []
    for name in names:
        f = fields[name]
        if f.datatype not in _POINTFIELD_TYPES:
            raise MalformedMessageError(f"PointCloud2 field {name!r} has unknown datatype {f.datatype}")
        code = "u4" if name == packed else _POINTFIELD_TYPES[f.datatype]
        formats.append(order + code)
        offsets.append(f.offset)
    dtype = np.dtype({"names": list(names), "formats": formats, "offsets": offsets, "itemsize": msg.point_step})
    n = msg.width * msg.height
    if len(msg.data) < msg.row_step * msg.height or msg.row_step < msg.point_step * msg.width:
        raise MalformedMessageError(f"PointCloud2 data has {len(msg.data)} B for {msg.height} rows of "
                                    f"{msg.row_step} B (point_step {msg.point_step} × width {msg.width})")
    raw = np.frombuffer(msg.data, dtype=np.uint8, count=msg.row_step * msg.height)
    rows = raw.reshape(msg.height, msg.row_step)[:, :msg.point_step * msg.width]
    return np.ascontiguousarray(rows).view(dtype).reshape(n)
