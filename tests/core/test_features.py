"""Log-mel features and model windows (acousticsense.features), and the excerpt featurizer.

librosa is the reference; its first call is slow (numba), so it is called only in module-scoped
fixtures.
"""

from __future__ import annotations

import io
import math
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from acousticsense.audio import downmix, resample
from acousticsense.config import FeatureConfig
from acousticsense.errors import AcousticSenseError, StageError
from acousticsense.extract import ExcerptFeaturizer, FeaturizedAudio
from acousticsense.features import LogMel, featurize, frame_windows, mel_filterbank, n_frames

DEFAULT = FeatureConfig()
SMALL = FeatureConfig(sample_rate_hz=16000, n_fft=512, hop_length=160, n_mels=64, window_frames=96)

FILTERBANK_CASES = [
    # (sr, n_fft, n_mels, f_min, f_max)
    (22050, 1024, 128, 0.0, None),
    (16000, 512, 64, 0.0, None),
    (44100, 2048, 96, 30.0, 11000.0),
]


def make_signal(sr: int, seconds: float = 5.0, seed: int = 0) -> np.ndarray:
    """Noise plus a few tones and a chirp: energy in every mel band, so dB values are well defined."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = 0.05 * rng.standard_normal(len(t))
    for freq, amp in ((110.0, 0.3), (440.0, 0.2), (1760.0, 0.1), (5000.0, 0.05)):
        y += amp * np.sin(2 * np.pi * freq * t)
    y += 0.05 * np.sin(2 * np.pi * (200.0 * t + 300.0 * t**2))
    return y.astype(np.float32)


@pytest.fixture(scope="module")
def librosa_reference():
    """librosa's filterbanks and dB mel spectrograms, computed once."""
    librosa = pytest.importorskip("librosa")
    filterbanks = {
        case: librosa.filters.mel(sr=case[0], n_fft=case[1], n_mels=case[2], fmin=case[3], fmax=case[4])
        for case in FILTERBANK_CASES
    }
    spectrograms = {}
    for name, cfg in (("default", DEFAULT), ("small", SMALL)):
        y = make_signal(cfg.sample_rate_hz)
        mel = librosa.feature.melspectrogram(
            y=y, sr=cfg.sample_rate_hz, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels
        )
        spectrograms[name] = (y, librosa.power_to_db(mel, ref=1.0, top_db=None))
    return filterbanks, spectrograms


# --------------------------------------------------------------------------------------------------
# mel filterbank and LogMel against librosa


