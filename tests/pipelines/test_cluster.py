"""The classify job on a real ``ray start --head`` cluster through ``ray job submit``: results, metrics, kill + resume.

The head is :class:`benchmarks.ray_head.RayHead` (the ``submit`` mode of ``benchmarks.scaling`` runs on it too):
free ports, its own ``--temp-dir``, token authentication with a token of its own, stopped by PID, never by
``ray stop``. This module does not use ``local_ray``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from benchmarks.ray_head import RAY, RayHead
from tests.conftest import write_audio

pytestmark = [pytest.mark.ray, pytest.mark.slow]

METRIC_NAMES = ("acousticsense_files_total", "acousticsense_stage_seconds")
# Enough files that the job still runs when its first shard lands (a few seconds of work left on 2 idle cores);
# raise it with ACOUSTICSENSE_TEST_RESUME_FILES if a fast machine finishes before the stop arrives.
RESUME_FILES = int(os.environ.get("ACOUSTICSENSE_TEST_RESUME_FILES", "120"))


@pytest.fixture(scope="module")
def ray_head():
    # Workers push metrics every second (default 10 s), so the metrics test sees them while the job runs.
    head = RayHead(num_cpus=2, env={"RAY_metrics_report_interval_ms": "1000"})
    head.start(timeout_s=120)
    try:
        yield head
    finally:
        head.stop()


def _listening_hosts(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at ``port`` (every process's; no root needed for the list)."""
    return {c.laddr.ip for c in psutil.net_connections(kind="tcp") if c.status == "LISTEN" and c.laddr.port == port}


def _jobs_api_status(head: RayHead, token: str | None) -> int:
    """The HTTP status of ``GET /api/jobs/`` on the head's dashboard, with ``token`` as the bearer token (or none)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(head.dashboard_url + "/api/jobs/", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_the_jobs_api_refuses_requests_without_the_clusters_token(ray_head, submitted_job, tmp_path):
    """Token authentication (RAY_AUTH_MODE=token): no token or a wrong one is refused, the cluster's is accepted.

    ``ray job submit`` without the token fails before anything runs (the marker file its job would write never
    appears), while the module's job went through the same CLI with the token; the REST API that the CLI wraps
    answers 401 to a missing token, 403 to a wrong one and 200 to the right one.
    """
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').write('ran')"

    env = {k: v for k, v in ray_head.env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token of this user's either
    command = [RAY, "job", "submit", "--address", ray_head.dashboard_url, "--", "python", "-c", code]
    refused = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output[-3000:]
    assert "unauthorized" in output.lower() or "authentication" in output.lower(), output[-3000:]
    assert not marker.exists()
    assert _jobs_api_status(ray_head, None) == 401  # no token: unauthenticated
    assert _jobs_api_status(ray_head, "0" * 64) == 403  # a wrong token: authenticated as nobody
    assert _jobs_api_status(ray_head, ray_head.env["RAY_AUTH_TOKEN"]) == 200
    # With the token, `ray job submit` runs: the module's job (submitted_job) went through the same CLI.
    done = submitted_job[0]
    assert done.returncode == 0 and "succeeded" in done.stdout + done.stderr, (done.stdout + done.stderr)[-3000:]


def test_the_dashboard_listens_on_loopback_only(ray_head):
    """``--dashboard-host=127.0.0.1`` (as infra/local/stack.sh starts it): nothing outside this machine reaches it."""
    hosts = _listening_hosts(ray_head.ports["dashboard"])
    assert hosts == {"127.0.0.1"}, hosts


def _rows(output: Path) -> list[dict]:
    shards = sorted(output.glob("part-*.parquet"))
    if not shards:
        return []
    return pq.ParquetDataset(shards).read(columns=["path", "status"]).to_pylist()


@pytest.fixture(scope="module")
def submitted_job(ray_head, tiny_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster-in")
    inputs = root / "in"
    for i in range(6):
        write_audio(inputs / f"track {i}.wav", 3.0, frequency_hz=200.0 + 60 * i, seed=i)
    (inputs / "broken.flac").write_bytes(b"fLaC but not really")
    output = root / "predictions"
    t0 = time.perf_counter()
    done = ray_head.submit("--input", str(inputs), "--output", str(output), "--model", tiny_bundle)
    return done, inputs, output, time.perf_counter() - t0


def test_ray_job_submit_writes_one_row_per_file(submitted_job):
    done, inputs, output, _ = submitted_job
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert "succeeded" in (done.stdout + done.stderr)
    rows = _rows(output)
    expected = {str(p) for p in inputs.iterdir()}
    assert sorted(r["path"] for r in rows) == sorted(expected)
    status = {Path(r["path"]).name: r["status"] for r in rows}
    assert status.pop("broken.flac") == "error" and set(status.values()) == {"ok"}
    assert json.loads((output / "_summary.json").read_text())["files"] == len(expected)


def test_project_metrics_reach_the_prometheus_export(ray_head, submitted_job):
    """Ray exports ``ray.util.metrics`` series on the head's metrics port, with a ``ray_`` prefix."""
    assert submitted_job[0].returncode == 0, "the job failed: see test_ray_job_submit_writes_one_row_per_file"
    deadline = time.monotonic() + 30
    names: set[str] = set()
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(ray_head.metrics_url, timeout=5) as r:
                text = r.read().decode()
            names = {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if "acousticsense" in line}
            if all(any(m in n for n in names) for m in METRIC_NAMES):
                break
        except OSError:
            pass
        time.sleep(1)
    missing = [m for m in METRIC_NAMES if not any(m in n for n in names)]
    assert not missing, f"no series for {missing} on {ray_head.metrics_url}; acousticsense series seen: {sorted(names)}"


