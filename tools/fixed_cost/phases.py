"""Where one local job's time goes, phase by phase, in one process (the bundle check is not overlapped here).

    .venv/bin/python tools/fixed_cost/phases.py --input DIR [pipelines.classify flags...]

Prints: imports, ray.init (no dashboard), bundle check + listing, the job, ray.shutdown, in seconds.
"""

from __future__ import annotations

import sys
import tempfile
import time

t0 = time.perf_counter()
import ray  # noqa: E402

from pipelines import classify  # noqa: E402

t1 = time.perf_counter()
ray.init(logging_level="WARNING", include_dashboard=False)
t2 = time.perf_counter()
with tempfile.TemporaryDirectory() as out:
    args = classify.build_parser().parse_args([*sys.argv[1:], "--output", out, "--overwrite", "--no-progress"])
    options = classify.options_from_args(args)
    prepared = classify._prepare(options)
    t3 = time.perf_counter()
    summary = classify._run(options, prepared, progress=False, started=t3)
    t4 = time.perf_counter()
ray.shutdown()
t5 = time.perf_counter()
print(f"imports {t1 - t0:.2f} s, ray.init {t2 - t1:.2f} s, bundle check + listing {t3 - t2:.2f} s, "
      f"job {t4 - t3:.2f} s, ray.shutdown {t5 - t4:.2f} s; stage seconds {summary.stage_seconds}")  # fmt: skip
