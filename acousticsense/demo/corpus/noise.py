"""Additive noise at an exact signal-to-noise ratio (the corpus's ``--snr-db``)."""

from __future__ import annotations

import math

import numpy as np

from acousticsense.errors import ConfigError


def add_noise(
    waveform: np.ndarray,
    snr_db: float,
    rng: np.random.Generator,
    *,
    color: str = "white",
) -> np.ndarray:
    """Add white or pink noise at a given signal-to-noise ratio.

    The noise is scaled so that mean(signal**2) / mean(noise**2) equals ``10 ** (snr_db / 10)`` exactly
    (before clipping).

    Args:
        waveform: Audio samples, any shape (typically ``(samples,)``), nominally in [-1, 1].
        snr_db: Signal-to-noise power ratio in dB.
        rng: Source of the noise.
        color: ``"white"`` (flat spectrum) or ``"pink"`` (-3 dB per octave).

    Returns:
        float32 array of the same shape as ``waveform``, clipped to [-1, 1]. A silent input is
        returned unchanged (an SNR is undefined for it).

    Raises:
        ConfigError: Unknown ``color`` or a non-finite ``snr_db``.
    """
    if color not in ("white", "pink"):
        raise ConfigError(f"color must be 'white' or 'pink', got {color!r}")
    if not math.isfinite(snr_db):
        raise ConfigError(f"snr_db must be finite, got {snr_db}")
    x = np.asarray(waveform, dtype=np.float64)
    power = float(np.mean(x**2)) if x.size else 0.0
    if power == 0.0:
        return x.astype(np.float32)
    noise = rng.standard_normal(x.size)
    if color == "pink":
        spectrum = np.fft.rfft(noise)
        spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1.0))
        noise = np.fft.irfft(spectrum, n=x.size)
    noise *= math.sqrt(power / 10 ** (snr_db / 10) / float(np.mean(noise**2)))
    return np.clip(x + noise.reshape(x.shape), -1.0, 1.0).astype(np.float32)
