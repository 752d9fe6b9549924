"""Memory of the actors over a long job: peak RSS per CPU / inference actor, and whether it grows.

    python -m benchmarks.soak [--files 1000]

Links ``--files`` inputs (cycling over the tracks of ``data/bench-corpus``, made by ``benchmarks.pipeline``)
into a temporary folder, runs ``python -m pipelines.classify`` on it, and samples the resident memory of
every Ray worker running a stage (process titles ``ray::MapWorker(MapBatches(...))``) twice a second with
psutil. Prints, per stage, the peak RSS of its actors and their RSS over the second and last quarters of
the run: equal quarters mean no growth.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def _stage_of(process: psutil.Process) -> str | None:
    try:
        title = " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    for stage in ("FeaturizeAndClassify", "FeaturizeFiles", "ClassifyWindows", "WriteShards"):
        if f"MapBatches({stage})" in title:
            return stage
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "bench-corpus")
    p.add_argument("--files", type=int, default=1000)
    args = p.parse_args(argv)
    tracks = sorted(t for t in args.corpus.rglob("*") if t.is_file() and not t.name.startswith("."))
    if not tracks:
        raise SystemExit(f"no tracks under {args.corpus}: run `python -m benchmarks.pipeline` first")
    samples: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        for i in range(args.files):
            track = tracks[i % len(tracks)]
            (inputs / f"{i:05d}_{track.name}").symlink_to(track)
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        cmd = [sys.executable, "-m", "pipelines.classify", "--input", str(inputs), "--output", f"{tmp}/out",
               "--no-progress"]  # fmt: skip
        started = time.perf_counter()
        job = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        while job.poll() is None:
            now = time.perf_counter() - started
            try:  # only this job's workers: other Ray clusters may run on the same machine
                workers = psutil.Process(job.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                break
            for process in workers:
                stage = _stage_of(process)
                if stage:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        samples[(stage, process.pid)].append((now, process.memory_info().rss / 2**20))
            time.sleep(0.5)
        wall = time.perf_counter() - started
        summary = json.loads((Path(tmp) / "out" / "_summary.json").read_text())
    report: dict[str, dict] = {}
    for (stage, _pid), series in samples.items():
        times = [t for t, _ in series]
        t0, t1 = times[0], times[-1]
        q2 = [m for t, m in series if t0 + 0.25 * (t1 - t0) <= t < t0 + 0.5 * (t1 - t0)]
        q4 = [m for t, m in series if t >= t0 + 0.75 * (t1 - t0)]
        entry = report.setdefault(stage, {"actors": 0, "peak_rss_mb": 0.0, "q2_mean_mb": [], "q4_mean_mb": []})
        entry["actors"] += 1
        entry["peak_rss_mb"] = max(entry["peak_rss_mb"], max(m for _, m in series))
        if q2 and q4:
            entry["q2_mean_mb"].append(round(sum(q2) / len(q2), 1))
            entry["q4_mean_mb"].append(round(sum(q4) / len(q4), 1))
    print(f"{summary['files']} files ({summary['ok']} ok), {wall:.1f} s wall, {summary['audio_hours']:.2f} h of audio")
    for stage, entry in report.items():
        print(f"{stage:>16}: {entry['actors']} actor(s), peak RSS {entry['peak_rss_mb']:.0f} MB, mean RSS "
              f"2nd quarter {entry['q2_mean_mb']} MB -> last quarter {entry['q4_mean_mb']} MB")  # fmt: skip
    print(json.dumps({"date": time.strftime("%Y-%m-%d"), "files": summary["files"], "wall_s": round(wall, 1),
                      "stages": report}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
