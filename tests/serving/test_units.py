"""The service's pieces without Ray: arguments, the batch job's overrides, multipart parsing, error mapping."""

from __future__ import annotations

import os

import numpy as np
import pytest
from pydantic import ValidationError

from acousticsense.extract import StageError
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
    from pipelines._stages import job_bundle
    from pipelines.classify import JobOptions

    assert set(AppArgs().overrides()) == set(JobOptions(inputs=[], output="").overrides())
    values = {"excerpt_s": 5.0, "excerpt_policy": "start", "top_k": 3, "review_threshold": 0.4}
    served = load_service_bundle(AppArgs(**values))
    batch = job_bundle(None, {}, values)
    assert served.features == batch.features and served.postprocess == batch.postprocess
    assert served.feature_hash == batch.feature_hash
    plain = load_service_bundle(AppArgs())
    assert plain.features == job_bundle(None, {}, JobOptions(inputs=[], output="").overrides()).features


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
