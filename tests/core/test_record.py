"""The per-file record: its loudness field from the featurizer, and the two faces derived from it.

The Parquet schema and the API's response model are built from :class:`acousticsense.record.FileRecord`;
these tests pin that they list exactly its fields, so a face cannot gain or lose a per-file fact alone.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from acousticsense import FeatureConfig
from acousticsense.extract import ExcerptFeaturizer
from acousticsense.record import AUDIO, KINDS, PREDICTION, RMS_FLOOR_DBFS, FileRecord, record_fields, rms_dbfs
from pipelines._schema import ARROW_TYPES, FEATURES_SCHEMA, OUTPUT_SCHEMA, PAYLOAD_FIELDS, parquet_row, record_of
from serving.schemas import _PYTHON_TYPES, Classification, response_fields

RECORD = [f.name for f in record_fields()]
RATE = 22050  # FeatureConfig's: no resampling, so the level is the written signal's


def _write(path, samples: np.ndarray, rate: int = RATE) -> str:
    sf.write(path, samples, rate, subtype="FLOAT")  # float: a full-scale sine is not clipped or dithered
    return str(path)


def _sine(seconds: float, amplitude: float, rate: int = RATE, hz: float = 441.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _level(x: np.ndarray) -> float:
    return 20 * math.log10(math.sqrt(float(np.mean(x.astype(np.float64) ** 2))))


def test_a_full_scale_sine_reads_minus_3_01_dbfs_over_one_or_several_segments(tmp_path):
    """20 log10(1 / sqrt 2) = -3.0103 dB; stereo with equal channels downmixes to the same sine."""
    sine = _sine(12.0, 1.0)
    path = _write(tmp_path / "sine.wav", np.stack([sine, sine], axis=1))
    for config in (FeatureConfig(excerpt_s=5.0), FeatureConfig(excerpt_s=3.0, segments=3)):
        assert ExcerptFeaturizer(config).prepare(path).record.rms_dbfs == pytest.approx(-3.0103, abs=0.01)


def test_the_level_is_measured_before_enhancement(tmp_path):
    """Half-second bursts at full scale and at -40 dB: compression changes the level, the record does not."""
    t = np.arange(6 * RATE) / RATE
    bursts = (np.where(np.mod(t, 1.0) < 0.5, 1.0, 0.01) * np.sin(2 * np.pi * 441.0 * t)).astype(np.float32)
    path = _write(tmp_path / "bursts.wav", bursts)
    plain = ExcerptFeaturizer(FeatureConfig(excerpt_s=5.0)).prepare(path)
    compressed = ExcerptFeaturizer(FeatureConfig(excerpt_s=5.0, enhance="compress")).prepare(path)
    assert plain.record.rms_dbfs == pytest.approx(_level(plain.segments[0]), abs=1e-4)
    assert compressed.record.rms_dbfs == pytest.approx(plain.record.rms_dbfs, abs=1e-4)
    assert abs(_level(compressed.segments[0]) - plain.record.rms_dbfs) > 0.3


def test_quieter_audio_reads_lower_and_digital_silence_reads_the_floor(tmp_path):
    quiet = ExcerptFeaturizer(FeatureConfig(excerpt_s=3.0))(_write(tmp_path / "q.wav", _sine(4.0, 0.1)))
    assert quiet.record.rms_dbfs == pytest.approx(-23.01, abs=0.02)  # -3.01 - 20 dB
    silent = ExcerptFeaturizer(FeatureConfig(excerpt_s=3.0))(_write(tmp_path / "s.wav", np.zeros(4 * RATE, np.float32)))
    assert silent.record.rms_dbfs == RMS_FLOOR_DBFS
    assert rms_dbfs([]) == RMS_FLOOR_DBFS and rms_dbfs([np.full(10, 1e-9, np.float32)]) == RMS_FLOOR_DBFS
    assert rms_dbfs([np.ones(3, np.float32), -np.ones(5, np.float32)]) == 0.0  # over all segments' samples


def test_the_featurized_record_holds_every_audio_fact_and_no_prediction(tmp_path):
    path = _write(tmp_path / "x.wav", np.stack([_sine(4.0, 0.5)] * 3, axis=1), rate=44100)
    out = ExcerptFeaturizer(FeatureConfig(excerpt_s=3.0))(path)
    audio = out.record.values(AUDIO)
    assert {k for k, v in audio.items() if v is None} == {"read_s"}  # the caller reads the bytes, and times it
    assert (audio["sample_rate_hz"], audio["channels"], audio["windows"]) == (44100, 3, out.windows.shape[0])
    assert all(v is None for v in out.record.values(PREDICTION).values())


def test_the_parquet_schema_lists_exactly_the_record_fields():
    job_only = ["path", "status", "error", "error_stage"]
    assert OUTPUT_SCHEMA.names == job_only + RECORD + ["processed_at"]
    audio = [f.name for f in record_fields(AUDIO)]
    assert FEATURES_SCHEMA.names == job_only + [n for n, _ in PAYLOAD_FIELDS] + audio
    for f in record_fields():
        column = OUTPUT_SCHEMA.field(f.name)
        assert column.type == ARROW_TYPES[f.metadata["kind"]]
        assert column.metadata[b"description"].decode() == f.metadata["description"]


def test_the_response_model_lists_exactly_the_record_fields():
    service_only = ["batch", "timings_ms", "spectrogram"]
    assert list(Classification.model_fields) == RECORD + service_only
    for f in record_fields():
        field = Classification.model_fields[f.name]
        assert field.description == f.metadata["description"]
        assert field.is_required() is not f.metadata["nullable"]


def test_every_kind_has_a_parquet_and_a_response_type():
    assert set(KINDS) == set(ARROW_TYPES) == set(_PYTHON_TYPES)
    assert {f.metadata["kind"] for f in record_fields()} <= set(KINDS)
    assert all(f.metadata["known"] in (AUDIO, PREDICTION) for f in record_fields())


def test_a_record_becomes_a_row_and_a_response_with_the_same_values():
    record = FileRecord(
        top_genre="jazz",
        probabilities=np.array([0.25, 0.75], np.float32),
        sample_rate_hz=44100,
        windows=3,
        rms_dbfs=-12.5,
        tags=None,
    )
    row, body = parquet_row(record), response_fields(record, ["blues", "jazz"])
    assert row["probabilities"] == [0.25, 0.75] and body["probabilities"] == {"blues": 0.25, "jazz": 0.75}
    assert {k: v for k, v in row.items() if k != "probabilities"} == {
        k: v for k, v in body.items() if k != "probabilities"
    }
    assert record_of(row, AUDIO) == FileRecord(sample_rate_hz=44100, windows=3, rms_dbfs=-12.5)
