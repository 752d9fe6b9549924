"""Side by side on the same files: the seed's naive loop vs the Ray job, and the CPU stage vs its primitives.

    python -m benchmarks.pipeline                       # 200 generated tracks of 1-6 min, the default bundle
    python -m benchmarks.pipeline --tracks 40 --baseline-tracks 20
    python -m benchmarks.pipeline --repeat 5            # each track under 5 names: 1,000 inputs, both sides
    python -m benchmarks.pipeline --input data/real-music --tracks 30 --max-duration-s 240 --model musicnn-msd
    python -m benchmarks.pipeline --model synthetic-tiny    # the ViT loop of the earlier figures

(a) naive loop, the seed's, with the same model as the job (``--model``, one torch thread, one file after another):
    - musicnn bundles (``log_compressed_mel``): whole-file ``librosa.load(sr=16000, mono=True)`` ->
      ``librosa.feature.melspectrogram(n_fft=512, hop_length=256, n_mels=96)`` -> ``log10(1 + 10000 x)`` ->
      every 187-frame patch of the WHOLE track (consecutive, the remainder dropped; one zero-padded patch when
      shorter), each through a batch-1 fp32 forward -> sigmoid -> mean over patches (musicnn's own extractor).
    - ViT bundles (``log_mel_db``, e.g. ``synthetic-tiny``): the article's loop: full ``librosa.load(sr=22050,
      mono=True)`` -> melspectrogram -> power_to_db(ref=max) -> min-max -> centre crop / tile to one window ->
      batch-1 fp32 forward.
(b) pipeline: ``python -m pipelines.classify --model MODEL`` in a subprocess, Ray start-up included.
Featurization floor: per file, seeked decode + resample + front end alone vs ``ExcerptFeaturizer`` (the CPU stage's
work) in one process, one thread.

Inputs: a generated corpus (``--corpus``, synthetic music in mixed formats, made once and reused) or, with
``--input DIR``, the audio files already under DIR (e.g. ``data/real-music``); either way the chosen tracks are
linked into one folder that both sides read.

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from acousticsense import DEFAULT_BUNDLE, GENRES, ExcerptFeaturizer, choose_excerpt, front_end, list_files, load_bundle
from acousticsense.demo.corpus import AUDIO_FORMATS, synthesize_clip
from benchmarks.inference import machine_info, machine_line

ROOT = Path(__file__).resolve().parents[1]
_FORMATS = ("wav", "flac", "mp3", "ogg")
_RATES = (22050, 32000, 44100, 48000)


def make_corpus(root: Path, tracks: int, seed: int = 0, min_s: float = 60.0, max_s: float = 360.0) -> list[Path]:
    """Real-length tracks, mixed formats, rates and channel counts; reuses files that already exist.

    Each track loops 20 s of a synthetic genre clip (decode cost depends on length and codec, not content).
    Tracks are encoded in parallel, one process per core (MP3/OGG encoding of a 6-minute track takes seconds).
    """
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(tracks):
        genre = GENRES[i % len(GENRES)]
        seconds, sr = float(rng.uniform(min_s, max_s)), int(rng.choice(_RATES))
        channels, ext = int(rng.integers(1, 3)), _FORMATS[i % len(_FORMATS)]
        path = root / genre / f"track_{i:04d}_{int(seconds)}s_{sr}hz_{channels}ch.{ext}"
        specs.append((path, genre, seed, i, seconds, sr, channels, ext))
    missing = [spec for spec in specs if not spec[0].exists()]
    if missing:
        with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 1) as pool:
            pool.map(_write_track, missing)
    return [spec[0] for spec in specs]


def _write_track(spec: tuple) -> None:
    path, genre, seed, i, seconds, sr, channels, ext = spec
    clip = synthesize_clip(genre, np.random.default_rng([seed, i]), duration_s=20.0, sample_rate_hz=sr)
    mono = np.resize(clip, int(seconds * sr))
    data = mono[:, None] if channels == 1 else np.stack([mono, np.roll(mono, sr // 100) * 0.9], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt, subtype = AUDIO_FORMATS[ext]
    tmp = path.with_name("." + path.name)  # hidden while incomplete: an interrupted run never leaves a bad track
    with sf.SoundFile(tmp, "w", samplerate=sr, channels=channels, format=fmt, subtype=subtype) as f:
        for start in range(0, len(data), 16384):
            f.write(data[start : start + 16384])
    tmp.rename(path)


def existing_tracks(folder: Path, tracks: int | None = None, max_duration_s: float | None = None) -> list[Path]:
    """The audio files under ``folder`` (recursively, hidden files skipped, sorted), those soundfile can open.

    With ``max_duration_s`` only tracks at most that long; with ``tracks`` an evenly spaced pick of that many
    (so a folder grouped by source keeps its mix of sources). Raises ``SystemExit`` when nothing is left.
    """
    found = []
    for path in sorted(list_files(str(folder))):
        try:
            duration_s = sf.info(path).duration
        except (RuntimeError, sf.LibsndfileError):  # not audio (a licence file, a listing)
            continue
        if max_duration_s is None or duration_s <= max_duration_s:
            found.append(Path(path))
    if not found:
        limit = "" if max_duration_s is None else f" of at most {max_duration_s:g} s"
        raise SystemExit(f"no audio files{limit} under {folder}")
    if tracks is not None and tracks < len(found):
        found = [found[i * len(found) // tracks] for i in range(tracks)]
    return found


def naive_baseline(paths: list[Path], bundle) -> dict:
    """The seed's loop with ``bundle``'s model, one file after another (see the module docstring).

    Returns:
        ``seconds`` (wall), ``cpu_s`` (this process's CPU seconds), ``stages`` (seconds: load, mel, preprocess,
        inference), ``windows`` (forwards run), ``audio_s`` (seconds of audio analysed) and ``scores`` (per
        file, the mean of the model's per-window scores, float32 ``(n_classes,)``).
    """
    import librosa

    front = bundle.features.front_end
    if front not in ("log_compressed_mel", "log_mel_db"):
        raise SystemExit(f"the naive loop implements musicnn's and the ViT's front ends, not {front!r}")
    model = bundle.build_model()
    librosa.feature.melspectrogram(y=np.zeros(4096, np.float32), sr=22050)  # numba JIT outside the timing
    loop = _naive_musicnn if front == "log_compressed_mel" else _naive_vit
    stages = {"load": 0.0, "mel": 0.0, "preprocess": 0.0, "inference": 0.0}
    out = {"windows": 0, "audio_s": 0.0, "scores": []}
    # One thread: with torch's default two on this 2-core VM, the batch-1 forward after librosa's NumPy work
    # took 11-34 ms instead of 2 ms, varying run to run (thread wake-ups). One thread is steady, and the
    # faster baseline is the conservative one for the speedup.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cpu_started, started = time.process_time(), time.perf_counter()
        with torch.inference_mode():
            for path in paths:
                loop(path, model, bundle.features, stages, out)
        seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        torch.set_num_threads(threads)
    return {"seconds": seconds, "cpu_s": cpu_s, "stages": stages, **out}


def _naive_musicnn(path: Path, model, cfg, stages: dict, out: dict) -> None:
    """musicnn's own extractor, in float32: whole track, every 187-frame patch, batch-1 forwards."""
    import librosa

    t0 = time.perf_counter()
    y, sr = librosa.load(path, sr=cfg.sample_rate_hz, mono=True)
    t1 = time.perf_counter()
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels)
    rep = np.log10(1.0 + cfg.compression_gain * mel)  # (n_mels, frames); musicnn's float16 cast overflows here
    t2 = time.perf_counter()
    w = cfg.window_frames
    if rep.shape[1] < w:
        rep = np.pad(rep, ((0, 0), (0, w - rep.shape[1])))
    patches = [torch.from_numpy(np.ascontiguousarray(rep[None, :, s : s + w], dtype=np.float32))
               for s in range(0, rep.shape[1] - w + 1, w)]  # fmt: skip
    t3 = time.perf_counter()
    scores = torch.cat([torch.sigmoid(model(x)) for x in patches]).mean(0)
    t4 = time.perf_counter()
    for stage, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
        stages[stage] += seconds
    out["windows"] += len(patches)
    out["audio_s"] += len(y) / sr
    out["scores"].append(scores.numpy())


