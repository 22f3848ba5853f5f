"""Every failure a user can cause raises a subclass of :class:`ProgvcError`.

Messages say what went wrong *and what to do*, so the CLI can print them on one line.
"""

from __future__ import annotations


class ProgvcError(Exception):
    """Base class of every error progvc raises on purpose."""


class BitstreamError(ProgvcError):
    """A stream is malformed, truncated, tampered with, made by other weights, or desynchronised."""


class LimitError(ProgvcError):
    """A valid request exceeds a resource limit (frame area, total pixels); see :class:`progvc.Limits`."""


class VideoError(ProgvcError):
    """An input video cannot be read (missing, not a video, unsupported layout, too large)."""


class WeightsError(ProgvcError):
    """A weights file is missing, modified, truncated, or does not match its config."""


class ConfigError(ProgvcError):
    """An option or configuration value is out of range."""


class DeviceError(ProgvcError):
    """The requested device is not available."""
