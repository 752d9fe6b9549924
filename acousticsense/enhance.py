"""Signal enhancement without retraining: spectral-subtraction denoising and dynamic range compression.

Both are optional front-end steps (off unless the feature config asks for them):

- :func:`spectral_subtraction` works on an STFT power spectrogram, so it fits inside
  :class:`acousticsense.features.LogMel` between the power spectrum and the mel projection, on
  whatever device the module runs on.
- :func:`compress_dynamic_range` works on the mono waveform, before the STFT.

Unlike the reference article, the noise is not taken from the first second (often the loudest part
of a middle excerpt, or an intro that is not noise at all) but from the quietest frames of the
excerpt, wherever they are.

Limits, as with any spectral subtraction driven by quiet frames: a sound that never gets quieter
over the whole excerpt (a drone, a held organ chord) cannot be told apart from stationary noise or
hum and is attenuated with it. Keep ``over_subtraction`` moderate on music.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["spectral_subtraction", "estimate_noise", "compress_dynamic_range"]


def estimate_noise(power: Tensor, noise_quantile: float = 0.1) -> Tensor:
    """Noise power spectrum: the per-bin mean of the quietest frames.

    Frames are ranked by total energy (sum over frequency) and the quietest ``noise_quantile`` share
    of them (at least one frame) is averaged per frequency bin. Digital silence counts as quiet, so a
    clean recording with true silence in it gets a zero estimate and is left alone.

    Args:
        power: float ``(..., freq, frames)`` STFT power (``|X|**2``), linear units.
        noise_quantile: share of frames in ``(0, 1]`` taken as noise-only.

    Returns:
        float32 ``(..., freq, 1)``, linear power, broadcastable against ``power``.
    """
    _check_power(power)
    if not 0.0 < noise_quantile <= 1.0:
        raise ValueError(f"noise_quantile must be in (0, 1], got {noise_quantile}")
    shape = power.shape
    flat = power.reshape(-1, shape[-2], shape[-1]).to(torch.float32)  # (batch, freq, frames)
    k = max(1, int(noise_quantile * shape[-1]))
    quietest = flat.sum(dim=-2).topk(k, dim=-1, largest=False, sorted=False).indices  # (batch, k)
    frames = flat.gather(-1, quietest.unsqueeze(-2).expand(-1, shape[-2], -1))  # (batch, freq, k)
    return frames.mean(dim=-1, keepdim=True).reshape(*shape[:-1], 1)


def spectral_subtraction(
    power: Tensor,
    noise_quantile: float = 0.1,
    over_subtraction: float = 1.5,
    floor: float = 0.05,
) -> Tensor:
    """Power spectral subtraction with a spectral floor.

    ``out = max(power - over_subtraction * noise, floor * power)`` where ``noise`` comes from
    :func:`estimate_noise`. The floor keeps a scaled copy of the input in place of negative or
    near-zero values, which avoids the isolated holes heard (and seen by the model) as musical
    noise. Each leading index (batch item, channel) gets its own noise estimate.

    Args:
        power: float ``(..., freq, frames)`` STFT power (``|X|**2``), linear units, any device.
        noise_quantile: share of frames in ``(0, 1]`` treated as noise-only (the quietest ones).
        over_subtraction: multiple of the noise estimate to subtract, ``>= 0`` (0 disables).
        floor: spectral floor in ``[0, 1]`` as a share of the input power.

    Returns:
        float32 ``(..., freq, frames)``, same shape and device as ``power``, ``floor * power <= out <= power``.

    >>> power = torch.rand(2, 513, 100)
    >>> spectral_subtraction(power).shape
    torch.Size([2, 513, 100])
    """
    if over_subtraction < 0:
        raise ValueError(f"over_subtraction must be >= 0, got {over_subtraction}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be in [0, 1], got {floor}")
    noise = estimate_noise(power, noise_quantile)
    power = power.to(torch.float32)
    return torch.maximum(power - over_subtraction * noise, floor * power)


def _check_power(power: Tensor) -> None:
    if not isinstance(power, Tensor):
        raise TypeError(f"power must be a torch.Tensor (..., freq, frames), got {type(power).__name__}")
    if power.ndim < 2 or power.shape[-1] == 0 or power.shape[-2] == 0:
        raise ValueError(f"power must be (..., freq, frames) with freq, frames >= 1; got shape {tuple(power.shape)}")


def compress_dynamic_range(
    waveform: np.ndarray,
    sample_rate_hz: int,
    threshold_db: float = -24.0,
    ratio: float = 4.0,
    attack_s: float = 0.01,
    release_s: float = 0.15,
    makeup: bool = True,
) -> np.ndarray:
    """Feed-forward downward compressor (hard knee) on a mono waveform.

    The level is the RMS of consecutive 10 ms frames in dBFS. Above ``threshold_db`` the static
    curve reduces the gain by ``(level - threshold_db) * (1 - 1 / ratio)`` dB. The whole signal is
    at hand, so the detector looks ahead by two attack times (the gain starts falling before a loud
    onset instead of letting it overshoot). The gain in dB is smoothed per frame with one-pole attack
    (gain falling) and release (gain rising) filters, then linearly interpolated to samples between
    frame centres. With ``makeup`` the output is rescaled so that its peak equals the input's peak.
    Silence stays silent (its gain is 0 dB). Cost: about 10 ms for 30 s at 22.05 kHz.

    Args:
        waveform: float ``(samples,)`` mono, full scale = 1.0.
        sample_rate_hz: sample rate of ``waveform``, Hz.
        threshold_db: level above which the gain is reduced, dBFS (RMS).
        ratio: compression ratio ``>= 1`` (1 is a no-op before makeup).
        attack_s: time constant of the gain reduction, seconds (> 0).
        release_s: time constant of the gain recovery, seconds (> 0).
        makeup: rescale so that the output's peak equals the input's peak.

    Returns:
        float32 ``(samples,)``.
    """
    x = np.asarray(waveform, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"waveform must be mono (samples,), got shape {x.shape}; downmix first")
    if sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
    if ratio < 1.0:
        raise ValueError(f"ratio must be >= 1 (use 1 for no compression), got {ratio}")
    if attack_s <= 0 or release_s <= 0:
        raise ValueError(f"attack_s and release_s must be positive, got {attack_s}, {release_s}")
    if x.size == 0:
        return x.copy()

    frame = max(1, round(0.010 * sample_rate_hz))
    n_frames = -(-x.size // frame)
    padded = np.zeros(n_frames * frame, dtype=np.float64)
    padded[: x.size] = x
    frames = padded.reshape(n_frames, frame)
    # The last frame is partial: average over its real samples only.
    counts = np.full(n_frames, frame, dtype=np.float64)
    counts[-1] = x.size - (n_frames - 1) * frame
    rms = np.sqrt(np.einsum("ij,ij->i", frames, frames) / counts)
    level_db = 20.0 * np.log10(np.maximum(rms, 1e-10))
    target_db = np.minimum(0.0, (threshold_db - level_db) * (1.0 - 1.0 / ratio))

    frame_s = frame / sample_rate_hz
    lookahead = math.ceil(2.0 * attack_s / frame_s)
    ahead = np.concatenate([target_db, np.zeros(lookahead)])
    target_db = np.lib.stride_tricks.sliding_window_view(ahead, lookahead + 1).min(axis=1)
    a_attack = math.exp(-frame_s / attack_s)
    a_release = math.exp(-frame_s / release_s)
    gain_db = np.empty(n_frames)
    g = float(target_db[0])  # an excerpt starts mid-music: begin settled, not at 0 dB
    for i, t in enumerate(target_db.tolist()):  # ~100 iterations per second of audio
        a = a_attack if t < g else a_release
        g = a * g + (1.0 - a) * t
        gain_db[i] = g

    centres = (np.arange(n_frames) + 0.5) * frame
    gain = 10.0 ** (np.interp(np.arange(x.size), centres, gain_db) / 20.0)
    out = x * gain
    if makeup:
        peak_in, peak_out = float(np.max(np.abs(x))), float(np.max(np.abs(out)))
        if peak_out > 0.0:
            out *= peak_in / peak_out
    return out.astype(np.float32)
