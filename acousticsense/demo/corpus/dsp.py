"""Signal helpers the instruments, drums and mixer share: the per-clip context, filters, envelopes,
oscillators, a plucked string, and the mix effects (echo, reverb, vinyl, sidechain ducking).

Filters are RBJ biquads run through ``scipy.signal.lfilter``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal


@dataclass
class Ctx:
    """Per-clip rendering context shared by the instruments."""

    sr: int
    rng: np.random.Generator
    a4_hz: float
    detune_cents: float
    bright: float
    drawbars: np.ndarray
    speech_midi: float


def biquad(x: np.ndarray, kind: str, f0: float, q: float, sr: int) -> np.ndarray:
    """RBJ-cookbook biquad; coefficients by hand because scipy's designers cost ~100 us a call."""
    f0 = min(max(f0, 10.0), 0.45 * sr)
    w0 = 2.0 * math.pi * f0 / sr
    cw, alpha = math.cos(w0), math.sin(w0) / (2.0 * q)
    if kind == "low":
        b = [(1 - cw) / 2, 1 - cw, (1 - cw) / 2]
    elif kind == "high":
        b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
    else:  # band-pass, 0 dB peak
        b = [alpha, 0.0, -alpha]
    return signal.lfilter(b, [1 + alpha, -2 * cw, 1 - alpha], x)


def adsr(gate: int, sr: int, attack: float, decay: float, sustain: float, release: float) -> np.ndarray:
    """Envelope of ``gate`` samples plus an exponential release of ``release`` seconds."""
    rel = int(release * sr)
    t = np.arange(gate + rel) / sr
    env = np.minimum(t / max(attack, 1e-4), 1.0)
    env *= sustain + (1.0 - sustain) * np.exp(-np.maximum(t - attack, 0.0) / decay)
    if rel:
        env[gate:] *= np.exp(-5.0 * np.arange(rel) / rel)
    return env


def cycles(
    f: float,
    n: int,
    c: Ctx,
    vib_hz: float = 0.0,
    vib_semi: float = 0.0,
    glide_semi: float = 0.0,
    glide_s: float = 0.05,
) -> np.ndarray:
    """Oscillator phase in cycles (not radians), with optional delayed vibrato and an onset glide."""
    t = np.arange(n) / c.sr
    start = c.rng.random()
    if vib_semi == 0.0 and glide_semi == 0.0:
        return start + f * t
    semis = glide_semi * np.exp(-t / glide_s)
    if vib_semi:
        semis += vib_semi * np.sin(2 * np.pi * vib_hz * t) * np.minimum(t / 0.25, 1.0)
    return start + np.cumsum(f * np.exp2(semis / 12.0)) / c.sr


def saw(ph: np.ndarray) -> np.ndarray:
    return 2.0 * (ph % 1.0) - 1.0


def sine(ph: np.ndarray) -> np.ndarray:
    return np.sin(2 * np.pi * ph)


def supersaw(f: float, n: int, c: Ctx, voices: int, vib_semi: float = 0.0) -> np.ndarray:
    out = np.zeros(n)
    for k in np.linspace(-1.0, 1.0, voices):
        fk = f * 2 ** (k * c.detune_cents / 1200)
        out += saw(cycles(fk, n, c, vib_hz=5.5, vib_semi=vib_semi))
    return out / math.sqrt(voices)


def karplus(f: float, n: int, c: Ctx, decay_s: float, bright: float) -> np.ndarray:
    """Karplus-Strong plucked string, computed one period at a time (each period only reads the last)."""
    period = max(2, int(round(c.sr / f - 0.5)))  # the two-tap average adds half a sample of delay
    burst = c.rng.uniform(-1.0, 1.0, period)
    bright = min(max(bright, 0.0), 1.0)
    burst = bright * burst + (1 - bright) * np.convolve(burst, np.ones(4) / 4, mode="same")
    burst -= burst.mean()
    c_loss = 0.5 * 10 ** (-3.0 * period / (decay_s * c.sr))  # -60 dB after decay_s
    blocks = n // period + 2
    y = np.zeros(1 + period * blocks)
    y[1 : 1 + period] = burst
    for k in range(1, blocks):
        s = 1 + k * period
        y[s : s + period] = c_loss * (y[s - period : s] + y[s - period - 1 : s - 1])
    out = y[1 : 1 + n]
    return out / (np.max(np.abs(out)) + 1e-9)


def release_fade(x: np.ndarray, gate: int, sr: int, release: float) -> np.ndarray:
    """Trim a free-ringing note to its gate plus a short fade (a damped string)."""
    rel = int(release * sr)
    x = x[: gate + rel].copy()
    if rel and x.size > gate:
        x[gate:] *= np.exp(-5.0 * np.arange(x.size - gate) / rel)
    return x


def mix_in(buf: np.ndarray, x: np.ndarray, start: int) -> None:
    if start >= buf.size or start + x.size <= 0:
        return
    lo = max(start, 0)
    hi = min(start + x.size, buf.size)
    buf[lo:hi] += x[lo - start : hi - start]


def echo(x: np.ndarray, delay: int, feedback: float) -> np.ndarray:
    out = x.copy()
    for k in range(1, 5):
        if k * delay >= x.size:
            break
        out[k * delay :] += feedback**k * x[: x.size - k * delay]
    return out


def reverb_ir(rt60: float, c: Ctx) -> np.ndarray:
    n = int(min(rt60, 3.0) * c.sr)
    t = np.arange(n) / c.sr
    ir = c.rng.standard_normal(n) * np.exp(-6.91 * t / rt60)
    ir = biquad(ir, "low", 4000.0 * c.bright, 0.7, c.sr)
    ir[: int(0.012 * c.sr)] = 0.0  # pre-delay
    return ir / math.sqrt(float(np.sum(ir**2)) + 1e-12)


def vinyl(n: int, c: Ctx) -> np.ndarray:
    hiss = 0.01 * biquad(c.rng.standard_normal(n), "band", 3000.0, 0.5, c.sr)
    clicks = np.zeros(n)
    where = c.rng.random(n) < 15.0 / c.sr
    clicks[where] = c.rng.uniform(-0.3, 0.3, int(where.sum()))
    return hiss + biquad(clicks, "high", 1000.0, 0.7, c.sr)


def ducking(kick_times: np.ndarray, depth: float, n: int, sr: int) -> np.ndarray:
    """Sidechain gain: a dip of ``depth`` after every kick, recovering over ~0.2 s (the EDM "pump")."""
    duck = np.ones(n)
    curve = 1.0 - depth * np.exp(-np.arange(int(0.25 * sr)) / (0.08 * sr))
    for t0 in kick_times:
        s0 = int(t0 * sr)
        if 0 <= s0 < n:
            seg = duck[s0 : s0 + curve.size]
            np.minimum(seg, curve[: seg.size], out=seg)
    return duck
