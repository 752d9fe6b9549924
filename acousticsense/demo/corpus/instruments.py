"""Pitched instruments: ``(frequency Hz, gate samples, context) -> note waveform`` (gate plus release
samples, peak about 1), and the table ``INSTRUMENTS`` the recipes name them by.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from acousticsense.demo.corpus.dsp import Ctx, adsr, biquad, cycles, karplus, release_fade, saw, sine, supersaw

# Vowel formants (Hz) and their relative gains, for the sung and rapped "voices".
_VOWELS = np.array(
    [
        (730.0, 1090.0, 2440.0),  # a
        (530.0, 1840.0, 2480.0),  # e
        (270.0, 2290.0, 3010.0),  # i
        (570.0, 840.0, 2410.0),  # o
        (300.0, 870.0, 2240.0),  # u
    ]
)
_FORMANT_GAINS = (1.0, 0.5, 0.25)


def _formants(src: np.ndarray, vowel: np.ndarray, sr: int, q: float) -> np.ndarray:
    out = np.zeros_like(src)
    for freq, gain in zip(vowel, _FORMANT_GAINS, strict=True):
        out += gain * biquad(src, "band", float(freq), q, sr)
    return out


def _i_sine_bass(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.005, 0.4, 0.6, 0.05)
    ph = cycles(f, env.size, c)
    return env * (sine(ph) + 0.2 * sine(2 * ph)) / 1.1


def _i_sub808(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.002, 0.9, 0.0, 0.06)
    ph = cycles(f, env.size, c, glide_semi=12.0, glide_s=0.025)  # the octave drop is the 808 "thump"
    return np.tanh(1.8 * env * sine(ph)) / math.tanh(1.8)


def _i_upright(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.004, 0.35, 0.25, 0.08)
    ph = cycles(f, env.size, c)
    return env * (sine(ph) + 0.45 * sine(2 * ph) + 0.2 * sine(3 * ph)) / 1.4


def _i_saw_bass(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.004, 0.25, 0.7, 0.04)
    ph = cycles(f, env.size, c)
    return env * (saw(ph) + 0.6 * sine(ph)) / 1.4


def _i_pluck_bass(f: float, gate: int, c: Ctx) -> np.ndarray:
    return release_fade(karplus(f, gate + int(0.05 * c.sr), c, 1.2, 0.5), gate, c.sr, 0.05)


def _i_acid(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.002, 0.15, 0.5, 0.03)
    x = saw(cycles(f, env.size, c))
    cutoff = c.rng.uniform(300.0, 2200.0) * c.bright
    return env * biquad(x, "low", cutoff, 5.0, c.sr) / 2.0


def _i_pluck(f: float, gate: int, c: Ctx) -> np.ndarray:
    return release_fade(karplus(f, gate + int(0.1 * c.sr), c, 2.5, 0.6 * c.bright), gate, c.sr, 0.1)


def _i_skank(f: float, gate: int, c: Ctx) -> np.ndarray:
    return release_fade(karplus(f, gate + int(0.02 * c.sr), c, 0.3, 1.0), gate, c.sr, 0.02)


def _i_scratch(f: float, gate: int, c: Ctx) -> np.ndarray:
    n = gate + int(0.03 * c.sr)
    x = karplus(f, n, c, 0.08, 1.0) + 0.4 * c.rng.standard_normal(n) * np.exp(-np.arange(n) / (0.01 * c.sr))
    return biquad(x, "high", 900.0, 0.7, c.sr)


def _i_sitar(f: float, gate: int, c: Ctx) -> np.ndarray:
    x = karplus(f, gate + int(0.3 * c.sr), c, 2.5, 1.0)
    # An asymmetric clip stands in for the jawari bridge buzz.
    return release_fade(np.tanh(2.5 * (x + 0.3 * x * x)), gate, c.sr, 0.3)


def _i_piano(f: float, gate: int, c: Ctx) -> np.ndarray:
    n = gate + int(0.2 * c.sr)
    t = np.arange(n) / c.sr
    tau0 = 1.2 * (261.6 / f) ** 0.3
    out = np.zeros(n)
    for k in range(1, 7):
        fk = k * f * math.sqrt(1.0 + 0.0004 * k * k)  # stiff-string inharmonicity
        if fk >= 0.45 * c.sr:
            break
        out += (c.bright ** (k - 1) / k**1.3) * np.exp(-t * (1 + 0.6 * (k - 1)) / tau0) * sine(fk * t + k * 0.3)
    return out * adsr(gate, c.sr, 0.002, 10.0, 1.0, 0.2)[:n] / 1.5


def _i_epiano(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.003, 1.5, 0.0, 0.2)
    t = np.arange(env.size) / c.sr
    index = 1.8 * c.bright * np.exp(-t / 0.25) + 0.2
    return env * np.sin(2 * np.pi * f * t + index * np.sin(2 * np.pi * f * t))


def _i_bell(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.002, 0.9, 0.0, 0.3)
    t = np.arange(env.size) / c.sr
    index = 2.5 * np.exp(-t / 0.6)
    return env * np.sin(2 * np.pi * f * t + index * np.sin(2 * np.pi * 3.5 * f * t))


def _i_organ(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.008, 0.1, 0.95, 0.06)
    ph = cycles(f, env.size, c)
    out = np.zeros(env.size)
    for ratio, weight in zip((0.5, 1, 2, 3, 4, 6, 8), c.drawbars, strict=True):
        if ratio * f < 0.45 * c.sr and weight > 0:
            out += weight * sine(ratio * ph)
    tremolo = 1.0 + 0.1 * np.sin(2 * np.pi * 6.0 * np.arange(env.size) / c.sr)
    return env * tremolo * out / (c.drawbars.sum() + 1e-9)


def _i_strings(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.25, 0.5, 0.85, 0.4)
    return env * supersaw(f, env.size, c, 3, vib_semi=0.12)


def _i_violin(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.08, 0.3, 0.8, 0.2)
    return env * saw(cycles(f, env.size, c, vib_hz=6.0, vib_semi=0.2))


def _i_pad(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.08, 0.6, 0.8, 0.3)
    return env * supersaw(f, env.size, c, 5)


def _i_pluck_synth(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.002, 0.18, 0.0, 0.05)
    return env * supersaw(f, env.size, c, 3)


def _i_brass(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.03, 0.2, 0.75, 0.1)
    ph = cycles(f, env.size, c, glide_semi=-0.4, glide_s=0.04)
    return env * (saw(ph) + 0.4 * np.sign(np.sin(2 * np.pi * ph))) / 1.3


def _i_sax(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.04, 0.2, 0.8, 0.08)
    ph = cycles(f, env.size, c, vib_hz=5.0, vib_semi=0.15)
    pulse = np.where(ph % 1.0 < 0.35, 1.0, -1.0)
    return env * (0.7 * pulse + 0.3 * saw(ph))


def _i_flute(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.06, 0.2, 0.85, 0.1)
    ph = cycles(f, env.size, c, vib_hz=5.0, vib_semi=0.1)
    tone = sine(ph) + 0.12 * sine(2 * ph) + 0.05 * sine(3 * ph)
    return env * (tone + 0.06 * c.rng.standard_normal(env.size)) / 1.2


def _i_crunch_guitar(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.003, 0.4, 0.6, 0.05)
    return env * np.tanh(4.0 * supersaw(f, env.size, c, 2))


def _i_metal_guitar(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.002, 0.12, 0.35, 0.03)  # palm-muted chug
    x = supersaw(f, env.size, c, 2) + 0.5 * saw(cycles(f / 2, env.size, c))
    return env * np.tanh(12.0 * x)


def _i_blues_guitar(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.005, 0.5, 0.5, 0.1)
    ph = cycles(f, env.size, c, vib_hz=5.5, vib_semi=0.25, glide_semi=-1.0, glide_s=0.08)  # bend up
    return env * np.tanh(3.0 * (0.6 * saw(ph) + 0.4 * np.sign(np.sin(2 * np.pi * ph))))


def _i_steel(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.04, 0.8, 0.6, 0.3)
    ph = cycles(f, env.size, c, vib_hz=4.5, vib_semi=0.12, glide_semi=-2.0, glide_s=0.15)  # the slide
    return env * (2.0 * np.abs(saw(ph)) - 1.0 + 0.5 * sine(ph)) / 1.5


def _i_vox(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.05, 0.3, 0.8, 0.12)
    ph = cycles(f, env.size, c, vib_hz=5.5, vib_semi=0.3, glide_semi=-0.5, glide_s=0.06)
    vowel = _VOWELS[c.rng.integers(len(_VOWELS))]
    return env * _formants(saw(ph), vowel, c.sr, 6.0) * 1.5


def _i_speech(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.008, 0.08, 0.6, 0.04)
    n = env.size
    fall = np.linspace(0.0, -2.0, n)  # syllables fall in pitch
    ph = c.rng.random() + np.cumsum(f * np.exp2(fall / 12.0)) / c.sr
    src = 0.8 * saw(ph) + 0.1 * c.rng.standard_normal(n)
    vowel = _VOWELS[c.rng.integers(len(_VOWELS))] * c.rng.uniform(0.9, 1.15)
    out = env * _formants(src, vowel, c.sr, 4.0) * 2.0
    if c.rng.random() < 0.7:  # a consonant
        k = min(n, int(c.rng.uniform(0.008, 0.025) * c.sr))
        out[:k] += 0.5 * biquad(c.rng.standard_normal(k), "high", 3000.0, 0.7, c.sr)
    return out


def _i_drone(f: float, gate: int, c: Ctx) -> np.ndarray:
    env = adsr(gate, c.sr, 0.4, 1.0, 0.9, 0.6)
    swell = 1.0 + 0.15 * np.sin(2 * np.pi * 0.7 * np.arange(env.size) / c.sr + c.rng.random() * 6.3)
    return env * swell * supersaw(f, env.size, c, 3)


Instrument = Callable[[float, int, Ctx], np.ndarray]

# name -> (renderer, cacheable: the same pitch and gate may reuse one rendering within a clip)
INSTRUMENTS: dict[str, tuple[Instrument, bool]] = {
    "sine_bass": (_i_sine_bass, True),
    "sub808": (_i_sub808, True),
    "upright": (_i_upright, True),
    "saw_bass": (_i_saw_bass, True),
    "pluck_bass": (_i_pluck_bass, True),
    "acid": (_i_acid, False),
    "pluck": (_i_pluck, True),
    "skank": (_i_skank, True),
    "scratch": (_i_scratch, True),
    "sitar": (_i_sitar, True),
    "piano": (_i_piano, True),
    "epiano": (_i_epiano, True),
    "bell": (_i_bell, True),
    "organ": (_i_organ, True),
    "strings": (_i_strings, True),
    "violin": (_i_violin, False),
    "pad": (_i_pad, True),
    "pluck_synth": (_i_pluck_synth, True),
    "brass": (_i_brass, True),
    "sax": (_i_sax, False),
    "flute": (_i_flute, False),
    "crunch_guitar": (_i_crunch_guitar, True),
    "metal_guitar": (_i_metal_guitar, True),
    "blues_guitar": (_i_blues_guitar, False),
    "steel": (_i_steel, False),
    "vox": (_i_vox, False),
    "speech": (_i_speech, False),
    "drone": (_i_drone, True),
}
STRUMMED = frozenset({"pluck", "skank", "scratch"})
