"""From window logits to one prediction per file: temperature softmax, aggregation, top-k, uncertainty."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from acousticsense.config import PostprocessConfig
from acousticsense.rules import apply_rules

__all__ = [
    "softmax",
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
    """One file's prediction. ``probabilities`` is float32 ``(n_classes,)`` in label order."""

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


def predict_file(
    window_logits: np.ndarray,
    labels: Sequence[str],
    config: PostprocessConfig,
    segment_windows: Sequence[int] | None = None,
    class_weights: np.ndarray | None = None,
) -> FilePrediction:
    """Turn one file's ``(n_windows, n_classes)`` logits into a :class:`FilePrediction`.

    Args:
        window_logits: the file's window logits, segments one after another.
        segment_windows: windows per segment (``None``: one segment holding every window).
        class_weights: the rule layer's ``(n_classes,)`` multipliers, applied to the file's probabilities
            before top-k and uncertainty (``None``: rules off).

    With ``config.aggregation == "mean"`` the file's probabilities are the mean over all windows; with
    ``"vote"`` each segment (its windows' mean) votes for its top genre — or, for a single segment,
    each window votes. ``segment_genres`` lists every segment's top genre, so disagreement is visible.
    ``uncertainty`` is the configured review metric scaled so that higher means less certain
    (normalised entropy, ``1 - margin``, or the variation ratio); ``needs_review`` is
    ``uncertainty > config.review_threshold``.
    """
    window_probs = softmax(window_logits, config.temperature)
    bounds = np.cumsum(segment_windows)[:-1] if segment_windows else []
    segment_probs = np.stack([aggregate(p, "mean") for p in np.split(window_probs, bounds)])
    if config.aggregation == "vote" and len(segment_probs) > 1:
        probs = aggregate(segment_probs, "vote")
    else:
        probs = aggregate(window_probs, config.aggregation)
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
    )
