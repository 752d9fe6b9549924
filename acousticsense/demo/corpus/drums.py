"""Drum voices: one sample per voice and clip (an 808-style synthesis), re-triggered by the arrangement
with per-hit velocity.
"""

from __future__ import annotations

import numpy as np

from acousticsense.demo.corpus.dsp import Ctx, biquad


def _metal_noise(n: int, c: Ctx, scale: float) -> np.ndarray:
    """Six detuned square waves, the TR-808 cymbal source."""
    t = np.arange(n) / c.sr
    freqs = np.array([205.3, 304.4, 369.6, 522.7, 540.0, 800.0]) * scale
    return sum(np.sign(np.sin(2 * np.pi * fr * t + c.rng.random() * 6.3)) for fr in freqs) / 6.0


def drum_sample(voice: str, c: Ctx) -> np.ndarray:
    sr, rng = c.sr, c.rng

    def seconds(s: float) -> np.ndarray:
        return np.arange(int(s * sr)) / sr

    if voice == "kick":
        t = seconds(0.45)
        f = rng.uniform(45, 60) + rng.uniform(100, 160) * np.exp(-t / 0.04)
        body = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / rng.uniform(0.12, 0.3))
        click = np.where(t < 0.003, rng.standard_normal(t.size), 0.0) * 0.3
        return body + click
    if voice == "snare":
        t = seconds(0.3)
        tone = 0.5 * np.sin(2 * np.pi * rng.uniform(170, 240) * t) * np.exp(-t / 0.04)
        rattle = biquad(rng.standard_normal(t.size), "high", 1500.0, 0.7, sr)
        return tone + rattle * np.exp(-t / rng.uniform(0.08, 0.15))
    if voice == "clap":
        t = seconds(0.3)
        env = np.exp(-t / 0.08) + sum(np.where(t >= d, np.exp(-(t - d) / 0.005), 0.0) for d in (0, 0.01, 0.02))
        return biquad(rng.standard_normal(t.size), "band", 1200.0, 1.0, sr) * env * 2.0
    if voice == "rim":
        t = seconds(0.08)
        tone = np.sin(2 * np.pi * 1700 * t) + 0.6 * np.sin(2 * np.pi * 520 * t)
        return tone * np.exp(-t / 0.012) / 1.6
    if voice in ("hat", "ohat", "ride", "crash"):
        length, tau, cut = {
            "hat": (0.12, rng.uniform(0.02, 0.04), 7000.0),
            "ohat": (0.5, 0.2, 7000.0),
            "ride": (1.2, 0.5, 5000.0),
            "crash": (2.0, 0.8, 3000.0),
        }[voice]
        t = seconds(length)
        src = 0.5 * _metal_noise(t.size, c, rng.uniform(0.9, 1.2)) + 0.5 * rng.standard_normal(t.size)
        x = biquad(biquad(src, "high", cut * c.bright, 0.7, sr), "high", cut * c.bright, 0.7, sr)
        if voice == "ride":
            x += 0.3 * np.sin(2 * np.pi * rng.uniform(3000, 4500) * t)  # the bell ping
        return x * np.exp(-t / tau) / (np.max(np.abs(x)) + 1e-9)
    if voice in ("shaker", "tamb", "brush"):
        length, centre, q, attack, tau = {
            "shaker": (0.12, 6000.0, 1.0, 0.008, 0.04),
            "tamb": (0.25, 6000.0, 1.0, 0.003, 0.1),
            "brush": (0.35, 3000.0, 0.7, 0.02, 0.12),
        }[voice]
        t = seconds(length)
        x = biquad(rng.standard_normal(t.size), "band", centre, q, sr)
        if voice == "tamb":
            x += 0.5 * biquad(_metal_noise(t.size, c, 3.0), "high", 6000.0, 0.7, sr)
        return x * np.minimum(t / attack, 1.0) * np.exp(-t / tau) * 2.0
    if voice in ("conga_hi", "conga_lo"):
        t = seconds(0.4)
        f0 = rng.uniform(330, 380) if voice == "conga_hi" else rng.uniform(200, 240)
        f = f0 * (1.0 + 0.15 * np.exp(-t / 0.02))
        body = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / (0.18 if voice == "conga_hi" else 0.25))
        slap = biquad(np.where(t < 0.005, rng.standard_normal(t.size), 0.0), "band", 2000.0, 1.0, sr)
        return body + 2.0 * slap
    if voice == "tabla_hi":
        t = seconds(0.8)
        f0 = rng.uniform(400, 550)
        x = sum(
            w * np.sin(2 * np.pi * k * f0 * t) * np.exp(-t / tau)
            for k, w, tau in ((1, 1.0, 0.5), (2, 0.5, 0.3), (3, 0.35, 0.2), (4, 0.2, 0.15))
            if k * f0 < 0.45 * sr
        )
        strike = biquad(np.where(t < 0.004, rng.standard_normal(t.size), 0.0), "high", 2000.0, 0.7, sr)
        return x / 1.5 + strike
    if voice == "tabla_lo":
        t = seconds(0.7)
        f = rng.uniform(90, 120) * (1.0 + 0.3 * (1.0 - np.exp(-t / 0.15)))  # the baya's rising "ge"
        return np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.35)
    if voice == "clave":
        t = seconds(0.1)
        return np.sin(2 * np.pi * rng.uniform(2200, 2600) * t) * np.exp(-t / 0.03)
    if voice == "cowbell":
        t = seconds(0.35)
        x = np.sign(np.sin(2 * np.pi * 560 * t)) + np.sign(np.sin(2 * np.pi * 845 * t))
        x = biquad(x, "band", 800.0, 2.0, sr)
        return x * (0.6 * np.exp(-t / 0.02) + 0.4 * np.exp(-t / 0.12)) / (np.max(np.abs(x)) + 1e-9)
    raise ValueError(f"unknown drum voice {voice!r}")  # a recipe typo, not a user error
