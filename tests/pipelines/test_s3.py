"""The classify job against a real S3 endpoint (SeaweedFS on 127.0.0.1): S3 in, S3 out, bundle from S3, credentials.

In-process runs use the module's local Ray and pass credentials as storage options. The CLI runs are the
user's path: ``python -m pipelines.classify`` in a subprocess whose environment holds the AWS variables;
``RAY_ADDRESS=local`` makes it start its own Ray (whose workers inherit that environment) even when a
``ray start`` cluster is running on this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, write_audio

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# key under s3://music/in -> (seconds, sample rate, channels)
GOOD = {
    "a.wav": (3.0, 22050, 1),
    "b stereo.flac": (4.0, 44100, 2),
    "sub/c.wav": (3.0, 16000, 1),
    "sub/deeper/d.flac": (5.0, 22050, 1),
}
BROKEN = "broken.mp3"
INPUT = "s3://music/in"


@pytest.fixture(scope="module")
def s3_corpus(seaweed, tmp_path_factory) -> dict[str, str]:
    """Audio files plus one broken file uploaded to ``s3://music/in``; returns S3 URI -> relative key."""
    local = tmp_path_factory.mktemp("s3-upload")
    for i, (name, (seconds, sr, channels)) in enumerate(GOOD.items()):
        write_audio(local / name, seconds, sr, channels, frequency_hz=220.0 + 110 * i, seed=i)
    (local / BROKEN).write_text("this is not an mp3\n" * 40)
    seaweed.make_bucket("music")
    fs = seaweed.filesystem()
    fs.put(str(local) + "/", "music/in/", recursive=True)
    uris = {f"s3://{p}": p.removeprefix("music/in/") for p in fs.find("music/in")}
    assert set(uris.values()) == set(GOOD) | {BROKEN}, uris
    return uris


@pytest.fixture(scope="module")
def s3_bundle(seaweed, tiny_bundle) -> str:
    """The ``tiny_bundle`` folder uploaded to ``s3://models/tiny``."""
    seaweed.make_bucket("models")
    fs = seaweed.filesystem()
    fs.put(tiny_bundle.rstrip("/") + "/", "models/tiny/", recursive=True)
    assert {Path(p).name for p in fs.ls("models/tiny")} == {"bundle.json", "model.safetensors"}
    return "s3://models/tiny"


def _read_rows(seaweed, output_uri: str) -> list[dict]:
    fs = seaweed.filesystem()
    root = output_uri.removeprefix("s3://")
    assert fs.glob(f"{root}/part-*.parquet"), fs.ls(root)
    return pq.read_table(root, filesystem=fs).to_pylist()  # '_summary.json' is skipped ('_' prefix)


def _check_one_row_per_file(rows: list[dict], corpus: dict[str, str]) -> dict[str, dict]:
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)), "duplicate rows"
    assert set(paths) == set(corpus), set(paths) ^ set(corpus)
    by_key = {corpus[r["path"]]: r for r in rows}
    for name, (seconds, sr, channels) in GOOD.items():
        row = by_key[name]
        assert row["status"] == "ok" and row["error"] is None, (name, row["error"])
        assert row["top_genre"] and len(row["probabilities"]) == 16
        assert row["duration_s"] == pytest.approx(seconds, abs=0.06)
        assert (row["sample_rate_hz"], row["channels"]) == (sr, channels)
        assert row["model_version"] == "test-tiny-0"
    broken = by_key[BROKEN]
    assert broken["status"] == "error" and broken["error_stage"] == "decode", broken
    assert broken["top_genre"] is None and broken["probabilities"] is None
    return by_key


