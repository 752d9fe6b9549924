import numpy as np
import pytest

from acousticsense import HeadConfig, OutputHead, PostprocessConfig, aggregate, predict_file, softmax, top_k
from acousticsense.postprocess import entropy, margin, variation_ratio

LABELS = ("a", "b", "c", "d")
HEAD = OutputHead(LABELS, HeadConfig())


def test_softmax_rows_sum_to_one_and_temperature_flattens():
    logits = np.array([[2.0, 1.0, 0.0, -1.0]])
    sharp, flat = softmax(logits, 0.5), softmax(logits, 4.0)
    np.testing.assert_allclose(sharp.sum(-1), 1.0, rtol=1e-6)
    assert sharp[0, 0] > softmax(logits)[0, 0] > flat[0, 0] > 0.25
    np.testing.assert_allclose(softmax(np.array([[1000.0, 0.0]])), [[1.0, 0.0]])  # no overflow


def test_aggregate_mean_and_vote():
    probs = np.array([[0.6, 0.4, 0, 0], [0.6, 0.4, 0, 0], [0.0, 1.0, 0, 0]], np.float32)
    np.testing.assert_allclose(aggregate(probs, "mean"), [0.4, 0.6, 0, 0], atol=1e-6)
    np.testing.assert_allclose(aggregate(probs, "vote"), [2 / 3, 1 / 3, 0, 0], atol=1e-4)
    with pytest.raises(ValueError):
        aggregate(probs, "median")
    with pytest.raises(ValueError):
        aggregate(np.zeros((0, 4)), "mean")


def test_top_k_is_sorted_and_bounded():
    probs = np.array([0.1, 0.5, 0.15, 0.25], np.float32)
    assert [t["genre"] for t in top_k(probs, LABELS, 3)] == ["b", "d", "c"]
    assert len(top_k(probs, LABELS, 10)) == 4
    assert top_k(probs, LABELS, 1)[0]["confidence"] == pytest.approx(0.5)


def test_uncertainty_measures_bounds():
    assert entropy(np.array([1.0, 0, 0, 0])) == pytest.approx(0.0, abs=1e-9)
    assert entropy(np.full(4, 0.25)) == pytest.approx(1.0)
    assert margin(np.array([0.5, 0.3, 0.2, 0.0])) == pytest.approx(0.2)
    agree = np.array([[0.9, 0.1, 0, 0]] * 4)
    split = np.array([[0.9, 0.1, 0, 0], [0.1, 0.9, 0, 0], [0.9, 0.1, 0, 0], [0.1, 0.9, 0, 0]])
    assert variation_ratio(agree) == 0.0
    assert variation_ratio(split) == pytest.approx(0.5)


def test_predict_file_flags_uncertain_files():
    confident = np.array([[10.0, 0, 0, 0]] * 3)
    unsure = np.array([[0.1, 0.0, 0.05, 0.0]] * 3)
    config = PostprocessConfig(top_k=2, review_threshold=0.7)
    sure = predict_file(confident, HEAD, config)
    assert (sure.top_genre, sure.needs_review) == ("a", False)
    assert sure.confidence == pytest.approx(float(sure.probabilities.max()))
    assert len(sure.top_k) == 2 and sure.probabilities.dtype == np.float32
    flagged = predict_file(unsure, HEAD, config)
    assert flagged.needs_review and flagged.uncertainty == pytest.approx(flagged.entropy)
    by_margin = predict_file(unsure, HEAD, PostprocessConfig(review_metric="margin", review_threshold=0.9))
    assert by_margin.uncertainty == pytest.approx(1 - by_margin.margin) and by_margin.needs_review


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_a_file_and_its_segments_are_the_distributions_of_their_mean_scores(activation):
    rng = np.random.default_rng(1)
    tagger = OutputHead([f"t{i}" for i in range(6)], HeadConfig(activation, {"A": ("t0", "t1"), "B": ("t2", "t5")}))
    logits = rng.normal(size=(5, 6)) * 3
    scores = tagger.scores(logits)
    by_hand = [tagger.genre_distribution(scores[a:b].mean(axis=0, keepdims=True))[0] for a, b in ((0, 3), (3, 5))]
    np.testing.assert_allclose(tagger.group_distribution(scores, [3, 2]), by_hand, rtol=1e-5)
    post = PostprocessConfig(top_k=2)
    prediction = predict_file(logits, tagger, post, segment_windows=[3, 2])
    whole = tagger.genre_distribution(scores.mean(axis=0, keepdims=True))[0]
    np.testing.assert_allclose(prediction.probabilities, whole, rtol=1e-5)
    assert prediction.segment_genres == [tagger.genres[int(np.argmax(p))] for p in by_hand]
