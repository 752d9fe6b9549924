"""The batch job's cost curve: wall time for 1, 10, 100 and 1,000 files, fitted as fixed cost + cost per file.

    python -m benchmarks.scaling                                    # default model, 30 s clips, every mode
    python -m benchmarks.scaling --model synthetic-tiny --sizes 1,10,100,1000
    python -m benchmarks.scaling --modes local,naive --sizes 1,10 --clip-s 3   # a quick look
    python -m benchmarks.scaling --modes local,before --baseline-checkout /tmp/old   # old and new side by side

Modes, each run on the same files, size after size (so a change in the machine's load hits every mode alike):

- ``local``: ``python -m pipelines.classify`` in a fresh process, which starts and stops its own Ray: what a person
  runs by hand (``make demo``, a folder of new releases, a CI check).
- ``submit``: ``ray job submit --working-dir . -- python -m pipelines.classify`` to a Ray head that this benchmark
  starts once (``ray start --head``, token authentication, free ports, its own temp dir; stopped by PID at the end)
  and warms with one untimed 1-file job: how a team runs jobs on a cluster that is already up.
- ``before``: ``local`` from another checkout (``--baseline-checkout DIR``, e.g. a ``git worktree`` of the previous
  commit), to measure a change against its predecessor in the same run.
- ``naive``: the seed's loop with the same model (``benchmarks.pipeline.naive_baseline``: whole-file librosa load,
  batch-1 forwards, one thread, one file after another) in a fresh process; for more than ``--naive-max-files``
  files it is timed on the first ones and its loop scaled (its start-up is paid once either way).

Inputs: ``--distinct`` synthetic clips of ``--clip-s`` seconds in WAV/FLAC/OGG/MP3 (``acousticsense.demo.corpus``),
listed under as many names as each size needs (one row per path: the job cannot tell them apart).

For every run: the command's wall time (launch to exit) and, from the job's ``_summary.json``, the wall time inside
the job (from Ray being connected to the summary) and the stages' busy seconds, hence the share of the cores the
stages kept busy: busy s / (in-job wall x cores). The fit is least squares over the sizes; the fixed cost is then
split into what is paid outside the job (interpreter, imports, ``ray.init``/connection, exit) and inside it (actor
start: worker process, torch import, model load).

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.ray_head import RayHead

ROOT = Path(__file__).resolve().parents[1]
MODES = ("local", "submit", "before", "naive")
_FORMATS = ("wav", "flac", "ogg", "mp3")


@dataclass
class Run:
    """One timed command. ``in_job_s``, ``busy_s`` and ``cores`` come from the job's summary (not for ``naive``)."""

    mode: str
    files: int
    wall_s: float
    in_job_s: float | None = None
    busy_s: float | None = None
    cores: int | None = None
    ok: int | None = None
    errors: int | None = None
    span_s: float | None = None  # submit: the job's own start-to-end on the cluster (Jobs API)
    timed_files: int | None = None  # naive: files actually timed (the rest scaled)
    stage_s: dict[str, float] = field(default_factory=dict)

    @property
    def busy_share(self) -> float | None:
        """Stage busy seconds / (in-job wall x cores)."""
        if not (self.busy_s is not None and self.in_job_s and self.cores):
            return None
        return self.busy_s / (self.in_job_s * self.cores)


