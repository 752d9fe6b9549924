"""Kaldi-style log-mel filterbank: the front end of AST (Audio Spectrogram Transformer).

``KaldiFbank`` reproduces the numpy path of transformers' ``ASTFeatureExtractor`` (itself a port of
``torchaudio.compliance.kaldi.fbank`` with AST's settings), vectorised in torch so that the same
module runs on a CPU actor or on the accelerator:

- 16 kHz mono; frames of 400 samples (25 ms) every 160 samples (10 ms), no centring (Kaldi's
  ``snip_edges``): ``frames = 1 + (samples - 400) // 160``;
- per frame: subtract the frame's mean (DC), pre-emphasis ``x[n] - 0.97 x[n-1]`` (``x[0] * 0.03``
  for the first sample), symmetric Hann window (``np.hanning(400)``, Kaldi's ``"hanning"``), zero-pad
  to a 512-point FFT, power spectrum ``|X|**2``; no dither;
- 128 Kaldi mel bands (``1127 ln(1 + f / 700)``), triangles in mel space from 20 Hz to Nyquist, not
  area-normalised;
- natural log of the band energies floored at float32's epsilon (``1.1920929e-07``).

The output is the *un-normalised* log filterbank, laid out frequency first ``(n_mels, frames)``, the
transpose of transformers' ``(frames, n_mels)``. AST's own normalisation (and its padding to 1024
frames) lives with the model: see :mod:`acousticsense.models.ast`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["kaldi_mel_filterbank", "KaldiFbank", "n_fbank_frames", "FBANK_LOG_FLOOR"]

#: Floor of the band energies before the log: ``np.finfo(np.float32).eps`` (Kaldi and transformers).
FBANK_LOG_FLOOR = 1.1920928955078125e-07


def kaldi_mel_filterbank(
    sample_rate_hz: int, n_fft: int, n_mels: int, f_min_hz: float = 20.0, f_max_hz: float | None = None
) -> np.ndarray:
    """Kaldi mel filterbank: triangles in mel space, mel = ``1127 ln(1 + f / 700)``, no area normalisation.

    Identical (up to float32 rounding) to transformers' ``mel_filter_bank(..., mel_scale="kaldi",
    triangularize_in_mel_space=True, norm=None)`` transposed, and to torchaudio's Kaldi ``get_mel_banks``
    with a zero column for the Nyquist bin.

    Args:
        sample_rate_hz: sample rate of the waveform.
        n_fft: FFT size; the filterbank covers its ``n_fft // 2 + 1`` one-sided bins.
        n_mels: number of mel bands.
        f_min_hz: low edge of the first band (AST: 20 Hz).
        f_max_hz: high edge of the last band; ``None`` means Nyquist (AST).

    Returns:
        float32 ``(n_mels, n_fft // 2 + 1)``.
    """
    f_max_hz = sample_rate_hz / 2 if f_max_hz is None else f_max_hz
    if not 0.0 <= f_min_hz < f_max_hz <= sample_rate_hz / 2:
        raise ValueError(f"need 0 <= f_min_hz < f_max_hz <= sample_rate_hz / 2, got {f_min_hz}, {f_max_hz}")
    if n_mels < 1 or n_fft < 2:
        raise ValueError(f"need n_mels >= 1 and n_fft >= 2, got n_mels={n_mels}, n_fft={n_fft}")
    bin_mels = _hz_to_kaldi_mel(sample_rate_hz / n_fft * np.arange(n_fft // 2 + 1))
    edges = np.linspace(_hz_to_kaldi_mel(f_min_hz), _hz_to_kaldi_mel(f_max_hz), n_mels + 2)
    spacing = np.diff(edges)
    ramps = edges[:, None] - bin_mels[None, :]  # (n_mels + 2, bins)
    rising = -ramps[:-2] / spacing[:-1, None]
    falling = ramps[2:] / spacing[1:, None]
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def _hz_to_kaldi_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def n_fbank_frames(n_samples: int, frame_length: int = 400, hop_length: int = 160) -> int:
    """Number of frames :class:`KaldiFbank` makes of ``n_samples`` (no centring); 0 below one frame."""
    if n_samples < frame_length:
        return 0
    return 1 + (n_samples - frame_length) // hop_length


class KaldiFbank(nn.Module):
    """Waveform -> Kaldi log-mel filterbank (AST's front end), un-normalised.

    Args:
        sample_rate_hz: the waveform's sample rate (AST: 16000).
        n_mels: mel bands (AST: 128).
        frame_length: samples per frame (AST: 400 = 25 ms).
        hop_length: samples between frame starts (AST: 160 = 10 ms).
        n_fft: FFT size, at least ``frame_length`` (AST: 512, the next power of two).
        f_min_hz: low edge of the first mel band (AST: 20 Hz).
        f_max_hz: high edge of the last band; ``None`` is Nyquist (AST).
        preemphasis: pre-emphasis coefficient (AST: 0.97); 0 disables it.
        power_hook: optional callable applied to the power spectrogram, float ``(batch, n_fft // 2 + 1,
            frames)`` -> same shape, before the mel projection (e.g.
            :func:`acousticsense.enhance.spectral_subtraction`). ``None`` (default) leaves it alone.

    The window and the filterbank are non-persistent buffers; the computation runs in their dtype
    (float32 unless the module is converted, e.g. with ``.double()``).

    >>> fbank = KaldiFbank()
    >>> fbank(torch.zeros(2, 16000)).shape
    torch.Size([2, 128, 98])
    """

    def __init__(
        self,
        sample_rate_hz: int = 16000,
        n_mels: int = 128,
        frame_length: int = 400,
        hop_length: int = 160,
        n_fft: int = 512,
        f_min_hz: float = 20.0,
        f_max_hz: float | None = None,
        preemphasis: float = 0.97,
        power_hook: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        if sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
        if frame_length < 2 or hop_length < 1:
            raise ValueError(f"need frame_length >= 2 and hop_length >= 1, got {frame_length}, {hop_length}")
        if n_fft < frame_length:
            raise ValueError(f"n_fft ({n_fft}) must be at least frame_length ({frame_length})")
        if not 0.0 <= preemphasis <= 1.0:
            raise ValueError(f"preemphasis must be in [0, 1], got {preemphasis}")
        self.sample_rate_hz = sample_rate_hz
        self.n_mels = n_mels
        self.frame_length = frame_length
        self.hop_length = hop_length
        self.n_fft = n_fft
        self.preemphasis = preemphasis
        self.power_hook = power_hook
        # Symmetric Hann (np.hanning(400) in transformers, window_type="hanning" in torchaudio's Kaldi fbank).
        window = torch.from_numpy(np.hanning(frame_length).astype(np.float32))
        self.register_buffer("window", window, persistent=False)
        fb = kaldi_mel_filterbank(sample_rate_hz, n_fft, n_mels, f_min_hz, f_max_hz)
        self.register_buffer("filterbank", torch.from_numpy(fb), persistent=False)

    def forward(self, waveform: Tensor) -> Tensor:
        """Args: waveform: float ``(..., samples)`` mono at ``sample_rate_hz``, at least ``frame_length`` long.

        Returns:
            ``(..., n_mels, frames)`` natural-log band energies (floored at ``FBANK_LOG_FLOOR``), in the
            buffers' dtype (float32 by default), ``frames = 1 + (samples - frame_length) // hop_length``.

        Raises:
            ValueError: the waveform is shorter than one frame, or has no sample axis.
        """
        if waveform.ndim == 0:
            raise ValueError("KaldiFbank wants a waveform (..., samples), got a 0-d tensor")
        shape = waveform.shape
        if shape[-1] < self.frame_length:
            raise ValueError(
                f"KaldiFbank needs at least one frame ({self.frame_length} samples = "
                f"{1000 * self.frame_length / self.sample_rate_hz:g} ms at {self.sample_rate_hz} Hz), "
                f"got {shape[-1]} samples; pad the clip or skip it"
            )
        flat = waveform.reshape(-1, shape[-1]).to(self.window.dtype)
        frames = flat.unfold(-1, self.frame_length, self.hop_length)  # (batch, frames, frame_length)
        frames = frames - frames.mean(dim=-1, keepdim=True)
        if self.preemphasis:
            first = frames[..., :1] * (1.0 - self.preemphasis)
            frames = torch.cat((first, frames[..., 1:] - self.preemphasis * frames[..., :-1]), dim=-1)
        spec = torch.fft.rfft(frames * self.window, n=self.n_fft)  # zero-padded to n_fft
        power = (spec.real.square() + spec.imag.square()).transpose(1, 2)  # (batch, freq, frames)
        if self.power_hook is not None:
            power = self.power_hook(power)
        mel = torch.matmul(self.filterbank, power)  # (batch, n_mels, frames)
        log_fbank = torch.clamp(mel, min=FBANK_LOG_FLOOR).log()
        return log_fbank.reshape(*shape[:-1], self.n_mels, log_fbank.shape[-1])

    def extra_repr(self) -> str:
        return (
            f"sample_rate_hz={self.sample_rate_hz}, n_mels={self.n_mels}, frame_length={self.frame_length}, "
            f"hop_length={self.hop_length}, n_fft={self.n_fft}, preemphasis={self.preemphasis}"
        )
