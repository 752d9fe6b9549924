"""Offline evaluation: classification and calibration metrics, temperature fitting, and pictures.

Everything works on file-level probabilities ``(n_files, n_genres)`` and integer labels, in the
genre order of the bundle (``bundle.genres``: for a tagger, the genres its tags map to). Metrics are
pure numpy and return JSON-ready dicts. The temperature is fitted through the very functions that
serve predictions (the bundle's :class:`acousticsense.postprocess.OutputHead`: softmax or sigmoid
scores, averaged over windows as :func:`acousticsense.postprocess.predict_file` does, then the genre
distribution), so a fitted value means the same thing in batch and online, for single-label and
multi-label bundles alike. matplotlib
is imported inside the plotting functions only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from acousticsense.postprocess import OutputHead

__all__ = [
    "classification_metrics",
    "expected_calibration_error",
    "negative_log_likelihood",
    "fit_temperature",
    "plot_confusion_matrix",
    "plot_reliability_diagram",
]

_P_MIN = 1e-12  # probabilities are clipped here before the log


def classification_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    needs_review: np.ndarray | None = None,
    n_bins: int = 15,
) -> dict[str, Any]:
    """Accuracy, per-class and macro F1, confusion matrix, calibration and review-flag statistics.

    Args:
        y_true: int ``(n,)`` true class indices into ``labels``.
        probs: float ``(n, n_classes)`` file-level probabilities (rows sum to 1); the prediction is
            the arg-max.
        labels: ``n_classes`` class names, in column order.
        needs_review: optional bool ``(n,)``, the files the pipeline flagged for review.
        n_bins: equal-width confidence bins for the ECE.

    Returns:
        A JSON-serialisable dict:

        - ``n``: number of files.
        - ``accuracy``: share of files whose arg-max is the true class.
        - ``macro_f1``: unweighted mean F1 over the classes that occur in ``y_true`` or in the
          predictions (a class absent from both would add an undefined 0/0).
        - ``per_class``: ``{label: {"precision", "recall", "f1", "support"}}`` for every label;
          precision (recall) is 0.0 when the class is never predicted (never true).
        - ``confusion_matrix``: ``n_classes x n_classes`` list of lists of counts, rows = true class,
          columns = predicted class.
        - ``ece``: expected calibration error of the top-1 confidence, in ``[0, 1]``.
        - ``nll``: mean ``-log p(true class)``, probabilities clipped at 1e-12.
        - ``needs_review_rate``: share of flagged files; ``accuracy_flagged`` and
          ``accuracy_unflagged``: accuracy within each group. Each is ``None`` when
          ``needs_review`` is not given or the group is empty.

    Raises:
        ValueError: shapes disagree, there are no files, or a label index is out of range.
    """
    y, p = _check_inputs(y_true, probs)
    n, n_classes = p.shape
    if len(labels) != n_classes:
        raise ValueError(f"got {len(labels)} labels for {n_classes} probability columns")
    pred = p.argmax(axis=1)
    correct = pred == y
    confusion = np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    true_positives = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = np.divide(true_positives, predicted, out=np.zeros(n_classes), where=predicted > 0)
    recall = np.divide(true_positives, support, out=np.zeros(n_classes), where=support > 0)
    pr_sum = precision + recall
    f1 = np.divide(2 * precision * recall, pr_sum, out=np.zeros(n_classes), where=pr_sum > 0)
    present = (support > 0) | (predicted > 0)

    result: dict[str, Any] = {
        "n": int(n),
        "accuracy": float(correct.mean()),
        "macro_f1": float(f1[present].mean()),
        "per_class": {
            str(label): {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion.astype(int).tolist(),
        "ece": expected_calibration_error(p, y, n_bins),
        "nll": negative_log_likelihood(p, y),
        "needs_review_rate": None,
        "accuracy_flagged": None,
        "accuracy_unflagged": None,
    }
    if needs_review is not None:
        flagged = np.asarray(needs_review, dtype=bool).reshape(-1)
        if flagged.shape != (n,):
            raise ValueError(f"needs_review must be ({n},), got {np.shape(needs_review)}")
        result["needs_review_rate"] = float(flagged.mean())
        result["accuracy_flagged"] = float(correct[flagged].mean()) if flagged.any() else None
        result["accuracy_unflagged"] = float(correct[~flagged].mean()) if not flagged.all() else None
    return result


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """ECE of the top-1 confidence over ``n_bins`` equal-width bins.

    ``sum_b |B_b| / n * |accuracy(B_b) - mean confidence(B_b)|``; bins are ``(lo, hi]`` with the
    first one closed at 0.

    Args:
        probs: float ``(n, n_classes)``.
        y_true: int ``(n,)``.

    Returns:
        float in ``[0, 1]``.
    """
    y, p = _check_inputs(y_true, probs)
    counts, confidence, accuracy = _calibration_bins(p, y, n_bins)
    filled = counts > 0
    gaps = np.abs(accuracy[filled] - confidence[filled])
    return float((counts[filled] * gaps).sum() / counts.sum())


def negative_log_likelihood(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Mean ``-log p(true class)`` in nats, probabilities clipped to ``[1e-12, 1]``."""
    y, p = _check_inputs(y_true, probs)
    p_true = np.clip(p[np.arange(len(y)), y].astype(np.float64), _P_MIN, 1.0)
    return float(-np.log(p_true).mean())


