"""Data-parallel training on the CPU with gloo: the same run as one process, or one clear failure."""

from __future__ import annotations

import ipaddress
import multiprocessing
import os
import socket
import threading

import psutil
import pytest
import torch

from image_recognition.common.errors import ParameterError
from image_recognition.models.tiny import TINY_MODELS
from image_recognition.training import NonFiniteLossError, TrainingConfig, launch, train
from tests.training.helpers import EXACT, TWO, VIT, VIT_TRAINING, in_two_processes, largest_difference

pytestmark = pytest.mark.slow  # each run starts worker processes


@pytest.fixture(scope="module")
def one_vit(small: dict):
    """The reference: the ViT trained in one process."""
    return train("vit", VIT, VIT_TRAINING, **small)


def test_two_processes_end_with_the_weights_of_one_for_vit(small: dict, one_vit) -> None:
    one = one_vit
    two = train("vit", VIT, {**VIT_TRAINING, "distributed": TWO}, **small)
    assert largest_difference(one.checkpoint["model_state"], two.checkpoint["model_state"]) < 1e-5
    assert [row["train_loss"] for row in two.history] == pytest.approx([row["train_loss"] for row in one.history])
    assert two.final_metrics["val_loss"] == pytest.approx(one.final_metrics["val_loss"], rel=1e-5)
    assert len(two.history) == EXACT["epochs"] and two.model.training is False


def test_two_processes_with_sync_batchnorm_end_with_the_weights_of_one_for_cnn(small: dict) -> None:
    model = TINY_MODELS["cnn"]
    one = train("cnn", model, EXACT, **small)
    synced = train("cnn", model, {**EXACT, "distributed": {**TWO, "sync_batchnorm": True}}, **small)
    per_share = train("cnn", model, {**EXACT, "distributed": {**TWO, "sync_batchnorm": False}}, **small)
    assert largest_difference(one.checkpoint["model_state"], synced.checkpoint["model_state"]) < 1e-3
    assert [row["train_accuracy"] for row in synced.history] == [row["train_accuracy"] for row in one.history]
    # Each rank's forward saw its half of the batch: without synchronised
    # statistics BatchNorm normalises each half on its own and the run differs.
    assert largest_difference(one.checkpoint["model_state"], per_share.checkpoint["model_state"]) > 1e-2


def test_a_diverging_run_stops_every_process_with_the_usual_error(small: dict) -> None:
    with pytest.raises(NonFiniteLossError, match=r"training loss became (nan|inf) at epoch 1, step [12]\b"):
        train("simple_cnn", {}, {**EXACT, "lr": 1e30, "distributed": TWO}, **small)


def _train_as_node(node_rank: int, port: int, small: dict, queue: multiprocessing.Queue) -> None:
    distributed = {"nnodes": 2, "node_rank": node_rank, "rdzv_endpoint": f"127.0.0.1:{port}"}
    result = train("vit", VIT, {**VIT_TRAINING, "distributed": distributed}, **small)
    # As arrays: a tensor would travel as a shared-memory handle that dies with this process.
    state = {key: value.numpy() for key, value in result.checkpoint["model_state"].items()}
    queue.put((node_rank, state, result.history))


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
    results = in_two_processes(_train_as_node, small)
    # Both nodes' training nodes get rank 0's result: the run of one process.
    for arrays, history in results.values():
        state = {key: torch.from_numpy(value) for key, value in arrays.items()}
        assert largest_difference(one_vit.checkpoint["model_state"], state) < 1e-5
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
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) training.distributed.nprocs"):
        TrainingConfig.from_dict({"distributed": {"nprocs": 2}})
    with pytest.raises(ParameterError, match="backend is nccl, which needs CUDA"):
        train("simple_cnn", {}, {**EXACT, "device": "cpu", "distributed": {**TWO, "backend": "nccl"}}, **small)
    unlabelled = {**small, "train_split": {**small["train_split"], "labels": small["train_split"]["labels"][:5]}}
    with pytest.raises(ValueError, match="labels"):  # the splits are checked here, not in the workers
        train("simple_cnn", {}, {**EXACT, "distributed": TWO}, **unlabelled)


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
