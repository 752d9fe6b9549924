import json
import math

import numpy as np
import pytest

from acousticsense.config import GENRES, HeadConfig, PostprocessConfig
from acousticsense.evaluation import (
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
    plot_confusion_matrix,
    plot_reliability_diagram,
)
from acousticsense.postprocess import OutputHead, predict_file, softmax

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = ("a", "b", "c", "d")  # "d" never occurs: it must not drag the macro F1 down
# A small tagger: 8 tags, 4 genres (tag t7 belongs to no genre, like a mood or a decade).
TAGS = tuple(f"t{i}" for i in range(8))
TAGGER = OutputHead(
    TAGS,
    HeadConfig(activation="sigmoid", genres={"A": ("t0", "t1"), "B": ("t2",), "C": ("t3", "t4", "t5"), "D": ("t6",)}),
)
SOFTMAX6 = OutputHead([str(i) for i in range(6)], HeadConfig())


def _one_hot_ish(pred: list[int], n_classes: int = 4, top: float = 0.7) -> np.ndarray:
    probs = np.full((len(pred), n_classes), (1.0 - top) / (n_classes - 1))
    probs[np.arange(len(pred)), pred] = top
    return probs


def _sample_labels(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cumulative = probs.astype(np.float64).cumsum(axis=1)
    draws = rng.random((len(probs), 1)) * cumulative[:, -1:]
    return (draws > cumulative).sum(axis=1)


def test_metrics_on_a_hand_made_example():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = [0, 1, 1, 1, 2, 0]
    flagged = np.array([False, True, False, False, False, True])
    m = classification_metrics(y, _one_hot_ish(pred), LABELS, needs_review=flagged)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    a, b, c, d = (m["per_class"][label] for label in LABELS)
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == pytest.approx((0.5, 0.5, 0.5, 2))
    assert (b["precision"], b["recall"], b["f1"]) == pytest.approx((2 / 3, 1.0, 0.8))
    assert (c["precision"], c["recall"], c["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))
    assert d == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["nll"] == pytest.approx(-(4 * math.log(0.7) + 2 * math.log(0.1)) / 6)
    assert m["needs_review_rate"] == pytest.approx(1 / 3)
    assert (m["accuracy_flagged"], m["accuracy_unflagged"]) == (0.0, 1.0)
    assert json.loads(json.dumps(m)) == m  # plain Python types only


def test_review_groups_are_none_when_empty_or_not_given():
    y = np.array([0, 1, 2])
    probs = _one_hot_ish([0, 1, 0])
    none_flagged = classification_metrics(y, probs, LABELS, needs_review=np.zeros(3, bool))
    assert none_flagged["needs_review_rate"] == 0.0 and none_flagged["accuracy_flagged"] is None
    assert none_flagged["accuracy_unflagged"] == pytest.approx(2 / 3)
    all_flagged = classification_metrics(y, probs, LABELS, needs_review=np.ones(3, bool))
    assert all_flagged["accuracy_unflagged"] is None
    unknown = classification_metrics(y, probs, LABELS)
    assert unknown["needs_review_rate"] is None and unknown["accuracy_flagged"] is None
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 5, 1]), probs, LABELS)
    with pytest.raises(ValueError):
        classification_metrics(y, probs, LABELS[:3])


def test_nll_clips_a_zero_probability():
    m = classification_metrics(np.array([1]), np.array([[1.0, 0.0]]), ("x", "y"))
    assert m["nll"] == pytest.approx(-math.log(1e-12))


def test_ece_is_zero_when_calibrated_and_positive_when_over_confident():
    # 10 files at confidence 0.8 with 8 right, 10 at 0.6 with 6 right: accuracy = confidence in each bin.
    probs = np.array([[0.8, 0.2]] * 10 + [[0.6, 0.4]] * 10)
    y = np.array([0] * 8 + [1] * 2 + [0] * 6 + [1] * 4)
    assert expected_calibration_error(probs, y) == pytest.approx(0.0, abs=1e-9)
    assert classification_metrics(y, probs, ("x", "y"))["ece"] == pytest.approx(0.0, abs=1e-9)
    # Confidence 0.95 but only 60 % right: ECE = 0.35.
    over = np.array([[0.95, 0.05]] * 10)
    y_over = np.array([0] * 6 + [1] * 4)
    assert expected_calibration_error(over, y_over) == pytest.approx(0.35)


