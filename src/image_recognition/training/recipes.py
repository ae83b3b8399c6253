"""Default recipes: ``{"model": <model config>, "training": <TrainingConfig dict>}``.

Plain dicts with exactly the keys :func:`image_recognition.models.build_model`
and :meth:`TrainingConfig.from_dict` accept, so they can be copied into YAML.
Use :func:`recipe` to get a fresh copy.
"""

from __future__ import annotations

import copy
from typing import Any

# airbench94 expresses lr per 1024 examples for a summed loss with a momentum
# correction: 11.5 / (1 + 1 / (1 - 0.85)) = 1.5 for a mean loss at batch 1024.
# The mean-loss lr scales linearly with the batch size; weight decay (PyTorch's
# coupled form) then stays 1.33e-3 at any batch size.
_AIRBENCH_LR_PER_1024 = 11.5 / (1 + 1 / (1 - 0.85))

CNN_GPU: dict[str, Any] = {
    # ~94% CIFAR-10 test accuracy in ~10 epochs (airbench94's recipe, re-derived).
    "model": {"widths": [64, 256, 256]},
    "training": {
        "epochs": 10,
        "batch_size": 1024,  # large batches keep an H100 busy; 48 steps per epoch
        "optimizer": "sgd",
        "lr": _AIRBENCH_LR_PER_1024,
        "momentum": 0.85,  # with Nesterov; lower than 0.9 suits very few steps
        "nesterov": True,
        "weight_decay": 1.33e-3,  # = airbench's 0.0153 per 1024 examples, decoupled
        "decay_biases": True,  # every trained parameter decays, the whitening bias too
        "bias_lr_scale": 64.0,  # BatchNorm shifts (only they) learn 64x faster (frozen BN scales)
        "lr_schedule": "linear",  # triangle: 0.2x -> peak at 23% -> 0.07x at the end
        "warmup_fraction": 0.23,
        "lr_start_factor": 0.2,
        "lr_end_factor": 0.07,
        "label_smoothing": 0.2,  # strong smoothing: a better-calibrated fast run
        "ema_decay": 0.95**5,  # lookahead every 5 steps, decay ramped up as progress**3
        "ema_every": 5,
        "ema_ramp": True,
        "lookahead": True,
        "whiten_bias_epochs": 3,  # the whitening bias trains for 3 epochs, then is frozen
        "flip": "alternating",  # each image is seen both ways in any two consecutive epochs
        "translate": 2,
        "cutout": 0,
        "tta": "flip_translate",  # ~+0.5% for 6 forward passes per image at test time
        "eval_batch_size": 2000,
        "seed": 0,
        "device": "auto",
        "autocast": "auto",  # bf16 on CUDA
        "channels_last": "auto",
        "compile": True,
        "tf32": True,
        "checkpoint_every": 0,  # only the final checkpoint: a 5 s run needs no more
        "resume": False,
        "log_every": 0,
    },
}

CNN_CPU: dict[str, Any] = {
    # Two CPU cores, ~10 minutes: a narrow network (~0.3M parameters) at batch
    # 256, airbench's hyperparameters scaled to the batch size; more epochs
    # than on GPU because the narrow net is cheap and needs them.
    "model": {"widths": [32, 64, 128]},
    "training": {
        **CNN_GPU["training"],
        "epochs": 16,
        "batch_size": 256,
        "lr": _AIRBENCH_LR_PER_1024 * 256 / 1024,
        "autocast": "bf16",  # ~1.7x faster than fp32 on a CPU with AVX512-BF16
        "channels_last": True,  # oneDNN convolutions are ~2.5x faster in NHWC
        "compile": False,  # compile time would eat a large share of 10 minutes
        "checkpoint_every": 1,
        "log_every": 50,
    },
}

VIT_GPU: dict[str, Any] = {
    # A ViT with a convolutional stem, sized by compute: 3.1 GFLOPs of training
    # per image, 200 epochs = 31 PFLOPs, about 80 s at 40% of an H100's dense
    # bf16 peak (benchmarks/gpu_benchmark.py prints the count). Small plain
    # ViTs need strong augmentation and long schedules on 50,000 images; the
    # stem supplies the locality prior, and 200 epochs is what compact
    # convolutional transformers use to pass 94%.
    "model": {
        "stem": "conv",
        "stem_channels": [64, 128, 256],  # 32x32 -> 16x16 -> 8x8: 64 tokens
        "patch_size": 4,
        "embed_dim": 384,
        "depth": 6,
        "num_heads": 6,
        "mlp_ratio": 2.0,
        "drop_path_rate": 0.1,
        "global_pool": "attn",  # sequence pooling
    },
    "training": {
        "epochs": 200,
        "batch_size": 512,
        "optimizer": "adamw",
        "lr": 2e-3,
        "betas": [0.9, 0.99],
        "weight_decay": 0.05,  # AdamW's decoupled decay, on weights only
        "decay_biases": False,
        "bias_lr_scale": 1.0,
        "lr_schedule": "cosine",
        "warmup_fraction": 0.05,  # 10 epochs: transformers need a gentle start with Adam
        "lr_start_factor": 0.01,
        "lr_end_factor": 0.0,
        "label_smoothing": 0.1,
        "grad_clip": 1.0,
        "ema_decay": 0.9998,  # per step: an average over the last ~5,000 steps (25 epochs)
        "ema_every": 1,
        "ema_ramp": False,
        "lookahead": False,
        "flip": "random",
        "translate": 4,
        "cutout": 0,  # CutMix does its job
        "trivial_augment": 1.0,  # ViTs lack convolutional priors: strong augmentation helps
        "mixup_alpha": 0.8,
        "cutmix_alpha": 1.0,
        "mix_switch_prob": 0.5,
        "tta": "flip",
        "eval_batch_size": 2000,
        "seed": 0,
        "device": "auto",
        "autocast": "auto",
        "channels_last": "auto",
        "compile": True,
        "tf32": True,
        "checkpoint_every": 20,
        "resume": False,
        "log_every": 0,
    },
}

