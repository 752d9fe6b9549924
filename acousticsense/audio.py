"""Audio decoding with seeked excerpt reads, downmix and resampling.

Two decoders sit behind one tiny seam: libsndfile (through ``soundfile``) reads WAV, FLAC, OGG
Vorbis/Opus, MP3, AIFF and the other formats libsndfile knows, seeking straight to the excerpt;
FFmpeg (through PyAV) reads what libsndfile cannot: AAC/M4A, ALAC, WMA, Opus in other containers,
video files' audio tracks. The composite tries soundfile first (faster, exact seeks) and reports both
failures in one message when neither can read the input.

Waveforms are float32 ``(channels, samples)`` at the file's native rate; resampling is a separate step.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Union

import numpy as np
import soundfile as sf
import soxr

from acousticsense.config import FeatureConfig
from acousticsense.errors import AudioDecodeError

__all__ = [
    "AudioSource",
    "AudioInfo",
    "DecodedExcerpt",
    "audio_info",
    "read_excerpt",
    "choose_excerpt",
    "decode_excerpt",
    "decode_segments",
    "choose_segments",
    "downmix",
    "resample",
    "MIN_SAMPLE_RATE_HZ",
    "MAX_SAMPLE_RATE_HZ",
    "MAX_CHANNELS",
    "MAX_DECODED_BYTES",
]

AudioSource = Union[str, os.PathLike, BinaryIO]

# A decoder is asked to read the span that this callback picks once the file's info is known, so
# that one open serves both the header read and the seeked read.
_Span = tuple[float, "float | None"]  # (offset_s, duration_s); None: to the end
_SpanChooser = Callable[["AudioInfo"], "list[_Span]"]

# Decoded audio may end a little before what the header promised (MP3/OGG encoder padding, rounding
# of seek points); more than this is a truncated file.
_TRUNCATION_TOLERANCE_S = 0.25

# Header values past these are corrupt or hostile, not music: refused before any sample is allocated.
# 1 kHz is below any real recording (telephone audio is 8 kHz); 768 kHz is the highest PCM rate in use.
MIN_SAMPLE_RATE_HZ = 1_000
MAX_SAMPLE_RATE_HZ = 768_000
MAX_CHANNELS = 255  # Ogg/Opus's ceiling; WAV and libsndfile would take more
# Decoded float32 one file may occupy (every requested span, every channel): a lying header (FLAC's
# STREAMINFO, a 64-channel 768 kHz WAV) would otherwise make the reader allocate gigabytes up front.
MAX_DECODED_BYTES = 1 << 30


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says about it."""

    sample_rate_hz: int
    channels: int
    duration_s: float
    codec: str


@dataclass(frozen=True)
class DecodedExcerpt:
    """An excerpt read from a file.

    Attributes:
        waveform: float32 ``(channels, samples)`` in [-1, 1], at ``info.sample_rate_hz``.
        offset_s: where the excerpt starts in the file, seconds.
        info: the whole file's header information (``info.duration_s`` is the full track length).
    """

    waveform: np.ndarray
    offset_s: float
    info: AudioInfo

    @property
    def duration_s(self) -> float:
        return self.waveform.shape[-1] / self.info.sample_rate_hz


def audio_info(source: AudioSource) -> AudioInfo:
    """Read a file's header: sample rate, channels, duration and codec."""
    _, info = _decode(source, lambda info: [])
    return info


def read_excerpt(source: AudioSource, offset_s: float = 0.0, duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Read ``duration_s`` seconds from ``offset_s`` (to the end when ``None``), seeking, not decoding all.

    Args:
        source: a local path or a seekable binary file object (e.g. from ``fsspec.open``).
        offset_s: start of the excerpt in seconds.
        duration_s: length of the excerpt in seconds, or ``None`` for the rest of the file.

    Returns:
        ``(waveform, sample_rate_hz)``: float32 ``(channels, samples)`` at the native rate.

    Raises:
        AudioDecodeError: neither decoder can read the input, or it is truncated.
    """
    if offset_s < 0 or (duration_s is not None and duration_s < 0):
        raise ValueError("offset_s and duration_s must be >= 0")
    waveforms, info = _decode(source, lambda info: [(offset_s, duration_s)])
    return waveforms[0], info.sample_rate_hz


def choose_excerpt(total_s: float, excerpt_s: float, policy: str = "middle") -> tuple[float, float]:
    """Pick the span to analyse: ``excerpt_s`` seconds from the middle (or start); all of a shorter file.

    Returns:
        ``(offset_s, duration_s)``.
    """
    if total_s <= excerpt_s:
        return 0.0, total_s
    if policy == "start":
        return 0.0, excerpt_s
    if policy == "middle":
        return (total_s - excerpt_s) / 2.0, excerpt_s
    raise ValueError(f"unknown excerpt policy {policy!r}; use 'middle' or 'start'")


def choose_segments(
    total_s: float, excerpt_s: float, segments: int, policy: str = "middle"
) -> list[tuple[float, float]]:
    """Spread ``segments`` excerpts of ``excerpt_s`` seconds evenly over a track, never overlapping.

    A track too short for all of them gets as many as fit (at least one: the whole track when shorter
    than one excerpt). With one segment this is :func:`choose_excerpt`.

    Returns:
        ``[(offset_s, duration_s), ...]`` in time order.
    """
    if segments < 1:
        raise ValueError("segments must be >= 1")
    fitting = min(segments, int(total_s // excerpt_s)) if total_s > excerpt_s else 1
    if fitting == 1:
        return [choose_excerpt(total_s, excerpt_s, policy)]
    gap = (total_s - fitting * excerpt_s) / fitting  # equal room around every segment
    return [(gap / 2 + k * (excerpt_s + gap), excerpt_s) for k in range(fitting)]


def decode_segments(source: AudioSource, config: FeatureConfig) -> list[DecodedExcerpt]:
    """Decode the ``config.segments`` excerpts ``config`` asks for (one open, one seek each), checked usable.

    Raises:
        AudioDecodeError: unreadable, empty, truncated, or shorter than ``config.min_duration_s``.
    """

    def spans(info: AudioInfo) -> list[tuple[float, float]]:
        if info.duration_s <= 0:
            raise AudioDecodeError("empty audio: the file holds no samples")
        if info.duration_s < config.min_duration_s:
            raise AudioDecodeError(
                f"too short: {info.duration_s:.3f} s of audio, the minimum is {config.min_duration_s} s"
            )
        return choose_segments(info.duration_s, config.excerpt_s, config.segments, config.excerpt_policy)

    waveforms, info = _decode(source, spans)
    chosen = spans(info)  # deterministic: the same spans the decoder read
    if any(w.shape[-1] == 0 for w in waveforms):
        raise AudioDecodeError("empty audio: no samples could be decoded")
    return [DecodedExcerpt(waveform=w, offset_s=offset_s, info=info) for w, (offset_s, _) in zip(waveforms, chosen)]


def decode_excerpt(source: AudioSource, config: FeatureConfig) -> DecodedExcerpt:
    """Decode the (first) excerpt that ``config`` asks for; see :func:`decode_segments`."""
    return decode_segments(source, config)[0]


def downmix(waveform: np.ndarray) -> np.ndarray:
    """Average channels: ``(channels, samples)`` -> float32 ``(samples,)``.

    Sums rows one at a time: ``mean(axis=0)`` over an interleaved (strided) buffer is several
    times slower for stereo.
    """
    if waveform.ndim == 1:
        return np.ascontiguousarray(waveform, dtype=np.float32)
    channels = waveform.shape[0]
    mono = np.array(waveform[0], dtype=np.float32, copy=True)
    for row in waveform[1:]:
        mono += row
    if channels > 1:
        mono *= np.float32(1.0 / channels)
    return mono


def resample(waveform: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Resample float32 ``(samples,)`` with soxr (high quality); a no-op at equal rates."""
    if from_hz == to_hz:
        return waveform
    return soxr.resample(waveform, from_hz, to_hz, quality="HQ").astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------------
# decoders


def _decode(source: AudioSource, choose: _SpanChooser) -> tuple[list[np.ndarray], AudioInfo]:
    errors: list[str] = []
    for name, decoder in (("soundfile", _decode_soundfile), ("ffmpeg", _decode_pyav)):
        _rewind(source)
        try:
            return decoder(source, choose)
        except AudioDecodeError as e:
            if not isinstance(e, _UndecodableError):
                raise  # the decoder read the file and found it unusable: do not try another
            errors.append(f"{name}: {e}")
    if _size(source) == 0:
        raise AudioDecodeError("empty file (0 bytes)")
    head = _head(source, 4096)
    problem = _wav_header_problem(head) or _id3_problem(head, _size(source))
    raise AudioDecodeError("unsupported or not audio; " + "; ".join(([problem] if problem else []) + errors))


def _head(source: AudioSource, size: int) -> bytes:
    """The first ``size`` bytes (fewer when the file is shorter, none when it cannot be read)."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                return f.read(size)
        source.seek(0)
        head = source.read(size)
        source.seek(0)
        return head if isinstance(head, bytes) else b""
    except (OSError, ValueError, AttributeError):
        return b""


def _wav_header_problem(head: bytes) -> str | None:
    """Name what is wrong in a RIFF/WAVE ``fmt `` chunk that both decoders refused (libsndfile only says
    "SF_INFO struct incomplete" for a 0 Hz rate), so the error row says which header field lies."""
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX", b"RF64") or head[8:12] != b"WAVE":
        return None
    position = 12
    while position + 8 <= len(head):
        chunk, size = head[position : position + 4], int.from_bytes(head[position + 4 : position + 8], "little")
        if chunk == b"fmt " and position + 24 <= len(head):
            code, channels, rate = struct.unpack_from("<HHI", head, position + 8)
            bits = struct.unpack_from("<H", head, position + 22)[0]
            if not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
                return f"the WAV header's sample rate is {rate} Hz ({_RATE_RANGE})"
            if not 0 < channels <= MAX_CHANNELS:
                return f"the WAV header declares {channels} channels (1 to {MAX_CHANNELS} are supported)"
            if bits == 0:
                return "the WAV header declares 0 bits per sample"
            return f"the WAV header's codec 0x{code:04x} is not one the decoders know"
        position += 8 + size + (size & 1)
    return "the WAV file has no readable 'fmt ' chunk"


def _id3_problem(head: bytes, size: int | None) -> str | None:
    """An ID3v2 tag that claims more bytes than the file has hides the audio from both decoders; say so."""
    if len(head) < 10 or head[:3] != b"ID3" or size is None:
        return None
    claimed = 10 + sum((byte & 0x7F) << shift for byte, shift in zip(head[6:10], (21, 14, 7, 0)))
    if claimed > size:
        return f"the ID3 tag claims {claimed} bytes, the file has {size}"
    return None


_RATE_RANGE = f"supported: {MIN_SAMPLE_RATE_HZ} to {MAX_SAMPLE_RATE_HZ} Hz"


def _check_header(info: AudioInfo) -> None:
    """Refuse header values no real recording has, before a sample is read."""
    if not MIN_SAMPLE_RATE_HZ <= info.sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
        raise AudioDecodeError(f"unsupported sample rate {info.sample_rate_hz} Hz in the header ({_RATE_RANGE})")
    if not 0 < info.channels <= MAX_CHANNELS:
        raise AudioDecodeError(f"unsupported channel count {info.channels} (1 to {MAX_CHANNELS} are supported)")


def _check_budget(info: AudioInfo, spans: list[_Span]) -> None:
    """Refuse a read whose float32 output would pass :data:`MAX_DECODED_BYTES` (readers allocate it up front)."""
    frames = 0
    for span in spans:
        start, count = _span_frames(span, info)
        frames += (int(round(info.duration_s * info.sample_rate_hz)) - start) if count is None else count
    needed = frames * info.channels * 4
    if needed > MAX_DECODED_BYTES:
        raise AudioDecodeError(
            f"too large to decode: {frames} frames x {info.channels} channels would take {needed / 2**30:.1f} GiB "
            f"(the limit is {MAX_DECODED_BYTES / 2**30:g} GiB); corrupt header?"
        )


def _size(source: AudioSource) -> int | None:
    try:
        if isinstance(source, (str, os.PathLike)):
            return os.path.getsize(source)
        position = source.seek(0, io.SEEK_END)
        source.seek(0)
        return position
    except (OSError, ValueError, AttributeError):
        return None


class _UndecodableError(AudioDecodeError):
    """This decoder cannot read the input at all (another one may)."""


def _rewind(source: AudioSource) -> None:
    if hasattr(source, "seek"):
        with contextlib.suppress(OSError, ValueError):
            source.seek(0)  # type: ignore[union-attr]


def _span_frames(span: _Span, info: AudioInfo) -> tuple[int, int | None]:
    """A span in frames, clamped to the file: asking past the end is not a truncation."""
    offset_s, duration_s = span
    total = int(round(info.duration_s * info.sample_rate_hz))
    start = min(int(round(offset_s * info.sample_rate_hz)), total)
    count = None if duration_s is None else min(int(round(duration_s * info.sample_rate_hz)), total - start)
    return start, count


# libsndfile shortens a cut PCM file to the bytes present and only says so in its log, e.g.
# "data : 441000 (should be 220478)"; 0 and 0xFFFFFFFF are streaming writers' "unknown length".
_CHUNK_SHORTFALL = re.compile(r"^(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _check_chunk_sizes(handle: sf.SoundFile) -> None:
    for declared, present in _CHUNK_SHORTFALL.findall(handle.extra_info):
        declared_bytes, present_bytes = int(declared), int(present)
        if declared_bytes not in (0, 0xFFFFFFFF) and present_bytes < declared_bytes:
            raise AudioDecodeError(
                f"truncated: the header announces {declared_bytes} bytes of audio data, the file holds {present_bytes}"
            )


def _check_complete(got: int, wanted: int | None, sample_rate_hz: int) -> None:
    if wanted is not None and wanted - got > _TRUNCATION_TOLERANCE_S * sample_rate_hz:
        raise AudioDecodeError(
            f"truncated: expected {wanted / sample_rate_hz:.2f} s of audio from the header, "
            f"decoded only {got / sample_rate_hz:.2f} s"
        )


def _decode_soundfile(source: AudioSource, choose: _SpanChooser) -> tuple[list[np.ndarray], AudioInfo]:
    try:
        handle = sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise _UndecodableError(str(e)) from e
    with handle:
        _check_chunk_sizes(handle)
        info = AudioInfo(
            sample_rate_hz=int(handle.samplerate),
            channels=int(handle.channels),
            duration_s=handle.frames / handle.samplerate if handle.frames > 0 else 0.0,
            codec=f"{handle.format}/{handle.subtype}".lower(),
        )
        _check_header(info)
        spans = choose(info)
        _check_budget(info, spans)
        return [_soundfile_span(handle, info, span) for span in spans], info


def _soundfile_span(handle: sf.SoundFile, info: AudioInfo, span: _Span) -> np.ndarray:
    start, count = _span_frames(span, info)
    if count == 0:
        return np.zeros((info.channels, 0), np.float32)
    try:
        handle.seek(start)
        # 16-bit PCM converted in NumPy is ~9x cheaper than libsndfile's own float conversion.
        if handle.subtype == "PCM_16":
            raw = handle.read(-1 if count is None else count, dtype="int16", always_2d=True)
            frames = np.multiply(raw, np.float32(1.0 / 32768.0), dtype=np.float32)
        else:
            frames = handle.read(-1 if count is None else count, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioDecodeError(f"truncated or corrupt audio data: {e}") from e
    wanted = count if count is not None else max(0, int(round(info.duration_s * info.sample_rate_hz)) - start)
    _check_complete(frames.shape[0], wanted, info.sample_rate_hz)
    return frames.T  # (channels, samples) view of the interleaved buffer


def _decode_pyav(source: AudioSource, choose: _SpanChooser) -> tuple[list[np.ndarray], AudioInfo]:
    import av  # deferred: PyAV is only needed for formats libsndfile cannot read

    try:
        container = av.open(source if not isinstance(source, os.PathLike) else os.fspath(source), "r")
    except (av.FFmpegError, ValueError, OSError) as e:
        raise _UndecodableError(str(e)) from e
    with container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            raise _UndecodableError("no audio stream in the container")
        stream = streams[0]
        ctx = stream.codec_context
        if ctx is None:  # FFmpeg knows the container but has no decoder for the codec
            raise _UndecodableError("FFmpeg has no decoder for the audio stream's codec")
        sample_rate_hz = int(ctx.sample_rate or 0)
        channels = int(ctx.channels or 0)
        if sample_rate_hz <= 0 or channels <= 0:
            raise _UndecodableError("audio stream without sample rate or channels")
        _check_header(AudioInfo(sample_rate_hz, channels, 0.0, ctx.name))
        max_samples = MAX_DECODED_BYTES // (4 * channels)
        if stream.duration is not None and stream.time_base is not None:
            total_s = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            total_s = container.duration / av.time_base
        else:
            total_s = -1.0  # unknown until decoded
        if total_s < 0:
            whole = _pyav_read(container, stream, 0.0, None, max_samples)
            info = AudioInfo(sample_rate_hz, channels, whole.shape[1] / sample_rate_hz, ctx.name)
            cuts = [_span_frames(span, info) for span in choose(info)]
            return [whole[:, start : None if count is None else start + count] for start, count in cuts], info
        info = AudioInfo(sample_rate_hz, channels, total_s, ctx.name)
        spans = choose(info)
        _check_budget(info, spans)
        waveforms = []
        for offset_s, duration_s in spans:
            if duration_s == 0:
                waveforms.append(np.zeros((channels, 0), np.float32))
                continue
            waveform = _pyav_read(container, stream, offset_s, duration_s, max_samples)
            wanted = None if duration_s is None else int(round(duration_s * sample_rate_hz))
            _check_complete(waveform.shape[1], wanted, sample_rate_hz)
            waveforms.append(waveform)
    return waveforms, info


def _pyav_read(container, stream, offset_s: float, duration_s: float | None, max_samples: int) -> np.ndarray:
    """Decode from ``offset_s`` for ``duration_s`` (to the end when ``None``), at most ``max_samples`` per channel:
    a stream of unknown length (raw ADTS, a cut container) is decoded whole, and compressed silence can expand
    a few MB of upload into hours of samples."""
    import av

    sample_rate_hz = int(stream.codec_context.sample_rate)
    if stream.time_base is not None:
        container.seek(int(offset_s / stream.time_base), stream=stream)  # lands on a keyframe before
    resampler = av.AudioResampler(format="fltp")  # planar float32, native layout and rate
    chunks: list[np.ndarray] = []
    first_time: float | None = None
    decoded = 0
    end_s = None if duration_s is None else offset_s + duration_s
    try:
        for frame in container.decode(stream):
            if first_time is None:
                first_time = float(frame.time) if frame.time is not None else 0.0
            for out in resampler.resample(frame):
                array = out.to_ndarray()
                chunks.append(array)
                decoded += array.shape[1]
            if decoded > max_samples:
                raise AudioDecodeError(
                    f"too large to decode: more than {max_samples} samples per channel "
                    f"({MAX_DECODED_BYTES / 2**30:g} GiB of float32)"
                )
            if end_s is not None and first_time + decoded / sample_rate_hz >= end_s:
                break
    except av.FFmpegError as e:
        if not chunks:
            raise _UndecodableError(str(e)) from e
        raise AudioDecodeError(f"truncated or corrupt audio data: {e}") from e
    if not chunks:
        return np.zeros((stream.codec_context.channels, 0), np.float32)
    whole = np.concatenate(chunks, axis=1)
    skip = max(0, int(round((offset_s - (first_time or 0.0)) * sample_rate_hz)))
    stop = None if duration_s is None else skip + int(round(duration_s * sample_rate_hz))
    return np.ascontiguousarray(whole[:, skip:stop], dtype=np.float32)
