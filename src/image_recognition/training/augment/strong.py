"""Stronger, data-efficient-ViT-style augmentation: TrivialAugment, MixUp/CutMix, soft-target loss.

Vision transformers lack the convolution's built-in locality and translation
priors, so on a data set as small as CIFAR-10 they need much heavier
augmentation than a CNN to avoid overfitting (Touvron et al. 2021, DeiT).
Everything here works the way :mod:`.basic` does: a small, fixed number of
tensor ops over the whole batch (a loop over the 14 op *types* at most, never
over images), random numbers only from an explicit ``torch.Generator``, so the
same seed gives the same batches on CPU and CUDA alike.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from image_recognition.training.augment.basic import Rows

# TrivialAugment-wide (Müller & Hutter 2021): each image gets one op from this
# list, chosen uniformly, and one magnitude, chosen uniformly from the bins.
TRIVIAL_AUGMENT_OPS = (
    "identity",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "rotate",
    "brightness",
    "saturation",
    "contrast",
    "sharpness",
    "posterize",
    "solarize",
    "autocontrast",
    "equalize",
)
_OP_INDEX = {name: index for index, name in enumerate(TRIVIAL_AUGMENT_OPS)}
# The geometric ops sit next to each other in the list, so after sorting the batch by op
# their images form one slice, warped with a single grid_sample.
_GEOMETRIC_OPS = TRIVIAL_AUGMENT_OPS[1:6]

# Magnitude ranges at full strength (magnitude 1); a magnitude m in [0, 1] scales them.
# The wide variant's factor range: 1 ± 0.99 m for the colour ops, shear 0.99 m.
_MAX_COLOUR_DELTA = 0.99
_MAX_SHEAR = 0.99
# The wide variant shifts by up to 32 pixels on 224-pixel images; on CIFAR's 32x32 that
# would move the whole object out, so shift by up to 32% of the side instead (10 px).
_MAX_TRANSLATE_FRACTION = 0.32
# The wide variant rotates by up to 135 degrees; on 32x32 images with the corners filled
# grey that leaves little of the object, so rotate by up to 30 degrees (as in RandAugment).
_MAX_ROTATE_DEGREES = 30.0
# Posterize keeps 8 bits at magnitude 0 down to 2 bits at magnitude 1.
_POSTERIZE_MAX_BITS = 8
_POSTERIZE_MIN_BITS = 2
# What geometric ops reveal outside the image: mid grey, the least informative colour.
_FILL_VALUE = 0.5
_LEVELS = 256  # pixel values live on the uint8 grid for posterize and equalize
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's "L" conversion
# PIL's smoothing kernel for sharpness: ones around a five, normalised.
_SMOOTH_KERNEL = ((1.0, 1.0, 1.0), (1.0, 5.0, 1.0), (1.0, 1.0, 1.0))


def _per_image(values: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Per-image values (N,) shaped (N, 1, 1, 1) to broadcast over an image batch."""
    return values.to(device=images.device, dtype=images.dtype).view(-1, 1, 1, 1)


