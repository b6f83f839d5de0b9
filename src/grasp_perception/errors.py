"""Errors of the perception package: each says what was wrong with the input and what to do.

Every bad-input error derives from :class:`PerceptionError` (a ``ValueError``), so the node can
catch one type, report it, publish nothing and keep serving the next frame.
"""
from __future__ import annotations


class PerceptionError(ValueError):
    """An input frame (or its metadata) that cannot be turned into an object cloud."""


class InvalidDepthError(PerceptionError):
    """The depth image has too many invalid pixels (NaN, inf, <= 0, beyond the maximum range)."""


class SizeMismatchError(PerceptionError):
    """Image sizes disagree (depth vs CameraInfo, or color vs depth)."""


class UnsupportedEncodingError(PerceptionError):
    """A sensor_msgs/Image encoding the conversions do not handle."""


class MalformedMessageError(PerceptionError):
    """A message whose fields contradict each other (short data buffer, step < row bytes, ...)."""


class InvalidCameraInfoError(PerceptionError):
    """CameraInfo without a usable intrinsic matrix K (e.g. an uncalibrated camera, K all zeros)."""


class MissingCameraInfoError(PerceptionError):
    """An RGB-D frame arrived before any CameraInfo."""


class NoPlaneError(PerceptionError):
    """No near-horizontal table plane was found in the workspace."""


class NoObjectError(PerceptionError):
    """No object cluster stands on the table plane inside the workspace (or none at the index)."""


class SegmenterUnavailableError(NotImplementedError):
    """A registered segmenter that cannot run here (e.g. it needs a local model checkpoint)."""
