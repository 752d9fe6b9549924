"""Object-storage faults between the job and a real S3 endpoint (SeaweedFS), through ``tests.faulty_proxy``.

5 % of requests answered 503 SlowDown or reset: the S3 client defaults (retries with backoff,
``acousticsense.storage.S3_CLIENT_DEFAULTS``) leave no row with a transport error. An endpoint that is gone for
good, and refused credentials, end the job with one line naming the URI within seconds, never a hang.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import write_audio
from tests.faulty_proxy import FaultyProxy
from tests.seaweed import REGION

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BUCKET = "faulty"
INPUT = f"s3://{BUCKET}/in"
FILES = 60
FAST_FAIL = {
    "retries": {"max_attempts": 2, "mode": "standard"}
}  # the override knob; keeps the gone-endpoint test short
GIVE_UP_WITHIN_S = 60  # an answer within this; a hang (ray#57278-like) would not give one


@pytest.fixture(scope="module")
def s3_inputs(seaweed, tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """60 one-second clips uploaded straight to SeaweedFS (not through the proxy); their URIs."""
    local = tmp_path_factory.mktemp("upload")
    for i in range(FILES):
        write_audio(local / f"clip {i:02d}.wav", 1.0, 16000, 1, frequency_hz=200 + 7 * i, seed=i)
    seaweed.make_bucket(BUCKET)
    fs = seaweed.filesystem()
    fs.put(str(local) + "/", f"{BUCKET}/in/", recursive=True)
    return {f"s3://{p}" for p in fs.find(f"{BUCKET}/in")}


def _through(proxy: FaultyProxy, seaweed) -> dict[str, Any]:
    """Storage options that reach SeaweedFS through ``proxy``."""
    return seaweed.storage_options() | {"client_kwargs": {"endpoint_url": proxy.endpoint_url, "region_name": REGION}}


def _cli_storage_options(options: dict[str, Any]) -> list[str]:
    return [arg for key, value in options.items() for arg in ("--storage-option", f"{key}={json.dumps(value)}")]


def test_five_percent_failed_requests_leave_no_transport_error_row(
    local_ray, seaweed, s3_inputs, tiny_bundle, tmp_path
):
    from pipelines.classify import JobOptions, run_classification

    with FaultyProxy(seaweed.s3_port, fault_rate=0.05, seed=12) as proxy:
        options = JobOptions(
            inputs=[INPUT],
            output=f"s3://{BUCKET}/out",
            model=tiny_bundle,
            storage_options=_through(proxy, seaweed),
            files_per_shard=10,
            cache=str(tmp_path / "cache"),
            rules=True,
            enhance="both",
            segments=3,
        )
        summary = run_classification(options, progress=False)
        counts = dict(proxy.counts)
    fs = seaweed.filesystem()
    table = pq.read_table(f"{BUCKET}/out", filesystem=fs, columns=["path", "status", "error"])
    paths = table.column("path").to_pylist()
    errors = [r for r in table.to_pylist() if r["status"] != "ok"]
    print(f"FAULT-FIGURE storage 5% faults: {counts}, rows={len(paths)}, error_rows={len(errors)}", flush=True)
    assert counts["503"] + counts["reset"] >= 5, counts  # the faults did happen
    assert sorted(paths) == sorted(s3_inputs)
    assert not errors, errors[:3]
    assert (summary.ok, summary.missing_rows) == (FILES, 0)


def test_an_endpoint_gone_for_good_ends_the_job_with_its_uri(local_ray, seaweed, s3_inputs, tiny_bundle, capsys):
    from pipelines.classify import main

    proxy = FaultyProxy(seaweed.s3_port, fault_rate=0.0).start()
    options = _through(proxy, seaweed) | {"config_kwargs": FAST_FAIL}
    proxy.stop()  # connections are refused from now on
    t0 = time.perf_counter()
    status = main(
        ["--input", INPUT, "--output", f"s3://{BUCKET}/gone", "--model", tiny_bundle, "--no-progress"]
        + _cli_storage_options(options)
    )
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err.strip()
    print(f"FAULT-FIGURE endpoint gone: {elapsed:.1f} s to fail: {err[:160]}", flush=True)
    assert status == 2 and elapsed < GIVE_UP_WITHIN_S
    assert err.startswith("error: ConnectionError: cannot reach s3://faulty/in"), err
    assert len(err.splitlines()) == 1  # one line, no traceback


def test_refused_credentials_end_a_resume_with_the_output_uri(
    local_ray, seaweed, s3_inputs, tiny_bundle, tmp_path, capsys
):
    """Against SeaweedFS's identity file: a wrong secret is refused (403), reading the output to resume included."""
    from pipelines.classify import main

    (tmp_path / "in").mkdir()
    write_audio(tmp_path / "in" / "one.wav", 1.0, 16000)
    wrong = seaweed.storage_options() | {"secret": "not-the-secret"}
    t0 = time.perf_counter()
    status = main(
        ["--input", str(tmp_path / "in"), "--output", f"s3://{BUCKET}/out", "--model", tiny_bundle, "--resume"]
        + ["--no-progress"]
        + _cli_storage_options(wrong)
    )
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err.strip()
    print(f"FAULT-FIGURE bad credentials: {elapsed:.1f} s to fail: {err[:160]}", flush=True)
    assert status == 2 and elapsed < GIVE_UP_WITHIN_S
    assert "access denied to s3://faulty/out" in err and "AWS_SECRET_ACCESS_KEY" in err, err
    assert len(err.splitlines()) == 1


def test_an_endpoint_lost_mid_job_ends_it_with_a_shard_uri(local_ray, seaweed, s3_inputs, tiny_bundle, tmp_path):
    """Last in the module: the abandoned job's actors stay until the module's Ray stops."""
    from pipelines.classify import JobOptions, run_classification

    proxy = FaultyProxy(seaweed.s3_port, fault_rate=0.0).start()
    options = JobOptions(
        inputs=[INPUT],
        output=f"s3://{BUCKET}/lost",
        model=tiny_bundle,
        storage_options=_through(proxy, seaweed) | {"config_kwargs": FAST_FAIL},
        files_per_shard=4,
    )
    outcome: dict[str, Any] = {}

    def job() -> None:
        try:
            outcome["summary"] = run_classification(options, progress=False)
        except Exception as e:  # noqa: BLE001 - inspected below
            outcome["error"] = e

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    fs = seaweed.filesystem()
    deadline = time.monotonic() + GIVE_UP_WITHIN_S
    while not (fs.exists(f"{BUCKET}/lost") and fs.glob(f"{BUCKET}/lost/part-*.parquet")):
        assert thread.is_alive() and time.monotonic() < deadline, "no shard was written before the deadline"
        fs.invalidate_cache()
        time.sleep(0.05)
    proxy.stop()
    t0 = time.perf_counter()
    thread.join(GIVE_UP_WITHIN_S)
    assert not thread.is_alive(), f"the job still runs {GIVE_UP_WITHIN_S} s after its endpoint went"
    error = outcome.get("error")
    print(f"FAULT-FIGURE endpoint lost mid-job: ended {time.perf_counter() - t0:.1f} s later: {error!s:.160}")
    assert isinstance(error, ConnectionError), outcome
    assert f"cannot reach s3://{BUCKET}/lost/" in str(error)
