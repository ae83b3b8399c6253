"""Data-parallel training over processes and nodes, started by torch's elastic launcher.

:func:`launch` is what :func:`image_recognition.training.train` calls when
``training.distributed`` asks for more than one process. It starts the
workers with ``torch.distributed.launcher.api`` (the machinery behind
``torchrun``): ``nproc_per_node`` of them on this machine, which meet the
other nodes' at one rendezvous. Each worker runs the plain-PyTorch engine
only, never a Kedro node or session; rank 0's result comes back here, once:
the checkpoint, the history and the final metrics, as from one process.

- One node: a rendezvous on a free port of 127.0.0.1, and no socket of the
  run listens on any other interface (:func:`_loopback_store`,
  :func:`_listen_on_loopback`).
- Several nodes: a static rendezvous at ``rdzv_endpoint`` (node 0's
  host:port). Global rank 0 is on node 0; it validates and writes the scratch
  checkpoints, and every node's launcher gets its result, so every node's
  training node returns the same checkpoint. Node 0's store and every
  worker's gloo or NCCL sockets then listen on the network, with no
  authentication, and the ranks unpickle what comes through them: such runs
  need a network that only their nodes can reach.
- A worker that fails or dies stops all of them: :class:`DistributedTrainingError`
  names the rank and the cause. With ``max_restarts``, the launcher first
  restarts every worker that many times; a restarted run resumes from its
  last checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from image_recognition.common.atomic import atomic_write
from image_recognition.common.device import resolve_device
from image_recognition.common.errors import ParameterError
from image_recognition.common.params import config_to_dict
from image_recognition.models.inference import load_model
from image_recognition.training.batches import device_splits
from image_recognition.training.config import AUTO, TrainingConfig
from image_recognition.training.ddp import current_group
from image_recognition.training.engine import train_in_process
from image_recognition.training.result import NonFiniteLossError, Normalization, Split, TrainResult

logger = logging.getLogger(__name__)

RESULT_FILE = "result.pt"
# Seconds the rendezvous waits for every node to join.
RENDEZVOUS_TIMEOUT_S = 900
# Seconds a collective may wait: the other ranks wait while rank 0 validates.
COLLECTIVE_TIMEOUT_S = 1800
LOOPBACK = "127.0.0.1"
# The loopback interface: "lo" on Linux, "lo0" on macOS and the BSDs.
LOOPBACK_INTERFACES = ("lo", "lo0")


class DistributedTrainingError(RuntimeError):
    """A worker of a data-parallel run failed or died; the run stopped and saved no result."""


@dataclass(frozen=True)
class _Job:
    """What every worker needs, pickled to it by the launcher (the splits travel as files in ``folder``)."""

    model_name: str
    model_config: dict[str, Any]
    training: dict[str, Any]
    normalization: dict[str, list[float]]
    folder: str
    checkpoint_path: str | None
    backend: str
    threads: int


def launch(
    model_name: str,
    model_config: dict[str, Any],
    config: TrainingConfig,
    train_split: Split,
    validation_split: Split | None,
    normalization: Normalization,
    checkpoint_path: str | Path | None = None,
) -> TrainResult:
    """Train in ``config.distributed.world_size`` processes; return rank 0's result.

    ``checkpoint_path`` is rank 0's scratch checkpoint (on node 0).
    """
    spec = config.distributed
    device = resolve_device(config.device)
    backend = _backend(spec.backend, device)
    # Checked here, once, before any worker starts: bad data fails like a one-process run.
    train_x, train_y, val_x, val_y = device_splits(train_split, validation_split, torch.device("cpu"))
    one_node = _loopback_store() if spec.nnodes == 1 else contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix="image-recognition-ddp-") as folder, one_node as store_port:
        work = Path(folder)
        launch_config = _launch_config(config, work, store_port)
        np.savez(work / "train.npz", images=train_x.numpy(), labels=train_y.numpy())
        np.savez(work / "validation.npz", images=val_x.numpy(), labels=val_y.numpy())
        job = _Job(
            model_name=model_name,
            model_config=dict(model_config),
            training=config_to_dict(config),
            normalization={key: [float(value) for value in normalization[key]] for key in ("mean", "std")},
            folder=folder,
            checkpoint_path=str(checkpoint_path) if checkpoint_path else None,
            backend=backend,
            threads=max(1, torch.get_num_threads() // spec.nproc_per_node),
        )
        _log_start(model_name, config, backend)
        try:
            elastic_launch(launch_config, _worker)(job)
        except ChildFailedError as exc:
            raise _failure(exc, spec.max_restarts, resumable=checkpoint_path is not None) from None
        outcome = torch.load(work / RESULT_FILE, weights_only=True)
    return _result(outcome, device)


def _log_start(model_name: str, config: TrainingConfig, backend: str) -> None:
    spec = config.distributed
    logger.info(
        "training %s in %d processes: %d on each of %d node(s), this is node %d; %s backend",
        model_name,
        spec.world_size,
        spec.nproc_per_node,
        spec.nnodes,
        spec.node_rank,
        backend,
    )


def _result(outcome: dict[str, Any], device: torch.device) -> TrainResult:
    """Rank 0's result as the launcher reads it back, or the divergence every rank stopped on."""
    if "diverged" in outcome:
        raise NonFiniteLossError(outcome["diverged"])
    checkpoint = outcome["checkpoint"]
    return TrainResult(
        checkpoint=checkpoint,
        history=outcome["history"],
        model=load_model(checkpoint, device),
        final_metrics=outcome["final_metrics"],
        setup_time_s=outcome["setup_time_s"],
        compile_time_s=outcome["compile_time_s"],
        compiled=outcome["compiled"],
    )


