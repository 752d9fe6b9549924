"""The side-by-side benchmark end to end on a tiny corpus: both sides see the same inputs, the JSON adds up."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
@pytest.mark.ray
def test_pipeline_benchmark_runs_both_sides_on_the_same_inputs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "benchmarks.pipeline", "--corpus", str(tmp_path / "corpus"), "--tracks", "3",
           "--repeat", "2", "--job-args", "--files-per-shard 2"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])

    assert len(list((tmp_path / "corpus").rglob("*.*"))) == 3  # repeats are links, not new tracks
    assert (result["files"], result["distinct_tracks"], result["baseline_files_timed"]) == (6, 3, 6)
    assert (result["pipeline_ok"], result["pipeline_errors"]) == (6, 0)
    assert result["speedup"] == pytest.approx(result["baseline_s"] / result["pipeline_s"], abs=0.01)
    assert 0 < result["pipeline_in_job_s"] < result["pipeline_s"]
    assert result["pipeline_stage_s"]["decode"] > 0 and result["baseline_stage_s"]["load"] > 0
    assert 0.3 < result["cpu_stage_over_primitives"] < 5
    assert result["audio_hours"] > 6 * 60 / 3600  # tracks are 1-6 minutes long
