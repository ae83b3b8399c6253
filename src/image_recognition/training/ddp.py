"""What the engine needs inside a data-parallel worker: its place in the group, collectives, DDP, SyncBatchNorm.

The launcher (:mod:`image_recognition.training.launch`) starts the workers and
initialises the process group; the engine (:mod:`image_recognition.training.engine`)
asks :func:`current_group` whether it runs in one and, if so, trains its shard
of every global batch in ``DistributedDataParallel``.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

# DDP's switch for the buffer broadcast before every forward pass: renamed in torch 2.14.
_FORWARD_BUFFER_SYNC = (
    "forward_sync_buffers"
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else "broadcast_buffers"
)


@dataclass(frozen=True)
class ProcessGroup:
    """This worker's place among all of them: global ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0: it validates, writes checkpoints and logs progress."""
        return self.rank == 0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over all ranks (in place, returned)."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (any picklable object)."""
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def current_group() -> ProcessGroup | None:
    """This worker's :class:`ProcessGroup`, or None outside an initialised group of more than one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def data_parallel(model: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``model`` in DDP on ``device``, without the broadcast of rank 0's buffers before every forward pass.

    Each rank keeps its own BatchNorm statistics: the same on every rank
    with :class:`SyncBatchNorm2d`, its own share's without (rank 0's are the
    ones validated and saved); no forward pass waits on a broadcast.
    """
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, **{_FORWARD_BUFFER_SYNC: False})


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())


class _AllReduceSum(torch.autograd.Function):
    """The sum over ranks, differentiable: each rank's input gets the sum of every rank's gradient."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # noqa: ARG004 (autograd's signature)
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        total = grad.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are the global batch's, on any backend and device.

    It all-reduces the per-channel sums with a differentiable collective, so
    gloo on the CPU works as NCCL on GPUs does, and the gradients are those of
    one BatchNorm over the whole batch. The mean and the variance are two
    reductions (the variance around the global mean), which keeps the variance
    exact where the one-pass E[x^2] - E[x]^2 would cancel. Nothing in it reads
    a value on the host: the running statistics are updated with device
    tensors, so a step never waits for the device here (``torch.nn.SyncBatchNorm``
    does, once per layer, and is not used). In eval mode, or in a group of
    one, it is plain BatchNorm2d; its state dict is the same, so checkpoints
    load into the plain model.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or current_group() is None:
            return super().forward(x)
        values = x.float()
        dims = (0, 2, 3)
        local_count = values.new_full((1,), values.numel() / values.shape[1])  # filled on the device: no copy
        sums = _AllReduceSum.apply(torch.cat([values.sum(dims), local_count]))
        count = sums[-1]
        mean = sums[:-1] / count
        centred = values - mean[None, :, None, None]
        var = _AllReduceSum.apply(centred.square().sum(dims)) / count
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count.detach())
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        out = centred * scale[None, :, None, None]
        if self.bias is not None:
            out = out + self.bias[None, :, None, None]
        return out.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        """Update the running mean and (unbiased) variance; ``count`` is the global values per channel, a tensor."""
        self.num_batches_tracked += 1
        momentum = self.momentum
        if momentum is None:  # a cumulative average, as BatchNorm's: 1 / batches seen, kept on the device
            momentum = 1.0 / self.num_batches_tracked.to(self.running_mean.dtype)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        unbiased = var * (count / (count - 1.0).clamp_min(1.0))
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm2d replaced by :class:`SyncBatchNorm2d`, on every backend and device."""
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = SyncBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            synced.load_state_dict(child.state_dict())
            for param, original in zip(synced.parameters(), child.parameters(), strict=True):
                param.requires_grad_(original.requires_grad)
            setattr(model, name, synced.to(child.weight.device if child.affine else device))
        else:
            convert_sync_batchnorm(child, device)
    return model
