"""The output contract: one Parquet row per input file."""

from __future__ import annotations

import pyarrow as pa

TOP_K_TYPE = pa.list_(pa.struct([("genre", pa.string()), ("confidence", pa.float32())]))

OUTPUT_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("status", pa.string()),  # 'ok' | 'error'
        ("error", pa.string()),
        ("error_stage", pa.string()),  # list | read | decode | features | inference
        ("top_genre", pa.string()),
        ("confidence", pa.float32()),
        ("top_k", TOP_K_TYPE),
        ("probabilities", pa.list_(pa.float32())),
        ("uncertainty", pa.float32()),
        ("entropy", pa.float32()),
        ("margin", pa.float32()),
        ("variation_ratio", pa.float32()),
        ("needs_review", pa.bool_()),
        ("segments", pa.int32()),
        ("segment_genres", pa.list_(pa.string())),
        ("duration_s", pa.float64()),
        ("offset_s", pa.float64()),
        ("excerpt_s", pa.float64()),
        ("sample_rate", pa.int32()),
        ("channels", pa.int32()),
        ("windows", pa.int32()),
        ("model_version", pa.string()),
        ("feature_hash", pa.string()),
        ("processed_at", pa.timestamp("ms", tz="UTC")),
        ("read_s", pa.float32()),
        ("decode_s", pa.float32()),
        ("resample_s", pa.float32()),
        ("features_s", pa.float32()),
        ("inference_s", pa.float32()),
    ]
)

# Only for evaluation jobs that refit the temperature: the raw logits of every window of the file.
WINDOW_LOGITS_FIELD = pa.field("window_logits", pa.list_(pa.list_(pa.float32())))

# Per-file seconds by stage, in pipeline order; "write" is measured per Parquet shard.
STAGES = ("read", "decode", "resample", "features", "inference", "write")