def test_s3_in_s3_out_one_row_per_file(local_ray, seaweed, s3_corpus, tiny_bundle):
    from pipelines.classify import JobOptions, run_classification

    output = "s3://music/out"
    summary = run_classification(
        JobOptions(
            inputs=[INPUT],
            output=output,
            model=tiny_bundle,
            storage_options=seaweed.storage_options(),
            inference_files_per_batch=2,
        ),
        progress=False,
    )
    assert (summary.files, summary.ok, summary.errors, summary.missing_rows) == (len(GOOD) + 1, len(GOOD), 1, 0)
    _check_one_row_per_file(_read_rows(seaweed, output), s3_corpus)
    fs = seaweed.filesystem()
    assert json.loads(fs.cat("music/out/_summary.json"))["files"] == len(GOOD) + 1
    assert not [p for p in fs.find("music/out") if Path(p).name.startswith(".")], "temporary objects left behind"


def test_model_bundle_read_from_s3(local_ray, seaweed, s3_corpus, s3_bundle):
    from pipelines.classify import JobOptions, run_classification

    output = "s3://music/out-s3-bundle"
    summary = run_classification(
        JobOptions(inputs=[INPUT], output=output, model=s3_bundle, storage_options=seaweed.storage_options()),
        progress=False,
    )
    assert summary.model_version == "test-tiny-0" and summary.ok == len(GOOD)
    _check_one_row_per_file(_read_rows(seaweed, output), s3_corpus)


# -- the CLI in a subprocess, credentials from the standard AWS variables ------------------------------------


def _cli_env(seaweed, **changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS"))}
    env |= seaweed.env() | {"RAY_ADDRESS": "local", "AWS_EC2_METADATA_DISABLED": "true"} | changes
    return env


def _run_cli(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.classify", *args, "--no-progress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error")]


def test_cli_takes_credentials_and_endpoint_from_aws_env_vars(seaweed, s3_corpus, s3_bundle):
    output = "s3://music/out-env"
    done = _run_cli(_cli_env(seaweed), "--input", INPUT, "--output", output, "--model", s3_bundle)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "classification summary" in done.stdout and output in done.stdout
    _check_one_row_per_file(_read_rows(seaweed, output), s3_corpus)


def test_cli_refuses_wrong_credentials_with_one_clear_line(seaweed, s3_corpus, tiny_bundle):
    env = _cli_env(seaweed, AWS_SECRET_ACCESS_KEY="not-the-secret")
    done = _run_cli(env, "--input", INPUT, "--output", "s3://music/out-denied", "--model", tiny_bundle, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr[-4000:])
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    errors = _error_lines(done.stderr)
    assert len(errors) == 1, done.stderr[-4000:]
    message = errors[0].lower()
    assert INPUT in errors[0], errors[0]  # which location was refused
    assert any(word in message for word in ("denied", "forbidden", "credential", "signature")), errors[0]
    assert not seaweed.filesystem().exists("music/out-denied")


def test_cli_reports_a_missing_input_bucket_with_one_clear_line(seaweed, tiny_bundle):
    missing = "s3://no-such-bucket/in"
    done = _run_cli(_cli_env(seaweed), "--input", missing, "--output", "s3://music/out-nb", "--model", tiny_bundle)
    assert done.returncode == 2, (done.returncode, done.stderr[-4000:])
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    errors = _error_lines(done.stderr)
    assert len(errors) == 1 and missing in errors[0] and "not found" in errors[0].lower(), done.stderr[-4000:]


def test_cli_reports_a_missing_output_bucket_before_classifying(seaweed, s3_corpus, tiny_bundle):
    """AWS refuses uploads into a missing bucket (the test endpoint too: -s3.autoCreateBucket=false)."""
    output = "s3://no-such-output-bucket/predictions"
    done = _run_cli(_cli_env(seaweed), "--input", INPUT, "--output", output, "--model", tiny_bundle)
    assert done.returncode == 2, (done.returncode, done.stderr[-4000:])
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    errors = _error_lines(done.stderr)
    assert len(errors) == 1 and "no-such-output-bucket" in errors[0], done.stderr[-4000:]
    assert not seaweed.filesystem().exists("no-such-output-bucket")
