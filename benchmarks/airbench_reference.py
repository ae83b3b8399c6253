"""Run airbench94's own code on the CPU, on this project's CIFAR-10 archive.

The side-by-side check of the GPU ``cnn`` recipe compares it with the
reference it follows, run the same way on the same images. This script does
not copy that code: it reads ``legacy/airbench94.py`` of
KellerJordan/cifar10-airbench from the path you give, changes only what ties
it to CUDA (each change below must match the file exactly, or the script
stops), and calls its ``main`` once per seed:

- weights, BatchNorm and images in fp32 instead of fp16 (CPUs without native
  fp16 convolutions; the issue's reference runs found fp32 and bf16 equal);
- no ``.cuda()``; data loaded to the CPU;
- CUDA events and synchronisation replaced by a wall clock.

The data comes from the archive, decoded by this project's hardened reader,
into the ``cifar10/train.pt`` and ``test.pt`` files the reference loads, in a
temporary folder. The reference does not seed itself; ``--seeds`` seeds torch
before each run so a run can be repeated. Each run records the TTA accuracy
``main`` returns and, from the final row it prints, the last epoch's accuracy
without TTA and its own timer. ``gpu_benchmark.py --reference`` runs the same
file unchanged on a GPU, beside the project's ``cnn`` recipe.

Two options serve throughput comparisons (``cpu_vs_reference.py``), with no
further change to the text:

- ``--autocast bf16``: the network ``make_net`` returns runs its forward
  passes under ``torch.autocast("cpu", dtype=torch.bfloat16)`` and hands its
  logits back in fp32, as the project's engine does; the loss is then computed
  in fp32, as autocast itself would compute it (cross-entropy is on its fp32
  list). Whitening is initialised in fp32 either way.
- ``--max-steps N``: the training loader (``CifarLoader``) stops the run when
  step N+1 would begin; the steps after ``--warmup-steps`` are timed, without
  the evaluations the reference runs between epochs (``evaluate``). A
  step-limited run records images/s and no accuracy.

    PYTHONPATH=src python benchmarks/airbench_reference.py \\
        --reference airbench94.py --archive /path/to/cifar-10-python.tar.gz \\
        --seeds 1 --out benchmarks/results/airbench_reference.json
    PYTHONPATH=src python benchmarks/airbench_reference.py \\
        --reference airbench94.py --archive /path/to/cifar-10-python.tar.gz \\
        --autocast bf16 --max-steps 105 --warmup-steps 5 --out /tmp/reference_steps.json
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import StepClock, StepLimitReached, logger, machine_info, setup_logging, write_json  # noqa: E402

from image_recognition.sources.cifar10.archive import CIFAR10Arrays, load_cifar10_archive  # noqa: E402

# (text in airbench94.py, its CPU replacement, how many times it occurs)
CPU_CHANGES: list[tuple[str, str, int]] = [
    ("map_location=torch.device(gpu)", "map_location='cpu'", 1),
    ("self.images.half()", "self.images.float()", 1),
    ("net = net.half().cuda()", "net = net.float()", 1),
    ("torch.cuda.Event(enable_timing=True)", "_WallClockEvent()", 2),
    ("torch.cuda.synchronize()", "None", 3),
]

WALL_CLOCK_EVENT = '''
import time as _time

class _WallClockEvent:
    """Stands in for torch.cuda.Event on the CPU: record() reads the clock."""

    def record(self):
        self.t = _time.perf_counter()

    def elapsed_time(self, end):
        return 1e3 * (end.t - self.t)
'''


def cpu_source(reference: Path) -> str:
    """The reference's source with :data:`CPU_CHANGES` applied, each checked to match."""
    source = reference.read_text()
    for old, new, count in CPU_CHANGES:
        found = source.count(old)
        if found != count:
            raise SystemExit(
                f"error: {reference} has {found} occurrences of {old!r}, expected {count}: "
                "pass legacy/airbench94.py of KellerJordan/cifar10-airbench"
            )
        source = source.replace(old, new)
    return WALL_CLOCK_EVENT + source


def write_reference_data(data: CIFAR10Arrays, folder: Path) -> None:
    """cifar10/train.pt and test.pt as the reference saves them from torchvision (NHWC uint8)."""
    target = folder / "cifar10"
    target.mkdir(parents=True)
    for name, images, labels in (
        ("train.pt", data.train_images, data.train_labels),
        ("test.pt", data.test_images, data.test_labels),
    ):
        payload = {
            "images": torch.from_numpy(images).permute(0, 2, 3, 1).contiguous(),
            "labels": torch.from_numpy(labels),
            "classes": list(data.class_names),
        }
        torch.save(payload, target / name)


def load_reference(source: str, reference: Path) -> dict[str, Any]:
    """Execute the reference's module code; returns its namespace (``main``, ``hyp``, ...)."""
    namespace: dict[str, Any] = {"__name__": "airbench94", "__file__": str(reference)}
    exec(compile(source, str(reference), "exec"), namespace)  # noqa: S102 (the user's reference file)
    return namespace


# What --autocast asks for: the dtype of the reference's forward passes (None: fp32).
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"off": None, "bf16": torch.bfloat16}


