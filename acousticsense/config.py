"""Typed configuration shared by batch and serving.

Every config is a frozen dataclass that travels inside the model bundle (``bundle.json``), so the
batch job and the online service rebuild exactly the same feature extraction and model from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from acousticsense.errors import ConfigError

__all__ = [
    "GENRES",
    "PER_RUN",
    "FeatureConfig",
    "HeadConfig",
    "PerRun",
    "PostprocessConfig",
    "config_from_dict",
    "per_run",
]

# Label order used by the reference article (SEED-NOTES.md).
GENRES: tuple[str, ...] = (
    "Blues",
    "Classical",
    "Jazz",
    "Folk",
    "Pop",
    "Electronic",
    "Disco",
    "Rock",
    "Hip-Hop",
    "Rap",
    "Metal",
    "R&B",
    "Reggae",
    "World",
    "Latin",
    "Country",
)

ExcerptPolicy = Literal["middle", "start"]
Enhancement = Literal["none", "denoise", "compress", "both"]
FrontEnd = Literal["log_mel_db", "log_compressed_mel", "kaldi_fbank"]
Activation = Literal["softmax", "sigmoid"]

# The metadata key of a per-run override (see per_run).
PER_RUN = "per_run"


@dataclass(frozen=True)
class PerRun:
    """What a per-run override adds to its field: the one help text and the bounds checked before any bundle is read.

    The bounds are the field's own (its config's ``__post_init__`` checks them again, with the bundle's other
    fields), stated here so that a batch flag or a service argument fails before a bundle is loaded.
    """

    help: str
    gt: float | None = None
    ge: float | None = None
    le: float | None = None


def per_run(help: str, *, gt: float | None = None, ge: float | None = None, le: float | None = None) -> dict[str, Any]:
    """Field metadata that makes a config field a per-run override.

    One marker here is the whole declaration: ``acousticsense.options`` reads it, and from it the batch job's flags
    (``--name`` / ``--no-name``), the service's ``AppArgs`` fields and ``ModelBundle.with_overrides`` take their
    names, types, choices, bounds and help.
    """
    return {PER_RUN: PerRun(help, gt=gt, ge=ge, le=le)}


@dataclass(frozen=True)
class FeatureConfig:
    """The audio contract: how bytes become the model's input windows.

    A file is decoded to an excerpt of ``excerpt_s`` seconds (the whole file when shorter), downmixed
    to mono, resampled to ``sample_rate_hz``, turned into a spectrogram by the ``front_end``, normalised
    as ``(x - norm_mean) / norm_std``, and cut into windows of ``window_frames`` frames that cover the
    whole excerpt. Front ends (all ``(n_mels, frames)``; the model family decides which it was trained on):

    - ``log_mel_db``: Slaney mel power of centred STFT frames, ``10 * log10(max(mel, amin))`` (librosa's
      ``melspectrogram`` + ``power_to_db``); the ``vit`` models.
    - ``log_compressed_mel``: the same mel power, ``log10(1 + compression_gain * mel)`` in float32
      (musicnn's "logC" input).
    - ``kaldi_fbank``: Kaldi-style log filterbank (``win_length``-sample frames, no centring, DC removal,
      pre-emphasis, Kaldi mel scale), as AST's feature extractor computes it.

    With ``segments > 1``, that many excerpts spread over the track are analysed. ``enhance`` adds
    dynamic range compression (on the waveform) and/or spectral subtraction (on the power
    spectrogram); ``rules`` computes music descriptors that reweight genres (heuristics, off by
    default: see ``acousticsense.rules``).
    """

    sample_rate_hz: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int | None = None  # samples per analysis frame; None: n_fft
    n_mels: int = 128
    f_min_hz: float = 0.0
    f_max_hz: float | None = None
    front_end: FrontEnd = "log_mel_db"
    compression_gain: float = 10000.0  # log_compressed_mel only
    window_frames: int = 224
    excerpt_s: float = field(default=30.0, metadata=per_run("seconds analysed per file", gt=0))
    excerpt_policy: ExcerptPolicy = field(default="middle", metadata=per_run("where the excerpt sits in the track"))
    segments: int = field(default=1, metadata=per_run("excerpts spread over each track", ge=1))
    enhance: Enhancement = field(
        default="none", metadata=per_run("spectral subtraction and/or dynamic range compression")
    )
    rules: bool = field(default=False, metadata=per_run("reweight genres by tempo, low end and vocals (heuristics)"))
    min_duration_s: float = 1.0
    amin: float = 1e-10
    norm_mean: float = -40.0
    norm_std: float = 20.0

    def __post_init__(self) -> None:
        check(self.sample_rate_hz >= 8000, "sample_rate_hz must be >= 8000")
        check(self.n_fft >= 16 and self.n_fft & (self.n_fft - 1) == 0, "n_fft must be a power of 2")
        check(0 < self.hop_length <= self.n_fft, "hop_length must be in (0, n_fft]")
        check(self.n_mels > 0, "n_mels must be positive")
        f_max = self.f_max_hz if self.f_max_hz is not None else self.sample_rate_hz / 2
        check(0 <= self.f_min_hz < f_max <= self.sample_rate_hz / 2, "need 0 <= f_min < f_max <= sr/2")
        check(self.window_frames > 0, "window_frames must be positive")
        check(self.excerpt_s > 0, "excerpt_s must be positive")
        check(self.excerpt_policy in ("middle", "start"), "excerpt_policy must be 'middle' or 'start'")
        check(self.segments >= 1, "segments must be >= 1")
        check(self.enhance in ("none", "denoise", "compress", "both"), "enhance must be none/denoise/compress/both")
        check(0 < self.min_duration_s <= self.excerpt_s, "min_duration_s must be in (0, excerpt_s]")
        check(self.norm_std > 0, "norm_std must be positive")
        check(
            self.front_end in ("log_mel_db", "log_compressed_mel", "kaldi_fbank"),
            f"unknown front_end {self.front_end!r}",
        )
        check(self.win_length is None or 0 < self.win_length <= self.n_fft, "win_length must be in (0, n_fft]")
        check(self.compression_gain > 0, "compression_gain must be positive")

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate_hz / self.hop_length

    @property
    def window_s(self) -> float:
        """Duration of one model window in seconds."""
        return self.window_frames * self.hop_length / self.sample_rate_hz

    def feature_hash(self) -> str:
        """Stable short hash of every field: two configs with the same hash compute the same features."""
        payload = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]


@dataclass(frozen=True)
class HeadConfig:
    """What the model's outputs mean, and how they become genres.

    ``activation`` is ``softmax`` for single-label models (one class per window) and ``sigmoid`` for
    multi-label taggers (each label scored on its own, e.g. musicnn's 50 tags). ``genres`` maps each
    genre to the labels that speak for it (``{"Rock": ("rock", "hard rock", …)}``); a genre's score is
    the largest of its labels' sigmoid scores, or the sum of their softmax probabilities. ``None`` means
    the labels are the genres. Labels in no genre (moods, decades, instruments) still appear as tags.
    """

    activation: Activation = "softmax"
    genres: dict[str, tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        check(self.activation in ("softmax", "sigmoid"), "activation must be 'softmax' or 'sigmoid'")
        if self.genres is not None:
            # Sorted by name: the canonical order, the same before and after a round trip through bundle.json.
            canonical = {str(g): tuple(tags) for g, tags in sorted(self.genres.items())}
            object.__setattr__(self, "genres", canonical)
            check(len(self.genres) >= 2, "a genre mapping needs at least two genres")
            check(all(self.genres.values()), "every genre needs at least one label")


@dataclass(frozen=True)
class PostprocessConfig:
    """How window logits become one prediction per file."""

    temperature: float = 1.0
    top_k: int = field(default=5, metadata=per_run("genres listed in top_k", ge=1))
    review_threshold: float = field(
        default=0.7, metadata=per_run("needs_review when the uncertainty exceeds this", ge=0.0, le=1.0)
    )
    review_metric: Literal["entropy", "margin", "variation_ratio"] = "entropy"
    aggregation: Literal["mean", "vote"] = field(
        default="mean", metadata=per_run("mean of the windows, or a vote of the segments")
    )

    def __post_init__(self) -> None:
        check(self.temperature > 0, "temperature must be positive")
        check(self.top_k >= 1, "top_k must be >= 1")
        check(0.0 <= self.review_threshold <= 1.0, "review_threshold must be in [0, 1]")
        check(
            self.review_metric in ("entropy", "margin", "variation_ratio"),
            "review_metric must be 'entropy', 'margin' or 'variation_ratio'",
        )
        check(self.aggregation in ("mean", "vote"), "aggregation must be 'mean' or 'vote'")


T = TypeVar("T")


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a config dataclass from a dict, refusing unknown keys (a typo must not pass silently)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(names)}")
    return cls(**data)


def check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
