"""The service's pieces without Ray: arguments, the batch job's overrides, multipart parsing, error mapping."""

from __future__ import annotations

import os

import numpy as np
import pytest
from pydantic import ValidationError

from acousticsense import StageError, load_bundle
from serving._multipart import MultipartError, boundary_of, parse_form_data
from serving.config import AppArgs, load_service_bundle, parse_args
from serving.errors import stage_error


def test_args_have_working_defaults_and_refuse_typos():
    args = parse_args({})
    assert args.bundle_uri is None and args.max_body_mb == 50 and args.max_body_bytes == 50 * 2**20
    assert parse_args(args) is args
    with pytest.raises(ValidationError, match="max_body"):
        parse_args({"max_body": 10})  # a typo must fail the deploy, not pass silently
    with pytest.raises(ValidationError):
        parse_args({"precision": "fp64"})
    with pytest.raises(ValidationError):
        parse_args({"max_batch_size": 0})


def test_overrides_are_the_batch_jobs():
    """Same override names as the batch job, applied the same way: drift here breaks online == batch."""
    from pipelines.classify import JobOptions

    assert set(AppArgs().overrides()) == set(JobOptions(inputs=[], output="").overrides())
    values = {"excerpt_s": 5.0, "excerpt_policy": "start", "top_k": 3, "review_threshold": 0.4}
    served = load_service_bundle(AppArgs(**values))
    batch = load_bundle(None, weights=False, overrides=JobOptions(inputs=[], output="", **values).overrides())
    assert served.features == batch.features and served.postprocess == batch.postprocess
    assert served.feature_hash == batch.feature_hash
    plain = load_service_bundle(AppArgs())
    assert plain.features == load_bundle(None, overrides=JobOptions(inputs=[], output="").overrides()).features


def test_stage_errors_map_to_400_codes():
    cases = {
        "empty file (0 bytes)": "empty_audio",
        "too short: 0.300 s of audio, the minimum is 1.0 s": "too_short",
        "truncated or corrupt audio data: lost sync": "truncated_audio",
        "unsupported or not audio; soundfile: <_io.BytesIO object at 0x7f00aa> unknown": "undecodable",
        "something new the decoder says": "undecodable",
    }
    for message, code in cases.items():
        error = stage_error(StageError("decode", message))
        assert (error.status, error.error) == (400, code), message
        assert "0x7f00aa" not in error.detail
    assert stage_error(StageError("features", "non-finite values")).error == "unusable_audio"


def _encode(parts: list[tuple[str, str | None, bytes]], boundary: str) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_multipart_round_trips_binary_data_exactly():
    rng = np.random.default_rng(0)
    # Binary payloads with CR/LF runs and near-boundaries in them must come back byte for byte.
    tricky = b"\r\n\r\n--xy\r\n--xyZ" + rng.integers(0, 256, 100_000, dtype=np.uint8).tobytes() + b"\r\n"
    parts = [("files", "a.wav", tricky), ("files", "ünï côdé.mp3", b""), ("note", None, b"hello")]
    body = b"preamble\r\n" + _encode(parts, "xyz")
    parsed = parse_form_data(body, boundary_of('multipart/form-data; boundary="xyz"'))
    assert [(p.name, p.filename, p.data) for p in parsed] == parts


def test_multipart_matches_a_third_party_encoder():
    from urllib3.filepost import encode_multipart_formdata

    data = os.urandom(50_000)
    body, content_type = encode_multipart_formdata({"file": ("song.flac", data, "audio/flac"), "x": "1"})
    parsed = {p.name: p for p in parse_form_data(body, boundary_of(content_type))}
    assert parsed["file"].data == data and parsed["file"].filename == "song.flac"
    assert parsed["file"].content_type == "audio/flac" and parsed["x"].data == b"1"


@pytest.mark.parametrize(
    "body",
    [
        b"no boundary anywhere",
        b'--xyz\r\nContent-Disposition: form-data; name="f"\r\n\r\ndata without a closing boundary',
        b'--xyz\r\nContent-Disposition: form-data; name="f"',
        b"--xyz\r\nX-Nothing: 1\r\n\r\ndata\r\n--xyz--",
        b"--xyz\r\nnot a header line\r\n\r\ndata\r\n--xyz--",
    ],
)
def test_malformed_multipart_is_refused(body):
    with pytest.raises(MultipartError):
        parse_form_data(body, b"xyz")