def fit_temperature(
    window_logits: Sequence[np.ndarray],
    y_true: np.ndarray,
    head: OutputHead,
    aggregation: str = "mean",
    bounds: tuple[float, float] = (0.05, 20.0),
) -> float:
    """The temperature that minimises the NLL of the file-level genre probabilities.

    A file's probabilities are computed exactly as in :func:`acousticsense.postprocess.predict_file`
    with ``aggregation="mean"`` and rules off: the label scores ``head.scores(window_logits_i, T)`` (a
    softmax over the labels for single-label heads, independent sigmoids for multi-label heads) are
    averaged over the file's windows, and ``head.genre_distribution`` turns that mean into genre
    probabilities (for a tagger: each genre takes its best tag, renormalised over the genres). The
    search runs over ``log T`` with ``scipy.optimize.minimize_scalar(method="bounded")``. Put the result
    in ``PostprocessConfig.temperature``.

    Args:
        window_logits: one float ``(n_windows_i, n_labels)`` array per file (a ``(n_labels,)`` array is
            one window): the model's raw outputs, before any activation.
        y_true: int ``(n_files,)`` true genre indices into ``head.genres``.
        head: the bundle's output head (``bundle.output_head``).
        aggregation: ``"mean"`` (the only one a temperature can change: ``"vote"`` shares count
            arg-maxes, which no temperature moves, so it is refused).
        bounds: search interval for ``T``, ``0 < low < high``.

    Returns:
        The fitted temperature (a bound when the optimum lies beyond it).

    Raises:
        ValueError: empty or inconsistent inputs, bad bounds, or ``aggregation="vote"``.
    """
    from scipy.optimize import minimize_scalar

    if aggregation == "vote":
        raise ValueError(
            "aggregation='vote' gives vote shares that do not depend on the temperature; "
            "fit with aggregation='mean' (the temperature then still applies to 'vote' confidences)"
        )
    if aggregation != "mean":
        raise ValueError(f"unknown aggregation {aggregation!r}; use 'mean'")
    low, high = bounds
    if not 0.0 < low < high:
        raise ValueError(f"bounds must satisfy 0 < low < high, got {bounds}")
    files = [np.atleast_2d(np.asarray(logits, dtype=np.float64)) for logits in window_logits]
    y = np.asarray(y_true).reshape(-1)
    if not files or len(files) != len(y):
        raise ValueError(f"need one logits array per label and at least one file; got {len(files)} and {len(y)}")
    n_labels, n_genres = len(head.labels), len(head.genres)
    if any(f.ndim != 2 or f.shape[0] == 0 or f.shape[1] != n_labels for f in files):
        raise ValueError(f"every file's logits must be (n_windows >= 1, {n_labels}): one column per head label")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_genres:
        raise ValueError(f"y_true must hold integer genre indices in [0, {n_genres})")

    stacked = np.concatenate(files)  # the head works row by row: one call for every window of every file
    counts = [f.shape[0] for f in files]
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        file_probs = head.group_distribution(head.scores(stacked, math.exp(log_t)), counts)  # (n_files, n_genres)
        return float(-np.log(np.clip(file_probs[rows, y].astype(np.float64), _P_MIN, 1.0)).mean())

    result = minimize_scalar(nll, bounds=(math.log(low), math.log(high)), method="bounded", options={"xatol": 1e-4})
    return float(math.exp(result.x))