def _file_probs(head: OutputHead, files: list[np.ndarray], temperature: float) -> np.ndarray:
    """What the pipeline reports for each file at this temperature: predict_file's probabilities."""
    config = PostprocessConfig(temperature=temperature)
    return np.stack([predict_file(f, head, config).probabilities for f in files])


@pytest.mark.parametrize("t_true", [2.5, 0.5])
def test_fit_temperature_recovers_the_generating_temperature(t_true):
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, size=(2000, len(GENRES)))
    y = _sample_labels(softmax(logits, t_true), rng)
    fitted = fit_temperature([row[None, :] for row in logits], y, OutputHead(GENRES, HeadConfig()))
    assert fitted == pytest.approx(t_true, rel=0.15)
    assert (fitted > 1.0) == (t_true > 1.0)  # over-confident logits are cooled, under-confident sharpened


@pytest.mark.parametrize("t_true", [3.0, 0.7])
def test_fit_temperature_recovers_the_generating_temperature_of_a_sigmoid_head(t_true):
    rng = np.random.default_rng(3)
    files = [rng.normal(-1.0, 3.0, size=(int(rng.integers(1, 4)), len(TAGS))) for _ in range(3000)]
    y = _sample_labels(_file_probs(TAGGER, files, t_true), rng)
    fitted = fit_temperature(files, y, TAGGER)
    assert fitted == pytest.approx(t_true, rel=0.2)
    assert (fitted > 1.0) == (t_true > 1.0)


@pytest.mark.parametrize("head", [SOFTMAX6, TAGGER], ids=["softmax", "sigmoid"])
def test_fitted_temperature_minimises_the_nll_of_predict_file(head):
    rng = np.random.default_rng(1)
    files = [rng.normal(0.0, 4.0, size=(int(rng.integers(1, 5)), len(head.labels))) for _ in range(300)]
    # Labels drawn from the files' probabilities at T = 3: the windows are over-confident.
    y = _sample_labels(_file_probs(head, files, 3.0), rng)
    fitted = fit_temperature(files, y, head)

    def nll(t: float) -> float:
        config = PostprocessConfig(temperature=t)
        p_true = [predict_file(f, head, config).probabilities[label] for f, label in zip(files, y)]
        return float(-np.mean(np.log(np.clip(p_true, 1e-12, 1.0))))

    assert nll(fitted) <= min(nll(fitted * 1.05), nll(fitted / 1.05)) + 1e-9
    assert nll(fitted) < nll(1.0)
    assert fitted > 1.0


def test_fit_temperature_checks_its_inputs():
    head = OutputHead(["x", "y", "z"], HeadConfig())
    logits = [np.zeros((2, 3)), np.ones((1, 3))]
    with pytest.raises(ValueError, match="vote"):
        fit_temperature(logits, np.array([0, 1]), head, aggregation="vote")
    with pytest.raises(ValueError):
        fit_temperature(logits, np.array([0]), head)
    with pytest.raises(ValueError):
        fit_temperature([np.zeros((2, 3)), np.zeros((1, 4))], np.array([0, 1]), head)
    with pytest.raises(ValueError):
        fit_temperature(logits, np.array([0, 1]), head, bounds=(2.0, 1.0))
    # A tagger's logits have one column per tag, and y_true indexes its genres, not its tags.
    tag_logits = [np.zeros((2, len(TAGS)))] * 2
    assert fit_temperature(tag_logits, np.array([0, 3]), TAGGER) > 0
    with pytest.raises(ValueError, match="genre indices"):
        fit_temperature(tag_logits, np.array([0, 4]), TAGGER)
    with pytest.raises(ValueError, match="one column per head label"):
        fit_temperature([np.zeros((2, 4))] * 2, np.array([0, 3]), TAGGER)


def test_plots_are_valid_pngs(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.integers(0, len(GENRES), 400)
    logits = rng.normal(0.0, 2.0, size=(400, len(GENRES)))
    logits[np.arange(400), y] += 3.0
    probs = softmax(logits)
    metrics = classification_metrics(y, probs, GENRES)
    confusion = plot_confusion_matrix(metrics["confusion_matrix"], GENRES, tmp_path / "plots" / "confusion.png")
    reliability = plot_reliability_diagram(probs, y, tmp_path / "reliability.png")
    for path in (confusion, reliability):
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC
        assert len(data) > 10_000
    with pytest.raises(ValueError):
        plot_confusion_matrix(np.zeros((3, 3)), GENRES, tmp_path / "bad.png")
