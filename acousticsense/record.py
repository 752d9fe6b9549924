"""The per-file record: every fact the batch job writes and the service answers about one file, declared once.

A field here is a Parquet column (``pipelines/_schema.py`` derives the schema), a field of the HTTP
response (``serving/schemas.py`` derives the pydantic model, so ``/docs`` shows the descriptions) and,
for what the featurizer learns, a cached value (``acousticsense/cache.py`` stores the same names). Adding
a per-file fact is one :func:`per_file` declaration below plus the code that computes it.

Names carry their unit (``_s`` seconds, ``_hz``, ``_dbfs``); counts are plain nouns (``windows``,
``segments``). Each field's ``kind`` names a logical type that each face maps to its own storage type
(``float32`` -> ``pa.float32()`` / ``float``); the core needs neither pyarrow nor pydantic for it.

Facts that only one face has stay with that face: the job's ``path``, ``status``, ``error``,
``error_stage`` and ``processed_at``; the service's ``filename``, ``batch`` (the dynamic batch a
request rode in), ``timings_ms`` (queue wait, whole request) and ``spectrogram``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from acousticsense.postprocess import FilePrediction

__all__ = [
    "AUDIO",
    "KINDS",
    "PREDICTION",
    "RMS_FLOOR_DBFS",
    "FileRecord",
    "per_file",
    "record_fields",
    "rms_dbfs",
]

# When a field becomes known: AUDIO once the CPU stage has decoded and featurized the file (these are
# what the job's CPU stage hands the accelerator stage, and what the spectrogram cache keeps); PREDICTION
# once the model has seen its windows.
AUDIO = "audio"
PREDICTION = "prediction"

# The logical types a field may have. Each face maps every one of them (a test checks it does).
Kind = Literal[
    "string", "strings", "float32", "float64", "int32", "bool", "probabilities", "genre_scores", "tag_scores"
]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]

# Digital silence has no level in dB; it reads as this floor (24-bit audio's noise floor is about -144 dBFS,
# 16-bit's -96 dBFS, so -120 is below any real recording's noise and above float32's resolution).
RMS_FLOOR_DBFS = -120.0


def per_file(kind: Kind, description: str, known: str, *, nullable: bool = False) -> Any:
    """Declare one per-file field.

    Args:
        kind: the logical type (one of :data:`KINDS`).
        description: what it means, with its unit; shown in ``/docs`` and the README's column table.
        known: :data:`AUDIO` or :data:`PREDICTION`, when the field is known.
        nullable: whether an ``ok`` file may lack it (e.g. ``tags`` for single-label models); every field is
            null in the job's error rows.
    """
    return field(
        default=None, metadata={"kind": kind, "description": description, "known": known, "nullable": nullable}
    )


@dataclass(frozen=True)
class FileRecord:
    """One file's facts: filled in as they become known (``None`` until then), never copied field by field.

    Build it with :func:`dataclasses.replace` or :meth:`predicted`; read a face's view with
    ``pipelines._schema.parquet_row`` or ``serving.schemas.response_fields``.
    """

    top_genre: str | None = per_file("string", "the most probable genre", PREDICTION)
    confidence: float | None = per_file("float32", "probability of top_genre", PREDICTION)
    top_k: list[dict[str, Any]] | None = per_file("genre_scores", "the k best genres, best first", PREDICTION)
    probabilities: np.ndarray | None = per_file(
        "probabilities",
        "every genre's probability, in the bundle's genre order (sums to 1; multi-label bundles: the genres' tag "
        "scores, normalised)",
        PREDICTION,
    )
    uncertainty: float | None = per_file("float32", "the bundle's review metric, 0 (certain) .. 1", PREDICTION)
    entropy: float | None = per_file("float32", "normalised entropy of the probabilities, 0 .. 1", PREDICTION)
    margin: float | None = per_file("float32", "best minus second-best probability", PREDICTION)
    variation_ratio: float | None = per_file(
        "float32", "share of windows that do not vote for the modal genre: 0 when all agree", PREDICTION
    )
    needs_review: bool | None = per_file("bool", "uncertainty above the bundle's review threshold", PREDICTION)
    segments: int | None = per_file("int32", "analysed segments (the --segments spans that fit the file)", PREDICTION)
    segment_genres: list[str] | None = per_file(
        "strings", "top genre of each analysed segment, in time order", PREDICTION
    )
    tags: list[dict[str, Any]] | None = per_file(
        "tag_scores",
        "multi-label bundles: every tag with its mean sigmoid score, best first; null otherwise",
        PREDICTION,
        nullable=True,
    )
    duration_s: float | None = per_file("float64", "the whole file's duration, seconds", AUDIO)
    offset_s: float | None = per_file("float64", "where the (first) analysed segment starts, seconds", AUDIO)
    excerpt_s: float | None = per_file("float64", "seconds analysed, all segments together", AUDIO)
    sample_rate_hz: int | None = per_file("int32", "the file's sample rate, as its header says", AUDIO)
    channels: int | None = per_file("int32", "the file's channels, as its header says", AUDIO)
    windows: int | None = per_file("int32", "model windows the analysed segments were cut into", AUDIO)
    rms_dbfs: float | None = per_file(
        "float32",
        "loudness of the analysed span: 20 log10 of the RMS of the mono excerpt(s) at the model's sample rate, "
        "before enhancement, in dB relative to a full-scale square wave (a full-scale sine: -3.01); digital "
        f"silence reads {RMS_FLOOR_DBFS:g}",
        AUDIO,
    )
    model_version: str | None = per_file("string", "the bundle that made the prediction", PREDICTION)
    feature_hash: str | None = per_file("string", "hash of the feature config the windows were made with", PREDICTION)
    read_s: float | None = per_file("float32", "seconds to get the file's bytes (service: the request body)", AUDIO)
    decode_s: float | None = per_file("float32", "seconds decoding the excerpt (0 on a spectrogram-cache hit)", AUDIO)
    resample_s: float | None = per_file("float32", "seconds downmixing, resampling (and compressing)", AUDIO)
    features_s: float | None = per_file("float32", "seconds computing the model windows", AUDIO)
    inference_s: float | None = per_file(
        "float32",
        "the file's share of the forward passes it rode in: their wall time x its windows / their windows",
        PREDICTION,
    )

    def predicted(
        self, prediction: FilePrediction, *, model_version: str, feature_hash: str, inference_s: float
    ) -> FileRecord:
        """This record with the model's prediction and its provenance filled in."""
        return replace(
            self,
            top_genre=prediction.top_genre,
            confidence=prediction.confidence,
            top_k=list(prediction.top_k),
            probabilities=prediction.probabilities,
            uncertainty=prediction.uncertainty,
            entropy=prediction.entropy,
            margin=prediction.margin,
            variation_ratio=prediction.variation_ratio,
            needs_review=prediction.needs_review,
            segments=len(prediction.segment_genres),
            segment_genres=list(prediction.segment_genres),
            tags=prediction.tags,
            model_version=model_version,
            feature_hash=feature_hash,
            inference_s=inference_s,
        )

    def values(self, known: str | None = None) -> dict[str, Any]:
        """The values by name (only the fields known at ``known``: :data:`AUDIO` or :data:`PREDICTION`).

        Not :func:`dataclasses.asdict`, which would deep-copy the arrays.
        """
        return {f.name: getattr(self, f.name) for f in record_fields(known)}


def record_fields(known: str | None = None) -> tuple[Any, ...]:
    """The record's :class:`dataclasses.Field` objects, in declaration order; only those known at ``known``."""
    return tuple(f for f in fields(FileRecord) if known is None or f.metadata["known"] == known)


def rms_dbfs(segments: list[np.ndarray]) -> float:
    """The level of ``segments`` together: 20 log10 of their RMS (full scale 1.0), floored at :data:`RMS_FLOOR_DBFS`.

    Accumulated in float64, so a long quiet excerpt does not lose its low bits.
    """
    count = sum(s.size for s in segments)
    if count == 0:
        return RMS_FLOOR_DBFS
    energy = sum(float(np.dot(s.astype(np.float64, copy=False), s.astype(np.float64, copy=False))) for s in segments)
    rms = math.sqrt(energy / count)
    return max(RMS_FLOOR_DBFS, 20.0 * math.log10(rms)) if rms > 0 else RMS_FLOOR_DBFS