def _request(chunks: list[bytes], content_type: str, stall_after: int | None = None):
    """A Starlette request whose body arrives in ``chunks``; with ``stall_after``, it stops sending after
    that many chunks (a client gone quiet) instead of finishing."""
    import asyncio

    from starlette.requests import Request

    pending = list(chunks)
    sent = 0

    async def receive() -> dict:
        nonlocal sent
        if stall_after is not None and sent >= stall_after:
            await asyncio.Event().wait()  # never set: the client sends nothing more
        sent += 1
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-type", content_type.encode())]}
    return Request(scope, receive)


def test_the_streaming_form_reader_gives_the_same_parts_whatever_the_chunking():
    """Fed one byte at a time (delimiters, headers and the preamble split across chunks), or whole: same parts."""
    import asyncio

    from serving._body import read_form

    rng = np.random.default_rng(1)
    parts = [("file", "a.wav", b"\r\n--xyz" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()), ("n", None, b"1")]
    body = b"pre\r\n" + _encode(parts, "xyz")
    content_type = 'multipart/form-data; boundary="xyz"'
    for size in (1, 7, len(body)):
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        parsed = asyncio.run(read_form(_request(chunks, content_type), limit_bytes=len(body)))
        assert [(p.name, p.filename, p.data) for p in parsed] == parts, size


def test_the_form_reader_bounds_parts_size_and_stalls():
    import asyncio

    from serving._body import read_body, read_form
    from serving.errors import ApiError

    content_type = "multipart/form-data; boundary=xyz"
    many = _encode([("n", None, b"x")] * 20, "xyz")
    with pytest.raises(ApiError) as refused:
        asyncio.run(read_form(_request([many], content_type), limit_bytes=10**6, max_parts=10))
    assert refused.value.status == 400 and "more than 10 parts" in refused.value.detail
    big = _encode([("file", "a.wav", b"\0" * 5000)], "xyz")
    with pytest.raises(ApiError) as refused:
        asyncio.run(read_form(_request([big[:3000], big[3000:]], content_type), limit_bytes=4000))
    assert refused.value.status == 413 and "while streaming" in refused.value.detail
    with pytest.raises(ApiError) as refused:
        asyncio.run(read_body(_request([b"RIFF", b"more"], "audio/wav", stall_after=1), 10**6, idle_timeout_s=0.2))
    assert refused.value.status == 408 and refused.value.error == "body_timeout"
    with pytest.raises(ApiError) as refused:
        asyncio.run(read_form(_request([many[:50], many[50:]], content_type, stall_after=1), 10**6, idle_timeout_s=0.2))
    assert refused.value.status == 408


def test_a_part_over_the_memory_spool_goes_to_a_temporary_file_and_comes_back_intact():
    from serving._multipart import SPOOL_MEMORY_BYTES

    data = os.urandom(SPOOL_MEMORY_BYTES + 1000)
    (part,) = parse_form_data(_encode([("file", "big.wav", data)], "xyz"), b"xyz")
    assert part._spool._rolled  # on disk, not in one growing buffer
    assert part.data == data
    part.close()


def test_multipart_content_type_needs_a_boundary():
    with pytest.raises(MultipartError):
        boundary_of("multipart/form-data")
    assert boundary_of("multipart/form-data; boundary=abc") == b"abc"


def test_the_serve_config_file_is_valid_for_serve_and_the_builder():
    """infra/serve/config.yaml parses as Serve's deploy schema, its args as AppArgs, its names as the code's."""
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from serving.ingress import ClassifierIngress
    from serving.model import GenreModel
    from tests.conftest import ROOT

    config = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / "infra/serve/config.yaml").read_text()))
    (application,) = config.applications
    assert application.import_path == "serving.app:build_app"
    args = AppArgs.model_validate(application.args)
    assert args.bundle_uri is None and args.max_body_mb == 50
    assert {d.name for d in application.deployments} == {ClassifierIngress.name, GenreModel.name}
    for deployment in application.deployments:
        autoscaling = deployment.autoscaling_config
        assert autoscaling["min_replicas"] <= autoscaling["max_replicas"]
        assert deployment.max_ongoing_requests >= 1 and deployment.max_queued_requests >= 1
    model = next(d for d in application.deployments if d.name == GenreModel.name)
    assert model.max_ongoing_requests >= args.max_batch_size  # otherwise batches can never fill


