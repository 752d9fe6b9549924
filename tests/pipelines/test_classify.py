"""The classify job end to end on a real local Ray, over good files of many kinds mixed with bad ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from acousticsense import GENRES, WindowPredictor, load_bundle
from acousticsense.extract import ExcerptFeaturizer
from tests.conftest import ROOT, write_audio, write_m4a

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# name -> (seconds, sample rate, channels)
GOOD = {
    "pcm.wav": (3.0, 22050, 1),
    "long stereo.wav": (40.0, 44100, 2),
    "album/ünïcode trâck.flac": (12.0, 48000, 2),
    "album/six channels.wav": (2.5, 48000, 6),
    "low/eight.ogg": (4.0, 8000, 1),
    "low/mpeg.mp3": (6.0, 44100, 2),
    "hi-res.flac": (2.0, 96000, 1),
}
BAD = {
    "empty.wav": ("decode", "empty"),
    "not audio.mp3": ("decode", "unsupported or not audio"),
    "notes.txt": ("decode", "unsupported or not audio"),
    "truncated.flac": ("decode", "truncated"),
    "too short.wav": ("decode", "too short"),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("music")
    for i, (name, (seconds, sr, channels)) in enumerate(GOOD.items()):
        write_audio(root / name, seconds, sr, channels, frequency_hz=200.0 + 100 * i, seed=i)
    t = np.arange(5 * 44100) / 44100
    write_m4a(root / "aac track.m4a", np.stack([0.3 * np.sin(2 * np.pi * 330 * t)] * 2, axis=1), 44100)
    (root / "empty.wav").write_bytes(b"")
    (root / "not audio.mp3").write_text("this is not an mp3\n" * 50)
    (root / "notes.txt").write_text("liner notes")
    write_audio(root / "full.flac", 20.0, 44100, 2)
    data = (root / "full.flac").read_bytes()
    (root / "truncated.flac").write_bytes(data[: len(data) // 3])
    (root / "full.flac").unlink()
    write_audio(root / "too short.wav", 0.3)
    (root / ".hidden.wav").write_bytes(b"ignored: hidden files are not inputs")
    return root


@pytest.fixture(scope="module")
def job(local_ray, corpus, tiny_bundle, tmp_path_factory):
    from pipelines.classify import JobOptions, run_classification

    output = tmp_path_factory.mktemp("out") / "predictions"
    missing = str(corpus / "gone" / "missing.wav")
    options = JobOptions(
        inputs=[str(corpus), missing],
        output=str(output),
        model=tiny_bundle,
        files_per_batch=2,
        inference_files_per_batch=3,
        max_batch_windows=5,
    )
    summary = run_classification(options, progress=False)
    rows = {Path(r["path"]).relative_to(corpus).as_posix(): r for r in pq.read_table(output).to_pylist()}
    return summary, rows, output


def test_exactly_one_row_per_input_file(job, corpus):
    summary, rows, _ = job
    expected = set(GOOD) | set(BAD) | {"aac track.m4a", "gone/missing.wav"}
    assert set(rows) == expected
    assert summary.files == len(expected) and summary.missing_rows == 0
    assert summary.ok == len(GOOD) + 1 and summary.errors == len(BAD) + 1


def test_good_files_get_predictions(job, tiny_bundle):
    _, rows, _ = job
    bundle = load_bundle(tiny_bundle)
    excerpt_s = bundle.features.excerpt_s
    for name, (seconds, sr, channels) in GOOD.items():
        row = rows[name]
        assert row["status"] == "ok" and row["error"] is None and row["error_stage"] is None, name
        assert row["top_genre"] in GENRES
        assert len(row["probabilities"]) == len(GENRES)
        assert sum(row["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        assert row["confidence"] == pytest.approx(max(row["probabilities"]), abs=1e-6)
        assert [t["genre"] for t in row["top_k"]][0] == row["top_genre"] and len(row["top_k"]) == 5
        assert row["duration_s"] == pytest.approx(seconds, abs=0.06)
        assert (row["sample_rate_hz"], row["channels"]) == (sr, channels)
        # write_audio: channel c is a 0.5 * (1 - 0.1 c) sine (+ -40 dB noise); the downmix is their mean.
        amplitude = 0.5 * (1 - 0.05 * (channels - 1))
        assert row["rms_dbfs"] == pytest.approx(20 * np.log10(amplitude / np.sqrt(2)), abs=0.3), name
        analysed = min(seconds, excerpt_s)
        assert row["excerpt_s"] == pytest.approx(analysed, abs=0.06)
        frames = 1 + int(round(analysed * 22050)) // 256
        assert row["windows"] == -(-frames // 224)
        _check_uncertainty(
            row, row["probabilities"], bundle.postprocess.review_metric, bundle.postprocess.review_threshold
        )
        assert row["model_version"] == "test-tiny-0" and row["feature_hash"] == bundle.feature_hash
        assert row["processed_at"] is not None
    assert rows["long stereo.wav"]["offset_s"] == pytest.approx((40.0 - excerpt_s) / 2, abs=0.01)
    assert rows["aac track.m4a"]["status"] == "ok"


def _check_uncertainty(row: dict, probabilities: list[float], metric: str, threshold: float) -> None:
    """``entropy``, ``margin`` and ``uncertainty`` recomputed from the row's own probabilities, by definition:
    normalised Shannon entropy, best minus second best, and the bundle's review metric (higher = less certain)."""
    p = np.asarray(probabilities, dtype=np.float64)
    best, second = np.sort(p)[::-1][:2]
    nonzero = p[p > 0]  # p ln p -> 0 as p -> 0
    entropy = float(-(nonzero * np.log(nonzero)).sum() / np.log(p.size))
    assert (row["entropy"], row["margin"]) == pytest.approx((entropy, best - second), abs=1e-4)
    assert row["uncertainty"] == pytest.approx({"entropy": entropy, "margin": 1.0 - (best - second)}[metric], abs=1e-4)
    assert row["needs_review"] is (row["uncertainty"] > threshold)


