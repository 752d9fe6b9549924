"""A synthetic, labelled music corpus: one procedural "recipe" per genre of ``GENRES``.

Real genre data sets cannot ship with the project, so the demo trains and evaluates on music rendered
here. Each genre is a recipe -- tempo range, a drum pattern on a 12- or 16-step grid, a bass line
behaviour, chord and lead instruments with their registers, swing, rubato and reverb -- and every clip
draws its own key, tempo (with +-6 % jitter), scale, chord progression, pattern variations, detune,
brightness, mix levels and loudness, so the classes are distinct but overlap a little.

Everything is NumPy (plus ``scipy.signal`` filters): a 10 s clip at 22,050 Hz renders in a few tens of
milliseconds on one core.

Command line::

    python -m acousticsense.demo.corpus --output data/synth --per-class 50 --seed 0 --formats wav,flac
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from acousticsense.config import GENRES
from acousticsense.errors import ConfigError

__all__ = ["AUDIO_FORMATS", "add_noise", "genre_slug", "main", "synthesize_clip", "write_corpus"]

# Extension -> (libsndfile major format, subtype); wav and flac hold 16-bit PCM.
AUDIO_FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
# MPEG audio only defines these rates; libsndfile fails late (or oddly) on any other.
_MP3_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})
# libsndfile can crash encoding a long Vorbis/MPEG buffer in one call, so every file is written in blocks.
_WRITE_BLOCK_FRAMES = 16384
_MIN_SAMPLE_RATE_HZ = 8000
_TEMPO_JITTER = 0.06

# ----------------------------------------------------------------------------------------------------
# Music theory
# ----------------------------------------------------------------------------------------------------

_SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "aeolian": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "phrygian_dominant": (0, 1, 4, 5, 7, 8, 10),
    "major_pent": (0, 2, 4, 7, 9),
    "minor_pent": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}

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

# ----------------------------------------------------------------------------------------------------
# Recipes
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hit:
    """One drum voice: per-step onset probabilities over a bar ('0'-'9' tenths, 'x' certain)."""

    voice: str
    pattern: str
    gain_db: float = 0.0
    variation: float = 0.1  # per bar, chance that each step is re-drawn from its probability
    presence: float = 1.0  # chance that the voice plays at all in a clip
    rolls: float = 0.0  # chance that a hit becomes a 2- or 3-stroke roll (trap hats)


@dataclass(frozen=True)
class _Part:
    """One pitched part: rhythm as in :class:`_Hit`, plus how notes are chosen and rendered."""

    instrument: str
    pattern: str
    notes: str  # note policy, see _NotePicker
    register: tuple[int, int]  # MIDI range
    length: float = 1.0  # gate in grid steps; 0 holds each note until the next onset
    gain_db: float = 0.0
    variation: float = 0.1
    presence: float = 1.0
    lock: str | None = None  # copy the onsets of this drum voice (bass following the kick)
    lowpass_hz: float | None = None
    send: float = 0.2  # reverb send
    echo: float = 0.0  # feedback of a dotted-eighth echo
    sidechain: float = 0.0  # depth of the gain dip after each kick


@dataclass(frozen=True)
class _Recipe:
    """Everything that makes a genre; per-clip randomness is drawn around these values."""

    bpm: tuple[float, float]
    scales: tuple[str, ...]
    progressions: tuple[tuple[int, ...], ...]  # scale degrees, one chord per bar
    drums: tuple[_Hit, ...] = ()
    parts: tuple[_Part, ...] = ()
    steps_per_bar: int = 16  # 16 = straight sixteenths, 12 = triplet eighths (shuffle, 12/8)
    chord_size: int = 3
    lead_scale: str | None = None  # melody scale when it differs from the harmony's
    swing: float = 0.0  # delay of the off sixteenths, in steps
    rubato: float = 0.0  # relative depth of slow tempo fluctuation
    humanize_ms: float = 4.0
    reverb_s: float = 1.0  # RT60
    drum_send: float = 0.1
    lofi_hz: float | None = None  # low-pass on the whole mix (sampled, dusty records)
    vinyl: bool = False
    master_drive: float = 0.0

    def __post_init__(self) -> None:
        for item in (*self.drums, *self.parts):
            if len(item.pattern) != self.steps_per_bar:
                raise ValueError(f"pattern {item.pattern!r} does not have {self.steps_per_bar} steps")


_FOUR = "x000x000x000x000"
_BACKBEAT = "0000x0000000x000"
_EIGHTHS = "x0x0x0x0x0x0x0x0"
_OFFBEATS = "00x000x000x000x0"
_BAR = "x000000000000000"
_HALF_BARS = "x0000000x0000000"

_RECIPES: dict[str, _Recipe] = {
    "Blues": _Recipe(
        bpm=(68, 100),
        steps_per_bar=12,
        scales=("mixolydian",),
        lead_scale="blues",
        progressions=((0, 0, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4), (0, 3, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4)),
        chord_size=4,
        humanize_ms=8,
        reverb_s=0.9,
        drums=(
            _Hit("kick", "x00000x00200", -3),
            _Hit("snare", "000x00000x00", -5),
            _Hit("hat", "x07x07x07x07", -12),
        ),
        parts=(
            _Part("upright", "x07x07x07x07", "boogie", (36, 48), length=2.0, gain_db=-2, send=0.05),
            _Part("organ", "000x00000x00", "chord", (55, 67), length=2.5, gain_db=-7, presence=0.7),
            _Part("blues_guitar", "704604705604", "melody", (60, 79), length=0, gain_db=-3, lowpass_hz=3000),
        ),
    ),
    "Classical": _Recipe(
        bpm=(60, 100),
        scales=("major", "harmonic_minor"),
        progressions=((0, 3, 4, 0), (0, 5, 3, 4), (0, 1, 4, 0)),
        rubato=0.07,
        humanize_ms=12,
        reverb_s=2.2,
        parts=(
            _Part("strings", _HALF_BARS, "root", (36, 48), length=8, gain_db=-6, lowpass_hz=1500, send=0.4),
            _Part("strings", _BAR, "chord", (55, 67), length=16, gain_db=-10, lowpass_hz=2500, send=0.5),
            _Part("piano", _EIGHTHS, "arp", (60, 76), length=3, gain_db=-8, presence=0.6, send=0.4),
            _Part(
                "violin",
                "9020602090206020",
                "melody",
                (67, 88),
                length=0,
                gain_db=-6,
                lowpass_hz=4000,
                presence=0.85,
                send=0.5,
            ),
        ),
    ),
    "Jazz": _Recipe(
        bpm=(120, 190),
        steps_per_bar=12,
        scales=("major",),
        progressions=((1, 4, 0, 0), (1, 4, 0, 5), (0, 5, 1, 4)),
        chord_size=4,
        humanize_ms=10,
        reverb_s=1.1,
        drums=(
            _Hit("ride", "x00x0xx00x0x", -9),
            _Hit("hat", "000x00000x00", -16),
            _Hit("kick", "300000000200", -12, variation=0.3),
            _Hit("brush", "002000300020", -14, variation=0.4),
        ),
        parts=(
            _Part("upright", "x00x00x00x00", "walk", (33, 50), length=2.5, gain_db=-1, send=0.05),
            _Part("epiano", "400030040003", "chord", (52, 67), length=2, gain_db=-10, variation=0.4),
            _Part("sax", "704606704606", "melody", (58, 79), length=0, gain_db=-7, lowpass_hz=3500, presence=0.8),
        ),
    ),
    "Folk": _Recipe(
        bpm=(84, 124),
        scales=("major", "mixolydian"),
        lead_scale="major_pent",
        progressions=((0, 3, 0, 4), (0, 4, 5, 3), (0, 0, 3, 4)),
        rubato=0.02,
        humanize_ms=10,
        reverb_s=1.2,
        drums=(_Hit("tamb", _BACKBEAT, -16, presence=0.5),),
        parts=(
            _Part("pluck", _HALF_BARS, "root_fifth", (40, 52), length=6, gain_db=-4),
            _Part("pluck", _EIGHTHS, "arp", (52, 71), length=5, gain_db=-8),
            _Part("flute", "8000400060004000", "melody", (72, 88), length=0, gain_db=-16, presence=0.7),
        ),
    ),
    "Pop": _Recipe(
        bpm=(96, 128),
        scales=("major",),
        lead_scale="major_pent",
        progressions=((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4)),
        reverb_s=1.0,
        drums=(
            _Hit("kick", "x0000020x0000000", -3),
            _Hit("snare", _BACKBEAT, -4),
            _Hit("clap", _BACKBEAT, -9),
            _Hit("hat", _EIGHTHS, -13),
            _Hit("crash", "3000000000000000", -15, variation=1.0),
        ),
        parts=(
            _Part("saw_bass", _EIGHTHS, "root", (36, 48), length=1.6, gain_db=-4, lowpass_hz=900, send=0.0),
            _Part("pad", _HALF_BARS, "chord", (60, 72), length=8, gain_db=-10, lowpass_hz=3000, send=0.3),
            _Part("piano", _OFFBEATS, "chord", (60, 72), length=1.5, gain_db=-12, presence=0.5),
            _Part("vox", "8040604080406040", "melody", (64, 79), length=0, gain_db=-3, send=0.3),
        ),
    ),
    "Electronic": _Recipe(
        bpm=(120, 134),
        scales=("aeolian", "dorian"),
        progressions=((0, 5, 2, 6), (0, 3, 5, 4), (0, 0, 5, 6)),
        humanize_ms=0.5,
        reverb_s=1.0,
        drum_send=0.05,
        drums=(
            _Hit("kick", _FOUR, -1, variation=0.0),
            _Hit("clap", _BACKBEAT, -9),
            _Hit("ohat", _OFFBEATS, -12),
            _Hit("hat", "3737373737373737", -16),
        ),
        parts=(
            _Part("acid", "9079079080790970", "acid", (36, 48), length=0.8, gain_db=-2, presence=0.6, send=0.05),
            _Part(
                "saw_bass",
                _OFFBEATS,
                "root",
                (36, 48),
                length=1.5,
                gain_db=-5,
                lowpass_hz=700,
                presence=0.6,
                send=0.0,
            ),
            _Part(
                "pad",
                _BAR,
                "chord",
                (57, 72),
                length=16,
                gain_db=-10,
                lowpass_hz=2500,
                sidechain=0.7,
                send=0.3,
            ),
            _Part(
                "pluck_synth",
                "x0xxx0xxx0xxx0xx",
                "arp",
                (69, 84),
                length=1.5,
                gain_db=-12,
                echo=0.35,
                presence=0.7,
                send=0.3,
            ),
        ),
    ),
    "Disco": _Recipe(
        bpm=(110, 126),
        scales=("dorian", "aeolian", "major"),
        progressions=((0, 3), (0, 3, 0, 4), (1, 4)),
        chord_size=4,
        reverb_s=0.8,
        drums=(
            _Hit("kick", _FOUR, -4, variation=0.0),
            _Hit("snare", _BACKBEAT, -7),
            _Hit("ohat", _OFFBEATS, -9),
            _Hit("hat", _EIGHTHS, -15),
        ),
        parts=(
            _Part(
                "pluck_bass",
                _EIGHTHS,
                "root_oct",
                (33, 45),
                length=1.5,
                gain_db=-3,
                lowpass_hz=1800,
                send=0.0,
            ),
            _Part("scratch", "5858585858585858", "chord", (60, 72), length=0.4, gain_db=-4),
            _Part("strings", _HALF_BARS, "chord", (67, 79), length=7, gain_db=-13, lowpass_hz=5000, send=0.35),
            _Part(
                "brass",
                "000000500000x000",
                "chord",
                (60, 74),
                length=1,
                gain_db=-2,
                lowpass_hz=3000,
                presence=0.5,
            ),
        ),
    ),
    "Rock": _Recipe(
        bpm=(100, 150),
        scales=("mixolydian", "aeolian", "major"),
        lead_scale="minor_pent",
        progressions=((0, 6, 3, 0), (0, 5, 6, 0), (0, 3, 4, 3)),
        reverb_s=0.7,
        drum_send=0.12,
        drums=(
            _Hit("kick", "x0000000x0x00000", -1),
            _Hit("snare", _BACKBEAT, -2),
            _Hit("hat", _EIGHTHS, -11),
            _Hit("crash", "4000000000000000", -11, variation=1.0),
        ),
        parts=(
            _Part("saw_bass", _EIGHTHS, "root", (36, 48), length=1.8, gain_db=-4, lowpass_hz=1000, send=0.0),
            _Part("crunch_guitar", _EIGHTHS, "power", (40, 52), length=2, gain_db=-7, lowpass_hz=3500),
            _Part(
                "blues_guitar",
                "3000200030002000",
                "melody",
                (64, 81),
                length=0,
                gain_db=0,
                lowpass_hz=3500,
                presence=0.5,
            ),
        ),
    ),
    "Hip-Hop": _Recipe(
        bpm=(80, 98),
        scales=("dorian", "aeolian"),
        progressions=((0, 0, 3, 3), (0, 5, 0, 5), (1, 0, 1, 0)),
        chord_size=4,
        swing=0.22,
        humanize_ms=8,
        reverb_s=0.7,
        lofi_hz=5000,
        vinyl=True,
        drums=(
            _Hit("kick", "x000000x0x000000", -1, variation=0.15),
            _Hit("snare", _BACKBEAT, -2),
            _Hit("hat", "x0x2x0x0x0x2x0x0", -12),
        ),
        parts=(
            _Part("sine_bass", _BAR, "root", (33, 45), length=0, gain_db=-3, lock="kick", send=0.0),
            _Part("epiano", _HALF_BARS, "chord", (55, 67), length=6, gain_db=-10, lowpass_hz=3000),
            _Part("speech", "7060706070607060", "speech", (0, 0), length=1.2, gain_db=0, send=0.1),
        ),
    ),
    "Rap": _Recipe(
        bpm=(130, 160),
        scales=("aeolian", "harmonic_minor", "phrygian"),
        progressions=((0, 0, 5, 5), (0, 5, 6, 4), (0, 1, 0, 1)),
        humanize_ms=1,
        reverb_s=0.6,
        drums=(
            _Hit("kick", "x000000000x00x00", -1, variation=0.25),
            _Hit("clap", "00000000x0000000", -3, variation=0.0),
            _Hit("hat", "xxxxxxxxxxxxxxxx", -13, rolls=0.15),
            _Hit("ohat", "0000000000000050", -15),
        ),
        parts=(
            _Part("sub808", _BAR, "root", (29, 41), length=0, gain_db=-1, lock="kick", send=0.0),
            _Part("bell", "x000300050003000", "melody", (72, 86), length=3, gain_db=-9, presence=0.7, send=0.3),
            _Part("speech", "9393939393939393", "speech", (0, 0), length=0.9, gain_db=1, send=0.1),
        ),
    ),
    "Metal": _Recipe(
        bpm=(150, 200),
        scales=("phrygian", "aeolian", "harmonic_minor"),
        progressions=((0, 1, 0, 6), (0, 0, 1, 0), (0, 5, 6, 0)),
        humanize_ms=2,
        reverb_s=0.4,
        drum_send=0.05,
        master_drive=1.5,
        drums=(
            _Hit("kick", "x9x9x9x9x9x9x9x9", -3),
            _Hit("snare", _BACKBEAT, -2),
            _Hit("hat", _EIGHTHS, -10),
            _Hit("crash", "6000000060000000", -12, variation=1.0),
        ),
        parts=(
            _Part(
                "metal_guitar",
                "x8x8x8x8x8x8x8x8",
                "power",
                (28, 40),
                length=0.8,
                gain_db=-3,
                lowpass_hz=4500,
                send=0.08,
            ),
            _Part("saw_bass", _EIGHTHS, "root", (28, 40), length=1.8, gain_db=-6, lowpass_hz=700, send=0.0),
        ),
    ),
    "R&B": _Recipe(
        bpm=(64, 92),
        scales=("major", "dorian"),
        progressions=((3, 2, 1, 4), (1, 4, 0, 0), (0, 5, 3, 4)),
        chord_size=5,
        swing=0.25,
        humanize_ms=8,
        reverb_s=1.4,
        drums=(
            _Hit("kick", "x000000x00x00000", -4),
            _Hit("rim", _BACKBEAT, -8),
            _Hit("clap", _BACKBEAT, -10),
            _Hit("hat", "x3x3x3x3x3x3x3x3", -16, rolls=0.05),
        ),
        parts=(
            _Part("sine_bass", _BAR, "root", (33, 45), length=0, gain_db=-3, lock="kick", send=0.0),
            _Part("epiano", _HALF_BARS, "chord", (52, 67), length=8, gain_db=-9),
            _Part("vox", "7040705070407050", "melody", (62, 79), length=0, gain_db=-5, send=0.35),
        ),
    ),
    "Reggae": _Recipe(
        bpm=(66, 88),
        scales=("major", "dorian"),
        progressions=((0, 3), (0, 4, 3, 4), (0, 5, 3, 4)),
        swing=0.12,
        humanize_ms=6,
        reverb_s=1.0,
        drums=(
            _Hit("kick", "00000000x0000000", -2, variation=0.05),
            _Hit("rim", "00000000x0000000", -6, variation=0.05),
            _Hit("hat", _EIGHTHS, -13),
        ),
        parts=(
            _Part(
                "sine_bass",
                "x0070060x0060600",
                "bassline",
                (33, 45),
                length=1.5,
                gain_db=-1,
                lowpass_hz=400,
                send=0.0,
            ),
            _Part("skank", _BACKBEAT, "chord", (60, 72), length=0.6, gain_db=3, echo=0.4, variation=0.0),
            _Part("organ", "0x000x000x000x00", "chord", (55, 67), length=0.5, gain_db=-9, presence=0.6),
        ),
    ),
    "World": _Recipe(
        bpm=(80, 120),
        steps_per_bar=12,
        scales=("phrygian_dominant", "harmonic_minor", "phrygian"),
        progressions=((0,), (0, 0, 6, 0), (0, 1, 0, 0)),
        humanize_ms=10,
        reverb_s=1.3,
        drums=(
            _Hit("tabla_lo", "x00030x00300", -4),
            _Hit("tabla_hi", "x07707x07707", -7, rolls=0.05),
        ),
        parts=(
            _Part(
                "drone",
                "x00000000000",
                "drone",
                (45, 57),
                length=12,
                gain_db=-10,
                variation=0.0,
                lowpass_hz=2000,
                send=0.3,
            ),
            _Part("sitar", "704050704060", "melody", (60, 79), length=2, gain_db=-5, send=0.3),
        ),
    ),
    "Latin": _Recipe(
        bpm=(90, 124),
        scales=("harmonic_minor", "dorian", "major"),
        progressions=((0, 3, 4, 0), (0, 4), (0, 3, 4, 4)),
        reverb_s=0.9,
        drums=(
            _Hit("clave", "x00x00x000x0x000", -8, variation=0.0),
            _Hit("conga_hi", "0000x0xx0000x0xx", -8),
            _Hit("conga_lo", _HALF_BARS, -9),
            _Hit("cowbell", _FOUR, -13, presence=0.6),
            _Hit("shaker", _EIGHTHS, -16),
            _Hit("kick", "x00000000000x000", -10, presence=0.5),
        ),
        parts=(
            _Part("upright", "000x00x00000x000", "root_fifth", (36, 48), length=0, gain_db=-2, send=0.05),
            _Part("piano", "x0xx0x0xx0x0x0xx", "arp", (60, 79), length=1.5, gain_db=-8),
            _Part(
                "brass",
                "0000000000x000x0",
                "chord",
                (60, 74),
                length=1,
                gain_db=0,
                lowpass_hz=3500,
                presence=0.6,
            ),
        ),
    ),
    "Country": _Recipe(
        bpm=(90, 130),
        scales=("major",),
        lead_scale="major_pent",
        progressions=((0, 3, 4, 0), (0, 0, 3, 4), (0, 4, 3, 0)),
        reverb_s=0.9,
        drums=(
            _Hit("kick", _HALF_BARS, -5),
            _Hit("snare", _BACKBEAT, -8),
            _Hit("shaker", "x6x6x6x6x6x6x6x6", -16),
        ),
        parts=(
            _Part("upright", _HALF_BARS, "root_fifth", (36, 48), length=3, gain_db=-2, send=0.05),
            _Part("pluck", "0030x0300030x030", "chord", (52, 67), length=3, gain_db=-2),
            _Part("steel", "6000300060003000", "melody", (64, 81), length=0, gain_db=-7, presence=0.8),
        ),
    ),
}


# ----------------------------------------------------------------------------------------------------
# DSP helpers
# ----------------------------------------------------------------------------------------------------


@dataclass
class _Ctx:
    """Per-clip rendering context shared by the instruments."""

    sr: int
    rng: np.random.Generator
    a4_hz: float
    detune_cents: float
    bright: float
    drawbars: np.ndarray
    speech_midi: float


def _biquad(x: np.ndarray, kind: str, f0: float, q: float, sr: int) -> np.ndarray:
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


def _adsr(gate: int, sr: int, attack: float, decay: float, sustain: float, release: float) -> np.ndarray:
    """Envelope of ``gate`` samples plus an exponential release of ``release`` seconds."""
    rel = int(release * sr)
    t = np.arange(gate + rel) / sr
    env = np.minimum(t / max(attack, 1e-4), 1.0)
    env *= sustain + (1.0 - sustain) * np.exp(-np.maximum(t - attack, 0.0) / decay)
    if rel:
        env[gate:] *= np.exp(-5.0 * np.arange(rel) / rel)
    return env


def _cycles(
    f: float,
    n: int,
    c: _Ctx,
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


def _saw(ph: np.ndarray) -> np.ndarray:
    return 2.0 * (ph % 1.0) - 1.0


def _sin(ph: np.ndarray) -> np.ndarray:
    return np.sin(2 * np.pi * ph)


def _supersaw(f: float, n: int, c: _Ctx, voices: int, vib_semi: float = 0.0) -> np.ndarray:
    out = np.zeros(n)
    for k in np.linspace(-1.0, 1.0, voices):
        fk = f * 2 ** (k * c.detune_cents / 1200)
        out += _saw(_cycles(fk, n, c, vib_hz=5.5, vib_semi=vib_semi))
    return out / math.sqrt(voices)


def _karplus(f: float, n: int, c: _Ctx, decay_s: float, bright: float) -> np.ndarray:
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


def _formants(src: np.ndarray, vowel: np.ndarray, sr: int, q: float) -> np.ndarray:
    out = np.zeros_like(src)
    for freq, gain in zip(vowel, _FORMANT_GAINS, strict=True):
        out += gain * _biquad(src, "band", float(freq), q, sr)
    return out


def _release_fade(x: np.ndarray, gate: int, sr: int, release: float) -> np.ndarray:
    """Trim a free-ringing note to its gate plus a short fade (a damped string)."""
    rel = int(release * sr)
    x = x[: gate + rel].copy()
    if rel and x.size > gate:
        x[gate:] *= np.exp(-5.0 * np.arange(x.size - gate) / rel)
    return x


# ----------------------------------------------------------------------------------------------------
# Instruments: (frequency Hz, gate samples, context) -> note waveform (gate + release samples, peak ~1)
# ----------------------------------------------------------------------------------------------------


def _i_sine_bass(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.005, 0.4, 0.6, 0.05)
    ph = _cycles(f, env.size, c)
    return env * (_sin(ph) + 0.2 * _sin(2 * ph)) / 1.1


def _i_sub808(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.002, 0.9, 0.0, 0.06)
    ph = _cycles(f, env.size, c, glide_semi=12.0, glide_s=0.025)  # the octave drop is the 808 "thump"
    return np.tanh(1.8 * env * _sin(ph)) / math.tanh(1.8)


def _i_upright(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.004, 0.35, 0.25, 0.08)
    ph = _cycles(f, env.size, c)
    return env * (_sin(ph) + 0.45 * _sin(2 * ph) + 0.2 * _sin(3 * ph)) / 1.4


def _i_saw_bass(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.004, 0.25, 0.7, 0.04)
    ph = _cycles(f, env.size, c)
    return env * (_saw(ph) + 0.6 * _sin(ph)) / 1.4


def _i_pluck_bass(f: float, gate: int, c: _Ctx) -> np.ndarray:
    return _release_fade(_karplus(f, gate + int(0.05 * c.sr), c, 1.2, 0.5), gate, c.sr, 0.05)


def _i_acid(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.002, 0.15, 0.5, 0.03)
    x = _saw(_cycles(f, env.size, c))
    cutoff = c.rng.uniform(300.0, 2200.0) * c.bright
    return env * _biquad(x, "low", cutoff, 5.0, c.sr) / 2.0


def _i_pluck(f: float, gate: int, c: _Ctx) -> np.ndarray:
    return _release_fade(_karplus(f, gate + int(0.1 * c.sr), c, 2.5, 0.6 * c.bright), gate, c.sr, 0.1)


def _i_skank(f: float, gate: int, c: _Ctx) -> np.ndarray:
    return _release_fade(_karplus(f, gate + int(0.02 * c.sr), c, 0.3, 1.0), gate, c.sr, 0.02)


def _i_scratch(f: float, gate: int, c: _Ctx) -> np.ndarray:
    n = gate + int(0.03 * c.sr)
    x = _karplus(f, n, c, 0.08, 1.0) + 0.4 * c.rng.standard_normal(n) * np.exp(-np.arange(n) / (0.01 * c.sr))
    return _biquad(x, "high", 900.0, 0.7, c.sr)


def _i_sitar(f: float, gate: int, c: _Ctx) -> np.ndarray:
    x = _karplus(f, gate + int(0.3 * c.sr), c, 2.5, 1.0)
    # An asymmetric clip stands in for the jawari bridge buzz.
    return _release_fade(np.tanh(2.5 * (x + 0.3 * x * x)), gate, c.sr, 0.3)


def _i_piano(f: float, gate: int, c: _Ctx) -> np.ndarray:
    n = gate + int(0.2 * c.sr)
    t = np.arange(n) / c.sr
    tau0 = 1.2 * (261.6 / f) ** 0.3
    out = np.zeros(n)
    for k in range(1, 7):
        fk = k * f * math.sqrt(1.0 + 0.0004 * k * k)  # stiff-string inharmonicity
        if fk >= 0.45 * c.sr:
            break
        out += (c.bright ** (k - 1) / k**1.3) * np.exp(-t * (1 + 0.6 * (k - 1)) / tau0) * _sin(fk * t + k * 0.3)
    return out * _adsr(gate, c.sr, 0.002, 10.0, 1.0, 0.2)[:n] / 1.5


def _i_epiano(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.003, 1.5, 0.0, 0.2)
    t = np.arange(env.size) / c.sr
    index = 1.8 * c.bright * np.exp(-t / 0.25) + 0.2
    return env * np.sin(2 * np.pi * f * t + index * np.sin(2 * np.pi * f * t))


def _i_bell(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.002, 0.9, 0.0, 0.3)
    t = np.arange(env.size) / c.sr
    index = 2.5 * np.exp(-t / 0.6)
    return env * np.sin(2 * np.pi * f * t + index * np.sin(2 * np.pi * 3.5 * f * t))


def _i_organ(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.008, 0.1, 0.95, 0.06)
    ph = _cycles(f, env.size, c)
    out = np.zeros(env.size)
    for ratio, weight in zip((0.5, 1, 2, 3, 4, 6, 8), c.drawbars, strict=True):
        if ratio * f < 0.45 * c.sr and weight > 0:
            out += weight * _sin(ratio * ph)
    tremolo = 1.0 + 0.1 * np.sin(2 * np.pi * 6.0 * np.arange(env.size) / c.sr)
    return env * tremolo * out / (c.drawbars.sum() + 1e-9)


def _i_strings(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.25, 0.5, 0.85, 0.4)
    return env * _supersaw(f, env.size, c, 3, vib_semi=0.12)


def _i_violin(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.08, 0.3, 0.8, 0.2)
    return env * _saw(_cycles(f, env.size, c, vib_hz=6.0, vib_semi=0.2))


def _i_pad(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.08, 0.6, 0.8, 0.3)
    return env * _supersaw(f, env.size, c, 5)


def _i_pluck_synth(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.002, 0.18, 0.0, 0.05)
    return env * _supersaw(f, env.size, c, 3)


def _i_brass(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.03, 0.2, 0.75, 0.1)
    ph = _cycles(f, env.size, c, glide_semi=-0.4, glide_s=0.04)
    return env * (_saw(ph) + 0.4 * np.sign(np.sin(2 * np.pi * ph))) / 1.3


def _i_sax(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.04, 0.2, 0.8, 0.08)
    ph = _cycles(f, env.size, c, vib_hz=5.0, vib_semi=0.15)
    pulse = np.where(ph % 1.0 < 0.35, 1.0, -1.0)
    return env * (0.7 * pulse + 0.3 * _saw(ph))


def _i_flute(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.06, 0.2, 0.85, 0.1)
    ph = _cycles(f, env.size, c, vib_hz=5.0, vib_semi=0.1)
    tone = _sin(ph) + 0.12 * _sin(2 * ph) + 0.05 * _sin(3 * ph)
    return env * (tone + 0.06 * c.rng.standard_normal(env.size)) / 1.2


def _i_crunch_guitar(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.003, 0.4, 0.6, 0.05)
    return env * np.tanh(4.0 * _supersaw(f, env.size, c, 2))


def _i_metal_guitar(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.002, 0.12, 0.35, 0.03)  # palm-muted chug
    x = _supersaw(f, env.size, c, 2) + 0.5 * _saw(_cycles(f / 2, env.size, c))
    return env * np.tanh(12.0 * x)


def _i_blues_guitar(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.005, 0.5, 0.5, 0.1)
    ph = _cycles(f, env.size, c, vib_hz=5.5, vib_semi=0.25, glide_semi=-1.0, glide_s=0.08)  # bend up
    return env * np.tanh(3.0 * (0.6 * _saw(ph) + 0.4 * np.sign(np.sin(2 * np.pi * ph))))


def _i_steel(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.04, 0.8, 0.6, 0.3)
    ph = _cycles(f, env.size, c, vib_hz=4.5, vib_semi=0.12, glide_semi=-2.0, glide_s=0.15)  # the slide
    return env * (2.0 * np.abs(_saw(ph)) - 1.0 + 0.5 * _sin(ph)) / 1.5


def _i_vox(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.05, 0.3, 0.8, 0.12)
    ph = _cycles(f, env.size, c, vib_hz=5.5, vib_semi=0.3, glide_semi=-0.5, glide_s=0.06)
    vowel = _VOWELS[c.rng.integers(len(_VOWELS))]
    return env * _formants(_saw(ph), vowel, c.sr, 6.0) * 1.5


def _i_speech(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.008, 0.08, 0.6, 0.04)
    n = env.size
    fall = np.linspace(0.0, -2.0, n)  # syllables fall in pitch
    ph = c.rng.random() + np.cumsum(f * np.exp2(fall / 12.0)) / c.sr
    src = 0.8 * _saw(ph) + 0.1 * c.rng.standard_normal(n)
    vowel = _VOWELS[c.rng.integers(len(_VOWELS))] * c.rng.uniform(0.9, 1.15)
    out = env * _formants(src, vowel, c.sr, 4.0) * 2.0
    if c.rng.random() < 0.7:  # a consonant
        k = min(n, int(c.rng.uniform(0.008, 0.025) * c.sr))
        out[:k] += 0.5 * _biquad(c.rng.standard_normal(k), "high", 3000.0, 0.7, c.sr)
    return out


def _i_drone(f: float, gate: int, c: _Ctx) -> np.ndarray:
    env = _adsr(gate, c.sr, 0.4, 1.0, 0.9, 0.6)
    swell = 1.0 + 0.15 * np.sin(2 * np.pi * 0.7 * np.arange(env.size) / c.sr + c.rng.random() * 6.3)
    return env * swell * _supersaw(f, env.size, c, 3)


_Instrument = Callable[[float, int, _Ctx], np.ndarray]

# name -> (renderer, cacheable: the same pitch and gate may reuse one rendering within a clip)
_INSTRUMENTS: dict[str, tuple[_Instrument, bool]] = {
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
_STRUMMED = frozenset({"pluck", "skank", "scratch"})

# ----------------------------------------------------------------------------------------------------
# Drums: one sample per voice and clip, re-triggered with per-hit velocity
# ----------------------------------------------------------------------------------------------------


def _metal_noise(n: int, c: _Ctx, scale: float) -> np.ndarray:
    """Six detuned square waves, the TR-808 cymbal source."""
    t = np.arange(n) / c.sr
    freqs = np.array([205.3, 304.4, 369.6, 522.7, 540.0, 800.0]) * scale
    return sum(np.sign(np.sin(2 * np.pi * fr * t + c.rng.random() * 6.3)) for fr in freqs) / 6.0


def _drum_sample(voice: str, c: _Ctx) -> np.ndarray:
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
        rattle = _biquad(rng.standard_normal(t.size), "high", 1500.0, 0.7, sr)
        return tone + rattle * np.exp(-t / rng.uniform(0.08, 0.15))
    if voice == "clap":
        t = seconds(0.3)
        env = np.exp(-t / 0.08) + sum(np.where(t >= d, np.exp(-(t - d) / 0.005), 0.0) for d in (0, 0.01, 0.02))
        return _biquad(rng.standard_normal(t.size), "band", 1200.0, 1.0, sr) * env * 2.0
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
        x = _biquad(_biquad(src, "high", cut * c.bright, 0.7, sr), "high", cut * c.bright, 0.7, sr)
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
        x = _biquad(rng.standard_normal(t.size), "band", centre, q, sr)
        if voice == "tamb":
            x += 0.5 * _biquad(_metal_noise(t.size, c, 3.0), "high", 6000.0, 0.7, sr)
        return x * np.minimum(t / attack, 1.0) * np.exp(-t / tau) * 2.0
    if voice in ("conga_hi", "conga_lo"):
        t = seconds(0.4)
        f0 = rng.uniform(330, 380) if voice == "conga_hi" else rng.uniform(200, 240)
        f = f0 * (1.0 + 0.15 * np.exp(-t / 0.02))
        body = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / (0.18 if voice == "conga_hi" else 0.25))
        slap = _biquad(np.where(t < 0.005, rng.standard_normal(t.size), 0.0), "band", 2000.0, 1.0, sr)
        return body + 2.0 * slap
    if voice == "tabla_hi":
        t = seconds(0.8)
        f0 = rng.uniform(400, 550)
        x = sum(
            w * np.sin(2 * np.pi * k * f0 * t) * np.exp(-t / tau)
            for k, w, tau in ((1, 1.0, 0.5), (2, 0.5, 0.3), (3, 0.35, 0.2), (4, 0.2, 0.15))
            if k * f0 < 0.45 * sr
        )
        strike = _biquad(np.where(t < 0.004, rng.standard_normal(t.size), 0.0), "high", 2000.0, 0.7, sr)
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
        x = _biquad(x, "band", 800.0, 2.0, sr)
        return x * (0.6 * np.exp(-t / 0.02) + 0.4 * np.exp(-t / 0.12)) / (np.max(np.abs(x)) + 1e-9)
    raise ValueError(f"unknown drum voice {voice!r}")  # a recipe typo, not a user error


# ----------------------------------------------------------------------------------------------------
# Harmony and note choice
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Harmony:
    key_pc: int
    scale: tuple[int, ...]
    lead_scale: tuple[int, ...]
    progression: tuple[int, ...]
    rotation: int
    chord_size: int

    def chord(self, bar: int) -> list[int]:
        """Chord tones of ``bar`` as semitones above the key's tonic, stacked in thirds, root first."""
        degree = self.progression[(bar + self.rotation) % len(self.progression)]
        idx = [degree + 2 * k for k in range(self.chord_size)]
        return [self.scale[i % 7] + 12 * (i // 7) for i in idx]

    def place(self, semis: int, lo: int) -> int:
        """Lowest MIDI note >= ``lo`` with the pitch class of ``semis`` above the tonic."""
        pc = (self.key_pc + semis) % 12
        return lo + (pc - lo) % 12


class _NotePicker:
    """Turns onsets into MIDI notes according to a part's policy; keeps melodic state across calls."""

    def __init__(self, policy: str, register: tuple[int, int], harmony: _Harmony, c: _Ctx) -> None:
        self.policy, self.lo, self.hi = policy, register[0], register[1]
        self.h, self.c = harmony, c
        self.prev: float | None = None
        pool = [m for m in range(self.lo, self.hi + 1) if (m - harmony.key_pc) % 12 in harmony.lead_scale]
        self.pool = np.array(pool or [self.lo])
        self.idx = len(self.pool) // 2
        self.arp_order = c.rng.choice(["up", "updown", "random"])

    def _voicing(self, bar: int) -> list[int]:
        tones = self.h.chord(bar)
        root = self.h.place(tones[0], self.lo)
        return [root + t - tones[0] for t in tones]

    def _fit(self, m: float) -> float:
        while m > self.hi:
            m -= 12
        while m < self.lo:
            m += 12
        return m

    def pick(self, bar: int, step: int, k: int, first: bool, last: bool, spb: int) -> list[float]:
        """Notes for the ``k``-th onset of ``bar`` (at ``step``); ``first``/``last`` within the bar."""
        rng, policy = self.c.rng, self.policy
        voicing = self._voicing(bar)
        root = voicing[0]
        if policy == "root":
            return [root]
        if policy == "root_oct":
            return [root + 12 * (k % 2)]
        if policy == "root_fifth":
            return [self._fit(root + 7) if step >= spb // 2 else root]
        if policy == "boogie":
            return [root + (0, 4, 7, 9, 10, 9, 7, 4)[k % 8]]
        if policy == "bassline":
            return [self._fit(root + rng.choice([0, 0, 0, 7, 7, voicing[1] - root, 12, 10]))]
        if policy == "acid":
            return [root + rng.choice([0, 0, 0, 0, 12, 12, 7, 10])]
        if policy == "power":
            return [root, root + 7, root + 12]
        if policy == "chord":
            return list(voicing)
        if policy == "drone":
            tonic = self.h.place(0, self.lo)
            return [tonic, tonic + 7, tonic + 12]
        if policy == "speech":
            return [self.c.speech_midi + rng.normal(0.0, 0.7)]
        if policy == "arp":
            tones = voicing + [v + 12 for v in voicing]
            if self.arp_order == "up":
                return [tones[k % len(tones)]]
            if self.arp_order == "updown":
                cycle = tones + tones[-2:0:-1]
                return [cycle[k % len(cycle)]]
            return [tones[rng.integers(len(tones))]]
        if policy == "walk":
            if first or self.prev is None:
                note: float = root
            elif last:  # chromatic approach to the next bar's root
                target = self.h.place(self.h.chord(bar + 1)[0], self.lo)
                note = self._fit(target + rng.choice([-1, 1]))
            else:
                note = self._fit(self.prev + rng.choice([-5, -3, -2, 2, 3, 4]))
            self.prev = note
            return [note]
        if policy == "melody":
            if rng.random() < 0.08:
                self.idx += int(rng.choice([-4, -3, 3, 4]))
            else:
                self.idx += int(rng.choice([-2, -1, 0, 1, 2], p=[0.15, 0.3, 0.1, 0.3, 0.15]))
            self.idx = int(np.clip(self.idx, 0, len(self.pool) - 1))
            if step % (spb // 4) == 0 and rng.random() < 0.5:  # strong beats lean on chord tones
                pcs = {(self.h.key_pc + t) % 12 for t in self.h.chord(bar)}
                tones = [i for i, m in enumerate(self.pool) if m % 12 in pcs]
                if tones:
                    self.idx = min(tones, key=lambda i: abs(i - self.idx))
            return [float(self.pool[self.idx])]
        raise ValueError(f"unknown note policy {policy!r}")


# ----------------------------------------------------------------------------------------------------
# Arrangement
# ----------------------------------------------------------------------------------------------------


def _probs(pattern: str) -> np.ndarray:
    return np.array([1.0 if ch == "x" else int(ch) / 10.0 for ch in pattern])


def _onsets(pattern: str, n_bars: int, variation: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean (bars, steps): one groove drawn per clip, each step re-drawn per bar with ``variation``."""
    p = _probs(pattern)
    groove = rng.random(p.size) < p
    redraw = rng.random((n_bars, p.size)) < variation
    fresh = rng.random((n_bars, p.size)) < p
    return np.where(redraw, fresh, groove)


def _velocities(pattern: str, steps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Low-probability steps are ghost notes: quieter.
    base = 0.65 + 0.35 * _probs(pattern)[steps]
    return base * np.exp(rng.normal(0.0, 0.1, steps.size))


def _add(buf: np.ndarray, x: np.ndarray, start: int) -> None:
    if start >= buf.size or start + x.size <= 0:
        return
    lo = max(start, 0)
    hi = min(start + x.size, buf.size)
    buf[lo:hi] += x[lo - start : hi - start]


def _echo(x: np.ndarray, delay: int, feedback: float) -> np.ndarray:
    out = x.copy()
    for k in range(1, 5):
        if k * delay >= x.size:
            break
        out[k * delay :] += feedback**k * x[: x.size - k * delay]
    return out


def _reverb_ir(rt60: float, c: _Ctx) -> np.ndarray:
    n = int(min(rt60, 3.0) * c.sr)
    t = np.arange(n) / c.sr
    ir = c.rng.standard_normal(n) * np.exp(-6.91 * t / rt60)
    ir = _biquad(ir, "low", 4000.0 * c.bright, 0.7, c.sr)
    ir[: int(0.012 * c.sr)] = 0.0  # pre-delay
    return ir / math.sqrt(float(np.sum(ir**2)) + 1e-12)


def _vinyl(n: int, c: _Ctx) -> np.ndarray:
    hiss = 0.01 * _biquad(c.rng.standard_normal(n), "band", 3000.0, 0.5, c.sr)
    clicks = np.zeros(n)
    where = c.rng.random(n) < 15.0 / c.sr
    clicks[where] = c.rng.uniform(-0.3, 0.3, int(where.sum()))
    return hiss + _biquad(clicks, "high", 1000.0, 0.7, c.sr)


@dataclass(frozen=True)
class _Grid:
    """Where the steps of the arrangement fall, in seconds from the start of the render buffer."""

    times: np.ndarray  # (n_bars * steps_per_bar + 1,) onset of every step (swing and rubato applied)
    spb: int
    step_s: float
    bar_s: float
    n_bars: int
    jitter_s: float
    buf_len: int  # samples rendered: the pre-roll offset plus the clip
    offset: int  # first sample of the clip inside the buffer

    def hit_times(self, gsteps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.times[gsteps] + rng.normal(0.0, self.jitter_s, gsteps.size)


def _make_ctx(rng: np.random.Generator, sr: int) -> _Ctx:
    return _Ctx(
        sr=sr,
        rng=rng,
        a4_hz=440.0 * 2 ** (rng.uniform(-0.3, 0.3) / 12),
        detune_cents=rng.uniform(4.0, 18.0),
        bright=2 ** rng.uniform(-0.5, 0.5),
        drawbars=rng.choice([0.0, 0.3, 0.6, 1.0], size=7, p=[0.3, 0.3, 0.2, 0.2]) + np.eye(7)[1],
        speech_midi=rng.uniform(43.0, 55.0),
    )


def _make_harmony(recipe: _Recipe, rng: np.random.Generator) -> _Harmony:
    scale = _SCALES[recipe.scales[rng.integers(len(recipe.scales))]]
    progression = recipe.progressions[rng.integers(len(recipe.progressions))]
    return _Harmony(
        key_pc=int(rng.integers(12)),
        scale=scale,
        lead_scale=_SCALES[recipe.lead_scale] if recipe.lead_scale else scale,
        progression=progression,
        rotation=int(rng.integers(len(progression))),
        chord_size=recipe.chord_size,
    )


def _make_grid(recipe: _Recipe, rng: np.random.Generator, duration_s: float, sr: int) -> _Grid:
    spb = recipe.steps_per_bar
    bpm = rng.uniform(*recipe.bpm) * (1.0 + rng.uniform(-_TEMPO_JITTER, _TEMPO_JITTER))
    bar_s = 240.0 / bpm
    step_s = bar_s / spb
    # A random phase into the song, so that clips do not all start on a downbeat.
    offset_s = rng.uniform(0.0, bar_s)
    n_bars = int(math.ceil((offset_s + duration_s) / bar_s)) + 1
    n_steps = n_bars * spb
    durs = np.full(n_steps, step_s)
    if recipe.rubato:
        phase = rng.random(2) * 2 * np.pi
        k = np.arange(n_steps) / spb
        durs *= 1.0 + recipe.rubato * (np.sin(2 * np.pi * k / 2.3 + phase[0]) + np.sin(2 * np.pi * k / 5.1 + phase[1]))
    times = np.concatenate(([0.0], np.cumsum(durs)))
    if recipe.swing and spb == 16:
        times[1:-1:2] += recipe.swing * step_s
    offset = int(offset_s * sr)
    return _Grid(
        times=times,
        spb=spb,
        step_s=step_s,
        bar_s=bar_s,
        n_bars=n_bars,
        jitter_s=recipe.humanize_ms / 1000.0,
        buf_len=offset + int(round(duration_s * sr)),
        offset=offset,
    )


def _render_drums(recipe: _Recipe, grid: _Grid, c: _Ctx) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Drum bus, and per voice its onset grid (bars, steps) and hit times (for locks and sidechain)."""
    rng, sr = c.rng, c.sr
    bus = np.zeros(grid.buf_len)
    onsets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for hit in recipe.drums:
        if rng.random() >= hit.presence:
            continue
        on = _onsets(hit.pattern, grid.n_bars, hit.variation, rng)
        bars, steps = np.nonzero(on)
        when = grid.hit_times(bars * grid.spb + steps, rng)
        onsets[hit.voice] = (on, when)
        sample = _drum_sample(hit.voice, c) * 10 ** ((hit.gain_db + rng.uniform(-2, 2)) / 20)
        for t0, vel in zip(when, _velocities(hit.pattern, steps, rng), strict=True):
            strokes = 1
            if hit.rolls and rng.random() < hit.rolls:
                strokes = int(rng.choice([2, 3]))
            for s in range(strokes):
                _add(bus, sample * vel * (0.8 if s else 1.0), int((t0 + s * grid.step_s / strokes) * sr))
    return bus, onsets


def _render_part(
    part: _Part,
    grid: _Grid,
    harmony: _Harmony,
    c: _Ctx,
    drum_onsets: dict[str, tuple[np.ndarray, np.ndarray]],
    cache: dict[tuple[str, float, int], np.ndarray],
) -> np.ndarray | None:
    """One pitched part's bus after its effects and gain; None when it has no notes."""
    rng, sr = c.rng, c.sr
    render, cacheable = _INSTRUMENTS[part.instrument]
    if part.lock is not None and part.lock in drum_onsets:
        on = drum_onsets[part.lock][0]
    else:
        on = _onsets(part.pattern, grid.n_bars, part.variation, rng)
    bars, steps = np.nonzero(on)
    if bars.size == 0:
        return None
    when = grid.hit_times(bars * grid.spb + steps, rng)
    if part.length > 0:
        gates = part.length * grid.step_s * np.ones(when.size)
    else:  # hold until the next onset (legato lines, 808s)
        gates = np.diff(np.append(when, when[-1] + grid.bar_s)) * 0.95
    gates = np.clip(gates, 0.03, 2 * grid.bar_s)
    vels = _velocities(part.pattern, steps, rng)
    picker = _NotePicker(part.notes, part.register, harmony, c)
    bus = np.zeros(grid.buf_len)
    k_in_bar = 0
    for j in range(bars.size):
        bar, step = int(bars[j]), int(steps[j])
        first = j == 0 or bars[j - 1] != bar
        last = j == bars.size - 1 or bars[j + 1] != bar
        k_in_bar = 0 if first else k_in_bar + 1
        gate = int(gates[j] * sr)
        if cacheable:
            gate = max(128, gate // 128 * 128)  # a coarser gate lets repeated notes share a rendering
        start = int(when[j] * sr)
        if start >= grid.buf_len:
            continue
        notes = picker.pick(bar, step, k_in_bar, first, last, grid.spb)
        strum_s = rng.uniform(0.008, 0.02) if part.instrument in _STRUMMED else 0.0
        for i, midi in enumerate(notes):
            key = (part.instrument, round(float(midi), 2), gate)
            note = cache.get(key) if cacheable else None
            if note is None:
                note = render(c.a4_hz * 2 ** ((float(midi) - 69.0) / 12.0), gate, c)
                if cacheable:
                    cache[key] = note
            _add(bus, note * (vels[j] / math.sqrt(len(notes))), start + int(i * strum_s * sr))
    if part.lowpass_hz:
        cut = part.lowpass_hz * c.bright
        bus = _biquad(_biquad(bus, "low", cut, 0.7, sr), "low", cut, 0.7, sr)
    if part.echo:
        bus = _echo(bus, int(3 * grid.step_s * sr), part.echo)
    if part.sidechain and "kick" in drum_onsets:
        bus *= _ducking(drum_onsets["kick"][1], part.sidechain, grid.buf_len, sr)
    return bus * 10 ** ((part.gain_db + rng.uniform(-3, 3)) / 20)


def _ducking(kick_times: np.ndarray, depth: float, n: int, sr: int) -> np.ndarray:
    """Sidechain gain: a dip of ``depth`` after every kick, recovering over ~0.2 s (the EDM "pump")."""
    duck = np.ones(n)
    curve = 1.0 - depth * np.exp(-np.arange(int(0.25 * sr)) / (0.08 * sr))
    for t0 in kick_times:
        s0 = int(t0 * sr)
        if 0 <= s0 < n:
            seg = duck[s0 : s0 + curve.size]
            np.minimum(seg, curve[: seg.size], out=seg)
    return duck


def _master(mix: np.ndarray, send: np.ndarray, recipe: _Recipe, grid: _Grid, c: _Ctx) -> np.ndarray:
    """Reverb, colour, the clip window, fades and the random peak level."""
    rng, sr = c.rng, c.sr
    rt60 = recipe.reverb_s * 2 ** rng.uniform(-0.3, 0.3)
    mix = mix + signal.fftconvolve(send, _reverb_ir(rt60, c))[: mix.size] * rng.uniform(0.7, 1.3)
    if recipe.lofi_hz:
        mix = _biquad(_biquad(mix, "low", recipe.lofi_hz, 0.7, sr), "low", recipe.lofi_hz, 0.7, sr)
    peak = float(np.max(np.abs(mix))) + 1e-9
    if recipe.vinyl:
        mix += peak * _vinyl(mix.size, c)
    if recipe.master_drive:
        mix = np.tanh(recipe.master_drive * mix / peak)
    mix = _biquad(mix, "high", 25.0, 0.7, sr)  # no DC or sub-sonic rumble
    out = mix[grid.offset :]
    fade = min(int(0.005 * sr), out.size // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        out[:fade] *= ramp
        out[out.size - fade :] *= ramp[::-1]
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak < 1e-9:
        return out.astype(np.float32)
    return (out * (rng.uniform(0.3, 0.9) / peak)).astype(np.float32)


def _render(recipe: _Recipe, rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    c = _make_ctx(rng, sr)
    harmony = _make_harmony(recipe, rng)
    grid = _make_grid(recipe, rng, duration_s, sr)
    drum_bus, drum_onsets = _render_drums(recipe, grid, c)
    mix = drum_bus.copy()
    send = drum_bus * recipe.drum_send
    cache: dict[tuple[str, float, int], np.ndarray] = {}
    for part in recipe.parts:
        if rng.random() >= part.presence:
            continue
        bus = _render_part(part, grid, harmony, c, drum_onsets, cache)
        if bus is not None:
            mix += bus
            send += part.send * bus
    return _master(mix, send, recipe, grid, c)


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------


def genre_slug(genre: str) -> str:
    """Lower-case ASCII file-name stem of a genre: ``"R&B"`` -> ``"r-b"``, ``"Hip-Hop"`` -> ``"hip-hop"``."""
    return re.sub(r"[^a-z0-9]+", "-", genre.lower()).strip("-")


def synthesize_clip(
    genre: str,
    rng: np.random.Generator,
    duration_s: float = 10.0,
    sample_rate_hz: int = 22050,
) -> np.ndarray:
    """Render one procedurally generated clip of ``genre``.

    Args:
        genre: One of ``GENRES`` (exact spelling).
        rng: Source of all randomness (key, tempo, patterns, timbre, loudness); the same generator
            state gives the same clip.
        duration_s: Length of the clip in seconds.
        sample_rate_hz: Sample rate in Hz (>= 8000).

    Returns:
        Mono float32 waveform of shape ``(round(duration_s * sample_rate_hz),)``, peak-normalised to a
        random level between 0.3 and 0.9.

    Raises:
        ConfigError: Unknown genre, non-positive duration, or a sample rate below 8000 Hz.
    """
    recipe = _RECIPES.get(genre)
    if recipe is None:
        raise ConfigError(f"unknown genre {genre!r}; known: {', '.join(GENRES)}")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ConfigError(f"duration_s must be positive, got {duration_s}")
    if sample_rate_hz < _MIN_SAMPLE_RATE_HZ:
        raise ConfigError(f"sample_rate_hz must be >= {_MIN_SAMPLE_RATE_HZ}, got {sample_rate_hz}")
    return _render(recipe, rng, float(duration_s), int(sample_rate_hz))


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


def _write_audio(path: Path, waveform: np.ndarray, sample_rate_hz: int, fmt: str) -> None:
    major, subtype = AUDIO_FORMATS[fmt]
    with sf.SoundFile(path, "w", samplerate=sample_rate_hz, channels=1, format=major, subtype=subtype) as f:
        for start in range(0, waveform.size, _WRITE_BLOCK_FRAMES):
            f.write(waveform[start : start + _WRITE_BLOCK_FRAMES])


def write_corpus(
    output_dir: str | Path,
    per_class: int,
    seed: int = 0,
    snr_db: float | None = None,
    duration_s: float = 10.0,
    sample_rate_hz: int = 22050,
    formats: Sequence[str] = ("wav",),
) -> list[Path]:
    """Write a GTZAN-style labelled corpus: ``output_dir/<genre>/<genre-slug>_<index:04d>.<ext>``.

    Clip ``i`` of genre number ``g`` is rendered from ``SeedSequence(seed, spawn_key=(g, i, 0))`` (its
    noise from ``(g, i, 1)``), so a clip never changes when classes or clips are added, or when
    noise is switched on. Formats cycle with the clip index.

    Args:
        output_dir: Root folder; one sub-folder per genre, named exactly as in ``GENRES``.
        per_class: Clips per genre (>= 1).
        seed: Corpus seed (>= 0).
        snr_db: When given, white noise is added at this SNR (dB).
        duration_s: Clip length in seconds.
        sample_rate_hz: Sample rate in Hz.
        formats: File formats to cycle through, from ``AUDIO_FORMATS`` (wav, flac, ogg, mp3); wav
            and flac are 16-bit PCM, all files mono.

    Returns:
        Paths of the written files, genre by genre in ``GENRES`` order.

    Raises:
        ConfigError: Invalid count, seed, format, or a sample rate the format cannot hold.
    """
    if per_class < 1:
        raise ConfigError(f"per_class must be >= 1, got {per_class}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    formats = [fmt.lower().lstrip(".") for fmt in formats]
    if not formats:
        raise ConfigError("formats must not be empty")
    unknown = sorted(set(formats) - set(AUDIO_FORMATS))
    if unknown:
        raise ConfigError(f"unknown format(s) {unknown}; known: {sorted(AUDIO_FORMATS)}")
    if "mp3" in formats and sample_rate_hz not in _MP3_RATES:
        raise ConfigError(f"mp3 cannot hold {sample_rate_hz} Hz; use one of {sorted(_MP3_RATES)}")

    root = Path(output_dir)
    written: list[Path] = []
    for g, genre in enumerate(GENRES):
        folder = root / genre
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(g, i, 0)))
            clip = synthesize_clip(genre, rng, duration_s=duration_s, sample_rate_hz=sample_rate_hz)
            if snr_db is not None:
                noise_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(g, i, 1)))
                clip = add_noise(clip, snr_db, noise_rng)
            fmt = formats[i % len(formats)]
            path = folder / f"{genre_slug(genre)}_{i:04d}.{fmt}"
            _write_audio(path, clip, sample_rate_hz, fmt)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m acousticsense.demo.corpus",
        description="Write a synthetic, labelled genre corpus (one folder per genre).",
    )
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--per-class", type=int, required=True, help="clips per genre")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    parser.add_argument("--snr-db", type=float, default=None, help="add white noise at this SNR in dB")
    parser.add_argument("--duration-s", type=float, default=10.0, help="clip length in seconds (default 10)")
    parser.add_argument("--sample-rate", type=int, default=22050, help="sample rate in Hz (default 22050)")
    parser.add_argument("--formats", default="wav", help="comma-separated: wav,flac,ogg,mp3 (default wav)")
    args = parser.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    try:
        paths = write_corpus(
            args.output,
            per_class=args.per_class,
            seed=args.seed,
            snr_db=args.snr_db,
            duration_s=args.duration_s,
            sample_rate_hz=args.sample_rate,
            formats=formats,
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total_s = len(paths) * round(args.duration_s * args.sample_rate) / args.sample_rate
    print(f"wrote {len(paths)} files ({len(GENRES)} classes, {total_s:.1f} s of audio) to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