VIT_CPU: dict[str, Any] = {
    # The same design sized for two CPU cores and ~10 minutes: a conv stem of
    # two conv-BN-GELU layers per stage down to 4x4 tokens (the transformer's
    # cost falls with the token count; conv depth at low resolution is cheap
    # and learns fast), three 128-wide blocks, 9 epochs (60 to 70 s each on 2
    # cores). Strong augmentation and MixUp/CutMix stay off: a run this short
    # underfits rather than overfits.
    "model": {
        "stem": "conv",
        "stem_channels": [32, 64, 128],  # 32x32 -> 16x16 -> 8x8 -> 4x4: 16 tokens
        "stem_depth": 2,
        "patch_size": 8,
        "embed_dim": 128,
        "depth": 3,
        "num_heads": 4,
        "mlp_ratio": 2.0,
        "drop_path_rate": 0.0,
        "global_pool": "attn",
    },
    "training": {
        **VIT_GPU["training"],
        "epochs": 9,
        "batch_size": 128,  # more steps per epoch for a short run
        "lr": 2e-3,
        "warmup_fraction": 0.1,
        "ema_decay": 0.0,
        "flip": "alternating",
        "translate": 2,
        "trivial_augment": 0.0,
        "mixup_alpha": 0.0,
        "cutmix_alpha": 0.0,
        "device": "cpu",
        "autocast": "off",  # bf16 pays only on CPUs with native bf16 (AVX512-BF16, AMX)
        "compile": False,
        "checkpoint_every": 1,
        "log_every": 50,
    },
}

VIT_CPU_PLAIN: dict[str, Any] = {
    # The CPU ViT profile before the conv stem: plain 4x4 patches, 128 wide,
    # 4 blocks. Kept to compare against at the same time budget.
    "model": {
        "patch_size": 4,
        "embed_dim": 128,
        "depth": 4,
        "num_heads": 4,
        "mlp_ratio": 2.0,
        "drop_path_rate": 0.05,
    },
    "training": {
        "epochs": 10,
        "batch_size": 256,
        "optimizer": "adamw",
        "lr": 0.002,
        "betas": [0.9, 0.99],
        "weight_decay": 0.05,
        "lr_schedule": "cosine",
        "warmup_fraction": 0.1,
        "lr_start_factor": 0.01,
        "label_smoothing": 0.1,
        "grad_clip": 1.0,
        "flip": "random",
        "translate": 4,
        "tta": "flip",
        "device": "cpu",
        "autocast": "off",
        "checkpoint_every": 1,
        "log_every": 50,
    },
}

SIMPLE_CNN_TUTORIAL: dict[str, Any] = {
    # The PyTorch tutorial as written: SGD lr 0.001, momentum 0.9, batch 4, 2 epochs.
    "model": {},
    "training": {
        "epochs": 2,
        "batch_size": 4,
        "optimizer": "sgd",
        "lr": 0.001,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 0.0,
        "lr_schedule": "constant",
        "warmup_fraction": 0.0,
        "lr_start_factor": 1.0,
        "label_smoothing": 0.0,
        "flip": False,
        "translate": 0,
        "cutout": 0,
        "tta": "none",
        "seed": 0,
        "device": "auto",
        "autocast": "off",
        "channels_last": False,
        "compile": False,
        "checkpoint_every": 1,
        "log_every": 2500,  # 11,250 steps per epoch on 45,000 images
    },
}

RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "cnn": CNN_GPU,
    "cnn_cpu": CNN_CPU,
    "vit": VIT_GPU,
    "vit_cpu": VIT_CPU,
    "vit_cpu_plain": VIT_CPU_PLAIN,
    "simple_cnn": SIMPLE_CNN_TUTORIAL,
}
# Which model each recipe trains.
RECIPE_MODELS: dict[str, str] = {
    "cnn": "cnn",
    "cnn_cpu": "cnn",
    "vit": "vit",
    "vit_cpu": "vit",
    "vit_cpu_plain": "vit",
    "simple_cnn": "simple_cnn",
}


def recipe(name: str) -> dict[str, dict[str, Any]]:
    """A deep copy of recipe ``name`` (one of :data:`RECIPES`)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; valid names are {list(RECIPES)}")
    return copy.deepcopy(RECIPES[name])
