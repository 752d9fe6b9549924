"""One file's bytes -> model windows, with per-stage timings: the CPU half shared by batch and serving."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from acousticsense.audio import AudioSource, decode_segments, downmix, resample
from acousticsense.config import FeatureConfig
from acousticsense.enhance import compress_dynamic_range
from acousticsense.errors import AcousticSenseError, ConfigError, StageError
from acousticsense.features import FbankFrontEnd, LogMel, featurize, front_end
from acousticsense.record import FileRecord, rms_dbfs

__all__ = ["PreparedAudio", "FeaturizedAudio", "ExcerptFeaturizer", "segment_windows"]


@dataclass
class PreparedAudio:
    """Mono excerpts at the model's rate, before features (what crosses to the accelerator with
    ``--features-on accelerator``).

    Attributes:
        segments: one float32 ``(samples,)`` array per analysed segment, at ``config.sample_rate_hz``.
        record: what is known about the file so far: its header facts, the analysed span, its loudness and
            the ``decode_s`` / ``resample_s`` timings (:class:`~acousticsense.record.FileRecord`).
        class_weights: the rule layer's float32 ``(n_classes,)`` multipliers (``config.rules`` only).
    """

    segments: list[np.ndarray]
    record: FileRecord
    class_weights: np.ndarray | None = None


@dataclass
class FeaturizedAudio:
    """Model windows for one file and what was learned about it on the way.

    Attributes:
        windows: float16 ``(n_windows, n_mels, window_frames)``, normalised log-mel, segments one after another
            (the payload; its count is ``record.windows``).
        record: :class:`PreparedAudio`'s record plus ``windows`` and ``features_s``.
        segment_windows: windows per segment, in time order; they sum to ``n_windows``.
        class_weights: the rule layer's ``(n_classes,)`` multipliers, when rules are on.
    """

    windows: np.ndarray
    record: FileRecord
    segment_windows: list[int] = field(default_factory=list)
    class_weights: np.ndarray | None = None


def segment_windows(
    segments: list[np.ndarray] | list[torch.Tensor], log_mel: LogMel | FbankFrontEnd
) -> tuple[np.ndarray, list[int]]:
    """Log-mel windows of every segment, concatenated, on ``log_mel``'s device.

    Returns:
        float16 ``(n_windows, n_mels, window_frames)`` on the CPU and the windows per segment.

    Raises:
        StageError: ``features`` stage, e.g. non-finite values from corrupt samples.
    """
    try:
        per_segment = [featurize(segment, log_mel) for segment in segments]
    except Exception as e:  # noqa: BLE001
        raise StageError("features", f"{type(e).__name__}: {e}") from e
    windows = per_segment[0] if len(per_segment) == 1 else np.concatenate(per_segment)
    if not np.isfinite(windows).all():
        raise StageError("features", "non-finite values in the spectrogram (corrupt samples?)")
    return windows, [w.shape[0] for w in per_segment]


# Float audio is nominally in [-1, 1]; a peak 60 dB above full scale is corrupt data, and values near
# float32's limit overflow the STFT's power (1e30 squared is inf) into a spectrogram of NaNs.
MAX_SAMPLE_PEAK = 1000.0


def _check_samples(waveforms: list[np.ndarray]) -> None:
    """Refuse decoded samples that no stage after decoding can use: NaN/Inf or absurd magnitudes.

    Raises:
        StageError: ``decode`` stage, naming the problem.
    """
    for waveform in waveforms:
        if waveform.size == 0:
            continue
        # Float WAV/AIFF can hold NaN or Inf; everything downstream (rules, compression, STFT) needs finite input.
        if not np.isfinite(waveform).all():
            raise StageError("decode", "the audio holds non-finite samples (NaN or Inf): corrupt float audio")
        peak = float(np.abs(waveform).max())
        if peak > MAX_SAMPLE_PEAK:
            raise StageError(
                "decode",
                f"sample values out of range: peak {peak:.3g} where full scale is 1.0 "
                f"(more than {MAX_SAMPLE_PEAK:g}): corrupt float audio",
            )


def _warm_up_signal(sample_rate_hz: int) -> np.ndarray:
    """Two seconds of 440 Hz bursts, four per second: enough pulse that ``describe`` runs (and numba compiles)
    the beat tracker. Silence would not: ``describe`` returns early on it, and the first real file would pay
    the several-second compilation inside its own features timing (and a service's first request)."""
    t = np.arange(2 * sample_rate_hz) / sample_rate_hz
    return (0.5 * np.sin(2 * np.pi * 440.0 * t) * (np.mod(t, 0.25) < 0.05)).astype(np.float32)


class ExcerptFeaturizer:
    """Decode -> downmix -> resample -> log-mel -> windows, for one file at a time.

    Args:
        config: the bundle's feature config.
        torch_threads: intra-op threads for the STFT; 1 on a CPU actor that shares the host with others.
        labels: the bundle's labels; needed only when ``config.rules`` is on.
    """

    def __init__(
        self, config: FeatureConfig, torch_threads: int | None = None, labels: Sequence[str] | None = None
    ) -> None:
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        self.config = config
        self.log_mel = front_end(config)
        self.labels = tuple(labels or ())
        if config.rules:
            if not self.labels:
                raise ConfigError("the rule layer needs the bundle's labels: pass labels=bundle.labels")
            from acousticsense.rules import describe  # librosa: imported only when rules are on

            describe(_warm_up_signal(config.sample_rate_hz), config.sample_rate_hz)  # JIT once, up front

    def prepare(self, source: AudioSource) -> PreparedAudio:
        """Decode the configured segments and bring them to mono at the model's rate.

        Raises:
            StageError: ``decode`` stage (unreadable, empty, truncated, too short, NaN/Inf samples), or
                ``features`` when the rule layer fails.
        """
        t0 = time.perf_counter()
        try:
            decoded = decode_segments(source, self.config)
        except AcousticSenseError as e:
            raise StageError("decode", str(e)) from e
        except Exception as e:  # noqa: BLE001 - decoders raise many types on hostile bytes
            raise StageError("decode", f"{type(e).__name__}: {e}") from e
        t1 = time.perf_counter()
        _check_samples([s.waveform for s in decoded])
        info = decoded[0].info
        rate = self.config.sample_rate_hz
        monos = [resample(downmix(s.waveform), info.sample_rate_hz, rate) for s in decoded]
        loudness = rms_dbfs(monos)  # of what the file holds, not of what enhancement made of it
        if self.config.enhance in ("compress", "both"):
            monos = [compress_dynamic_range(m, rate) for m in monos]
        t2 = time.perf_counter()
        record = FileRecord(
            duration_s=info.duration_s,
            sample_rate_hz=info.sample_rate_hz,
            channels=info.channels,
            offset_s=decoded[0].offset_s,
            excerpt_s=sum(s.duration_s for s in decoded),
            rms_dbfs=loudness,
            decode_s=t1 - t0,
            resample_s=t2 - t1,
        )
        return PreparedAudio(segments=monos, record=record, class_weights=self._class_weights(monos))

    def _class_weights(self, monos: list[np.ndarray]) -> np.ndarray | None:
        if not self.config.rules:
            return None
        from acousticsense.rules import describe, rule_weights

        try:
            descriptors = describe(np.concatenate(monos), self.config.sample_rate_hz)
            return rule_weights(descriptors, self.labels).astype(np.float32)
        except Exception as e:  # noqa: BLE001 - librosa raises its own types; one file's failure stays its own
            raise StageError("features", f"rule layer: {type(e).__name__}: {e}") from e

    def __call__(self, source: AudioSource) -> FeaturizedAudio:
        """Featurize one file: :meth:`prepare`, then :meth:`windows_of`.

        Raises:
            StageError: with ``stage`` ``decode`` (unreadable, empty, truncated, too short) or ``features``.
        """
        return self.windows_of(self.prepare(source))

    def windows_of(self, prepared: PreparedAudio) -> FeaturizedAudio:
        """The model windows of a prepared file (its segments through the front end), with its metadata.

        Raises:
            StageError: ``features`` stage, e.g. non-finite values from corrupt samples.
        """
        t0 = time.perf_counter()
        windows, per_segment = segment_windows(prepared.segments, self.log_mel)
        return FeaturizedAudio(
            windows=windows,
            record=replace(prepared.record, windows=int(windows.shape[0]), features_s=time.perf_counter() - t0),
            segment_windows=per_segment,
            class_weights=prepared.class_weights,
        )
