"""Each metric against values worked out by hand on tiny inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from image_recognition.evaluation.metrics import (
    ClassCountError,
    confusion_matrix,
    expected_calibration_error,
    mean_cross_entropy,
    most_confident_errors,
    per_class_scores,
    reliability_table,
    score_logits,
    softmax,
)

LABELS = np.array([0, 0, 1, 1, 2, 2])
PREDICTIONS = np.array([0, 1, 1, 1, 0, 2])


def test_confusion_matrix_by_hand():
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    np.testing.assert_array_equal(confusion_matrix(LABELS, PREDICTIONS, 3), expected)


def test_per_class_scores_by_hand():
    table = per_class_scores(confusion_matrix(LABELS, PREDICTIONS, 3), ["a", "b", "c"])
    # class a: TP 1, predicted 2, actual 2 -> P 1/2, R 1/2, F1 1/2
    # class b: TP 2, predicted 3, actual 2 -> P 2/3, R 1,   F1 0.8
    # class c: TP 1, predicted 1, actual 2 -> P 1,   R 1/2, F1 2/3
    np.testing.assert_allclose(table["precision"], [0.5, 2 / 3, 1.0])
    np.testing.assert_allclose(table["recall"], [0.5, 1.0, 0.5])
    np.testing.assert_allclose(table["f1"], [0.5, 0.8, 2 / 3])
    assert table["support"].tolist() == [2, 2, 2]


def test_undefined_precision_is_zero():
    table = per_class_scores(confusion_matrix(np.array([0, 1]), np.array([0, 0]), 2), ["a", "b"])
    assert table["precision"].tolist() == [0.5, 0.0] and table["f1"][1] == 0.0


def test_softmax_and_loss_by_hand():
    probabilities = softmax(np.array([[0.0, np.log(3.0)], [1000.0, 1000.0]]))
    np.testing.assert_allclose(probabilities, [[0.25, 0.75], [0.5, 0.5]])
    # -(log 0.75 + log 0.5) / 2
    assert mean_cross_entropy(probabilities, np.array([1, 0])) == pytest.approx(-(np.log(0.75) + np.log(0.5)) / 2)


def test_reliability_and_ece_by_hand():
    probabilities = np.array([[0.95, 0.05], [0.9, 0.1], [0.3, 0.7], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 0])
    table = reliability_table(probabilities, labels, bins=5)
    # confidences 0.95, 0.9 -> bin (0.8, 1.0]; 0.7, 0.6 -> bin (0.4, 0.6] and (0.6, 0.8]
    assert table["count"].tolist() == [0, 0, 1, 1, 2]
    assert table.loc[4, "mean_confidence"] == pytest.approx(0.925) and table.loc[4, "accuracy"] == 0.5
    assert table.loc[3, "accuracy"] == 1.0 and table.loc[2, "accuracy"] == 0.0
    # ECE = 2/4 * |0.5 - 0.925| + 1/4 * |1 - 0.7| + 1/4 * |0 - 0.6|
    assert expected_calibration_error(table) == pytest.approx(0.5 * 0.425 + 0.25 * 0.3 + 0.25 * 0.6)


def test_fifteen_bins_cover_zero_to_one():
    table = reliability_table(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([0, 0]), bins=15)
    assert len(table) == 15 and table["count"].sum() == 2
    assert table["bin_upper"].iloc[-1] == 1.0


def test_perfectly_calibrated_ece_is_zero():
    table = pd.DataFrame({"count": [2, 0], "mean_confidence": [0.5, np.nan], "accuracy": [0.5, np.nan]})
    assert expected_calibration_error(table) == 0.0


def test_most_confident_errors_by_hand():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([1, 1, 1, 0])
    errors = most_confident_errors(probabilities, labels, ["cat", "dog"], count=2)
    assert errors["index"].tolist() == [0, 3]
    assert errors["predicted_class"].tolist() == ["cat", "dog"] and errors["true_class"].tolist() == ["dog", "cat"]
    np.testing.assert_allclose(errors["confidence"], [0.9, 0.7])


def test_scores_of_the_tta_logits_with_the_plain_accuracy_beside():
    labels = np.array([0, 1, 1])
    logits = {
        "none": np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0]]),
        "flip": np.array([[2.0, 0.0], [0.0, 2.0], [0, 2.0]]),
    }
    scores = score_logits(logits, labels, ("cat", "dog"), "flip", calibration_bins=4, top_errors=1)
    quality = scores.quality
    assert (quality["accuracy"], quality["accuracy_no_tta"], quality["tta"], quality["test_images"]) == (
        1,
        2 / 3,
        "flip",
        3,
    )
    assert quality["macro_f1"] == 1.0 and quality["mean_loss"] == pytest.approx(np.log(1 + np.exp(-2.0)))
    assert scores.confusion.to_dict("list") == {"true_class": ["cat", "dog"], "cat": [1, 0], "dog": [0, 2]}
    assert len(scores.reliability) == 4 and scores.errors.empty  # no mistakes with flips
    assert score_logits(logits, labels, ["cat", "dog"], "none").errors["index"].tolist() == [1]


def test_scores_take_the_class_count_from_the_names_given_100_of_them():
    rng = np.random.default_rng(0)
    names = [f"fine_{index}" for index in range(100)]
    labels = rng.integers(0, 100, 500)
    logits = rng.normal(size=(500, 100))
    logits[np.arange(250), labels[:250]] += 10.0  # the first half right
    scores = score_logits({"none": logits}, labels, names, "none", top_errors=5)
    assert scores.per_class["class"].tolist() == names
    assert list(scores.confusion.columns) == ["true_class", *names]
    assert scores.confusion[names].to_numpy().sum() == 500
    assert 0.5 <= scores.quality["accuracy"] < 0.6
    assert set(scores.errors["true_class"]) <= set(names)


def test_logits_of_another_class_count_than_the_data_are_refused():
    with pytest.raises(ClassCountError, match="the model gives 10 logits but the data has 100 classes"):
        score_logits({"none": np.zeros((4, 10))}, np.zeros(4, dtype=np.int64), [str(i) for i in range(100)], "none")