def plot_confusion_matrix(
    matrix: np.ndarray | Sequence[Sequence[int]], labels: Sequence[str], path: str | Path
) -> Path:
    """Write a confusion-matrix heat map as PNG.

    Cells are coloured by row share (recall per true class) and annotated with counts; the title
    gives accuracy and file count.

    Args:
        matrix: int ``(n_classes, n_classes)`` counts, rows = true class (as in
            :func:`classification_metrics`).
        labels: class names.
        path: output ``.png`` path; parent folders are created.

    Returns:
        The written path.
    """
    counts = np.asarray(matrix, dtype=np.int64)
    n_classes = len(labels)
    if counts.shape != (n_classes, n_classes):
        raise ValueError(f"matrix must be ({n_classes}, {n_classes}) for {n_classes} labels, got {counts.shape}")
    total = int(counts.sum())
    accuracy = float(np.trace(counts) / total) if total else float("nan")
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)

    fig = _figure(size=(max(5.0, 0.55 * n_classes + 2.5), max(4.5, 0.5 * n_classes + 2.0)))
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(n_classes), labels=list(labels), rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n_classes), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    font = 9 if n_classes <= 12 else 7
    for i in range(n_classes):
        for j in range(n_classes):
            if counts[i, j]:
                color = "white" if shares[i, j] > 0.5 else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=font, color=color)
    ax.set_title(f"Confusion matrix — accuracy {accuracy:.1%} (n={total})")
    return _save(fig, path)


def plot_reliability_diagram(probs: np.ndarray, y_true: np.ndarray, path: str | Path, n_bins: int = 15) -> Path:
    """Write a reliability diagram (accuracy vs. confidence per bin) with a confidence histogram, as PNG.

    Args:
        probs: float ``(n, n_classes)`` file-level probabilities.
        y_true: int ``(n,)`` true class indices.
        path: output ``.png`` path; parent folders are created.
        n_bins: equal-width confidence bins (as for the ECE).

    Returns:
        The written path.
    """
    y, p = _check_inputs(y_true, probs)
    counts, confidence, accuracy = _calibration_bins(p, y, n_bins)
    ece = expected_calibration_error(p, y, n_bins)
    overall = float((p.argmax(axis=1) == y).mean())
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, 1.0 / n_bins
    filled = counts > 0

    fig = _figure(size=(6.0, 7.0))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(centres[filled], accuracy[filled], width=width, edgecolor="black", color="tab:blue", label="accuracy")
    top.bar(
        centres[filled],
        confidence[filled] - accuracy[filled],
        bottom=accuracy[filled],
        width=width,
        color="tab:red",
        alpha=0.3,
        edgecolor="tab:red",
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left")
    top.set_title(f"Reliability — ECE {ece:.3f}, accuracy {overall:.1%} (n={len(y)})")
    bottom.bar(centres, counts, width=width, color="gray", edgecolor="black")
    bottom.set_xlabel("top-1 confidence")
    bottom.set_ylabel("files")
    return _save(fig, path)


def _check_inputs(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true).reshape(-1)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"probs must be (n >= 1, n_classes >= 2), got {p.shape}")
    if y.shape[0] != p.shape[0]:
        raise ValueError(f"y_true has {y.shape[0]} entries for {p.shape[0]} rows of probs")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y_true must hold integer class indices, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"y_true must be in [0, {p.shape[1]}), got values in [{y.min()}, {y.max()}]")
    return y.astype(np.int64), p


def _calibration_bins(p: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: file count, mean top-1 confidence, accuracy (0 in empty bins). Each ``(n_bins,)``."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    # Bins (lo, hi]: a confidence of exactly k / n_bins belongs to bin k - 1; 0 goes to the first.
    index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(index, weights=correct, minlength=n_bins)
    safe = np.maximum(counts, 1.0)
    return counts, conf_sum / safe, correct_sum / safe


def _figure(size: tuple[float, float]) -> Any:
    """A pyplot-free figure: no global backend switch, safe in worker threads and headless hosts."""
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=120)
    return out
