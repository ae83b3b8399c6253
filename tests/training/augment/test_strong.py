"""Strong augmentation: TrivialAugment ops keep their invariants, MixUp/CutMix targets match the pixels."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from image_recognition.training.augment import strong
from image_recognition.training.augment.strong import (
    TRIVIAL_AUGMENT_OPS,
    apply_trivial_augment,
    autocontrast,
    brightness,
    contrast,
    draw_epoch_augmentation,
    draw_trivial_augment_policy,
    equalize,
    mix_batch,
    posterize,
    saturation,
    sharpness,
    soft_target_cross_entropy,
    solarize,
    trivial_augment,
)

OP = {name: index for index, name in enumerate(TRIVIAL_AUGMENT_OPS)}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_images(n: int = 16, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Float images on the uint8 grid (0..1 scale), so 8-bit ops can be exact."""
    return torch.randint(0, 256, (n, 3, size, size), generator=seeded(seed)).float() / 255


def one_op(name: str, images: torch.Tensor, magnitude: float) -> torch.Tensor:
    """Apply a single TrivialAugment op to every image at one signed magnitude."""
    n = len(images)
    return apply_trivial_augment(images, torch.full((n,), OP[name]), torch.full((n,), magnitude))


def test_trivial_augment_is_deterministic_per_seed() -> None:
    images = random_images()
    first = trivial_augment(images, seeded(1))
    assert torch.equal(first, trivial_augment(images, seeded(1)))
    assert not torch.equal(first, trivial_augment(images, seeded(2)))


def test_trivial_augment_equals_drawn_policy_and_leaves_identity_images_alone() -> None:
    images = random_images(64)
    ops, magnitudes = draw_trivial_augment_policy(64, seeded(3))
    out = trivial_augment(images, seeded(3))
    assert torch.equal(out, apply_trivial_augment(images, ops, magnitudes))
    identity = ops == OP["identity"]
    assert identity.any() and (~identity).any()
    assert torch.equal(out[identity], images[identity])
    assert not torch.equal(out[~identity], images[~identity])


def test_each_image_gets_exactly_its_own_op_whatever_else_is_in_the_batch() -> None:
    images = random_images(70)
    ops, magnitudes = draw_trivial_augment_policy(70, seeded(4))
    out = apply_trivial_augment(images, ops, magnitudes)
    for index in range(len(TRIVIAL_AUGMENT_OPS)):
        drew = ops == index
        alone = apply_trivial_augment(images[drew], ops[drew], magnitudes[drew])
        assert torch.allclose(out[drew], alone, atol=1e-6), TRIVIAL_AUGMENT_OPS[index]


@pytest.mark.parametrize("mixes", [False, True])
def test_an_epochs_draws_give_the_batches_that_drawing_at_each_step_gives(mixes: bool) -> None:
    """Drawn ahead at the epoch's start and uploaded once, the policies and mixes are those of the same stream."""
    steps, n = 3, 16
    images = [random_images(n, seed=step) for step in range(steps)]
    labels = torch.arange(n) % 10
    mixing = {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "switch_prob": 0.5}
    drawn = draw_epoch_augmentation(steps, n, seeded(7), torch.device("cpu"), trivial_augment=0.5, mixes=mixes)
    assert len(drawn.mix_rngs) == (steps if mixes else 0)
    step_by_step = seeded(7)
    for step in range(steps):
        expected = trivial_augment(images[step], step_by_step, max_magnitude=0.5)
        assert torch.equal(drawn.trivial_augment.apply(step, images[step]), expected)
        if mixes:
            mixed = mix_batch(expected, labels, 10, generator=drawn.mix_rngs[step], **mixing)
            again = mix_batch(expected, labels, 10, generator=step_by_step, **mixing)
            assert all(torch.equal(left, right) for left, right in zip(mixed, again, strict=True))
    off = draw_epoch_augmentation(steps, n, seeded(7), torch.device("cpu"), trivial_augment=0.0, mixes=False)
    assert off.trivial_augment is None and off.mix_rngs == []


def test_sharpness_smooths_the_whole_batch_so_its_convolution_keeps_one_shape(monkeypatch) -> None:
    """cudnn.benchmark autotunes every new input shape: a slice that changes size each step would retune each step."""
    shapes = []
    conv2d = F.conv2d

    def recording_conv2d(images, *args, **kwargs):
        shapes.append(tuple(images.shape))
        return conv2d(images, *args, **kwargs)

    images, magnitudes = random_images(40), torch.linspace(-1, 1, 40)
    for sharpened in (1, 5, 40):
        ops = torch.full((40,), OP["identity"])
        ops[:sharpened] = OP["sharpness"]
        alone = sharpness(images[:sharpened], 1.0 + magnitudes[:sharpened] * 0.99)
        with monkeypatch.context() as patch:
            patch.setattr(strong.F, "conv2d", recording_conv2d)
            out = apply_trivial_augment(images, ops, magnitudes)
        assert torch.allclose(out[:sharpened], alone, atol=1e-6)
    assert shapes == [(40, 3, 32, 32)] * 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 33])
def test_trivial_augment_keeps_shape_dtype_range_and_returns_contiguous_nchw(n: int, dtype: torch.dtype) -> None:
    images = random_images(n).to(dtype).contiguous(memory_format=torch.channels_last)
    out = trivial_augment(images, seeded(0))
    assert out.shape == images.shape and out.dtype == dtype
    assert out.is_contiguous()
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(images, random_images(n).to(dtype)), "the input must not be modified"


def test_ops_and_magnitudes_are_drawn_uniformly() -> None:
    count, bins = 28_000, 31
    ops, magnitudes = draw_trivial_augment_policy(count, seeded(0), magnitude_bins=bins, max_magnitude=0.5)
    expected = count / len(TRIVIAL_AUGMENT_OPS)
    frequencies = torch.bincount(ops, minlength=len(TRIVIAL_AUGMENT_OPS)).float()
    assert len(frequencies) == len(TRIVIAL_AUGMENT_OPS)
    assert ((frequencies - expected).abs() < 0.1 * expected).all(), frequencies  # ~6 standard deviations
    levels = (magnitudes.abs() / 0.5 * (bins - 1)).round().long()
    assert torch.allclose(levels.float() * 0.5 / (bins - 1), magnitudes.abs())
    assert levels.min() == 0 and levels.max() == bins - 1
    bin_frequencies = torch.bincount(levels, minlength=bins).float()
    assert ((bin_frequencies - count / bins).abs() < 0.2 * count / bins).all()
    assert abs((magnitudes > 0).float().mean() - 0.5) < 0.03


def test_unit_factor_colour_ops_are_identity() -> None:
    images = random_images()
    ones = torch.ones(len(images))
    for op in (brightness, contrast, saturation, sharpness):
        assert torch.allclose(op(images, ones), images, atol=1e-6), op.__name__
    for name in ("brightness", "saturation", "contrast", "sharpness"):
        assert torch.allclose(one_op(name, images, 0.0), images, atol=1e-6), name


def test_colour_ops_move_towards_their_degenerate_image() -> None:
    images = random_images()
    zeros = torch.zeros(len(images))
    assert torch.equal(brightness(images, zeros), torch.zeros_like(images))
    flat = contrast(images, zeros)
    assert torch.allclose(flat, flat[:, :1, :1, :1].expand_as(flat), atol=1e-6), "one grey level per image"
    grey = saturation(images, zeros)
    assert torch.allclose(grey, grey[:, :1].expand_as(grey), atol=1e-6)


def test_saturation_keeps_grayscale_images_grayscale() -> None:
    grey = random_images()[:, :1].expand(-1, 3, -1, -1)
    factors = torch.linspace(0.01, 1.99, len(grey))
    out = saturation(grey, factors)
    assert torch.allclose(out, grey, atol=1e-6)


def test_colour_ops_match_torchvision() -> None:
    image = random_images(1)
    for ours, theirs in ((contrast, TF.adjust_contrast), (saturation, TF.adjust_saturation)):
        for factor in (0.3, 1.7):
            reference = theirs(image, factor)
            # torchvision's luma weights differ in the fourth digit (0.2989 against PIL's 0.299).
            assert torch.allclose(ours(image, torch.tensor([factor])), reference, atol=1e-3), ours.__name__
    for factor in (0.3, 1.7):
        reference = TF.adjust_sharpness(image, factor)
        assert torch.allclose(sharpness(image, torch.tensor([factor])), reference, atol=1e-5)


def test_posterize_8_bits_and_solarize_threshold_1_are_identity() -> None:
    images = random_images()
    n = len(images)
    assert torch.allclose(posterize(images, torch.full((n,), 8)), images, atol=1e-6)
    assert torch.equal(solarize(images, torch.ones(n)), images)
    assert torch.allclose(one_op("posterize", images, 0.0), images, atol=1e-6)
    assert torch.equal(one_op("solarize", images, 0.0), images)


def test_posterize_and_solarize_match_torchvision_on_uint8() -> None:
    images = random_images(4)
    as_uint8 = (images * 255).round().to(torch.uint8)
    for bits in (2, 5):
        reference = TF.posterize(as_uint8, bits).float() / 255
        assert torch.allclose(posterize(images, torch.full((4,), bits)), reference, atol=1e-6)
    assert len(posterize(images, torch.full((4,), 2)).unique()) <= 4
    assert torch.allclose(solarize(images, torch.full((4,), 0.5)), torch.where(images > 0.5, 1 - images, images))


def test_autocontrast_maps_each_channel_to_the_full_range() -> None:
    images = 0.2 + 0.5 * random_images()  # every channel spans 0.2..0.7
    images[0, 1] = 0.4  # a constant channel stays as it is
    out = autocontrast(images)
    low, high = out.amin(dim=(2, 3)), out.amax(dim=(2, 3))
    stretched = torch.ones_like(low, dtype=torch.bool)
    stretched[0, 1] = False
    assert torch.allclose(low[stretched], torch.zeros(()), atol=1e-6)
    assert torch.allclose(high[stretched], torch.ones(()), atol=1e-6)
    assert torch.equal(out[0, 1], images[0, 1])
    assert torch.allclose(out, TF.autocontrast(images), atol=1e-6)


def test_equalize_flattens_the_histogram() -> None:
    # Low-contrast, skewed images: values squeezed into 0.1..0.45, mostly dark.
    images = ((0.1 + 0.35 * torch.rand((8, 3, 32, 32), generator=seeded(0)) ** 2) * 255).round() / 255
    out = equalize(images)
    fraction = torch.stack([torch.histc(channel, bins=8, min=0, max=1) for channel in out.flatten(0, 1)]) / (32 * 32)
    assert (fraction - 1 / 8).abs().max() < 0.04, fraction
    assert (images.flatten(0, 1).amax(dim=(1, 2)) < 0.5).all() and (out.flatten(0, 1).amax(dim=(1, 2)) == 1).all()
    assert (out.flatten(0, 1).amin(dim=(1, 2)) == 0).all()


def test_equalize_agrees_with_torchvision_within_one_level_on_large_images() -> None:
    images = ((0.1 + 0.35 * torch.rand((2, 3, 128, 128), generator=seeded(1)) ** 2) * 255).round() / 255
    reference = TF.equalize((images * 255).round().to(torch.uint8)).float() / 255
    assert (equalize(images) - reference).abs().max() <= 1 / 255 + 1e-6


