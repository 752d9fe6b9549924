"""One error family for the core library.

The core raises; the pipeline and the service decide what an error becomes (an error row, a 4xx).
"""

from __future__ import annotations


class AcousticSenseError(Exception):
    """Base class of every error the core library raises on purpose."""


class AudioDecodeError(AcousticSenseError):
    """The bytes could not be decoded as audio, or the audio is unusable (empty, too short)."""


class BundleError(AcousticSenseError):
    """A model bundle is missing, malformed, or does not match the code that loads it."""


class ConfigError(AcousticSenseError):
    """A configuration value is out of range or inconsistent with another one."""


class StageError(AcousticSenseError):
    """A per-file failure tagged with the stage it happened in (``read``, ``decode``, ``features`` …).

    The batch job turns it into an error row with ``error_stage``; the service into a 4xx.
    """

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage
