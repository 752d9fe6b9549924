"""The bad-file zoo: small files that are hostile, broken or merely odd, each with the outcome it must get.

Every case is a file name, a writer, the status a classification must end with (``ok``: it is valid
audio and gets a prediction; ``error``: an error row / a 4xx) and, for errors, words that the error
message must contain, so a test can tell "refused for the right reason" from "refused by accident".

Files stay small (at most a couple of hundred KB; most a few KB): a "gigabyte" WAV is a header that
claims it, not a big file. Everything is deterministic (fixed seeds), so the zoo is the same bytes on
every run and machine.

Use :func:`write_zoo` to write the whole zoo into a folder, or :data:`ZOO` to pick cases. The
mutation corpus (:func:`mutations`) derives seeded byte-level mutants of a few valid files.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
import soundfile as sf

__all__ = ["BadFile", "ZOO", "write_zoo", "valid_seeds", "mutations", "tone"]

Outcome = Literal["ok", "error"]

# Decoded audio may end this much before its header's promise without counting as truncated
# (acousticsense.audio._TRUNCATION_TOLERANCE_S); truncation cases keep clear of it on both sides.
_TOLERANCE_S = 0.25


@dataclass(frozen=True)
class BadFile:
    """One zoo case.

    Attributes:
        name: file name (its extension is what a listing and a client would see).
        data: the file's bytes (built lazily by the zoo, once).
        expected: ``ok`` (valid audio: a prediction) or ``error`` (an error row, a 4xx).
        problem: for errors, lower-case words that the error message must contain (any one of them).
        content_type: what an HTTP client would send it as.
    """

    name: str
    data: bytes
    expected: Outcome
    problem: tuple[str, ...] = ()
    content_type: str = "application/octet-stream"


def tone(seconds: float, sample_rate_hz: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """float32 ``(samples, channels)``: a 440 Hz tone with a little noise (something with a spectrum)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate_hz))) / sample_rate_hz
    mono = 0.4 * np.sin(2 * np.pi * 440.0 * t) + 0.01 * rng.standard_normal(t.shape)
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32)


def _encode(frames: np.ndarray, sample_rate_hz: int, fmt: str, subtype: str | None = None) -> bytes:
    """Encode ``(samples, channels)`` with libsndfile in blocks (it can crash on one large OGG/MP3 write)."""
    out = io.BytesIO()
    with sf.SoundFile(
        out, "w", samplerate=sample_rate_hz, channels=frames.shape[1], format=fmt, subtype=subtype
    ) as handle:
        for start in range(0, len(frames), 8192):
            handle.write(frames[start : start + 8192])
    return out.getvalue()


def _wav(
    payload: bytes,
    *,
    sample_rate_hz: int = 8000,
    channels: int = 1,
    bits: int = 16,
    format_code: int = 1,
    data_size: int | None = None,
    riff_size: int | None = None,
    block_align: int | None = None,
) -> bytes:
    """A canonical 44-byte-header WAV around ``payload``, with every header field overridable (to lie)."""
    align = channels * bits // 8 if block_align is None else block_align
    fmt = struct.pack(
        "<HHIIHH",
        format_code,
        channels,
        sample_rate_hz & 0xFFFFFFFF,
        (sample_rate_hz * max(align, 0)) & 0xFFFFFFFF,
        align & 0xFFFF,
        bits,
    )
    data_len = len(payload) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_len) + payload
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def _pcm16(frames: np.ndarray) -> bytes:
    return (np.clip(frames, -1, 1) * 32767).astype("<i2").tobytes()


def _float_wav(frames: np.ndarray, sample_rate_hz: int = 8000) -> bytes:
    return _wav(
        frames.astype("<f4").tobytes(), sample_rate_hz=sample_rate_hz, channels=frames.shape[1], bits=32, format_code=3
    )


def _id3v2(size: int, present: int) -> bytes:
    """An ID3v2.3 header declaring ``size`` bytes of tag (syncsafe), followed by ``present`` bytes of padding."""
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x03\x00\x00" + syncsafe + b"\0" * present


def _flac_lying_streaminfo(flac: bytes, sample_rate_hz: int, channels: int, total_samples: int) -> bytes:
    """Rewrite a FLAC's STREAMINFO (rate, channels, total length) without touching its frames."""
    assert flac[:4] == b"fLaC" and flac[4] & 0x7F == 0, "STREAMINFO must be the first block"
    bits_minus_1 = ((flac[20] & 0x01) << 4) | (flac[21] >> 4)
    packed = (sample_rate_hz << 44) | ((channels - 1) << 41) | (bits_minus_1 << 36) | total_samples
    return flac[:18] + packed.to_bytes(8, "big") + flac[26:]


def _mp4_with_video(seconds: float, with_audio: bool, container: str) -> bytes:
    """A tiny video file (MPEG-4 part 2, 32x32, 5 fps) with an AAC audio track or without one."""
    out = io.BytesIO()
    with av.open(out, "w", format=container) as box:
        video = box.add_stream("mpeg4", rate=5)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = box.add_stream("aac", rate=16000) if with_audio else None
        if audio is not None:
            audio.layout = "mono"
        for i in range(int(seconds * 5)):
            picture = np.full((32, 32, 3), (i * 40) % 256, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                box.mux(packet)
        for packet in video.encode(None):
            box.mux(packet)
        if audio is not None:
            planar = np.ascontiguousarray(tone(seconds, 16000).T)
            frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in [*audio.encode(frame), *audio.encode(None)]:
                box.mux(packet)
    return out.getvalue()


def _flac_frame_cuts(data: bytes) -> list[tuple[int, float, float]]:
    """Every FLAC frame boundary as ``(byte offset, seconds kept, total seconds)``, from PyAV's demuxer."""
    with av.open(io.BytesIO(data), "r") as box:
        stream = box.streams.audio[0]
        total = float(stream.duration * stream.time_base) if stream.duration else None
        cuts = [(int(p.pos), float(p.pts * p.time_base)) for p in box.demux(stream) if p.pos is not None and p.size]
    assert total is not None, "FLAC without a declared length"
    return [(pos, kept, total) for pos, kept in cuts if pos > 0]


def _zoo() -> list[BadFile]:
    sr = 8000
    good = tone(2.0, sr)  # 2 s: over the 1 s minimum, under any excerpt
    cases = [
        # ---- sample values
        BadFile(
            "nan float.wav",
            _float_wav(np.where(np.arange(len(good))[:, None] % 97 == 0, np.nan, good)),
            "error",
            ("non-finite",),
            "audio/wav",
        ),
        BadFile(
            "inf float.wav",
            _float_wav(np.where(np.arange(len(good))[:, None] == 500, np.inf, good)),
            "error",
            ("non-finite",),
            "audio/wav",
        ),
        BadFile("huge float.wav", _float_wav(good * np.float32(1e30)), "error", ("out of range",), "audio/wav"),
        BadFile("all zero.wav", _wav(b"\0" * (2 * sr * 2), sample_rate_hz=sr), "ok", (), "audio/wav"),
        BadFile("dc offset.wav", _wav(_pcm16(0.5 + 0.2 * good), sample_rate_hz=sr), "ok", (), "audio/wav"),
        BadFile("full scale square.wav", _wav(_pcm16(np.sign(good) + 0.0), sample_rate_hz=sr), "ok", (), "audio/wav"),
        # ---- lengths
        BadFile("empty.wav", b"", "error", ("empty",), "audio/wav"),
        BadFile("header only.wav", _wav(b"", sample_rate_hz=sr), "error", ("empty",), "audio/wav"),
        BadFile("one sample.wav", _wav(_pcm16(good[:1]), sample_rate_hz=sr), "error", ("too short",), "audio/wav"),
        BadFile("one sample.flac", _encode(good[:1], sr, "FLAC"), "error", ("too short", "empty"), "audio/flac"),
        # ---- header values
        BadFile("rate 0 hz.wav", _wav(_pcm16(good), sample_rate_hz=0), "error", ("sample rate is 0 hz",), "audio/wav"),
        BadFile(
            "rate 1 hz.wav", _wav(_pcm16(good[:40]), sample_rate_hz=1), "error", ("sample rate 1 hz",), "audio/wav"
        ),
        BadFile(
            "rate 4 ghz.wav",
            _wav(_pcm16(good), sample_rate_hz=0xFFFFFFFF),
            "error",
            ("sample rate is 4294967295 hz",),
            "audio/wav",
        ),
        BadFile(
            "claims 4 gb.wav",
            _wav(_pcm16(good), sample_rate_hz=sr, data_size=0xFFFFFFF0, riff_size=0xFFFFFFF8),
            "error",
            ("truncated",),
            "audio/wav",
        ),
        BadFile(
            "claims 2 gb at 64ch.wav",
            _wav(_pcm16(good[: sr // 4]), sample_rate_hz=192000, channels=64, data_size=0x7FFFFF80),
            "error",
            ("truncated",),
            "audio/wav",
        ),
        BadFile(
            "streaming length.wav",
            _wav(_pcm16(good), sample_rate_hz=sr, data_size=0xFFFFFFFF, riff_size=0xFFFFFFFF),
            "ok",
            (),
            "audio/wav",
        ),
        BadFile(
            "zero channels.wav",
            _wav(_pcm16(good), sample_rate_hz=sr, channels=0, block_align=2),
            "error",
            ("declares 0 channels",),
            "audio/wav",
        ),
        # libsndfile reads a 7-bit declaration with a 2-byte block as 16-bit PCM: odd, but audio
        BadFile("7 bit.wav", _wav(_pcm16(good), sample_rate_hz=sr, bits=7, block_align=2), "ok", (), "audio/wav"),
        BadFile(
            "unknown codec.wav",
            _wav(_pcm16(good), sample_rate_hz=sr, format_code=0x7777),
            "error",
            ("codec 0x7777",),
            "audio/wav",
        ),
        BadFile("64 channels.wav", _encode(tone(1.2, 2000, channels=64), 2000, "WAV", "PCM_U8"), "ok", (), "audio/wav"),
        # ---- containers and tags
        BadFile(
            "huge id3 tag.mp3",
            _id3v2(0x0FFFFFFF, 4096) + _encode(good, sr, "MP3"),
            "error",
            ("id3 tag claims",),
            "audio/mpeg",
        ),
        BadFile(
            "big id3 padding.mp3",
            _id3v2(65536, 65536) + _encode(tone(2.0, 22050), 22050, "MP3"),
            "ok",
            (),
            "audio/mpeg",
        ),
        BadFile("video with audio.mp4", _mp4_with_video(2.0, True, "mp4"), "ok", (), "video/mp4"),
        BadFile(
            "video only.mkv", _mp4_with_video(2.0, False, "matroska"), "error", ("no audio stream",), "video/x-matroska"
        ),
        BadFile("text.mp3", b"this is not audio\n" * 64, "error", ("unsupported",), "audio/mpeg"),
    ]
    flac = _encode(tone(2.0, sr), sr, "FLAC")
    cases.append(
        BadFile(
            "flac claims days at 655 khz 8ch.flac",
            _flac_lying_streaminfo(flac, 655350, 8, 2**36 - 1),
            "error",
            ("too large to decode", "truncated"),  # which, depends on the excerpt length
            "audio/flac",
        )
    )
    for pos, kept, total in _flac_frame_cuts(flac):
        missing = total - kept
        if abs(missing - _TOLERANCE_S) < 0.05:
            continue  # too close to the truncation tolerance to have one right answer
        expected: Outcome = "error" if missing > _TOLERANCE_S else "ok"
        problem = ("truncated", "too short") if expected == "error" else ()
        cases.append(BadFile(f"flac cut at {pos}.flac", flac[:pos], expected, problem, "audio/flac"))
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "zoo names must be unique"
    return cases


ZOO: list[BadFile] = _zoo()


def write_zoo(folder: Path) -> dict[str, BadFile]:
    """Write every zoo case into ``folder`` (created); returns the cases by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    for case in ZOO:
        (folder / case.name).write_bytes(case.data)
    return {case.name: case for case in ZOO}


def valid_seeds() -> dict[str, bytes]:
    """Small valid files of several codecs, the parents of the mutation corpus."""
    sr = 8000
    clip = tone(1.5, sr, channels=2, seed=1)
    return {
        "seed.wav": _wav(_pcm16(clip), sample_rate_hz=sr, channels=2),
        "seed.flac": _encode(clip, sr, "FLAC"),
        "seed.ogg": _encode(clip, sr, "OGG", "VORBIS"),
        "seed.mp3": _encode(tone(1.5, 22050, channels=2), 22050, "MP3"),
        "seed-float.wav": _float_wav(clip),
    }


def mutations(count: int, seed: int = 12) -> Iterator[tuple[str, bytes]]:
    """``count`` seeded mutants of :func:`valid_seeds`: flipped bits, overwritten/inserted/deleted runs,
    cuts, header-field stomps (the first 64 bytes, where lengths and rates live) and spliced files.

    Yields ``(name, bytes)``; the same ``seed`` gives the same corpus.
    """
    rng = np.random.default_rng(seed)
    parents = valid_seeds()
    names = sorted(parents)
    ops: list[Callable[[bytearray], bytearray]] = [
        lambda b: _flip_bits(b, rng),
        lambda b: _overwrite(b, rng),
        lambda b: _insert(b, rng),
        lambda b: _delete(b, rng),
        lambda b: b[: int(rng.integers(1, len(b)))],
        lambda b: _stomp_header(b, rng),
        lambda b: b[: len(b) // 2] + bytearray(parents[names[int(rng.integers(len(names)))]])[len(b) // 3 :],
    ]
    for i in range(count):
        parent = names[i % len(names)]
        data = bytearray(parents[parent])
        for _ in range(int(rng.integers(1, 4))):  # 1-3 mutations stacked
            data = ops[int(rng.integers(len(ops)))](data) or bytearray(b"\0")
        yield f"mutant-{i:03d}-{parent}", bytes(data)


def _flip_bits(data: bytearray, rng: np.random.Generator) -> bytearray:
    for position in rng.integers(0, len(data), size=int(rng.integers(1, 16))):
        data[position] ^= 1 << int(rng.integers(8))
    return data


def _overwrite(data: bytearray, rng: np.random.Generator) -> bytearray:
    start = int(rng.integers(len(data)))
    run = rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    data[start : start + len(run)] = run
    return data


def _insert(data: bytearray, rng: np.random.Generator) -> bytearray:
    start = int(rng.integers(len(data)))
    return data[:start] + bytearray(rng.integers(0, 256, size=int(rng.integers(1, 512)), dtype=np.uint8)) + data[start:]


def _delete(data: bytearray, rng: np.random.Generator) -> bytearray:
    start = int(rng.integers(len(data)))
    return data[:start] + data[start + int(rng.integers(1, 512)) :]


def _stomp_header(data: bytearray, rng: np.random.Generator) -> bytearray:
    """Overwrite a 1-4 byte field in the header with an extreme value (0, all ones, or random)."""
    width = int(rng.choice([1, 2, 4]))
    start = int(rng.integers(0, max(1, min(64, len(data)) - width)))
    value = [b"\0" * width, b"\xff" * width, rng.integers(0, 256, size=width, dtype=np.uint8).tobytes()][
        int(rng.integers(3))
    ]
    data[start : start + width] = value
    return data