def test_equalize_leaves_constant_channels_alone_and_spreads_two_levels_to_black_and_white() -> None:
    images = torch.full((2, 3, 8, 8), 0.3)
    images[0, 0, 0, 0] = 0.9
    out = equalize(images)
    assert torch.equal(out[1], images[1]) and torch.equal(out[0, 1:], images[0, 1:])
    assert set(out[0, 0].unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize(("name", "dim"), [("translate_x", 3), ("translate_y", 2)])
def test_translate_moves_content_by_whole_pixels(name: str, dim: int) -> None:
    images = random_images(4)
    shift = round(0.5 * 0.32 * 32)  # magnitude 0.5 on a 32-pixel side: 5 pixels
    forward, backward = one_op(name, images, 0.5), one_op(name, images, -0.5)
    kept = images.narrow(dim, 0, 32 - shift)
    assert torch.allclose(forward.narrow(dim, shift, 32 - shift), kept, atol=1e-6)
    assert torch.allclose(forward.narrow(dim, 0, shift), torch.full((), 0.5), atol=1e-6)
    assert torch.allclose(backward.narrow(dim, 0, 32 - shift), images.narrow(dim, shift, 32 - shift), atol=1e-6)


@pytest.mark.parametrize("name", ["rotate", "shear_x", "shear_y", "translate_x", "translate_y"])
def test_geometric_ops_at_magnitude_zero_are_identity(name: str) -> None:
    images = random_images(4)
    assert torch.allclose(one_op(name, images, 0.0), images, atol=1e-5)


def test_rotate_turns_about_the_centre_by_up_to_30_degrees() -> None:
    # A horizontal bar through the centre of a 33x33 image, rotated 30 degrees counter-clockwise.
    images = torch.zeros((1, 1, 33, 33))
    images[..., 16, :] = 1.0
    out = one_op("rotate", images, 1.0)
    assert out[0, 0, 16, 16] == pytest.approx(1.0, abs=1e-5)
    # The rotated bar passes ten pixels right of centre at 10 * tan(30 deg) = 5.8 pixels up (y down).
    column = out[0, 0, :, 26]
    assert int(column.argmax()) == 16 - round(10 * math.tan(math.radians(30)))
    assert torch.allclose(one_op("rotate", images, -1.0).flip(2), out, atol=1e-5)


def test_shear_x_shifts_rows_in_proportion_to_their_distance_from_the_centre() -> None:
    images = torch.zeros((1, 1, 32, 32))
    images[..., :, 15] = 1.0  # a vertical line just left of centre
    out = one_op("shear_x", images, 1.0)
    # Row 15.5 +- d moves by 0.99 * d pixels; ten rows below the centre the line sits about ten columns right.
    assert int(out[0, 0, 25].argmax()) in (24, 25)
    assert int(out[0, 0, 5].argmax()) in (5, 6)


def draw_mix(seed: int, n: int = 8, **kwargs: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of distinct labels mixed with ``kwargs``; returns images, labels, mixed images, targets."""
    images = torch.randn((n, 3, 16, 16), generator=seeded(100 + seed))
    labels = torch.arange(n)
    settings = {"mixup_alpha": 1.0, "cutmix_alpha": 1.0, "switch_prob": 0.5} | kwargs
    mixed, targets = mix_batch(images, labels, n, generator=seeded(seed), **settings)
    return images, labels, mixed, targets


def test_mix_batch_is_deterministic_per_seed() -> None:
    _, _, first, first_targets = draw_mix(0)
    images, labels, again, again_targets = draw_mix(0)
    assert torch.equal(first, again) and torch.equal(first_targets, again_targets)
    other, _ = mix_batch(images, labels, 8, mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5, generator=seeded(1))
    assert not torch.equal(first, other)


def test_mixup_images_are_the_blend_the_targets_describe() -> None:
    for seed in range(5):
        images, labels, mixed, targets = draw_mix(seed, cutmix_alpha=0.0)
        assert targets.dtype == torch.float32 and targets.shape == (8, 8)
        assert torch.allclose(targets.sum(dim=1), torch.ones(8))
        lam = targets[0, labels[0]]
        assert torch.allclose(targets[torch.arange(8), labels], lam.expand(8))
        assert torch.allclose(mixed, lam * images + (1 - lam) * images.flip(0), atol=1e-6)


def test_cutmix_pastes_the_flipped_batch_over_the_area_the_targets_describe() -> None:
    saw_partial_box = False
    for seed in range(10):
        images, labels, mixed, targets = draw_mix(seed, mixup_alpha=0.0)
        assert torch.allclose(targets.sum(dim=1), torch.ones(8))
        pasted = (mixed != images).any(dim=1)  # (N, H, W); random images differ everywhere
        assert torch.equal(pasted, pasted[:1].expand_as(pasted)), "one box for the whole batch"
        assert torch.equal(mixed.masked_select(pasted.unsqueeze(1)), images.flip(0).masked_select(pasted.unsqueeze(1)))
        area = pasted[0].float().mean()
        assert torch.allclose(targets[torch.arange(8), labels], (1 - area).expand(8))
        rows, cols = pasted[0].any(dim=1), pasted[0].any(dim=0)
        assert pasted[0].sum() == rows.sum() * cols.sum(), "the pasted region is a rectangle"
        saw_partial_box |= 0 < area < 1
    assert saw_partial_box


def test_mix_batch_lambda_averages_one_half_and_switch_prob_picks_cutmix() -> None:
    lambdas, cutmix = [], []
    images = torch.randn((4, 3, 8, 8), generator=seeded(0))
    labels = torch.arange(4)
    generator = seeded(0)
    for _ in range(400):
        mixed, targets = mix_batch(
            images, labels, 4, mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.25, generator=generator
        )
        lambdas.append(float(targets[0, 0]))
        cutmix.append(bool(((mixed == images) | (mixed == images.flip(0))).all()))
    mixup_lambdas = torch.tensor([lam for lam, is_cutmix in zip(lambdas, cutmix, strict=True) if not is_cutmix])
    assert abs(mixup_lambdas.mean() - 0.5) < 0.05  # Beta(1, 1) is uniform: standard error ~0.017
    assert abs(sum(cutmix) / len(cutmix) - 0.25) < 0.07  # standard error ~0.022


def test_mix_batch_with_both_alphas_zero_returns_images_and_one_hot_targets() -> None:
    images, labels, mixed, targets = draw_mix(0, mixup_alpha=0.0, cutmix_alpha=0.0)
    assert torch.equal(mixed, images)
    assert torch.equal(targets, F.one_hot(labels, 8).float())


def test_mix_batch_handles_a_batch_of_one() -> None:
    images, labels, mixed, targets = draw_mix(0, n=1)
    assert torch.allclose(mixed, images) and torch.equal(targets, torch.ones((1, 1)))


def test_mix_batch_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="switch_prob"):
        draw_mix(0, switch_prob=1.5)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_soft_target_cross_entropy_equals_cross_entropy_on_one_hot_targets(label_smoothing: float) -> None:
    logits = torch.randn((16, 10), generator=seeded(0)) * 3
    labels = torch.randint(0, 10, (16,), generator=seeded(1))
    ours = soft_target_cross_entropy(logits, F.one_hot(labels, 10).float(), label_smoothing)
    expected = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    assert torch.allclose(ours, expected, atol=1e-6)
    assert torch.allclose(
        soft_target_cross_entropy(logits.bfloat16(), F.one_hot(labels, 10).float()).float(),
        F.cross_entropy(logits.bfloat16().float(), labels),
        atol=1e-5,
    )


def test_soft_target_cross_entropy_weights_each_class_by_its_target() -> None:
    logits = torch.randn((4, 5), generator=seeded(0))
    a, b = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 3, 2, 1])
    targets = 0.3 * F.one_hot(a, 5).float() + 0.7 * F.one_hot(b, 5).float()
    expected = 0.3 * F.cross_entropy(logits, a) + 0.7 * F.cross_entropy(logits, b)
    assert torch.allclose(soft_target_cross_entropy(logits, targets), expected, atol=1e-6)
