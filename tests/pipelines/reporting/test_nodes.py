"""The reporting nodes: gather whatever models were evaluated, draw errors from the split they were evaluated on."""

from __future__ import annotations

import pytest

from image_recognition.pipelines.reporting.nodes import (
    NoEvaluatedModelsError,
    StaleTestSplitError,
    gather_results,
    plot_error_gallery,
)
from image_recognition.pipelines.reporting.pipeline import PART_DATASETS


def test_gather_results_skips_models_never_evaluated(evaluated):
    inputs = {f"vit__{part}": evaluated["vit"][part] for part in PART_DATASETS}
    inputs.update({f"cnn__{part}": None for part in PART_DATASETS})
    gathered = gather_results(**inputs)
    assert list(gathered) == ["vit"]
    assert gathered["vit"]["history"]["val_accuracy"].tolist() == [0.2, 0.35]  # from the metrics record
    with pytest.raises(NoEvaluatedModelsError, match="no evaluated model"):
        gather_results(**{f"cnn__{part}": None for part in PART_DATASETS})


def test_error_gallery_refuses_another_test_split(evaluated, evaluation_inputs):
    test, _, _ = evaluation_inputs
    assert plot_error_gallery(evaluated, test).data  # the split the models were evaluated on
    other = {"images": test["images"][::-1].copy(), "labels": test["labels"][::-1].copy()}
    with pytest.raises(StaleTestSplitError, match="evaluated on another test split .*--load-versions=dataset_test:"):
        plot_error_gallery(evaluated, other)
