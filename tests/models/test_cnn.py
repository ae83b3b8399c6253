"""The airbench-style convnet: its patch-whitening layer, computed and run in float32."""

from __future__ import annotations

import pytest
import torch

from image_recognition.models import build_model, whitening_filters
from image_recognition.models.cnn import CNNConfig, FastCNN

# A narrow cnn that builds and runs in milliseconds; tests/models/test_models.py runs it beside the others.
TINY_CNN = {"widths": [8, 16, 16]}


def test_whitening_decorrelates_patches() -> None:
    generator = torch.Generator().manual_seed(0)
    # Correlated channels: the whitening must undo the mixing.
    base = torch.randn(64, 3, 16, 16, generator=generator)
    images = torch.einsum("ij,bjhw->bihw", torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.3, 0.0], [0.5, 0.5, 0.2]]), base)
    filters = whitening_filters(images, kernel_size=2, eps=1e-6)
    assert filters.shape == (24, 3, 2, 2)
    responses = torch.nn.functional.conv2d(images, filters[:12]).permute(1, 0, 2, 3).reshape(12, -1)
    covariance = responses @ responses.T / responses.shape[1]
    torch.testing.assert_close(covariance, torch.eye(12), atol=0.05, rtol=0)


def test_the_whitening_conv_runs_in_float32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", TINY_CNN).train()
    images = torch.randn(4, 3, 32, 32) * 2
    model.init_whitening(images)
    with torch.no_grad():
        model.whiten.bias.normal_()
    outputs = []
    model.whiten.register_forward_hook(lambda module, args, output: outputs.append(output))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(images)
    whitened = outputs[0]
    assert whitened.dtype == torch.float32
    full_precision = torch.nn.functional.conv2d(images, model.whiten.weight, model.whiten.bias)
    torch.testing.assert_close(whitened, full_precision)  # float32 tolerances: no bf16 rounding
    assert logits.dtype == torch.bfloat16  # the rest of the network still runs in bf16


@pytest.mark.parametrize("image_size", [32, 64, 96, 128])
def test_the_groups_see_the_32_px_grid_at_every_size(image_size: int) -> None:
    """The receptive-field design: a stem max-pool of image_size / 32 keeps the final map 3 x 3."""
    model = FastCNN(CNNConfig(widths=[8, 8, 8], image_size=image_size)).eval()
    assert model.config.stem_pool == image_size // 32
    stem = model.stem_pool(model.act(model.whiten(torch.zeros(1, 3, image_size, image_size))))
    assert stem.shape[-2:] == (31, 31)
    assert model.groups(stem).shape[-2:] == (3, 3)