# --------------------------------------------------------------------------- the spectrogram and the page


def _wav_bytes(seconds: float, sample_rate_hz: int = 22050, seed: int = 0) -> bytes:
    import io

    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate_hz)) / sample_rate_hz
    chirp = 0.4 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(t.size)
    out = io.BytesIO()
    sf.write(out, chirp.astype(np.float32), sample_rate_hz, format="WAV")
    return out.getvalue()


@pytest.mark.parametrize(
    ("config", "seconds"),
    [
        ({"excerpt_s": 10.0, "window_frames": 64}, 7.3),  # several windows, the last overlapping
        ({"excerpt_s": 10.0, "window_frames": 64}, 1.2),  # windows: 1 + 26460 // 512 = 52 frames < 64, tiled
        ({"excerpt_s": 3.0, "segments": 3, "window_frames": 40}, 14.0),  # three segments
        (
            {
                "front_end": "kaldi_fbank",
                "sample_rate_hz": 16000,
                "n_fft": 512,
                "win_length": 400,
                "hop_length": 160,
                "f_min_hz": 20.0,
                "window_frames": 100,
                "excerpt_s": 4.0,
            },
            5.0,
        ),  # AST's front end, other frame count
    ],
)
def test_the_spectrogram_is_the_model_windows_stitched_back(config, seconds):
    """Same windows as the featurizer gives the model; stitched, they are the front end's output for each segment."""
    import base64
    import io

    import torch

    from acousticsense import FeatureConfig
    from acousticsense.extract import ExcerptFeaturizer
    from serving.ingress import _featurize_with_spectrogram

    features_config = FeatureConfig(**config)
    featurizer = ExcerptFeaturizer(features_config)
    data = _wav_bytes(seconds)
    features, picture, seconds = _featurize_with_spectrogram(featurizer, io.BytesIO(data), max_columns=10_000)
    plain = featurizer(io.BytesIO(data))
    np.testing.assert_array_equal(features.windows, plain.windows)
    assert features.segment_windows == plain.segment_windows and features.record.excerpt_s == plain.record.excerpt_s
    assert seconds > 0

    # max_columns above the frame count: one frame per column, so the picture holds every frame
    prepared = featurizer.prepare(io.BytesIO(data))
    with torch.inference_mode():
        expected = [
            featurizer.log_mel(torch.from_numpy(s)).to(torch.float16).float().numpy() for s in prepared.segments
        ]
    full = np.concatenate(expected, axis=1)
    rows, cols = picture["shape"]
    assert (rows, cols) == full.shape and picture["frames_per_column"] == 1
    assert [s["columns"] for s in picture["segments"]] == [e.shape[1] for e in expected]
    assert len(picture["segments"]) == len(prepared.segments) == features_config.segments
    assert picture["segments"][0]["offset_s"] == pytest.approx(features.record.offset_s)
    quantised = np.frombuffer(base64.b64decode(picture["data"]), np.uint8).reshape(rows, cols)
    assert (picture["min"], picture["max"]) == (pytest.approx(full.min()), pytest.approx(full.max()))
    restored = picture["min"] + quantised / 255.0 * (picture["max"] - picture["min"])
    np.testing.assert_allclose(restored, full, atol=(full.max() - full.min()) / 510 + 1e-6)
    assert quantised.min() == 0 and quantised.max() == 255
    assert picture["seconds_per_column"] == pytest.approx(1 / features_config.frames_per_second)
    assert picture["mel_scale"] == ("kaldi" if features_config.front_end == "kaldi_fbank" else "slaney")


