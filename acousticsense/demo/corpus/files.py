"""The corpus on disk: one folder per genre, one file per clip, in WAV, FLAC, Ogg Vorbis or MP3."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from acousticsense.config import GENRES
from acousticsense.demo.corpus.noise import add_noise
from acousticsense.demo.corpus.render import synthesize_clip
from acousticsense.errors import ConfigError

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


def genre_slug(genre: str) -> str:
    """Lower-case ASCII file-name stem of a genre: ``"R&B"`` -> ``"r-b"``, ``"Hip-Hop"`` -> ``"hip-hop"``."""
    return re.sub(r"[^a-z0-9]+", "-", genre.lower()).strip("-")


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
