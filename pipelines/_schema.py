"""The output contract: one Parquet row per input file, its columns derived from the core's per-file record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from acousticsense.record import AUDIO, FileRecord, record_fields

TOP_K_TYPE = pa.list_(pa.struct([("genre", pa.string()), ("confidence", pa.float32())]))
# Multi-label bundles: every tag with its mean sigmoid score, best first (null for single-label bundles).
TAGS_TYPE = pa.list_(pa.struct([("tag", pa.string()), ("score", pa.float32())]))

# The Arrow type of each of the record's logical kinds (acousticsense.record.KINDS).
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "strings": pa.list_(pa.string()),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int32": pa.int32(),
    "bool": pa.bool_(),
    "probabilities": pa.list_(pa.float32()),  # in the bundle's genre order (bundle.json head.genres)
    "genre_scores": TOP_K_TYPE,
    "tag_scores": TAGS_TYPE,
}

# The job's own per-file facts; everything else about a file is the record's.
_FILE_FIELDS = [
    ("path", pa.string()),
    ("status", pa.string()),  # 'ok' | 'error'
    ("error", pa.string()),
    ("error_stage", pa.string()),  # list | read | decode | features | inference
]


def _record_columns(known: str | None = None) -> list[pa.Field]:
    """The record's fields (those known at ``known``) as Parquet columns, with their descriptions."""
    return [
        pa.field(f.name, ARROW_TYPES[f.metadata["kind"]], metadata={"description": f.metadata["description"]})
        for f in record_fields(known)
    ]


OUTPUT_SCHEMA = pa.schema(
    [pa.field(n, t) for n, t in _FILE_FIELDS]
    + _record_columns()
    + [pa.field("processed_at", pa.timestamp("ms", tz="UTC"))]
)


def parquet_row(record: FileRecord, known: str | None = None) -> dict[str, Any]:
    """The record's values as Parquet column values (``probabilities`` as a list), by column name.

    The one place a record becomes a row: both stages of the job fill their rows through it (the CPU stage
    with the fields ``known`` at :data:`~acousticsense.record.AUDIO`).
    """
    row = record.values(known)
    if isinstance(row.get("probabilities"), np.ndarray):
        row["probabilities"] = row["probabilities"].tolist()
    return row


def record_of(row: Mapping[str, Any], known: str) -> FileRecord:
    """A record of the values ``row`` holds for the fields known at ``known`` (the inverse of :func:`parquet_row`)."""
    return FileRecord(**{f.name: row.get(f.name) for f in record_fields(known)})


# What the CPU stage hands the accelerator stage: the file's metadata plus one payload.
PAYLOAD_FIELDS = [
    ("features", pa.large_binary()),  # float16 (windows, n_mels, window_frames), C order
    ("segment_windows", pa.list_(pa.int32())),
    ("waveform", pa.large_binary()),  # features_on="accelerator": float32 mono segments, concatenated
    ("segment_samples", pa.list_(pa.int64())),
    ("cache_hit", pa.bool_()),
    ("class_weights", pa.list_(pa.float32())),  # rule layer multipliers, when rules are on
]
FEATURES_SCHEMA = pa.schema([pa.field(n, t) for n, t in _FILE_FIELDS + PAYLOAD_FIELDS] + _record_columns(AUDIO))

# Only for evaluation jobs that refit the temperature: the raw logits of every window of the file.
WINDOW_LOGITS_FIELD = pa.field("window_logits", pa.list_(pa.list_(pa.float32())))

# Per-file seconds by stage, in pipeline order; "write" is measured per Parquet shard.
STAGES = ("read", "decode", "resample", "features", "inference", "write")