def autocast_forward(namespace: dict[str, Any], dtype: torch.dtype | None) -> None:
    """Make the reference's ``make_net`` return a network whose forward runs under CPU autocast.

    The logits come back in fp32, as the project's engine hands them to its
    loss; the reference's cross-entropy then runs in fp32, as it would inside
    autocast. Evaluation passes run under autocast too, as on the GPU, where
    the whole network is fp16. ``dtype`` None leaves the namespace as it is.
    """
    if dtype is None:
        return
    make_net = namespace["make_net"]

    def make_autocast_net() -> torch.nn.Module:
        net = make_net()
        forward = net.forward

        def forward_in_autocast(inputs: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cpu", dtype=dtype):
                return forward(inputs).float()

        net.forward = forward_in_autocast  # the instance's: nn.Module.__call__ reads self.forward
        return net

    namespace["make_net"] = make_autocast_net


def limit_steps(namespace: dict[str, Any], clock: StepClock) -> dict[str, Any]:
    """Make the reference count its training steps on ``clock`` (which stops the run) and time no evaluation.

    The reference iterates only its training loader (evaluation reads
    ``loader.images`` directly), so each batch its ``CifarLoader`` yields is a
    step; its ``evaluate`` runs between epochs, outside the timed steps.
    Returns what the run's batches looked like: their memory layout and dtype.
    """
    loader, evaluate = namespace["CifarLoader"], namespace["evaluate"]
    seen: dict[str, Any] = {}

    class StepCountingLoader(loader):
        def __iter__(self):  # noqa: ANN204 (a generator)
            for inputs, labels in super().__iter__():
                seen.setdefault("batch_channels_last", inputs.is_contiguous(memory_format=torch.channels_last))
                seen.setdefault("batch_dtype", str(inputs.dtype))
                clock.begin_step(len(inputs))
                yield inputs, labels

    def timed_apart(*args: Any, **kwargs: Any) -> Any:
        with clock.excluded():
            return evaluate(*args, **kwargs)

    namespace["CifarLoader"], namespace["evaluate"] = StepCountingLoader, timed_apart
    return seen


def run_reference(namespace: dict[str, Any], seed: int | str, clock: StepClock | None = None) -> dict[str, Any]:
    """One call of the reference's ``main(seed)`` after seeding torch.

    Returns its TTA accuracy, and from the final row it prints (read by
    wrapping its ``print_training_details``): the last epoch's accuracy
    without TTA and its own timer, ``total_time_seconds`` (whitening,
    training and the final TTA pass, without the per-epoch evaluations).
    With ``clock`` (installed by :func:`limit_steps`), a run the clock stops
    returns its step timing instead, and no accuracy.
    """
    final: dict[str, Any] = {}
    printer = namespace.get("print_training_details")
    if printer is None:
        raise SystemExit("error: the reference has no print_training_details: pass legacy/airbench94.py")

    def capture(variables: dict[str, Any], is_final_entry: bool) -> None:
        if is_final_entry:
            final.update(variables)
        printer(variables, is_final_entry)

    namespace["print_training_details"] = capture
    accuracy = None
    torch.manual_seed(seed if isinstance(seed, int) else 0)
    start = time.perf_counter()
    try:
        accuracy = namespace["main"](seed)
    except StepLimitReached:
        if clock is None:
            raise
    finally:
        wall = time.perf_counter() - start
        namespace["print_training_details"] = printer
    run = {
        "seed": seed,
        "test_accuracy_tta": _float_or_none(accuracy),
        "test_accuracy_no_tta": _float_or_none(final.get("val_acc")),
        "reference_time_s": _float_or_none(final.get("total_time_seconds")),
        "wall_time_s": wall,
    }
    if clock is not None:
        run["steps"] = clock.summary()
    return run


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, type=Path, help="legacy/airbench94.py of cifar10-airbench")
    parser.add_argument("--archive", required=True, help="cifar-10-python.tar.gz (official layout)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--autocast", choices=list(AUTOCAST_DTYPES), default="off", help="bf16: forward passes under CPU autocast"
    )
    parser.add_argument("--max-steps", type=int, help="stop after this many training steps; time those after warm-up")
    parser.add_argument("--warmup-steps", type=int, default=5, help="untimed steps first (with --max-steps)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/airbench_reference.json"))
    args = parser.parse_args()
    if args.max_steps is not None and not 0 <= args.warmup_steps < args.max_steps:
        parser.error("--max-steps must exceed --warmup-steps (>= 0)")
    out = args.out.resolve()  # before the chdir below
    setup_logging()
    source = cpu_source(args.reference)
    torch.set_num_threads(os.cpu_count() or 1)
    result: dict[str, Any] = {
        "what": f"airbench94's own code on the CPU (CPU_CHANGES), autocast {args.autocast}, one main() per seed"
        + (f", stopped after {args.max_steps} steps" if args.max_steps else ""),
        "reference_sha256": hashlib.sha256(args.reference.read_bytes()).hexdigest(),
        "archive_md5": hashlib.md5(Path(args.archive).read_bytes()).hexdigest(),  # noqa: S324 (a checksum)
        "cpu_changes": [{"from": old, "to": new} for old, new, _ in CPU_CHANGES],
        "autocast": args.autocast,
        "max_steps": args.max_steps,
        "machine": machine_info(),
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as folder:
        write_reference_data(load_cifar10_archive(args.archive), Path(folder))
        os.chdir(folder)  # the reference loads ./cifar10/{train,test}.pt
        for seed in args.seeds:
            logger.info("airbench94 reference, seed %d", seed)
            namespace = load_reference(source, args.reference)
            autocast_forward(namespace, AUTOCAST_DTYPES[args.autocast])
            clock = StepClock(args.max_steps, args.warmup_steps) if args.max_steps else None
            batches = limit_steps(namespace, clock) if clock else {}
            result["runs"].append({**run_reference(namespace, seed, clock), **batches})
            logger.info("seed %d: %s", seed, result["runs"][-1])
            write_json(result, out)


if __name__ == "__main__":
    main()
