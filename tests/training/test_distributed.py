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
from torch._dynamo.testing import CompileCounter
from torch.nn.parallel import DistributedDataParallel
from torch.utils._python_dispatch import TorchDispatchMode

from image_recognition.common.errors import ParameterError
from image_recognition.models import build_model
from image_recognition.models.tiny import TINY_MODELS
from image_recognition.training import NonFiniteLossError, TrainingConfig, engine, launch, train
from image_recognition.training.ddp import ProcessGroup, SyncBatchNorm2d, convert_sync_batchnorm
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
    "whiten_bias_epochs": 1,  # the cnn's stem bias freezes mid-run, in the optimiser: one DDP wrapper
    "log_every": 0,
}
TWO = {"nproc_per_node": 2}


@pytest.fixture(scope="module")
def small(synthetic) -> dict:
    """20 training and 10 validation images per class: 5 steps of 40 per epoch."""
    from image_recognition.sources.cifar10.split import channel_statistics  # noqa: PLC0415

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
# With the strong augmentation and MixUp/CutMix: each rank makes its share and the share mixed with it.
STRONG = {"trivial_augment": 1.0, "cutout": 8, "mixup_alpha": 0.8, "cutmix_alpha": 1.0}
VIT_TRAINING = {**EXACT, **STRONG, "optimizer": "adamw", "lr": 1e-3}


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
    synced = train("cnn", model, {**EXACT, "distributed": {**TWO, "sync_batchnorm": True}}, **small)
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
    for rank, (seen,) in _in_two_processes(_host_reads_worker).items():
        assert seen == [], f"rank {rank}: {seen}"


def test_sync_batchnorm_is_the_projects_own_on_cuda_too() -> None:
    """torch.nn.SyncBatchNorm reads a value on the host in every layer; SyncBatchNorm2d does not."""
    model = convert_sync_batchnorm(build_model("cnn", {"widths": [8, 16, 16]}), torch.device("cuda"))
    norms = [module for module in model.modules() if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(type(norm) is SyncBatchNorm2d for norm in norms)


def test_a_cuda_worker_binds_its_gpu_to_the_process_group(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(launch.dist, "TCPStore", lambda *args, **kwargs: object())
    monkeypatch.setattr(launch.dist, "PrefixStore", lambda prefix, store: store)
    monkeypatch.setattr(launch.dist, "init_process_group", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    launch._join_group("nccl", 1, 0, torch.device("cuda", 1))
    launch._join_group("gloo", 1, 0)
    assert [call["device_id"] for call in calls] == [torch.device("cuda", 1), None]


@pytest.fixture()
def group_of_one(monkeypatch):
    """A real gloo group of this one process, which the engine takes for rank ``rank`` of ``world_size``.

    The engine then shares each batch and wraps the model in DDP as in a
    worker, in this process, where a test can watch it.
    """
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)

    def join(rank: int, world_size: int) -> None:
        monkeypatch.setattr(engine, "current_group", lambda: ProcessGroup(rank, world_size, 0))

    yield join
    dist.destroy_process_group()


def test_one_ddp_wrapper_and_one_compiled_graph_across_the_whitening_freeze(small, monkeypatch, group_of_one) -> None:
    counter = CompileCounter()  # counts the graphs Dynamo hands to the backend; runs them eagerly
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda module: compile_(module, backend=counter))
    seen = []
    train_epoch = engine._Trainer._train_epoch

    def spy(self, epoch):
        row = train_epoch(self, epoch)
        seen.append((self.train_model, self.model.whiten.bias.requires_grad, counter.frame_count))
        return row

    monkeypatch.setattr(engine._Trainer, "_train_epoch", spy)
    group_of_one(0, 1)
    training = {**EXACT, "epochs": 3, "compile": True, "distributed": {"sync_batchnorm": True}}
    result = train("cnn", TINY_MODELS["cnn"], training, **small)
    wrappers, requires_grad, graphs = zip(*seen, strict=True)
    assert all(wrapper is wrappers[0] for wrapper in wrappers)  # the bias froze after epoch 1: no new wrapper
    assert all(requires_grad)
    assert graphs[0] > 0 and len(set(graphs)) == 1  # nothing traced again after the freeze
    assert result.compiled
    ddp = wrappers[0]._orig_mod
    assert isinstance(ddp, DistributedDataParallel) and ddp.broadcast_buffers is False


@pytest.mark.parametrize("mixes", [False, True], ids=["share", "share-and-mirror"])
def test_a_rank_makes_only_its_rows_of_each_batch_and_they_equal_one_process(
    small, monkeypatch, group_of_one, mixes: bool
) -> None:
    """Rank 1 of 2: the random numbers of the whole batch, the pixels of its rows only."""
    training = {**EXACT, "epochs": 1, "flip": "random", "cutout": 8, "trivial_augment": 1.0}
    if mixes:
        training.update(mixup_alpha=0.8, cutmix_alpha=1.0)
    batches, augmented = [], []
    make_batch, augment = engine._Trainer._batch, engine.augment
    monkeypatch.setattr(engine._Trainer, "_batch", lambda *args: batches.append(make_batch(*args)) or batches[-1])
    monkeypatch.setattr(
        engine, "augment", lambda images, **kwargs: augmented.append(len(images)) or augment(images, **kwargs)
    )
    train("simple_cnn", {}, training, **small)
    whole, batches = batches, []
    group_of_one(1, 2)
    train("simple_cnn", {}, training, **small)
    half = EXACT["batch_size"] // 2
    # Its share, and the mirrored share that MixUp and CutMix pair with it: half the batch, then all of it for 2 ranks.
    assert augmented[len(whole) :] == [2 * half if mixes else half] * len(batches)
    assert len(batches) == len(whole)
    for (images, labels, targets), (all_images, all_labels, all_targets) in zip(batches, whole, strict=True):
        torch.testing.assert_close(images, all_images[half:])
        assert torch.equal(labels, all_labels[half:])
        if mixes:
            torch.testing.assert_close(targets, all_targets[half:])
