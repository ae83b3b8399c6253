"""A checkpoint back to a model, its logits batch by batch, and the test-time augmentation views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from image_recognition.models.inference import TTA_MODES, TTA_VIEWS, load_model, predict_logits, tta_logits, tta_mode
from tests.helpers import fake_checkpoint


class Recorder(nn.Module):
    """A linear map of the pixels that keeps each batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 4 * 4, 10)
        self.batches: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.clone())
        return self.linear(x.flatten(1))


def test_a_tta_setting_names_a_mode_and_a_bad_one_is_refused() -> None:
    assert [tta_mode(True), tta_mode(False), tta_mode(None)] == ["flip_translate", "none", "none"]
    assert [tta_mode(mode) for mode in TTA_MODES] == list(TTA_MODES)
    with pytest.raises(ValueError, match="tta must be a bool or one of none, flip, flip_translate, got 'rotate'"):
        tta_mode("rotate")


@pytest.mark.parametrize("tta", TTA_MODES)
def test_tta_averages_its_views_of_the_batch(tta: str) -> None:
    torch.manual_seed(0)
    model, images = Recorder(), torch.randn(2, 3, 4, 4)
    logits = tta_logits(model, images, tta)
    assert len(model.batches) == TTA_VIEWS[tta]
    torch.testing.assert_close(model.batches[0], images)
    if tta == "flip":
        torch.testing.assert_close(model.batches[1], images.flip(3))
    # The model is linear: the weighted mean of its logits is its logits of the weighted mean of the views.
    views = torch.stack(model.batches)
    weights = torch.tensor([1.0] if tta == "none" else [0.5, 0.5] if tta == "flip" else [0.25, 0.25] + [0.125] * 4)
    torch.testing.assert_close(logits, model.linear((weights.view(-1, 1, 1, 1, 1) * views).sum(0).flatten(1)))


def test_logits_are_of_the_normalised_images_in_batches_and_in_order() -> None:
    torch.manual_seed(0)
    model = Recorder()
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 4, 4), dtype=np.uint8)
    mean, std = [0.5, 0.4, 0.3], [0.25, 0.2, 0.1]
    logits = predict_logits(model, images, mean, std, batch_size=2)
    assert [len(batch) for batch in model.batches] == [2, 2, 1]
    normalised = (torch.from_numpy(images) / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(torch.cat(model.batches), normalised)
    assert logits.dtype == torch.float32 and logits.device.type == "cpu"
    torch.testing.assert_close(logits, model.linear(normalised.flatten(1)).detach())
    assert predict_logits(model, images[:0], mean, std).shape == (0, 0)
    with pytest.raises(ValueError, match="expected uint8 images"):
        predict_logits(model, images.astype(np.float32), mean, std)


def test_a_checkpoint_loads_in_eval_mode_with_its_ema_weights_when_it_has_them() -> None:
    checkpoint = fake_checkpoint("simple_cnn")
    plain = load_model(checkpoint, "cpu")
    assert not plain.training
    torch.testing.assert_close(plain.state_dict(), checkpoint["model_state"])
    ema = {key: value + 1 for key, value in checkpoint["model_state"].items()}
    averaged = load_model({**checkpoint, "ema_state": ema}, "cpu", channels_last=True)
    torch.testing.assert_close(averaged.state_dict(), ema)
    assert averaged.conv1.weight.is_contiguous(memory_format=torch.channels_last)
