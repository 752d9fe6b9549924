"""Spectrogram front ends and model-sized windows.

Each front end is an ``nn.Module`` holding its window and filterbank as buffers, so the same object
runs on a CPU actor or on the accelerator; :func:`front_end` builds the one a :class:`FeatureConfig`
names. ``LogMel`` matches ``librosa.feature.melspectrogram`` (Slaney mel scale and normalisation,
centred frames, zero padding) followed by ``power_to_db(ref=1.0)`` (``log_mel_db``) or by musicnn's
``log10(1 + 10000 * mel)`` (``log_compressed_mel``); ``FbankFrontEnd`` is AST's Kaldi filterbank.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor, nn

from acousticsense.config import FeatureConfig
from acousticsense.enhance import spectral_subtraction
from acousticsense.fbank import KaldiFbank, n_fbank_frames

__all__ = [
    "mel_filterbank",
    "LogMel",
    "FbankFrontEnd",
    "front_end",
    "frame_windows",
    "n_frames",
    "featurize",
]


def mel_filterbank(
    sample_rate_hz: int, n_fft: int, n_mels: int, f_min_hz: float = 0.0, f_max_hz: float | None = None
) -> np.ndarray:
    """Slaney-style mel filterbank, identical to ``librosa.filters.mel`` defaults.

    Returns:
        float32 ``(n_mels, n_fft // 2 + 1)``.
    """
    f_max_hz = sample_rate_hz / 2 if f_max_hz is None else f_max_hz
    fft_freqs = np.linspace(0.0, sample_rate_hz / 2, 1 + n_fft // 2)
    mel_points = np.linspace(_hz_to_mel(f_min_hz), _hz_to_mel(f_max_hz), n_mels + 2)
    hz_points = _mel_to_hz(mel_points)
    spacing = np.diff(hz_points)
    ramps = hz_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / spacing[:-1, None]
    upper = ramps[2:] / spacing[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_points[2 : n_mels + 2] - hz_points[:n_mels]))[:, None]  # equal area per band
    return weights.astype(np.float32)


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear = mel * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


class LogMel(nn.Module):
    """Waveform -> normalised log-mel spectrogram (front ends ``log_mel_db`` and ``log_compressed_mel``).

    Args:
        config: the feature config (sample rate, FFT size, hop, mel bands, compression, normalisation).
        normalize: subtract ``norm_mean`` and divide by ``norm_std`` (what the model sees).
    """

    def __init__(self, config: FeatureConfig, normalize: bool = True) -> None:
        super().__init__()
        if config.front_end not in ("log_mel_db", "log_compressed_mel"):
            raise ValueError(f"LogMel computes log_mel_db or log_compressed_mel, not {config.front_end!r}")
        self.config = config
        self.normalize = normalize
        win_length = config.win_length or config.n_fft
        self.register_buffer("window", torch.hann_window(win_length, periodic=True), persistent=False)
        fb = mel_filterbank(config.sample_rate_hz, config.n_fft, config.n_mels, config.f_min_hz, config.f_max_hz)
        self.register_buffer("filterbank", torch.from_numpy(fb), persistent=False)
        self._sparse = _to_csr(self.filterbank)

    @property
    def device(self) -> torch.device:
        return self.window.device

    def _sparse_filterbank(self) -> Tensor:
        """The filterbank as CSR, rebuilt if the module moved or changed dtype since (``.to``, ``.double``)."""
        if self._sparse.device != self.filterbank.device or self._sparse.dtype != self.filterbank.dtype:
            self._sparse = _to_csr(self.filterbank)
        return self._sparse

    def forward(self, waveform: Tensor) -> Tensor:
        """Args: waveform: float32 ``(..., samples)`` mono at ``config.sample_rate_hz``.

        Returns:
            float32 ``(..., n_mels, frames)`` with ``frames = 1 + samples // hop_length``: dB
            (``10 * log10(mel)``) or ``log10(1 + compression_gain * mel)``, normalised when ``normalize``.
        """
        cfg = self.config
        shape = waveform.shape
        flat = waveform.reshape(-1, shape[-1]).to(self.window.dtype)
        spec = torch.stft(
            flat,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # avoids abs()'s sqrt followed by a square
        if cfg.enhance in ("denoise", "both"):
            power = spectral_subtraction(power)
        # ~1,000 of the 128 x 513 weights are non-zero: on CPU the sparse product costs about two thirds
        # of the dense one (~5 vs ~7.6 ms for 30 s at 22.05 kHz, one thread). GPUs keep the dense product.
        if power.device.type == "cpu" and power.shape[0] == 1 and not power.requires_grad:
            mel = (self._sparse_filterbank() @ power[0]).unsqueeze(0)
        else:
            mel = torch.matmul(self.filterbank, power)
        if cfg.front_end == "log_compressed_mel":
            # float32 throughout: musicnn's own code casts the mel to float16 first, where power > 6.55
            # overflows to inf and every tag becomes NaN.
            out = torch.log1p(cfg.compression_gain * mel.float()) / math.log(10.0)
        else:
            out = 10.0 * torch.log10(torch.clamp(mel, min=cfg.amin))
        if self.normalize:
            out = (out - cfg.norm_mean) / cfg.norm_std
        return out.reshape(*shape[:-1], cfg.n_mels, out.shape[-1])


class FbankFrontEnd(nn.Module):
    """Waveform -> normalised Kaldi log filterbank (front end ``kaldi_fbank``, AST's).

    Args:
        config: the feature config (``win_length`` samples per frame, hop, FFT size, mel bands, f_min/f_max,
            ``norm_mean`` / ``norm_std``; AST divides by twice its dataset std, which the bundle stores).
        normalize: apply ``(x - norm_mean) / norm_std``.
    """

    def __init__(self, config: FeatureConfig, normalize: bool = True) -> None:
        super().__init__()
        self.config = config
        self.normalize = normalize
        self.fbank = KaldiFbank(
            sample_rate_hz=config.sample_rate_hz,
            n_mels=config.n_mels,
            frame_length=config.win_length or config.n_fft,
            hop_length=config.hop_length,
            n_fft=config.n_fft,
            f_min_hz=config.f_min_hz,
            f_max_hz=config.f_max_hz,
            power_hook=spectral_subtraction if config.enhance in ("denoise", "both") else None,
        )

    @property
    def device(self) -> torch.device:
        return self.fbank.window.device

    def forward(self, waveform: Tensor) -> Tensor:
        """Args: waveform: float32 ``(..., samples)`` mono at ``config.sample_rate_hz``, at least one frame long.

        Returns:
            float32 ``(..., n_mels, frames)``, ``frames = 1 + (samples - win_length) // hop_length``.
        """
        out = self.fbank(waveform)
        if self.normalize:
            out = (out - self.config.norm_mean) / self.config.norm_std
        return out


def front_end(config: FeatureConfig, normalize: bool = True) -> LogMel | FbankFrontEnd:
    """The front end ``config.front_end`` names, as a module (``.config``, ``.device``)."""
    if config.front_end == "kaldi_fbank":
        return FbankFrontEnd(config, normalize)
    return LogMel(config, normalize)


def _to_csr(filterbank: Tensor) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return filterbank.to_sparse_csr()


def n_frames(n_samples: int, config: FeatureConfig) -> int:
    """Number of spectrogram frames the config's front end makes of ``n_samples``."""
    if config.front_end == "kaldi_fbank":
        return n_fbank_frames(n_samples, config.win_length or config.n_fft, config.hop_length)
    return 1 + n_samples // config.hop_length  # centred frames


def frame_windows(features: Tensor, window_frames: int) -> Tensor:
    """Cut ``(n_mels, frames)`` into windows that cover every frame.

    Windows are consecutive and non-overlapping except the last, which is aligned to the end of the
    excerpt (so it overlaps the one before instead of being padded with silence). A spectrogram
    shorter than one window is tiled (repeated) to the window's length.

    Returns:
        ``(n_windows, n_mels, window_frames)`` with ``n_windows = ceil(frames / window_frames)``.
    """
    n_mels, frames = features.shape
    if frames < window_frames:
        repeats = -(-window_frames // frames)
        return features.repeat(1, repeats)[:, :window_frames].unsqueeze(0)
    starts = list(range(0, frames - window_frames + 1, window_frames))
    if starts[-1] + window_frames < frames:
        starts.append(frames - window_frames)
    return torch.stack([features[:, s : s + window_frames] for s in starts])


def featurize(waveform: np.ndarray | Tensor, extractor: LogMel | FbankFrontEnd) -> np.ndarray:
    """Mono waveform at the config rate -> model windows, computed on ``extractor``'s device.

    Args:
        waveform: float32 ``(samples,)`` at ``extractor.config.sample_rate_hz``.

    Returns:
        float16 ``(n_windows, n_mels, window_frames)``, normalised log-mel (float16 halves what
        crosses the object store; the values are O(1), well inside float16's precision).
    """
    with torch.inference_mode():
        tensor = waveform if isinstance(waveform, Tensor) else torch.from_numpy(np.ascontiguousarray(waveform))
        features = extractor(tensor.to(extractor.device, torch.float32))
        windows = frame_windows(features, extractor.config.window_frames)
        return windows.to(torch.float16).cpu().numpy()
