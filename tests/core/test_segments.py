import numpy as np
import pytest

from acousticsense import (
    FeatureConfig,
    HeadConfig,
    OutputHead,
    PostprocessConfig,
    choose_segments,
    decode_segments,
    predict_file,
)
from acousticsense.extract import ExcerptFeaturizer
from tests.conftest import write_audio


@pytest.mark.parametrize(
    ("total_s", "segments", "expected"),
    [
        (300.0, 3, [(35.0, 30.0), (135.0, 30.0), (235.0, 30.0)]),  # evenly spread, equal room around each
        (90.0, 3, [(0.0, 30.0), (30.0, 30.0), (60.0, 30.0)]),  # exactly three fit: back to back
        (70.0, 3, [(2.5, 30.0), (37.5, 30.0)]),  # only two fit, none overlap
        (20.0, 3, [(0.0, 20.0)]),  # shorter than one excerpt: the whole file once
        (100.0, 1, [(35.0, 30.0)]),  # one segment is the middle excerpt
    ],
)
def test_choose_segments(total_s, segments, expected):
    spans = choose_segments(total_s, 30.0, segments)
    np.testing.assert_allclose(spans, expected, atol=1e-9)
    for (a, da), (b, _) in zip(spans, spans[1:]):
        assert a + da <= b + 1e-9  # never overlapping
    assert all(o >= 0 and o + d <= total_s + 1e-9 for o, d in spans)


def test_decode_segments_reads_the_chosen_spans(tmp_path):
    path = tmp_path / "ramp.wav"
    sr = 8000
    ramp = (np.arange(60 * sr) / (60 * sr)).astype(np.float32)  # value encodes time
    import soundfile as sf

    sf.write(path, ramp, sr, subtype="FLOAT")
    config = FeatureConfig(excerpt_s=10.0, segments=3)
    segments = decode_segments(str(path), config)
    assert [s.offset_s for s in segments] == pytest.approx([5.0, 25.0, 45.0])
    for s in segments:
        assert s.waveform.shape == (1, 10 * sr)
        assert s.waveform[0, 0] == pytest.approx(s.offset_s / 60.0, abs=1e-6)


def test_featurizer_reports_windows_per_segment(tmp_path):
    path = tmp_path / "song.flac"
    write_audio(path, 50.0, 22050, 2)
    result = ExcerptFeaturizer(FeatureConfig(excerpt_s=10.0, segments=4))(str(path))
    assert len(result.segment_windows) == 4 and sum(result.segment_windows) == result.windows.shape[0]
    assert result.record.excerpt_s == pytest.approx(40.0, abs=0.01)


def test_vote_over_segments_and_segment_genres():
    labels = ("a", "b", "c")
    strong_a = [10.0, 0.0, 0.0]
    weak_b = [0.0, 1.0, 0.0]
    # segment 1: one very confident "a" window; segments 2 and 3: two mildly "b" windows each
    logits = np.array([strong_a, weak_b, weak_b, weak_b, weak_b])
    mean = predict_file(logits, OutputHead(labels, HeadConfig()), PostprocessConfig(aggregation="mean"), [1, 2, 2])
    vote = predict_file(logits, OutputHead(labels, HeadConfig()), PostprocessConfig(aggregation="vote"), [1, 2, 2])
    assert mean.segment_genres == vote.segment_genres == ["a", "b", "b"]
    assert vote.top_genre == "b" and vote.confidence == pytest.approx(2 / 3, abs=1e-3)
    assert mean.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    single = predict_file(logits, OutputHead(labels, HeadConfig()), PostprocessConfig(aggregation="mean"))
    assert single.segment_genres == [single.top_genre]
