"""Degraded copies of real audio, and how often two runs of the classifier agree.

Used to check robustness without labels: the prediction on the clean file is the reference, and a
noisy or re-encoded copy "agrees" when it gets the same answer. Noise is pure numpy; only
:func:`encode_mp3` needs PyAV (already the core's fallback decoder).

SNR here is always ``10 * log10(P_signal / P_noise)`` with ``P = mean(x ** 2)`` over every sample
(and channel) of the clean signal as decoded, at its own sample rate and over its full band; the
noise is scaled to that. A model that listens at a lower rate discards the noise above its Nyquist
frequency along with the music there, so for white noise (flat up to the file's Nyquist) the SNR the
model sees is higher than the nominal one; pink noise keeps most of its power in the low band.
"""

from __future__ import annotations

import io
from collections.abc import Hashable, Sequence

import numpy as np

__all__ = ["white_noise", "pink_noise", "add_noise_at_snr", "snr_db", "agreement", "encode_mp3"]

RandomState = np.random.Generator | int | None


def white_noise(n_samples: int, rng: RandomState = 0) -> np.ndarray:
    """Gaussian white noise with unit power.

    Args:
        n_samples: length.
        rng: a generator, or a seed (the same seed gives the same noise).

    Returns:
        float32 ``(n_samples,)``, ``mean(x ** 2) == 1`` (exactly, after scaling), flat spectrum.
    """
    _check_length(n_samples)
    noise = np.random.default_rng(rng).standard_normal(n_samples)
    return _unit_power(noise)


def pink_noise(n_samples: int, rng: RandomState = 0) -> np.ndarray:
    """Pink (1/f) noise with unit power: equal power per octave.

    White Gaussian noise shaped in the frequency domain: every rFFT bin ``k >= 1`` is scaled by
    ``1 / sqrt(k)`` (power ``∝ 1/f``) and the DC bin is set to 0, so the noise has zero mean.

    Args:
        n_samples: length.
        rng: a generator, or a seed.

    Returns:
        float32 ``(n_samples,)``, ``mean(x ** 2) == 1``, power spectral density ``∝ 1/f``.
    """
    _check_length(n_samples)
    white = np.random.default_rng(rng).standard_normal(n_samples)
    spectrum = np.fft.rfft(white)
    k = np.arange(spectrum.shape[0], dtype=np.float64)
    k[0] = np.inf  # DC -> 0
    return _unit_power(np.fft.irfft(spectrum / np.sqrt(k), n=n_samples))


def add_noise_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``x`` plus ``noise`` scaled so that the result has the given SNR against ``x``.

    The noise is multiplied by ``sqrt(P_x / (P_noise * 10 ** (snr_db / 10)))`` with ``P = mean(v ** 2)``
    over all elements, so ``10 * log10(P_x / P_scaled_noise) == snr_db``. Nothing is clipped: the sum
    may exceed ``[-1, 1]`` (write it as float, not as integer PCM).

    Args:
        x: float ``(..., samples)``, the clean signal.
        noise: float, the same shape as ``x`` (or broadcastable to it).
        snr_db: signal-to-noise ratio in dB (0 dB: noise as loud as the signal).

    Returns:
        float32, the shape of ``x``.

    Raises:
        ValueError: ``x`` or ``noise`` is empty, silent, or not finite; shapes do not broadcast.
    """
    signal = np.asarray(x, dtype=np.float64)
    n = np.broadcast_to(np.asarray(noise, dtype=np.float64), signal.shape)
    if not np.isfinite(snr_db):
        raise ValueError(f"snr_db must be finite, got {snr_db}")
    p_signal, p_noise = _power(signal, "x"), _power(n, "noise")
    gain = np.sqrt(p_signal / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (signal + gain * n).astype(np.float32)


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Measured SNR of ``noisy`` against ``clean`` (same shape): ``10 * log10(P_clean / P_(noisy - clean))``."""
    c = np.asarray(clean, dtype=np.float64)
    d = np.asarray(noisy, dtype=np.float64)
    if c.shape != d.shape:
        raise ValueError(f"clean {c.shape} and noisy {d.shape} must have the same shape")
    return float(10.0 * np.log10(_power(c, "clean") / _power(d - c, "noisy - clean")))


def agreement(reference: Sequence[Hashable | Sequence[Hashable]], other: Sequence, k: int | None = None) -> float:
    """Share of files on which two runs give the same answer.

    Args:
        reference: one answer per file from the reference run (e.g. the clean files' top genres).
        other: the answers of the other run, for the same files in the same order.
        k: ``None`` to compare the answers as they are; an int when every answer is a ranking (best
            first, e.g. tags or genres by score) and two answers agree when their first ``k`` entries
            are the same set (order inside the top ``k`` does not matter).

    Returns:
        float in ``[0, 1]``.

    Raises:
        ValueError: no files, different lengths, or ``k < 1``.

    >>> agreement(["Rock", "Jazz"], ["Rock", "Pop"])
    0.5
    >>> agreement([["rock", "pop", "indie", "80s"]], [["indie", "rock", "pop", "jazz"]], k=3)
    1.0
    """
    if len(reference) != len(other):
        raise ValueError(f"got {len(reference)} reference answers and {len(other)} others; need one each per file")
    if not len(reference):
        raise ValueError("agreement needs at least one file")
    if k is None:
        same = [a == b for a, b in zip(reference, other)]
    else:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        same = [set(list(a)[:k]) == set(list(b)[:k]) for a, b in zip(reference, other)]
    return float(np.mean(same))


def encode_mp3(waveform: np.ndarray, sample_rate_hz: int, bitrate_bps: int = 32_000) -> bytes:
    """Encode float audio as a constant-bitrate MP3 (LAME through PyAV); the bytes of an ``.mp3`` file.

    Args:
        waveform: float ``(samples,)`` mono or ``(channels, samples)`` with 1 or 2 channels, in ``[-1, 1]``.
        sample_rate_hz: one of the MPEG rates (8000 … 48000 Hz); resample first otherwise.
        bitrate_bps: e.g. 32_000 for 32 kbit/s.

    Raises:
        ValueError: unsupported rate, channel count or bitrate.
    """
    import av

    planar = np.atleast_2d(np.asarray(waveform, dtype=np.float32))
    if planar.ndim != 2 or planar.shape[0] not in (1, 2) or planar.shape[1] == 0:
        raise ValueError(f"waveform must be (samples,) or (1 or 2, samples), got {np.shape(waveform)}")
    codec = av.codec.Codec("libmp3lame", "w")
    if sample_rate_hz not in codec.audio_rates:
        raise ValueError(f"MP3 cannot store {sample_rate_hz} Hz; resample to one of {sorted(codec.audio_rates)}")
    if not 8_000 <= bitrate_bps <= 320_000:
        raise ValueError(f"bitrate_bps must be in [8000, 320000], got {bitrate_bps}")
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=sample_rate_hz)
        stream.layout = layout
        stream.bit_rate = bitrate_bps
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar), format="fltp", layout=layout)
        frame.sample_rate = sample_rate_hz
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def _check_length(n_samples: int) -> None:
    if int(n_samples) != n_samples or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples}")


def _unit_power(noise: np.ndarray) -> np.ndarray:
    return (noise / np.sqrt(np.mean(noise**2))).astype(np.float32)


def _power(v: np.ndarray, name: str) -> float:
    if v.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    power = float(np.mean(v**2))
    if power == 0.0:
        raise ValueError(f"{name} is silent (zero power): an SNR against it is undefined")
    return power
