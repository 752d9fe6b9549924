"""The fused CPU stage (featurize + musicnn) on 4-file batches, in this process on one thread: its ms per window.

    .venv/bin/python tools/fixed_cost/stage_outside_ray.py data/demo-corpus [MAX_BATCH_WINDOWS]

Compare with the job's own figure (inference busy s / windows in its summary) to see what running inside a
Ray Data actor costs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa

from acousticsense import load_bundle
from pipelines._stages import FeaturizeAndClassify

folder, windows = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 4
stage = FeaturizeAndClassify(
    load_bundle(None, weights=False), {}, torch_threads=1, max_batch_windows=windows, device="cpu"
)
files = [str(p) for p in sorted(folder.rglob("*.*")) if "_broken" not in str(p)][:16]
for i in range(0, len(files), 4):
    rows = stage(pa.table({"path": files[i : i + 4], "list_error": [None] * len(files[i : i + 4])}))
    seconds, count = sum(rows.column("inference_s").to_pylist()), sum(rows.column("windows").to_pylist())
    print(f"4 files: {count} windows, inference {seconds:.2f} s = {1e3 * seconds / count:.1f} ms per window")
