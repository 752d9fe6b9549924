"""Response bodies of the HTTP API (they also document it at ``/docs``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, create_model

from acousticsense import FileRecord, record_fields

__all__ = [
    "BatchResponse",
    "Classification",
    "ErrorBody",
    "FileError",
    "FileRecordFields",
    "FileResult",
    "GenreScore",
    "Health",
    "ModelInfo",
    "Spectrogram",
    "SpectrogramSegment",
    "TagScore",
    "response_fields",
]


class ErrorBody(BaseModel):
    """Every error response: a stable code and a human-readable message."""

    error: str = Field(description="machine-readable code, e.g. 'too_short', 'body_too_large', 'overloaded'")
    detail: str = Field(description="what happened and what to do")


class GenreScore(BaseModel):
    genre: str
    confidence: float


class TagScore(BaseModel):
    tag: str
    score: float = Field(description="the tag's sigmoid score, mean over the analysed windows")


class BatchShare(BaseModel):
    """The dynamic batch the file's windows were classified in (shared with concurrent requests)."""

    files: int
    windows: int
    inference_s: float = Field(
        description="wall time of the batch's forward passes, seconds (the file's share of it is inference_s)"
    )


class SpectrogramSegment(BaseModel):
    """One analysed segment of the file: where it is, and which columns of the picture it fills."""

    offset_s: float = Field(description="where the segment starts in the file, seconds")
    duration_s: float = Field(description="the segment's length (its spectrogram frames / frames per second)")
    columns: int = Field(description="columns of the picture it fills; segments follow one another left to right")


class Spectrogram(BaseModel):
    """The analysed excerpt's spectrogram, as the model saw it (``POST /v1/classify?spectrogram=true``).

    Computed from the very windows the model classified (the bundle's front end: log-mel for musicnn and
    the ``vit`` models, Kaldi filterbank for AST, normalised as the model expects), stitched back in time
    order without the last window's overlap, mean-pooled over ``frames_per_column`` frames to at most 512
    columns, and quantised to uint8. A byte ``q`` stands for ``min + q / 255 * (max - min)``.
    """

    shape: tuple[int, int] = Field(description="[rows, columns] = [mel bands, time columns]")
    data: str = Field(
        description="base64 of rows * columns uint8 values, row-major; row 0 is the lowest mel band, column 0 "
        "the start of the first segment"
    )
    min: float = Field(description="the value of byte 0, in the bundle's normalised front-end units")
    max: float = Field(description="the value of byte 255 (equal to min for a constant picture; every byte is 0)")
    front_end: str = Field(description="the bundle's front end: log_mel_db, log_compressed_mel or kaldi_fbank")
    frames_per_column: int = Field(description="spectrogram frames averaged into one column")
    seconds_per_column: float = Field(description="frames_per_column / frames per second")
    f_min_hz: float = Field(description="lower edge of the lowest mel band")
    f_max_hz: float = Field(description="upper edge of the highest mel band")
    mel_scale: Literal["slaney", "kaldi"] = Field(
        description="how the bands are spaced: slaney (librosa's default) or kaldi (1127 ln(1 + f / 700))"
    )
    segments: list[SpectrogramSegment] = Field(description="the analysed segments, in time order")


# The pydantic type of each of the record's logical kinds (acousticsense.record.KINDS).
_PYTHON_TYPES: dict[str, Any] = {
    "string": str,
    "strings": list[str],
    "float32": float,
    "float64": float,
    "int32": int,
    "bool": bool,
    "probabilities": dict[str, float],  # genre -> probability, in the bundle's genre order
    "genre_scores": list[GenreScore],
    "tag_scores": list[TagScore],
}


def _record_model() -> type[BaseModel]:
    """The record's fields as a pydantic model: same names, units and descriptions as the Parquet columns."""
    definitions: dict[str, Any] = {}
    for f in record_fields():
        kind, description = _PYTHON_TYPES[f.metadata["kind"]], f.metadata["description"]
        if f.metadata["nullable"]:
            definitions[f.name] = (kind | None, Field(default=None, description=description))
        else:
            definitions[f.name] = (kind, Field(description=description))
    return create_model("FileRecordFields", __doc__="The per-file record (acousticsense.record).", **definitions)


FileRecordFields = _record_model()


class Classification(FileRecordFields):  # type: ignore[misc, valid-type]
    """One file's prediction: the same numbers the batch job writes for the same bytes (the per-file record),
    plus what only a request has: the dynamic batch it rode in, its timings and, if asked, the spectrogram."""

    batch: BatchShare
    timings_ms: dict[str, float] = Field(
        description="this request's own times, milliseconds: queue (waiting for the model, including the batch "
        "wait), total, spectrogram (with ?spectrogram=true); the file's stage seconds are the *_s fields"
    )
    spectrogram: Spectrogram | None = Field(
        default=None, description="only with ?spectrogram=true on /v1/classify: the analysed excerpt's spectrogram"
    )


def response_fields(record: FileRecord, genres: Sequence[str]) -> dict[str, Any]:
    """The record's values as response fields (``probabilities`` as genre -> probability), by field name.

    The one place a record becomes JSON for the API.
    """
    body = record.values()
    probabilities = body["probabilities"]
    if probabilities is not None:
        body["probabilities"] = dict(zip(genres, np.asarray(probabilities, np.float64).tolist()))
    return body


class FileResult(Classification):
    filename: str | None
    status: Literal["ok"] = "ok"


class FileError(ErrorBody):
    filename: str | None
    status: Literal["error"] = "error"


class BatchResponse(BaseModel):
    results: list[FileResult | FileError] = Field(description="one entry per uploaded file, in upload order")
    files: int
    ok: int
    errors: int
    timings_ms: dict[str, float]


class Health(BaseModel):
    status: Literal["ok", "busy"]
    model_version: str
    feature_hash: str
    device: str | None = None
    precision: str | None = None


class ModelInfo(BaseModel):
    """The bundle this service runs (its ``bundle.json``) and the service's own limits."""

    version: str
    preset: str
    labels: list[str] = Field(description="the model's outputs (tags for a multi-label model)")
    genres: list[str] = Field(description="the genres top_genre / top_k / probabilities are over")
    head: dict[str, Any] = Field(description="activation and the genre <- tags mapping")
    feature_hash: str
    features: dict[str, Any]
    postprocess: dict[str, Any]
    model: dict[str, Any]
    provenance: dict[str, Any]
    service: dict[str, Any]
