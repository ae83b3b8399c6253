"""Inside a data-parallel worker: SyncBatchNorm2d normalises with the whole batch and never reads on the host."""

from __future__ import annotations

import multiprocessing
import os
import sys

import pytest
import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode

from image_recognition.models import build_model
from image_recognition.training.ddp import SyncBatchNorm2d, convert_sync_batchnorm
from tests.training.helpers import in_two_processes

pytestmark = pytest.mark.slow  # each test starts worker processes


def _sync_batchnorm_worker(rank: int, port: int, inputs: torch.Tensor, queue: multiprocessing.Queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        norm = SyncBatchNorm2d(3, momentum=0.3)
        with torch.no_grad():
            norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        share = inputs[rank * 4 : (rank + 1) * 4].clone().requires_grad_(True)
        out = norm(share)
        (out * torch.arange(out.numel()).reshape(out.shape)).sum().backward()
        tensors = (out.detach(), share.grad, norm.running_mean, norm.running_var)
        queue.put((rank, *(tensor.numpy() for tensor in tensors)))  # arrays outlive this process
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over TCP on POSIX")
def test_sync_batchnorm_normalises_each_share_with_the_whole_batch_statistics() -> None:
    inputs = torch.randn(8, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 3 + 1
    shares = {
        rank: [torch.from_numpy(array) for array in arrays]
        for rank, arrays in in_two_processes(_sync_batchnorm_worker, inputs).items()
    }
    # The reference: one BatchNorm over the whole batch, each share's loss weighted as the workers did.
    reference = torch.nn.BatchNorm2d(3, momentum=0.3)
    with torch.no_grad():
        reference.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
    whole = inputs.clone().requires_grad_(True)
    out = reference(whole)
    weights = torch.arange(out[:4].numel()).reshape(out[:4].shape).float()
    (out[:4] * weights).sum().add((out[4:] * weights).sum()).backward()
    torch.testing.assert_close(torch.cat([shares[0][0], shares[1][0]]), out.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([shares[0][1], shares[1][1]]), whole.grad, rtol=1e-4, atol=1e-5)
    for rank in (0, 1):
        torch.testing.assert_close(shares[rank][2], reference.running_mean)
        torch.testing.assert_close(shares[rank][3], reference.running_var)


class _HostReads(TorchDispatchMode):
    """Records every op that reads a tensor's value on the host or makes a tensor from host data."""

    SYNCING = ("aten::_local_scalar_dense", "aten::lift_fresh", "aten::equal", "aten::is_nonzero")

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in self.SYNCING:
            self.seen.append(func._schema.name)
        return func(*args, **(kwargs or {}))


def _host_reads_worker(rank: int, port: int, queue: multiprocessing.Queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        seen = []
        for momentum in (0.3, None):  # None: a cumulative average over the batches seen
            norm = SyncBatchNorm2d(3, momentum=momentum)
            share = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(rank)).requires_grad_(True)
            with _HostReads() as reads:
                for _ in range(2):
                    norm(share).square().sum().backward()
            seen += reads.seen
        queue.put((rank, seen))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over TCP on POSIX")
def test_sync_batchnorm_reads_nothing_on_the_host_under_ddp_on_gloo() -> None:
    """No .item() and no tensor from host data: on a GPU either would make every BatchNorm layer wait."""
    for rank, (seen,) in in_two_processes(_host_reads_worker).items():
        assert seen == [], f"rank {rank}: {seen}"


def test_sync_batchnorm_is_the_projects_own_on_cuda_too() -> None:
    """torch.nn.SyncBatchNorm reads a value on the host in every layer; SyncBatchNorm2d does not."""
    model = convert_sync_batchnorm(build_model("cnn", {"widths": [8, 16, 16]}), torch.device("cuda"))
    norms = [module for module in model.modules() if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(type(norm) is SyncBatchNorm2d for norm in norms)
