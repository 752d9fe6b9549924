"""One file's bytes -> model windows, with per-stage timings: the CPU half shared by batch and serving."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from acousticsense.audio import AudioSource, decode_segments, downmix, resample
from acousticsense.config import FeatureConfig
from acousticsense.errors import AcousticSenseError
from acousticsense.features import LogMel, featurize

__all__ = ["FeaturizedAudio", "StageError", "ExcerptFeaturizer"]


@dataclass
class FeaturizedAudio:
    """Model windows for one file and what was learned about it on the way.

    Attributes:
        windows: float16 ``(n_windows, n_mels, window_frames)``, normalised log-mel.
        duration_s: the whole file's duration (not the excerpt's).
        sample_rate_hz: the file's native sample rate.
        channels: the file's channel count.
        offset_s: where the (first) analysed segment starts, seconds.
        excerpt_s: seconds analysed in all (the sum of the segments).
        segment_windows: windows per segment, in time order; they sum to ``n_windows``.
        timings_s: seconds spent per stage (``decode``, ``resample``, ``features``).
    """

    windows: np.ndarray
    duration_s: float
    sample_rate_hz: int
    channels: int
    offset_s: float
    excerpt_s: float
    segment_windows: list[int] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


class StageError(AcousticSenseError):
    """A failure tagged with the stage it happened in (``read``, ``decode``, ``features`` …)."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class ExcerptFeaturizer:
    """Decode -> downmix -> resample -> log-mel -> windows, for one file at a time.

    Args:
        config: the bundle's feature config.
        torch_threads: intra-op threads for the STFT; 1 on a CPU actor that shares the host with others.
    """

    def __init__(self, config: FeatureConfig, torch_threads: int | None = None) -> None:
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        self.config = config
        self.log_mel = LogMel(config)

    def __call__(self, source: AudioSource) -> FeaturizedAudio:
        """Featurize one file.

        Raises:
            StageError: with ``stage`` ``decode`` (unreadable, empty, truncated, too short) or
                ``features``.
        """
        t0 = time.perf_counter()
        try:
            segments = decode_segments(source, self.config)
        except AcousticSenseError as e:
            raise StageError("decode", str(e)) from e
        except Exception as e:  # noqa: BLE001 - decoders raise many types on hostile bytes
            raise StageError("decode", f"{type(e).__name__}: {e}") from e
        t1 = time.perf_counter()
        info = segments[0].info
        monos = [resample(downmix(s.waveform), info.sample_rate_hz, self.config.sample_rate_hz) for s in segments]
        t2 = time.perf_counter()
        try:
            per_segment = [featurize(mono, self.log_mel) for mono in monos]
        except Exception as e:  # noqa: BLE001
            raise StageError("features", f"{type(e).__name__}: {e}") from e
        windows = per_segment[0] if len(per_segment) == 1 else np.concatenate(per_segment)
        if not np.isfinite(windows).all():
            raise StageError("features", "non-finite values in the spectrogram (corrupt samples?)")
        t3 = time.perf_counter()
        return FeaturizedAudio(
            windows=windows,
            duration_s=info.duration_s,
            sample_rate_hz=info.sample_rate_hz,
            channels=info.channels,
            offset_s=segments[0].offset_s,
            excerpt_s=sum(s.duration_s for s in segments),
            segment_windows=[w.shape[0] for w in per_segment],
            timings_s={"decode": t1 - t0, "resample": t2 - t1, "features": t3 - t2},
        )
