"""Decoding, excerpt choice, downmix and resampling (acousticsense.audio).

Every file is written by the tests themselves into pytest's temporary directories: WAV, FLAC, OGG and
MP3 through soundfile (libsndfile), M4A/AAC through PyAV so that the FFmpeg fallback decoder is used.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from acousticsense import audio as audio_module
from acousticsense.audio import (
    AudioInfo,
    audio_info,
    choose_excerpt,
    decode_excerpt,
    decode_segments,
    downmix,
    read_excerpt,
    resample,
)
from acousticsense.config import FeatureConfig
from acousticsense.errors import AcousticSenseError, AudioDecodeError
from tests.conftest import write_m4a

DEFAULT = FeatureConfig()
BLOCK = 16384  # libsndfile can crash writing long OGG/MP3 in one call: write in blocks

# --------------------------------------------------------------------------------------------------
# helpers


def write_blocks(path: Path, frames: np.ndarray, sr: int, fmt: str, subtype: str) -> Path:
    """Write ``(samples, channels)`` through ``sf.SoundFile`` in blocks of BLOCK frames."""
    frames = frames.reshape(len(frames), -1)
    with sf.SoundFile(path, "w", sr, frames.shape[1], format=fmt, subtype=subtype) as f:
        for i in range(0, len(frames), BLOCK):
            f.write(frames[i : i + BLOCK])
    return path


def write_format(path_stem: Path, kind: str, frames: np.ndarray, sr: int) -> Path:
    """Write ``(samples, channels)`` float32 in one of the formats the tests cover."""
    if kind == "wav16":
        return write_blocks(path_stem.with_suffix(".wav"), frames, sr, "WAV", "PCM_16")
    if kind == "wavfloat":
        return write_blocks(path_stem.with_suffix(".wav"), frames, sr, "WAV", "FLOAT")
    if kind == "flac":
        return write_blocks(path_stem.with_suffix(".flac"), frames, sr, "FLAC", "PCM_16")
    if kind == "ogg":
        return write_blocks(path_stem.with_suffix(".ogg"), frames, sr, "OGG", "VORBIS")
    if kind == "mp3":
        return write_blocks(path_stem.with_suffix(".mp3"), frames, sr, "MP3", "MPEG_LAYER_III")
    if kind == "m4a":
        return write_m4a(path_stem.with_suffix(".m4a"), frames, sr)
    raise AssertionError(kind)


def sine(freq_hz: float, seconds: float, sr: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def dominant_hz(signal: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.argmax(spectrum)) * sr / len(signal)


def pcm16(rng: np.random.Generator, samples: int, channels: int) -> np.ndarray:
    """Random int16 ``(samples, channels)``; each channel gets its own content and offset."""
    data = rng.integers(-20000, 20000, size=(samples, channels), dtype=np.int16)
    return data


def write_pcm16_wav(path: Path, data: np.ndarray, sr: int) -> Path:
    sf.write(path, data, sr, subtype="PCM_16")
    return path


def as_float(data_int16: np.ndarray) -> np.ndarray:
    """What the decoder should return for PCM_16: ``(channels, samples)`` float32 = int16 / 32768."""
    return (data_int16.T.astype(np.float32) / np.float32(32768.0)).astype(np.float32)


def lowpass_noise(rng: np.random.Generator, samples: int) -> np.ndarray:
    noise = rng.standard_normal(samples).astype(np.float32)
    return (0.4 * np.convolve(noise, np.ones(8) / 8, mode="same")).astype(np.float32)


def lag_of(decoded: np.ndarray, reference: np.ndarray, start: int, max_lag: int = 3000) -> tuple[int, float]:
    """Lag (in samples) at which ``decoded[start:start+n]`` best matches ``reference``, and the match."""
    n = 8192
    seg = decoded[start : start + n]
    lo = max(0, start - max_lag)
    ref = reference[lo : start + n + max_lag]
    cc = np.correlate(ref, seg, mode="valid")
    best = int(np.argmax(cc))
    matched = ref[best : best + n]
    corr = float(cc[best] / np.sqrt(np.dot(seg, seg) * np.dot(matched, matched)))
    return best + lo - start, corr


# --------------------------------------------------------------------------------------------------
# every format decodes, with the right content


FORMATS = ["wav16", "wavfloat", "flac", "ogg", "mp3", "m4a"]
CODEC_WORD = {
    "wav16": "wav/pcm_16",
    "wavfloat": "wav/float",
    "flac": "flac",
    "ogg": "vorbis",
    "mp3": "mpeg_layer_iii",
    "m4a": "aac",
}


@pytest.mark.parametrize("kind", FORMATS)
def test_decode_every_format_keeps_channels_and_pitch(tmp_path, kind):
    sr = 44100
    left, right = sine(440.0, 3.0, sr), sine(660.0, 3.0, sr)
    path = write_format(tmp_path / "tone", kind, np.stack([left, right], axis=1), sr)

    excerpt = decode_excerpt(path, DEFAULT)

    assert excerpt.waveform.dtype == np.float32
    assert excerpt.waveform.shape[0] == 2
    assert excerpt.info.sample_rate_hz == sr
    assert excerpt.info.channels == 2
    assert CODEC_WORD[kind] in excerpt.info.codec
    assert excerpt.offset_s == 0.0  # shorter than the excerpt: the whole file
    # lossless formats are exact in length; lossy ones may carry encoder padding
    tolerance = 0.0 if kind in ("wav16", "wavfloat", "flac") else 0.1
    assert abs(excerpt.info.duration_s - 3.0) <= tolerance
    assert abs(excerpt.duration_s - excerpt.info.duration_s) <= 1.0 / sr
    assert np.abs(excerpt.waveform).max() <= 1.0
    # left channel stays left, right stays right, and the pitch survives the codec
    assert dominant_hz(excerpt.waveform[0], sr) == pytest.approx(440.0, abs=2.0)
    assert dominant_hz(excerpt.waveform[1], sr) == pytest.approx(660.0, abs=2.0)


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_wav_samples_are_exact(tmp_path, subtype):
    sr = 22050
    rng = np.random.default_rng(1)
    if subtype == "PCM_16":
        data = pcm16(rng, 2 * sr + 17, 2)
        expected = as_float(data)
    else:
        data = rng.uniform(-0.9, 0.9, size=(2 * sr + 17, 2)).astype(np.float32)
        expected = data.T
    path = tmp_path / "exact.wav"
    sf.write(path, data, sr, subtype=subtype)

    excerpt = decode_excerpt(path, DEFAULT)

    assert excerpt.waveform.dtype == np.float32
    np.testing.assert_array_equal(excerpt.waveform, expected)


# --------------------------------------------------------------------------------------------------
# excerpt choice


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000, 96000])
def test_long_file_reads_the_middle_30_seconds(tmp_path, sr):
    rng = np.random.default_rng(sr)
    total = 30 * sr + int(7.3 * sr) + 1  # odd extra so the middle is not a whole number of samples
    data = pcm16(rng, total, 1)
    path = write_pcm16_wav(tmp_path / "long.wav", data, sr)

    excerpt = decode_excerpt(path, DEFAULT)

    total_s = total / sr
    assert excerpt.info == AudioInfo(sr, 1, total_s, "wav/pcm_16")
    assert excerpt.offset_s == pytest.approx((total_s - 30.0) / 2)
    assert excerpt.waveform.shape == (1, 30 * sr)
    assert abs(excerpt.duration_s - 30.0) <= 1.0 / sr
    start = int(round(excerpt.offset_s * sr))
    assert abs(start - (total - 30 * sr) / 2) <= 1.0
    np.testing.assert_array_equal(excerpt.waveform, as_float(data)[:, start : start + 30 * sr])


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000, 96000])
def test_short_file_is_read_whole(tmp_path, sr):
    rng = np.random.default_rng(sr + 1)
    data = pcm16(rng, int(2.5 * sr), 2)
    path = write_pcm16_wav(tmp_path / "short.wav", data, sr)

    excerpt = decode_excerpt(path, DEFAULT)

    assert excerpt.offset_s == 0.0
    assert excerpt.info.sample_rate_hz == sr
    assert excerpt.info.duration_s == pytest.approx(2.5)
    np.testing.assert_array_equal(excerpt.waveform, as_float(data))


def test_exact_excerpt_length_is_read_whole(tmp_path):
    sr = 8000
    data = pcm16(np.random.default_rng(3), 30 * sr, 1)
    path = write_pcm16_wav(tmp_path / "exact30.wav", data, sr)

    excerpt = decode_excerpt(path, DEFAULT)

    assert excerpt.offset_s == 0.0
    assert excerpt.waveform.shape == (1, 30 * sr)
    np.testing.assert_array_equal(excerpt.waveform, as_float(data))


def test_start_policy_reads_the_first_seconds(tmp_path):
    sr = 8000
    data = pcm16(np.random.default_rng(4), 50 * sr, 2)
    path = write_pcm16_wav(tmp_path / "start.wav", data, sr)
    config = FeatureConfig(excerpt_policy="start")

    excerpt = decode_excerpt(path, config)

    assert excerpt.offset_s == 0.0
    assert excerpt.info.duration_s == pytest.approx(50.0)
    np.testing.assert_array_equal(excerpt.waveform, as_float(data)[:, : 30 * sr])


def test_custom_excerpt_length(tmp_path):
    sr = 8000
    data = pcm16(np.random.default_rng(5), 20 * sr, 1)
    path = write_pcm16_wav(tmp_path / "custom.wav", data, sr)

    excerpt = decode_excerpt(path, FeatureConfig(excerpt_s=4.0))

    assert excerpt.offset_s == pytest.approx(8.0)
    np.testing.assert_array_equal(excerpt.waveform, as_float(data)[:, 8 * sr : 12 * sr])


@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_channels_come_back_as_rows(tmp_path, channels, fmt):
    sr = 16000
    data = pcm16(np.random.default_rng(channels), 3 * sr, channels)
    path = tmp_path / f"ch{channels}.{fmt}"
    sf.write(path, data, sr, subtype="PCM_16")

    excerpt = decode_excerpt(path, DEFAULT)

    assert excerpt.waveform.shape == (channels, 3 * sr)
    assert excerpt.info.channels == channels
    np.testing.assert_array_equal(excerpt.waveform, as_float(data))


@pytest.fixture(scope="module")
def long_files(tmp_path_factory):
    """40 s of stereo low-passed noise at 22.05 kHz in every format, and the signal written."""
    sr = 22050
    signal = lowpass_noise(np.random.default_rng(40), 40 * sr)
    frames = np.stack([signal, -signal], axis=1)  # right = inverted left, to catch channel mixups
    folder = tmp_path_factory.mktemp("long")
    paths = {kind: write_format(folder / kind, kind, frames, sr) for kind in FORMATS}
    return sr, signal, paths


@pytest.mark.parametrize("kind", ["wav16", "flac", "ogg", "mp3"])
def test_long_file_excerpt_is_aligned_in_every_soundfile_format(long_files, kind):
    sr, signal, paths = long_files

    excerpt = decode_excerpt(paths[kind], DEFAULT)

    assert excerpt.info.duration_s == pytest.approx(40.0, abs=0.05)
    assert excerpt.offset_s == pytest.approx(5.0, abs=0.05)
    assert excerpt.waveform.shape == (2, 30 * sr)
    start = int(round(excerpt.offset_s * sr))
    for at in (sr, 15 * sr, 28 * sr):  # the excerpt is the written signal from `start`, sample-exact
        lag, corr = lag_of(excerpt.waveform[0], signal[start:], at)
        assert lag == 0
        assert corr > 0.7  # noise: a misaligned excerpt correlates near 0
    lag, corr = lag_of(-excerpt.waveform[1], signal[start:], 10 * sr)
    assert (lag, corr > 0.7) == (0, True)


def test_long_m4a_excerpt_matches_the_whole_decode(long_files):
    """The FFmpeg path seeks to a keyframe and trims: same samples as decoding everything and slicing."""
    sr, signal, paths = long_files

    excerpt = decode_excerpt(paths["m4a"], DEFAULT)
    whole, whole_sr = read_excerpt(paths["m4a"])

    assert whole_sr == sr
    assert excerpt.info.codec == "aac"
    assert excerpt.info.duration_s == pytest.approx(40.0, abs=0.1)
    assert excerpt.offset_s == pytest.approx((excerpt.info.duration_s - 30.0) / 2)
    assert excerpt.waveform.shape == (2, 30 * sr)
    start = int(round(excerpt.offset_s * sr))
    # the decoder has no overlap from before the seek point for the first frames: skip them
    np.testing.assert_allclose(excerpt.waveform[:, 4096:], whole[:, start + 4096 : start + 30 * sr], atol=1e-6)
    # and it is the written noise (AAC delays it by its priming samples; find the lag, then check it)
    lag, corr = lag_of(whole[0], signal, 10 * sr)
    assert corr > 0.9
    assert 0 <= -lag <= 2112


@pytest.mark.parametrize(("offset_s", "duration_s"), [(7.3, 5.0), (0.5, 3.0), (20.01, 2.0)])
def test_m4a_read_excerpt_is_seek_exact(long_files, offset_s, duration_s):
    sr, _, paths = long_files
    whole, _ = read_excerpt(paths["m4a"])

    part, part_sr = read_excerpt(paths["m4a"], offset_s, duration_s)

    assert part_sr == sr
    assert part.shape == (2, int(round(duration_s * sr)))
    start = int(round(offset_s * sr))
    np.testing.assert_allclose(part[:, 4096:], whole[:, start + 4096 : start + part.shape[1]], atol=1e-6)


# --------------------------------------------------------------------------------------------------
# paths and file objects


@pytest.mark.parametrize("kind", FORMATS)
def test_path_file_object_and_bytesio_agree(long_files, kind):
    _, _, paths = long_files
    path = paths[kind]

    by_path = decode_excerpt(path, DEFAULT)
    by_str = decode_excerpt(str(path), DEFAULT)
    with open(path, "rb") as f:
        by_file = decode_excerpt(f, DEFAULT)
    by_bytes = decode_excerpt(io.BytesIO(path.read_bytes()), DEFAULT)

    for other in (by_str, by_file, by_bytes):
        assert other.info == by_path.info
        assert other.offset_s == by_path.offset_s
        np.testing.assert_array_equal(other.waveform, by_path.waveform)
    assert by_path.waveform.shape[-1] > 0


def test_file_object_read_from_a_nonzero_position(tmp_path):
    """A file object that was read before is rewound, not decoded from where it happens to be."""
    sr = 8000
    data = pcm16(np.random.default_rng(6), 2 * sr, 1)
    path = write_pcm16_wav(tmp_path / "pos.wav", data, sr)
    buffer = io.BytesIO(path.read_bytes())
    buffer.seek(100)

    excerpt = decode_excerpt(buffer, DEFAULT)

    np.testing.assert_array_equal(excerpt.waveform, as_float(data))


def test_audio_info_reads_the_header(tmp_path, long_files):
    sr = 48000
    path = write_pcm16_wav(tmp_path / "info.wav", pcm16(np.random.default_rng(7), 3 * sr, 6), sr)
    assert audio_info(path) == AudioInfo(sr, 6, 3.0, "wav/pcm_16")
    with open(path, "rb") as f:
        assert audio_info(f) == AudioInfo(sr, 6, 3.0, "wav/pcm_16")

    _, _, paths = long_files
    info = audio_info(paths["m4a"])
    assert (info.sample_rate_hz, info.channels, info.codec) == (22050, 2, "aac")
    assert info.duration_s == pytest.approx(40.0, abs=0.1)


def test_read_excerpt_slices_and_validates(tmp_path):
    sr = 8000
    data = pcm16(np.random.default_rng(8), 10 * sr, 2)
    path = write_pcm16_wav(tmp_path / "read.wav", data, sr)
    expected = as_float(data)

    part, part_sr = read_excerpt(path, 2.5, 1.25)
    assert part_sr == sr
    np.testing.assert_array_equal(part, expected[:, 20000:30000])

    rest, _ = read_excerpt(path, 9.0)
    np.testing.assert_array_equal(rest, expected[:, 9 * sr :])

    everything, _ = read_excerpt(path)
    np.testing.assert_array_equal(everything, expected)

    with pytest.raises(ValueError):
        read_excerpt(path, -1.0, 1.0)
    with pytest.raises(ValueError):
        read_excerpt(path, 0.0, -1.0)


# --------------------------------------------------------------------------------------------------
# bad input: always AudioDecodeError with a message that says what is wrong


def _wav_bytes(seconds: float, sr: int = 8000, channels: int = 2, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    data = pcm16(np.random.default_rng(9), int(seconds * sr), channels)
    sf.write(buffer, data, sr, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _flac_bytes(seconds: float, sr: int = 8000) -> bytes:
    buffer = io.BytesIO()
    data = pcm16(np.random.default_rng(10), int(seconds * sr), 2)
    sf.write(buffer, data, sr, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _as_path_or_buffer(tmp_path: Path, name: str, payload: bytes, use_buffer: bool):
    if use_buffer:
        return io.BytesIO(payload)
    path = tmp_path / name
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize("use_buffer", [False, True], ids=["path", "bytesio"])
def test_empty_file(tmp_path, use_buffer):
    source = _as_path_or_buffer(tmp_path, "empty.wav", b"", use_buffer)
    with pytest.raises(AudioDecodeError, match="empty"):
        decode_excerpt(source, DEFAULT)


@pytest.mark.parametrize("use_buffer", [False, True], ids=["path", "bytesio"])
@pytest.mark.parametrize("name", ["notes.wav", "notes.mp3", "notes.m4a"])
def test_text_file_is_not_audio(tmp_path, name, use_buffer):
    payload = b"this is a text file, not a song\n" * 64
    source = _as_path_or_buffer(tmp_path, name, payload, use_buffer)
    with pytest.raises(AudioDecodeError, match="unsupported or not audio"):
        decode_excerpt(source, DEFAULT)


def test_random_bytes_are_not_audio(tmp_path):
    path = tmp_path / "random.flac"
    path.write_bytes(np.random.default_rng(11).bytes(20000))
    with pytest.raises(AudioDecodeError, match="unsupported or not audio"):
        decode_excerpt(path, DEFAULT)


def test_wav_header_without_samples_is_empty(tmp_path):
    path = tmp_path / "header_only.wav"
    path.write_bytes(_wav_bytes(0.0))
    with pytest.raises(AudioDecodeError, match="empty"):
        decode_excerpt(path, DEFAULT)


@pytest.mark.parametrize("use_buffer", [False, True], ids=["path", "bytesio"])
@pytest.mark.parametrize("fraction", [0.9, 0.5, 0.1, 0.02])
def test_truncated_flac(tmp_path, fraction, use_buffer):
    payload = _flac_bytes(10.0)
    cut = payload[: int(len(payload) * fraction)]
    source = _as_path_or_buffer(tmp_path, "cut.flac", cut, use_buffer)
    with pytest.raises(AudioDecodeError, match="truncated"):
        decode_excerpt(source, DEFAULT)


@pytest.mark.parametrize(
    ("keep_bytes", "message"),
    [(20, "unsupported or not audio"), (44, "truncated"), (44 + 4 * 4000, "truncated")],
    ids=["inside-header", "header-only", "too-short-left"],
)
def test_truncated_wav_fails(tmp_path, keep_bytes, message):
    payload = _wav_bytes(10.0)
    path = tmp_path / "cut.wav"
    path.write_bytes(payload[:keep_bytes])
    with pytest.raises(AudioDecodeError, match=message):
        decode_excerpt(path, DEFAULT)


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_wav_cut_in_its_data_is_reported_truncated(tmp_path, subtype):
    payload = _wav_bytes(10.0, subtype=subtype)  # header promises 10 s
    path = tmp_path / "cut.wav"
    path.write_bytes(payload[: len(payload) // 2])  # 5 s of samples left: long enough, not short
    with pytest.raises(AudioDecodeError, match="truncated"):
        decode_excerpt(path, DEFAULT)


@pytest.mark.parametrize("seconds", [0.2, 0.999])
def test_shorter_than_min_duration(tmp_path, seconds):
    path = tmp_path / "short.wav"
    path.write_bytes(_wav_bytes(seconds))
    with pytest.raises(AudioDecodeError, match="too short"):
        decode_excerpt(path, DEFAULT)


def test_min_duration_is_configurable(tmp_path):
    path = tmp_path / "short.wav"
    path.write_bytes(_wav_bytes(0.5))
    with pytest.raises(AudioDecodeError, match="too short"):
        decode_excerpt(path, DEFAULT)
    excerpt = decode_excerpt(path, FeatureConfig(min_duration_s=0.25))
    assert excerpt.waveform.shape == (2, 4000)
    # exactly the minimum is enough
    assert decode_excerpt(path, FeatureConfig(min_duration_s=0.5)).waveform.shape == (2, 4000)


def test_decode_errors_belong_to_the_library_family():
    assert issubclass(AudioDecodeError, AcousticSenseError)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
@pytest.mark.parametrize("kind", ["flac", "ogg", "mp3", "m4a"])
def test_cut_files_raise_only_audio_decode_error(tmp_path, long_files, kind, fraction):
    """Whatever a cut file does, it never escapes as another exception type."""
    _, _, paths = long_files
    payload = paths[kind].read_bytes()
    path = tmp_path / f"cut{paths[kind].suffix}"
    path.write_bytes(payload[: int(len(payload) * fraction)])
    try:
        excerpt = decode_excerpt(path, DEFAULT)
    except AudioDecodeError:
        return
    assert excerpt.waveform.ndim == 2 and excerpt.waveform.shape[0] == 2
    assert excerpt.waveform.shape[1] > 0
    assert np.isfinite(excerpt.waveform).all()


# --------------------------------------------------------------------------------------------------
# hostile headers: refused with a message that names the field, before any sample is allocated


def _zoo(name: str) -> bytes:
    from tests.badfiles import ZOO

    return next(case.data for case in ZOO if case.name == name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("rate 0 hz.wav", "sample rate is 0 Hz"),
        ("rate 1 hz.wav", "unsupported sample rate 1 Hz"),
        ("rate 4 ghz.wav", "sample rate is 4294967295 Hz"),
        ("zero channels.wav", "declares 0 channels"),
        ("unknown codec.wav", "codec 0x7777"),
        ("huge id3 tag.mp3", "the ID3 tag claims 268435465 bytes"),
        ("video only.mkv", "no audio stream"),
    ],
)
def test_hostile_headers_are_refused_naming_the_field(name, message):
    with pytest.raises(AudioDecodeError, match=message):
        decode_excerpt(io.BytesIO(_zoo(name)), DEFAULT)


def test_a_lying_header_is_refused_before_the_reader_allocates(monkeypatch):
    """A FLAC whose STREAMINFO claims 8 channels at 655 kHz for days: soundfile would allocate ~600 MB per
    30 s span up front; the budget check refuses it before any read happens."""

    def no_read(*args, **kwargs):
        raise AssertionError("read() reached: the budget check must come first")

    monkeypatch.setattr(sf.SoundFile, "read", no_read)
    with pytest.raises(AudioDecodeError, match="too large to decode"):
        decode_segments(io.BytesIO(_zoo("flac claims days at 655 khz 8ch.flac")), FeatureConfig(segments=3))


@pytest.mark.parametrize("kind", ["wav", "m4a"])
def test_the_decoded_bytes_budget_holds_for_both_decoders(tmp_path, monkeypatch, kind):
    frames = np.zeros((44100, 2), np.float32)
    if kind == "m4a":
        path = write_m4a(tmp_path / "a.m4a", frames, 44100)
    else:
        path = tmp_path / "a.wav"
        sf.write(path, frames, 44100)
    assert decode_excerpt(path, DEFAULT).waveform.shape[0] == 2
    monkeypatch.setattr(audio_module, "MAX_DECODED_BYTES", 44100 * 2 * 4 // 2)  # half the file
    with pytest.raises(AudioDecodeError, match="too large to decode"):
        decode_excerpt(path, DEFAULT)


# --------------------------------------------------------------------------------------------------
# choose_excerpt, downmix, resample


@pytest.mark.parametrize(
    ("total_s", "excerpt_s", "policy", "expected"),
    [
        (10.0, 30.0, "middle", (0.0, 10.0)),
        (10.0, 30.0, "start", (0.0, 10.0)),
        (30.0, 30.0, "middle", (0.0, 30.0)),
        (50.0, 30.0, "middle", (10.0, 30.0)),
        (50.0, 30.0, "start", (0.0, 30.0)),
        (245.5, 30.0, "middle", (107.75, 30.0)),
        (31.0, 30.0, "middle", (0.5, 30.0)),
        (12.0, 5.0, "middle", (3.5, 5.0)),
    ],
)
def test_choose_excerpt(total_s, excerpt_s, policy, expected):
    assert choose_excerpt(total_s, excerpt_s, policy) == pytest.approx(expected)


def test_choose_excerpt_default_policy_is_middle():
    assert choose_excerpt(100.0, 30.0) == pytest.approx((35.0, 30.0))


def test_choose_excerpt_rejects_unknown_policy():
    with pytest.raises(ValueError, match="policy"):
        choose_excerpt(100.0, 30.0, "end")


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_downmix_is_the_channel_mean(channels):
    rng = np.random.default_rng(channels)
    waveform = rng.uniform(-1, 1, size=(channels, 5000)).astype(np.float32)
    before = waveform.copy()

    mono = downmix(waveform)

    assert mono.dtype == np.float32
    assert mono.shape == (5000,)
    np.testing.assert_allclose(mono, waveform.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(waveform, before)  # the input is left alone


@pytest.mark.parametrize("channels", [2, 6])
def test_downmix_of_an_interleaved_view(channels):
    """Decoders hand back ``frames.T``: a strided view of an interleaved buffer."""
    interleaved = np.random.default_rng(12).uniform(-1, 1, size=(4000, channels)).astype(np.float32)
    mono = downmix(interleaved.T)
    np.testing.assert_allclose(mono, interleaved.mean(axis=1), rtol=1e-5, atol=1e-6)


def test_downmix_of_mono_vector_is_itself():
    vector = np.linspace(-1, 1, 100, dtype=np.float64)
    mono = downmix(vector)
    assert mono.dtype == np.float32
    np.testing.assert_allclose(mono, vector, rtol=1e-6)


@pytest.mark.parametrize(
    ("from_hz", "to_hz"), [(44100, 22050), (48000, 22050), (8000, 22050), (96000, 22050), (22050, 16000)]
)
def test_resample_changes_length_by_the_ratio_and_keeps_pitch(from_hz, to_hz):
    seconds = 2.0
    tone = sine(1000.0, seconds, from_hz)

    out = resample(tone, from_hz, to_hz)

    assert out.dtype == np.float32
    assert out.ndim == 1
    assert abs(len(out) - len(tone) * to_hz / from_hz) <= 1
    assert dominant_hz(out, to_hz) == pytest.approx(1000.0, abs=1.0)
    middle = out[len(out) // 4 : 3 * len(out) // 4]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / math.sqrt(2), rel=0.02)  # level kept


def test_resample_at_the_same_rate_is_a_no_op():
    tone = sine(440.0, 0.5, 22050)
    assert resample(tone, 22050, 22050) is tone


def test_resample_removes_what_the_new_rate_cannot_hold():
    """A 15 kHz tone is above 22.05 kHz's Nyquist: an anti-aliasing resampler drops it, not folds it."""
    tone = sine(15000.0, 1.0, 44100)
    out = resample(tone, 44100, 22050)
    middle = out[2000:-2000]
    assert np.sqrt(np.mean(middle**2)) < 1e-3 * 0.5 / math.sqrt(2)  # below -60 dB
