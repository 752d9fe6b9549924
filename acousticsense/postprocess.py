"""From window logits to one prediction per file: temperature, softmax or sigmoid, genres, aggregation,
top-k, uncertainty.

Every model's labels become a *genre distribution* per window (non-negative, summing to 1, in the
order of :attr:`OutputHead.genres`), and everything after that — aggregation over windows and segments,
the rule layer, top-k, entropy, margin, variation ratio, ``needs_review`` — is the same for single-label
(softmax) and multi-label (sigmoid) models. Multi-label models also report every tag with its score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from acousticsense.config import HeadConfig, PostprocessConfig
from acousticsense.errors import ConfigError
from acousticsense.rules import apply_rules

__all__ = [
    "OutputHead",
    "softmax",
    "sigmoid",
    "aggregate",
    "top_k",
    "entropy",
    "margin",
    "variation_ratio",
    "FilePrediction",
    "predict_file",
]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax over the last axis of ``logits / temperature``; float32, rows sum to 1."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def sigmoid(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Element-wise ``1 / (1 + exp(-logits / temperature))``; float32."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    return (0.5 * (1.0 + np.tanh(0.5 * scaled))).astype(np.float32)  # tanh form: no overflow for large |x|


class OutputHead:
    """A model's output labels, their activation, and how they map to genres.

    Args:
        labels: the model's outputs, in order.
        head: activation and genre mapping (``genres=None``: the labels are the genres).

    Raises:
        ConfigError: the mapping names a label the model does not have.
    """

    def __init__(self, labels: Sequence[str], head: HeadConfig) -> None:
        self.labels = tuple(labels)
        self.activation = head.activation
        self.multi_label = head.activation == "sigmoid"
        if head.genres is None:
            self.genres = self.labels
            self._members: list[np.ndarray] | None = None
        else:
            index = {label: i for i, label in enumerate(self.labels)}
            unknown = sorted({t for tags in head.genres.values() for t in tags} - set(index))
            if unknown:
                raise ConfigError(f"the genre mapping names labels the model does not have: {unknown}")
            self.genres = tuple(head.genres)
            self._members = [np.array([index[t] for t in tags]) for tags in head.genres.values()]

    def scores(self, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """``(n, n_labels)`` logits -> label scores: softmax rows, or independent sigmoids."""
        return sigmoid(logits, temperature) if self.multi_label else softmax(logits, temperature)

    def genre_distribution(self, scores: np.ndarray) -> np.ndarray:
        """``(n, n_labels)`` label scores -> ``(n, n_genres)`` rows that sum to 1.

        A genre's score is the largest of its labels' sigmoid scores (multi-label) or the sum of their
        softmax probabilities; the genre scores are then normalised over the genres.
        """
        if self._members is None:
            genre = scores.astype(np.float64)
        elif self.multi_label:
            genre = np.stack([scores[:, m].max(axis=1) for m in self._members], axis=1).astype(np.float64)
        else:
            genre = np.stack([scores[:, m].sum(axis=1) for m in self._members], axis=1).astype(np.float64)
        genre = np.maximum(genre, 1e-12)  # all-zero rows (underflow) become uniform, not NaN
        return (genre / genre.sum(axis=1, keepdims=True)).astype(np.float32)

    def group_distribution(self, scores: np.ndarray, windows_per_group: Sequence[int]) -> np.ndarray:
        """The genre distribution of each group's mean label scores (musicnn's taggram mean, per group).

        This is how windows become one prediction: a file's (``predict_file`` with ``aggregation="mean"``),
        a segment's (``segment_genres``), and each file's inside ``fit_temperature``.

        Args:
            scores: ``(n_windows, n_labels)`` label scores (:meth:`scores`), groups one after another.
            windows_per_group: windows of each group, in order; they sum to ``n_windows``.

        Returns:
            ``(n_groups, n_genres)`` rows that sum to 1.
        """
        counts = np.asarray(windows_per_group)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
        means = np.add.reduceat(np.asarray(scores, dtype=np.float64), starts, axis=0) / counts[:, None]
        return self.genre_distribution(means)


def aggregate(window_probs: np.ndarray, method: str = "mean") -> np.ndarray:
    """Combine ``(n_windows, n_classes)`` probabilities into ``(n_classes,)``.

    ``mean`` averages the probabilities; ``vote`` gives each window one vote for its top class (ties
    broken by the mean probability) and returns the vote shares.
    """
    if window_probs.ndim != 2 or window_probs.shape[0] == 0:
        raise ValueError("window_probs must be (n_windows >= 1, n_classes)")
    if method == "mean":
        return window_probs.mean(axis=0).astype(np.float32)
    if method == "vote":
        votes = np.bincount(window_probs.argmax(axis=1), minlength=window_probs.shape[1]).astype(np.float64)
        votes += 1e-6 * window_probs.mean(axis=0)  # tie-break without changing the shares visibly
        return (votes / votes.sum()).astype(np.float32)
    raise ValueError(f"unknown aggregation {method!r}; use 'mean' or 'vote'")


def top_k(probs: np.ndarray, labels: Sequence[str], k: int) -> list[dict[str, float | str]]:
    """The ``k`` most probable labels, best first: ``[{"genre": str, "confidence": float}, …]``."""
    order = np.argsort(-probs, kind="stable")[: min(k, len(labels))]
    return [{"genre": labels[i], "confidence": float(probs[i])} for i in order]


def entropy(probs: np.ndarray) -> float:
    """Shannon entropy divided by ``log(n_classes)``: 0 for a one-hot, 1 for uniform."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return float(-(p * np.log(p)).sum() / np.log(len(p)))


