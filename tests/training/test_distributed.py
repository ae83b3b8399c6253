"""Data-parallel training on the CPU with gloo: the same run as one process, or one clear failure."""

from __future__ import annotations

import ipaddress
import multiprocessing
import os
import socket
import sys
import threading

import psutil
import pytest
import torch
import torch.distributed as dist

from image_recognition.errors import ParameterError
from image_recognition.models.tiny import TINY_MODELS
from image_recognition.training import NonFiniteLossError, TrainingConfig, train
from image_recognition.training.ddp import SyncBatchNorm2d
from tests.helpers import free_port

pytestmark = pytest.mark.slow  # each run starts worker processes

# Deterministic runs (no stochastic regularisation), in fp32, with the augmentation on:
# every rank draws the whole global batch's augmentation and keeps its share.
EXACT = {
    "epochs": 2,
    "batch_size": 40,
    "lr": 0.05,
    "autocast": "off",
    "label_smoothing": 0.1,
    "flip": "alternating",
    "translate": 2,
    "whiten_bias_epochs": 1,  # the cnn's stem bias freezes mid-run: DDP is rebuilt around it
    "log_every": 0,
}
TWO = {"nproc_per_node": 2}


@pytest.fixture(scope="module")
def small(synthetic) -> dict:
    """20 training and 10 validation images per class: 5 steps of 40 per epoch."""
    from image_recognition.cifar10.split import channel_statistics  # noqa: PLC0415

    keep = torch.cat([torch.nonzero(torch.as_tensor(synthetic.train_labels) == c)[:20, 0] for c in range(10)])
    images, labels = synthetic.train_images[keep.numpy()], synthetic.train_labels[keep.numpy()]
    mean, std = channel_statistics(images)
    return {
        "train_split": {"images": images, "labels": labels},
        "validation_split": {"images": synthetic.test_images[:100], "labels": synthetic.test_labels[:100]},
        "normalization": {"mean": mean, "std": std},
    }


def _largest_difference(left: dict, right: dict) -> float:
    assert left.keys() == right.keys()
    return max((left[key].double() - right[key].double()).abs().max().item() for key in left)


VIT = {**TINY_MODELS["vit"], "drop_path_rate": 0.0}  # patch stem: no BatchNorm
VIT_TRAINING = {**EXACT, "optimizer": "adamw", "lr": 1e-3}


@pytest.fixture(scope="module")
def one_vit(small: dict):
    """The reference: the ViT trained in one process."""
    return train("vit", VIT, VIT_TRAINING, **small)


def test_two_processes_end_with_the_weights_of_one_for_vit(small: dict, one_vit) -> None:
    one = one_vit
    two = train("vit", VIT, {**VIT_TRAINING, "distributed": TWO}, **small)
    assert _largest_difference(one.checkpoint["model_state"], two.checkpoint["model_state"]) < 1e-5
    assert [row["train_loss"] for row in two.history] == pytest.approx([row["train_loss"] for row in one.history])
    assert two.final_metrics["val_loss"] == pytest.approx(one.final_metrics["val_loss"], rel=1e-5)
    assert len(two.history) == EXACT["epochs"] and two.model.training is False


def test_two_processes_with_sync_batchnorm_end_with_the_weights_of_one_for_cnn(small: dict) -> None:
    model = TINY_MODELS["cnn"]
    one = train("cnn", model, EXACT, **small)
    synced = train("cnn", model, {**EXACT, "distributed": TWO}, **small)  # sync_batchnorm: auto
    per_share = train("cnn", model, {**EXACT, "distributed": {**TWO, "sync_batchnorm": False}}, **small)
    assert _largest_difference(one.checkpoint["model_state"], synced.checkpoint["model_state"]) < 1e-3
    assert [row["train_accuracy"] for row in synced.history] == [row["train_accuracy"] for row in one.history]
    # Each rank's forward saw its half of the batch: without synchronised
    # statistics BatchNorm normalises each half on its own and the run differs.
    assert _largest_difference(one.checkpoint["model_state"], per_share.checkpoint["model_state"]) > 1e-2


def test_a_diverging_run_stops_every_process_with_the_usual_error(small: dict) -> None:
    with pytest.raises(NonFiniteLossError, match=r"training loss became (nan|inf) at epoch 1, step [12]\b"):
        train("simple_cnn", {}, {**EXACT, "lr": 1e30, "distributed": TWO}, **small)


def _train_as_node(node_rank: int, port: int, small: dict, queue: multiprocessing.Queue) -> None:
    distributed = {"nnodes": 2, "node_rank": node_rank, "rdzv_endpoint": f"127.0.0.1:{port}"}
    result = train("vit", VIT, {**VIT_TRAINING, "distributed": distributed}, **small)
    # As arrays: a tensor would travel as a shared-memory handle that dies with this process.
    state = {key: value.numpy() for key, value in result.checkpoint["model_state"].items()}
    queue.put((node_rank, state, result.history))


