"""pipelines.evaluate on a small labelled synthetic corpus, with the demo bundle, on a real local Ray."""

from __future__ import annotations

import json

import pytest

from acousticsense import GENRES, load_bundle
from acousticsense.demo.corpus import write_corpus

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_evaluate_writes_metrics_pictures_and_a_calibrated_bundle(local_ray, tmp_path):
    from pipelines.classify import JobOptions
    from pipelines.evaluate import evaluate, label_of

    corpus = tmp_path / "labelled"
    write_corpus(corpus, per_class=2, seed=11, duration_s=6.0, formats=("wav", "mp3"))
    (corpus / "Unknown").mkdir()
    (corpus / "Unknown" / "x.wav").write_bytes((corpus / "Jazz" / "jazz_0000.wav").read_bytes())
    (corpus / "Jazz" / "broken.wav").write_bytes(b"not audio")
    output = tmp_path / "eval"
    report = evaluate(JobOptions(inputs=[str(corpus)], output=str(output)), fit=True, progress=False)

    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["n"] == 32 and metrics["errors"] == 1 and metrics["unlabelled"] == 1
    assert metrics["accuracy"] > 0.8  # the demo model knows the synthetic genres
    assert set(metrics["per_class"]) == set(GENRES)
    assert len(metrics["confusion_matrix"]) == 16 and sum(map(sum, metrics["confusion_matrix"])) == 32
    for key in ("macro_f1", "ece", "nll", "needs_review_rate"):
        assert metrics[key] >= 0.0 and (key == "nll" or metrics[key] <= 1.0)
    for picture in ("confusion_matrix.png", "reliability.png"):
        assert (output / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    calibration = report["calibration"]
    bundle = load_bundle(calibration["new_bundle"])
    assert bundle.postprocess.temperature == pytest.approx(calibration["fitted_temperature"])
    assert bundle.version == calibration["new_version"] != load_bundle(None).version
    assert calibration["after"]["nll"] <= metrics["nll"] + 1e-6  # fitted to minimise exactly this
    assert label_of("s3://b/music/Hip-Hop/x.mp3") == "Hip-Hop"