def margin(probs: np.ndarray) -> float:
    """Top-1 minus top-2 probability: near 0 when the two best classes are tied."""
    best_two = np.sort(probs)[-2:]
    return float(best_two[1] - best_two[0])


def variation_ratio(window_probs: np.ndarray) -> float:
    """Share of windows that do not vote for the modal class: 0 when all windows agree."""
    votes = np.bincount(window_probs.argmax(axis=1), minlength=window_probs.shape[1])
    return float(1.0 - votes.max() / window_probs.shape[0])


@dataclass(frozen=True)
class FilePrediction:
    """One file's prediction.

    ``probabilities`` is float32 ``(n_genres,)`` in genre order, summing to 1. ``tags`` is every label
    with its mean score over the analysed windows, best first (``[{"tag": str, "score": float}, …]``),
    for multi-label models; ``None`` for single-label models (their labels are the genres).
    """

    top_genre: str
    confidence: float
    top_k: list[dict[str, float | str]]
    probabilities: np.ndarray
    entropy: float
    margin: float
    variation_ratio: float
    uncertainty: float
    needs_review: bool
    segment_genres: list[str]
    tags: list[dict[str, float | str]] | None = None


def predict_file(
    window_logits: np.ndarray,
    head: OutputHead,
    config: PostprocessConfig,
    segment_windows: Sequence[int] | None = None,
    class_weights: np.ndarray | None = None,
) -> FilePrediction:
    """Turn one file's ``(n_windows, n_labels)`` logits into a :class:`FilePrediction`.

    Args:
        window_logits: the file's window logits, segments one after another.
        head: the bundle's :class:`OutputHead` (``bundle.output_head``).
        segment_windows: windows per segment (``None``: one segment holding every window).
        class_weights: the rule layer's ``(n_genres,)`` multipliers, applied to the file's probabilities
            before top-k and uncertainty (``None``: rules off).

    With ``config.aggregation == "mean"`` the label scores are averaged over all windows (musicnn's
    taggram mean) and the average becomes the genre distribution, so ``top_genre`` agrees with ``tags``;
    with ``"vote"`` each segment (its windows' mean) votes for its top genre — or, for a single segment,
    each window votes. ``segment_genres`` lists every segment's top genre, so disagreement is visible.
    ``uncertainty`` is the configured review metric scaled so that higher means less certain
    (normalised entropy, ``1 - margin``, or the variation ratio); ``needs_review`` is
    ``uncertainty > config.review_threshold``.
    """
    window_scores = head.scores(window_logits, config.temperature)
    window_probs = head.genre_distribution(window_scores)
    labels = head.genres
    segment_probs = head.group_distribution(window_scores, segment_windows or [len(window_scores)])
    if config.aggregation == "vote":
        probs = aggregate(segment_probs if len(segment_probs) > 1 else window_probs, "vote")
    else:
        probs = head.group_distribution(window_scores, [len(window_scores)])[0]
    if class_weights is not None:
        probs = apply_rules(probs, class_weights)
    best = int(np.argmax(probs))
    ent, mar, var = entropy(probs), margin(probs), variation_ratio(window_probs)
    uncertainty = {"entropy": ent, "margin": 1.0 - mar, "variation_ratio": var}[config.review_metric]
    return FilePrediction(
        top_genre=labels[best],
        confidence=float(probs[best]),
        top_k=top_k(probs, labels, config.top_k),
        probabilities=probs,
        entropy=ent,
        margin=mar,
        variation_ratio=var,
        uncertainty=uncertainty,
        needs_review=bool(uncertainty > config.review_threshold),
        segment_genres=[labels[int(i)] for i in segment_probs.argmax(axis=1)],
        tags=_tags(window_scores.mean(axis=0), head.labels) if head.multi_label else None,
    )


def _tags(scores: np.ndarray, labels: Sequence[str]) -> list[dict[str, float | str]]:
    order = np.argsort(-scores, kind="stable")
    return [{"tag": labels[i], "score": float(scores[i])} for i in order]