def _in_two_processes(target, *args) -> dict[int, tuple]:
    """Run ``target(rank, port, *args, queue)`` for ranks 0 and 1 in spawned processes; {rank: what it put}."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    port = free_port()
    processes = [context.Process(target=target, args=(rank, port, *args, queue)) for rank in (0, 1)]
    for process in processes:
        process.start()
    results = {rank: rest for rank, *rest in (queue.get(timeout=300) for _ in processes)}
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return results


def _listening_sockets() -> set[tuple[int, str, int]]:
    """(pid, address, port) of every listening TCP socket of this process and its children."""
    found = set()
    this = psutil.Process()
    for process in [this, *this.children(recursive=True)]:
        try:
            connections = process.net_connections(kind="inet")
        except psutil.Error:  # a child that has just exited
            continue
        found |= {(process.pid, c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}
    return found


def _a_network_interface() -> str | None:
    """The name of an interface with an IPv4 address other than loopback, if this machine has one."""
    for name, addresses in psutil.net_if_addrs().items():
        for address in addresses:
            if address.family == socket.AF_INET and not ipaddress.ip_address(address.address).is_loopback:
                return name
    return None


def test_a_one_node_run_listens_on_loopback_only(small: dict, monkeypatch) -> None:
    """The launcher's rendezvous store and the workers' gloo sockets: none reachable from another machine."""
    interface = _a_network_interface()
    if interface:  # gloo pointed at the network, as by default where the host name resolves to its address
        monkeypatch.setenv("GLOO_SOCKET_IFNAME", interface)
    before = _listening_sockets()  # whatever this test process already had open
    seen: set[tuple[int, str, int]] = set()
    stop = threading.Event()

    def watch() -> None:  # every listener of the run, from before the workers start until they are gone
        while not stop.is_set():
            seen.update(_listening_sockets())
            stop.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        train("simple_cnn", {}, {**EXACT, "epochs": 6, "distributed": TWO}, **small)
    finally:
        stop.set()
        watcher.join()
    opened = seen - before
    launcher = os.getpid()
    assert any(pid == launcher for pid, _, _ in opened), opened  # the rendezvous store
    assert len({pid for pid, _, _ in opened if pid != launcher}) == TWO["nproc_per_node"], opened  # gloo, mid-run
    assert all(ipaddress.ip_address(address).is_loopback for _, address, _ in opened), opened


def test_two_launchers_train_together_through_one_rendezvous(small: dict, one_vit) -> None:
    results = _in_two_processes(_train_as_node, small)
    # Both nodes' training nodes get rank 0's result: the run of one process.
    for arrays, history in results.values():
        state = {key: torch.from_numpy(value) for key, value in arrays.items()}
        assert _largest_difference(one_vit.checkpoint["model_state"], state) < 1e-5
        assert len(history) == EXACT["epochs"]


def test_distributed_settings_are_checked_before_any_process_starts(small: dict) -> None:
    with pytest.raises(ValueError, match="batch_size .40. must divide evenly over the 3 processes"):
        TrainingConfig.from_dict({"batch_size": 40, "distributed": {"nproc_per_node": 3}})
    with pytest.raises(ValueError, match="rdzv_endpoint must be host:port of node 0"):
        TrainingConfig.from_dict({"distributed": {"nnodes": 2, "node_rank": 1}})
    with pytest.raises(ValueError, match="max_restarts works on one node only"):
        TrainingConfig.from_dict({"distributed": {"nnodes": 2, "rdzv_endpoint": "a:1", "max_restarts": 1}})
    with pytest.raises(ValueError, match="node_rank must be below nnodes"):
        TrainingConfig.from_dict({"distributed": {"nnodes": 2, "node_rank": 2, "rdzv_endpoint": "a:1"}})
    with pytest.raises(ValueError, match=r"unknown training.distributed key\(s\) \['nprocs'\]"):
        TrainingConfig.from_dict({"distributed": {"nprocs": 2}})
    with pytest.raises(ParameterError, match="backend is nccl, which needs CUDA"):
        train("simple_cnn", {}, {**EXACT, "device": "cpu", "distributed": {**TWO, "backend": "nccl"}}, **small)
    unlabelled = {**small, "train_split": {**small["train_split"], "labels": small["train_split"]["labels"][:5]}}
    with pytest.raises(ValueError, match="labels"):  # the splits are checked here, not in the workers
        train("simple_cnn", {}, {**EXACT, "distributed": TWO}, **unlabelled)


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
        for rank, arrays in _in_two_processes(_sync_batchnorm_worker, inputs).items()
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