def test_the_spectrogram_is_pooled_to_at_most_max_columns():
    import base64

    from acousticsense import FeatureConfig
    from acousticsense.extract import FeaturizedAudio
    from acousticsense.record import FileRecord
    from serving.ingress import spectrogram_body

    config = FeatureConfig(excerpt_s=30.0, segments=2, window_frames=100)
    frames = [1293, 1000]  # two segments: 13 and 10 windows
    rng = np.random.default_rng(1)
    spectra = [rng.standard_normal((config.n_mels, f)).astype(np.float16) for f in frames]
    windows = []
    for s in spectra:
        starts = list(range(0, s.shape[1] - 100 + 1, 100))
        if starts[-1] + 100 < s.shape[1]:
            starts.append(s.shape[1] - 100)
        windows += [s[:, i : i + 100] for i in starts]
    features = FeaturizedAudio(
        windows=np.stack(windows),
        record=FileRecord(duration_s=120.0, sample_rate_hz=44100, channels=2, offset_s=15.0, excerpt_s=60.0),
        segment_windows=[13, 10],
    )
    picture = spectrogram_body(features, frames, config, max_columns=512)
    rows, cols = picture["shape"]
    assert rows == config.n_mels and cols <= 512
    per = picture["frames_per_column"]
    assert per == 5 and [s["columns"] for s in picture["segments"]] == [-(-f // per) for f in frames]
    assert len(base64.b64decode(picture["data"])) == rows * cols
    quantised = np.frombuffer(base64.b64decode(picture["data"]), np.uint8).reshape(rows, cols)
    first_column = spectra[0][:, :per].astype(np.float32).mean(axis=1)
    restored = picture["min"] + quantised[:, 0] / 255.0 * (picture["max"] - picture["min"])
    np.testing.assert_allclose(restored, first_column, atol=(picture["max"] - picture["min"]) / 510 + 1e-6)
    assert [s["offset_s"] for s in picture["segments"]] == pytest.approx([15.0, 75.0])  # 2 x 30 s spread over 120 s
    assert picture["seconds_per_column"] == pytest.approx(per * config.hop_length / config.sample_rate_hz)
    # a constant picture: every byte 0, min == max
    flat = FeaturizedAudio(
        np.zeros((1, config.n_mels, 100), np.float16), FileRecord(duration_s=5.0, offset_s=0.0, excerpt_s=5.0), [1]
    )
    constant = spectrogram_body(flat, [80], config)
    assert constant["min"] == constant["max"] == 0.0 and set(base64.b64decode(constant["data"])) == {0}


def test_stitching_refuses_counts_that_do_not_fit():
    from serving.ingress import stitch_windows

    windows = np.zeros((3, 4, 10), np.float16)
    with pytest.raises(ValueError, match="do not fit"):
        stitch_windows(windows, [2], [25])
    with pytest.raises(ValueError, match="makes 2 windows"):
        stitch_windows(windows, [3], [15])
    assert [p.shape for p in stitch_windows(windows, [3], [25])] == [(4, 25)]


def test_the_page_is_self_contained_and_its_policy_admits_only_its_own_code():
    """No URL to anywhere else; the Content-Security-Policy hashes the page's inline script and style."""
    import base64
    import hashlib
    import re
    from importlib import resources

    from serving.ingress import _PAGE, page_headers

    html = resources.files(_PAGE[0]).joinpath(_PAGE[1]).read_text(encoding="utf-8")
    assert "//" not in "".join(re.findall(r"""(?:src|href|action)\s*=\s*["']([^"']*)""", html))
    assert not re.search(r"https?://", html) and "@import" not in html and "url(" not in html
    markup = re.sub(r"<(script|style)>.*?</\1>", "", html, flags=re.S)
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", markup), "inline event handlers would be blocked by the policy"
    assert not re.search(r"<[^>]+\sstyle\s*=", markup), "style attributes would be blocked by the policy"
    (script,) = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    (style,) = re.findall(r"<style>(.*?)</style>", html, flags=re.S)
    policy = page_headers(html)["Content-Security-Policy"]
    for block in (script, style):
        assert "sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() in policy
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "unsafe" not in policy
    for needed in ("v1/classify?spectrogram=true", "v1/classify/batch", "v1/model", 'aria-live="polite"', 'role="img"'):
        assert needed in html, needed


def test_the_openapi_page_describes_every_record_field_of_a_classification():
    """/docs is built from the response model, which is built from the record: rms_dbfs shows with its meaning."""
    from acousticsense.record import record_fields
    from serving.ingress import api

    schemas = api.openapi()["components"]["schemas"]
    properties = schemas["Classification"]["properties"]
    for f in record_fields():
        assert properties[f.name]["description"] == f.metadata["description"], f.name
    assert "20 log10 of the RMS" in properties["rms_dbfs"]["description"]
    assert "inference_s" in schemas["BatchShare"]["properties"]