def _blend(degenerate: torch.Tensor, images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """``degenerate + factor * (images - degenerate)`` per image, clamped to [0, 1] (PIL's ImageEnhance)."""
    return torch.lerp(degenerate, images, _per_image(factors, images)).clamp_(0.0, 1.0)


@functools.lru_cache(maxsize=16)
def _constants(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(luma weights (1, 3, 1, 1), normalised smoothing kernel (3, 3)) on ``device``, built once per device and dtype.

    Building them from Python values is a host-to-device copy that waits for
    the device, so it must not happen at every step: the epoch's
    :class:`TrivialAugmentPlan` builds them before the first step.
    """
    luma = torch.tensor(_LUMA_WEIGHTS, device=device, dtype=dtype).view(1, -1, 1, 1)
    kernel = torch.tensor(_SMOOTH_KERNEL, device=device, dtype=dtype)
    return luma, kernel / kernel.sum()


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma (N, 1, H, W) of RGB images; other channel counts use the channel mean."""
    if images.shape[1] == len(_LUMA_WEIGHTS):
        weights, _ = _constants(images.device, images.dtype)
        return (images * weights).sum(dim=1, keepdim=True)
    return images.mean(dim=1, keepdim=True)


def brightness(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Blend each image with black: factor 0 is black, 1 unchanged, 2 twice as bright."""
    return (images * _per_image(factors, images)).clamp_(0.0, 1.0)


def contrast(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Blend each image with its mean grey level: factor 0 is flat grey, 1 unchanged."""
    mean_grey = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(mean_grey.expand_as(images), images, factors)


def saturation(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Blend each image with its grayscale version: factor 0 is grey, 1 unchanged."""
    return _blend(grayscale(images).expand_as(images), images, factors)


def sharpness(images: torch.Tensor, factors: torch.Tensor, smoothed: torch.Tensor | None = None) -> torch.Tensor:
    """Blend each image with a 3x3-smoothed copy: factor 0 is smoothed, 1 unchanged, 2 sharpened.

    The one-pixel border keeps its values, as in PIL, because the smoothing
    kernel does not fit there. ``smoothed``: the images' smoothed interiors
    (:func:`_smoothed_interior`), where the caller has them already.
    """
    interior = _smoothed_interior(images) if smoothed is None else smoothed
    return _blend(_with_interior(images, interior), images, factors)


def _smoothed_interior(images: torch.Tensor) -> torch.Tensor:
    """Each image 3x3-smoothed where the kernel fits: (N, C, H - 2, W - 2)."""
    channels = images.shape[1]
    _, kernel = _constants(images.device, images.dtype)
    return F.conv2d(images, kernel.expand(channels, 1, 3, 3), groups=channels)


def _with_interior(images: torch.Tensor, interior: torch.Tensor) -> torch.Tensor:
    """A copy of ``images`` whose pixels inside the one-pixel border are ``interior``'s."""
    degenerate = images.clone()
    degenerate[:, :, 1:-1, 1:-1] = interior
    return degenerate


def _to_levels(images: torch.Tensor) -> torch.Tensor:
    """0..1 floats -> int64 pixel values 0..255, the grid PIL's ops work on."""
    return (images * (_LEVELS - 1)).round_().clamp_(0, _LEVELS - 1).long()


def posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep only the top ``bits`` bits (1..8) of each 8-bit pixel value, per image."""
    step = torch.pow(2.0, _POSTERIZE_MAX_BITS - _per_image(bits, images))  # 1 for 8 bits, 64 for 2 bits
    levels = _to_levels(images).to(images.dtype)
    return torch.floor(levels / step) * step / (_LEVELS - 1)


def solarize(images: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Invert pixels above each image's threshold: threshold 1 leaves the image alone, 0 inverts it."""
    return torch.where(images > _per_image(thresholds, images), 1.0 - images, images)


def autocontrast(images: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each image to span 0..1; constant channels stay as they are."""
    low = images.amin(dim=(2, 3), keepdim=True)
    high = images.amax(dim=(2, 3), keepdim=True)
    flat = high <= low
    scale = torch.where(flat, torch.ones_like(high), high - low)
    low = torch.where(flat, torch.zeros_like(low), low)
    return ((images - low) / scale).clamp_(0.0, 1.0)


def equalize(images: torch.Tensor) -> torch.Tensor:
    """Histogram-equalise each channel of each image on 256 levels, with PIL's lookup table in floats.

    All N*C histograms are built at once with ``scatter_add_`` and turned into
    lookup tables with ``cumsum``. PIL's table divides by an integer ``step``
    (pixels below the top level // 255); on a 32x32 image that is 3 or 4 and
    the floor can saturate a quarter of the pixels to white, so the step here
    is exact, which agrees with PIL to within one level on large images. A
    constant channel is left unchanged.
    """
    n, c, h, w = images.shape
    levels = _to_levels(images).view(n * c, h * w)
    hist = torch.zeros((n * c, _LEVELS), dtype=torch.int64, device=images.device)
    hist.scatter_add_(1, levels, torch.ones_like(levels))
    cumulative = hist.cumsum(dim=1)
    # The pixels not in the highest occupied level, spread over 255 steps.
    highest_level = cumulative.argmax(dim=1, keepdim=True)  # first index of the maximum = last non-empty bin
    step = (h * w - hist.gather(1, highest_level)).to(images.dtype) / (_LEVELS - 1)  # (N*C, 1)
    lut = torch.floor((cumulative[:, :-1] + step / 2) / step.clamp(min=1e-6)).clamp_(0, _LEVELS - 1)
    lut = F.pad(lut, (1, 0))  # level k maps through the count below k, so the lowest level -> 0
    equalized = lut.gather(1, levels) / (_LEVELS - 1)
    return torch.where(step > 0, equalized, images.reshape(n * c, h * w)).view(n, c, h, w)


def affine_warp(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Warp each image by its own 2x3 matrix (output -> input, in pixels about the centre).

    One ``affine_grid`` + ``grid_sample`` for the whole batch. Bilinear
    sampling keeps sub-pixel rotations smooth and is exact for whole-pixel
    shifts (samples land on pixel centres); what comes in from outside the
    image is filled with mid grey (sampling ``images - 0.5`` with zero padding).
    """
    _, _, h, w = images.shape
    # Pixel offsets from the centre -> affine_grid's [-1, 1] coordinates: divide by half the
    # side. Python scalars, not a tensor of the halves: that would be a host-to-device copy.
    theta = matrices.clone()  # (N, 2, 3)
    theta[:, :, 0] *= w / 2.0  # the input's x and y columns, in half sides
    theta[:, :, 1] *= h / 2.0
    theta[:, 0] /= w / 2.0  # the output's x and y rows
    theta[:, 1] /= h / 2.0
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    warped = F.grid_sample(images - _FILL_VALUE, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (warped + _FILL_VALUE).clamp_(0.0, 1.0)


def geometric_matrices(
    op_indices: torch.Tensor, signed_magnitudes: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Per-image 2x3 output -> input matrices (pixels about the centre); identity for non-geometric ops.

    Positive magnitudes shift content right / down, rotate it counter-clockwise
    and shear it towards +x / +y; translations are rounded to whole pixels so
    they stay crisp.
    """
    n = len(op_indices)
    m = signed_magnitudes.float()
    is_op = {name: (op_indices == _OP_INDEX[name]) for name in _GEOMETRIC_OPS}
    zeros = torch.zeros_like(m)
    shear_x = torch.where(is_op["shear_x"], m * _MAX_SHEAR, zeros)
    shear_y = torch.where(is_op["shear_y"], m * _MAX_SHEAR, zeros)
    shift_x = torch.where(is_op["translate_x"], (m * _MAX_TRANSLATE_FRACTION * width).round(), zeros)
    shift_y = torch.where(is_op["translate_y"], (m * _MAX_TRANSLATE_FRACTION * height).round(), zeros)
    angle = torch.where(is_op["rotate"], m * math.radians(_MAX_ROTATE_DEGREES), zeros)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Inverse maps (output pixel -> where to sample it): rotation by -angle in image
    # coordinates (y down), shear by -s, shift by -t. Only one of them is non-trivial per image.
    matrices = torch.empty((n, 2, 3), device=op_indices.device)
    matrices[:, 0, 0] = cos
    matrices[:, 0, 1] = -sin - shear_x
    matrices[:, 0, 2] = -shift_x
    matrices[:, 1, 0] = sin - shear_y
    matrices[:, 1, 1] = cos
    matrices[:, 1, 2] = -shift_y
    return matrices


def draw_trivial_augment_policy(
    count: int, generator: torch.Generator, magnitude_bins: int = 31, max_magnitude: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """One op index (into ``TRIVIAL_AUGMENT_OPS``) and one signed magnitude per image, on the generator's device.

    The magnitude is a uniformly drawn bin of ``magnitude_bins`` evenly spaced
    values from 0 to ``max_magnitude``, with a random sign; unsigned ops use
    its absolute value.
    """
    if magnitude_bins < 1 or not 0.0 <= max_magnitude <= 1.0:
        raise ValueError(
            f"trivial_augment needs magnitude_bins >= 1 and 0 <= max_magnitude <= 1, got "
            f"{magnitude_bins} and {max_magnitude}; 31 and 1.0 are the paper's settings"
        )
    device = generator.device
    op_indices = torch.randint(0, len(TRIVIAL_AUGMENT_OPS), (count,), generator=generator, device=device)
    bins = torch.randint(0, magnitude_bins, (count,), generator=generator, device=device)
    signs = torch.where(torch.rand(count, generator=generator, device=device) < 0.5, -1.0, 1.0)  # noqa: PLR2004
    magnitudes = bins.float() * (max_magnitude / max(magnitude_bins - 1, 1))
    return op_indices, signs * magnitudes


# The non-geometric ops at per-image signed magnitudes in [-1, 1]; unsigned ops use |m|.
_PIXEL_OPS: dict[str, Callable[..., torch.Tensor]] = {
    "identity": lambda images, m: images,
    "brightness": lambda images, m: brightness(images, 1.0 + m * _MAX_COLOUR_DELTA),
    "saturation": lambda images, m: saturation(images, 1.0 + m * _MAX_COLOUR_DELTA),
    "contrast": lambda images, m: contrast(images, 1.0 + m * _MAX_COLOUR_DELTA),
    "sharpness": lambda images, m, smoothed=None: sharpness(images, 1.0 + m * _MAX_COLOUR_DELTA, smoothed),
    "posterize": lambda images, m: posterize(
        images, _POSTERIZE_MAX_BITS - (m.abs() * (_POSTERIZE_MAX_BITS - _POSTERIZE_MIN_BITS)).round()
    ),
    "solarize": lambda images, m: solarize(images, 1.0 - m.abs()),
    "autocontrast": lambda images, m: autocontrast(images),
    "equalize": lambda images, m: equalize(images),
}


class SortedPolicy(NamedTuple):
    """A policy with its batch sorted by op: op k's images are ``order[starts[k]:starts[k + 1]]``.

    With a leading steps dimension (``TrivialAugmentPlan``), each field holds
    one row, and ``starts`` one list, per step.
    """

    order: torch.Tensor  # (N,) batch position of each sorted image
    ops: torch.Tensor  # (N,) op indices, sorted
    magnitudes: torch.Tensor  # (N,) float32 signed magnitudes, in the sorted order
    starts: list[int]  # host ints: len(TRIVIAL_AUGMENT_OPS) + 1 slice bounds

    def to(self, device: torch.device, non_blocking: bool = False) -> SortedPolicy:
        """The tensors on ``device``; ``starts`` stays on the host."""
        moved = (tensor.to(device, non_blocking=non_blocking) for tensor in (self.order, self.ops, self.magnitudes))
        return SortedPolicy(*moved, self.starts)


def sort_policy(op_indices: torch.Tensor, signed_magnitudes: torch.Tensor) -> SortedPolicy:
    """Sort (..., N) policies by op along the last dimension, on the policy's device.

    The slice bounds are counted there too: a policy drawn on the host is
    sorted and counted without touching the device.
    """
    order = torch.argsort(op_indices, dim=-1, stable=True)
    ops = op_indices.gather(-1, order)
    magnitudes = signed_magnitudes.float().gather(-1, order)
    counts = torch.zeros((*ops.shape[:-1], len(TRIVIAL_AUGMENT_OPS)), dtype=torch.int64, device=ops.device)
    counts.scatter_add_(-1, ops, torch.ones_like(ops))
    starts = F.pad(counts.cumsum(-1), (1, 0)).tolist()
    return SortedPolicy(order, ops, magnitudes, starts)


def apply_trivial_augment(
    images: torch.Tensor, op_indices: torch.Tensor, signed_magnitudes: torch.Tensor
) -> torch.Tensor:
    """Apply each image's op at its magnitude (see ``draw_trivial_augment_policy``).

    The policy is sorted where it was drawn and then moved to the images'
    device: a policy drawn on the CPU costs no device sync, but one
    host-to-device copy (a training step uses :class:`TrivialAugmentPlan`).
    """
    return _apply_sorted(images, sort_policy(op_indices, signed_magnitudes).to(images.device))


def _apply_sorted(images: torch.Tensor, policy: SortedPolicy) -> torch.Tensor:
    """Apply a sorted policy: each op type runs once, on the slice of images that drew it.

    All geometric ops share one warp, and the results are put back in place
    with one ``index_copy_``: ~14x less arithmetic than running every op on
    the whole batch. Sharpness alone smooths the whole batch, so that its
    convolution has the same shape at every step (cudnn.benchmark autotunes
    each new shape); its slice is taken afterwards.
    """
    order, sorted_ops, sorted_magnitudes, starts = policy
    sorted_images = images[order]
    _, _, h, w = images.shape
    pieces = []
    for index, name in enumerate(TRIVIAL_AUGMENT_OPS):
        if name in _GEOMETRIC_OPS[1:]:
            continue  # warped together with the first geometric op
        stop = starts[index + len(_GEOMETRIC_OPS)] if name == _GEOMETRIC_OPS[0] else starts[index + 1]
        chunk = slice(starts[index], stop)
        if chunk.stop == chunk.start:
            continue
        if name == _GEOMETRIC_OPS[0]:
            matrices = geometric_matrices(sorted_ops[chunk], sorted_magnitudes[chunk], h, w)
            pieces.append(affine_warp(sorted_images[chunk], matrices))
        elif name == "sharpness":  # smoothed over the whole batch: one convolution shape at every step
            smoothed = _smoothed_interior(sorted_images)[chunk]
            pieces.append(_PIXEL_OPS[name](sorted_images[chunk], sorted_magnitudes[chunk], smoothed))
        else:
            pieces.append(_PIXEL_OPS[name](sorted_images[chunk], sorted_magnitudes[chunk]))
    if not pieces:  # an empty batch
        return images.clone()
    return torch.empty_like(images).index_copy_(0, order, torch.cat(pieces))


def _check_unit_images(images: torch.Tensor) -> None:
    if not images.is_floating_point() or images.ndim != 4:  # noqa: PLR2004 (N, C, H, W)
        raise ValueError(
            f"trivial_augment expects float images (N, C, H, W) on the 0..1 scale, got {images.dtype} "
            f"{tuple(images.shape)}; convert uint8 images with images.float() / 255 before normalising"
        )


def _augment_in_float32(images: torch.Tensor, policy: SortedPolicy) -> torch.Tensor:
    work = images.to(torch.float32, memory_format=torch.contiguous_format)
    out = _apply_sorted(work, policy)
    return out.clamp_(0.0, 1.0).to(images.dtype).contiguous()


def trivial_augment(
    images: torch.Tensor, generator: torch.Generator, magnitude_bins: int = 31, max_magnitude: float = 1.0
) -> torch.Tensor:
    """TrivialAugment-wide on float images on the 0..1 scale (not yet normalised).

    Each image gets one op drawn uniformly from ``TRIVIAL_AUGMENT_OPS`` at one
    magnitude drawn uniformly from ``magnitude_bins`` bins up to
    ``max_magnitude`` (0.5 is a half-strength policy). Returns a contiguous
    NCHW batch of the input's shape and dtype, clamped to [0, 1]; arithmetic
    runs in float32 whatever the input precision.
    """
    _check_unit_images(images)
    op_indices, signed_magnitudes = draw_trivial_augment_policy(len(images), generator, magnitude_bins, max_magnitude)
    return _augment_in_float32(images, sort_policy(op_indices, signed_magnitudes).to(images.device))


@dataclass(frozen=True)
class TrivialAugmentPlan:
    """An epoch's TrivialAugment policies, drawn on the host and uploaded to the device once.

    Applying step ``s``'s policy (:meth:`apply`) reads nothing from the host
    and copies nothing to the device: the sorted policies of all steps sit on
    the device as (steps, N) tensors, their slice bounds on the host.
    """

    sorted: SortedPolicy  # (steps, N) tensors; starts: one list per step

    @classmethod
    def upload(cls, policies: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> TrivialAugmentPlan:
        """Sort host-drawn (op indices, signed magnitudes) pairs, one per step, and copy them to ``device``.

        Pinned and non-blocking on CUDA: one asynchronous copy per tensor. The
        per-device constants the ops need are built here too, not in a step.
        """
        ops = torch.stack([op_indices for op_indices, _ in policies])
        magnitudes = torch.stack([signed for _, signed in policies])
        host = sort_policy(ops, magnitudes)
        if device.type == "cuda":
            host = SortedPolicy(*(tensor.pin_memory() for tensor in host[:3]), host.starts)
        plan = cls(host.to(device, non_blocking=True))
        _constants(plan.sorted.magnitudes.device, torch.float32)
        return plan

    def apply(self, step: int, images: torch.Tensor) -> torch.Tensor:
        """TrivialAugment of step ``step``'s batch: as :func:`trivial_augment` with that step's policy."""
        _check_unit_images(images)
        order, ops, magnitudes, starts = self.sorted
        return _augment_in_float32(images, SortedPolicy(order[step], ops[step], magnitudes[step], starts[step]))


@dataclass(frozen=True)
class EpochAugmentation:
    """What one epoch's strong augmentation draws on the host, drawn before its first step."""

    trivial_augment: TrivialAugmentPlan | None  # None: TrivialAugment off
    mix_rngs: list[np.random.Generator]  # one per step for mix_batch; empty when not mixing


def draw_epoch_augmentation(
    steps: int,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    *,
    trivial_augment: float,
    mixes: bool,
    rows: Rows | None = None,
) -> EpochAugmentation:
    """Draw every step's TrivialAugment policy (at magnitude ``trivial_augment``; 0 is off) and MixUp/CutMix choices.

    ``generator`` is a CPU generator. The numbers are drawn step by step in the
    order in which a step would draw them itself (the policy, then the mix),
    so a seed gives the same batches as :func:`trivial_augment` and
    :func:`mix_batch` called at each step with it. The policies reach the
    device in one upload. With ``rows`` (a data-parallel process's rows of
    each batch), each policy is drawn for the whole batch and kept for them.
    """
    policies, mix_rngs = [], []
    for _ in range(steps):
        if trivial_augment > 0:
            policy = draw_trivial_augment_policy(batch_size, generator, max_magnitude=trivial_augment)
            policies.append(policy if rows is None else tuple(rows.take(part) for part in policy))
        if mixes:
            mix_rngs.append(_draw_rng(generator))
    plan = TrivialAugmentPlan.upload(policies, device) if policies else None
    return EpochAugmentation(plan, mix_rngs)


def _draw_rng(generator: torch.Generator) -> np.random.Generator:
    """A NumPy generator seeded from ``generator``: torch's Beta sampler takes no generator."""
    seed = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item()
    return np.random.default_rng(seed)


def _cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box with sides sqrt(1 - lam) of the image's, centred uniformly, clipped at the border."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    centre_y, centre_x = int(rng.integers(0, height)), int(rng.integers(0, width))
    top, left = centre_y - cut_h // 2, centre_x - cut_w // 2
    return max(top, 0), min(top + cut_h, height), max(left, 0), min(left + cut_w, width)


def mix_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    mixup_alpha: float,
    cutmix_alpha: float,
    switch_prob: float,
    generator: torch.Generator | np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp (Zhang et al. 2018) or CutMix (Yun et al. 2019) of the batch with itself reversed.

    As timm's "batch" mode: one lambda ~ Beta(alpha, alpha) for the batch, each
    image mixed with the one at the mirrored position (``images.flip(0)``), so
    no second batch or permutation is needed. With both alphas positive CutMix
    is chosen with probability ``switch_prob``; an alpha of 0 turns that method
    off. CutMix's lambda is corrected to the exact pasted area. Returns the
    mixed images (inputs untouched) and float32 soft targets (N, num_classes).
    The batch's choices come from a NumPy generator seeded from ``generator``,
    or from ``generator`` itself when it is one (drawn ahead by
    :func:`draw_epoch_augmentation`).
    """
    if mixup_alpha < 0 or cutmix_alpha < 0 or not 0.0 <= switch_prob <= 1.0:
        raise ValueError(
            f"mix_batch needs alphas >= 0 and 0 <= switch_prob <= 1, got mixup_alpha={mixup_alpha}, "
            f"cutmix_alpha={cutmix_alpha}, switch_prob={switch_prob}; set an alpha to 0 to turn its method off"
        )
    targets = F.one_hot(labels.long(), num_classes).float()
    if mixup_alpha == 0 and cutmix_alpha == 0:
        return images, targets
    rng = generator if isinstance(generator, np.random.Generator) else _draw_rng(generator)
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha == 0 or rng.random() < switch_prob)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    flipped = images.flip(0)
    if use_cutmix:
        h, w = images.shape[-2:]
        top, bottom, left, right = _cutmix_box(h, w, lam, rng)
        mixed = images.clone()
        mixed[..., top:bottom, left:right] = flipped[..., top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / (h * w)
    else:
        mixed = torch.lerp(flipped, images, lam)
    return mixed, torch.lerp(targets.flip(0), targets, lam)


def soft_target_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean over the batch of ``-sum(targets * log_softmax(logits))``, in float32.

    Label smoothing mixes the targets with the uniform distribution,
    ``t * (1 - eps) + eps / classes``, so with one-hot targets this equals
    ``F.cross_entropy(logits, labels, label_smoothing=eps)``.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and soft targets {tuple(targets.shape)} must match")
    targets = targets.float()
    if label_smoothing > 0:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / logits.shape[-1]
    return -(targets * logits.float().log_softmax(dim=-1)).sum(dim=-1).mean()
