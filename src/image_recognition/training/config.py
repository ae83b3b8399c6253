"""Training hyperparameters as one validated dataclass, built from a plain dict."""

from __future__ import annotations

import re
from dataclasses import InitVar, dataclass, field
from typing import Any

from image_recognition.common.device import AUTO, DEVICES
from image_recognition.common.params import (
    boolean,
    config_from_dict,
    integer,
    non_negative_int,
    non_negative_number,
    number_in_range,
    number_list,
    one_of,
    parameter_error,
    positive_int,
    positive_number,
    text,
)
from image_recognition.models import MAX_MODEL_PARAMETERS
from image_recognition.models.inference import TTA_MODES, tta_mode
from image_recognition.training.scratch import RUN_NAME

OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("constant", "linear", "cosine")
AUTOCAST_MODES = (AUTO, "bf16", "off")
AUTO_FLAGS = (AUTO, True, False)
# "random": a fresh coin per image and epoch. "alternating" (airbench): one
# seeded coin per image for epoch 0, the opposite side every other epoch, so
# every image is seen both ways in any two consecutive epochs.
FLIP_MODES = ("none", "random", "alternating")
BACKENDS = (AUTO, "nccl", "gloo")
# host:port, the host a name, an IPv4 address or a bracketed IPv6 address.
ENDPOINT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}")
# The settings that are true or false, and nothing else: a quoted "false" would count as true.
_BOOLEANS = ("nesterov", "decay_biases", "ema_ramp", "lookahead", "compile", "tf32")
# The settings that name one of a list, and the list.
_CHOICES = {
    "optimizer": OPTIMIZERS,
    "lr_schedule": LR_SCHEDULES,
    "device": DEVICES,
    "autocast": AUTOCAST_MODES,
    "channels_last": AUTO_FLAGS,
    "fused_optimizer": AUTO_FLAGS,
    "tta": TTA_MODES,
    "flip": FLIP_MODES,
}
# The settings that are shares, and whether 1 itself is allowed.
_FRACTIONS = {
    "trivial_augment": True,
    "mix_switch_prob": True,
    "momentum": False,
    "warmup_fraction": False,
    "label_smoothing": False,
    "ema_decay": False,
    "whiten_bias_fraction": True,
}


@dataclass
class DistributedConfig:
    """Data-parallel training over processes and nodes (``training.distributed``).

    One process per device (GPU, or share of the CPU cores), ``nproc_per_node``
    on each of ``nnodes`` machines, started by torch's elastic launcher
    (:mod:`image_recognition.training.launch`). The defaults are one process:
    the plain single-device engine, no launcher.
    """

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0  # this machine's index, 0 .. nnodes - 1; node 0 hosts the rendezvous
    rdzv_endpoint: str = ""  # host:port of node 0, reachable from every node; needed with nnodes > 1
    backend: str = AUTO  # "auto": NCCL on CUDA, gloo on the CPU
    max_restarts: int = 0  # times the launcher restarts every worker after one fails; each restart resumes
    # Global-batch BatchNorm statistics: "auto" = on for models with BatchNorm
    # (the convnets, the ViT's conv stem) when there is more than one process.
    sync_batchnorm: str | bool = AUTO
    # Where these settings sit among the parameters (``cnn.training.distributed``), for errors.
    section: InitVar[str] = "training.distributed"

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    def __post_init__(self, section: str) -> None:
        positive_int(f"{section}.nproc_per_node", self.nproc_per_node)
        positive_int(f"{section}.nnodes", self.nnodes)
        non_negative_int(f"{section}.node_rank", self.node_rank)
        non_negative_int(f"{section}.max_restarts", self.max_restarts)
        one_of(f"{section}.backend", self.backend, BACKENDS)
        one_of(f"{section}.sync_batchnorm", self.sync_batchnorm, AUTO_FLAGS)
        if self.node_rank >= self.nnodes:
            raise parameter_error(f"{section}.node_rank", f"must be below nnodes ({self.nnodes}), got {self.node_rank}")
        if self.nnodes > 1 and self.max_restarts:
            raise parameter_error(
                f"{section}.max_restarts",
                "works on one node only (nnodes: 1): a restart on one node would leave the other nodes' "
                "workers waiting; set max_restarts: 0 and rerun with training.resume: true after a failure",
            )
        if self.nnodes > 1:
            text(
                f"{section}.rdzv_endpoint",
                self.rdzv_endpoint,
                "host:port of node 0, reachable from every node, when nnodes > 1 (like 10.0.0.1:29500)",
                ENDPOINT,
            )


