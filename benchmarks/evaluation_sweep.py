"""Accuracy of each accuracy feature on the synthetic corpus with added noise, measured with pipelines.evaluate.

    python -m benchmarks.evaluation_sweep [--per-class 6] [--snr-db clean,20,10,0]

For every SNR it generates a held-out labelled corpus (a seed the demo model never saw; 30 s clips so that
several segments fit), then runs the same Ray evaluation job with the ``synthetic-tiny`` bundle (trained on
that corpus's recipes; the only bundle whose labels are the corpus's) per configuration: baseline, 3 segments (mean
and vote), denoise, compress, both, rules. Temperature is fitted on a separate calibration corpus and
evaluated on the test corpus (held out). Prints a Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import ray

from acousticsense.demo.corpus import write_corpus
from pipelines.classify import JobOptions
from pipelines.evaluate import evaluate

MODEL = "synthetic-tiny"

CONFIGS: dict[str, dict] = {
    "baseline (1 segment)": {},
    "3 segments, mean": {"segments": 3},
    "3 segments, vote": {"segments": 3, "aggregation": "vote"},
    # On 30 s clips only one 30 s excerpt fits: compare segments at equal excerpt length instead.
    "one 10 s excerpt": {"excerpt_s": 10.0},
    "3 x 10 s segments, mean": {"excerpt_s": 10.0, "segments": 3},
    "3 x 10 s segments, vote": {"excerpt_s": 10.0, "segments": 3, "aggregation": "vote"},
    "denoise": {"enhance": "denoise"},
    "compress": {"enhance": "compress"},
    "denoise + compress": {"enhance": "both"},
    "rules": {"rules": True},
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.evaluation_sweep", description=__doc__.split("\n")[0])
    p.add_argument("--per-class", type=int, default=6)
    p.add_argument("--duration-s", type=float, default=30.0)
    p.add_argument("--snr-db", default="clean,20,10,0")
    p.add_argument("--configs", default=";".join(CONFIGS), help="';'-separated subset of: " + "; ".join(CONFIGS))
    p.add_argument("--work", type=Path, help="keep corpora and outputs here (default: a temporary folder)")
    args = p.parse_args(argv)
    snrs = [None if s == "clean" else float(s) for s in args.snr_db.split(",")]
    chosen = [c.strip() for c in args.configs.split(";")]
    ray.init(logging_level="ERROR")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for snr in snrs:
            tag = "clean" if snr is None else f"snr{snr:g}"
            test = work / f"test-{tag}"
            if not test.exists():
                write_corpus(test, args.per_class, seed=101, snr_db=snr, duration_s=args.duration_s,
                             formats=("wav", "flac", "ogg", "mp3"))  # fmt: skip
            for name in chosen:
                t0 = time.perf_counter()
                options = JobOptions(
                    inputs=[str(test)], output=str(work / f"out-{tag}-{len(results)}"), model=MODEL, **CONFIGS[name]
                )
                report = evaluate(options, progress=False)
                results.append(_row(tag, name, report, time.perf_counter() - t0))
                print(json.dumps(results[-1]), flush=True)
            # Temperature: fit on a calibration corpus, measure on the test corpus.
            calibration = work / f"calib-{tag}"
            if not calibration.exists():
                write_corpus(calibration, args.per_class, seed=202, snr_db=snr, duration_s=args.duration_s,
                             formats=("wav", "flac", "ogg", "mp3"))  # fmt: skip
            fitted = evaluate(JobOptions(inputs=[str(calibration)], output=str(work / f"fit-{tag}"), model=MODEL),
                              fit=True, progress=False)  # fmt: skip
            options = JobOptions(
                inputs=[str(test)], output=str(work / f"out-{tag}-t"), model=fitted["calibration"]["new_bundle"]
            )
            report = evaluate(replace(options), progress=False)
            row = _row(tag, f"temperature {fitted['calibration']['fitted_temperature']:.2f} (fitted on other clips)",
                       report, 0.0)  # fmt: skip
            results.append(row)
            print(json.dumps(row), flush=True)
    ray.shutdown()
    print("\n| noise | configuration | accuracy | macro-F1 | ECE | NLL | needs review |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['noise']} | {r['config']} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | {r['ece']:.3f} | "
              f"{r['nll']:.3f} | {r['needs_review_rate']:.1%} |")  # fmt: skip
    print(json.dumps({"date": time.strftime("%Y-%m-%d"), "per_class": args.per_class, "results": results}))
    return 0


def _row(noise: str, config: str, report: dict, seconds: float) -> dict:
    keys = ("accuracy", "macro_f1", "ece", "nll", "needs_review_rate", "n")
    return {"noise": noise, "config": config, **{k: report[k] for k in keys}, "seconds": round(seconds, 1)}


if __name__ == "__main__":
    sys.exit(main())