def fit_cost_curve(points: Sequence[tuple[int, float]]) -> dict[str, float]:
    """Least-squares line through ``(files, seconds)``: ``seconds = fixed_s + per_file_s * files``.

    Returns:
        ``fixed_s``, ``per_file_s`` and ``r2`` (1.0 when every point lies on the line).

    Raises:
        ValueError: fewer than two distinct file counts, which leave the line undetermined.
    """
    if len({n for n, _ in points}) < 2:
        raise ValueError(f"a cost curve needs at least two distinct sizes, got {sorted({n for n, _ in points})}")
    xs = [float(n) for n, _ in points]
    ys = [float(s) for _, s in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    per_file = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
    fixed = mean_y - per_file * mean_x
    residual = sum((y - fixed - per_file * x) ** 2 for x, y in zip(xs, ys))
    total = sum((y - mean_y) ** 2 for y in ys)
    return {"fixed_s": fixed, "per_file_s": per_file, "r2": 1.0 - residual / total if total else 1.0}


# ----------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------


def make_clips(folder: Path, distinct: int, clip_s: float, seed: int = 0) -> list[Path]:
    """``distinct`` synthetic clips (genres in turn, formats in turn) of ``clip_s`` seconds under ``folder``."""
    from acousticsense.config import GENRES
    from acousticsense.demo.corpus import write_corpus

    per_class = -(-distinct // len(GENRES))
    paths = write_corpus(folder, per_class=per_class, seed=seed, duration_s=clip_s, formats=_FORMATS)
    by_index = sorted(paths, key=lambda p: (p.stem.rsplit("_", 1)[-1], p.parent.name))  # one of each genre first
    return by_index[:distinct]


def link_inputs(folder: Path, clips: Sequence[Path], files: int) -> list[Path]:
    """``files`` paths under ``folder``, each a symbolic link to one of ``clips`` in turn."""
    paths = []
    for i in range(files):
        clip = clips[i % len(clips)]
        link = folder / f"{i // 100:03d}" / f"{i:05d}_{clip.name}"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(clip.resolve())
        paths.append(link)
    return paths


# ----------------------------------------------------------------------------------------------------
# The modes
# ----------------------------------------------------------------------------------------------------


def _job_args(inputs: Path, output: Path, model: str, extra: Sequence[str]) -> list[str]:
    return ["--input", str(inputs), "--output", str(output), "--model", model, "--overwrite", "--no-progress", *extra]


def _from_summary(run: Run, output: Path) -> Run:
    summary = json.loads((output / "_summary.json").read_text())
    run.in_job_s = summary["wall_s"]
    run.stage_s = {k: round(v, 3) for k, v in summary["stage_seconds"].items()}
    run.busy_s = sum(summary["stage_seconds"].values())
    run.ok, run.errors = summary["ok"], summary["errors"]
    if summary["files"] + summary.get("skipped_existing", 0) != run.files:
        raise SystemExit(f"{run.mode}: {summary['files']} rows for {run.files} files")
    return run


def run_local(
    mode: str, inputs: Path, output: Path, files: int, model: str, extra: Sequence[str], cwd: Path = ROOT
) -> Run:
    """``python -m pipelines.classify`` in a fresh process (from the checkout ``cwd``), Ray start-up included."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"
    cmd = [sys.executable, "-m", "pipelines.classify", *_job_args(inputs, output, model, extra)]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{mode} job failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return _from_summary(Run(mode, files, wall, cores=os.cpu_count()), output)


def run_naive(paths: Sequence[Path], model: str, max_files: int) -> Run:
    """The naive loop in a fresh process on ``paths`` (or their first ``max_files``, its loop then scaled)."""
    timed = list(paths[:max_files])
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(str(p) for p in timed))
    try:
        cmd = [sys.executable, "-m", "benchmarks.scaling", "--naive-child", f.name, "--model", model]
        started = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
    finally:
        os.unlink(f.name)
    if done.returncode != 0:
        raise SystemExit(f"naive loop failed:\n{done.stderr[-4000:]}")
    loop_s = json.loads(done.stdout.strip().splitlines()[-1])["loop_s"]
    # Start-up (interpreter, torch, librosa, the model) once, then the loop's per-file cost for every file.
    return Run("naive", len(paths), wall - loop_s + loop_s * len(paths) / len(timed), timed_files=len(timed))


def _naive_child(list_file: Path, model: str) -> int:
    """Run by ``run_naive`` in its own process: load the model, run the loop, print its seconds as JSON."""
    from acousticsense import load_bundle
    from benchmarks.pipeline import naive_baseline

    paths = [Path(line) for line in list_file.read_text().splitlines() if line]
    result = naive_baseline(paths, load_bundle(model))
    print(json.dumps({"loop_s": result["seconds"], "files": len(paths)}))
    return 0


def _submit(head: RayHead, job_args: Sequence[str]) -> tuple[float, float | None]:
    """``ray job submit`` and wait; returns the CLI's wall seconds and the job's own span on the cluster."""
    submission_id = f"scaling-{secrets.token_hex(6)}"
    started = time.perf_counter()
    done = head.submit(*job_args, submission_id=submission_id, timeout=None)
    wall = time.perf_counter() - started
    if done.returncode != 0 or "succeeded" not in done.stdout + done.stderr:
        raise SystemExit(f"ray job submit failed ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
    info = head.job(submission_id)
    span = (info["end_time"] - info["start_time"]) / 1e3 if info.get("end_time") and info.get("start_time") else None
    return wall, span


def run_submit(head: RayHead, inputs: Path, output: Path, files: int, model: str, extra: Sequence[str]) -> Run:
    wall, span = _submit(head, _job_args(inputs, output, model, extra))
    return _from_summary(Run("submit", files, wall, cores=head.num_cpus, span_s=span), output)


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------


def _median_runs(runs: Sequence[Run]) -> Run:
    """The run with the median wall time (so its in-job figures belong to the same run)."""
    ordered = sorted(runs, key=lambda r: r.wall_s)
    return ordered[(len(ordered) - 1) // 2]


def summarize_curves(runs: Sequence[Run]) -> dict[str, dict[str, Any]]:
    """Per mode: the fit of the command's wall time, the fit inside the job, and the fixed cost's parts."""
    curves: dict[str, dict[str, Any]] = {}
    for mode in dict.fromkeys(r.mode for r in runs):
        by_size: dict[int, list[Run]] = {}
        for r in runs:
            if r.mode == mode:
                by_size.setdefault(r.files, []).append(r)
        chosen = [_median_runs(rs) for _, rs in sorted(by_size.items())]
        curve: dict[str, Any] = {"sizes": [r.files for r in chosen], "wall_s": [round(r.wall_s, 2) for r in chosen]}
        if len(chosen) >= 2:
            curve["fit"] = {k: round(v, 4) for k, v in fit_cost_curve([(r.files, r.wall_s) for r in chosen]).items()}
            if all(r.in_job_s is not None for r in chosen):
                fit = fit_cost_curve([(r.files, r.in_job_s) for r in chosen])  # type: ignore[misc]
                curve["in_job_fit"] = {k: round(v, 4) for k, v in fit.items()}
        if all(r.in_job_s is not None for r in chosen):
            # Paid outside the job on every run: the median over the sizes is steadier than any one run.
            curve["outside_job_s"] = round(statistics.median(r.wall_s - r.in_job_s for r in chosen), 2)  # type: ignore[operator]
        if mode == "submit" and all(r.span_s is not None and r.in_job_s is not None for r in chosen):
            curve["cli_and_submission_s"] = round(statistics.median(r.wall_s - r.span_s for r in chosen), 2)  # type: ignore[operator]
            curve["driver_outside_job_s"] = round(statistics.median(r.span_s - r.in_job_s for r in chosen), 2)  # type: ignore[operator]
        curves[mode] = curve
    return curves


def _print_table(runs: Sequence[Run], curves: dict[str, dict[str, Any]]) -> None:
    print(f"\n{'mode':<8}{'files':>7}{'wall s':>9}{'in-job s':>10}{'busy s':>9}{'cores busy':>12}{'files/s':>9}")
    for r in runs:
        in_job = f"{r.in_job_s:.2f}" if r.in_job_s is not None else "-"
        busy = f"{r.busy_s:.2f}" if r.busy_s is not None else "-"
        share = f"{r.busy_share:.0%}" if r.busy_share is not None else "-"
        note = f"   (timed on {r.timed_files}, scaled)" if r.timed_files and r.timed_files < r.files else ""
        if r.span_s is not None:
            note = f"   (job on the cluster {r.span_s:.2f} s)"
        print(
            f"{r.mode:<8}{r.files:>7}{r.wall_s:>9.2f}{in_job:>10}{busy:>9}{share:>12}{r.files / r.wall_s:>9.2f}{note}"
        )
    print()
    for mode, c in curves.items():
        line = f"{mode:<8}"
        if "fit" in c:
            f = c["fit"]
            line += f"fixed {f['fixed_s']:.2f} s + {f['per_file_s']:.4f} s/file (r2 {f['r2']:.3f})"
        if "in_job_fit" in c:
            f = c["in_job_fit"]
            line += f"; inside the job {f['fixed_s']:.2f} s + {f['per_file_s']:.4f} s/file"
        if "outside_job_s" in c:
            line += f"; outside the job {c['outside_job_s']:.2f} s"
        if "cli_and_submission_s" in c:
            line += f" (CLI + submission {c['cli_and_submission_s']:.2f} s, driver {c['driver_outside_job_s']:.2f} s)"
        print(line)


def _loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1,10,100,1000", help="file counts, comma-separated (default %(default)s)")
    p.add_argument("--modes", default="local,submit,naive", help=f"of {', '.join(MODES)} (default %(default)s)")
    p.add_argument("--model", help="bundle name or URI for every mode (default: the job's default bundle)")
    p.add_argument("--clip-s", type=float, default=30.0, help="seconds per synthetic clip (default %(default)s)")
    p.add_argument("--distinct", type=int, default=32, help="distinct clips, listed in turn (default %(default)s)")
    p.add_argument("--repeats", type=int, default=1, help="runs per size and mode; the median counts (default 1)")
    p.add_argument("--naive-max-files", type=int, default=50, help="files the naive loop is timed on (default 50)")
    p.add_argument("--baseline-checkout", type=Path, metavar="DIR", help="checkout whose job the 'before' mode runs")
    p.add_argument("--job-args", default="", help="extra flags for pipelines.classify in every job mode")
    p.add_argument("--naive-child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.model is None:
        from acousticsense.bundle import DEFAULT_BUNDLE

        args.model = DEFAULT_BUNDLE
    if args.naive_child:
        return _naive_child(args.naive_child, args.model)
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        p.error(f"--sizes wants comma-separated integers, got {args.sizes!r}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not sizes or min(sizes) < 1:
        p.error("--sizes must be positive integers")
    if unknown := sorted(set(modes) - set(MODES)):
        p.error(f"unknown mode(s) {unknown}; choose among {', '.join(MODES)}")
    if "before" in modes and args.baseline_checkout is None:
        p.error("the 'before' mode runs the job of --baseline-checkout DIR")
    if min(args.repeats, args.distinct, args.naive_max_files) < 1 or args.clip_s <= 0:
        p.error("--repeats, --distinct, --naive-max-files and --clip-s must be positive")
    extra = args.job_args.split()

    started_utc = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_start = _loadavg()
    runs: list[Run] = []
    head: RayHead | None = None
    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        root = Path(tmp)
        clips = make_clips(root / "clips", args.distinct, args.clip_s)
        try:
            if "submit" in modes:
                head = RayHead(num_cpus=os.cpu_count() or 1)
                head.start()
                link_inputs(root / "warm", clips, 1)
                # The first job on a fresh head uploads the working dir and starts Ray Data's own actors, which
                # stay for later jobs; a cluster in use has both already.
                warm_wall, _ = _submit(head, _job_args(root / "warm", root / "warm-out", args.model, extra))
                print(
                    f"head started in {head.startup_s:.1f} s; first (untimed) 1-file job {warm_wall:.1f} s", flush=True
                )
            for n in sizes:
                inputs = root / f"in-{n}"
                paths = link_inputs(inputs, clips, n)
                for _ in range(args.repeats):
                    for mode in modes:
                        output = root / f"out-{mode}-{n}"
                        if mode == "local":
                            run = run_local(mode, inputs, output, n, args.model, extra)
                        elif mode == "before":
                            run = run_local(mode, inputs, output, n, args.model, extra, cwd=args.baseline_checkout)
                        elif mode == "submit":
                            run = run_submit(head, inputs, output, n, args.model, extra)  # type: ignore[arg-type]
                        else:
                            run = run_naive(paths, args.model, args.naive_max_files)
                        runs.append(run)
                        print(f"  {mode:<7}{n:>6} files  {run.wall_s:8.2f} s  (load {_loadavg()[0]:.2f})", flush=True)
        finally:
            if head is not None:
                head.stop()
    curves = summarize_curves(runs)
    _print_table(runs, curves)
    result = {
        "date_utc": started_utc,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "loadavg_start": load_start,
        "loadavg_end": _loadavg(),
        "model": args.model,
        "clip_s": args.clip_s,
        "distinct_clips": args.distinct,
        "job_args": extra,
        "head_start_s": round(head.startup_s, 2) if head else None,
        "runs": [asdict(r) | {"busy_share": r.busy_share} for r in runs],
        "curves": curves,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