def test_bad_files_get_error_rows_and_no_prediction(job):
    _, rows, _ = job
    for name, (stage, message) in BAD.items():
        row = rows[name]
        assert row["status"] == "error", name
        assert row["error_stage"] == stage and message in row["error"], (name, row["error"])
        assert row["top_genre"] is None and row["probabilities"] is None and row["confidence"] is None
    missing = rows["gone/missing.wav"]
    assert (missing["status"], missing["error_stage"]) == ("error", "list")


def test_pipeline_predictions_equal_the_core_run_file_by_file(job, corpus, tiny_bundle):
    """Batching windows across files must not mix files: the job equals a plain per-file loop."""
    _, rows, _ = job
    bundle = load_bundle(tiny_bundle)
    featurize = ExcerptFeaturizer(bundle.features)
    predictor = WindowPredictor(bundle.build_model(), device="cpu")
    for name in ["pcm.wav", "long stereo.wav", "album/ünïcode trâck.flac", "aac track.m4a"]:
        logits = predictor.predict_logits(featurize(str(corpus / name)).windows)
        from acousticsense import predict_file

        expected = predict_file(logits, bundle.output_head, bundle.postprocess)
        np.testing.assert_allclose(rows[name]["probabilities"], expected.probabilities, atol=1e-5)
        assert rows[name]["top_genre"] == expected.top_genre


def test_output_is_committed_parquet_with_a_summary(job):
    summary, _, output = job
    assert not list(output.glob(".*inprogress"))
    assert list(output.glob("part-*.parquet")) and (output / "_summary.json").is_file()
    assert summary.audio_hours > 0 and summary.files_per_s > 0
    assert set(summary.stage_seconds) == {"read", "decode", "resample", "features", "inference", "write"}
    assert summary.stage_seconds["decode"] > 0 and summary.stage_seconds["inference"] > 0
    table = summary.table()
    assert "files / s" in table and "inference" in table


