"""Batched augmentation on the device: flips and translation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from image_recognition.training.augment.basic import alternating_flips, augment, random_flips, random_translate


def test_alternating_flip_mirrors_each_image_in_exactly_one_of_two_consecutive_epochs() -> None:
    base = random_flips(1000, torch.Generator().manual_seed(0))
    assert 400 < int(base.sum()) < 600  # one fair coin per image
    for epoch in range(5):
        this, following = alternating_flips(base, epoch), alternating_flips(base, epoch + 1)
        assert torch.equal(this ^ following, torch.ones_like(base))
    assert torch.equal(alternating_flips(base, 0), base)
    assert torch.equal(alternating_flips(base, 2), base)


def test_augment_mirrors_exactly_the_images_it_is_told_to() -> None:
    images = torch.randn(4, 3, 8, 8)
    flips = torch.tensor([True, False, True, False])
    out = augment(images, flips=flips, translate=0, cutout=0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[flips], images[flips].flip(3))
    torch.testing.assert_close(out[~flips], images[~flips])
    assert torch.equal(augment(images, flips=None, translate=0, cutout=0, generator=torch.Generator()), images)


def test_translate_is_a_reflect_padded_crop_within_the_range() -> None:
    shift = 2
    images = torch.randn(400, 1, 6, 6)
    padded = F.pad(images, (shift,) * 4, mode="reflect")
    out = random_translate(images, shift, torch.Generator().manual_seed(0))
    seen = set()
    for i in range(len(images)):
        matches = [
            (dy, dx)
            for dy in range(2 * shift + 1)
            for dx in range(2 * shift + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + 6, dx : dx + 6])
        ]
        assert matches, f"image {i} is no crop of its reflect-padded self"
        seen.update(matches)
    assert seen == {(dy, dx) for dy in range(5) for dx in range(5)}  # every offset in [-2, 2]^2 occurs


def test_translate_zero_is_identity() -> None:
    images = torch.randn(3, 3, 8, 8)
    assert random_translate(images, 0, torch.Generator()) is images
