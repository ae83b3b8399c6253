"""The engine against airbench94's own code: training images/s side by side on the CPU, in one run.

The GPU ``cnn`` recipe (``conf/base/parameters_train_cnn.yml``, unchanged but
for no compile and the precision asked for) trains through the project's
engine, and airbench94 (``legacy/airbench94.py`` of KellerJordan/cifar10-airbench,
read at run time, never copied; ``airbench_reference.py`` says what changes
for the CPU) trains with its own code, in the same process, on the same
images, with the same thread count, one after the other:

- in fp32, and in bf16 autocast where the CPU computes bf16 natively
  (AVX512-BF16 or AMX; elsewhere bf16 is emulated and many times slower);
- both networks channels_last: the engine makes each batch channels_last,
  the reference feeds its NCHW crops to its channels_last network (each
  side's batch layout is recorded); the engine's whitening conv stays fp32
  under autocast, the reference's runs in bf16;
- each run stops after ``--max-steps`` steps; the steps after
  ``--warmup-steps`` are timed (:class:`common.StepClock`), with each epoch
  boundary's own work but without evaluation passes.

The JSON holds each side's images/s, the ratio project/reference per
precision, the machine facts (bf16 flags, load average before and after each
run), the commit and the date.

    PYTHONPATH=src python benchmarks/cpu_vs_reference.py --reference data/gpu/airbench94.py \\
        --archive data/gpu/cifar-10-python.tar.gz --out benchmarks/results/cpu_vs_reference.json
    PYTHONPATH=src python benchmarks/cpu_vs_reference.py --reference airbench94.py --smoke --out /tmp/vs.json

``--smoke`` trains the tiny cnn and the reference at batch 100 on synthetic
images, for a few steps: a check of the script, not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from airbench_reference import (  # noqa: E402
    AUTOCAST_DTYPES,
    autocast_forward,
    cpu_source,
    limit_steps,
    load_reference,
    run_reference,
    write_reference_data,
)
from common import StepClock, StepLimitReached, logger, machine_info, setup_logging, write_json  # noqa: E402

from image_recognition.common.device import cpu_has_native_bf16  # noqa: E402
from image_recognition.models.tiny import TINY_MODELS  # noqa: E402
from image_recognition.sources.cifar10.archive import CIFAR10Arrays, load_cifar10_archive  # noqa: E402
from image_recognition.sources.cifar10.split import channel_statistics  # noqa: E402
from image_recognition.sources.cifar10.synthetic import make_synthetic_cifar10  # noqa: E402
from image_recognition.training import train, validation  # noqa: E402
from image_recognition.training.batches import EpochBatches  # noqa: E402
from image_recognition.training.recipes import recipe  # noqa: E402

# Precision name -> the engine's autocast setting (airbench_reference.AUTOCAST_DTYPES has the reference's).
PRECISIONS = {"fp32": "off", "bf16": "bf16"}
# /proc/cpuinfo flags that decide how fast each precision can be.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
SMOKE_BATCH = 100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, type=Path, help="legacy/airbench94.py of cifar10-airbench")
    parser.add_argument("--archive", help="cifar-10-python.tar.gz (not needed with --smoke)")
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=list(PRECISIONS),
        help="default: bf16 and fp32 where the CPU has native bf16, else fp32",
    )
    parser.add_argument("--max-steps", type=int, default=125, help="steps each side runs, warm-up included")
    parser.add_argument("--warmup-steps", type=int, default=5, help="untimed steps first")
    parser.add_argument("--smoke", action="store_true", help="tiny cnn, batch 100, synthetic images: a check")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu_vs_reference.json"))
    args = parser.parse_args(argv)
    if not (args.smoke or args.archive):
        parser.error("give --archive, or --smoke")
    if not args.reference.is_file():
        parser.error(f"--reference {args.reference}: no such file (legacy/airbench94.py of cifar10-airbench)")
    if not 0 <= args.warmup_steps < args.max_steps:
        parser.error("--max-steps must exceed --warmup-steps (>= 0)")
    return args


def cpu_flags() -> dict[str, bool]:
    """Which of :data:`CPU_FLAGS` this CPU has (all False where /proc/cpuinfo is missing)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    return {flag: flag in flags for flag in CPU_FLAGS}


def project_settings(precision: str, smoke: bool) -> dict[str, Any]:
    """The GPU cnn recipe on the CPU: no compile, channels_last, the precision asked for (tiny for a smoke run)."""
    settings = recipe("cnn")
    training = settings["training"]
    training.update(
        device="cpu", compile=False, channels_last=True, autocast=PRECISIONS[precision], log_every=0, seed=0
    )
    if smoke:
        training.update(batch_size=SMOKE_BATCH)
        settings["model"].update(copy.deepcopy(TINY_MODELS["cnn"]))
    return settings


@contextlib.contextmanager
def step_limited_engine(clock: StepClock, seen: dict[str, Any]) -> Iterator[None]:
    """The engine's steps counted on ``clock`` (which stops the run), its evaluations timed apart.

    Wraps ``EpochBatches.batch`` (called as each step begins) and
    ``validation.evaluate`` while the block runs; ``seen`` gets the layout of
    the batches the steps train on.
    """
    make_batch, evaluate = EpochBatches.batch, validation.evaluate

    def counted_step(self: EpochBatches, step: int) -> Any:
        seen.setdefault("batch_channels_last", self.batches.memory_format == torch.channels_last)
        clock.begin_step(self.batches.shard_size)
        return make_batch(self, step)

    def timed_apart(*args: Any, **kwargs: Any) -> Any:
        with clock.excluded():
            return evaluate(*args, **kwargs)

    EpochBatches.batch, validation.evaluate = counted_step, timed_apart
    try:
        yield
    finally:
        EpochBatches.batch, validation.evaluate = make_batch, evaluate


