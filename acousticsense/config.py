"""Typed configuration shared by batch and serving.

Every config is a frozen dataclass that travels inside the model bundle (``bundle.json``), so the
batch job and the online service rebuild exactly the same feature extraction and model from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from acousticsense.errors import ConfigError

__all__ = [
    "GENRES",
    "FeatureConfig",
    "ModelConfig",
    "PostprocessConfig",
    "MODEL_PRESETS",
    "config_from_dict",
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


@dataclass(frozen=True)
class FeatureConfig:
    """The audio contract: how bytes become the model's input windows.

    A file is decoded to an excerpt of ``excerpt_s`` seconds (the whole file when shorter), downmixed
    to mono, resampled to ``sample_rate_hz``, turned into a log-mel spectrogram (dB) normalised with
    ``norm_mean_db`` / ``norm_std_db``, and cut into windows of ``window_frames`` frames that cover
    the whole excerpt. With ``segments > 1``, that many excerpts spread over the track are analysed.
    ``enhance`` adds dynamic range compression (on the waveform) and/or spectral subtraction (on the
    power spectrogram); ``rules`` computes music descriptors that reweight classes (heuristics, off by
    default: see ``acousticsense.rules``).
    """

    sample_rate_hz: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 128
    f_min_hz: float = 0.0
    f_max_hz: float | None = None
    window_frames: int = 224
    excerpt_s: float = 30.0
    excerpt_policy: ExcerptPolicy = "middle"
    segments: int = 1
    enhance: Enhancement = "none"
    rules: bool = False
    min_duration_s: float = 1.0
    amin: float = 1e-10
    norm_mean_db: float = -40.0
    norm_std_db: float = 20.0

    def __post_init__(self) -> None:
        _check(self.sample_rate_hz >= 8000, "sample_rate_hz must be >= 8000")
        _check(self.n_fft >= 16 and self.n_fft & (self.n_fft - 1) == 0, "n_fft must be a power of 2")
        _check(0 < self.hop_length <= self.n_fft, "hop_length must be in (0, n_fft]")
        _check(self.n_mels > 0, "n_mels must be positive")
        f_max = self.f_max_hz if self.f_max_hz is not None else self.sample_rate_hz / 2
        _check(0 <= self.f_min_hz < f_max <= self.sample_rate_hz / 2, "need 0 <= f_min < f_max <= sr/2")
        _check(self.window_frames > 0, "window_frames must be positive")
        _check(self.excerpt_s > 0, "excerpt_s must be positive")
        _check(self.excerpt_policy in ("middle", "start"), "excerpt_policy must be 'middle' or 'start'")
        _check(self.segments >= 1, "segments must be >= 1")
        _check(self.enhance in ("none", "denoise", "compress", "both"), "enhance must be none/denoise/compress/both")
        _check(0 < self.min_duration_s <= self.excerpt_s, "min_duration_s must be in (0, excerpt_s]")
        _check(self.norm_std_db > 0, "norm_std_db must be positive")

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
class ModelConfig:
    """Dimensions of the ViT audio classifier (AST-style patches over the mel image)."""

    n_mels: int = 128
    window_frames: int = 224
    patch_size: int = 16
    dim: int = 64
    depth: int = 4
    heads: int = 2
    mlp_ratio: float = 4.0
    n_classes: int = len(GENRES)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check(self.n_mels % self.patch_size == 0, "n_mels must be divisible by patch_size")
        _check(self.window_frames % self.patch_size == 0, "window_frames must be divisible by patch_size")
        _check(self.dim % self.heads == 0, "dim must be divisible by heads")
        _check(self.depth > 0 and self.n_classes > 1, "depth must be positive and n_classes > 1")

    @property
    def n_patches(self) -> int:
        return (self.n_mels // self.patch_size) * (self.window_frames // self.patch_size)


@dataclass(frozen=True)
class PostprocessConfig:
    """How window logits become one prediction per file."""

    temperature: float = 1.0
    top_k: int = 5
    review_threshold: float = 0.7
    review_metric: Literal["entropy", "margin", "variation_ratio"] = "entropy"
    aggregation: Literal["mean", "vote"] = "mean"

    def __post_init__(self) -> None:
        _check(self.temperature > 0, "temperature must be positive")
        _check(self.top_k >= 1, "top_k must be >= 1")
        _check(0.0 <= self.review_threshold <= 1.0, "review_threshold must be in [0, 1]")
        _check(
            self.review_metric in ("entropy", "margin", "variation_ratio"),
            "review_metric must be 'entropy', 'margin' or 'variation_ratio'",
        )
        _check(self.aggregation in ("mean", "vote"), "aggregation must be 'mean' or 'vote'")


# Presets take the feature geometry (n_mels, window_frames) from the FeatureConfig they are paired with.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # CPU-friendly: all windows of a 30 s excerpt cost less than featurizing it on one core.
    "tiny": dict(patch_size=16, dim=64, depth=4, heads=2, mlp_ratio=4.0),
    "small": dict(patch_size=16, dim=192, depth=12, heads=3, mlp_ratio=4.0),  # ViT-Ti sizes
    "base": dict(patch_size=16, dim=768, depth=12, heads=12, mlp_ratio=4.0),  # ViT-B/16 sizes
}

T = TypeVar("T")


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a config dataclass from a dict, refusing unknown keys (a typo must not pass silently)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(names)}")
    return cls(**data)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
