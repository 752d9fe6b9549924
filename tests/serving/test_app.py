"""The Serve application end to end: real Ray, real Serve, real HTTP on 127.0.0.1, real audio files.

One Ray and one Serve per module. The main application runs the untrained ``tiny`` test bundle with a
4 MiB body limit; a second, deliberately tight application (``/tight``) shows the cold start (health
503 until the model replica is up) and the bounded model queue (503 with Retry-After).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from acousticsense import GENRES, load_bundle
from acousticsense.record import record_fields
from serving.config import AppArgs, load_service_bundle
from tests.conftest import write_audio
from tests.serving.conftest import (
    LIMIT_BYTES,
    LIMIT_MB,
    OVERRIDES,
    _no_cpu,
    assert_error,
    parse_raw,
    post_audio,
    post_form,
    raw_exchange,
    request,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RECORD = [f.name for f in record_fields()]
STAGE_SECONDS = {"read_s", "decode_s", "resample_s", "features_s", "inference_s"}  # this run's, not the file's
SERVICE_ONLY = {"batch", "timings_ms", "spectrogram"}
JOB_ONLY = {"path", "status", "error", "error_stage", "processed_at"}

# name -> (seconds, sample rate, channels, Content-Type)
GOOD = {
    "mono.wav": (3.0, 22050, 1, "audio/wav"),
    "stereo.flac": (12.0, 48000, 2, "audio/flac"),
    "low.ogg": (4.0, 8000, 1, "audio/ogg"),
    "song.mp3": (6.0, 44100, 2, "audio/mpeg"),
}

# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("online")
    (root / "music").mkdir()
    files = {}
    for i, (name, (seconds, sr, channels, _)) in enumerate(GOOD.items()):
        path = root / "music" / name
        write_audio(path, seconds, sr, channels, frequency_hz=220.0 * (i + 1), seed=i)
        files[name] = path
    write_audio(root / "full.flac", 20.0, 44100, 2)
    data = (root / "full.flac").read_bytes()
    (root / "truncated.flac").write_bytes(data[: len(data) // 3])
    files["truncated.flac"] = root / "truncated.flac"
    write_audio(root / "short.wav", 0.3)
    files["short.wav"] = root / "short.wav"
    return files


def _close(online: Any, stored: Any) -> bool:
    """Equal, floats within 1e-4 (Parquet keeps float32), through lists and dicts (``top_k``, ``tags``)."""
    if isinstance(online, float) or isinstance(stored, float):
        return online == pytest.approx(stored, abs=1e-4)
    if isinstance(online, list) and isinstance(stored, list):
        return len(online) == len(stored) and all(_close(a, b) for a, b in zip(online, stored))
    if isinstance(online, dict) and isinstance(stored, dict):
        return online.keys() == stored.keys() and all(_close(online[k], stored[k]) for k in online)
    return online == stored


# --------------------------------------------------------------------------------------------------- tests


def test_health_and_model_info(service, tiny_bundle):
    status, _, health = request(service, "GET", "/v1/health")
    assert status == 200 and health["status"] == "ok", health
    bundle = load_service_bundle(AppArgs(bundle_uri=tiny_bundle, **OVERRIDES))  # the bundle with the overrides
    assert bundle.feature_hash != load_bundle(tiny_bundle).feature_hash
    assert health["model_version"] == "test-tiny-0" and health["feature_hash"] == bundle.feature_hash
    assert health["device"] == "cpu" and health["precision"] == "fp32"
    status, _, info = request(service, "GET", "/v1/model")
    assert status == 200
    assert info["labels"] == list(GENRES) and info["version"] == "test-tiny-0"
    assert info["feature_hash"] == bundle.feature_hash and info["features"]["excerpt_s"] == 10.0
    assert info["features"]["segments"] == 2 and info["postprocess"]["top_k"] == 4
    assert info["service"]["max_body_mb"] == LIMIT_MB


def test_every_format_is_classified_raw_and_multipart(service, audio, tiny_bundle):
    features = load_bundle(tiny_bundle).features
    metric = load_bundle(tiny_bundle).postprocess.review_metric  # the overrides leave the review metric alone
    for name, (seconds, sr, channels, content_type) in GOOD.items():
        data = audio[name].read_bytes()
        status, _, out = post_audio(service, data, content_type)
        assert status == 200, (name, out)
        assert out["top_genre"] in GENRES and list(out["probabilities"]) == list(GENRES)
        assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert out["confidence"] == pytest.approx(out["probabilities"][out["top_genre"]], abs=1e-7)
        assert [t["genre"] for t in out["top_k"]][0] == out["top_genre"]
        assert len(out["top_k"]) == OVERRIDES["top_k"]
        # entropy, margin and the review metric recomputed from the answer's own probabilities, by definition
        p = np.array([out["probabilities"][g] for g in GENRES], dtype=np.float64)
        best, second = np.sort(p)[::-1][:2]
        entropy = float(-(p[p > 0] * np.log(p[p > 0])).sum() / np.log(p.size))
        assert (out["entropy"], out["margin"]) == pytest.approx((entropy, best - second), abs=1e-6)
        assert out["uncertainty"] == pytest.approx({"entropy": entropy, "margin": 1.0 - (best - second)}[metric])
        assert out["needs_review"] is (out["uncertainty"] > OVERRIDES["review_threshold"])
        assert out["duration_s"] == pytest.approx(seconds, abs=0.06)
        assert (out["sample_rate_hz"], out["channels"]) == (sr, channels)
        assert 1 <= len(out["segment_genres"]) <= OVERRIDES["segments"] and out["windows"] >= len(out["segment_genres"])
        assert out["excerpt_s"] <= min(seconds, OVERRIDES["segments"] * features.excerpt_s) + 0.06
        assert out["model_version"] == "test-tiny-0"
        amplitude = 0.5 * (1 - 0.05 * (channels - 1))  # write_audio's channels, downmixed
        assert out["rms_dbfs"] == pytest.approx(20 * np.log10(amplitude / np.sqrt(2)), abs=0.3), name
        assert all(out[f"{stage}_s"] > 0 for stage in ("read", "decode", "resample", "features", "inference"))
        assert {"queue", "total"} == set(out["timings_ms"])  # the request's own; the file's stages are *_s
        assert out["timings_ms"]["total"] >= 1e3 * out["inference_s"]
        assert out["inference_s"] <= out["batch"]["inference_s"]
        # the same bytes as multipart field `file` (a plain field beside it is ignored)
        status, _, form = post_form(service, {"file": (name, data, content_type), "note": "x"}, "/v1/classify")
        assert status == 200, form
        assert form["probabilities"] == pytest.approx(out["probabilities"], abs=1e-6)
    status, _, out = post_audio(service, audio["mono.wav"].read_bytes(), "application/octet-stream")
    assert status == 200 and out["top_genre"] in GENRES


def test_top_k_query(service, audio):
    data = audio["song.mp3"].read_bytes()
    status, _, out = post_audio(service, data, "audio/mpeg", "/v1/classify?top_k=3")
    assert status == 200 and len(out["top_k"]) == 3
    ranked = sorted(out["probabilities"].items(), key=lambda kv: -kv[1])[:3]
    assert [t["genre"] for t in out["top_k"]] == [g for g, _ in ranked]
    status, _, out = post_audio(service, data, "audio/mpeg", f"/v1/classify?top_k={len(GENRES)}")
    assert status == 200 and len(out["top_k"]) == len(GENRES)
    for bad in ("0", "-2", "abc", "1.5", str(len(GENRES) + 1)):
        status, _, out = post_audio(service, data, "audio/mpeg", f"/v1/classify?top_k={bad}")
        assert_error(status, out, 422, "invalid_parameter")
        assert "top_k" in out["detail"], out


def test_bad_audio_is_400_with_a_json_reason(service, audio):
    cases = {
        "empty_audio": (b"", "audio/wav"),
        "undecodable": (b"this is not audio, just text\n" * 40, "audio/mpeg"),
        "truncated_audio": (audio["truncated.flac"].read_bytes(), "audio/flac"),
        "too_short": (audio["short.wav"].read_bytes(), "audio/wav"),
    }
    for code, (data, content_type) in cases.items():
        status, _, out = post_audio(service, data, content_type)
        assert_error(status, out, 400, code)
        assert "0x" not in out["detail"], out  # no object addresses in messages
    status, _, out = post_form(service, {"other": ("a.wav", b"RIFF", "audio/wav")}, "/v1/classify")
    assert_error(status, out, 400, "missing_file")
    status, _, out = request(
        service, "POST", "/v1/classify", b"--x\r\ngarbage", {"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert_error(status, out, 400, "bad_multipart")


def test_unsupported_content_type_is_415(service, audio):
    data = audio["mono.wav"].read_bytes()
    for content_type in ("text/plain", "application/json", "application/x-www-form-urlencoded"):
        status, _, out = post_audio(service, data, content_type)
        assert_error(status, out, 415, "unsupported_media_type")
    status, _, out = request(service, "POST", "/v1/classify", data)  # no Content-Type at all
    assert_error(status, out, 415, "unsupported_media_type")
    status, _, out = post_audio(service, data, "audio/wav", "/v1/classify/batch")  # batch wants multipart
    assert_error(status, out, 415, "unsupported_media_type")


def test_unknown_routes_and_methods_answer_json(service):
    status, _, out = request(service, "GET", "/v1/nothing")
    assert_error(status, out, 404, "not_found")
    status, _, out = request(service, "GET", "/v1/classify")
    assert_error(status, out, 405, "method_not_allowed")


def test_body_over_the_limit_is_refused_from_content_length(service):
    """413 from the header alone: the client never sends a byte of body, yet gets its answer."""
    routes = (("/v1/classify", "audio/wav"), ("/v1/classify/batch", "multipart/form-data; boundary=x"))
    for path, content_type in routes:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {50 * LIMIT_BYTES}\r\n\r\n"
        ).encode()
        answer, _ = raw_exchange(service, head)
        status, out = parse_raw(answer)
        assert_error(status, out, 413, "body_too_large")
    status, _, out = post_audio(service, b"\0" * (LIMIT_BYTES + 1))  # a real over-limit upload, declared
    assert_error(status, out, 413, "body_too_large")


def test_chunked_body_over_the_limit_is_refused_while_streaming(service):
    """No Content-Length: the service counts while the body streams and answers 413 long before its end."""
    head = (
        b"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = 64 * 1024
    chunk = f"{piece:x}\r\n".encode() + b"\0" * piece + b"\r\n"
    total_chunks = 20 * LIMIT_BYTES // piece  # 20 MiB offered
    answer, sent = raw_exchange(service, head, [chunk] * total_chunks, pause_s=0.002)
    status, out = parse_raw(answer)
    assert_error(status, out, 413, "body_too_large")
    assert "streaming" in out["detail"]
    assert sent < total_chunks * len(chunk) / 2, "the refusal came only after most of the body was uploaded"


def test_batch_route_answers_every_file_and_isolates_bad_ones(service, audio):
    fields = [
        ("files", ("mono.wav", audio["mono.wav"].read_bytes(), "audio/wav")),
        ("files", ("notes.txt", b"liner notes", "text/plain")),
        ("files", ("stereo.flac", audio["stereo.flac"].read_bytes(), "audio/flac")),
        ("files", ("truncated.flac", audio["truncated.flac"].read_bytes(), "audio/flac")),
        ("files", ("ünïcode sông.mp3", audio["song.mp3"].read_bytes(), "audio/mpeg")),
        ("files", ("short.wav", audio["short.wav"].read_bytes(), "audio/wav")),
    ]
    status, _, out = post_form(service, fields, "/v1/classify/batch?top_k=2")
    assert status == 200, out
    names = [f[1][0] for f in fields]
    assert [r["filename"] for r in out["results"]] == names
    assert (out["files"], out["ok"], out["errors"]) == (6, 3, 3)
    by_name = {r["filename"]: r for r in out["results"]}
    expected_errors = {"notes.txt": "undecodable", "truncated.flac": "truncated_audio", "short.wav": "too_short"}
    for name, code in expected_errors.items():
        assert by_name[name]["status"] == "error" and by_name[name]["error"] == code, by_name[name]
        assert by_name[name]["detail"]
    windows = sum(by_name[n]["windows"] for n in ("mono.wav", "stereo.flac", "ünïcode sông.mp3"))
    singles = {"mono.wav": "mono.wav", "stereo.flac": "stereo.flac", "ünïcode sông.mp3": "song.mp3"}
    for name, single_name in singles.items():
        item = by_name[name]
        assert item["status"] == "ok" and len(item["top_k"]) == 2
        # the request's three good files went through one dynamic batch; each has its share of its time
        assert (item["batch"]["files"], item["batch"]["windows"]) == (3, windows), item["batch"]
        share = item["batch"]["inference_s"] * item["windows"] / windows
        assert item["inference_s"] == pytest.approx(share, rel=1e-6)
        single = post_audio(service, audio[single_name].read_bytes(), GOOD[single_name][3])[2]
        assert item["probabilities"] == pytest.approx(single["probabilities"], abs=1e-6)
    status, _, out = post_form(service, {"note": "no files"}, "/v1/classify/batch")
    assert_error(status, out, 400, "missing_file")
    too_many = [("files", (f"{i}.wav", b"x", "audio/wav")) for i in range(7)]
    status, _, out = post_form(service, too_many, "/v1/classify/batch")
    assert_error(status, out, 400, "too_many_files")


def test_online_equals_the_batch_job(service, audio, tiny_bundle, tmp_path):
    """The same bytes give the batch job's row: every per-file field but the stage seconds, under the same name."""
    import pyarrow.parquet as pq

    from pipelines.classify import JobOptions, run_classification

    music = audio["mono.wav"].parent
    output = str(tmp_path / "predictions")
    options = JobOptions(inputs=[str(music)], output=output, model=tiny_bundle, files_per_batch=1, **OVERRIDES)
    summary = run_classification(options, progress=False)
    assert summary.ok == len(GOOD)
    rows = {Path(r["path"]).name: r for r in pq.read_table(tmp_path / "predictions").to_pylist()}
    for name, (*_, content_type) in GOOD.items():
        status, _, online = post_audio(service, audio[name].read_bytes(), content_type)
        assert status == 200
        row = rows[name]
        assert set(online) - SERVICE_ONLY == set(row) - JOB_ONLY == set(RECORD)
        assert list(online["probabilities"]) == list(GENRES)
        np.testing.assert_allclose(list(online["probabilities"].values()), row["probabilities"], atol=1e-4)
        for field in set(RECORD) - {"probabilities", *STAGE_SECONDS}:
            assert _close(online[field], row[field]), (name, field, online[field], row[field])