def _classify_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m pipelines.classify ARGS`` as a user runs it: its own local Ray (RAY_ADDRESS unset)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [sys.executable, "-m", "pipelines.classify", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_cli_runs_a_local_job_and_fails_cleanly_on_a_missing_input(corpus, tiny_bundle, tmp_path):
    out = tmp_path / "cli"
    args = ["--input", str(corpus / "album"), "--output", str(out), "--model", tiny_bundle, "--no-progress"]
    done = _classify_cli(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "classification summary" in done.stdout and str(out) in done.stdout
    assert pq.read_table(out).num_rows == 2
    again = _classify_cli(*args)
    assert again.returncode == 2 and "--overwrite" in again.stderr  # never mixes two runs' rows
    bad = _classify_cli("--input", str(tmp_path / "nope"), "--output", str(out))
    assert bad.returncode == 2 and "input not found" in bad.stderr


def test_resume_skips_finished_files_and_recomputes_for_a_new_feature_config(local_ray, corpus, tiny_bundle, tmp_path):
    from pipelines.classify import JobOptions, run_classification

    output = tmp_path / "resumable"
    options = JobOptions(inputs=[str(corpus)], output=str(output), model=tiny_bundle, files_per_shard=2)
    first = run_classification(options, progress=False)
    shards = sorted(output.glob("part-*.parquet"))
    assert len(shards) >= 3
    lost = set(pq.read_table(shards[0]).column("path").to_pylist())
    shards[0].unlink()  # as if the job died before this shard was committed
    (output / ".part-dead.parquet.inprogress").write_bytes(b"half a file")  # never counted as done

    with pytest.raises(FileExistsError, match="--resume"):
        run_classification(options, progress=False)
    resumed = run_classification(JobOptions(**{**options.__dict__, "resume": True}), progress=False)
    assert resumed.files == len(lost) and resumed.skipped_existing == first.files - len(lost)
    paths = pq.read_table(output, columns=["path"]).column("path").to_pylist()
    assert sorted(paths) == sorted(set(paths)) and len(paths) == first.files

    again = run_classification(JobOptions(**{**options.__dict__, "resume": True}), progress=False)
    assert again.files == 0 and again.skipped_existing == first.files

    changed = run_classification(JobOptions(**{**options.__dict__, "resume": True, "excerpt_s": 5.0}), progress=False)
    assert changed.files == first.files and changed.skipped_existing == 0
    table = pq.read_table(output, columns=["path", "feature_hash"])
    assert len(set(table.column("feature_hash").to_pylist())) == 2


def test_segments_vote_enhancement_and_rules_reach_the_output(local_ray, corpus, tiny_bundle, tmp_path):
    from pipelines.classify import JobOptions, run_classification

    options = JobOptions(
        inputs=[str(corpus / "long stereo.wav"), str(corpus / "pcm.wav")],
        output=str(tmp_path / "segments"),
        model=tiny_bundle,
        segments=3,
        aggregation="vote",
        enhance="both",
        rules=True,
    )
    run_classification(options, progress=False)
    rows = {Path(r["path"]).name: r for r in pq.read_table(tmp_path / "segments").to_pylist()}
    long, short = rows["long stereo.wav"], rows["pcm.wav"]
    assert long["segments"] == 3 and len(long["segment_genres"]) == 3  # 40 s holds three 10 s excerpts
    assert long["excerpt_s"] == pytest.approx(30.0, abs=0.01)
    assert short["segments"] == 1 and short["segment_genres"] == [short["top_genre"]]
    assert long["feature_hash"] != load_bundle(tiny_bundle).feature_hash  # segments change the features


def test_features_on_accelerator_and_the_spectrogram_cache_give_the_same_predictions(
    local_ray, job, corpus, tiny_bundle, tmp_path
):
    from pipelines.classify import JobOptions, run_classification

    _, reference, _ = job
    names = ["pcm.wav", "long stereo.wav", "low/mpeg.mp3", "empty.wav"]
    inputs = [str(corpus / n) for n in names]
    cache = tmp_path / "cache"

    def run(tag: str, **extra) -> dict:
        options = JobOptions(inputs=inputs, output=str(tmp_path / tag), model=tiny_bundle, **extra)
        run_classification(options, progress=False)
        return {Path(r["path"]).relative_to(corpus).as_posix(): r for r in pq.read_table(tmp_path / tag).to_pylist()}

    on_accelerator = run("accelerator", features_on="accelerator")
    cold = run("cold", cache=str(cache))
    warm = run("warm", cache=str(cache))
    assert len(list(cache.rglob("*.npz"))) == 3  # the three good files; nothing for the bad one
    for name in names:
        for rows in (on_accelerator, cold, warm):
            assert rows[name]["status"] == reference[name]["status"]
            if reference[name]["status"] == "ok":
                np.testing.assert_allclose(rows[name]["probabilities"], reference[name]["probabilities"], atol=1e-5)
                assert rows[name]["windows"] == reference[name]["windows"]
                assert rows[name]["rms_dbfs"] == pytest.approx(reference[name]["rms_dbfs"], abs=1e-5)  # cache too
    assert on_accelerator["pcm.wav"]["features_s"] > 0
    assert all(warm[n]["decode_s"] == 0 for n in names[:3]) and all(cold[n]["decode_s"] > 0 for n in names[:3])


def test_plan_fuses_the_stages_without_gpus_and_gives_each_gpu_an_inference_actor():
    from pipelines.classify import JobOptions, plan_resources

    options = JobOptions(inputs=["in"], output="out")
    cpu_only = plan_resources(options, {"CPU": 8})
    assert cpu_only.fused and (cpu_only.cpu_actors, cpu_only.cpus_per_featurize_actor) == (8, 1.0)
    assert (cpu_only.accelerator_actors, cpu_only.device, cpu_only.files_per_shard) == (0, "cpu", 64)

    with_gpus = plan_resources(options, {"CPU": 16, "GPU": 2})
    assert not with_gpus.fused and (with_gpus.accelerator_actors, with_gpus.gpus_per_actor) == (2, 1.0)
    assert with_gpus.cpu_actors == 16 and with_gpus.files_per_shard == with_gpus.inference_files_per_batch == 64

    forced_cpu = plan_resources(
        JobOptions(inputs=["in"], output="out", device="cpu", cpu_actors=4), {"CPU": 16, "GPU": 2}
    )
    assert forced_cpu.fused and (forced_cpu.cpu_actors, forced_cpu.cpus_per_featurize_actor) == (4, 4.0)


def test_the_writer_stage_imports_without_torch():
    code = "import sys, pipelines._write; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_features_on_gpu_is_the_accelerator_placement():
    from acousticsense.errors import ConfigError
    from pipelines.classify import JobOptions, build_parser, options_from_args

    def parsed(*flags: str):
        return options_from_args(build_parser().parse_args(["--input", "in", "--output", "out", *flags]))

    assert parsed("--features-on", "gpu").features_on == "accelerator"
    assert parsed("--features-on", "accelerator").features_on == "accelerator"
    assert parsed().features_on == "cpu"
    assert JobOptions(inputs=["in"], output="out", features_on="gpu").features_on == "accelerator"
    with pytest.raises(ConfigError, match="--cache needs --features-on cpu"):
        parsed("--features-on", "gpu", "--cache", "cache/")  # that cache would never fill: refused
    with pytest.raises(ConfigError, match="features_on"):
        JobOptions(inputs=["in"], output="out", features_on="tpu")