def measure_project(arrays: CIFAR10Arrays, precision: str, args: argparse.Namespace) -> dict[str, Any]:
    """Training images/s of the cnn recipe through the engine, over the timed steps."""
    settings = project_settings(precision, args.smoke)
    mean, std = channel_statistics(arrays.train_images)
    clock, seen = StepClock(args.max_steps, args.warmup_steps), {}
    load_before = machine_info()["load_average_1_5_15"]
    with step_limited_engine(clock, seen), contextlib.suppress(StepLimitReached):
        train(
            "cnn",
            settings["model"],
            settings["training"],
            {"images": arrays.train_images, "labels": arrays.train_labels},
            None,
            {"mean": mean, "std": std},
        )
    return {
        **clock.summary(),
        **seen,
        "batch_size": settings["training"]["batch_size"],
        "model_channels_last": True,
        "whitening_conv": "fp32 under autocast" if precision == "bf16" else "fp32",
        "load_average_before": load_before,
        "load_average_after": machine_info()["load_average_1_5_15"],
    }


def measure_reference(source: str, precision: str, args: argparse.Namespace) -> dict[str, Any]:
    """Training images/s of airbench94's own code, over the timed steps (run in its data folder)."""
    namespace = load_reference(source, args.reference)
    if args.smoke and "hyp" in namespace:
        namespace["hyp"]["opt"]["batch_size"] = SMOKE_BATCH
    autocast_forward(namespace, AUTOCAST_DTYPES[PRECISIONS[precision]])
    clock = StepClock(args.max_steps, args.warmup_steps)
    seen = limit_steps(namespace, clock)
    load_before = machine_info()["load_average_1_5_15"]
    run = run_reference(namespace, 0, clock)
    return {
        **run["steps"],
        **seen,
        "batch_size": namespace["hyp"]["opt"]["batch_size"] if "hyp" in namespace else None,
        "model_channels_last": True,
        "whitening_conv": "bf16 under autocast" if precision == "bf16" else "fp32",
        "load_average_before": load_before,
        "load_average_after": machine_info()["load_average_1_5_15"],
    }


def load_arrays(args: argparse.Namespace) -> CIFAR10Arrays:
    if args.smoke:
        return make_synthetic_cifar10(train_per_class=50, test_per_class=20, seed=0)
    return load_cifar10_archive(args.archive)


def new_report(args: argparse.Namespace, arrays: CIFAR10Arrays, native_bf16: bool) -> dict[str, Any]:
    """The report's header: what is measured, on what machine, commit and data; no figures yet."""
    return {
        "benchmark": "cpu_vs_reference",
        "what": "training images/s of the cnn recipe through the engine and of airbench94's own code, "
        "same process, same images, same threads; ratio = project / reference",
        "smoke": args.smoke,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {**machine_info(), "native_bf16": native_bf16, "cpu_flags": cpu_flags()},
        "archive_md5": None if args.smoke else arrays.fingerprint,  # the decoder's md5 of the archive
        "train_images": len(arrays.train_images),
        "reference_sha256": hashlib.sha256(args.reference.read_bytes()).hexdigest(),
        "max_steps": args.max_steps,
        "warmup_steps": args.warmup_steps,
        "precisions": {},
        "ratios": {},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup_logging()
    torch.set_num_threads(os.cpu_count() or 1)
    native_bf16 = cpu_has_native_bf16()
    precisions = args.precisions or (["bf16", "fp32"] if native_bf16 else ["fp32"])
    if "bf16" in precisions and not native_bf16:
        logger.warning(
            "this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 is emulated, and its figures mean little"
        )
    out = args.out.resolve()  # the reference runs in a folder of its own
    arrays = load_arrays(args)
    source = cpu_source(args.reference)
    report = new_report(args, arrays, native_bf16)
    with tempfile.TemporaryDirectory() as folder:
        write_reference_data(arrays, Path(folder))
        for precision in precisions:
            logger.info("%s: the cnn recipe through the engine, %d steps", precision, args.max_steps)
            project = measure_project(arrays, precision, args)
            logger.info("%s: airbench94's own code, %d steps", precision, args.max_steps)
            with contextlib.chdir(folder):  # the reference loads ./cifar10/{train,test}.pt
                reference = measure_reference(source, precision, args)
            ratio = None
            if project["images_per_s"] and reference["images_per_s"]:
                ratio = project["images_per_s"] / reference["images_per_s"]
            report["precisions"][precision] = {"project": project, "reference": reference}
            report["ratios"][precision] = ratio
            logger.info(
                "%s: project %s images/s, reference %s images/s, ratio %s",
                precision,
                project["images_per_s"],
                reference["images_per_s"],
                ratio,
            )
            write_json(report, out)  # after each precision: a run cut short keeps what it measured
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    report["machine"]["load_average_at_end"] = machine_info()["load_average_1_5_15"]
    write_json(report, out)
    return report


if __name__ == "__main__":
    main()