def _naive_vit(path: Path, model, feats, stages: dict, out: dict) -> None:
    """The article's loop. Uses the bundle's n_mels (128, not the article's 40) so the same model can run."""
    import librosa

    t0 = time.perf_counter()
    y, sr = librosa.load(path, sr=22050, mono=True)
    t1 = time.perf_counter()
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=256, n_mels=feats.n_mels)
    db = librosa.power_to_db(mel, ref=np.max)
    t2 = time.perf_counter()
    db = (db - db.min()) / (db.max() - db.min() + 1e-8)
    w = feats.window_frames
    if db.shape[1] < w:
        db = np.tile(db, (1, -(-w // db.shape[1])))[:, :w]
    else:
        start = (db.shape[1] - w) // 2
        db = db[:, start : start + w]
    x = torch.from_numpy(np.ascontiguousarray(db, dtype=np.float32))[None]
    t3 = time.perf_counter()
    scores = model(x).softmax(-1)[0]
    t4 = time.perf_counter()
    for stage, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
        stages[stage] += seconds
    out["windows"] += 1
    out["audio_s"] += w * feats.hop_length / feats.sample_rate_hz
    out["scores"].append(scores.numpy())


def ray_job(inputs: Path, output: Path, extra: list[str]) -> tuple[float, dict]:
    """The classify job as a user runs it, Ray start-up included."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "pipelines.classify", "--input", str(inputs), "--output", str(output),
           "--overwrite", "--no-progress", *extra]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"pipeline failed:\n{done.stderr[-4000:]}")
    return wall, json.loads((output / "_summary.json").read_text())


def job_windows(output: Path) -> int:
    """Model windows the job ran, from its Parquet shards' ``windows`` column (files that succeeded)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(output, columns=["status", "windows"])  # _summary.json: skipped by its "_" prefix
    ok = table.filter(pc.equal(table.column("status"), "ok"))
    return int(pc.sum(ok.column("windows")).as_py() or 0)


def featurization_floor(paths: list[Path], bundle) -> dict[str, float]:
    """Per-file seconds of the primitives alone vs the CPU stage's own work (one thread, same process)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _featurization_floor(paths, bundle)
    finally:
        torch.set_num_threads(threads)


def _featurization_floor(paths: list[Path], bundle) -> dict[str, float]:
    cfg = bundle.features
    log_mel = front_end(cfg)
    featurizer = ExcerptFeaturizer(cfg)
    primitive, stage = [], []
    warm = min(4, len(paths))
    for path in paths[:warm] + paths:  # the first calls warm caches: time them again
        t0 = time.perf_counter()
        with sf.SoundFile(path) as f:
            offset_s, duration_s = choose_excerpt(f.frames / f.samplerate, cfg.excerpt_s, cfg.excerpt_policy)
            f.seek(int(offset_s * f.samplerate))
            x = f.read(int(duration_s * f.samplerate), dtype="float32")
            sr = f.samplerate
        mono = x if x.ndim == 1 else x[:, 0]  # a channel pick: the cheapest possible "downmix"
        y = soxr.resample(mono, sr, cfg.sample_rate_hz) if sr != cfg.sample_rate_hz else mono
        with torch.inference_mode():
            log_mel(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)))
        t3 = time.perf_counter()
        featurizer(str(path))
        t4 = time.perf_counter()
        primitive.append(t3 - t0)
        stage.append(t4 - t3)
    primitive, stage = primitive[warm:], stage[warm:]
    return {
        "primitives_ms_per_file": 1e3 * statistics.mean(primitive),
        "cpu_stage_ms_per_file": 1e3 * statistics.mean(stage),
        "cpu_stage_over_primitives": statistics.mean(stage) / statistics.mean(primitive),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__.split("\n")[0])
    p.add_argument(
        "--model",
        default=DEFAULT_BUNDLE,
        help=f"bundle name or URI, run by both sides (default: the job's default, {DEFAULT_BUNDLE})",
    )
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "bench-corpus", help="where generated tracks live")
    p.add_argument(
        "--input",
        type=Path,
        metavar="DIR",
        help="benchmark on the audio files under DIR (e.g. data/real-music) instead of generated tracks",
    )
    p.add_argument(
        "--tracks",
        type=int,
        help="tracks to use (default 200 generated; with --input every file, else an evenly spaced pick)",
    )
    p.add_argument("--max-duration-s", type=float, help="with --input: only tracks at most this long")
    p.add_argument("--baseline-tracks", type=int, help="time the naive loop on the first N tracks only and scale")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="list each track under N names (N times the inputs for both sides, without N times the corpus)",
    )
    p.add_argument("--job-args", default="", help="extra flags for pipelines.classify, e.g. '--cpu-actors 2'")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    if args.tracks is not None and args.tracks < 1:
        p.error("--tracks must be >= 1")
    if args.max_duration_s is not None and args.input is None:
        p.error("--max-duration-s picks among existing files: use it with --input")
    job_args = args.job_args.split()
    if args.repeat > 1 and "--cache" in job_args:
        p.error("--repeat lists the same tracks again, so --cache would turn the repeats into cache hits")
    if "--model" in job_args:
        p.error("give the model with --model: both sides must run the same one")

    info = machine_info(torch.device("cpu"))
    t0 = time.perf_counter()
    if args.input is not None:
        tracks = existing_tracks(args.input, args.tracks, args.max_duration_s)
    else:
        tracks = make_corpus(args.corpus, args.tracks or 200)
    corpus_s = time.perf_counter() - t0
    bundle = load_bundle(args.model)

    with tempfile.TemporaryDirectory() as tmp:
        links = Path(tmp) / "in"  # exactly the chosen tracks, even if the corpus folder holds more
        paths = []
        for copy in range(args.repeat):
            for i, track in enumerate(tracks):
                link = links / f"{copy:02d}" / f"{i:04d}_{track.parent.name}" / track.name  # unique per track
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(track.resolve())
                paths.append(link)
        total_audio_s = args.repeat * sum(sf.info(p).duration for p in tracks)
        pipeline_s, summary = ray_job(links, Path(tmp) / "out", ["--model", args.model, *job_args])
        pipeline_windows = job_windows(Path(tmp) / "out")

        subset = paths[: args.baseline_tracks] if args.baseline_tracks else paths
        baseline = naive_baseline(subset, bundle)
        floor = featurization_floor(tracks[: min(len(tracks), 40)], bundle)
    scale = len(paths) / len(subset)
    baseline_s = baseline["seconds"] * scale
    baseline_windows = baseline["windows"] * scale
    info["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]

    result = {
        "date": time.strftime("%Y-%m-%d"),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "machine_info": info,
        "model": args.model,
        "model_version": bundle.version,
        "family": bundle.model.family,
        "inputs": str(args.input) if args.input is not None else f"generated corpus {args.corpus}",
        "files": len(paths),
        "distinct_tracks": len(tracks),
        "audio_hours": round(total_audio_s / 3600, 3),
        "baseline_s": round(baseline_s, 2),
        "baseline_files_timed": len(subset),
        "baseline_cpu_s": round(baseline["cpu_s"] * scale, 2),  # one thread: ~= baseline_s on an idle machine
        "baseline_files_per_s": round(len(paths) / baseline_s, 3),
        "baseline_windows": round(baseline_windows),
        "baseline_audio_hours_analysed": round(baseline["audio_s"] * scale / 3600, 3),
        "pipeline_s": round(pipeline_s, 2),
        "pipeline_files_per_s": round(len(paths) / pipeline_s, 3),
        "pipeline_windows": pipeline_windows,
        "speedup": round(baseline_s / pipeline_s, 2),
        # The same ratio per model window: how much is the job's speed, not its reading 30 s instead of a track.
        "speedup_per_window": round((baseline_s / baseline_windows) / (pipeline_s / pipeline_windows), 2)
        if pipeline_windows and baseline_windows
        else None,
        "pipeline_in_job_s": round(summary["wall_s"], 2),  # listing to last shard; the rest is start-up and exit
        "pipeline_in_job_files_per_s": round(len(paths) / summary["wall_s"], 3),
        "pipeline_ok": summary["ok"],
        "pipeline_errors": summary["errors"],
        "pipeline_stage_s": {k: round(v, 3) for k, v in summary["stage_seconds"].items()},
        "baseline_stage_s": {k: round(v * scale, 3) for k, v in baseline["stages"].items()},
        "baseline_inference_ms_per_window": round(1e3 * baseline["stages"]["inference"] / baseline["windows"], 2),
        "plan": summary["plan"],
        "job_args": ["--model", args.model, *job_args],
        **{k: round(v, 3) for k, v in floor.items()},
        "corpus_build_s": round(corpus_s, 1),
    }
    print(f"\n{len(paths)} inputs ({len(tracks)} distinct tracks, {result['inputs']}), {result['audio_hours']} h audio")
    print(f"model {args.model} ({bundle.version}); {machine_line(info)}")
    print(f"{'':<34}{'seconds':>10}{'files/s':>10}{'windows':>10}")
    print(f"{'naive loop (seed, same model)':<34}{baseline_s:>10.1f}{len(paths) / baseline_s:>10.2f}"
          f"{result['baseline_windows']:>10}"
          + (f"   (timed on {len(subset)} files, scaled)" if scale != 1 else ""))  # fmt: skip
    print(
        f"{'Ray job, start-up included':<34}{pipeline_s:>10.1f}{len(paths) / pipeline_s:>10.2f}{pipeline_windows:>10}"
    )
    print(f"{'  of which inside the job':<34}{summary['wall_s']:>10.1f}{len(paths) / summary['wall_s']:>10.2f}")
    print(f"{'speedup':<34}{result['speedup']:>10.2f}x   (per model window: {result['speedup_per_window']}x)")
    print("baseline stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result["baseline_stage_s"].items()))
    print("pipeline stages (busy s): " + ", ".join(f"{k} {v:.1f}" for k, v in result["pipeline_stage_s"].items()))
    print(f"CPU stage {floor['cpu_stage_ms_per_file']:.1f} ms/file vs primitives {floor['primitives_ms_per_file']:.1f}"
          f" ms/file: ratio {floor['cpu_stage_over_primitives']:.2f}")  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