def _backend(wanted: str, device: torch.device) -> str:
    if wanted == AUTO:
        return "nccl" if device.type == "cuda" else "gloo"
    if wanted == "nccl" and device.type != "cuda":
        raise ParameterError(
            f"training.distributed.backend is nccl, which needs CUDA, but training runs on {device.type}: "
            "set backend: gloo (or auto)"
        )
    return wanted


@contextlib.contextmanager
def _loopback_store() -> Iterator[int]:
    """A store server that listens on 127.0.0.1 only, for the rendezvous of a one-node run; yields its port.

    torch's ``TCPStore`` binds every interface and takes no address to bind,
    but it takes a listening socket already bound (``master_listen_fd``). A
    multi-tenant store is shared by every store of the process on the same
    port, so the static rendezvous's store (created by the elastic launcher,
    which hands its address to the workers) is this one.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((LOOPBACK, 0))
        listener.listen(128)
        port = listener.getsockname()[1]
    except OSError:
        listener.close()
        raise
    # The store owns the socket from here on, and closes it when the last store using it goes.
    store = dist.TCPStore(
        LOOPBACK, port, is_master=True, multi_tenant=True, wait_for_workers=False, master_listen_fd=listener.detach()
    )
    try:
        yield port
    finally:
        del store  # the server stops once the launcher's store of the same port is gone too


def _launch_config(config: TrainingConfig, work: Path, store_port: int | None = None) -> LaunchConfig:
    spec = config.distributed
    device = resolve_device(config.device)
    if device.type == "cuda" and spec.nproc_per_node > torch.cuda.device_count():
        raise ParameterError(
            f"training.distributed.nproc_per_node is {spec.nproc_per_node} but this node has "
            f"{torch.cuda.device_count()} CUDA device(s): one process per GPU"
        )
    if spec.nnodes == 1:  # the loopback store on store_port (_loopback_store): this node is node 0
        rendezvous: dict[str, Any] = {
            "rdzv_backend": "static",
            "rdzv_endpoint": f"{LOOPBACK}:{store_port}",
            "rdzv_configs": {"rank": 0, "timeout": RENDEZVOUS_TIMEOUT_S},
            "run_id": f"image-recognition-{uuid.uuid4().hex[:12]}",
            "local_addr": LOOPBACK,
        }
    else:  # node 0's store; every node must name the same run (the store's key prefix)
        rendezvous = {
            "rdzv_backend": "static",
            "rdzv_endpoint": spec.rdzv_endpoint,
            "rdzv_configs": {"rank": spec.node_rank, "timeout": RENDEZVOUS_TIMEOUT_S},
            "run_id": "image-recognition",
        }
    return LaunchConfig(
        min_nodes=spec.nnodes,
        max_nodes=spec.nnodes,
        nproc_per_node=spec.nproc_per_node,
        max_restarts=spec.max_restarts,
        monitor_interval=0.5,
        start_method="spawn",
        logs_specs=DefaultLogsSpecs(log_dir=str(work / "logs")),
        **rendezvous,
    )


def _failure(exc: ChildFailedError, max_restarts: int, resumable: bool) -> DistributedTrainingError:
    """One clear error from the launcher's report: the first rank that failed, and why."""
    rank, failure = exc.get_first_failure()
    cause = failure.message
    if isinstance(cause, dict):
        cause = cause.get("message", "no message")
    restarts = f" after {max_restarts} restart(s)" if max_restarts else ""
    resume = "; training.resume: true continues from the run's last scratch checkpoint" if resumable else ""
    return DistributedTrainingError(
        f"data-parallel training failed{restarts}: worker rank {rank} (pid {failure.pid}) exited with code "
        f"{failure.exitcode}: {cause}. The other workers were stopped and no checkpoint was saved to the "
        f"catalog{resume}"
    )


