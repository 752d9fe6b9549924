"""Evaluate a bundle on a labelled folder (GTZAN-style ``<genre>/<clip>``) with the same Ray pipeline.

    python -m pipelines.evaluate --input data/labelled --output out/eval [--model BUNDLE] [--segments 3]
        [--enhance denoise] [--fit-temperature]

Writes under ``--output``: ``predictions/`` (the classify job's Parquet), ``metrics.json`` (accuracy,
macro-F1, per-class precision/recall/F1, confusion matrix, ECE, NLL, needs-review rate and the accuracy
of flagged vs unflagged files), ``confusion_matrix.png`` and ``reliability.png``. With
``--fit-temperature`` it fits the bundle's temperature on these files (minimising NLL), reports the
metrics after calibration too, and writes a new bundle with a new version to ``--bundle-output``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from acousticsense import AcousticSenseError, predict_file, write_bundle
from acousticsense.evaluation import (
    classification_metrics,
    fit_temperature,
    plot_confusion_matrix,
    plot_reliability_diagram,
)
from acousticsense.storage import filesystem, join_uri
from pipelines._stages import job_bundle
from pipelines.classify import build_parser, connect_ray, options_from_args, run_classification

__all__ = ["evaluate", "label_of", "main"]


def label_of(path: str) -> str:
    """The parent folder's name: ``…/Jazz/clip_0001.wav`` -> ``Jazz``."""
    return PurePosixPath(path.split("://", 1)[-1]).parent.name


def evaluate(options: Any, fit: bool = False, bundle_output: str | None = None, progress: bool = True) -> dict:
    """Run the classify job on a labelled folder and compute metrics (and a calibrated bundle when ``fit``)."""
    started = time.perf_counter()
    predictions_uri = join_uri(options.output, "predictions")
    job = replace(options, output=predictions_uri, keep_window_logits=fit, overwrite=True, resume=False)
    summary = run_classification(job, progress=progress)
    bundle = job_bundle(
        options.model, options.storage_options, options.overrides(), weights=fit
    )  # weights only to write a calibrated bundle
    fs, _ = filesystem(predictions_uri, options.storage_options)
    columns = ["path", "status", "probabilities", "needs_review"] + (["window_logits", "windows"] if fit else [])
    shards = fs.glob(join_uri(filesystem(predictions_uri, options.storage_options)[1], "part-*.parquet"))
    rows = pq.ParquetDataset(shards, filesystem=fs).read(columns=columns).to_pylist()

    index = {label: i for i, label in enumerate(bundle.labels)}
    ok = [r for r in rows if r["status"] == "ok" and label_of(r["path"]) in index]
    unlabelled = sum(1 for r in rows if r["status"] == "ok" and label_of(r["path"]) not in index)
    if not ok:
        raise AcousticSenseError(
            f"no file under {options.inputs} sits in a folder named after one of the bundle's labels "
            f"({', '.join(bundle.labels)}); expected <genre>/<clip> folders"
        )
    y_true = np.array([index[label_of(r["path"])] for r in ok])
    probs = np.array([r["probabilities"] for r in ok], dtype=np.float32)
    review = np.array([r["needs_review"] for r in ok])
    report: dict[str, Any] = {
        "model_version": bundle.version,
        "feature_hash": bundle.feature_hash,
        "temperature": bundle.postprocess.temperature,
        "files": summary.files,
        "errors": summary.errors,
        "unlabelled": unlabelled,
        "wall_s": None,
        **classification_metrics(y_true, probs, bundle.labels, review),
    }
    if fit:
        logits = [np.asarray(r["window_logits"], dtype=np.float32) for r in ok]
        temperature = fit_temperature(logits, y_true, bundle.postprocess.aggregation)
        calibrated = bundle.with_postprocess(temperature=temperature)
        calibrated = replace(
            calibrated,
            version=f"{bundle.version}-t{temperature:.3f}",
            provenance={
                **bundle.provenance,
                "calibrated_from": bundle.version,
                "temperature_fitted_on": {"input": options.inputs, "files": len(ok)},
            },
        )
        refit = [predict_file(lg, bundle.labels, calibrated.postprocess) for lg in logits]
        after = classification_metrics(
            y_true,
            np.array([p.probabilities for p in refit]),
            bundle.labels,
            np.array([p.needs_review for p in refit]),
        )
        target = bundle_output or join_uri(options.output, "bundle")
        write_bundle(target, calibrated, options.storage_options)
        report["calibration"] = {
            "fitted_temperature": temperature,
            "new_bundle": target,
            "new_version": calibrated.version,
            "note": "fitted and measured on the same files (in-sample); hold out a split for an unbiased figure",
            "after": {k: after[k] for k in ("accuracy", "macro_f1", "ece", "nll", "needs_review_rate")},
        }
    report["wall_s"] = round(time.perf_counter() - started, 2)
    _write_outputs(options, report, y_true, probs, bundle.labels)
    return report


def _write_outputs(options: Any, report: dict, y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> None:
    fs, root = filesystem(options.output, options.storage_options)
    with fs.open(join_uri(root, "metrics.json"), "w") as f:
        json.dump(report, f, indent=2)
    with tempfile.TemporaryDirectory() as tmp:  # matplotlib writes local files; copy them wherever output is
        pictures = {
            "confusion_matrix.png": lambda p: plot_confusion_matrix(report["confusion_matrix"], labels, p),
            "reliability.png": lambda p: plot_reliability_diagram(probs, y_true, p),
        }
        for name, draw in pictures.items():
            local = Path(tmp) / name
            draw(local)
            fs.put_file(str(local), join_uri(root, name))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.prog = "python -m pipelines.evaluate"
    parser.description = "Evaluate a bundle on a labelled folder (labels from parent folder names)."
    parser.add_argument("--fit-temperature", action="store_true", help="fit the temperature and write a new bundle")
    parser.add_argument(
        "--bundle-output", metavar="URI", help="where the calibrated bundle goes (default OUTPUT/bundle)"
    )
    args = parser.parse_args(argv)
    options = options_from_args(args)
    try:
        connect_ray()
        report = evaluate(
            options, fit=args.fit_temperature, bundle_output=args.bundle_output, progress=not args.no_progress
        )
    except (AcousticSenseError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(_format(report, options.output))
    return 0


def _format(report: dict, output: str) -> str:
    lines = [
        "",
        f"evaluation of {report['model_version']} on {report['n']} labelled files "
        f"({report['errors']} errors, {report['unlabelled']} unlabelled)",
        f"accuracy {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}   "
        f"ECE {report['ece']:.4f}   NLL {report['nll']:.4f}   needs review {report['needs_review_rate']:.1%}",
    ]
    if "calibration" in report:
        c = report["calibration"]
        a = c["after"]
        lines.append(
            f"temperature {c['fitted_temperature']:.3f}: accuracy {a['accuracy']:.4f}  ECE {a['ece']:.4f}  "
            f"NLL {a['nll']:.4f}  -> new bundle {c['new_bundle']} ({c['new_version']})"
        )
    lines.append(f"metrics and pictures: {output}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
