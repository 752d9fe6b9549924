"""Response bodies of the HTTP API (they also document it at ``/docs``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "BatchResponse",
    "Classification",
    "ErrorBody",
    "FileError",
    "FileResult",
    "GenreScore",
    "Health",
    "TagScore",
    "ModelInfo",
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


class Classification(BaseModel):
    """One file's prediction: the same numbers the batch job writes for the same bytes."""

    top_genre: str
    confidence: float = Field(description="probability of top_genre")
    top_k: list[GenreScore]
    probabilities: dict[str, float] = Field(
        description="genre -> probability, in the bundle's genre order (sums to 1; multi-label bundles: the genres' "
        "tag scores, normalised)"
    )
    uncertainty: float = Field(description="the bundle's review metric, 0 (certain) .. 1")
    needs_review: bool
    segment_genres: list[str] = Field(description="top genre of each analysed segment, in time order")
    tags: list[TagScore] | None = Field(
        default=None, description="multi-label bundles: every tag with its score, best first; null otherwise"
    )
    duration_s: float = Field(description="the whole file's duration")
    excerpt_s: float = Field(description="seconds analysed (all segments together)")
    offset_s: float = Field(description="where the (first) analysed segment starts")
    sample_rate_hz: int
    channels: int
    windows: int = Field(description="model windows the excerpt was cut into")
    model_version: str
    feature_hash: str
    batch: BatchShare
    timings_ms: dict[str, float] = Field(
        description="read (body), decode, resample, features, queue (waiting for the model), inference, total"
    )


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