def _wait_until_the_jobs_processes_exit(head, submission_id: str, deadline: float) -> None:
    """Poll until the job's driver process has exited and Ray reports none of its actors alive.

    A stopped job's status may turn STOPPED as its driver is signalled, before the driver and the job's own
    actors (the pools, writer actors) have died; until they have, a shard's rename may still land, and the rows
    counted before the resume would be a guess. (The head runs on this machine: the driver's pid is local.)
    """
    job = head.job(submission_id)
    driver_pid = int(job["driver_info"]["pid"])
    query = (
        f"/api/v0/actors?detail=true&limit=1000&filter_keys=job_id&filter_predicates=%3D&filter_values={job['job_id']}"
    )
    while True:
        # Ray Data's bookkeeping actors (stats, autoscaling, locations) are detached: they outlive every job.
        listed = head.api("GET", query)["data"]["result"]["result"]
        actors = [a["class_name"] for a in listed if a["state"] != "DEAD" and not a["is_detached"]]
        driver = _running(driver_pid)
        if not actors and not driver:
            return
        assert time.monotonic() < deadline, f"still running after the stop: driver {driver}, actors {actors}"
        time.sleep(0.2)


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (an exited child its parent has not reaped yet counts as exited)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_stopped_job_resumes_without_duplicates_or_gaps(ray_head, tiny_bundle, tmp_path):
    """Stop the job as soon as its first shard is committed; ``--resume`` then adds exactly the missing rows.

    The job is stopped through the Jobs REST API (``POST /api/jobs/<id>/stop``, what ``ray job stop``
    sends): the driver gets SIGTERM and Ray kills the job's workers.
    """
    inputs = tmp_path / "corpus"
    write_audio(inputs / "seed.wav", 3.0)
    seed = (inputs / "seed.wav").read_bytes()
    (inputs / "seed.wav").unlink()
    for i in range(RESUME_FILES):  # identical bytes are fine: one row per path
        path = inputs / f"{i // 40:02d}" / f"clip {i:04d}.wav"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(seed)
    expected = sorted(str(p) for p in inputs.rglob("*.wav"))
    output = tmp_path / "predictions"
    job_args = ["--input", str(inputs), "--output", str(output), "--model", tiny_bundle]
    job_args += ["--files-per-batch", "2", "--files-per-shard", "4"]

    job_id = f"acousticsense-stop-{secrets.token_hex(4)}"
    t0 = time.perf_counter()
    started = ray_head.submit(*job_args, wait=False, submission_id=job_id)
    assert started.returncode == 0, (started.stdout + started.stderr)[-4000:]
    deadline = time.monotonic() + 240
    while not list(output.glob("part-*.parquet")):
        status = ray_head.job(job_id)["status"]
        assert status in ("PENDING", "RUNNING"), (status, ray_head.job_logs(job_id))
        assert time.monotonic() < deadline, "no shard committed within 240 s"
        time.sleep(0.1)
    first_shard_s = time.perf_counter() - t0
    ray_head.api("POST", f"/api/jobs/{job_id}/stop")
    while (status := ray_head.job(job_id)["status"]) in ("PENDING", "RUNNING"):
        assert time.monotonic() < deadline + 60, "the job did not stop"
        time.sleep(0.2)
    assert status == "STOPPED", f"the job ended {status} before it was stopped: raise RESUME_FILES"
    _wait_until_the_jobs_processes_exit(ray_head, job_id, deadline + 60)  # no shard rename can land after
    before = _rows(output)
    assert 0 < len(before) < len(expected)
    assert not (output / "_summary.json").exists()

    stopped_s = time.perf_counter() - t0
    resumed = ray_head.submit(*job_args, "--resume")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-6000:]
    paths = [r["path"] for r in _rows(output)]
    assert len(paths) == len(set(paths)), f"{len(paths) - len(set(paths))} duplicate rows"
    assert sorted(paths) == expected
    summary = json.loads((output / "_summary.json").read_text())
    print(
        f"first shard after {first_shard_s:.1f} s, stopped at {stopped_s:.1f} s with {len(before)}/{len(expected)} "
        f"rows, resumed run done at {time.perf_counter() - t0:.1f} s (job wall {summary['wall_s']:.1f} s)"
    )
    assert summary["skipped_existing"] >= len(before) > 0
    assert summary["files"] + summary["skipped_existing"] == len(expected)
