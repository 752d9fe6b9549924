"""The side-by-side benchmark: the naive loop with the real model, picking existing files, and both sides end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import librosa
import numpy as np
import pytest
import torch

from acousticsense import front_end, load_bundle
from benchmarks.pipeline import existing_tracks, naive_baseline
from tests.conftest import ROOT, write_audio


def _run_benchmark(args: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "benchmarks.pipeline", *args]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ratio_of_rounded(printed: float, numerator: float, denominator_s: float) -> bool:
    """``printed`` (3 decimals) is numerator / denominator, where the JSON holds the denominator rounded to 0.01 s."""
    low, high = numerator / (denominator_s + 0.005), numerator / max(denominator_s - 0.005, 1e-9)
    return low - 0.0051 <= printed <= high + 0.0051


def test_naive_musicnn_loop_runs_every_patch_of_the_whole_track(tmp_path):
    """musicnn's own extractor: whole file at 16 kHz, consecutive 187-frame patches, batch-1 forwards, mean score."""
    long = tmp_path / "long.wav"  # 7 s: 1 + 112000 // 256 = 438 frames -> patches at 0 and 187, remainder dropped
    short = tmp_path / "short.flac"  # 2 s: 126 frames, shorter than a patch -> one zero-padded patch
    write_audio(long, 7.0, sample_rate_hz=44100, channels=2, frequency_hz=330.0)
    write_audio(short, 2.0, sample_rate_hz=22050, frequency_hz=880.0)
    bundle = load_bundle("musicnn-msd")
    threads = torch.get_num_threads()

    out = naive_baseline([long, short], bundle)

    assert torch.get_num_threads() == threads  # its one-thread setting is restored
    assert out["windows"] == 3 and out["audio_s"] == pytest.approx(9.0, abs=0.01)
    assert out["seconds"] > 0 and out["cpu_s"] > 0 and all(v > 0 for v in out["stages"].values())
    assert [s.shape for s in out["scores"]] == [(50,), (50,)]

    # The same model on the same patches of the core library's front end gives the same tags: for the long file
    # the mean over its two whole patches, for the short one its only patch, zero-padded (log(1 + 0) = 0).
    model = bundle.build_model()
    with torch.inference_mode():
        mel = front_end(bundle.features)(torch.from_numpy(librosa.load(long, sr=16000, mono=True)[0]))
        patches = torch.stack([mel[:, 0:187], mel[:, 187:374]])
        expected_long = torch.sigmoid(model(patches)).mean(0).numpy()
        mel = front_end(bundle.features)(torch.from_numpy(librosa.load(short, sr=16000, mono=True)[0]))
        assert mel.shape[1] == 126
        expected_short = torch.sigmoid(model(torch.nn.functional.pad(mel, (0, 187 - 126))[None]))[0].numpy()
    np.testing.assert_allclose(out["scores"][0], expected_long, atol=2e-3)
    np.testing.assert_allclose(out["scores"][1], expected_short, atol=2e-3)


def test_existing_tracks_skips_non_audio_and_picks_evenly(tmp_path):
    for i, seconds in enumerate((3.0, 9.0, 3.0, 3.0, 3.0)):
        write_audio(tmp_path / f"src{i % 2}" / f"t{i}.wav", seconds, sample_rate_hz=8000)
    (tmp_path / "SOURCES.tsv").write_text("path\tlicence\n")
    (tmp_path / "src0" / ".copyright").write_text("GPL")

    assert [p.name for p in existing_tracks(tmp_path)] == ["t0.wav", "t2.wav", "t4.wav", "t1.wav", "t3.wav"]
    assert [p.name for p in existing_tracks(tmp_path, max_duration_s=5)] == ["t0.wav", "t2.wav", "t4.wav", "t3.wav"]
    assert [p.name for p in existing_tracks(tmp_path, tracks=2, max_duration_s=5)] == ["t0.wav", "t4.wav"]
    with pytest.raises(SystemExit):
        existing_tracks(tmp_path, max_duration_s=1)


@pytest.mark.slow
@pytest.mark.ray
def test_real_model_on_an_existing_folder_both_sides(tmp_path):
    """``--input`` + ``--model musicnn-msd``: the naive loop and the job read the same files with the same model."""
    music = tmp_path / "music"
    write_audio(music / "a" / "one.wav", 8.0, sample_rate_hz=44100, channels=2)
    write_audio(music / "b" / "two.ogg", 4.0, sample_rate_hz=48000, frequency_hz=220.0)
    write_audio(music / "b" / "long.wav", 40.0, sample_rate_hz=8000)  # left out by --max-duration-s
    (music / "SOURCES.tsv").write_text("path\n")
    result = _run_benchmark(["--input", str(music), "--model", "musicnn-msd", "--max-duration-s", "20"])

    assert (result["model"], result["family"], result["files"], result["distinct_tracks"]) == (
        "musicnn-msd", "musicnn", 2, 2,
    )  # fmt: skip
    assert (result["pipeline_ok"], result["pipeline_errors"]) == (2, 0)
    assert result["baseline_windows"] == 2 + 1  # 8 s: 501 frames -> 2 patches; 4 s: 251 frames -> 1
    assert result["pipeline_windows"] == 3 + 2  # the job's windows cover every frame: the last is end-aligned
    assert _ratio_of_rounded(result["speedup"], result["baseline_s"], result["pipeline_s"])
    assert _ratio_of_rounded(result["baseline_files_per_s"], 2, result["baseline_s"])
    assert result["baseline_inference_ms_per_window"] > 0 and result["speedup_per_window"] > 0
    assert result["job_args"][:2] == ["--model", "musicnn-msd"]
    assert result["machine_info"]["cpu_model"] and len(result["machine_info"]["loadavg_end"]) == 3


@pytest.mark.slow
@pytest.mark.ray
def test_pipeline_benchmark_runs_both_sides_on_the_same_inputs(tmp_path):
    """The generated corpus with the synthetic ViT (the earlier figures' setting): repeats are links, JSON adds up."""
    result = _run_benchmark(["--corpus", str(tmp_path / "corpus"), "--tracks", "3", "--repeat", "2",
                             "--model", "synthetic-tiny", "--job-args", "--files-per-shard 2"])  # fmt: skip

    assert len(list((tmp_path / "corpus").rglob("*.*"))) == 3  # repeats are links, not new tracks
    assert (result["files"], result["distinct_tracks"], result["baseline_files_timed"]) == (6, 3, 6)
    assert (result["pipeline_ok"], result["pipeline_errors"]) == (6, 0)
    assert result["baseline_windows"] == 6  # the article's loop: one centre window per file
    assert _ratio_of_rounded(result["speedup"], result["baseline_s"], result["pipeline_s"])
    assert 0 < result["pipeline_in_job_s"] < result["pipeline_s"]
    assert result["pipeline_stage_s"]["decode"] > 0 and result["baseline_stage_s"]["load"] > 0
    assert 0.3 < result["cpu_stage_over_primitives"] < 5
    assert result["audio_hours"] > 6 * 60 / 3600  # tracks are 1-6 minutes long
