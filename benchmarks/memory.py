"""Memory and time of featurizing a long track vs a short one: only the excerpt is read.

    python -m benchmarks.memory [--long-s 7200]

Writes a 30 s and a long 44.1 kHz stereo FLAC into a temporary folder, featurizes each in a fresh process with
``ExcerptFeaturizer`` (one thread) and prints peak RSS, growth over the loaded process, windows and time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

_PROBE = """
import json, resource, sys, time
from acousticsense import FeatureConfig
from acousticsense import ExcerptFeaturizer
featurize = ExcerptFeaturizer(FeatureConfig(), torch_threads=1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
result = featurize(sys.argv[1])
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"duration_s": result.record.duration_s, "windows": result.record.windows,
                  "ms": round(seconds * 1e3, 1), "peak_rss_mb": round(peak / 1024),
                  "growth_mb": round((peak - before) / 1024)}))
"""


def _write(path: Path, seconds: int, sr: int = 44100) -> None:
    block = (np.random.default_rng(0).standard_normal((sr * 10, 2)) * 0.1).astype(np.float32)
    with sf.SoundFile(path, "w", samplerate=sr, channels=2, format="FLAC", subtype="PCM_16") as f:
        for _ in range(seconds // 10):
            f.write(block)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n")[0])
    p.add_argument("--long-s", type=int, default=7200)
    args = p.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, seconds in (("30 s", 30), (f"{args.long_s} s", args.long_s)):
            path = Path(tmp) / f"{seconds}.flac"
            _write(path, seconds)
            out = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, check=True)
            results[name] = {"file_mb": round(path.stat().st_size / 2**20, 1), **json.loads(out.stdout)}
            path.unlink()
    for name, r in results.items():
        print(f"{name:>8}: {r['file_mb']:>8} MB file, {r['windows']} windows, {r['ms']} ms, "
              f"peak RSS {r['peak_rss_mb']} MB, growth {r['growth_mb']} MB")  # fmt: skip
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
