"""The job's fixed cost: what the driver imports, what a local Ray starts, who writes the shards, and the cost-curve
benchmark. Speed itself is shown by ``python -m benchmarks.scaling`` (BENCHMARKS.md), never by a timed test."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, write_audio


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | env
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )


def test_the_driver_lists_plans_and_summarises_without_torch(tmp_path):
    """Only the bundle check needs torch on the driver (the core's model registry), and it runs beside ray.init."""
    for name in ("a.wav", "b/c.flac"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"not read here")
    code = f"""
import sys
import pyarrow as pa
from pipelines.classify import _list_inputs, build_parser, options_from_args, plan_resources
from pipelines._stages import FeaturizeAndClassify  # the class objects the driver hands to Ray Data
from pipelines._summary import summarize
from pipelines._write import write_shard
options = options_from_args(build_parser().parse_args(["--input", {str(tmp_path)!r}, "--output", "out"]))
items = list(_list_inputs(options))
plan = plan_resources(options, {{"CPU": 2}})
rows = pa.table({{"status": ["ok"], "error_stage": [None], "duration_s": [3.0], "top_genre": ["Jazz"],
                  "needs_review": [False], "inference_s": [0.5]}})
summary = summarize(rows, wall_s=1.0, expected_files=1, output="out", model_version="v", feature_hash="h", plan={{}})
print(len(items), plan.fused, summary.ok, "torch" in sys.modules)
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["2", "True", "1", "False"]


def test_main_checks_the_bundle_while_ray_starts(monkeypatch, tmp_path):
    """The bundle check runs in another thread and is under way before Ray is connected."""
    from pipelines import classify

    prepare_started = threading.Event()
    seen: dict[str, object] = {}
    empty = ("a bundle", [], 0)

    def prepare(options, items):
        seen["prepare_thread"] = threading.current_thread() is not threading.main_thread()
        prepare_started.set()
        return classify._Prepared(*empty)

    def connect(*, dashboard):
        seen["dashboard"] = dashboard
        seen["overlap"] = prepare_started.wait(timeout=30)  # False if the preparation waited for Ray
        return False

    def run(options, prepared, *, progress, started):
        seen["prepared"] = prepared
        raise ValueError("stop here")  # reported as 'error: ...', exit status 2

    monkeypatch.setattr(classify, "_settle", prepare)
    monkeypatch.setattr(classify, "connect_ray", connect)
    monkeypatch.setattr(classify, "_run", run)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.wav").write_bytes(b"listed, never read")
    assert classify.main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]) == 2
    assert seen == {"prepare_thread": True, "dashboard": False, "overlap": True, "prepared": classify._Prepared(*empty)}
    assert classify.build_parser().parse_args(["--input", "i", "--output", "o", "--dashboard"]).dashboard


def test_main_fails_on_a_missing_input_or_a_used_output_before_ray_starts(monkeypatch, tmp_path):
    from pipelines import classify

    def connect(*, dashboard):
        raise AssertionError("Ray was started for a job that cannot run")

    monkeypatch.setattr(classify, "connect_ray", connect)
    assert classify.main(["--input", str(tmp_path / "nope"), "--output", str(tmp_path / "out")]) == 2
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.wav").write_bytes(b"x")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "part-0.parquet").write_bytes(b"x")
    assert classify.main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]) == 2


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("dashboard", [False, True])
def test_a_local_one_shot_ray_starts_the_dashboard_only_when_asked(dashboard):
    # RAY_ADDRESS=local: start a Ray of its own even if a `ray start` cluster runs on this machine.
    code = f"""
import psutil, ray
from pipelines.classify import connect_ray
assert connect_ray(dashboard={dashboard}) and not connect_ray(dashboard={dashboard})  # the second call: no-op
names = []
for proc in psutil.Process().children(recursive=True):
    try:
        names.append(" ".join(proc.cmdline()))
    except psutil.Error:
        pass
print(sum("ray-dashboard-" in name for name in names))  # the dashboard's modules, each a process
ray.shutdown()
"""
    done = _python(code, RAY_ADDRESS="local", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    assert done.returncode == 0, done.stderr[-3000:]
    modules = int(done.stdout.split()[-1])
    assert (modules > 0) if dashboard else (modules == 0)


def test_small_pools_write_on_the_driver_and_large_ones_on_writer_actors():
    from pipelines.classify import JobOptions, plan_resources

    options = JobOptions(inputs=["in"], output="out")
    assert plan_resources(options, {"CPU": 2}).writer_actors == 0
    assert plan_resources(options, {"CPU": 16}).writer_actors == 0
    assert plan_resources(options, {"CPU": 17}).writer_actors == 2
    assert plan_resources(options, {"CPU": 64, "GPU": 4}).writer_actors == 4


@pytest.mark.ray
@pytest.mark.slow
def test_driver_and_writer_actors_commit_the_same_kind_of_shards(local_ray, tiny_bundle, tmp_path, monkeypatch):
    """Either writer: one row per file, shards of at most --files-per-shard rows, each named by its content."""
    from pipelines import classify
    from pipelines._write import write_shard

    inputs = tmp_path / "in"
    for i in range(5):
        write_audio(inputs / f"clip {i}.wav", 3.0, frequency_hz=200.0 + 50 * i, seed=i)
    (inputs / "broken.wav").write_bytes(b"RIFF but no audio")
    expected = sorted(str(p) for p in inputs.iterdir())
    (tmp_path / "again").mkdir()

    def run(output: Path) -> dict[str, dict]:
        options = classify.JobOptions(
            inputs=[str(inputs)], output=str(output), model=tiny_bundle, files_per_batch=1, files_per_shard=2
        )
        summary = classify.run_classification(options, progress=False)
        assert (summary.files, summary.ok, summary.errors, summary.missing_rows) == (6, 5, 1, 0)
        shards = sorted(output.glob("part-*.parquet"))
        assert sorted(pq.read_table(s).num_rows for s in shards) == [2, 2, 2]
        for shard in shards:  # the name is a function of the rows: writing them again lands on the same name
            again = write_shard(pq.read_table(shard), str(tmp_path / "again"), {})
            assert again.num_rows == pq.read_table(shard).num_rows
        assert sorted(p.name for p in (tmp_path / "again").glob("part-*.parquet")) == [s.name for s in shards]
        for leftover in (tmp_path / "again").iterdir():
            leftover.unlink()
        assert not list(output.glob(".*"))  # nothing half-written left behind
        rows = pa.concat_tables([pq.read_table(s) for s in shards]).to_pylist()
        assert sorted(r["path"] for r in rows) == expected
        return {r["path"]: r for r in rows}

    on_driver = run(tmp_path / "driver")
    monkeypatch.setattr(classify, "_CPU_ACTORS_PER_WRITER", 1)  # two CPU actors now need two writer actors
    assert classify._writer_actors(2) == 2
    on_actors = run(tmp_path / "actors")
    for path, row in on_driver.items():
        other = on_actors[path]
        for column in ("status", "error_stage", "top_genre", "model_version", "feature_hash"):
            assert row[column] == other[column], (path, column)
        if row["status"] == "ok":
            assert row["probabilities"] == pytest.approx(other["probabilities"], abs=1e-6)


@pytest.mark.ray
@pytest.mark.slow
def test_shards_written_by_the_driver_still_export_the_write_metric(tiny_bundle, tmp_path):
    """The write stage's histogram now comes from the driver's process: it must reach the node's metrics port."""
    write_audio(tmp_path / "in" / "clip.wav", 3.0)
    code = f"""
import socket, time, urllib.request
import ray
from pipelines.classify import JobOptions, run_classification
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", _metrics_export_port=port)
options = JobOptions(inputs=[{str(tmp_path / "in")!r}], output={str(tmp_path / "out")!r}, model={tiny_bundle!r})
assert run_classification(options, progress=False).ok == 1
deadline, lines = time.monotonic() + 60, []
while time.monotonic() < deadline and not lines:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{{port}}/metrics", timeout=5).read().decode()
        lines = [l for l in text.splitlines() if "acousticsense_stage_seconds_count" in l and 'stage="write"' in l]
    except OSError:
        pass
    time.sleep(1)
print(len(lines))
ray.shutdown()
"""
    done = _python(code, RAY_metrics_report_interval_ms="1000", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) >= 1, "no write-stage series on the metrics port"


def test_the_cost_curve_fit_recovers_a_line_and_refuses_one_size():
    from benchmarks.scaling import fit_cost_curve

    fit = fit_cost_curve([(1, 8.5), (10, 13.0), (100, 58.0), (1000, 508.0)])
    assert fit["fixed_s"] == pytest.approx(8.0) and fit["per_file_s"] == pytest.approx(0.5)
    assert fit["r2"] == pytest.approx(1.0)
    noisy = fit_cost_curve([(1, 9.0), (10, 12.0), (100, 60.0)])
    assert 0.9 < noisy["r2"] < 1.0
    with pytest.raises(ValueError, match="two distinct sizes"):
        fit_cost_curve([(10, 5.0), (10, 6.0)])


def test_the_cost_curve_splits_the_fixed_cost_into_its_parts():
    from benchmarks.scaling import Run, summarize_curves

    runs = [
        Run("local", n, wall_s=6.0 + 3.0 + 0.5 * n, in_job_s=3.0 + 0.5 * n, busy_s=0.9 * n, cores=2) for n in (1, 10)
    ]
    runs += [  # two repeats of one size: the median run counts
        Run("submit", 1, wall_s=w, in_job_s=2.5, span_s=w - 4.0, cores=2) for w in (10.0, 11.0, 30.0)
    ] + [Run("submit", 10, wall_s=15.5, in_job_s=7.0, span_s=11.5, cores=2)]
    curves = summarize_curves(runs)
    local = curves["local"]
    assert local["fit"]["fixed_s"] == pytest.approx(9.0) and local["fit"]["per_file_s"] == pytest.approx(0.5)
    assert local["in_job_fit"]["fixed_s"] == pytest.approx(3.0) and local["outside_job_s"] == pytest.approx(6.0)
    assert runs[0].busy_share == pytest.approx(0.9 / (3.5 * 2))
    submit = curves["submit"]
    assert submit["wall_s"] == [11.0, 15.5]  # the median of 10, 11 and 30
    assert submit["cli_and_submission_s"] == pytest.approx(4.0)
    assert submit["driver_outside_job_s"] == pytest.approx(statistics.median([7.0 - 2.5, 11.5 - 7.0]))


@pytest.mark.ray
@pytest.mark.slow
def test_the_scaling_benchmark_runs_and_fits_on_a_tiny_setting(tiny_bundle, capsys):
    from benchmarks.scaling import main

    args = ["--sizes", "1,2", "--modes", "local,naive", "--model", tiny_bundle, "--clip-s", "3", "--distinct", "2"]
    assert main([*args, "--naive-max-files", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    local, naive = result["curves"]["local"], result["curves"]["naive"]
    assert local["sizes"] == naive["sizes"] == [1, 2]
    assert set(local["fit"]) == {"fixed_s", "per_file_s", "r2"} and "in_job_fit" in local and local["outside_job_s"] > 0
    jobs = [r for r in result["runs"] if r["mode"] == "local"]
    assert [(r["files"], r["ok"], r["errors"]) for r in jobs] == [(1, 1, 0), (2, 2, 0)]
    assert all(0 < r["busy_share"] <= 1 for r in jobs)
    assert [r["timed_files"] for r in result["runs"] if r["mode"] == "naive"] == [1, 1]  # 2 files: timed on 1, scaled
