"""The spectrogram cache keeps the featurizer's record under the record's own names."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from acousticsense import FeatureConfig
from acousticsense.cache import SpectrogramCache
from acousticsense.extract import ExcerptFeaturizer
from acousticsense.record import AUDIO, record_fields
from tests.conftest import write_audio

STAGE_SECONDS = {"read_s", "decode_s", "resample_s", "features_s"}


@pytest.fixture(scope="module")
def featurized(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache") / "song.wav"
    write_audio(path, 5.0, 44100, 2)
    return str(path), ExcerptFeaturizer(FeatureConfig(excerpt_s=3.0, segments=2))(str(path))


def test_an_entry_round_trips_every_audio_fact_and_zeroes_the_stage_seconds(tmp_path, featurized):
    source, audio = featurized
    cache = SpectrogramCache(str(tmp_path), "hash")
    key = cache.key(source)
    assert cache.get(key) is None
    cache.put(key, audio)
    hit = cache.get(key)
    np.testing.assert_array_equal(hit.windows, audio.windows)
    assert hit.segment_windows == audio.segment_windows and hit.class_weights is None
    kept = [f.name for f in record_fields(AUDIO) if f.name not in STAGE_SECONDS]
    assert "rms_dbfs" in kept and "windows" in kept
    assert {n: getattr(hit.record, n) for n in kept} == {n: getattr(audio.record, n) for n in kept}
    assert audio.record.decode_s > 0 and (hit.record.decode_s, hit.record.resample_s, hit.record.features_s) == (
        0,
        0,
        0,
    )


def test_an_entry_without_a_field_the_record_now_has_is_a_miss(tmp_path, featurized):
    """An entry written before a per-file field existed cannot fill that column: recompute it."""
    source, audio = featurized
    cache = SpectrogramCache(str(tmp_path), "hash")
    key = cache.key(source)
    cache.put(key, audio)
    path = cache._path(key)
    with open(path, "rb") as f:
        data = np.load(io.BytesIO(f.read()))
        meta = json.loads(str(data["meta"]))
        windows = data["windows"]
    del meta["record"]["rms_dbfs"]
    with open(path, "wb") as f:
        np.savez(f, windows=windows, meta=np.array(json.dumps(meta)))
    assert cache.get(key) is None
