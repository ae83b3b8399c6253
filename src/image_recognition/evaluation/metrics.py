"""Classification metrics from logits and labels, in plain numpy.

Each function takes integer labels and (N, classes) probabilities or
predictions, and returns plain Python values or pandas tables that the
catalog can store as JSON or CSV; ``score_logits`` computes them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from image_recognition.common.errors import InputError


class ClassCountError(InputError, ValueError):
    """A model's logits and the data's class names do not count the same classes."""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def mean_cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class."""
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-12, None)).mean())


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (true class, predicted class): row i holds the images of class i."""
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_scores(confusion: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class; 0 where a score is undefined."""
    true_positives = np.diag(confusion).astype(float)
    predicted = confusion.sum(axis=0).astype(float)
    actual = confusion.sum(axis=1).astype(float)
    precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
    recall = np.divide(true_positives, actual, out=np.zeros_like(true_positives), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return pd.DataFrame(
        {
            "label": np.arange(len(class_names)),
            "class": class_names,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": actual.astype(int),
        }
    )


def reliability_table(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> pd.DataFrame:
    """Confidence histogram: per equal-width bin, its count, mean confidence and accuracy.

    Bins are ``(lower, upper]``; a confidence of exactly 0 falls in the first.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    confidence_sum = np.bincount(index, weights=confidence, minlength=bins)
    correct_sum = np.bincount(index, weights=correct.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.where(counts > 0, confidence_sum / counts, np.nan)
        accuracy = np.where(counts > 0, correct_sum / counts, np.nan)
    return pd.DataFrame(
        {
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "count": counts,
            "mean_confidence": mean_confidence,
            "accuracy": accuracy,
        }
    )


def expected_calibration_error(table: pd.DataFrame) -> float:
    """ECE: the count-weighted mean gap between accuracy and confidence over the bins."""
    filled = table[table["count"] > 0]
    weights = filled["count"] / filled["count"].sum()
    return float((weights * (filled["accuracy"] - filled["mean_confidence"]).abs()).sum())


def most_confident_errors(
    probabilities: np.ndarray, labels: np.ndarray, class_names: list[str], count: int
) -> pd.DataFrame:
    """The ``count`` wrong predictions made with the highest confidence."""
    predictions = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]
    return pd.DataFrame(
        {
            "index": order,
            "predicted": predictions[order],
            "predicted_class": [class_names[i] for i in predictions[order]],
            "true": labels[order],
            "true_class": [class_names[i] for i in labels[order]],
            "confidence": confidence[order],
        }
    )


def confusion_table(confusion: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """The confusion matrix as a table: a ``true_class`` column, then one column per predicted class."""
    table = pd.DataFrame(confusion, columns=class_names)
    table.insert(0, "true_class", class_names)
    return table


@dataclass(frozen=True)
class Scores:
    """One model's test predictions, scored: the headline numbers and the tables the report reads."""

    quality: dict[str, Any]  # the ``quality`` of the metrics record
    per_class: pd.DataFrame
    confusion: pd.DataFrame  # as confusion_table
    reliability: pd.DataFrame
    errors: pd.DataFrame  # the most confident mistakes


def score_logits(  # noqa: PLR0913 (the evaluation settings, named)
    logits: dict[str, np.ndarray],
    labels: np.ndarray,
    class_names: list[str],
    tta: str,
    calibration_bins: int = 15,
    top_errors: int = 24,
) -> Scores:
    """Score the ``tta`` logits against ``labels``; ``logits["none"]`` gives the accuracy without TTA.

    ``calibration_bins`` sets the reliability table, ``top_errors`` how many
    confident mistakes are kept.
    """
    class_names = list(class_names)
    outputs = logits[tta].shape[1]
    if outputs != len(class_names):
        raise ClassCountError(
            f"the model gives {outputs} logits but the data has {len(class_names)} classes: it was trained on "
            "other data; evaluate it on the data set it was trained on, or train it on this one"
        )
    probabilities = softmax(logits[tta].astype(np.float64))
    predictions = probabilities.argmax(axis=1)
    confusion = confusion_matrix(labels, predictions, len(class_names))
    per_class = per_class_scores(confusion, class_names)
    reliability = reliability_table(probabilities, labels, calibration_bins)
    quality = {
        "accuracy": float((predictions == labels).mean()),
        "accuracy_no_tta": float((logits["none"].argmax(axis=1) == labels).mean()),
        "tta": tta,
        "mean_loss": mean_cross_entropy(probabilities, labels),
        "ece": expected_calibration_error(reliability),
        "macro_f1": float(per_class["f1"].mean()),
        "test_images": len(labels),
    }
    errors = most_confident_errors(probabilities, labels, class_names, top_errors)
    return Scores(quality, per_class, confusion_table(confusion, class_names), reliability, errors)