@dataclass
class TrainingConfig:
    """Everything the engine needs besides the model and the data.

    ``"auto"`` values pick the fast setting for the device: bf16 autocast
    where the hardware has it natively (CUDA, CPUs with AVX512-BF16 or AMX),
    channels_last (convnets) and fused optimizers on CUDA.
    Setting them explicitly lets the tests exercise the GPU paths on a CPU.
    """

    # How long the run is: a number of epochs, or a time budget in seconds
    # (training/budget.py), never both. ``epochs: null`` means "not given", so
    # an overlay switches a recipe from epochs to a budget with
    # ``{epochs: null, budget_s: 600}``.
    epochs: int | None = 10
    budget_s: float | None = None
    batch_size: int = 512

    # --- optimiser ---
    optimizer: str = "sgd"  # "sgd" or "adamw"
    lr: float = 0.1  # peak learning rate (per mean-reduced loss)
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = True  # SGD Nesterov momentum: a small free gain for short runs
    betas: tuple[float, float] | list[float] = (0.9, 0.999)  # AdamW
    weight_decay: float = 5e-4  # on weight matrices/kernels (ndim >= 2) only
    # Also decay 1-D parameters (biases, norm shifts)? The speed records do;
    # transformer recipes do not.
    decay_biases: bool = False
    # Learning-rate multiplier for BatchNorm parameters (airbench uses 64 with
    # frozen BatchNorm scales). Their weight decay is divided by the same
    # factor, so only their step size grows.
    bias_lr_scale: float = 1.0
    # Use fused (or foreach) optimizer kernels: "auto" = fused on CUDA only.
    fused_optimizer: str | bool = AUTO

    # --- learning-rate schedule, per optimisation step ---
    lr_schedule: str = "cosine"  # after warmup: "constant", "linear" or "cosine" decay
    warmup_fraction: float = 0.05  # share of all steps spent ramping up linearly
    lr_start_factor: float = 0.1  # lr at step 0, as a fraction of the peak
    lr_end_factor: float = 0.0  # lr at the last step, as a fraction of the peak

    # --- regularisation ---
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # max global gradient norm; 0 disables

    # --- weight averaging ---
    # EMA of the weights (and BatchNorm statistics); 0 disables. The EMA is the
    # model that is validated and returned.
    ema_decay: float = 0.0
    ema_every: int = 1  # update the EMA every this many steps
    # Ramp the EMA decay from 0 up to ema_decay as (progress)**3, so early,
    # bad weights are forgotten (airbench). Without it the decay is
    # bias-corrected from 0 (ema_decay_at): the EMA never holds the random
    # initial weights either, and still averages about 1 / (1 - ema_decay) updates.
    ema_ramp: bool = False
    # Lookahead: after each EMA update, copy the EMA back into the live weights.
    lookahead: bool = False

    # --- whitening stem (models with one: cnn) ---
    # Epochs the whitening layer's bias trains (at the base lr) before it is
    # frozen; its filters are computed from the data and never trained. In a
    # budgeted run, which has no epoch count to start with, the bias trains for
    # ``whiten_bias_fraction`` of the planned steps instead.
    whiten_bias_epochs: int = 3
    whiten_bias_fraction: float = 0.3

    # --- augmentation, batched on the device ---
    flip: str | bool = "random"  # horizontal flip: "none", "random" or "alternating" (True = "random")
    translate: int = 2  # random shift of up to this many pixels (reflect padding)
    cutout: int = 0  # side of a random square set to zero (the mean); 0 disables
    # TrivialAugment-wide: one random colour or geometric op per image, at this
    # share of the full magnitude ranges; 0 disables.
    trivial_augment: float = 0.0
    # MixUp / CutMix: Beta(alpha, alpha) mixing of each batch with its reverse,
    # trained on the soft targets; 0 disables each. With both on, CutMix is
    # used for a share mix_switch_prob of the batches.
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_switch_prob: float = 0.5

    # --- evaluation ---
    tta: str | bool = "none"  # test-time augmentation of the final validation: "none", "flip", "flip_translate"
    eval_batch_size: int = 1024

    # --- reproducibility, device and speed ---
    seed: int = 0
    device: str = AUTO  # "auto" picks cuda, then mps, then cpu
    autocast: str = AUTO  # "bf16" or "off"; "auto" = bf16 where native: CUDA, CPUs with AVX512-BF16/AMX
    channels_last: str | bool = AUTO  # "auto" = on for convnets on CUDA
    compile: bool = False  # torch.compile the model (needs a C compiler on CPU)
    tf32: bool = True  # allow TF32 matmuls/convs on CUDA

    # --- model size ---
    # The most parameters the model may have, counted before it is built: a
    # mistyped width (embed_dim: 1000000) is refused instead of allocating
    # tens of gigabytes. Raise it for a larger model.
    max_model_parameters: int = MAX_MODEL_PARAMETERS

    # --- checkpoints and logging ---
    checkpoint_every: int = 1  # epochs between checkpoints (if a path is given); 0 = final only
    resume: bool | str = False  # true: the latest interrupted run; a run name: that run (training/scratch.py)
    log_every: int = 50  # steps between progress lines within an epoch; 0 = per epoch only

    # --- several processes: one per GPU, over one or more nodes (DistributedConfig) ---
    distributed: DistributedConfig | dict = field(default_factory=DistributedConfig)

    # Where these settings sit among the parameters (``cnn.training``): errors name it and its file.
    section: InitVar[str] = "training"

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None, section: str = "training") -> TrainingConfig:
        """Build and validate; an unknown key or a bad value raises a ParameterError naming ``section``'s file."""
        return config_from_dict(cls, values, section, section=section)

    @property
    def mixes(self) -> bool:
        """Whether batches are mixed (MixUp or CutMix), so targets are soft."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __post_init__(self, section: str) -> None:
        if isinstance(self.tta, bool):
            self.tta = tta_mode(self.tta)
        if self.flip is True:
            self.flip = "random"
        elif self.flip is False:
            self.flip = "none"
        if not isinstance(self.betas, tuple | list) or len(self.betas) != 2:  # noqa: PLR2004
            raise parameter_error(f"{section}.betas", f"must be a list of two numbers, got {self.betas!r}")
        self.betas = tuple(float(b) for b in number_list(f"{section}.betas", self.betas))
        if not isinstance(self.distributed, DistributedConfig):
            where = f"{section}.distributed"
            self.distributed = config_from_dict(DistributedConfig, self.distributed, where, section=where)
        self._validate(section)
        if self.batch_size % self.distributed.world_size:
            raise parameter_error(
                f"{section}.batch_size",
                f"({self.batch_size}) must divide evenly over the {self.distributed.world_size} processes "
                "of training.distributed: each takes an equal share",
            )

    def check_image_size(self, height: int, width: int, section: str = "training") -> None:
        """Refuse augmentation that does not fit images of ``height`` x ``width`` pixels.

        A shift pads each side with its reflection, which needs ``translate``
        below the image's side; the model would otherwise fail at the first batch.
        """
        side = min(height, width)
        if self.translate >= side:
            raise parameter_error(
                f"{section}.translate",
                f"must be below the images' side ({side} pixels), got {self.translate}; "
                "set a shift of a few pixels (2 for 32x32 images) or 0 for none",
            )

    @property
    def budgeted(self) -> bool:
        """Whether the run's length is a time budget (``budget_s``) rather than a number of epochs."""
        return self.budget_s is not None

    def _validate_length(self, section: str) -> None:
        """Exactly one of ``epochs`` and ``budget_s``: a run is as long as one of them says."""
        if (self.epochs is None) == (self.budget_s is None):
            given = "both" if self.budget_s is not None else "neither"
            raise parameter_error(
                f"{section}.budget_s",
                f"and {section}.epochs: give exactly one (got {given}): epochs for a fixed number of passes, "
                "budget_s for a time budget in seconds; set the other to null",
            )
        if self.epochs is not None:
            positive_int(f"{section}.epochs", self.epochs)
        else:
            positive_number(f"{section}.budget_s", self.budget_s)

    def _validate(self, section: str) -> None:
        self._validate_length(section)
        for name in ("batch_size", "eval_batch_size", "ema_every", "max_model_parameters"):
            positive_int(f"{section}.{name}", getattr(self, name))
        for name in ("translate", "cutout", "checkpoint_every", "log_every", "whiten_bias_epochs"):
            non_negative_int(f"{section}.{name}", getattr(self, name))
        for name, allowed in _CHOICES.items():
            one_of(f"{section}.{name}", getattr(self, name), allowed)
        for name in _BOOLEANS:
            boolean(f"{section}.{name}", getattr(self, name))
        self._validate_real_numbers(section)
        if self.lookahead and self.ema_decay == 0:
            raise parameter_error(f"{section}.lookahead", "needs ema_decay > 0 (it copies the EMA back)")
        if not isinstance(self.resume, bool):
            text(
                f"{section}.resume",
                self.resume,
                "true, false or a run name from the scratch folder (like 20261201T101500-4242-ab12)",
                RUN_NAME,
            )
        integer(f"{section}.seed", self.seed)

    def _validate_real_numbers(self, section: str) -> None:
        """Every float setting finite and in its range: NaN fails no ``<`` test, so each is checked first."""
        for name in ("lr", "bias_lr_scale"):
            positive_number(f"{section}.{name}", getattr(self, name))
        for name in ("weight_decay", "grad_clip", "lr_start_factor", "lr_end_factor", "mixup_alpha", "cutmix_alpha"):
            non_negative_number(f"{section}.{name}", getattr(self, name))
        for name, one_included in _FRACTIONS.items():
            number_in_range(f"{section}.{name}", getattr(self, name), 0.0, 1.0, include_high=one_included)
        for beta in self.betas:
            number_in_range(f"{section}.betas", beta, 0.0, 1.0, include_high=False)