# --- inside each worker -------------------------------------------------------


def _worker(job: _Job) -> None:
    """One worker: join the group, train this rank's share, write rank 0's result for the launcher."""
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))  # 0, then 1 after the first restart
    _configure_logging(rank)
    device = resolve_device(job.training["device"])
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    else:
        torch.set_num_threads(job.threads)
    if job.training["distributed"]["nnodes"] == 1:
        _listen_on_loopback()
    _join_group(job.backend, rank, attempt, torch.device("cuda", local_rank) if device.type == "cuda" else None)
    try:
        outcome = _train_share(job, rank, restarted=attempt > 0)
        group = current_group()
        if group is not None and job.training["distributed"]["nnodes"] > 1:
            outcome = group.broadcast(outcome if rank == 0 else None)  # every node's launcher gets rank 0's
        if local_rank == 0:
            with atomic_write(Path(job.folder) / RESULT_FILE) as file:
                torch.save(outcome, file)
    finally:
        dist.destroy_process_group()


def _listen_on_loopback() -> None:
    """Keep this worker's gloo and NCCL sockets on the loopback interface: the ranks of one node meet there.

    Without it gloo listens on the address of the host name, which is often
    the network's, and NCCL on the first network interface it finds.
    """
    try:
        names = {name for _, name in socket.if_nameindex()}
    except OSError:
        names = set()
    interface = next((name for name in LOOPBACK_INTERFACES if name in names), None)
    if interface is None:
        logger.warning(
            "no loopback interface (%s) found: gloo and NCCL choose their own", "/".join(LOOPBACK_INTERFACES)
        )
        return
    os.environ["GLOO_SOCKET_IFNAME"] = interface
    os.environ["NCCL_SOCKET_IFNAME"] = interface


def _join_group(backend: str, rank: int, attempt: int, device: torch.device | None = None) -> None:
    """Initialise the process group on the launcher's store, under a prefix of this attempt.

    The launcher's store outlives a restart, so the keys of the attempt
    before it (every rank's address) are still there; without a fresh prefix
    the new workers would read them and try to connect to dead processes.
    ``device`` is this worker's GPU (None on the CPU): bound to the group, it
    lets NCCL connect once, at start, rather than guess the device at the
    first collective.
    """
    world_size = int(os.environ["WORLD_SIZE"])
    hosted_by_launcher = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size,
        is_master=rank == 0 and not hosted_by_launcher,
        timeout=timedelta(seconds=RENDEZVOUS_TIMEOUT_S),
    )
    dist.init_process_group(
        backend=backend,
        store=dist.PrefixStore(f"attempt-{attempt}", store),
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S),
        device_id=device,
    )


def _train_share(job: _Job, rank: int, restarted: bool) -> dict[str, Any]:
    training = dict(job.training)
    if restarted:
        training["resume"] = True  # a restart continues from the run's last checkpoint
    splits = [np.load(Path(job.folder) / name) for name in ("train.npz", "validation.npz")]
    train_split, validation_split = ({"images": s["images"], "labels": s["labels"]} for s in splits)
    try:
        result = train_in_process(
            job.model_name,
            job.model_config,
            TrainingConfig.from_dict(training),
            train_split,
            validation_split,
            job.normalization,
            job.checkpoint_path if rank == 0 else None,
        )
    except NonFiniteLossError as exc:  # raised on every rank at the same step
        return {"diverged": str(exc)}
    return {
        "checkpoint": result.checkpoint,
        "history": result.history,
        "final_metrics": result.final_metrics,
        "setup_time_s": result.setup_time_s,
        "compile_time_s": result.compile_time_s,
        "compiled": result.compiled,
    }


def _configure_logging(rank: int) -> None:
    """Rank 0 logs the run's progress; the others, warnings only."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s"))
    package = logging.getLogger("image_recognition")
    package.addHandler(handler)
    package.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    package.propagate = False