def test_concurrent_load_loses_nothing_and_never_500s(service, audio):
    """200 requests from 16 clients: every one ends 200, or 503 with Retry-After; nothing else."""
    files = [(audio[name].read_bytes(), spec[3]) for name, spec in GOOD.items() if name != "stereo.flac"]

    def one(i: int) -> tuple[int, dict[str, str], Any]:
        data, content_type = files[i % len(files)]
        return post_audio(service, data, content_type)

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(one, range(200)))
    assert len(outcomes) == 200
    statuses = [status for status, _, _ in outcomes]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    for status, headers, out in outcomes:
        if status == 503:
            assert "retry-after" in headers, out
        else:
            assert out["top_genre"] in GENRES
    assert statuses.count(200) > 0


def test_cold_start_and_a_full_model_queue_answer_503_with_retry_after(service, audio, tiny_bundle):
    """A model deployment that starts at zero replicas and admits one request plus one queued."""
    from ray import serve

    from serving.app import build_app

    args = {
        "bundle_uri": tiny_bundle,
        "health_timeout_s": 0.5,
        "retry_after_s": 3,
        "max_batch_size": 8,
        "batch_wait_timeout_s": 1.0,  # a lone request sits in the batch queue for a second
        "ingress_options": _no_cpu(max_ongoing_requests=16),
        "model_options": {
            "autoscaling_config": {"min_replicas": 0, "initial_replicas": 0, "max_replicas": 1},
            "ray_actor_options": {"num_cpus": 0},
            "max_ongoing_requests": 1,
            "max_queued_requests": 1,
        },
    }
    serve.run(build_app(args), name="tight", route_prefix="/tight")
    try:
        status, headers, out = request(service, "GET", "/tight/v1/health")
        assert_error(status, out, 503, "not_ready")
        assert headers["retry-after"] == "3"
        data = audio["mono.wav"].read_bytes()
        status, _, out = post_audio(service, data, path="/tight/v1/classify")  # scales the model up from zero
        assert status == 200, out
        status, _, out = request(service, "GET", "/tight/v1/health")
        assert status == 200 and out["status"] == "ok"
        with ThreadPoolExecutor(max_workers=6) as pool:
            outcomes = list(pool.map(lambda _: post_audio(service, data, path="/tight/v1/classify"), range(6)))
        statuses = sorted(status for status, _, _ in outcomes)
        assert set(statuses) == {200, 503}, statuses
        for status, headers, out in outcomes:
            if status == 503:
                assert_error(status, out, 503, "overloaded")
                assert headers["retry-after"] == "3"
    finally:
        serve.delete("tight")
