"""The output contract: one Parquet row per input file."""

from __future__ import annotations

import pyarrow as pa

TOP_K_TYPE = pa.list_(pa.struct([("genre", pa.string()), ("confidence", pa.float32())]))
# Multi-label bundles: every tag with its mean sigmoid score, best first (null for single-label bundles).
TAGS_TYPE = pa.list_(pa.struct([("tag", pa.string()), ("score", pa.float32())]))

_FILE_FIELDS = [
    ("path", pa.string()),
    ("status", pa.string()),  # 'ok' | 'error'
    ("error", pa.string()),
    ("error_stage", pa.string()),  # list | read | decode | features | inference
]
_AUDIO_FIELDS = [
    ("duration_s", pa.float64()),
    ("offset_s", pa.float64()),
    ("excerpt_s", pa.float64()),
    ("sample_rate", pa.int32()),
    ("channels", pa.int32()),
    ("windows", pa.int32()),
]
_CPU_TIMING_FIELDS = [
    ("read_s", pa.float32()),
    ("decode_s", pa.float32()),
    ("resample_s", pa.float32()),
    ("features_s", pa.float32()),
]

OUTPUT_SCHEMA = pa.schema(
    _FILE_FIELDS
    + [
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
        ("tags", TAGS_TYPE),
    ]
    + _AUDIO_FIELDS
    + [
        ("model_version", pa.string()),
        ("feature_hash", pa.string()),
        ("processed_at", pa.timestamp("ms", tz="UTC")),
    ]
    + _CPU_TIMING_FIELDS
    + [("inference_s", pa.float32())]
)

# What the CPU stage hands the accelerator stage: the file's metadata plus one payload.
PAYLOAD_FIELDS = [
    ("features", pa.large_binary()),  # float16 (windows, n_mels, window_frames), C order
    ("segment_windows", pa.list_(pa.int32())),
    ("waveform", pa.large_binary()),  # features_on="accelerator": float32 mono segments, concatenated
    ("segment_samples", pa.list_(pa.int64())),
    ("cache_hit", pa.bool_()),
    ("class_weights", pa.list_(pa.float32())),  # rule layer multipliers, when rules are on
]
FEATURES_SCHEMA = pa.schema(_FILE_FIELDS + _AUDIO_FIELDS + PAYLOAD_FIELDS + _CPU_TIMING_FIELDS)

# Only for evaluation jobs that refit the temperature: the raw logits of every window of the file.
WINDOW_LOGITS_FIELD = pa.field("window_logits", pa.list_(pa.list_(pa.float32())))

# Per-file seconds by stage, in pipeline order; "write" is measured per Parquet shard.
STAGES = ("read", "decode", "resample", "features", "inference", "write")
