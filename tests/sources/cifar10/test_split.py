"""The stratified hold-out: exact sizes, classes in proportion."""

from __future__ import annotations

import numpy as np

from image_recognition.sources.cifar10.split import stratified_holdout


def test_stratified_holdout_rounds_to_the_exact_size():
    labels = np.array([0] * 7 + [1] * 5 + [2] * 3)
    keep, holdout = stratified_holdout(labels, 4, seed=0)
    assert len(holdout) == 4 and len(keep) == 11
    assert sorted(np.bincount(labels[holdout], minlength=3)) == [1, 1, 2]
