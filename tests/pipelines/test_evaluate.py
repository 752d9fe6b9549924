"""pipelines.evaluate on small generated corpora, on a real local Ray: the labelled evaluation with the
synthetic single-label bundle and with the default multi-label tagger, and the robustness mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from acousticsense import GENRES, downmix, load_bundle, read_excerpt
from acousticsense.demo.corpus import write_corpus
from acousticsense.robustness import snr_db
from tests.conftest import write_audio


@pytest.mark.ray
@pytest.mark.slow
def test_evaluate_writes_metrics_pictures_and_a_calibrated_bundle(local_ray, tmp_path):
    from pipelines.classify import JobOptions
    from pipelines.evaluate import evaluate, label_of

    corpus = tmp_path / "labelled"
    write_corpus(corpus, per_class=2, seed=11, duration_s=6.0, formats=("wav", "mp3"))
    (corpus / "Unknown").mkdir()
    (corpus / "Unknown" / "x.wav").write_bytes((corpus / "Jazz" / "jazz_0000.wav").read_bytes())
    (corpus / "Jazz" / "broken.wav").write_bytes(b"not audio")
    output = tmp_path / "eval"
    options = JobOptions(inputs=[str(corpus)], output=str(output), model="synthetic-tiny")
    report = evaluate(options, fit=True, progress=False)

    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["n"] == 32 and metrics["errors"] == 1
    assert metrics["unnameable"] == {"Unknown": 1} and metrics["unnameable_files"] == 1
    assert metrics["multi_label"] is False and metrics["genres"] == list(GENRES)
    assert metrics["accuracy"] > 0.8  # the synthetic model knows the synthetic genres
    assert set(metrics["per_class"]) == set(GENRES)
    _check_metrics_against_rows(metrics, output / "predictions")
    for picture in ("confusion_matrix.png", "reliability.png"):
        assert (output / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    calibration = report["calibration"]
    bundle = load_bundle(calibration["new_bundle"])
    assert bundle.postprocess.temperature == pytest.approx(calibration["fitted_temperature"])
    assert bundle.version == calibration["new_version"] != load_bundle("synthetic-tiny").version
    assert calibration["after"]["nll"] <= metrics["nll"] + 1e-6  # fitted to minimise exactly this
    assert label_of("s3://b/music/Hip-Hop/x.mp3") == "Hip-Hop"


def _check_metrics_against_rows(metrics: dict, predictions: Path) -> None:
    """The report's figures recomputed from the prediction rows the job wrote: each scored file's ``top_genre``
    against its folder (``label_of``; these folders are spelled as the genres), its probability of the true genre
    (NLL) and its review flag."""
    from pipelines.evaluate import label_of

    columns = ["path", "status", "top_genre", "probabilities", "needs_review"]
    rows = pa.concat_tables(pq.read_table(p, columns=columns) for p in sorted(predictions.glob("part-*.parquet")))
    scored = [r for r in rows.to_pylist() if r["status"] == "ok" and label_of(r["path"]) in GENRES]
    truth = np.array([GENRES.index(label_of(r["path"])) for r in scored])
    guess = np.array([GENRES.index(r["top_genre"]) for r in scored])
    confusion = np.zeros((len(GENRES), len(GENRES)), dtype=int)
    np.add.at(confusion, (truth, guess), 1)
    assert metrics["n"] == len(scored) and metrics["confusion_matrix"] == confusion.tolist()
    assert metrics["accuracy"] == pytest.approx(np.mean(truth == guess))
    tp, support, predicted = np.diag(confusion), confusion.sum(axis=1), confusion.sum(axis=0)
    present = (support > 0) | (predicted > 0)
    f1 = 2 * tp[present] / (support[present] + predicted[present])  # = 2PR / (P + R)
    assert metrics["macro_f1"] == pytest.approx(f1.mean())
    for i, genre in enumerate(GENRES):
        assert metrics["per_class"][genre]["support"] == support[i], genre
    true_p = np.array([r["probabilities"][t] for r, t in zip(scored, truth)], dtype=np.float64)
    assert metrics["nll"] == pytest.approx(-np.log(np.maximum(true_p, 1e-12)).mean(), rel=1e-4)
    assert metrics["needs_review_rate"] == pytest.approx(np.mean([r["needs_review"] for r in scored]))


@pytest.mark.ray
@pytest.mark.slow
def test_evaluate_a_tagger_scores_the_genres_it_can_name_and_reports_the_others(local_ray, tmp_path):
    from pipelines.classify import JobOptions
    from pipelines.evaluate import evaluate

    corpus = tmp_path / "labelled"
    for folder, hz in (("Jazz", 220.0), ("hiphop", 440.0), ("Disco", 660.0)):  # musicnn names no Disco
        for i in range(2):
            write_audio(corpus / folder / f"{i}.wav", 4.0, 16000, frequency_hz=hz * (1 + i), seed=i)
    output = tmp_path / "eval"
    report = evaluate(JobOptions(inputs=[str(corpus)], output=str(output)), fit=True, progress=False)

    bundle = load_bundle(None)
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["multi_label"] is True and metrics["genres"] == list(bundle.genres)
    assert metrics["n"] == 4 and metrics["errors"] == 0
    assert metrics["folder_genres"] == {"Jazz": "Jazz", "hiphop": "Hip-Hop"}
    assert metrics["unnameable"] == {"Disco": 2} and metrics["unnameable_files"] == 2
    assert set(metrics["per_class"]) == set(bundle.genres)
    assert metrics["per_class"]["Jazz"]["support"] == 2 and metrics["per_class"]["Hip-Hop"]["support"] == 2
    n_genres = len(bundle.genres)
    assert np.array(metrics["confusion_matrix"]).shape == (n_genres, n_genres)
    # The sigmoid head's temperature was fitted through that head: the NLL cannot get worse.
    calibration = report["calibration"]
    assert calibration["after"]["nll"] <= metrics["nll"] + 1e-6
    assert load_bundle(calibration["new_bundle"]).postprocess.temperature == pytest.approx(
        calibration["fitted_temperature"]
    )


@pytest.mark.ray
@pytest.mark.slow
def test_robustness_copies_classifies_and_compares_with_the_clean_files(local_ray, tmp_path):
    from pipelines.classify import JobOptions
    from pipelines.evaluate import CONDITIONS, _make_copies, robustness

    music = tmp_path / "music"
    write_audio(music / "a.wav", 5.0, 22050, channels=2, frequency_hz=330.0)
    write_audio(music / "deep" / "b.ogg", 5.0, 48000, frequency_hz=880.0, seed=1)
    (music / "broken.mp3").write_bytes(b"not audio")
    output = tmp_path / "robust"
    options = JobOptions(inputs=[str(music)], output=str(output), enhance="denoise")
    report = robustness(options, clip_s=3.0, seed=5, progress=False)

    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics == report
    assert (metrics["sources"], metrics["copied"]) == (3, 2)
    assert list(metrics["copy_errors"]) == [str(music / "broken.mp3")]
    assert metrics["enhance"] == ["none", "denoise"] and set(metrics["runs"]) == {"none", "denoise"}
    assert metrics["multi_label"] is True and metrics["top3_of"] == "tags"
    rows = {(r["condition"], r["enhance"]): r for r in metrics["results"]}
    assert set(rows) == {(c.name, e) for c in CONDITIONS for e in ("none", "denoise")}
    reference = rows[("clean", "none")]
    assert (reference["top_genre_agreement"], reference["top3_agreement"], reference["files"]) == (1.0, 1.0, 2)
    for row in rows.values():
        assert row["files"] == 2 and row["errors"] == 0
        for key in ("top_genre_agreement", "top3_agreement", "same_enhance_top3_agreement", "needs_review_rate"):
            assert row[key] in (0.0, 0.5, 1.0)  # two files
    assert rows[("clean", "denoise")]["same_enhance_top_genre_agreement"] == 1.0
    assert sum(metrics["clean_top_genres"].values()) == 2
    assert json.loads((output / "copies.json").read_text())["seed"] == 5
    lines = (output / "files.tsv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].split("\t")[3:5] == ["clean/none", "white-10dB/none"]

    # The clean copy is the middle 3 s of the file, downmixed, at the file's rate; the noise sits at
    # the nominal SNR against it, and the 10 dB and 0 dB copies carry the same noise.
    copies = output / "copies"
    clean, rate = sf.read(copies / "clean" / "a.wav.wav", dtype="float32")
    assert rate == 22050 and clean.ndim == 1
    np.testing.assert_allclose(clean, downmix(read_excerpt(str(music / "a.wav"), 1.0, 3.0)[0]), atol=1e-6)
    for kind in ("white", "pink"):
        loud, _ = sf.read(copies / f"{kind}-0dB" / "a.wav.wav", dtype="float32")
        quiet, _ = sf.read(copies / f"{kind}-10dB" / "a.wav.wav", dtype="float32")
        assert snr_db(clean, loud) == pytest.approx(0.0, abs=0.01)
        assert snr_db(clean, quiet) == pytest.approx(10.0, abs=0.01)
        np.testing.assert_allclose(loud - clean, (quiet - clean) * 10**0.5, atol=1e-4)
    assert sf.info(str(copies / "clean" / "deep" / "b.ogg.wav")).samplerate == 48000
    mp3 = (copies / "mp3-32k" / "deep" / "b.ogg.mp3").read_bytes()
    assert len(mp3) * 8 / 3.0 == pytest.approx(32_000, rel=0.15)

    # Deterministic: the same seed writes the same bytes.
    again = tmp_path / "again"
    row = _make_copies(
        {"source": str(music / "a.wav"), "key": "a.wav"},
        copies_uri=str(again),
        storage_options={},
        clip_s=3.0,
        seed=5,
    )
    assert row["status"] == "ok" and row["duration_s"] == pytest.approx(3.0, abs=1e-3)
    for condition in CONDITIONS:
        name = f"a.wav.{condition.extension}"
        assert (again / condition.name / name).read_bytes() == (copies / condition.name / name).read_bytes()


def test_resume_keeps_predictions_only_for_the_same_copies(tmp_path):
    from pipelines.classify import JobOptions
    from pipelines.evaluate import _check_resume

    recipe = {"sources": ["/m/a.ogg"], "clip_s": 30.0, "seed": 0, "version": 1}
    options = JobOptions(inputs=["/m"], output=str(tmp_path), resume=True)
    with pytest.raises(ValueError, match="other copies"):
        _check_resume(options, recipe)  # nothing recorded
    (tmp_path / "copies.json").write_text(json.dumps(recipe))
    _check_resume(options, recipe)
    with pytest.raises(ValueError, match="other copies"):
        _check_resume(options, recipe | {"seed": 1})
    _check_resume(JobOptions(inputs=["/m"], output=str(tmp_path)), recipe | {"seed": 1})  # no --resume: fine


def test_genre_for_folder_ignores_case_and_punctuation_but_never_guesses():
    from pipelines.evaluate import genre_for_folder

    genres = ("Hip-Hop", "R&B", "Rock", "Jazz")
    assert genre_for_folder("Jazz", genres) == "Jazz"
    assert genre_for_folder("hiphop", genres) == "Hip-Hop"
    assert genre_for_folder("r_b", genres) == "R&B"
    assert genre_for_folder("rnb", genres) is None  # an alias is not a spelling: reported, not mapped
    assert genre_for_folder("disco", genres) is None
    assert genre_for_folder("rock", ("Rock", "ROCK")) is None  # ambiguous


def test_single_label_bundles_compare_their_top_three_genres():
    from pipelines.evaluate import _answer, enhance_settings

    row = {"top_genre": "b", "probabilities": [0.1, 0.5, 0.3, 0.1], "tags": None, "needs_review": False}
    answer = _answer(row, ("a", "b", "c", "d"), multi_label=False)
    assert answer.ranking[:3] == ("b", "c", "a") and answer.top_genre == "b"
    tagged = {"top_genre": "Rock", "probabilities": [1.0], "tags": [{"tag": "rock"}, {"tag": "80s"}], "needs_review": 1}
    assert _answer(tagged, ("Rock",), multi_label=True).ranking == ("rock", "80s")
    assert enhance_settings(None) == ["none", "both"]
    assert enhance_settings("denoise") == ["none", "denoise"]
    assert enhance_settings("none") == ["none"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--limit", "3"],  # robustness options without --robustness
        ["--robustness", "--fit-temperature"],
        ["--robustness", "--limit", "0"],
        ["--robustness", "--clip-s", "-1"],
    ],
)
def test_the_command_line_refuses_contradictions(argv, capsys):
    from pipelines.evaluate import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--input", "x", "--output", "y", *argv])
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err