@pytest.mark.parametrize("case", FILTERBANK_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_mel_filterbank_matches_librosa(librosa_reference, case):
    filterbanks, _ = librosa_reference
    sr, n_fft, n_mels, f_min, f_max = case

    fb = mel_filterbank(sr, n_fft, n_mels, f_min, f_max)

    assert fb.dtype == np.float32
    assert fb.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(fb, filterbanks[case], rtol=0, atol=1e-6)
    assert (fb.sum(axis=1) > 0).all()  # no empty band


def test_mel_filterbank_respects_the_band_limits():
    sr, n_fft = 22050, 1024
    fb = mel_filterbank(sr, n_fft, 40, f_min_hz=300.0, f_max_hz=4000.0)
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    assert not fb[:, freqs < 300.0].any()
    assert not fb[:, freqs > 4000.0].any()
    # the lowest band sits at the bottom, the highest at the top
    assert freqs[np.argmax(fb[0])] < freqs[np.argmax(fb[-1])]


@pytest.mark.parametrize("name", ["default", "small"])
def test_log_mel_matches_librosa(librosa_reference, name):
    _, spectrograms = librosa_reference
    cfg = DEFAULT if name == "default" else SMALL
    y, expected = spectrograms[name]

    db = LogMel(cfg, normalize=False)(torch.from_numpy(y))

    assert db.dtype == torch.float32
    assert tuple(db.shape) == expected.shape == (cfg.n_mels, n_frames(len(y), cfg))
    assert np.abs(db.numpy() - expected).max() < 1e-3


@pytest.mark.parametrize("samples", [1, 255, 256, 257, 22050, 22050 * 3 + 17])
def test_frame_count(samples):
    y = np.zeros(samples, np.float32)
    out = LogMel(DEFAULT)(torch.from_numpy(y))
    assert n_frames(samples, DEFAULT) == 1 + samples // DEFAULT.hop_length
    assert tuple(out.shape) == (DEFAULT.n_mels, n_frames(samples, DEFAULT))


def test_silence_is_clamped_at_amin():
    cfg = FeatureConfig(amin=1e-8)
    out = LogMel(cfg, normalize=False)(torch.zeros(4000))
    torch.testing.assert_close(out, torch.full_like(out, -80.0))


def test_a_tone_lands_in_the_band_that_holds_its_frequency():
    sr = DEFAULT.sample_rate_hz
    t = np.arange(sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    db = LogMel(DEFAULT, normalize=False)(torch.from_numpy(tone))
    loudest_band = int(db[:, 10:-10].mean(dim=1).argmax())
    fb = mel_filterbank(sr, DEFAULT.n_fft, DEFAULT.n_mels)
    bin_1k = int(round(1000.0 * DEFAULT.n_fft / sr))
    assert fb[loudest_band, bin_1k] > 0  # one of the (two overlapping) bands that hold 1 kHz
    assert db[loudest_band].mean() > db.mean() + 20  # and it stands out


# --------------------------------------------------------------------------------------------------
# batches and normalisation


def test_batch_equals_stacked_single_calls():
    extractor = LogMel(DEFAULT)
    batch = np.stack([make_signal(DEFAULT.sample_rate_hz, 2.0, seed) for seed in range(3)])

    out = extractor(torch.from_numpy(batch))

    frames = n_frames(batch.shape[1], DEFAULT)
    assert tuple(out.shape) == (3, DEFAULT.n_mels, frames)
    singles = torch.stack([extractor(torch.from_numpy(row)) for row in batch])
    torch.testing.assert_close(out, singles, rtol=0, atol=1e-4)
    assert not torch.equal(out[0], out[1])  # rows are not mixed up or broadcast


def test_nested_batch_shape():
    extractor = LogMel(SMALL)
    batch = np.stack([make_signal(SMALL.sample_rate_hz, 1.0, seed) for seed in range(6)]).reshape(2, 3, -1)

    out = extractor(torch.from_numpy(batch))

    assert tuple(out.shape) == (2, 3, SMALL.n_mels, n_frames(batch.shape[-1], SMALL))
    torch.testing.assert_close(out[1, 2], extractor(torch.from_numpy(batch[1, 2])), rtol=0, atol=1e-4)


def test_normalization_is_mean_and_std_from_the_config():
    cfg = FeatureConfig(norm_mean=-31.5, norm_std=12.25)
    y = torch.from_numpy(make_signal(cfg.sample_rate_hz, 1.0, seed=2))

    db = LogMel(cfg, normalize=False)(y)
    normalized = LogMel(cfg, normalize=True)(y)
    default_normalized = LogMel(cfg)(y)

    torch.testing.assert_close(normalized, (db - (-31.5)) / 12.25, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(default_normalized, normalized, rtol=0, atol=0)
    assert not torch.allclose(normalized, db)


def test_filterbank_buffer_is_not_saved_in_the_state_dict():
    """Buffers are rebuilt from the config; a bundle's weights must not carry them."""
    extractor = LogMel(DEFAULT)
    assert extractor.state_dict() == {}
    np.testing.assert_array_equal(
        extractor.filterbank.numpy(), mel_filterbank(DEFAULT.sample_rate_hz, DEFAULT.n_fft, DEFAULT.n_mels)
    )


# --------------------------------------------------------------------------------------------------
# frame_windows


def indexed_features(frames: int, n_mels: int = 4) -> torch.Tensor:
    """``(n_mels, frames)`` whose value at ``[m, j]`` is ``1000 * m + j``: windows reveal their frames."""
    return torch.arange(n_mels)[:, None] * 1000.0 + torch.arange(frames)[None, :].float()


def test_shorter_than_a_window_is_tiled():
    features = indexed_features(3)

    windows = frame_windows(features, 8)

    assert tuple(windows.shape) == (1, 4, 8)
    assert windows[0, 0].tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert windows[0, 3].tolist() == [3000, 3001, 3002, 3000, 3001, 3002, 3000, 3001]


def test_a_single_frame_is_repeated():
    windows = frame_windows(indexed_features(1), 5)
    assert tuple(windows.shape) == (1, 4, 5)
    assert windows[0, 2].tolist() == [2000.0] * 5


def test_exactly_one_window():
    features = indexed_features(8)
    windows = frame_windows(features, 8)
    assert tuple(windows.shape) == (1, 4, 8)
    torch.testing.assert_close(windows[0], features, rtol=0, atol=0)


def test_whole_windows_do_not_overlap():
    features = indexed_features(24)
    windows = frame_windows(features, 8)
    assert tuple(windows.shape) == (3, 4, 8)
    for k in range(3):
        torch.testing.assert_close(windows[k], features[:, 8 * k : 8 * k + 8], rtol=0, atol=0)


def test_remainder_window_is_aligned_to_the_end():
    features = indexed_features(21)

    windows = frame_windows(features, 8)

    assert tuple(windows.shape) == (3, 4, 8)
    assert windows[0, 0].tolist() == list(range(0, 8))
    assert windows[1, 0].tolist() == list(range(8, 16))
    assert windows[2, 0].tolist() == list(range(13, 21))  # overlaps the one before, no padding


@pytest.mark.parametrize("window", [1, 7, 16, 224])
def test_windows_cover_every_frame(window):
    for frames in [1, 2, window - 1, window, window + 1, 2 * window, 3 * window - 1, 10 * window + 3]:
        if frames < 1:
            continue
        windows = frame_windows(indexed_features(frames, n_mels=2), window)
        assert tuple(windows.shape) == (math.ceil(frames / window), 2, window), frames
        covered = set()
        for w in windows:
            idx = w[0].long().tolist()
            if frames >= window:  # a real window is a contiguous run of frames
                assert idx == list(range(idx[0], idx[0] + window)), frames
            assert w[1].long().tolist() == [1000 + j for j in idx]  # mel rows stay aligned
            covered.update(idx)
        assert covered == set(range(frames)), frames


# --------------------------------------------------------------------------------------------------
# featurize


def test_featurize_30_seconds_with_the_default_config():
    sr = DEFAULT.sample_rate_hz
    y = np.tile(make_signal(sr, 5.0, seed=3), 6)
    assert len(y) == 30 * sr
    extractor = LogMel(DEFAULT)

    windows = featurize(y, extractor)

    frames = n_frames(len(y), DEFAULT)
    assert frames == 2584
    assert windows.dtype == np.float16
    assert windows.shape == (math.ceil(frames / 224), 128, 224) == (12, 128, 224)
    assert np.isfinite(windows).all()
    expected = frame_windows(extractor(torch.from_numpy(y)), 224).numpy()
    np.testing.assert_allclose(windows.astype(np.float32), expected, rtol=1e-3, atol=2e-3)
    # normalised values are O(1)
    assert 0.1 < float(np.abs(windows.astype(np.float32)).mean()) < 10


def test_featurize_short_clip_gives_one_tiled_window():
    sr = SMALL.sample_rate_hz
    y = make_signal(sr, 0.5, seed=4)
    windows = featurize(y, LogMel(SMALL))
    frames = n_frames(len(y), SMALL)
    assert frames < SMALL.window_frames
    assert windows.shape == (1, SMALL.n_mels, SMALL.window_frames)
    np.testing.assert_array_equal(windows[0, :, frames:], windows[0, :, : SMALL.window_frames - frames])


def test_featurize_accepts_float64_and_non_contiguous_input():
    y = make_signal(SMALL.sample_rate_hz, 2.0, seed=5)
    extractor = LogMel(SMALL)
    reference = featurize(y, extractor)
    strided = np.stack([y, y], axis=1)[:, 0]  # a non-contiguous view
    np.testing.assert_array_equal(featurize(strided, extractor), reference)
    np.testing.assert_array_equal(featurize(y.astype(np.float64), extractor), reference)


# --------------------------------------------------------------------------------------------------
# ExcerptFeaturizer


@pytest.fixture(scope="module")
def stereo_60s_wav(tmp_path_factory):
    sr = 44100
    rng = np.random.default_rng(60)
    t = np.arange(60 * sr) / sr
    left = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.05 * rng.standard_normal(len(t))
    right = 0.3 * np.sin(2 * np.pi * 660.0 * t) + 0.05 * rng.standard_normal(len(t))
    data = (np.stack([left, right], axis=1) * 32767).astype(np.int16)
    path = tmp_path_factory.mktemp("featurizer") / "stereo60.wav"
    sf.write(path, data, sr, subtype="PCM_16")
    return path, data, sr


def test_excerpt_featurizer_on_a_long_stereo_wav(stereo_60s_wav):
    path, data, sr = stereo_60s_wav
    featurizer = ExcerptFeaturizer(DEFAULT)

    started = time.perf_counter()
    out = featurizer(path)
    wall_s = time.perf_counter() - started

    assert isinstance(out, FeaturizedAudio)
    assert out.record.duration_s == pytest.approx(60.0)
    assert out.record.sample_rate_hz == sr
    assert out.record.channels == 2
    assert out.record.offset_s == pytest.approx(15.0)
    assert out.record.excerpt_s == pytest.approx(30.0)
    frames = n_frames(30 * DEFAULT.sample_rate_hz, DEFAULT)
    assert out.windows.dtype == np.float16
    assert out.windows.shape == (math.ceil(frames / DEFAULT.window_frames), 128, 224)
    timings = [out.record.decode_s, out.record.resample_s, out.record.features_s]
    assert all(isinstance(v, float) and v > 0.0 for v in timings) and out.record.windows == out.windows.shape[0]
    assert sum(timings) <= wall_s  # the stages are timed inside the call, each once
    # the windows are those of the middle 30 s, downmixed and resampled
    excerpt = (data[15 * sr : 45 * sr].T.astype(np.float32) / 32768.0).astype(np.float32)
    mono = resample(downmix(excerpt), sr, DEFAULT.sample_rate_hz)
    expected = featurize(mono, LogMel(DEFAULT))
    np.testing.assert_allclose(out.windows.astype(np.float32), expected.astype(np.float32), atol=2e-2)


def test_excerpt_featurizer_reads_file_objects(stereo_60s_wav):
    path, _, _ = stereo_60s_wav
    featurizer = ExcerptFeaturizer(SMALL)
    from_path = featurizer(path)
    with open(path, "rb") as f:
        from_file = featurizer(f)
    np.testing.assert_array_equal(from_file.windows, from_path.windows)
    assert from_file.record.offset_s == from_path.record.offset_s


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty"),
        (b"definitely not audio\n" * 40, "unsupported or not audio"),
        (None, "too short"),
    ],
    ids=["empty", "text", "too-short"],
)
def test_excerpt_featurizer_tags_decode_failures(tmp_path, payload, message):
    if payload is None:
        buffer = io.BytesIO()
        sf.write(buffer, np.zeros(4000, np.float32), 8000, format="WAV", subtype="PCM_16")
        payload = buffer.getvalue()
    path = tmp_path / "bad.wav"
    path.write_bytes(payload)

    with pytest.raises(StageError, match=message) as info:
        ExcerptFeaturizer(DEFAULT)(path)

    assert info.value.stage == "decode"
    assert isinstance(info.value, AcousticSenseError)


def test_the_module_follows_a_dtype_change():
    # The sparse CPU filterbank is a cached copy: after .double() it must be rebuilt, not mixed with float64 power.
    signal = torch.from_numpy(make_signal(DEFAULT.sample_rate_hz, 1.0, 0))
    single = LogMel(DEFAULT)(signal)
    double = LogMel(DEFAULT).double()(signal.double())
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), single, rtol=0, atol=1e-3)
