"""One clip of a genre: draw the clip's key, tempo, groove and timbre from its recipe, render the drums
and parts onto a step grid, and master the mix (reverb, colour, fades, level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal

from acousticsense.config import GENRES
from acousticsense.demo.corpus.drums import drum_sample
from acousticsense.demo.corpus.dsp import Ctx, biquad, ducking, echo, mix_in, reverb_ir, vinyl
from acousticsense.demo.corpus.instruments import INSTRUMENTS, STRUMMED
from acousticsense.demo.corpus.recipes import RECIPES, Part, Recipe
from acousticsense.demo.corpus.theory import SCALES, Harmony, NotePicker
from acousticsense.errors import ConfigError

_MIN_SAMPLE_RATE_HZ = 8000
_TEMPO_JITTER = 0.06


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


def _make_ctx(rng: np.random.Generator, sr: int) -> Ctx:
    return Ctx(
        sr=sr,
        rng=rng,
        a4_hz=440.0 * 2 ** (rng.uniform(-0.3, 0.3) / 12),
        detune_cents=rng.uniform(4.0, 18.0),
        bright=2 ** rng.uniform(-0.5, 0.5),
        drawbars=rng.choice([0.0, 0.3, 0.6, 1.0], size=7, p=[0.3, 0.3, 0.2, 0.2]) + np.eye(7)[1],
        speech_midi=rng.uniform(43.0, 55.0),
    )


def _make_harmony(recipe: Recipe, rng: np.random.Generator) -> Harmony:
    scale = SCALES[recipe.scales[rng.integers(len(recipe.scales))]]
    progression = recipe.progressions[rng.integers(len(recipe.progressions))]
    return Harmony(
        key_pc=int(rng.integers(12)),
        scale=scale,
        lead_scale=SCALES[recipe.lead_scale] if recipe.lead_scale else scale,
        progression=progression,
        rotation=int(rng.integers(len(progression))),
        chord_size=recipe.chord_size,
    )


def _make_grid(recipe: Recipe, rng: np.random.Generator, duration_s: float, sr: int) -> _Grid:
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


def _render_drums(recipe: Recipe, grid: _Grid, c: Ctx) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
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
        sample = drum_sample(hit.voice, c) * 10 ** ((hit.gain_db + rng.uniform(-2, 2)) / 20)
        for t0, vel in zip(when, _velocities(hit.pattern, steps, rng), strict=True):
            strokes = 1
            if hit.rolls and rng.random() < hit.rolls:
                strokes = int(rng.choice([2, 3]))
            for s in range(strokes):
                mix_in(bus, sample * vel * (0.8 if s else 1.0), int((t0 + s * grid.step_s / strokes) * sr))
    return bus, onsets


def _render_part(
    part: Part,
    grid: _Grid,
    harmony: Harmony,
    c: Ctx,
    drum_onsets: dict[str, tuple[np.ndarray, np.ndarray]],
    cache: dict[tuple[str, float, int], np.ndarray],
) -> np.ndarray | None:
    """One pitched part's bus after its effects and gain; None when it has no notes."""
    rng, sr = c.rng, c.sr
    render, cacheable = INSTRUMENTS[part.instrument]
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
    picker = NotePicker(part.notes, part.register, harmony, c)
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
        strum_s = rng.uniform(0.008, 0.02) if part.instrument in STRUMMED else 0.0
        for i, midi in enumerate(notes):
            key = (part.instrument, round(float(midi), 2), gate)
            note = cache.get(key) if cacheable else None
            if note is None:
                note = render(c.a4_hz * 2 ** ((float(midi) - 69.0) / 12.0), gate, c)
                if cacheable:
                    cache[key] = note
            mix_in(bus, note * (vels[j] / math.sqrt(len(notes))), start + int(i * strum_s * sr))
    if part.lowpass_hz:
        cut = part.lowpass_hz * c.bright
        bus = biquad(biquad(bus, "low", cut, 0.7, sr), "low", cut, 0.7, sr)
    if part.echo:
        bus = echo(bus, int(3 * grid.step_s * sr), part.echo)
    if part.sidechain and "kick" in drum_onsets:
        bus *= ducking(drum_onsets["kick"][1], part.sidechain, grid.buf_len, sr)
    return bus * 10 ** ((part.gain_db + rng.uniform(-3, 3)) / 20)


def _master(mix: np.ndarray, send: np.ndarray, recipe: Recipe, grid: _Grid, c: Ctx) -> np.ndarray:
    """Reverb, colour, the clip window, fades and the random peak level."""
    rng, sr = c.rng, c.sr
    rt60 = recipe.reverb_s * 2 ** rng.uniform(-0.3, 0.3)
    mix = mix + signal.fftconvolve(send, reverb_ir(rt60, c))[: mix.size] * rng.uniform(0.7, 1.3)
    if recipe.lofi_hz:
        mix = biquad(biquad(mix, "low", recipe.lofi_hz, 0.7, sr), "low", recipe.lofi_hz, 0.7, sr)
    peak = float(np.max(np.abs(mix))) + 1e-9
    if recipe.vinyl:
        mix += peak * vinyl(mix.size, c)
    if recipe.master_drive:
        mix = np.tanh(recipe.master_drive * mix / peak)
    mix = biquad(mix, "high", 25.0, 0.7, sr)  # no DC or sub-sonic rumble
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


def _render(recipe: Recipe, rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
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
    recipe = RECIPES.get(genre)
    if recipe is None:
        raise ConfigError(f"unknown genre {genre!r}; known: {', '.join(GENRES)}")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ConfigError(f"duration_s must be positive, got {duration_s}")
    if sample_rate_hz < _MIN_SAMPLE_RATE_HZ:
        raise ConfigError(f"sample_rate_hz must be >= {_MIN_SAMPLE_RATE_HZ}, got {sample_rate_hz}")
    return _render(recipe, rng, float(duration_s), int(sample_rate_hz))
